//! The path routing of `infra/knative/routing.yaml` (a Gateway API HTTPRoute),
//! read the way a Gateway API implementation reads it: which function serves
//! a request path. Shared by the manifest tests and by `functions-gateway`,
//! the proxy that runs the upstream client through the same routing.

use serde::Deserialize;

/// Where the routing manifest lives in the repository.
pub const ROUTING_YAML: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/knative/routing.yaml");

/// Suffix of a function's cluster-local host name: `<ksvc>.<namespace>` + this.
pub const CLUSTER_LOCAL: &str = ".svc.cluster.local";

/// Gateway API path match types (the ones the routing uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PathMatchType {
    /// The path equals the value.
    Exact,
    /// The path starts with the value, compared by whole `/` segments.
    PathPrefix,
}

/// One path match of a rule, with the function the rule sends it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub kind: PathMatchType,
    pub value: String,
    /// The Knative Service name (first label of the rewritten host name).
    pub function: String,
    /// The Knative Service namespace (second label).
    pub namespace: String,
}

impl PathRule {
    /// Gateway API semantics: `Exact` compares the whole path; `PathPrefix`
    /// matches whole segments (`/a/b` matches `/a/b` and `/a/b/c`, not `/a/bc`).
    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathMatchType::Exact => path == self.value,
            PathMatchType::PathPrefix => {
                let prefix = self.value.trim_end_matches('/');
                prefix.is_empty()
                    || path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// The HTTPRoute, flattened to one [`PathRule`] per path match.
#[derive(Debug, Clone)]
pub struct Routing {
    pub namespace: String,
    pub hostnames: Vec<String>,
    pub rules: Vec<PathRule>,
    /// Backend services of the rules, as `namespace/name:port`.
    pub backends: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: serde_norway::Value,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpRouteSpec {
    parent_refs: Vec<serde_norway::Value>,
    #[serde(default)]
    hostnames: Vec<String>,
    rules: Vec<HttpRouteRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpRouteRule {
    matches: Vec<HttpRouteMatch>,
    #[serde(default)]
    filters: Vec<HttpRouteFilter>,
    backend_refs: Vec<BackendRef>,
}

#[derive(Deserialize)]
struct HttpRouteMatch {
    path: HttpPathMatch,
}

#[derive(Deserialize)]
struct HttpPathMatch {
    #[serde(rename = "type")]
    kind: PathMatchType,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpRouteFilter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url_rewrite: Option<UrlRewrite>,
}

#[derive(Deserialize)]
struct UrlRewrite {
    #[serde(default)]
    hostname: Option<String>,
}

#[derive(Deserialize)]
struct BackendRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    port: u16,
}

/// Every YAML document of a multi-document file, as generic values.
pub fn documents(text: &str) -> Result<Vec<serde_norway::Value>, String> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| serde_norway::Value::deserialize(doc).map_err(|e| e.to_string()))
        .filter(|doc| !matches!(doc, Ok(serde_norway::Value::Null)))
        .collect()
}

impl Routing {
    /// Read and check the routing manifest at `path`.
    pub fn load(path: &str) -> Result<Routing, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Routing::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// Parse the (single) HTTPRoute of a manifest file. Every rule must send
    /// its requests to one backend with the Host rewritten to a function's
    /// cluster-local name: that name says which function serves the rule.
    pub fn parse(text: &str) -> Result<Routing, String> {
        let mut routes = Vec::new();
        for doc in documents(text)? {
            let manifest: Manifest = serde_norway::from_value(doc).map_err(|e| e.to_string())?;
            if manifest.kind == "HTTPRoute" {
                if manifest.api_version != "gateway.networking.k8s.io/v1" {
                    return Err(format!(
                        "HTTPRoute apiVersion {} is not gateway.networking.k8s.io/v1",
                        manifest.api_version
                    ));
                }
                routes.push(manifest);
            }
        }
        let [route] = <[Manifest; 1]>::try_from(routes)
            .map_err(|r| format!("expected one HTTPRoute, found {}", r.len()))?;
        let spec: HttpRouteSpec =
            serde_norway::from_value(route.spec).map_err(|e| format!("HTTPRoute spec: {e}"))?;
        if spec.parent_refs.is_empty() {
            return Err("HTTPRoute has no parentRefs (no Gateway)".into());
        }
        let namespace = route
            .metadata
            .namespace
            .ok_or("HTTPRoute has no namespace")?;
        let mut rules = Vec::new();
        let mut backends = Vec::new();
        for (i, rule) in spec.rules.into_iter().enumerate() {
            let hostname = rule
                .filters
                .iter()
                .filter(|f| f.kind == "URLRewrite")
                .find_map(|f| f.url_rewrite.as_ref()?.hostname.clone())
                .ok_or(format!("rule {i}: no URLRewrite hostname"))?;
            let (function, ns) = hostname
                .strip_suffix(CLUSTER_LOCAL)
                .and_then(|h| h.split_once('.'))
                .filter(|(_, ns)| !ns.contains('.'))
                .ok_or(format!(
                    "rule {i}: hostname {hostname} is not <service>.<namespace>{CLUSTER_LOCAL}"
                ))?;
            let [backend] = <[BackendRef; 1]>::try_from(rule.backend_refs)
                .map_err(|b| format!("rule {i}: expected one backendRef, found {}", b.len()))?;
            backends.push(format!(
                "{}/{}:{}",
                backend.namespace.as_deref().unwrap_or(&namespace),
                backend.name,
                backend.port
            ));
            if rule.matches.is_empty() {
                return Err(format!("rule {i}: no matches (it would match every path)"));
            }
            for m in rule.matches {
                if !m.path.value.starts_with('/') {
                    return Err(format!("rule {i}: path {} is not absolute", m.path.value));
                }
                rules.push(PathRule {
                    kind: m.path.kind,
                    value: m.path.value,
                    function: function.to_string(),
                    namespace: ns.to_string(),
                });
            }
        }
        Ok(Routing {
            namespace,
            hostnames: spec.hostnames,
            rules,
            backends,
        })
    }

    /// Every rule whose match accepts `path` (the query string is not part of it).
    pub fn matching(&self, path: &str) -> Vec<&PathRule> {
        self.rules.iter().filter(|r| r.matches(path)).collect()
    }

    /// The rule a Gateway API implementation picks for `path`: an `Exact`
    /// match first, else the longest matching prefix.
    pub fn route(&self, path: &str) -> Option<&PathRule> {
        self.matching(path).into_iter().max_by_key(|r| {
            (
                r.kind == PathMatchType::Exact,
                r.value.trim_end_matches('/').len(),
            )
        })
    }

    /// The functions the rules send requests to, in order of first appearance.
    pub fn functions(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.rules {
            if !out.contains(&r.function.as_str()) {
                out.push(&r.function);
            }
        }
        out
    }
}
