//! The HTTP API: the Kubeflow Model Registry REST contract, served as slices
//! (one per resource family) that can be mounted alone (one function each)
//! or together (the all-in-one server), under both API prefixes.

pub mod auth;
pub mod codec;
pub mod edge;
pub mod error;
pub mod extension;
pub mod guard;
mod handlers;
pub mod lists;
pub mod openapi;
pub mod storage_events;
pub mod uploads;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::domain::ownership::Owners;
use crate::domain::registry::Registry;
use error::{ApiError, HttpError};
use lists::ListSlots;

/// The registry's own extension routes served by the API slices, under
/// `/api/registry_ext/v1` (method, path; the upload routes are
/// `uploads::ROUTES`).
pub const EXTENSION_ROUTES: [(&str, &str); extension::ROUTES.len()] = {
    let mut out = [("", ""); extension::ROUTES.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (extension::ROUTES[i].method, extension::ROUTES[i].path);
        i += 1;
    }
    out
};

/// Both prefixes the upstream clients use (0.3.12+ use v1, older v1alpha3).
pub const PREFIXES: [(&str, bool); 2] = [
    ("/api/model_registry/v1alpha3", false),
    ("/api/model_registry/v1", true),
];

/// A resource family of the API, served by one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// `/registered_models`, `/registered_model`, `/registered_models/{id}[/versions]`.
    RegisteredModels,
    /// `/model_versions`, `/model_version`, `/model_versions/{id}[/artifacts]`.
    ModelVersions,
    /// `/model_artifacts`, `/model_artifact`, `/artifacts`, `/artifact` and their `{id}`.
    Artifacts,
    /// `/serving_environments`, `/inference_services` (with `/model`, `/version`,
    /// `/serves`) and their finds.
    Serving,
    /// `/experiments`, `/experiment_runs` (with `/artifacts`, `/metric_history`) and their finds.
    Experiments,
    /// `POST /events/storage`: storage events register uploads (outside the
    /// API prefixes; mounted by the runtime, see `storage_events`).
    StorageEvents,
    /// `/api/registry_ext/v1/...`: uploads through the registry (an
    /// extension outside the Kubeflow contract; see `uploads`).
    Uploads,
}

impl Slice {
    pub const ALL: [Slice; 7] = [
        Slice::RegisteredModels,
        Slice::ModelVersions,
        Slice::Artifacts,
        Slice::Serving,
        Slice::Experiments,
        Slice::StorageEvents,
        Slice::Uploads,
    ];

    /// Does this slice need the artifact store (served outside the prefixes)?
    pub fn uses_storage(self) -> bool {
        matches!(self, Slice::StorageEvents | Slice::Uploads)
    }
}

/// Which of the API's methods a function serves (`MR_SERVE`). A resource
/// family is deployed twice: a reading function (gets, finds, lists) on a
/// read-only table handle, and a writing one; the routing in front sends
/// `GET` to the first and every other method to the second (infra/).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serve {
    /// Every method (`make run`, a single deployment).
    #[default]
    All,
    /// `GET` and `HEAD` only; the table handle refuses writes.
    Reads,
    /// Every method but `GET` and `HEAD`.
    Writes,
}

impl Serve {
    /// `all`, `reads` or `writes`.
    pub fn parse(raw: &str) -> Option<Serve> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "all" => Some(Serve::All),
            "reads" => Some(Serve::Reads),
            "writes" => Some(Serve::Writes),
            _ => None,
        }
    }

    /// Does this function answer `method` on the API's resource routes?
    /// (Health and the OpenAPI documents are served whatever the role.)
    pub fn admits(self, method: &axum::http::Method) -> Result<(), HttpError> {
        let read = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
        match self {
            Serve::Reads if !read => Err(HttpError::OtherFunction("reads", method.to_string())),
            Serve::Writes if read => Err(HttpError::OtherFunction("writes", method.to_string())),
            _ => Ok(()),
        }
    }
}

/// Shared state of the handlers of one prefix.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Registry,
    /// Which model an entity belongs to (per-model access).
    pub owners: Owners,
    /// Lists being read at once.
    pub list_slots: ListSlots,
    /// v1: an unknown `orderBy` is a 400; v1alpha3 falls back to ID.
    pub strict_order: bool,
}

/// `routes` answering only the methods `serve` admits (a 405 naming
/// `MR_SERVE` for the others); unmatched paths stay 404s. The API's
/// resource routes, and the web interface's forms.
pub(crate) fn only<S: Clone + Send + Sync + 'static>(routes: Router<S>, serve: Serve) -> Router<S> {
    // (axum refuses a route layer over no routes.)
    if serve == Serve::All || !routes.has_routes() {
        return routes;
    }
    routes.route_layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match serve.admits(req.method()) {
                Ok(()) => next.run(req).await,
                Err(e) => ApiError::from(e).into_response(),
            }
        },
    ))
}

/// The router serving `slices` under both prefixes, plus health and
/// 404/405 fallbacks. `max_lists`: lists read at once (see `lists`);
/// `serve`: which methods of the slices' routes are answered.
pub fn router(registry: Registry, slices: &[Slice], max_lists: usize, serve: Serve) -> Router {
    let mut app = Router::new()
        .route("/readyz/health", get(|| async { "OK" }))
        .route("/readyz/isDirty", get(|| async { "false" }));
    let owners = Owners::new(registry.clone());
    let list_slots = ListSlots::new(max_lists);
    for (prefix, strict_order) in PREFIXES {
        let state = ApiState {
            registry: registry.clone(),
            owners: owners.clone(),
            list_slots: list_slots.clone(),
            strict_order,
        };
        let mut api = Router::new();
        for slice in slices {
            api = api.merge(handlers::routes(*slice));
        }
        api = only(api, serve);
        // Built on request (rarely asked for): keeps start-up lean.
        api = api
            .route(
                "/openapi.json",
                get(move || async move {
                    (
                        [("content-type", "application/json")],
                        openapi::document(prefix).to_string(),
                    )
                }),
            )
            .route(
                "/openapi.yaml",
                get(move || async move {
                    match openapi::document_yaml(prefix) {
                        Ok(text) => Ok(([("content-type", "application/yaml")], text)),
                        Err(e) => Err(ApiError::from(HttpError::Encoding(format!(
                            "cannot write the OpenAPI document as YAML: {e}"
                        )))),
                    }
                }),
            );
        app = app.nest(prefix, api.with_state(state));
    }
    // The registry's own extension routes of these slices (`/api/registry_ext/v1`).
    let mut ext = Router::new();
    for slice in slices {
        ext = ext.merge(extension::routes(*slice));
    }
    if ext.has_routes() {
        let ext_state = ApiState {
            registry: registry.clone(),
            owners: owners.clone(),
            list_slots: list_slots.clone(),
            strict_order: true,
        };
        app = app.nest(uploads::PREFIX, only(ext, serve).with_state(ext_state));
    }
    app.fallback(|| async { ApiError::from(HttpError::NoRoute) })
        .method_not_allowed_fallback(|| async { ApiError::from(HttpError::MethodNotAllowed) })
}
