//! `functions-gateway`: the function binaries behind one address, routed the
//! way `infra/knative/routing.yaml` routes them on a cluster.
//!
//! It starts every Knative Service that the HTTPRoute names as its manifest
//! (in the same directory) deploys it: the binary of its image (binaries next
//! to this one in the target directory) with the manifest's `MR_SERVE`, so a
//! `<family>-reader` runs `<family>` with `MR_SERVE=reads`. Each listens on a
//! free port; the writers start first, the readers once the writers answer
//! `/readyz/health` (a reader refuses `MR_CREATE_TABLE=true`, so only the
//! writers get it and create the table). Then it serves `127.0.0.1:$PORT`
//! and forwards each request to the Service the route picks for its method
//! and path (Gateway API precedence: see `tests/src/routing.rs`).
//! The tests run the upstream Python client through it (tests/run.sh) with
//! `MR_BIN` pointing here, so it takes the same environment as
//! `registry-local`: everything but `PORT` (and `MR_SERVE`, the manifests')
//! is passed to the functions. They must share a store, so use
//! `MR_STORE=dynamodb`. SIGTERM or SIGINT stops it and the functions.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use registry_test_support::{READY_TIMEOUT, bin_dir, try_free_port, wait_ready};
use registry_tests::routing::{KnativeService, ROUTING_YAML, Routing, knative_services};

/// Largest request body forwarded (the API's bodies are small JSON documents).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The routing table and where each Knative Service listens.
struct Gateway {
    routing: Routing,
    ports: Vec<(String, u16)>,
    client: reqwest::Client,
}

/// The role of a reading Service (`MR_SERVE`).
const READS: &str = "reads";

/// Start the binary of `service` on `port`, with this process's environment
/// and the manifest's `MR_SERVE`.
fn spawn(bin_dir: &Path, service: &KnativeService, port: u16) -> Result<Child, String> {
    let binary = bin_dir.join(&service.binary);
    let mut cmd = Command::new(&binary);
    cmd.env("PORT", port.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match &service.serve {
        Some(serve) => cmd.env("MR_SERVE", serve),
        None => cmd.env_remove("MR_SERVE"),
    };
    if service.serve.as_deref() == Some(READS) {
        // The writers create the table; a reader refuses to.
        cmd.env_remove("MR_CREATE_TABLE");
    }
    if let Ok(dir) = std::env::var("MR_DATA_DIR") {
        cmd.env("MR_DATA_DIR", PathBuf::from(dir).join(&service.name));
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {} ({}): {e}", service.name, binary.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("functions-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) if !p.is_empty() => p.parse().map_err(|_| format!("PORT '{p}' is not a port"))?,
        _ => 8080,
    };
    let routing_path = std::env::var("MR_ROUTING").unwrap_or_else(|_| ROUTING_YAML.to_string());
    let routing = Routing::load(&routing_path)?;
    if std::env::var("MR_STORE").as_deref() != Ok("dynamodb") {
        eprintln!(
            "functions-gateway: warning: MR_STORE is not dynamodb; each function gets its own store"
        );
    }
    // What each Service of the routing runs: its manifest, beside the routing.
    let manifests = Path::new(&routing_path)
        .parent()
        .ok_or(format!("{routing_path}: no directory"))?;
    let deployed = knative_services(manifests)?;
    let mut services = Vec::new();
    for name in routing.functions() {
        let namespace = &routing
            .rules
            .iter()
            .find(|r| r.function == name)
            .expect("a function of the rules")
            .namespace;
        let service = deployed
            .iter()
            .find(|s| s.name == name && s.namespace == *namespace)
            .ok_or(format!(
                "the routing sends to {name}.{namespace}, which no Knative Service of {} defines",
                manifests.display()
            ))?;
        services.push(service.clone());
    }
    // The functions are next to this binary in the target directory.
    let bin_dir = bin_dir();

    // A proxy passes a redirect on (the web interface's `/` answers 303):
    // the client follows it, not the gateway.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut children: Vec<Child> = Vec::new();
    let mut ports = Vec::new();
    // Writers first, readers once the writers are ready: the writers create
    // the table (MR_CREATE_TABLE) before any reader opens it.
    for reading in [false, true] {
        let started = children.len();
        for service in services
            .iter()
            .filter(|s| (s.serve.as_deref() == Some(READS)) == reading)
        {
            let port = try_free_port().map_err(|e| e.to_string())?;
            children.push(spawn(&bin_dir, service, port)?);
            ports.push((service.name.clone(), port));
        }
        for ((name, port), child) in ports[started..].iter().zip(&mut children[started..]) {
            wait_ready(child, &format!("http://127.0.0.1:{port}"), READY_TIMEOUT)
                .await
                .map_err(|e| format!("{name} {e}"))?;
        }
    }

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    eprintln!(
        "functions-gateway: http://127.0.0.1:{port} routes by {routing_path} to {}",
        ports
            .iter()
            .map(|(f, p)| format!("{f} (:{p})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let state = Arc::new(Gateway {
        routing,
        ports,
        client,
    });
    let app = Router::new().fallback(forward).with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string());
    for child in &mut children {
        let _ = child.kill().await;
    }
    served
}

/// Headers that belong to one hop, not to the request or response.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in from {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn error(status: StatusCode, message: String) -> Response {
    let body = format!(
        "{{\"code\":\"{}\",\"message\":{:?}}}",
        status.canonical_reason().unwrap_or(""),
        message
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Send the request to the Service its method and path route to, and its
/// answer back.
async fn forward(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(rule) = gw.routing.route(req.method().as_str(), &path) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no rule of the HTTPRoute matches {} {path}", req.method()),
        );
    };
    let Some(port) = gw
        .ports
        .iter()
        .find(|(f, _)| *f == rule.function)
        .map(|(_, p)| *p)
    else {
        return error(
            StatusCode::BAD_GATEWAY,
            format!("{} is not running", rule.function),
        );
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or(path);
    let method = req.method().clone();
    let headers = copy_headers(req.headers());
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let sent = gw
        .client
        .request(method, format!("http://127.0.0.1:{port}{path_and_query}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("{}: {e}", rule.function)),
    };
    let status = upstream.status();
    let headers = copy_headers(upstream.headers());
    match upstream.bytes().await {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            *resp.headers_mut() = headers;
            resp
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{}: {e}", rule.function)),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
