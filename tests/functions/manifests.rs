//! Offline checks of `infra/`: the Knative manifests (parse, required fields,
//! names and environment consistent with the binaries), the routing (every
//! path of the contract to exactly one function) and the Lambda template
//! (routes, one policy per function, the single table definition).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value;

use crate::contract::{
    ENDPOINTS, EXTENSIONS, FUNCTIONS, HEALTH, PREFIXES, deployed, extension, requests, shared_paths,
};
use crate::routing::{ROUTING_YAML, Routing, documents};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every manifest under infra/knative/, with the file it came from.
fn knative_documents() -> Vec<(String, Value)> {
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
struct KnativeService {
    api_version: String,
    metadata: ObjectMeta,
    spec: KnativeServiceSpec,
}

#[derive(Deserialize)]
struct ObjectMeta {
    name: String,
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct KnativeServiceSpec {
    template: RevisionTemplate,
}

#[derive(Deserialize)]
struct RevisionTemplate {
    metadata: TemplateMeta,
    spec: RevisionSpec,
}

#[derive(Deserialize)]
struct TemplateMeta {
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionSpec {
    service_account_name: String,
    container_concurrency: u32,
    timeout_seconds: u32,
    containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    image: String,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    env_from: Vec<EnvFrom>,
    readiness_probe: Probe,
    resources: Resources,
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

/// The environment variables the binaries read: `var("..")` in the
/// configuration, the log filter, and the AWS SDK's standard variables.
fn variables_the_binaries_read() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (file, call) in [
        ("shared/src/config.rs", "var(\""),
        ("shared/src/runtime.rs", "from_env(\""),
    ] {
        let text = read(file);
        for part in text.split(call).skip(1) {
            if let Some(name) = part.split('"').next() {
                names.insert(name.to_string());
            }
        }
    }
    assert!(
        names.contains("MR_STORE") && names.contains("MR_LOG"),
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

#[test]
fn knative_services_are_complete_and_consistent_with_the_binaries() {
    let docs = knative_documents();
    let readable = variables_the_binaries_read();
    let packages = function_packages();
    let config_maps: BTreeMap<String, BTreeMap<String, String>> = docs
        .iter()
        .filter(|(_, d)| kind_of(d) == "ConfigMap")
        .map(|(_, d)| {
            let meta: ObjectMeta = serde_norway::from_value(d["metadata"].clone()).unwrap();
            let data = serde_norway::from_value(d["data"].clone()).unwrap();
            (meta.name, data)
        })
        .collect();
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
        assert!(
            deployed().contains(&name.as_str()),
            "{at}: not a function of the contract"
        );
        assert!(
            packages.contains(&name),
            "{at}: no functions/ package of that name"
        );
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
        let image_name = container
            .image
            .rsplit('/')
            .next()
            .and_then(|last| last.split([':', '@']).next())
            .unwrap();
        assert_eq!(
            image_name, name,
            "{at}: image {} is not named after the binary",
            container.image
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
        let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
        for from in &container.env_from {
            let data = config_maps
                .get(&from.config_map_ref.name)
                .unwrap_or_else(|| {
                    panic!("{at}: ConfigMap {} not defined", from.config_map_ref.name)
                });
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
    }
    let expected: BTreeSet<String> = deployed().iter().map(|f| f.to_string()).collect();
    assert_eq!(seen, expected, "one Knative Service per function");
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

#[test]
fn routing_sends_every_contract_path_to_exactly_one_function() {
    let routing = Routing::load(ROUTING_YAML).unwrap();
    assert!(!routing.hostnames.is_empty(), "one public host");
    let mut wrong = Vec::new();
    for (path, method, owner) in requests() {
        let rules = routing.matching(&path);
        match rules.as_slice() {
            [rule] if rule.function == owner => {}
            _ => wrong.push(format!(
                "{method} {path} (owner {owner}) matches {:?}",
                rules
                    .iter()
                    .map(|r| (&r.value, &r.function))
                    .collect::<Vec<_>>()
            )),
        }
        // What a Gateway picks by precedence agrees.
        assert_eq!(
            routing.route(&path).map(|r| r.function.as_str()),
            Some(owner),
            "{path}"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for path in [HEALTH.to_string()].into_iter().chain(shared_paths()) {
        assert_eq!(routing.matching(&path).len(), 1, "{path} routed once");
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
    ] {
        assert!(
            routing.matching(path).is_empty(),
            "{path} should not be routed"
        );
    }

    // No dead rules: each matches some path of the contract (or health).
    let mut paths: Vec<String> = requests().into_iter().map(|(p, _, _)| p).collect();
    paths.push(HEALTH.to_string());
    paths.extend(shared_paths());
    for e in ENDPOINTS {
        for prefix in PREFIXES {
            paths.push(format!("{}/9/extra", e.path(prefix)));
        }
    }
    for e in EXTENSIONS {
        if let Some(prefix) = e.prefix {
            let path = format!("{prefix}/uploads/1");
            assert_eq!(
                routing.route(&path).map(|r| r.function.as_str()),
                Some(e.function),
                "{path}"
            );
            paths.push(path);
        }
    }
    for rule in &routing.rules {
        assert!(
            paths.iter().any(|p| rule.matches(p)),
            "rule {} matches nothing",
            rule.value
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
    assert_eq!(
        routing.functions().len(),
        FUNCTIONS.len() + EXTENSIONS.iter().filter(|e| e.prefix.is_some()).count(),
        "every function is routed"
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
fn template() -> Value {
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
fn lambda_functions(t: &Value) -> BTreeMap<String, Value> {
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
fn binary_of(function: &Value) -> String {
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
fn ref_target(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str().map(String::from),
        _ => v["Ref"].as_str().map(String::from),
    }
}

#[test]
fn lambda_template_routes_every_contract_path_to_exactly_one_function() {
    let t = template();
    let functions = lambda_functions(&t);
    let mut routes: Vec<(String, String)> = Vec::new(); // (route path, binary)
    let mut binaries = BTreeSet::new();
    for (id, f) in &functions {
        let binary = binary_of(f);
        assert!(
            deployed().contains(&binary.as_str()),
            "{id}: {binary} is not a function"
        );
        assert!(binaries.insert(binary.clone()), "{binary} deployed twice");
        for (name, event) in f["Properties"]["Events"].as_mapping().unwrap() {
            if extension(&binary).is_some_and(|e| e.prefix.is_none()) {
                // Invoked by events (an EventBridge rule or S3), not routes.
                assert!(
                    matches!(event["Type"].as_str(), Some("EventBridgeRule" | "S3")),
                    "{id}.{name:?}"
                );
                continue;
            }
            assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{id}.{name:?}");
            let props = &event["Properties"];
            assert_eq!(
                ref_target(&props["ApiId"]).as_deref(),
                Some("HttpApi"),
                "{id}.{name:?}: one API"
            );
            assert!(
                matches!(props["Method"].as_str(), Some("ANY" | "GET")),
                "{id}.{name:?}"
            );
            routes.push((props["Path"].as_str().unwrap().to_string(), binary.clone()));
        }
    }
    assert_eq!(
        binaries.len(),
        deployed().len(),
        "every function is deployed"
    );
    let mut wrong = Vec::new();
    for (path, method, owner) in requests() {
        let hits: Vec<_> = routes
            .iter()
            .filter(|(route, _)| http_api_route_matches(route, &path))
            .collect();
        match hits.as_slice() {
            [(_, binary)] if binary == owner => {}
            _ => wrong.push(format!("{method} {path} (owner {owner}) matches {hits:?}")),
        }
    }
    for path in shared_paths() {
        let hits = routes
            .iter()
            .filter(|(r, _)| http_api_route_matches(r, &path))
            .count();
        if hits != 1 {
            wrong.push(format!("{path} matches {hits} routes"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let mut paths: Vec<String> = requests().into_iter().map(|(p, _, _)| p).collect();
    paths.extend(shared_paths());
    for (route, binary) in &routes {
        if let Some(prefix) = extension(binary).and_then(|e| e.prefix) {
            assert!(
                http_api_route_matches(route, &format!("{prefix}/uploads/1")),
                "route {route} of {binary} is not under {prefix}"
            );
            continue;
        }
        let used = paths.iter().any(|p| http_api_route_matches(route, p));
        assert!(used, "route {route} serves no path of the contract");
    }
}

#[test]
fn lambda_functions_get_one_least_privilege_policy_each() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    // What every slice uses today (create, get, find, list, update): see the README table.
    let allowed: BTreeSet<&str> = [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ]
    .into();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (id, f) in lambda_functions(&t) {
        // Extensions also reach the artifact bucket (only what they use).
        let s3_actions = extension(&binary_of(&f)).map_or(&[][..], |e| e.s3_actions);
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
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap()
        {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            let mut on_bucket = false;
            for action in statement["Action"].as_sequence().unwrap() {
                let action = action.as_str().unwrap();
                on_bucket |= action.starts_with("s3:");
                assert!(
                    allowed.contains(action) || s3_actions.contains(&action),
                    "{policy_id}: {action} is not needed"
                );
                assert!(
                    !action.contains('*'),
                    "{policy_id}: wildcard action {action}"
                );
            }
            let targets = format!("{:?}", statement["Resource"]);
            if on_bucket {
                assert!(
                    targets.contains("${ArtifactBucket.Arn}/${EventsPrefix}*"),
                    "{policy_id}: scoped to the bucket's prefix: {targets}"
                );
                continue;
            }
            assert!(
                targets.contains("MetadataTable"),
                "{policy_id}: scoped to the table"
            );
            assert!(!targets.contains("\"*\""), "{policy_id}: Resource *");
        }
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
