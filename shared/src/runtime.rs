//! The bootstrap every function shares: logs, configuration, and serving a
//! router on `$PORT` with graceful shutdown on SIGTERM/SIGINT.

use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, Slice};
use crate::config::Config;

/// Start logging: human-readable, or JSON when `MR_LOG_FORMAT=json`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Read the configuration, build the registry, and serve `slices` until a
/// shutdown signal. Returns an error message for `main` to print.
pub async fn serve(slices: &[Slice]) -> Result<(), String> {
    let config = Config::from_env()?;
    init_logging(config.json_logs);
    let registry = config.registry().await.map_err(|e| e.to_string())?;
    let app = api::router(registry, slices);
    serve_http(app, config.port).await
}

/// Serve plain HTTP on `0.0.0.0:port` until SIGTERM or SIGINT.
pub async fn serve_http(app: Router, port: u16) -> Result<(), String> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "model registry listening on http://localhost:{}", addr.port());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
