//! The API contract as the deployments must cut it: every path of the
//! Kubeflow Model Registry REST API (upstream OpenAPI v1alpha3 and v1:
//! registered models, model versions, artifacts, serving, experiments), its
//! methods, and the function that owns it. The tests check the binaries, the Knative routing and the Lambda
//! template against this one table.

/// Both API prefixes (clients 0.3.12+ use v1, older ones v1alpha3).
pub const PREFIXES: [&str; 2] = ["/api/model_registry/v1", "/api/model_registry/v1alpha3"];

/// The function binaries (one per resource family), as named in functions/.
pub const FUNCTIONS: [&str; 5] = [
    "registered-models",
    "model-versions",
    "artifacts",
    "serving",
    "experiments",
];

/// A deployed function outside the Kubeflow contract (README "Register
/// models by uploading them", "Upload through the registry").
pub struct Extension {
    pub function: &'static str,
    /// Path prefix the public host routes to it; `None`: events reach it
    /// (a Knative Trigger, an EventBridge rule), not clients.
    pub prefix: Option<&'static str>,
    /// The S3 actions it needs on the artifact bucket's prefix.
    pub s3_actions: &'static [&'static str],
}

/// The extension functions, deployed beside [`FUNCTIONS`].
pub const EXTENSIONS: &[Extension] = &[
    Extension {
        function: "storage-events",
        prefix: None,
        s3_actions: &["s3:GetObject"],
    },
    Extension {
        function: "uploads",
        prefix: Some("/api/registry_ext/v1"),
        s3_actions: &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
    },
];

/// Every deployed function: the contract's, then the extensions'.
pub fn deployed() -> Vec<&'static str> {
    FUNCTIONS
        .iter()
        .copied()
        .chain(EXTENSIONS.iter().map(|e| e.function))
        .collect()
}

/// The extension a function is, if it is one.
pub fn extension(function: &str) -> Option<&'static Extension> {
    EXTENSIONS.iter().find(|e| e.function == function)
}

/// The all-in-one binary, which serves every path.
pub const ALL_IN_ONE: &str = "registry-local";

/// Health path every binary answers (the readiness probe).
pub use registry_test_support::HEALTH;

/// One path template of the API and who serves it.
pub struct Endpoint {
    /// Path under a prefix; `{id}` stands for an entity id.
    pub template: &'static str,
    pub methods: &'static [&'static str],
    pub function: &'static str,
}

impl Endpoint {
    /// The template under `prefix`, with a concrete id.
    pub fn path(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.template.replace("{id}", "1"))
    }
}

const fn ep(
    template: &'static str,
    methods: &'static [&'static str],
    function: &'static str,
) -> Endpoint {
    Endpoint {
        template,
        methods,
        function,
    }
}

pub const ENDPOINTS: &[Endpoint] = &[
    ep("/registered_models", &["GET", "POST"], "registered-models"),
    ep("/registered_model", &["GET"], "registered-models"),
    ep(
        "/registered_models/{id}",
        &["GET", "PATCH"],
        "registered-models",
    ),
    ep(
        "/registered_models/{id}/versions",
        &["GET", "POST"],
        "registered-models",
    ),
    ep("/model_versions", &["GET", "POST"], "model-versions"),
    ep("/model_version", &["GET"], "model-versions"),
    ep("/model_versions/{id}", &["GET", "PATCH"], "model-versions"),
    ep(
        "/model_versions/{id}/artifacts",
        &["GET", "POST"],
        "model-versions",
    ),
    ep("/model_artifacts", &["GET", "POST"], "artifacts"),
    ep("/model_artifact", &["GET"], "artifacts"),
    ep("/model_artifacts/{id}", &["GET", "PATCH"], "artifacts"),
    ep("/artifacts", &["GET", "POST"], "artifacts"),
    ep("/artifact", &["GET"], "artifacts"),
    ep("/artifacts/{id}", &["GET", "PATCH"], "artifacts"),
    ep("/serving_environments", &["GET", "POST"], "serving"),
    ep("/serving_environment", &["GET"], "serving"),
    ep("/serving_environments/{id}", &["GET", "PATCH"], "serving"),
    ep(
        "/serving_environments/{id}/inference_services",
        &["GET", "POST"],
        "serving",
    ),
    ep("/inference_services", &["GET", "POST"], "serving"),
    ep("/inference_service", &["GET"], "serving"),
    ep("/inference_services/{id}", &["GET", "PATCH"], "serving"),
    ep("/inference_services/{id}/model", &["GET"], "serving"),
    ep("/inference_services/{id}/version", &["GET"], "serving"),
    ep(
        "/inference_services/{id}/serves",
        &["GET", "POST"],
        "serving",
    ),
    ep("/experiments", &["GET", "POST"], "experiments"),
    ep("/experiment", &["GET"], "experiments"),
    ep("/experiments/{id}", &["GET", "PATCH"], "experiments"),
    ep(
        "/experiments/{id}/experiment_runs",
        &["GET", "POST"],
        "experiments",
    ),
    ep("/experiment_runs", &["GET", "POST"], "experiments"),
    ep("/experiment_run", &["GET"], "experiments"),
    ep("/experiment_runs/{id}", &["GET", "PATCH"], "experiments"),
    ep(
        "/experiment_runs/{id}/artifacts",
        &["GET", "POST"],
        "experiments",
    ),
    ep(
        "/experiment_runs/{id}/metric_history",
        &["GET"],
        "experiments",
    ),
    ep("/experiment_runs/metric_history", &["GET"], "experiments"),
];

/// Paths under each prefix that every binary serves (so the routing may send
/// them to any one function).
pub const SHARED: [&str; 2] = ["/openapi.json", "/openapi.yaml"];

/// Every shared path under both prefixes.
pub fn shared_paths() -> Vec<String> {
    PREFIXES
        .iter()
        .flat_map(|p| SHARED.iter().map(move |s| format!("{p}{s}")))
        .collect()
}

/// Every (concrete path, method, owning function) of the contract, under both prefixes.
pub fn requests() -> Vec<(String, &'static str, &'static str)> {
    let mut out = Vec::new();
    for prefix in PREFIXES {
        for e in ENDPOINTS {
            for m in e.methods {
                out.push((e.path(prefix), *m, e.function));
            }
        }
    }
    out
}
