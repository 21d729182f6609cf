//! The bootstrap every function shares: logs, configuration, and serving a
//! router under the runtime the process was started in.
//!
//! One binary, two runtimes, chosen once at start-up:
//! - under AWS Lambda (`AWS_LAMBDA_RUNTIME_API` is set) the router is handed
//!   to `lambda_http`, which turns API Gateway REST (v1), HTTP API (v2) and
//!   Function URL events into requests and the responses back into events;
//! - anywhere else (Knative, a laptop, the tests) it is served as plain HTTP
//!   on `$PORT`, with graceful shutdown on SIGTERM/SIGINT.
//!
//! The `storage-events` function is the exception under Lambda: S3 and
//! EventBridge invoke it with their own events, not HTTP ones, so it takes
//! them raw through `lambda_runtime` ([`run_storage_events`]).
//!
//! Start-up does no network I/O: the DynamoDB client connects (and resolves
//! credentials) on the first request that needs the store, unless
//! `MR_CREATE_TABLE=true` asks for the table to be created first.
//!
//! Every request passes the edge (`api::edge`: request id, authentication,
//! policy, limits, access log) under both runtimes.

pub mod server;

use std::process::ExitCode;

use axum::Router;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use lambda_http::tower::ServiceExt;

use crate::api::auth::AuthMode;
use crate::api::uploads::UploadsApi;
use crate::api::{self, Serve, Slice};
use crate::config::{Config, ConfigError};
use crate::domain::registry::Registry;
use crate::domain::upload_sessions::UploadSessions;
use crate::registration::delivery;
use crate::store::artifacts::ArtifactError;
use crate::store::port::StoreError;

/// Where the process serves requests, decided once from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// AWS Lambda: events come from the Runtime API at `AWS_LAMBDA_RUNTIME_API`.
    Lambda,
    /// Plain HTTP on `$PORT` (Knative, local runs).
    Http,
}

impl Runtime {
    /// Lambda when `AWS_LAMBDA_RUNTIME_API` is set (Lambda always sets it), else HTTP.
    pub fn from_env() -> Runtime {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty()) {
            Runtime::Lambda
        } else {
            Runtime::Http
        }
    }
}

/// Start logging: human-readable, or JSON when `MR_LOG_FORMAT=json`.
/// Colours only when stderr is a terminal (not in CloudWatch or pod logs).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Why a function could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration errors name the setting themselves.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening the metadata store")]
    Store(#[from] StoreError),
    #[error("opening the metadata store")]
    Registry(#[from] crate::domain::error::Error),
    #[error("opening the artifact store")]
    Artifacts(#[from] ArtifactError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("serving")]
    Serve(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Print a start error with its causes, as `main` ends.
fn report(name: &str, e: &StartError) -> ExitCode {
    eprintln!("{name}: {}", crate::domain::error::chain(e));
    ExitCode::FAILURE
}

/// The whole life of a function binary: serve `slices` (see [`serve`]) and
/// turn a start-up or serving error into a message on stderr and exit code 1.
/// `name` is the binary's name, for that message.
pub async fn run(name: &str, slices: &[Slice]) -> ExitCode {
    match serve(slices, false).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(name, &e),
    }
}

/// [`run`] for `registry-local`: every slice, the web interface, and, when
/// a sink is set (`MR_EVENTS_SINK`), the change events' dispatcher in the
/// background.
pub async fn run_local(name: &str) -> ExitCode {
    match serve(&Slice::ALL, true).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(name, &e),
    }
}

/// The whole life of the `web` function: the web interface (`web`) and
/// health, under the runtime of [`Runtime::from_env`]. Its pages only read
/// (run it with `MR_SERVE=reads`).
pub async fn run_web(name: &str) -> ExitCode {
    let served = async {
        let config = Config::from_env()?;
        init_logging(config.json_logs);
        let edge = std::sync::Arc::new(config.edge()?);
        let registry = config.registry().await?;
        let app = crate::web::routes(registry, config.web_login(), config.serve)
            .route("/readyz/health", axum::routing::get(|| async { "OK" }))
            .fallback(|| async { api::error::ApiError::from(api::error::HttpError::NoRoute) });
        let app = edge.wrap(app);
        match Runtime::from_env() {
            Runtime::Lambda => serve_lambda(app).await,
            Runtime::Http => serve_http(app, &config).await,
        }
    };
    match served.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(name, &e),
    }
}

/// The whole life of the `events` function: a round of change events per
/// invocation (`events::Dispatcher::round`): under Lambda, any event (a
/// schedule) invokes it; over HTTP (Knative, a PingSource), `POST /` or
/// `/events/dispatch`. Answers what the round did.
pub async fn run_events(name: &str) -> ExitCode {
    match serve_events().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(name, &e),
    }
}

async fn serve_events() -> Result<(), StartError> {
    let config = Config::from_env()?;
    init_logging(config.json_logs);
    let Some(settings) = config.events.clone() else {
        return Err(StartError::Config(ConfigError::Incomplete(
            "the events function needs a sink: K_SINK (a Knative SinkBinding) or MR_EVENTS_SINK"
                .into(),
        )));
    };
    if config.serve == Serve::Reads {
        return Err(writes_only());
    }
    let registry = config.events_registry().await?;
    let dispatcher = crate::events::Dispatcher::new(registry, settings)?;
    match Runtime::from_env() {
        Runtime::Lambda => {
            tracing::info!("change events: serving Lambda invocations");
            let handler = lambda_runtime::service_fn(
                move |_: lambda_runtime::LambdaEvent<serde_json::Value>| {
                    let dispatcher = dispatcher.clone();
                    async move {
                        let report = dispatcher.round().await.map_err(|e| {
                            lambda_runtime::Error::from(crate::domain::error::chain(&e))
                        })?;
                        serde_json::to_value(report).map_err(lambda_runtime::Error::from)
                    }
                },
            );
            lambda_runtime::run(handler)
                .await
                .map_err(StartError::Serve)
        }
        Runtime::Http => {
            let edge = std::sync::Arc::new(config.edge()?);
            let round = move || {
                let dispatcher = dispatcher.clone();
                async move {
                    match dispatcher.round().await {
                        Ok(report) => Ok(axum::Json(report)),
                        Err(e) => Err(api::error::ApiError::from(e)),
                    }
                }
            };
            let app = Router::new()
                .route("/", axum::routing::post(round.clone()))
                .route("/events/dispatch", axum::routing::post(round))
                .route("/readyz/health", axum::routing::get(|| async { "OK" }))
                .fallback(|| async { api::error::ApiError::from(api::error::HttpError::NoRoute) });
            serve_http(edge.wrap(app), &config).await
        }
    }
}

/// `registry-local migrate-table --from OLD --to NEW [--checkpoint FILE]
/// [--segments N]`: copy a DynamoDB table of the first storage layout into
/// a new table (see `store::layout::migrate`), printing what it copied.
pub async fn migrate_table(args: impl Iterator<Item = String>) -> ExitCode {
    let usage = "usage: registry-local migrate-table --from OLD_TABLE --to NEW_TABLE \
                 [--checkpoint FILE] [--segments N]";
    let (mut from, mut to, mut checkpoint, mut segments) = (None, None, None, 4);
    let mut args = args;
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--from", Some(v)) => from = Some(v),
            ("--to", Some(v)) => to = Some(v),
            ("--checkpoint", Some(v)) => checkpoint = Some(v),
            ("--segments", Some(v)) => match v.parse() {
                Ok(n) => segments = n,
                Err(_) => {
                    eprintln!("--segments {v}: expected a number\n{usage}");
                    return ExitCode::FAILURE;
                }
            },
            _ => {
                eprintln!("{flag}: unexpected\n{usage}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let checkpoint = checkpoint.unwrap_or_else(|| format!("migrate-{from}-{to}.json"));
    let sdk = crate::config::aws_sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let path = std::path::Path::new(&checkpoint);
    match crate::store::layout::migrate::migrate_table(client, &from, &to, path, segments).await {
        Ok(copied) => {
            println!(
                "copied {from} into {to}: {} items read, {} entities, {} items copied, \
                 {} derived items rebuilt, {} unknown items left out (checkpoint {checkpoint})",
                copied.read, copied.entities, copied.copied, copied.rebuilt, copied.unknown
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "migrate-table: {} (run it again to resume from {checkpoint})",
                crate::domain::error::chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}

/// Read the configuration, build the registry, and serve `slices` under the
/// runtime of [`Runtime::from_env`] until shutdown.
pub async fn serve(slices: &[Slice], local: bool) -> Result<(), StartError> {
    let config = Config::from_env()?;
    init_logging(config.json_logs);
    // Storage events and uploads only write: a reading function leaves them
    // to a writing one (and refuses to start with nothing else to serve).
    let slices: Vec<Slice> = match config.serve {
        Serve::Reads => slices
            .iter()
            .copied()
            .filter(|s| !s.uses_storage())
            .collect(),
        Serve::All | Serve::Writes => slices.to_vec(),
    };
    let slices = &slices[..];
    if slices.is_empty() {
        return Err(writes_only());
    }
    let edge = std::sync::Arc::new(config.edge()?);
    let registry = config.registry().await?;
    if let (true, Some(settings)) = (local, config.events.clone()) {
        let dispatcher = crate::events::Dispatcher::new(registry.clone(), settings)?;
        tokio::spawn(dispatcher.run());
    }
    let mut app = api::router(registry.clone(), slices, config.max_lists, config.serve);
    if local {
        app = app.merge(crate::web::routes(
            registry.clone(),
            config.web_login(),
            config.serve,
        ));
    }
    let app = with_storage_slices(app, &config, registry, slices).await?;
    let app = edge.wrap(app);
    match Runtime::from_env() {
        Runtime::Lambda => serve_lambda(app).await,
        Runtime::Http => serve_http(app, &config).await,
    }
}

/// Storage events and uploads register artifacts: there is no reading half.
fn writes_only() -> StartError {
    StartError::Config(ConfigError::Incomplete(
        "MR_SERVE=reads: storage events and uploads write; serve them with MR_SERVE=all or writes"
            .into(),
    ))
}

/// Mount the slices served outside the API prefixes, which need the
/// artifact store: storage events (`/events/storage`) and the upload
/// extension (`/api/registry_ext/v1`).
async fn with_storage_slices(
    app: Router,
    config: &Config,
    registry: Registry,
    slices: &[Slice],
) -> Result<Router, StartError> {
    if !slices.iter().any(|s| s.uses_storage()) {
        return Ok(app);
    }
    // One store: the registrar gets its reading side only, the upload
    // extension every capability.
    let store = config.artifact_store().await?;
    let registrar = config.registrar(registry.clone(), store.clone());
    let mut app = app;
    if slices.contains(&Slice::StorageEvents) {
        app = app.merge(api::storage_events::routes(registrar.clone()));
    }
    if slices.contains(&Slice::Uploads) {
        app = app.merge(api::uploads::routes(UploadsApi {
            sessions: UploadSessions::new(registrar, store, config.upload_settings()),
            public_url: config.public_url.clone(),
            owners: crate::domain::ownership::Owners::new(registry),
        }));
    }
    Ok(app)
}

/// The whole life of the `storage-events` function: storage events over
/// HTTP at `/` and `/events/storage` (Knative), or, under Lambda, the raw
/// S3 notification and EventBridge events (also wrapped in SQS or SNS)
/// that invoke it, through the same code path. `name` is for error messages.
pub async fn run_storage_events(name: &str) -> ExitCode {
    match serve_storage_events().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(name, &e),
    }
}

async fn serve_storage_events() -> Result<(), StartError> {
    let config = Config::from_env()?;
    init_logging(config.json_logs);
    if config.serve == Serve::Reads {
        return Err(writes_only());
    }
    let registry = config.registry().await?;
    let store = config.artifact_store().await?;
    let registrar = config.registrar(registry, store);
    match Runtime::from_env() {
        Runtime::Lambda => {
            tracing::info!("storage events: serving Lambda invocations");
            let handler = lambda_runtime::service_fn(
                move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
                    let registrar = registrar.clone();
                    async move {
                        delivery::handle_lambda(&registrar, &event.payload)
                            .await
                            .map_err(lambda_runtime::Error::from)
                    }
                },
            );
            lambda_runtime::run(handler)
                .await
                .map_err(StartError::Serve)
        }
        Runtime::Http => {
            let edge = std::sync::Arc::new(config.edge()?);
            let app = api::storage_events::function_routes(registrar)
                .route("/readyz/health", axum::routing::get(|| async { "OK" }))
                .fallback(|| async { api::error::ApiError::from(api::error::HttpError::NoRoute) });
            serve_http(edge.wrap(app), &config).await
        }
    }
}

/// Serve plain HTTP (Knative, local runs) until SIGTERM or SIGINT: see
/// [`server`]. Warns when the port is open to other machines without
/// authentication.
pub async fn serve_http(app: Router, config: &Config) -> Result<(), StartError> {
    if config.auth == AuthMode::None && !config.server.bind.is_loopback() {
        tracing::warn!(
            bind = %config.server.bind,
            "listening beyond this machine WITHOUT authentication (MR_AUTH=none): anyone who \
             can reach the port may read and change every model; set MR_AUTH (see README, Security)"
        );
    }
    server::serve(app, &config.server).await
}

/// Serve Lambda invocations from the Runtime API until the process is frozen
/// or killed. Requests reach the router with the path the client asked for,
/// without the API Gateway stage (see [`without_stage`]).
pub async fn serve_lambda(app: Router) -> Result<(), StartError> {
    tracing::info!("model registry serving Lambda invocations");
    lambda_http::run(app.map_request(without_stage))
        .await
        .map_err(StartError::Serve)
}

/// Give the router the path of the API, whatever API Gateway stage the
/// request came through.
///
/// `lambda_http` prefixes the path with a named stage (`/prod/api/...`)
/// unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set, which would make
/// every route a 404 behind a REST API. Rather than depend on a deployment
/// remembering that variable, restore the event's own path: for REST (v1)
/// events it never contains the stage; for HTTP API (v2) events it does when
/// the stage is a named one reached through its execute-api URL, so that
/// prefix is removed. Function URLs and `$default` stages are unchanged.
fn without_stage(mut req: lambda_http::Request) -> lambda_http::Request {
    let raw = req.raw_http_path();
    let path = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(_)) => raw.to_string(),
        Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.stage.as_deref() {
            Some(stage) if stage != "$default" => match raw.strip_prefix(&format!("/{stage}")) {
                Some(rest) if rest.starts_with('/') => rest.to_string(),
                _ => raw.to_string(),
            },
            _ => return req,
        },
        _ => return req,
    };
    if path.is_empty() || path == req.uri().path() {
        return req;
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        // A raw path that is not a valid URI path: leave the request as
        // lambda_http built it (it percent-encodes), the router answers 404.
        Err(_) => return req,
    }
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req
}
