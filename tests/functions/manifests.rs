//! Offline checks of `infra/`: the Knative manifests (parse, required fields,
//! names and environment consistent with the binaries, each family's reader
//! its writer but for the role, authentication and the policy, the event
//! sources' tokens, the events function's ticks and sink), the routing
//! (every path and method of the contract to exactly one Service by Gateway
//! API precedence: GETs to the readers, the rest to the writers; the web
//! interface's pages (GET) and forms (POST) to `web`, and nothing else) and
//! the Lambda template (the same split of routes, behind the JWT
//! authorizer; one least-privilege IAM policy per function, read-only for
//! the readers but for the contract's keyed grants, the web interface's
//! without UpdateItem; the events function's schedule; the single table
//! definition, the bundled policy; the web forms' secret).
//! `deployed` then starts the binaries with the configuration found here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value;

use crate::contract::{
    Deployment, ENDPOINTS, EVENTS, EXTENSIONS, FUNCTIONS, HEALTH, KeyedGrant, LIST_CACHE_ENV,
    PREFIXES, TABLE_READER_ACTIONS, WEB, WEB_FORMS, WEB_METHODS, WEB_PAGES, deployed, deployment,
    deployments, extension, reader, requests, serving_deployment, shared_paths,
};
use registry::api::extension as api_extension;
use registry::api::{Slice, uploads};
use registry_tests::routing::{
    METHODS, PathMatchType, ROUTING_YAML, Routing, documents, image_binary,
};

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every manifest under infra/knative/, with the file it came from.
pub(crate) fn knative_documents() -> Vec<(String, Value)> {
    let dir = repo().join("infra/knative");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in documents(&text).unwrap_or_else(|e| panic!("{name}: {e}")) {
            out.push((name.clone(), doc));
        }
    }
    out
}

fn kind_of(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or_default()
}

// ------------------------------------------------------------------ Knative

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KnativeService {
    api_version: String,
    pub(crate) metadata: ObjectMeta,
    pub(crate) spec: KnativeServiceSpec,
}

#[derive(Deserialize)]
pub(crate) struct ObjectMeta {
    pub(crate) name: String,
    pub(crate) namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(crate) struct KnativeServiceSpec {
    pub(crate) template: RevisionTemplate,
}

#[derive(Deserialize)]
pub(crate) struct RevisionTemplate {
    metadata: TemplateMeta,
    pub(crate) spec: RevisionSpec,
}

#[derive(Deserialize)]
struct TemplateMeta {
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RevisionSpec {
    service_account_name: String,
    container_concurrency: u32,
    timeout_seconds: u32,
    pub(crate) containers: Vec<Container>,
    #[serde(default)]
    pub(crate) volumes: Vec<Volume>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Container {
    pub(crate) image: String,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    env_from: Vec<EnvFrom>,
    #[serde(default)]
    pub(crate) volume_mounts: Vec<VolumeMount>,
    readiness_probe: Probe,
    resources: Resources,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumeMount {
    pub(crate) name: String,
    pub(crate) mount_path: String,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    sub_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Volume {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) config_map: Option<ConfigMapVolume>,
}

#[derive(Deserialize)]
pub(crate) struct ConfigMapVolume {
    pub(crate) name: String,
    /// Keys to project, each as a file at `path` (default: every key, named after it).
    #[serde(default)]
    pub(crate) items: Option<Vec<KeyToPath>>,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
pub(crate) struct KeyToPath {
    pub(crate) key: String,
    pub(crate) path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_from: Option<EnvSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvSource {
    #[serde(default)]
    secret_key_ref: Option<KeyRef>,
    #[serde(default)]
    config_map_key_ref: Option<KeyRef>,
}

#[derive(Deserialize)]
struct KeyRef {
    name: String,
    key: String,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvFrom {
    config_map_ref: NameRef,
}

#[derive(Deserialize)]
struct NameRef {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
}

#[derive(Deserialize)]
struct HttpGet {
    path: String,
}

#[derive(Deserialize)]
struct Resources {
    requests: BTreeMap<String, String>,
    limits: BTreeMap<String, String>,
}

/// The environment variables the binaries read: `var("..")` (and the
/// `secs("..")` / `count("..")` settings, the `list("..")` ones of the JWT
/// issuers, the `ms("..")` ones of the change events) in the
/// configuration, the log filter, and the AWS SDK's standard variables.
fn variables_the_binaries_read() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (file, call) in [
        ("shared/src/config.rs", "var(\""),
        ("shared/src/config.rs", "secs(\""),
        ("shared/src/config.rs", "count(\""),
        ("shared/src/config.rs", "list(\""),
        ("shared/src/config.rs", "ms(\""),
        ("shared/src/runtime/mod.rs", "from_env(\""),
        // The web forms' CSRF key (MR_WEB_SECRET), read where it is used.
        ("shared/src/web/csrf.rs", "env::var(\""),
    ] {
        let text = read(file);
        for part in text.split(call).skip(1) {
            if let Some(name) = part.split('"').next() {
                names.insert(name.to_string());
            }
        }
    }
    assert!(
        [
            "MR_STORE",
            "MR_LOG",
            "MR_AUTH",
            "MR_JWT_ISSUER",
            "MR_POLICY"
        ]
        .iter()
        .all(|n| names.contains(*n)),
        "{names:?}"
    );
    for sdk in [
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_S3",
    ] {
        names.insert(sdk.to_string());
    }
    names
}

/// The package name of each directory under functions/.
fn function_packages() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("functions")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{}: no package name", manifest.display()));
        names.insert(name.to_string());
    }
    names
}

/// The data of each ConfigMap of infra/knative, by name.
pub(crate) fn config_maps(docs: &[(String, Value)]) -> BTreeMap<String, BTreeMap<String, String>> {
    docs.iter()
        .filter(|(_, d)| kind_of(d) == "ConfigMap")
        .map(|(_, d)| {
            let meta: ObjectMeta = serde_norway::from_value(d["metadata"].clone()).unwrap();
            let data = serde_norway::from_value(d["data"].clone()).unwrap();
            (meta.name, data)
        })
        .collect()
}

/// The Knative Services of infra/knative (not plain Kubernetes Services),
/// with the file each came from.
pub(crate) fn knative_services(docs: &[(String, Value)]) -> Vec<(String, KnativeService)> {
    docs.iter()
        .filter(|(_, d)| kind_of(d) == "Service" && d["apiVersion"].as_str() != Some("v1"))
        .map(|(file, doc)| {
            let ksvc: KnativeService = serde_norway::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{file}: not a complete Knative Service: {e}"));
            (file.clone(), ksvc)
        })
        .collect()
}

/// The one container of a Knative Service.
pub(crate) fn container_of(ksvc: &KnativeService) -> &Container {
    let [container] = ksvc.spec.template.spec.containers.as_slice() else {
        panic!("{}: expected one container", ksvc.metadata.name);
    };
    container
}

/// A container's environment as Kubernetes builds it: the data of its
/// `envFrom` ConfigMaps in order, then `env`, which wins. Values from a
/// Secret are `None` (unknown here).
pub(crate) fn environment(
    container: &Container,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    at: &str,
) -> BTreeMap<String, Option<String>> {
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    for from in &container.env_from {
        let data = config_maps
            .get(&from.config_map_ref.name)
            .unwrap_or_else(|| panic!("{at}: ConfigMap {} not defined", from.config_map_ref.name));
        for (k, v) in data {
            env.insert(k.clone(), Some(v.clone()));
        }
    }
    for var in &container.env {
        let value = match (&var.value, &var.value_from) {
            (Some(v), None) => Some(v.clone()),
            (None, Some(src)) => {
                if let Some(r) = &src.secret_key_ref {
                    assert!(
                        r.optional,
                        "{at}: {} needs Secret {} to exist",
                        var.name, r.name
                    );
                    assert_eq!(r.key, var.name, "{at}: Secret key named after the variable");
                }
                if let Some(r) = &src.config_map_key_ref {
                    let data = &config_maps[&r.name];
                    assert!(
                        data.contains_key(&r.key),
                        "{at}: {}:{} missing",
                        r.name,
                        r.key
                    );
                }
                None
            }
            _ => panic!("{at}: {} needs one of value / valueFrom", var.name),
        };
        env.insert(var.name.clone(), value);
    }
    env
}

#[test]
fn knative_services_are_complete_and_consistent_with_the_binaries() {
    let docs = knative_documents();
    let readable = variables_the_binaries_read();
    let packages = function_packages();
    let config_maps = config_maps(&docs);
    let service_accounts: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|(_, d)| kind_of(d) == "ServiceAccount")
        .map(|(_, d)| {
            let meta: ObjectMeta = serde_norway::from_value(d["metadata"].clone()).unwrap();
            (meta.namespace, meta.name)
        })
        .collect();

    let mut seen = BTreeSet::new();
    for (file, doc) in docs.iter().filter(|(_, d)| kind_of(d) == "Service") {
        if doc["apiVersion"].as_str() == Some("v1") {
            continue; // a plain Kubernetes Service, not a Knative one
        }
        let ksvc: KnativeService = serde_norway::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{file}: not a complete Knative Service: {e}"));
        let name = ksvc.metadata.name.clone();
        let at = format!("{file} ({name})");
        assert_eq!(ksvc.api_version, "serving.knative.dev/v1", "{at}");
        let deployment =
            deployment(&name).unwrap_or_else(|| panic!("{at}: not a deployment of the contract"));
        assert!(seen.insert(name.clone()), "{at}: defined twice");
        assert_eq!(
            ksvc.metadata
                .labels
                .get("networking.knative.dev/visibility")
                .map(String::as_str),
            Some("cluster-local"),
            "{at}: must be reached only through the routing"
        );

        // scaling and concurrency
        let scale = &ksvc.spec.template.metadata.annotations;
        let min: u32 = scale["autoscaling.knative.dev/min-scale"].parse().unwrap();
        let max: u32 = scale["autoscaling.knative.dev/max-scale"].parse().unwrap();
        assert!(min <= max && max > 0, "{at}: scale {min}..{max}");
        let spec = &ksvc.spec.template.spec;
        assert!(spec.container_concurrency > 0, "{at}: containerConcurrency");
        assert!(spec.timeout_seconds > 0, "{at}: timeoutSeconds");
        assert_eq!(
            spec.service_account_name, name,
            "{at}: one ServiceAccount per function"
        );
        assert!(
            service_accounts.contains(&(ksvc.metadata.namespace.clone(), name.clone())),
            "{at}: ServiceAccount {name} is not defined in {}",
            ksvc.metadata.namespace
        );

        // the container: image named after the binary, probe, resources
        let [container] = spec.containers.as_slice() else {
            panic!("{at}: expected one container");
        };
        let binary = image_binary(&container.image);
        assert_eq!(
            binary, deployment.binary,
            "{at}: image {} is not named after the binary {}",
            container.image, deployment.binary
        );
        assert!(
            packages.contains(binary),
            "{at}: no functions/ package {binary}"
        );
        assert!(
            container.image.contains(':') || container.image.contains('@'),
            "{at}: untagged image"
        );
        for port in &container.ports {
            assert_eq!(
                port.container_port, 8080,
                "{at}: the binary listens on $PORT (8080 by Knative)"
            );
            assert!(
                matches!(port.name.as_deref(), None | Some("http1")),
                "{at}: port name"
            );
        }
        assert_eq!(
            container.readiness_probe.http_get.path, HEALTH,
            "{at}: readiness probe"
        );
        for key in ["cpu", "memory"] {
            assert!(
                container.resources.requests.contains_key(key),
                "{at}: requests.{key}"
            );
            assert!(
                container.resources.limits.contains_key(key),
                "{at}: limits.{key}"
            );
        }

        // the environment: only variables the binary reads; PORT is Knative's
        let env = environment(container, &config_maps, &at);
        for name in env.keys() {
            assert_ne!(name, "PORT", "{at}: Knative sets PORT");
            assert!(
                readable.contains(name),
                "{at}: the binaries do not read {name}"
            );
        }
        assert_eq!(
            env.get("MR_STORE"),
            Some(&Some("dynamodb".to_string())),
            "{at}: several pods need the shared store (the embedded one is single-process)"
        );
        assert!(
            !matches!(env.get("MR_CREATE_TABLE"), Some(Some(v)) if v == "true"),
            "{at}: creating the table at start-up is network I/O before the first request"
        );
        // the role: set in the Service itself, so no ConfigMap can change it
        assert_eq!(
            env.get("MR_SERVE").cloned().flatten().as_deref(),
            deployment.serve,
            "{at}: MR_SERVE"
        );
        assert!(
            container
                .env
                .iter()
                .all(|v| v.name != "MR_SERVE" || v.value.is_some()),
            "{at}: MR_SERVE is a literal value"
        );
    }
    let expected: BTreeSet<String> = deployments().into_iter().map(|d| d.name).collect();
    assert_eq!(
        seen, expected,
        "one Knative Service per deployment: a writer and a reader per family, the extensions"
    );
}

/// The raw documents of the Knative Services, by name.
fn knative_service_documents(docs: &[(String, Value)]) -> BTreeMap<String, (String, Value)> {
    docs.iter()
        .filter(|(_, d)| {
            kind_of(d) == "Service" && d["apiVersion"].as_str() == Some("serving.knative.dev/v1")
        })
        .map(|(file, d)| {
            let name = d["metadata"]["name"].as_str().unwrap().to_string();
            (name, (file.clone(), d.clone()))
        })
        .collect()
}

#[test]
fn knative_readers_are_their_writers_but_for_the_role() {
    let docs = knative_documents();
    let services = knative_service_documents(&docs);
    // A Service without what may differ: its name (in the labels too), the
    // ServiceAccount, the scale bounds, MR_SERVE and the reader-only
    // environment (checked below).
    let comparable = |doc: &Value| -> Value {
        let mut doc = doc.clone();
        for labels in [
            &["metadata", "labels"][..],
            &["spec", "template", "metadata", "labels"],
        ] {
            let labels = labels.iter().fold(&mut doc, |v, key| &mut v[*key]);
            labels
                .as_mapping_mut()
                .unwrap()
                .remove("app.kubernetes.io/name");
        }
        doc["metadata"].as_mapping_mut().unwrap().remove("name");
        let template = &mut doc["spec"]["template"];
        let annotations = template["metadata"]["annotations"]
            .as_mapping_mut()
            .unwrap();
        annotations.remove("autoscaling.knative.dev/min-scale");
        annotations.remove("autoscaling.knative.dev/max-scale");
        let spec = template["spec"].as_mapping_mut().unwrap();
        spec.remove("serviceAccountName");
        spec["containers"][0]["env"]
            .as_sequence_mut()
            .unwrap()
            .retain(|v| {
                let name = v["name"].as_str();
                name != Some("MR_SERVE") && LIST_CACHE_ENV.iter().all(|(n, _)| name != Some(n))
            });
        doc
    };
    // Every Service's environment as Kubernetes builds it, by name.
    let config_maps = config_maps(&docs);
    let environments: BTreeMap<String, BTreeMap<String, Option<String>>> = knative_services(&docs)
        .iter()
        .map(|(file, ksvc)| {
            let at = format!("{file} ({})", ksvc.metadata.name);
            let env = environment(container_of(ksvc), &config_maps, &at);
            (ksvc.metadata.name.clone(), env)
        })
        .collect();
    let scale = |doc: &Value, key: &str| -> u32 {
        doc["spec"]["template"]["metadata"]["annotations"][format!("autoscaling.knative.dev/{key}")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    for family in FUNCTIONS {
        let reader_name = reader(family);
        let (wfile, writer) = &services[family];
        let (rfile, reading) = services
            .get(&reader_name)
            .unwrap_or_else(|| panic!("no Knative Service {reader_name}"));
        let at = format!("{rfile} ({reader_name})");
        assert_eq!(rfile, wfile, "{at}: beside its writer");
        assert_eq!(
            comparable(reading),
            comparable(writer),
            "{at}: the same as {family} (namespace, labels, image, environment, probes, limits, \
             security context, volumes) but for the name, ServiceAccount, scale, MR_SERVE and \
             {LIST_CACHE_ENV:?}"
        );
        for labels in [
            &reading["metadata"]["labels"],
            &reading["spec"]["template"]["metadata"]["labels"],
        ] {
            assert_eq!(
                labels["app.kubernetes.io/name"].as_str(),
                Some(reader_name.as_str()),
                "{at}: labels name the reader"
            );
        }
        assert_eq!(
            reading["spec"]["template"]["spec"]["serviceAccountName"].as_str(),
            Some(reader_name.as_str()),
            "{at}: its own ServiceAccount (an IAM role that only reads)"
        );
        assert_eq!(scale(reading, "min-scale"), 0, "{at}: scales to zero");
        assert!(
            scale(reading, "max-scale") >= scale(writer, "max-scale"),
            "{at}: reads dominate; at least the writer's max-scale"
        );
    }
    // The list cache: set by every reader and the web interface, by no
    // writer or extension (so not in a ConfigMap they share).
    for d in deployments() {
        for (name, value) in LIST_CACHE_ENV {
            let expected = d.caches_lists().then(|| Some(value.to_string()));
            assert_eq!(
                environments[&d.name].get(*name),
                expected.as_ref(),
                "{}: {name}",
                d.name
            );
        }
    }
}

// ------------------------------------------------------------------ Security

/// The ConfigMap holding the policy every function mounts (`MR_POLICY`).
pub(crate) const POLICY_CONFIG_MAP: &str = "model-registry-policy";

/// Where a Lambda function finds the policy `make lambda-zip` bundles:
/// Lambda unpacks the zip in `/var/task`.
pub(crate) const LAMBDA_POLICY: &str = "/var/task/policy.yaml";

/// The shape of a policy file (`MR_POLICY`), read strictly: a misspelt
/// field is an error here as it is at start-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    pub(crate) bindings: Vec<PolicyBinding>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyBinding {
    pub(crate) role: Role,
    #[serde(default)]
    pub(crate) users: Vec<String>,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    /// Registered-model name globs; `None`: every model.
    #[serde(default)]
    pub(crate) models: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Reader,
    Writer,
    Approver,
    Admin,
}

impl PolicyFile {
    /// Parse and check a policy: bindings that name someone, `models`
    /// absent or a list of patterns.
    pub(crate) fn parse(text: &str, at: &str) -> PolicyFile {
        let policy: PolicyFile =
            serde_norway::from_str(text).unwrap_or_else(|e| panic!("{at}: not a policy: {e}"));
        assert!(!policy.bindings.is_empty(), "{at}: no bindings");
        for (i, b) in policy.bindings.iter().enumerate() {
            assert!(
                !b.users.is_empty() || !b.groups.is_empty(),
                "{at}: bindings[{i}] names no users and no groups"
            );
            for name in b.users.iter().chain(&b.groups) {
                assert!(
                    !name.trim().is_empty(),
                    "{at}: bindings[{i}]: an empty name"
                );
            }
            if let Some(models) = &b.models {
                assert!(
                    !models.is_empty() && models.iter().all(|m| !m.is_empty()),
                    "{at}: bindings[{i}]: models must list patterns (leave it out for every model)"
                );
            }
        }
        policy
    }

    /// The roles the bindings that name `user` give it.
    pub(crate) fn roles_of(&self, user: &str) -> Vec<Role> {
        self.bindings
            .iter()
            .filter(|b| b.users.iter().any(|u| u == user))
            .map(|b| b.role)
            .collect()
    }

    /// May `user` create and update every model (a writer or admin binding
    /// that names it, without `models`)?
    pub(crate) fn writes_everything(&self, user: &str) -> bool {
        self.bindings.iter().any(|b| {
            matches!(b.role, Role::Writer | Role::Admin)
                && b.models.is_none()
                && b.users.iter().any(|u| u == user)
        })
    }
}

/// The users a Knative Eventing sender's OIDC tokens name: the
/// ServiceAccount Eventing creates for the resource
/// (`.status.auth.serviceAccountName`), `<name>-oidc-<group>-<kind>` in
/// recent releases, `oidc-<group>-<kind>-<name>` in the first ones (kind in
/// lower case).
fn sender_identities(namespace: &str, group_kind: &str, name: &str) -> [String; 2] {
    [
        format!("system:serviceaccount:{namespace}:{name}-oidc-{group_kind}"),
        format!("system:serviceaccount:{namespace}:oidc-{group_kind}-{name}"),
    ]
}

/// The users a Knative Eventing Trigger's OIDC tokens name (the broker
/// delivering to its subscriber).
pub(crate) fn trigger_identities(namespace: &str, trigger: &str) -> [String; 2] {
    sender_identities(namespace, "eventing.knative.dev-trigger", trigger)
}

/// The users a PingSource's OIDC tokens name (its adapter posting to its sink).
pub(crate) fn ping_source_identities(namespace: &str, source: &str) -> [String; 2] {
    sender_identities(namespace, "sources.knative.dev-pingsource", source)
}

/// A comma-separated setting as the binaries split it.
pub(crate) fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The ConfigMap and key whose file the container sees at `path`: a mount
/// of a ConfigMap volume (without `subPath`, which would never see the
/// ConfigMap change), and the key projected at the rest of the path.
pub(crate) fn mounted_config_map(ksvc: &KnativeService, path: &str, at: &str) -> (String, String) {
    let container = container_of(ksvc);
    let mount = container
        .volume_mounts
        .iter()
        .find(|m| path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/'))))
        .unwrap_or_else(|| panic!("{at}: nothing is mounted at {path}"));
    assert!(
        mount.sub_path.is_none(),
        "{at}: {path}: a subPath mount never sees its ConfigMap change"
    );
    let rest = &path[mount.mount_path.trim_end_matches('/').len() + 1..];
    let volume = ksvc
        .spec
        .template
        .spec
        .volumes
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("{at}: volume {} is not defined", mount.name));
    let config_map = volume
        .config_map
        .as_ref()
        .unwrap_or_else(|| panic!("{at}: {path} is not in a ConfigMap volume"));
    let key = match &config_map.items {
        Some(items) => items
            .iter()
            .find(|i| i.path == rest)
            .unwrap_or_else(|| {
                panic!(
                    "{at}: no item of {} is projected at {path}",
                    config_map.name
                )
            })
            .key
            .clone(),
        None => {
            assert!(
                !rest.contains('/'),
                "{at}: {path}: keys are files at the mount's root"
            );
            rest.to_string()
        }
    };
    (config_map.name.clone(), key)
}

/// The policy a Knative Service mounts at `MR_POLICY`, parsed.
pub(crate) fn mounted_policy(
    ksvc: &KnativeService,
    env: &BTreeMap<String, Option<String>>,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    at: &str,
) -> PolicyFile {
    let path = env.get("MR_POLICY").cloned().flatten().unwrap_or_else(|| {
        panic!("{at}: no MR_POLICY: every authenticated caller could do everything")
    });
    let (name, key) = mounted_config_map(ksvc, &path, at);
    assert_eq!(
        name, POLICY_CONFIG_MAP,
        "{at}: MR_POLICY is not the policy ConfigMap"
    );
    let text = config_maps
        .get(&name)
        .and_then(|data| data.get(&key))
        .unwrap_or_else(|| panic!("{at}: ConfigMap {name} has no key {key}"));
    PolicyFile::parse(text, &format!("{at}: {name}/{key}"))
}

#[test]
fn knative_services_authenticate_callers_and_mount_the_policy() {
    let docs = knative_documents();
    let config_maps = config_maps(&docs);
    let routing = Routing::load(ROUTING_YAML).unwrap();
    let services = knative_services(&docs);
    assert_eq!(services.len(), deployments().len());
    for (file, ksvc) in &services {
        let at = format!("{file} ({})", ksvc.metadata.name);
        let spec = &ksvc.spec.template.spec;
        let container = container_of(ksvc);
        let env = environment(container, &config_maps, &at);
        let get = |k: &str| env.get(k).cloned().flatten();

        // Who is calling: never the default `none`, under which anyone who
        // reaches a pod may do everything.
        let auth = get("MR_AUTH").unwrap_or_else(|| panic!("{at}: MR_AUTH is not set"));
        assert!(
            matches!(auth.as_str(), "jwt" | "header"),
            "{at}: MR_AUTH={auth} (jwt, or header behind Kubeflow's gateway)"
        );
        // The pod is reached on its own address, never on loopback only.
        if let Some(bind) = get("MR_BIND") {
            let ip: std::net::IpAddr = bind.trim_matches(['[', ']']).parse().unwrap();
            assert!(
                !ip.is_loopback(),
                "{at}: MR_BIND={bind}: unreachable in a pod"
            );
        }
        if auth == "jwt" {
            let issuers = list(get("MR_JWT_ISSUER").as_deref());
            let jwks = list(get("MR_JWT_JWKS").as_deref());
            assert!(
                !issuers.is_empty() && issuers.len() == jwks.len(),
                "{at}: MR_JWT_ISSUER and MR_JWT_JWKS pair up: {issuers:?} / {jwks:?}"
            );
            assert!(
                get("MR_JWT_AUDIENCE").is_some_and(|a| !a.is_empty()),
                "{at}: MR_JWT_AUDIENCE"
            );
            for source in &jwks {
                if source.starts_with("https://") {
                    continue;
                }
                assert!(
                    !source.contains("://"),
                    "{at}: JWKS {source}: https or a file"
                );
                // A file: a key of a ConfigMap the operator keeps current.
                mounted_config_map(ksvc, source, &at);
            }
        }

        // Who may do what: the policy ConfigMap, mounted read-only.
        mounted_policy(ksvc, &env, &config_maps, &at);
        for mount in &container.volume_mounts {
            assert!(
                mount.read_only,
                "{at}: {} must be mounted readOnly",
                mount.name
            );
            let volume = spec.volumes.iter().find(|v| v.name == mount.name);
            let config_map = volume
                .and_then(|v| v.config_map.as_ref())
                .unwrap_or_else(|| panic!("{at}: {} is not a ConfigMap volume", mount.name));
            assert!(
                config_maps.contains_key(&config_map.name) || config_map.optional,
                "{at}: ConfigMap {} is neither here nor optional: pods would not start",
                config_map.name
            );
        }

        // Limits within the revision: Knative ends a request after
        // timeoutSeconds, and makes it the pod's terminationGracePeriodSeconds.
        let secs = |k: &str, default: u32| {
            get(k).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{at}: {k}={v} is not a number"))
            })
        };
        let timeout = spec.timeout_seconds;
        assert!(
            secs("MR_SHUTDOWN_GRACE_SECS", 20) < timeout,
            "{at}: MR_SHUTDOWN_GRACE_SECS must end before the pod is killed ({timeout} s)"
        );
        assert!(
            secs("MR_REQUEST_TIMEOUT_SECS", 30) < timeout,
            "{at}: MR_REQUEST_TIMEOUT_SECS must answer before the queue-proxy gives up ({timeout} s)"
        );
        assert!(
            secs("MR_MAX_IN_FLIGHT", 256) >= spec.container_concurrency,
            "{at}: MR_MAX_IN_FLIGHT would shed requests that containerConcurrency admits"
        );

        // JSON logs (one access-log line per request), and the public origin
        // the functions cannot see behind the Host rewrite.
        assert_eq!(get("MR_LOG_FORMAT").as_deref(), Some("json"), "{at}");
        let public = get("MR_PUBLIC_URL").unwrap_or_else(|| panic!("{at}: MR_PUBLIC_URL"));
        let host = public
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', ':']).next())
            .unwrap_or_default();
        assert!(
            routing.hostnames.iter().any(|h| h == host),
            "{at}: MR_PUBLIC_URL {public} is not a host of the routing {:?}",
            routing.hostnames
        );
    }
}

/// What sends events to a function here: a Trigger (the broker, to its
/// subscriber) or a PingSource (to its sink).
struct EventSource<'d> {
    at: String,
    namespace: String,
    /// The `Destination`: `spec.subscriber` or `spec.sink`.
    destination: &'d Value,
    /// Whom its OIDC tokens name.
    identities: [String; 2],
}

/// The Triggers and PingSources of infra/knative.
fn event_sources(docs: &[(String, Value)]) -> Vec<EventSource<'_>> {
    docs.iter()
        .filter_map(|(file, doc)| {
            let kind = kind_of(doc);
            let meta: ObjectMeta = match kind {
                "Trigger" | "PingSource" => {
                    serde_norway::from_value(doc["metadata"].clone()).unwrap()
                }
                _ => return None,
            };
            let (destination, identities) = if kind == "Trigger" {
                assert_eq!(
                    doc["apiVersion"].as_str(),
                    Some("eventing.knative.dev/v1"),
                    "{file}"
                );
                (
                    &doc["spec"]["subscriber"],
                    trigger_identities(&meta.namespace, &meta.name),
                )
            } else {
                assert_eq!(
                    doc["apiVersion"].as_str(),
                    Some("sources.knative.dev/v1"),
                    "{file}"
                );
                (
                    &doc["spec"]["sink"],
                    ping_source_identities(&meta.namespace, &meta.name),
                )
            };
            Some(EventSource {
                at: format!("{file} ({kind} {})", meta.name),
                namespace: meta.namespace,
                destination,
                identities,
            })
        })
        .collect()
}

/// The Knative Service a destination names (`ref` to a Service of its
/// namespace).
fn destination_service<'k>(
    services: &'k [(String, KnativeService)],
    destination: &Value,
    namespace: &str,
    at: &str,
) -> &'k KnativeService {
    let reference = &destination["ref"];
    assert_eq!(
        reference["apiVersion"].as_str(),
        Some("serving.knative.dev/v1"),
        "{at}"
    );
    assert_eq!(reference["kind"].as_str(), Some("Service"), "{at}");
    let name = reference["name"].as_str().unwrap();
    services
        .iter()
        .map(|(_, k)| k)
        .find(|k| k.metadata.name == name && k.metadata.namespace == namespace)
        .unwrap_or_else(|| panic!("{at}: {name} is not a Knative Service here"))
}

#[test]
fn event_sources_send_oidc_tokens_the_functions_accept() {
    let docs = knative_documents();
    let config_maps = config_maps(&docs);
    let services = knative_services(&docs);
    let mut fed = BTreeSet::new();
    for source in event_sources(&docs) {
        let at = &source.at;
        let ksvc = destination_service(&services, source.destination, &source.namespace, at);
        let name = &ksvc.metadata.name;
        let ext = extension(name)
            .filter(|e| e.prefix.is_none())
            .unwrap_or_else(|| panic!("{at}: {name} is not a function events reach"));
        fed.insert(ext.function);
        let container = container_of(ksvc);
        // Eventing sends bearer tokens, never Kubeflow's headers: jwt in
        // the Service itself, whatever auth.yaml (or header-mode) says.
        assert!(
            container
                .env
                .iter()
                .any(|v| v.name == "MR_AUTH" && v.value.as_deref() == Some("jwt")),
            "{at}: {name} sets MR_AUTH=jwt itself"
        );
        let env = environment(container, &config_maps, at);
        let audience = source.destination["audience"].as_str().unwrap_or_else(|| {
            panic!("{at}: no audience on its destination: Eventing would send no token")
        });
        assert_eq!(
            env.get("MR_JWT_AUDIENCE").cloned().flatten().as_deref(),
            Some(audience),
            "{at}: the function accepts tokens for the source's audience"
        );
        let policy = mounted_policy(ksvc, &env, &config_maps, at);
        let ids = &source.identities;
        if ext.function == EVENTS {
            // A round needs its caller named in the policy, nothing more:
            // the tick's identity is a reader, so it cannot change a model
            // elsewhere either.
            let roles: Vec<Role> = ids.iter().flat_map(|id| policy.roles_of(id)).collect();
            assert!(
                !roles.is_empty() && roles.iter().all(|r| *r == Role::Reader),
                "{at}: the policy names the source's identity ({ids:?}) as a reader only: {roles:?}"
            );
        } else {
            assert!(
                ids.iter().any(|id| policy.writes_everything(id)),
                "{at}: the policy does not let the source's identity ({ids:?}) register models"
            );
        }
    }
    let expected: BTreeSet<&str> = EXTENSIONS
        .iter()
        .filter(|e| e.prefix.is_none())
        .map(|e| e.function)
        .collect();
    assert_eq!(
        fed, expected,
        "every function events reach is fed by a source"
    );
}

/// A number in the source of the binaries: the digits right after `after`
/// in `file` (`_` separators allowed), so a test follows a default or a
/// constant there instead of copying it.
fn number_in_source(file: &str, after: &str) -> u64 {
    let text = read(file);
    let rest = text
        .split_once(after)
        .unwrap_or_else(|| panic!("{file}: no `{after}`"))
        .1;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '_')
        .filter(|c| *c != '_')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{file}: no number after `{after}`"))
}

/// How long a round of change events may last, in ms, with `round_ms` its
/// `MR_EVENTS_ROUND_MS` (the default when `None`): the round, and a
/// delivery started just before its end, which may take up to the sink's
/// timeout.
fn events_round_bound_ms(round_ms: Option<&str>) -> u64 {
    let round = round_ms.map_or_else(
        || number_in_source("shared/src/config.rs", "ms(\"MR_EVENTS_ROUND_MS\", "),
        |v| v.parse().expect("MR_EVENTS_ROUND_MS is a number"),
    );
    let delivery_secs = number_in_source(
        "shared/src/events/mod.rs",
        "DELIVERY_TIMEOUT: Duration = Duration::from_secs(",
    );
    round + delivery_secs * 1000
}

/// A cron schedule of every minute (the only one the events function is
/// ticked on here): its period in ms.
fn every_minute(schedule: &str, at: &str) -> u64 {
    assert_eq!(
        schedule.split_whitespace().collect::<Vec<_>>(),
        ["*", "*", "*", "*", "*"],
        "{at}: a round per minute"
    );
    60_000
}

#[test]
fn knative_events_function_is_ticked_and_bound_to_its_sink() {
    let docs = knative_documents();
    let config_maps = config_maps(&docs);
    let services = knative_services(&docs);
    let (file, ksvc) = services
        .iter()
        .find(|(_, k)| k.metadata.name == EVENTS)
        .expect("a Knative Service of the events function");
    let at = format!("{file} ({EVENTS})");
    let container = container_of(ksvc);
    let env = environment(container, &config_maps, &at);
    let get = |k: &str| env.get(k).cloned().flatten();

    // Scale to zero between ticks, and one pod at most: a round holds the
    // stream's lease, so a second pod would only find it busy.
    let scale = &ksvc.spec.template.metadata.annotations;
    assert_eq!(scale["autoscaling.knative.dev/min-scale"], "0", "{at}");
    assert_eq!(scale["autoscaling.knative.dev/max-scale"], "1", "{at}");

    // Ticks: a PingSource posting to it every minute. A round (and its
    // last delivery) ends before the edge answers 503, and before the next
    // tick, so ticks do not find the lease still held.
    let ticks: Vec<_> = docs
        .iter()
        .filter(|(_, d)| kind_of(d) == "PingSource")
        .filter(|(_, d)| d["spec"]["sink"]["ref"]["name"].as_str() == Some(EVENTS))
        .collect();
    let [(ping_file, ping)] = ticks.as_slice() else {
        panic!("one PingSource ticks {EVENTS}, found {}", ticks.len());
    };
    let schedule = ping["spec"]["schedule"].as_str().expect("spec.schedule");
    let period = every_minute(schedule, ping_file);
    let bound = events_round_bound_ms(get("MR_EVENTS_ROUND_MS").as_deref());
    let request_ms =
        get("MR_REQUEST_TIMEOUT_SECS").map_or(30, |v| v.parse::<u64>().unwrap()) * 1000;
    assert!(
        bound < request_ms,
        "{at}: a round may take {bound} ms, MR_REQUEST_TIMEOUT_SECS would cut it at {request_ms}"
    );
    assert!(
        bound < period,
        "{at}: a round may take {bound} ms, longer than the {period} ms between ticks"
    );
    assert!(
        get("MR_SERVE").is_none_or(|s| s != "reads"),
        "{at}: a round writes its cursor"
    );

    // The sink: K_SINK, which a SinkBinding on this Service injects (and
    // keeps current), not a value of the manifest.
    assert!(
        !env.contains_key("K_SINK"),
        "{at}: K_SINK is the SinkBinding's to set"
    );
    let bindings: Vec<_> = docs
        .iter()
        .filter(|(_, d)| kind_of(d) == "SinkBinding")
        .collect();
    let [(binding_file, binding)] = bindings.as_slice() else {
        panic!("one SinkBinding, found {}", bindings.len());
    };
    assert_eq!(
        binding["apiVersion"].as_str(),
        Some("sources.knative.dev/v1"),
        "{binding_file}"
    );
    assert_eq!(
        binding["metadata"]["namespace"].as_str(),
        Some(ksvc.metadata.namespace.as_str()),
        "{binding_file}: beside its subject"
    );
    let subject = &binding["spec"]["subject"];
    assert_eq!(
        subject["apiVersion"].as_str(),
        Some("serving.knative.dev/v1"),
        "{binding_file}"
    );
    assert_eq!(subject["kind"].as_str(), Some("Service"), "{binding_file}");
    assert_eq!(
        subject["name"].as_str(),
        Some(EVENTS),
        "{binding_file}: binds the events function"
    );
    let sink = &binding["spec"]["sink"];
    let names_a_sink = ["apiVersion", "kind", "name"]
        .iter()
        .all(|k| sink["ref"][*k].as_str().is_some_and(|v| !v.is_empty()))
        || sink["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
    assert!(
        names_a_sink,
        "{binding_file}: spec.sink is a ref or an http(s) uri"
    );
}

#[test]
fn header_mode_admits_only_the_gateways_path() {
    let dir = "infra/knative/header-mode";
    let component: Value =
        serde_norway::from_str(&read(&format!("{dir}/kustomization.yaml"))).unwrap();
    assert_eq!(
        component["kind"].as_str(),
        Some("Component"),
        "included by components:"
    );
    assert!(
        read("infra/knative/kustomization.yaml").contains("header-mode"),
        "the base kustomization shows how to include it"
    );
    let seq = |key: &str| -> Vec<String> {
        component[key]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|r| {
                        r.as_str()
                            .or_else(|| r["path"].as_str())
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let resources = seq("resources");
    let patches = seq("patches");
    let files: BTreeSet<String> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    let listed: BTreeSet<String> = resources.iter().chain(&patches).cloned().collect();
    assert_eq!(listed, files, "every file of {dir} is used");

    // The patch: MR_AUTH=header in the auth ConfigMap of the base.
    let docs = knative_documents();
    let base = config_maps(&docs);
    let mut patched = base.clone();
    let readable = variables_the_binaries_read();
    let mut header = false;
    for patch in &patches {
        for doc in documents(&read(&format!("{dir}/{patch}"))).unwrap() {
            let meta: ObjectMeta = serde_norway::from_value(doc["metadata"].clone()).unwrap();
            assert_eq!(kind_of(&doc), "ConfigMap", "{patch}");
            assert!(
                base.contains_key(&meta.name),
                "{patch}: {} is not in the base",
                meta.name
            );
            let data: BTreeMap<String, String> =
                serde_norway::from_value(doc["data"].clone()).unwrap();
            for key in data.keys() {
                assert!(
                    readable.contains(key),
                    "{patch}: the binaries do not read {key}"
                );
            }
            header |= data.get("MR_AUTH").map(String::as_str) == Some("header");
            patched.get_mut(&meta.name).unwrap().extend(data);
        }
    }
    assert!(header, "{dir} sets MR_AUTH=header");
    // Every API Service takes it, readers and writers alike; only the
    // functions events reach (storage-events, events) keep verifying
    // Eventing's tokens (their own MR_AUTH).
    for (file, ksvc) in knative_services(&docs) {
        let name = &ksvc.metadata.name;
        let at = format!("{file} ({name})");
        let env = environment(container_of(&ksvc), &patched, &at);
        let expected = if extension(name).is_some_and(|e| e.prefix.is_none()) {
            "jwt"
        } else {
            "header"
        };
        assert_eq!(
            env.get("MR_AUTH").cloned().flatten().as_deref(),
            Some(expected),
            "{at}: MR_AUTH with {dir}"
        );
    }

    // The NetworkPolicy: every pod of the namespace, ingress only from the
    // namespaces of the gateways routing.yaml sends to, and Knative's
    // activator (knative-serving).
    let routing = Routing::load(ROUTING_YAML).unwrap();
    let mut expected: BTreeSet<String> = routing
        .backends
        .iter()
        .map(|b| b.split_once('/').unwrap().0.to_string())
        .collect();
    expected.insert("knative-serving".to_string());
    let mut policies = Vec::new();
    for file in &resources {
        for doc in documents(&read(&format!("{dir}/{file}"))).unwrap() {
            if kind_of(&doc) == "NetworkPolicy" {
                policies.push((file.clone(), doc));
            }
        }
    }
    let [(file, policy)] = policies.as_slice() else {
        panic!(
            "{dir}: expected one NetworkPolicy, found {}",
            policies.len()
        );
    };
    assert_eq!(
        policy["apiVersion"].as_str(),
        Some("networking.k8s.io/v1"),
        "{file}"
    );
    assert_eq!(
        policy["metadata"]["namespace"].as_str(),
        Some(routing.namespace.as_str())
    );
    let spec = &policy["spec"];
    assert!(
        spec["podSelector"]
            .as_mapping()
            .is_some_and(|m| m.is_empty()),
        "{file}: podSelector {{}} selects every pod of the namespace"
    );
    assert!(
        spec["policyTypes"]
            .as_sequence()
            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("Ingress"))),
        "{file}: policyTypes Ingress"
    );
    let mut admitted = BTreeSet::new();
    let rules = spec["ingress"].as_sequence().expect("ingress rules");
    assert!(!rules.is_empty(), "{file}: no rule admits the gateways");
    for rule in rules {
        let peers = rule["from"]
            .as_sequence()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| panic!("{file}: a rule without `from` admits everyone"));
        for peer in peers {
            let peer = peer.as_mapping().unwrap();
            assert_eq!(
                peer.keys().map(|k| k.as_str().unwrap()).collect::<Vec<_>>(),
                ["namespaceSelector"],
                "{file}: peers are namespaces (no ipBlock, no pods of this namespace)"
            );
            let labels = peer["namespaceSelector"]["matchLabels"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{file}: namespaceSelector by matchLabels"));
            assert_eq!(labels.len(), 1, "{file}: one namespace per peer");
            let name = labels["kubernetes.io/metadata.name"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: namespaces by kubernetes.io/metadata.name"));
            admitted.insert(name.to_string());
        }
    }
    assert_eq!(
        admitted, expected,
        "{file}: the gateways' and the activator's namespaces, only"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization: Value =
        serde_norway::from_str(&read("infra/knative/kustomization.yaml")).unwrap();
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(repo().join("infra/knative"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
}

/// The Knative Service the routing picks for `method` on `path`, if one
/// claims it alone: the best match by Gateway API precedence, where a tie
/// with a match to another Service (settled only by rule order) is an error,
/// and so is a `RegularExpression` match beside a match to another Service
/// (how regular expressions rank is up to each implementation).
fn routed<'r>(routing: &'r Routing, method: &str, path: &str) -> Result<Option<&'r str>, String> {
    let found = routing.matching(method, path);
    let Some(best) = found.first() else {
        return Ok(None);
    };
    if let Some(regex) = found
        .iter()
        .find(|r| r.kind == PathMatchType::RegularExpression)
    {
        let others: Vec<_> = found
            .iter()
            .filter(|r| r.function != regex.function)
            .map(|r| (&r.value, &r.method, &r.function))
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "{method} {path}: the RegularExpression {} of {} also matches {others:?}, \
                 whose rank against it is implementation-specific",
                regex.value, regex.function
            ));
        }
    }
    let tied: Vec<_> = found
        .iter()
        .filter(|r| r.precedence() == best.precedence() && r.function != best.function)
        .map(|r| (&r.value, &r.method, &r.function))
        .collect();
    if tied.is_empty() {
        Ok(Some(&best.function))
    } else {
        Err(format!(
            "{method} {path}: {} ties with {tied:?}",
            best.function
        ))
    }
}

/// A route of the registry's extension (`uploads::PREFIX` and a path
/// template of `registry::api::extension` or `uploads`), with the path
/// parameters filled in.
fn extension_path(template: &str) -> String {
    let path = format!(
        "{}{}",
        uploads::PREFIX,
        template
            .replace("{id}", "1")
            .replace("{alias}", "champion")
            .replace("{token}", "t")
    );
    assert!(
        !path.contains('{'),
        "{template}: a path parameter this test does not fill in"
    );
    path
}

/// The function binary of a slice, as named in functions/.
fn slice_function(slice: Slice) -> &'static str {
    match slice {
        Slice::RegisteredModels => "registered-models",
        Slice::ModelVersions => "model-versions",
        Slice::Artifacts => "artifacts",
        Slice::Serving => "serving",
        Slice::Experiments => "experiments",
        Slice::StorageEvents => "storage-events",
        Slice::Uploads => "uploads",
    }
}

/// Every route of the extension the API functions serve
/// (`registry::api::extension::ROUTES`): the method, a concrete path and
/// the family whose reader (GET) or writer (other methods) must get it.
fn extension_routes() -> Vec<(String, String, &'static str)> {
    api_extension::ROUTES
        .iter()
        .map(|r| {
            let function = slice_function(r.op.slice());
            assert!(
                FUNCTIONS.contains(&function),
                "{} {}: served by {function}, which has no reader and writer",
                r.method,
                r.path
            );
            (r.method.to_uppercase(), extension_path(r.path), function)
        })
        .collect()
}

/// The upload extension's routes (`registry::api::uploads::ROUTES`): the
/// method and a concrete path, each for the `uploads` function.
fn upload_routes() -> Vec<(String, String)> {
    uploads::ROUTES
        .iter()
        .map(|(method, path)| (method.to_uppercase(), extension_path(path)))
        .collect()
}

/// The function the upload routes go to: the extension routed at
/// `uploads::PREFIX`.
fn uploads_function() -> &'static str {
    let [e] = EXTENSIONS
        .iter()
        .filter(|e| e.prefix.is_some())
        .collect::<Vec<_>>()[..]
    else {
        panic!("one extension is routed by path");
    };
    assert_eq!(e.prefix, Some(uploads::PREFIX), "{}", e.function);
    e.function
}

/// Every method on every path of the extension's API routes, checked
/// against `route` (method, path → the deployment it reaches): a GET to the
/// family's reader alone, any other method to its writer or to nothing (on
/// Knative a version's extension paths take only their own POSTs). Answers
/// what went wrong, one line each.
fn misrouted_extension_methods<E: std::fmt::Debug>(
    route: impl Fn(&str, &str) -> Result<Option<String>, E>,
) -> Vec<String> {
    let mut paths: BTreeMap<String, &str> = BTreeMap::new();
    for (method, path, function) in extension_routes() {
        if let Some(other) = paths.insert(path.clone(), function) {
            assert_eq!(other, function, "{method} {path}: two families");
        }
    }
    let mut wrong = Vec::new();
    for (path, function) in &paths {
        for method in METHODS {
            let to = route(method, path);
            let right = match &to {
                Ok(Some(to)) if method == "GET" => *to == reader(function),
                Ok(Some(to)) => to == function,
                Ok(None) => method != "GET",
                Err(_) => false,
            };
            if !right {
                wrong.push(format!("{method} {path} (of {function}) goes to {to:?}"));
            }
        }
    }
    wrong
}

/// The requests every routing must send where they belong, checked against
/// `route` (method, path → the deployment it reaches): each contract path
/// and method to its family's reader (GET) or writer, health and the
/// OpenAPI documents to one reader, the extensions to their function.
/// Answers what went wrong, one line each.
fn misrouted<E: std::fmt::Debug>(
    route: impl Fn(&str, &str) -> Result<Option<String>, E>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |method: &str, path: &str, expected: &str| match route(method, path) {
        Ok(Some(to)) if to == expected => {}
        other => wrong.push(format!(
            "{method} {path} (for {expected}) goes to {other:?}"
        )),
    };
    for (path, method, family) in requests() {
        check(method, &path, &serving_deployment(family, method));
    }
    for path in [HEALTH.to_string()].into_iter().chain(shared_paths()) {
        check("GET", &path, &reader(FUNCTIONS[0]));
    }
    for (method, path) in upload_routes() {
        check(&method, &path, uploads_function());
    }
    // The extension's routes of the API functions: GETs to the family's
    // reader, the rest (revert, aliases) to its writer.
    for (method, path, function) in extension_routes() {
        check(&method, &path, &serving_deployment(function, &method));
    }
    wrong
}

/// Every method on each page and form of the web interface, checked
/// against `route` (method, path → the deployment it reaches): a GET to
/// [`WEB`] (which answers a form's path with 405), a form's POST to
/// [`WEB`]; a POST elsewhere under `/ui` to [`WEB`] (which answers 405) or
/// nothing, a POST to `/` nothing; any other method (PUT, DELETE, PATCH,
/// ...) nothing. Answers what went wrong, one line each.
fn misrouted_web_methods<E: std::fmt::Debug>(
    route: impl Fn(&str, &str) -> Result<Option<String>, E>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for path in WEB_PAGES.iter().chain(WEB_FORMS) {
        let form = WEB_FORMS.contains(path);
        for method in METHODS {
            let to = route(method, path);
            let right = match &to {
                Ok(Some(to)) => {
                    to == WEB && (method == "GET" || (method == "POST" && *path != "/"))
                }
                Ok(None) => method != "GET" && !(method == "POST" && form),
                Err(_) => false,
            };
            if !right {
                let what = if form { "a form" } else { "a page" };
                wrong.push(format!("{method} {path} ({what} of {WEB}) goes to {to:?}"));
            }
        }
    }
    wrong
}

/// May `deployment` take `method` on a path of the contract or of the web
/// interface: a GET a reader or [`WEB`], any other method a writer or, a
/// POST, [`WEB`].
fn serves_method(deployment: &Deployment, method: &str) -> bool {
    if deployment.binary == WEB {
        WEB_METHODS.contains(&method)
    } else {
        deployment.reads() == (method == "GET")
    }
}

/// Paths beside the web interface's that nothing routes: `/` is no
/// catch-all, and `/ui` matches as a whole segment only.
const WEB_NEAR_MISSES: [&str; 6] = [
    "/uix",
    "/ui-old/models/1",
    "/UI/",
    "/index.html",
    "/favicon.ico",
    "/api",
];

#[test]
fn routing_sends_every_contract_request_to_exactly_one_service() {
    let routing = Routing::load(ROUTING_YAML).unwrap();
    assert!(!routing.hostnames.is_empty(), "one public host");
    let route =
        |method: &str, path: &str| routed(&routing, method, path).map(|r| r.map(str::to_string));
    let wrong = misrouted(route);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let wrong = misrouted_extension_methods(route);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let wrong = misrouted_web_methods(route);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Whatever the method, on any path of the contract (and below it) and
    // of the web interface: a GET reaches a reader (or the web interface),
    // nothing else does; a write reaches a writer (or, a POST, the web
    // interface).
    let mut paths: Vec<String> = requests().into_iter().map(|(p, _, _)| p).collect();
    paths.push(HEALTH.to_string());
    paths.extend(shared_paths());
    for e in ENDPOINTS {
        for prefix in PREFIXES {
            paths.push(format!("{}/9/extra", e.path(prefix)));
        }
    }
    paths.extend(WEB_PAGES.iter().chain(WEB_FORMS).map(|p| p.to_string()));
    for path in &paths {
        for method in METHODS {
            let service = routed(&routing, method, path).unwrap_or_else(|e| panic!("{e}"));
            let Some(service) = service else { continue };
            let role = deployment(service)
                .unwrap_or_else(|| panic!("{method} {path}: {service} is not a deployment"));
            assert!(
                serves_method(&role, method),
                "{method} {path} goes to {service} ({:?})",
                role.serve
            );
        }
    }

    // Near misses are not routed: other versions, longer segment names.
    for path in [
        "/api/model_registry/v2/registered_models",
        "/api/model_registry/v1alpha3x/model_versions",
        "/api/model_registry/v1/registered_models_x",
        "/api/model_registry/v1/model_versionsx/1",
        "/api/model_registry/v1/artifact/1",
        "/api/model_registry/v1/openapi.jsonx",
        "/registered_models",
    ]
    .into_iter()
    .chain(WEB_NEAR_MISSES)
    {
        for method in ["GET", "POST"] {
            assert!(
                routing.matching(method, path).is_empty(),
                "{method} {path} should not be routed"
            );
        }
    }
    // Nor POSTs beside the extension's revert and upload start of a version.
    for path in [
        "/api/registry_ext/v1/model_versions/1/revert/2",
        "/api/registry_ext/v1/model_versions/revert",
        "/api/registry_ext/v1/model_versions//uploads",
        "/api/registry_ext/v1/model_versions/1/2/uploads",
        "/api/registry_ext/v1/model_versions/1/uploadsx",
        "/api/registry_ext/v1x/uploads/1",
    ] {
        assert!(
            routing.matching("POST", path).is_empty(),
            "POST {path} should not be routed"
        );
    }

    // No dead matches: each is the one picked for some request of the
    // contract (or health, the documents, deeper paths, the extensions, the
    // web interface's pages and forms).
    let mut requests: Vec<(String, String)> = Vec::new();
    let extension_paths = extension_routes().into_iter().map(|(_, p, _)| p);
    for path in paths.iter().cloned().chain(extension_paths) {
        for method in ["GET", "POST", "PATCH"] {
            requests.push((method.to_string(), path.clone()));
        }
    }
    requests.extend(upload_routes());
    requests.extend(extension_routes().into_iter().map(|(m, p, _)| (m, p)));
    for rule in &routing.rules {
        assert!(
            requests
                .iter()
                .any(|(m, p)| routing.route(m, p).is_some_and(|r| std::ptr::eq(r, rule))),
            "match {:?} {} of {} is never picked",
            rule.method,
            rule.value,
            rule.function
        );
    }

    // Rules name existing Knative Services; their backend is reachable.
    let docs = knative_documents();
    let ksvcs: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|(_, d)| {
            kind_of(d) == "Service" && d["apiVersion"].as_str() == Some("serving.knative.dev/v1")
        })
        .map(|(_, d)| {
            let meta: ObjectMeta = serde_norway::from_value(d["metadata"].clone()).unwrap();
            (meta.namespace, meta.name)
        })
        .collect();
    for rule in &routing.rules {
        assert!(
            ksvcs.contains(&(rule.namespace.clone(), rule.function.clone())),
            "rule {} sends to {}.{}, not a Knative Service here",
            rule.value,
            rule.function,
            rule.namespace
        );
    }
    // Every deployment clients call is routed (the readers and writers, the
    // uploads extension, the web interface), none that only events reach.
    let routed_services: BTreeSet<&str> = routing.functions().into_iter().collect();
    let called: Vec<String> = deployments()
        .into_iter()
        .filter(|d| extension(d.binary).is_none_or(|e| e.prefix.is_some()))
        .map(|d| d.name)
        .collect();
    assert_eq!(
        routed_services,
        called.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "every reader and writer, the routed extensions and {WEB} are routed"
    );
    for backend in &routing.backends {
        let (ns, rest) = backend.split_once('/').unwrap();
        let name = rest.split(':').next().unwrap();
        if ns != routing.namespace {
            let granted = docs.iter().any(|(_, d)| {
                kind_of(d) == "ReferenceGrant"
                    && d["metadata"]["namespace"].as_str() == Some(ns)
                    && d["spec"]["from"].as_sequence().is_some_and(|from| {
                        from.iter().any(|f| {
                            f["kind"].as_str() == Some("HTTPRoute")
                                && f["namespace"].as_str() == Some(&routing.namespace)
                        })
                    })
                    && d["spec"]["to"].as_sequence().is_some_and(|to| {
                        to.iter().any(|t| {
                            t["kind"].as_str() == Some("Service")
                                && t["name"].as_str() == Some(name)
                        })
                    })
            });
            assert!(
                granted,
                "no ReferenceGrant lets the HTTPRoute reach {backend}"
            );
        }
    }
}

// ------------------------------------------------------------------ Lambda

/// The SAM template as a generic value (CloudFormation tags such as `!Ref`
/// parse as tagged values).
pub(crate) fn template() -> Value {
    serde_norway::from_str(&read("infra/lambda/template.yaml")).unwrap()
}

/// An HTTP API route path: `{proxy+}` as the last segment matches one or
/// more segments; other `{x}` one segment; anything else itself.
fn http_api_route_matches(route: &str, path: &str) -> bool {
    let r: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if r.last().is_some_and(|s| s.ends_with("+}")) {
        let fixed = &r[..r.len() - 1];
        p.len() > fixed.len() && fixed.iter().zip(&p).all(|(a, b)| segment_matches(a, b))
    } else {
        r.len() == p.len() && r.iter().zip(&p).all(|(a, b)| segment_matches(a, b))
    }
}

fn segment_matches(route: &str, path: &str) -> bool {
    (route.starts_with('{') && route.ends_with('}') && !path.is_empty()) || route == path
}

/// Each `AWS::Serverless::Function` by logical id.
pub(crate) fn lambda_functions(t: &Value) -> BTreeMap<String, Value> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, r)| (k.as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// The function binary a Lambda function deploys: from `CodeUri`
/// `.../target/lambda/<binary>/bootstrap.zip` (what `make lambda-zip` writes).
pub(crate) fn binary_of(function: &Value) -> String {
    let uri = function["Properties"]["CodeUri"].as_str().expect("CodeUri");
    let rest = uri
        .split("target/lambda/")
        .nth(1)
        .unwrap_or_else(|| panic!("CodeUri {uri} is not a make lambda-zip output"));
    let (binary, file) = rest.split_once('/').unwrap();
    assert_eq!(file, "bootstrap.zip", "{uri}");
    binary.to_string()
}

/// The value of a `!Ref X` tag.
pub(crate) fn ref_target(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str().map(String::from),
        _ => v["Ref"].as_str().map(String::from),
    }
}

/// The deployment a Lambda function is: its `FunctionName`
/// (`!Sub "${AWS::StackName}-<deployment>"`).
pub(crate) fn lambda_deployment_name(function: &Value) -> String {
    let name = &function["Properties"]["FunctionName"];
    let text = match name {
        Value::Tagged(t) if t.tag == "Sub" => t.value.as_str(),
        other => other.as_str(),
    }
    .expect("FunctionName");
    text.strip_prefix("${AWS::StackName}-")
        .unwrap_or_else(|| panic!("FunctionName {text} is not ${{AWS::StackName}}-<deployment>"))
        .to_string()
}

/// Each Lambda function of the template by deployment name, with its
/// logical id, checked against the contract's deployments: each once, its
/// binary, its role (`MR_SERVE`).
pub(crate) fn lambda_deployments(t: &Value) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for (id, f) in lambda_functions(t) {
        let name = lambda_deployment_name(&f);
        let d = deployment(&name).unwrap_or_else(|| panic!("{id}: {name} is not a deployment"));
        assert_eq!(binary_of(&f), d.binary, "{id}: CodeUri of {name}");
        let env = lambda_environment(t, &f);
        assert_eq!(
            env.get("MR_SERVE").and_then(Value::as_str),
            d.serve,
            "{id}: MR_SERVE of {name}"
        );
        if let Some((other, _)) = out.insert(name.clone(), (id.clone(), f)) {
            panic!("{name} deployed twice: {other} and {id}");
        }
    }
    let expected: BTreeSet<String> = deployments().into_iter().map(|d| d.name).collect();
    assert_eq!(
        out.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every deployment is a Lambda function"
    );
    out
}

/// One route of the HTTP API and the deployment it invokes.
#[derive(Debug)]
struct ApiRoute {
    /// Where the template declares it: `<FunctionId>.<EventName>`.
    at: String,
    /// `ANY` or a method.
    method: String,
    path: String,
    deployment: String,
}

/// The HTTP API's routes: the `HttpApi` events of the template's functions.
fn http_api_routes(t: &Value) -> Vec<ApiRoute> {
    let mut routes = Vec::new();
    for (name, (id, f)) in lambda_deployments(t) {
        let events = f["Properties"]["Events"].as_mapping().into_iter().flatten();
        for (event_name, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let props = &event["Properties"];
            routes.push(ApiRoute {
                at: format!("{id}.{}", event_name.as_str().unwrap()),
                method: props["Method"].as_str().unwrap().to_string(),
                path: props["Path"].as_str().unwrap().to_string(),
                deployment: name.clone(),
            });
        }
    }
    routes
}

/// The deployment API Gateway invokes for `method` on `path` by the
/// template's routes (None: no route, a 404 from API Gateway).
pub(crate) fn lambda_routed(method: &str, path: &str) -> Option<String> {
    let routes = http_api_routes(&template());
    api_route(&routes, method, path)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|r| r.deployment.clone())
}

impl ApiRoute {
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "ANY" || self.method == method) && http_api_route_matches(&self.path, path)
    }

    /// API Gateway's choice among the routes that match a request: a path
    /// without a greedy `{proxy+}` first, then the one with more fixed
    /// segments, then a route for the request's method over `ANY`.
    fn precedence(&self) -> (bool, usize, bool) {
        let segments: Vec<&str> = self.path.split('/').collect();
        (
            !self.path.ends_with("+}"),
            segments.iter().filter(|s| !s.starts_with('{')).count(),
            self.method != "ANY",
        )
    }
}

/// The deployment API Gateway invokes for `method` on `path`, if one route
/// wins alone (a tie is an error).
fn api_route<'r>(
    routes: &'r [ApiRoute],
    method: &str,
    path: &str,
) -> Result<Option<&'r ApiRoute>, String> {
    let mut found: Vec<&ApiRoute> = routes.iter().filter(|r| r.matches(method, path)).collect();
    found.sort_by_key(|r| std::cmp::Reverse(r.precedence()));
    match found.as_slice() {
        [] => Ok(None),
        [best, next, ..] if next.precedence() == best.precedence() => {
            Err(format!("{method} {path}: {best:?} ties with {next:?}"))
        }
        [best, ..] => Ok(Some(best)),
    }
}

#[test]
fn lambda_template_routes_every_contract_request_to_exactly_one_function() {
    let t = template();
    for (name, (id, f)) in lambda_deployments(&t) {
        for (event_name, event) in f["Properties"]["Events"].as_mapping().unwrap() {
            let at = format!("{id}.{}", event_name.as_str().unwrap());
            if extension(&name).is_some_and(|e| e.prefix.is_none()) {
                // Invoked by events (an EventBridge rule or schedule, S3),
                // not routes.
                assert!(
                    matches!(
                        event["Type"].as_str(),
                        Some("EventBridgeRule" | "S3" | "Schedule")
                    ),
                    "{at}"
                );
                continue;
            }
            assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{at}");
            assert_eq!(
                ref_target(&event["Properties"]["ApiId"]).as_deref(),
                Some("HttpApi"),
                "{at}: one API"
            );
        }
    }
    let routes = http_api_routes(&t);
    for r in &routes {
        let d = deployment(&r.deployment).unwrap();
        // Readers take GET routes; writers (and uploads) ANY, which API
        // Gateway gives every method no other route of the path names;
        // uploads also the method of one of its routes, where the family's
        // writer takes the other methods of the path; the web interface GET
        // (its pages) and POST (its forms), never ANY.
        let expected: Vec<String> = if d.reads() {
            vec!["GET".into()]
        } else if d.binary == WEB {
            WEB_METHODS.map(String::from).to_vec()
        } else if extension(d.binary).is_some() {
            let own = upload_routes().into_iter().map(|(m, _)| m);
            std::iter::once("ANY".into()).chain(own).collect()
        } else {
            vec!["ANY".into()]
        };
        assert!(
            expected.contains(&r.method),
            "{}: {}: {}",
            r.at,
            r.deployment,
            r.method
        );
    }

    let route = |method: &str, path: &str| {
        api_route(&routes, method, path).map(|r| r.map(|r| r.deployment.clone()))
    };
    let wrong = misrouted(route);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let wrong = misrouted_extension_methods(route);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let wrong = misrouted_web_methods(route);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for path in WEB_NEAR_MISSES {
        for method in ["GET", "POST"] {
            assert!(
                matches!(route(method, path), Ok(None)),
                "{method} {path} should not be routed"
            );
        }
    }

    // Whatever the method, on any path of the contract (and below it) and
    // of the web interface: a GET reaches a reader (or the web interface),
    // nothing else does; a write reaches a writer (or, a POST, the web
    // interface).
    let mut paths: Vec<String> = requests().into_iter().map(|(p, _, _)| p).collect();
    paths.push(HEALTH.to_string());
    paths.extend(shared_paths());
    for e in ENDPOINTS {
        for prefix in PREFIXES {
            paths.push(format!("{}/9/extra", e.path(prefix)));
        }
    }
    paths.extend(WEB_PAGES.iter().chain(WEB_FORMS).map(|p| p.to_string()));
    for path in &paths {
        for method in METHODS {
            let route = api_route(&routes, method, path).unwrap_or_else(|e| panic!("{e}"));
            if let Some(route) = route {
                let d = deployment(&route.deployment).unwrap();
                assert!(
                    serves_method(&d, method),
                    "{method} {path} invokes {}",
                    route.deployment
                );
            }
        }
    }

    // No dead routes: each is the one taken by some request.
    let mut requests: Vec<(String, String)> = Vec::new();
    let extension_paths = extension_routes().into_iter().map(|(_, p, _)| p);
    for path in paths.iter().cloned().chain(extension_paths) {
        for method in ["GET", "POST"] {
            requests.push((method.to_string(), path.clone()));
        }
    }
    requests.extend(upload_routes());
    requests.extend(extension_routes().into_iter().map(|(m, p, _)| (m, p)));
    for route in &routes {
        let used = requests.iter().any(|(m, p)| {
            api_route(&routes, m, p)
                .ok()
                .flatten()
                .is_some_and(|r| std::ptr::eq(r, route))
        });
        assert!(used, "route {route:?} is never taken");
    }
}

#[test]
fn lambda_readers_are_their_writers_but_for_the_role() {
    let t = template();
    let functions = lambda_deployments(&t);
    // What may differ: the name and description, MR_SERVE, the reader-only
    // environment (checked below), the policy, the routes.
    let comparable = |f: &Value| -> Value {
        let mut props = f["Properties"].clone();
        let map = props.as_mapping_mut().unwrap();
        for key in ["FunctionName", "Description", "Policies", "Events"] {
            map.remove(key);
        }
        if let Some(vars) = map
            .get_mut("Environment")
            .and_then(|e| e.get_mut("Variables"))
            .and_then(Value::as_mapping_mut)
        {
            vars.remove("MR_SERVE");
            for (name, _) in LIST_CACHE_ENV {
                vars.remove(*name);
            }
        }
        props
    };
    for family in FUNCTIONS {
        let (writer_id, writer) = &functions[family];
        let (reader_id, reading) = &functions[&reader(family)];
        assert_eq!(
            reader_id,
            &writer_id.replace("Function", "ReaderFunction"),
            "{reader_id}: named after {writer_id}"
        );
        assert_eq!(
            comparable(reading),
            comparable(writer),
            "{reader_id}: the same zip, handler, limits and environment as {writer_id}"
        );
        // The reader takes the GET of every path the writer takes.
        let paths = |f: &Value| -> BTreeSet<String> {
            f["Properties"]["Events"]
                .as_mapping()
                .unwrap()
                .values()
                .filter_map(|e| e["Properties"]["Path"].as_str().map(String::from))
                .collect()
        };
        let (writes, reads) = (paths(writer), paths(reading));
        assert!(
            writes.is_subset(&reads),
            "{reader_id}: no GET route for {:?}",
            writes.difference(&reads).collect::<Vec<_>>()
        );
    }
    // The list cache: set by every reader and the web interface, by no
    // writer or extension (nor in the Globals).
    for (name, (id, f)) in &functions {
        let caches = deployment(name).unwrap().caches_lists();
        for (key, value) in LIST_CACHE_ENV {
            assert_eq!(
                lambda_environment(&t, f).get(*key).and_then(Value::as_str),
                caches.then_some(*value),
                "{id}: {key}"
            );
        }
    }
}

/// A policy statement's `Resource`s as written (`!GetAtt X.Arn`, `!Sub "..."`).
fn resources_of(statement: &Value) -> BTreeSet<String> {
    statement["Resource"]
        .as_sequence()
        .expect("Resource is a list")
        .iter()
        .map(|r| match r {
            Value::Tagged(t) => format!("{} {}", t.tag, t.value.as_str().unwrap_or_default()),
            other => other.as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The statement a keyed grant is, exactly: its actions on the table (not
/// its indexes), on items whose partition keys all match its patterns.
fn keyed_statement(grant: &KeyedGrant) -> Value {
    let items = |list: &[&str], indent: &str| -> String {
        list.iter()
            .map(|i| format!("{indent}- \"{i}\"\n"))
            .collect()
    };
    let text = format!(
        "Sid: {}\nEffect: Allow\nAction:\n{}Resource:\n  - !GetAtt MetadataTable.Arn\n\
         Condition:\n  ForAllValues:StringLike:\n    dynamodb:LeadingKeys:\n{}",
        grant.sid,
        items(grant.actions, "  "),
        items(grant.leading_keys, "      "),
    );
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn lambda_functions_get_one_least_privilege_policy_each() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let table: BTreeSet<String> = [
        "!GetAtt MetadataTable.Arn",
        "!Sub ${MetadataTable.Arn}/index/*",
    ]
    .map(String::from)
    .into();
    let objects: BTreeSet<String> =
        ["!Sub ${ArtifactBucket.Arn}/${EventsPrefix}*".to_string()].into();
    let bucket: BTreeSet<String> = ["!GetAtt ArtifactBucket.Arn".to_string()].into();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (name, (id, f)) in lambda_deployments(&t) {
        let d: Deployment = deployment(&name).unwrap();
        let policies = f["Properties"]["Policies"].as_sequence().expect("Policies");
        let [policy] = policies.as_slice() else {
            panic!("{id}: expected exactly one policy");
        };
        let policy_id = ref_target(policy).unwrap_or_else(|| panic!("{id}: policy is not a !Ref"));
        if let Some(other) = owners.insert(policy_id.clone(), id.clone()) {
            panic!("{policy_id} is shared by {other} and {id}");
        }
        let resource = resources
            .iter()
            .find(|(k, _)| k.as_str() == Some(&policy_id))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{policy_id} not defined"));
        assert_eq!(resource["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"));
        // Every action granted, by what it is granted on; the conditional
        // statements as they are.
        let mut granted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut keyed: Vec<&Value> = Vec::new();
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap()
        {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{policy_id}");
            if statement.get("Condition").is_some() {
                keyed.push(statement);
                continue;
            }
            let on = resources_of(statement);
            let target = if on == table {
                "table"
            } else if on == objects {
                "objects"
            } else if on == bucket {
                "bucket"
            } else {
                panic!(
                    "{policy_id}: a statement on {on:?}: the table and its indexes, the prefix's objects, or the bucket"
                )
            };
            for action in statement["Action"].as_sequence().unwrap() {
                let action = action.as_str().unwrap();
                assert!(
                    !action.contains('*'),
                    "{policy_id}: wildcard action {action}"
                );
                granted
                    .entry(target)
                    .or_default()
                    .insert(action.to_string());
            }
        }
        let set = |actions: &[&str]| -> BTreeSet<String> {
            actions.iter().map(|a| a.to_string()).collect()
        };
        let ext = extension(d.binary);
        let expected: BTreeMap<&str, BTreeSet<String>> = [
            ("table", set(d.table_actions())),
            ("objects", set(ext.map_or(&[][..], |e| e.s3_actions))),
            ("bucket", set(ext.map_or(&[][..], |e| e.s3_bucket_actions))),
        ]
        .into_iter()
        .filter(|(_, actions)| !actions.is_empty())
        .collect();
        assert_eq!(
            granted, expected,
            "{policy_id} of {name}: exactly what it uses"
        );
        // The conditional grants: each an explicit statement of the
        // contract (a reader of versions or artifacts writes usage records,
        // keys `U#...`; the events function its cursor and lease, keys
        // `DISPATCH#...`), exactly, and no other.
        let grants = d.keyed_grants();
        for grant in grants {
            assert!(
                grant
                    .leading_keys
                    .iter()
                    .all(|k| k.len() > 1 && !k.starts_with('*')),
                "{}: a key pattern with a fixed start, not every item",
                grant.sid
            );
        }
        let expected_keyed: Vec<Value> = grants.iter().map(keyed_statement).collect();
        assert_eq!(
            keyed,
            expected_keyed.iter().collect::<Vec<_>>(),
            "{policy_id} of {name}: its conditional grants ({:?}), each exactly its actions \
             on the table where every partition key matches its patterns",
            grants.iter().map(|g| g.sid).collect::<Vec<_>>()
        );
        if d.reads() {
            assert_eq!(
                granted.get("table").map(BTreeSet::len),
                Some(TABLE_READER_ACTIONS.len()),
                "{policy_id}: a reader gets (an item, a batch) and queries, nothing else"
            );
            assert_eq!(
                granted.len(),
                1,
                "{policy_id}: a reader touches only the table"
            );
        }
    }
}

/// The environment of a Lambda function: the template's `Globals`, then the
/// function's own variables, which win (values as written: strings or
/// `!Ref` tags).
pub(crate) fn lambda_environment(t: &Value, function: &Value) -> BTreeMap<String, Value> {
    let mut env = BTreeMap::new();
    for vars in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &function["Properties"]["Environment"]["Variables"],
    ] {
        if let Some(vars) = vars.as_mapping() {
            for (k, v) in vars {
                env.insert(k.as_str().unwrap().to_string(), v.clone());
            }
        }
    }
    env
}

/// A function's `Timeout` (its own, else the `Globals` one).
fn lambda_timeout(t: &Value, function: &Value) -> u64 {
    function["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| t["Globals"]["Function"]["Timeout"].as_u64())
        .expect("Timeout")
}

#[test]
fn lambda_api_routes_need_a_token_except_health() {
    let t = template();
    let api = &t["Resources"]["HttpApi"]["Properties"];
    let auth = &api["Auth"];
    let default = auth["DefaultAuthorizer"]
        .as_str()
        .expect("the HTTP API has a default authorizer");
    let authorizer = &auth["Authorizers"][default];
    assert_eq!(
        authorizer["IdentitySource"].as_str(),
        Some("$request.header.Authorization")
    );
    let jwt = &authorizer["JwtConfiguration"];
    assert_eq!(
        ref_target(&jwt["issuer"]).as_deref(),
        Some("Issuer"),
        "a JWT authorizer"
    );
    assert!(
        jwt["audience"].as_sequence().is_some_and(|a| a
            .iter()
            .any(|a| ref_target(a).as_deref() == Some("Audience"))),
        "the authorizer checks the Audience parameter"
    );
    let params = &t["Parameters"];
    assert!(
        params["Issuer"]["AllowedPattern"]
            .as_str()
            .is_some_and(|p| p.starts_with("^https://")),
        "API Gateway reads the issuer's keys over https"
    );
    assert!(params["Audience"]["Type"].as_str() == Some("String"));

    // Stage throttling from Number parameters.
    for key in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        let param = ref_target(&api["DefaultRouteSettings"][key])
            .unwrap_or_else(|| panic!("DefaultRouteSettings.{key} from a parameter"));
        assert_eq!(params[&param]["Type"].as_str(), Some("Number"), "{param}");
        assert!(
            params[&param]["MinValue"].as_u64().is_some_and(|m| m >= 1),
            "{param}: 0 stops all traffic"
        );
    }

    // Every route takes the default authorizer, except the health route
    // and the web interface's (a browser comes without a token, to log in:
    // that function verifies tokens itself, MR_AUTH=jwt).
    let mut health = 0;
    let mut web = 0;
    for (id, f) in lambda_functions(&t) {
        if id == "WebFunction" {
            let env = lambda_environment(&t, &f);
            assert_eq!(
                env["MR_AUTH"].as_str(),
                Some("jwt"),
                "{id} checks tokens itself"
            );
            for (name, event) in f["Properties"]["Events"].as_mapping().unwrap() {
                assert_eq!(
                    event["Properties"]["Auth"]["Authorizer"].as_str(),
                    Some("NONE"),
                    "{id}.{name:?}"
                );
                web += 1;
            }
            continue;
        }
        for (name, event) in f["Properties"]["Events"].as_mapping().unwrap() {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let props = &event["Properties"];
            if props["Path"].as_str() == Some(HEALTH) {
                assert_eq!(props["Method"].as_str(), Some("GET"), "{id}.{name:?}");
                assert_eq!(
                    props["Auth"]["Authorizer"].as_str(),
                    Some("NONE"),
                    "{id}.{name:?}: monitors call health without a token"
                );
                health += 1;
            } else {
                assert!(
                    props["Auth"].is_null(),
                    "{id}.{name:?}: an API route opts out of the JWT authorizer"
                );
            }
        }
    }
    assert_eq!(health, 1, "one open health route");
    assert_eq!(web, 4, "the web interface's four routes");
}

#[test]
fn lambda_functions_authenticate_and_apply_the_bundled_policy() {
    let t = template();
    let readable = variables_the_binaries_read();
    let params = &t["Parameters"];
    let authorizer_issuer = {
        let auth = &t["Resources"]["HttpApi"]["Properties"]["Auth"];
        let default = auth["DefaultAuthorizer"].as_str().unwrap();
        ref_target(&auth["Authorizers"][default]["JwtConfiguration"]["issuer"])
    };
    for (id, f) in lambda_functions(&t) {
        let env = lambda_environment(&t, &f);
        for name in env.keys() {
            assert!(
                readable.contains(name),
                "{id}: the binaries do not read {name}"
            );
        }
        // MR_AUTH: what the authorizer verified, or the token again; never
        // none, and never header (a client could send any header through
        // API Gateway).
        let auth = &env["MR_AUTH"];
        let modes: Vec<&str> = match ref_target(auth) {
            Some(p) => params[&p]["AllowedValues"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{id}: parameter {p} lists its AllowedValues"))
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect(),
            None => vec![auth.as_str().unwrap()],
        };
        assert!(
            !modes.is_empty() && modes.iter().all(|m| matches!(*m, "apigateway" | "jwt")),
            "{id}: MR_AUTH may be {modes:?}"
        );
        // With jwt the functions check the same issuer as the authorizer.
        assert_eq!(ref_target(&env["MR_JWT_ISSUER"]), authorizer_issuer, "{id}");
        for key in ["MR_JWT_AUDIENCE", "MR_JWT_JWKS"] {
            assert!(env.contains_key(key), "{id}: {key}");
        }
        // The policy is the file every zip carries.
        assert_eq!(env["MR_POLICY"].as_str(), Some(LAMBDA_POLICY), "{id}");
        // Answer a slow request before the invocation ends (the function's
        // Timeout; API Gateway's 30 s for the routed ones).
        let timeout = lambda_timeout(&t, &f);
        let request: u64 = env
            .get("MR_REQUEST_TIMEOUT_SECS")
            .map_or(30, |v| v.as_str().unwrap().parse().unwrap());
        assert!(
            request < timeout,
            "{id}: MR_REQUEST_TIMEOUT_SECS {request} >= Timeout {timeout}"
        );
        let routed = f["Properties"]["Events"]
            .as_mapping()
            .unwrap()
            .values()
            .any(|e| e["Type"].as_str() == Some("HttpApi"));
        if routed {
            assert!(
                request < 30,
                "{id}: API Gateway gives up on an integration after 30 s"
            );
        }
    }

    // The bundled policy parses, and make lambda-zip puts it beside bootstrap.
    PolicyFile::parse(
        &read("infra/lambda/policy.yaml"),
        "infra/lambda/policy.yaml",
    );
    let script = read("infra/lambda/build-zips.sh");
    assert!(
        script.contains("$REPO/infra/lambda/policy.yaml"),
        "build-zips.sh default policy"
    );
    let zip = script
        .lines()
        .find(|l| l.contains("zipfile -c"))
        .expect("build-zips.sh zips");
    assert!(
        zip.contains("bootstrap.zip bootstrap policy.yaml"),
        "{zip}: the policy at the root of the zip, as {LAMBDA_POLICY}"
    );
}

/// Does `condition` of the template hold exactly when parameter `param` is
/// not empty (`!Not [!Equals [!Ref <param>, ""]]`, either way round)?
fn holds_when_set(t: &Value, condition: &str, param: &str) -> bool {
    let tagged = |v: &Value, tag: &str| -> Option<Value> {
        match v {
            Value::Tagged(x) if x.tag == tag => Some(x.value.clone()),
            _ => None,
        }
    };
    let Some(not) = tagged(&t["Conditions"][condition], "Not") else {
        return false;
    };
    let Some(equals) = not.as_sequence().and_then(|n| match n.as_slice() {
        [e] => tagged(e, "Equals"),
        _ => None,
    }) else {
        return false;
    };
    match equals.as_sequence().map(Vec::as_slice) {
        Some([a, b]) => {
            let is_param = |v: &Value| ref_target(v).as_deref() == Some(param);
            let is_empty = |v: &Value| v.as_str() == Some("");
            (is_param(a) && is_empty(b)) || (is_empty(a) && is_param(b))
        }
        _ => false,
    }
}

#[test]
fn lambda_events_function_is_ticked_when_given_a_sink() {
    let t = template();
    let params = &t["Parameters"];
    let (id, f) = lambda_deployments(&t)
        .remove(EVENTS)
        .expect("a Lambda function of the events function");
    let env = lambda_environment(&t, &f);

    // The sink is a parameter; left empty (its default), the stack has
    // neither the function nor its policy.
    let sink = ref_target(&env["MR_EVENTS_SINK"])
        .unwrap_or_else(|| panic!("{id}: MR_EVENTS_SINK from a parameter"));
    assert_eq!(
        params[&sink]["Default"].as_str(),
        Some(""),
        "{sink}: optional"
    );
    let condition = f["Condition"]
        .as_str()
        .unwrap_or_else(|| panic!("{id}: created only with a sink (a Condition)"));
    assert!(
        holds_when_set(&t, condition, &sink),
        "{id}: Condition {condition} must hold exactly when {sink} is set"
    );
    let policy = ref_target(&f["Properties"]["Policies"][0]).expect("a policy");
    assert_eq!(
        t["Resources"][&policy]["Condition"].as_str(),
        Some(condition),
        "{policy}: exists with its function"
    );
    // Signing is optional, and the key stays out of the console's echo.
    let secret = ref_target(&env["MR_EVENTS_SECRET"])
        .unwrap_or_else(|| panic!("{id}: MR_EVENTS_SECRET from a parameter"));
    assert_eq!(params[&secret]["Default"].as_str(), Some(""), "{secret}");
    assert_eq!(params[&secret]["NoEcho"].as_bool(), Some(true), "{secret}");

    // Ticks: a schedule every minute. A round (and its last delivery) ends
    // within the invocation's Timeout, and before the next tick, so ticks
    // do not find the lease still held.
    let events: Vec<_> = f["Properties"]["Events"]
        .as_mapping()
        .expect("Events")
        .values()
        .collect();
    let [tick] = events.as_slice() else {
        panic!("{id}: one schedule, found {} events", events.len());
    };
    assert_eq!(tick["Type"].as_str(), Some("Schedule"), "{id}");
    assert_eq!(
        tick["Properties"]["Schedule"].as_str(),
        Some("rate(1 minute)"),
        "{id}: a round per minute"
    );
    let period = 60_000;
    let bound = events_round_bound_ms(env.get("MR_EVENTS_ROUND_MS").and_then(Value::as_str));
    let timeout = lambda_timeout(&t, &f) * 1000;
    assert!(
        bound < timeout,
        "{id}: a round may take {bound} ms, the Timeout ends it at {timeout}"
    );
    assert!(
        bound < period,
        "{id}: a round may take {bound} ms, longer than the {period} ms between ticks"
    );
}

/// The key of the web forms' CSRF tokens (`MR_WEB_SECRET`) comes from one
/// place every instance of the web interface reads (a form shown by one
/// instance is posted to any other), is optional (without it each instance
/// draws its own) and kept out of sight, and no other function gets it.
#[test]
fn web_forms_are_signed_with_one_key_on_every_instance() {
    const KEY: &str = "MR_WEB_SECRET";
    // Knative: from an optional Secret (`environment` checks that it is
    // optional and its key named after the variable).
    let docs = knative_documents();
    let config_maps = config_maps(&docs);
    for (file, ksvc) in knative_services(&docs) {
        let at = format!("{file} ({})", ksvc.metadata.name);
        let container = container_of(&ksvc);
        let env = environment(container, &config_maps, &at);
        if ksvc.metadata.name != WEB {
            assert!(!env.contains_key(KEY), "{at}: {KEY} is {WEB}'s alone");
            continue;
        }
        let from_secret = container
            .env
            .iter()
            .find(|v| v.name == KEY)
            .and_then(|v| v.value_from.as_ref())
            .is_some_and(|s| s.secret_key_ref.is_some());
        assert!(from_secret, "{at}: {KEY} from a Secret");
    }
    // Lambda: a parameter, empty by default, that the console does not echo.
    let t = template();
    let params = &t["Parameters"];
    for (name, (id, f)) in lambda_deployments(&t) {
        let env = lambda_environment(&t, &f);
        if name != WEB {
            assert!(!env.contains_key(KEY), "{id}: {KEY} is {WEB}'s alone");
            continue;
        }
        let param = env
            .get(KEY)
            .and_then(ref_target)
            .unwrap_or_else(|| panic!("{id}: {KEY} from a parameter"));
        assert_eq!(params[&param]["Default"].as_str(), Some(""), "{param}");
        assert_eq!(params[&param]["NoEcho"].as_bool(), Some(true), "{param}");
    }
}

#[test]
fn lambda_table_is_the_single_table_definition() {
    let t = template();
    let table = &t["Resources"]["MetadataTable"];
    assert_eq!(table["Type"].as_str(), Some("AWS::DynamoDB::Table"));
    let in_template: Json = serde_json::to_value(&table["Properties"]).unwrap();
    let definition: Json = serde_json::from_str(&read("infra/dynamodb/table.json")).unwrap();
    for key in definition.as_object().unwrap().keys() {
        if key == "TableName" {
            continue; // a parameter of the template
        }
        assert_eq!(
            in_template.get(key),
            definition.get(key),
            "template MetadataTable.{key} differs from infra/dynamodb/table.json"
        );
    }
}

#[test]
fn table_definition_uses_only_what_alternator_supports() {
    // ScyllaDB Alternator takes infra/dynamodb/table.json as is (see
    // infra/alternator/README.md): no streams, TTL, SSE or table classes.
    let definition: Json = serde_json::from_str(&read("infra/dynamodb/table.json")).unwrap();
    let supported: BTreeSet<&str> = [
        "TableName",
        "BillingMode",
        "AttributeDefinitions",
        "KeySchema",
        "LocalSecondaryIndexes",
        "GlobalSecondaryIndexes",
    ]
    .into();
    for key in definition.as_object().unwrap().keys() {
        assert!(
            supported.contains(key.as_str()),
            "{key} is not portable to Alternator"
        );
    }
}

#[test]
fn makefile_builds_every_function() {
    let makefile = read("Makefile");
    let line = makefile
        .lines()
        .find_map(|l| l.strip_prefix("FUNCTIONS :="))
        .expect("FUNCTIONS := in the Makefile");
    let listed: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        listed,
        deployed(),
        "make lambda-zip / images build the functions"
    );
}
