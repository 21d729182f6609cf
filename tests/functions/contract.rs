//! The API contract as the deployments must cut it: every path of the
//! Kubeflow Model Registry REST API (upstream OpenAPI v1alpha3 and v1:
//! registered models, model versions, artifacts, serving, experiments), its
//! methods, and the function that owns it; each family deployed twice, a
//! reader (`MR_SERVE=reads`, the GETs) and a writer (`MR_SERVE=writes`, the
//! rest), and what each deployment may do to the table and the bucket; the
//! extensions and the web interface, deployed once each. The tests check
//! the binaries, the Knative routing and the Lambda template against this
//! one table.

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
/// models by uploading them", "Upload through the registry", change events).
pub struct Extension {
    pub function: &'static str,
    /// Path prefix the public host routes to it; `None`: events reach it
    /// (a Knative Trigger or PingSource, an EventBridge rule or schedule),
    /// not clients.
    pub prefix: Option<&'static str>,
    /// What it may do to the metadata table (and its indexes), unconditionally.
    pub table_actions: &'static [&'static str],
    /// What it may do to some items of the table only (see [`KeyedGrant`]).
    pub keyed_grants: &'static [KeyedGrant],
    /// The S3 object actions it needs, on the artifact bucket's prefix.
    pub s3_actions: &'static [&'static str],
    /// The S3 bucket actions it needs, on the bucket itself.
    pub s3_bucket_actions: &'static [&'static str],
}

/// The extension functions, deployed beside [`FUNCTIONS`]. `storage-events`
/// and `uploads` write the registry like a writer, and need
/// `s3:ListBucket`: S3 answers a HEAD of a missing key with 404 only to a
/// caller that may list the bucket (403 otherwise), and `uploads` lists a
/// version's folder. `events` reads the ledger and the entities like a
/// reader, and writes only its own cursor and lease.
pub const EXTENSIONS: &[Extension] = &[
    Extension {
        function: "storage-events",
        prefix: None,
        table_actions: TABLE_WRITER_ACTIONS,
        keyed_grants: &[],
        s3_actions: &["s3:GetObject"],
        s3_bucket_actions: &["s3:ListBucket"],
    },
    Extension {
        function: "uploads",
        prefix: Some("/api/registry_ext/v1"),
        table_actions: TABLE_WRITER_ACTIONS,
        keyed_grants: &[],
        s3_actions: &[
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:AbortMultipartUpload",
        ],
        s3_bucket_actions: &["s3:ListBucket"],
    },
    Extension {
        function: EVENTS,
        prefix: None,
        table_actions: TABLE_READER_ACTIONS,
        keyed_grants: &[DISPATCH_STATE],
        s3_actions: &[],
        s3_bucket_actions: &[],
    },
];

/// The function that delivers the registry's change events to a sink, a
/// round per tick of a schedule (a Knative PingSource, an EventBridge
/// schedule).
pub const EVENTS: &str = "events";

/// The function serving the registry's web interface (`registry::web`):
/// server-rendered pages, and the two forms on them that write
/// ([`WEB_FORMS`]). Deployed once, `MR_SERVE=all` (it has no API routes
/// for `MR_SERVE` to split, and its forms need a table handle that writes),
/// with its own IAM policy ([`WEB_TABLE_ACTIONS`]) and a reader's list
/// cache; routed by path beside the API: `GET /` (a redirect to `/ui/`),
/// and GET and POST ([`WEB_METHODS`]) on `/ui` and everything under it.
pub const WEB: &str = "web";

/// A path of each page of the web interface (`registry::web::routes`, GET),
/// as a browser asks for them.
pub const WEB_PAGES: &[&str] = &[
    "/",
    "/ui",
    "/ui/",
    "/ui/models/1",
    "/ui/versions/1",
    "/ui/compare",
    "/ui/audit",
    "/ui/audit.csv",
    "/ui/experiments",
    "/ui/experiments/1",
    "/ui/runs/1",
    "/ui/deployments",
    "/ui/approvals",
    "/ui/usage",
    "/ui/login",
    "/ui/auth/callback",
    "/ui/signed-out",
];

/// The path of each form of the web interface (`registry::web::routes`,
/// POST), as a browser sends them: an approver's decision on a version,
/// and an alias of a model moved or removed.
pub const WEB_FORMS: &[&str] = &["/ui/versions/1/decision", "/ui/models/1/aliases"];

/// The methods the routing sends to [`WEB`] on `/ui` and under it: the
/// pages' GET and the forms' POST (on `/`, GET alone).
pub const WEB_METHODS: [&str; 2] = ["GET", "POST"];

/// Every function binary that is deployed: the contract's, the extensions',
/// then the web interface's.
pub fn deployed() -> Vec<&'static str> {
    FUNCTIONS
        .iter()
        .copied()
        .chain(EXTENSIONS.iter().map(|e| e.function))
        .chain([WEB])
        .collect()
}

/// `MR_SERVE` of a reading deployment: GET and HEAD, a read-only table.
pub const READS: &str = "reads";
/// `MR_SERVE` of a writing deployment: every other method.
pub const WRITES: &str = "writes";
/// `MR_SERVE` of a deployment that answers every method of its routes, on
/// a table handle that writes ([`WEB`]).
pub const ALL: &str = "all";

/// What a writer (and an extension) may do to the metadata table: get by
/// id and claims, query lists and finds (table and indexes), get the
/// entities of a list page in a batch, put entities and claims, update the
/// id counter, delete a released claim.
pub const TABLE_WRITER_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
];
/// What a reader may do to the metadata table: nothing that writes (a list
/// page is a Query of member entries and a BatchGetItem of their entities).
pub const TABLE_READER_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
];
/// What the web interface may do to the metadata table: read like a
/// reader, and write what its forms change (`Registry::decide`,
/// `Registry::set_alias`, both through `Registry::rewrite`): put the
/// ledger record, then the entity's home and its member entry (and, on an
/// empty table, the layout mark), delete its own ledger record after losing
/// a race. Never UpdateItem: that only takes ids from a counter, for a
/// create, and the forms create nothing.
pub const WEB_TABLE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
];

/// A grant of table actions on the items whose partition keys all match
/// `leading_keys` (IAM's `dynamodb:LeadingKeys`), and on nothing else: a
/// function that otherwise only reads writes one kind of item of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedGrant {
    /// The statement's `Sid` in the function's policy.
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    /// `ForAllValues:StringLike` patterns of `dynamodb:LeadingKeys`.
    pub leading_keys: &'static [&'static str],
}

/// Who read a version (`domain::usage`): the usage records, keys `U#...`.
pub const USAGE_RECORDS: KeyedGrant = KeyedGrant {
    sid: "UsageRecords",
    actions: &["dynamodb:PutItem"],
    leading_keys: &["U#*"],
};

/// Where the delivery of change events stands, and the lease of the round
/// delivering now (`store::layout::dispatch`, keys `DISPATCH#<stream>`).
pub const DISPATCH_STATE: KeyedGrant = KeyedGrant {
    sid: "DispatchState",
    actions: &["dynamodb:PutItem"],
    leading_keys: &["DISPATCH#*"],
};

/// The families whose readers record who read a version (`domain::usage`).
pub const USAGE_RECORDERS: [&str; 2] = ["model-versions", "artifacts"];

/// The environment of the deployments that serve pages of lists (a
/// family's reader, the web interface; see [`Deployment::caches_lists`]),
/// which a writer leaves unset: pages of the global lists (all models, all
/// versions) served again for a second. They come from global indexes,
/// which may lag as much anyway, and a write through the process empties
/// its cache; a writer keeps the default (0, off), as do the extensions.
pub const LIST_CACHE_ENV: &[(&str, &str)] = &[("MR_LIST_CACHE_MS", "1000")];

/// One deployment (a Knative Service, a Lambda function): a name, the
/// binary it runs and the role it runs it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// `<family>`, `<family>-reader`, the extension's name, or [`WEB`].
    pub name: String,
    pub binary: &'static str,
    /// `MR_SERVE`: [`READS`], [`WRITES`], [`ALL`], or unset (every method).
    pub serve: Option<&'static str>,
}

impl Deployment {
    pub fn reads(&self) -> bool {
        self.serve == Some(READS)
    }

    /// Does it set [`LIST_CACHE_ENV`]: a family's reader, the web interface.
    pub fn caches_lists(&self) -> bool {
        self.reads() || self.binary == WEB
    }

    /// The table actions its IAM policy grants unconditionally, exactly.
    pub fn table_actions(&self) -> &'static [&'static str] {
        match extension(self.binary) {
            Some(e) => e.table_actions,
            None if self.binary == WEB => WEB_TABLE_ACTIONS,
            None if self.reads() => TABLE_READER_ACTIONS,
            None => TABLE_WRITER_ACTIONS,
        }
    }

    /// The grants of its IAM policy restricted to some items, exactly.
    pub fn keyed_grants(&self) -> &'static [KeyedGrant] {
        match extension(self.binary) {
            Some(e) => e.keyed_grants,
            None if self.reads() && USAGE_RECORDERS.contains(&self.binary) => &[USAGE_RECORDS],
            None => &[],
        }
    }
}

/// The reading deployment of a family: `<family>-reader`.
pub fn reader(family: &str) -> String {
    format!("{family}-reader")
}

/// Every deployment: per family its writer and its reader, then the
/// extensions, then the web interface.
pub fn deployments() -> Vec<Deployment> {
    let mut out = Vec::new();
    for family in FUNCTIONS {
        out.push(Deployment {
            name: family.to_string(),
            binary: family,
            serve: Some(WRITES),
        });
        out.push(Deployment {
            name: reader(family),
            binary: family,
            serve: Some(READS),
        });
    }
    for e in EXTENSIONS {
        out.push(Deployment {
            name: e.function.to_string(),
            binary: e.function,
            serve: None,
        });
    }
    out.push(Deployment {
        name: WEB.to_string(),
        binary: WEB,
        serve: Some(ALL),
    });
    out
}

/// The deployment named `name`.
pub fn deployment(name: &str) -> Option<Deployment> {
    deployments().into_iter().find(|d| d.name == name)
}

/// The deployment that must serve `method` on a path of `family`: GETs the
/// reader, every other method the writer.
pub fn serving_deployment(family: &str, method: &str) -> String {
    if method == "GET" {
        reader(family)
    } else {
        family.to_string()
    }
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

/// Paths under each prefix that every binary serves, whatever its role (so
/// the routing may send them to any one reader).
pub const SHARED: [&str; 2] = ["/openapi.json", "/openapi.yaml"];

/// Every shared path under both prefixes.
pub fn shared_paths() -> Vec<String> {
    PREFIXES
        .iter()
        .flat_map(|p| SHARED.iter().map(move |s| format!("{p}{s}")))
        .collect()
}

/// Every (concrete path, method, owning family) of the contract, under both prefixes.
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
