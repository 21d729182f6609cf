//! The routing of `infra/knative/routing.yaml` (a Gateway API HTTPRoute),
//! read the way a Gateway API implementation reads it: which Knative Service
//! serves a request (its method and path), and what those Services run (the
//! binary of their image, their `MR_SERVE`). Shared by the manifest tests and
//! by `functions-gateway`, the proxy that runs the upstream client through
//! the same routing.

use std::path::Path;

use serde::Deserialize;

/// Where the routing manifest lives in the repository.
pub const ROUTING_YAML: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/knative/routing.yaml");

/// The methods a Gateway API `HTTPRouteMatch` may name.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Suffix of a function's cluster-local host name: `<ksvc>.<namespace>` + this.
pub const CLUSTER_LOCAL: &str = ".svc.cluster.local";

/// Gateway API path match types (the ones the routing uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PathMatchType {
    /// The path equals the value.
    Exact,
    /// The path starts with the value, compared by whole `/` segments.
    PathPrefix,
    /// The path matches a regular expression. The Gateway API leaves the
    /// dialect, and how such a match ranks against the others, to each
    /// implementation, so only a subset every dialect reads alike is taken
    /// here (see [`regex_segments`]); the routing uses it where a path
    /// differs from another only after an id.
    RegularExpression,
}

/// One segment of a [`PathMatchType::RegularExpression`] path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexSegment {
    /// The segment itself.
    Literal(String),
    /// `[^/]+`: any one segment.
    Any,
}

/// The segments of a regular expression of the portable subset: `^`, then
/// `/`-separated segments, each a literal (letters, digits, `_`, `-`) or
/// `[^/]+`, then `$`. Anchored at both ends, so that it means the whole
/// path whether the implementation matches the whole path or searches it.
/// `None`: outside the subset.
pub fn regex_segments(pattern: &str) -> Option<Vec<RegexSegment>> {
    const ANY: &str = "\0"; // `[^/]+` holds a `/`: set aside before splitting
    let body = pattern.strip_prefix("^/")?.strip_suffix('$')?;
    body.replace("[^/]+", ANY)
        .split('/')
        .map(|s| match s {
            ANY => Some(RegexSegment::Any),
            _ if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                Some(RegexSegment::Literal(s.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// One match of a rule (a path, and a method if it names one), with the
/// Knative Service the rule sends it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub kind: PathMatchType,
    pub value: String,
    /// The method the match requires (`GET`, ...); `None`: any method.
    pub method: Option<String>,
    /// The Knative Service name (first label of the rewritten host name).
    pub function: String,
    /// The Knative Service namespace (second label).
    pub namespace: String,
}

/// How strongly a match claims a request, compared field by field (higher
/// wins), as the Gateway API orders matches: an `Exact` path, then the
/// longer prefix, then a match that names the method. A
/// `RegularExpression` ranks as a prefix of length 0, below every other
/// path as Istio ranks it; the Gateway API leaves its rank to the
/// implementation (Contour sorts it among the prefixes by length), so a
/// routing must not leave a request to a regular expression and a match to
/// another Service (tests/functions/manifests.rs refuses that).
pub type Precedence = (bool, usize, bool);

impl PathRule {
    /// Does the match accept `method` on `path` (the query string is not part of it)?
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && self.matches_path(path)
    }

    /// Gateway API semantics: `Exact` compares the whole path; `PathPrefix`
    /// matches whole segments (`/a/b` matches `/a/b` and `/a/b/c`, not `/a/bc`).
    pub fn matches_path(&self, path: &str) -> bool {
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
            PathMatchType::RegularExpression => {
                let Some(segments) = regex_segments(&self.value) else {
                    return false;
                };
                let parts: Vec<&str> = match path.strip_prefix('/') {
                    Some(rest) => rest.split('/').collect(),
                    None => return false,
                };
                parts.len() == segments.len()
                    && segments.iter().zip(&parts).all(|(s, p)| match s {
                        RegexSegment::Any => !p.is_empty(),
                        RegexSegment::Literal(l) => l == p,
                    })
            }
        }
    }

    /// This match's [`Precedence`] over others that accept the same request.
    pub fn precedence(&self) -> Precedence {
        let length = match self.kind {
            PathMatchType::RegularExpression => 0,
            _ => self.value.trim_end_matches('/').len(),
        };
        (
            self.kind == PathMatchType::Exact,
            length,
            self.method.is_some(),
        )
    }
}

/// The HTTPRoute, flattened to one [`PathRule`] per match, in rule order.
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
    #[serde(default)]
    method: Option<String>,
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
                if m.path.kind == PathMatchType::RegularExpression {
                    if regex_segments(&m.path.value).is_none() {
                        return Err(format!(
                            "rule {i}: RegularExpression {} is not ^/<segment>/...$ with \
                             literal or [^/]+ segments",
                            m.path.value
                        ));
                    }
                } else if !m.path.value.starts_with('/') {
                    return Err(format!("rule {i}: path {} is not absolute", m.path.value));
                }
                if let Some(method) = &m.method
                    && !METHODS.contains(&method.as_str())
                {
                    return Err(format!(
                        "rule {i}: method {method} is not a Gateway API method"
                    ));
                }
                rules.push(PathRule {
                    kind: m.path.kind,
                    value: m.path.value,
                    method: m.method,
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

    /// Every match that accepts `method` on `path`, the one a Gateway API
    /// implementation picks first: by [`Precedence`], then in rule order.
    pub fn matching(&self, method: &str, path: &str) -> Vec<&PathRule> {
        let mut found: Vec<&PathRule> = self
            .rules
            .iter()
            .filter(|r| r.matches(method, path))
            .collect();
        // Stable: among equal precedence, the earlier rule stays first.
        found.sort_by_key(|r| std::cmp::Reverse(r.precedence()));
        found
    }

    /// The match a Gateway API implementation picks for `method` on `path`.
    pub fn route(&self, method: &str, path: &str) -> Option<&PathRule> {
        self.matching(method, path).into_iter().next()
    }

    /// The Knative Services the rules send requests to, in order of first appearance.
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

/// A Knative Service of the manifests, as far as running it goes: the
/// function binary its image holds, and the role it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnativeService {
    pub name: String,
    pub namespace: String,
    /// The binary: the image's last path segment without tag or digest
    /// (`.../registered-models:0.1.0`), as `make images` names them.
    pub binary: String,
    /// The container's `MR_SERVE` (`reads`, `writes`); `None`: not set, so
    /// the binary serves every method.
    pub serve: Option<String>,
}

/// The binary an image holds: its last path segment, without tag or digest.
pub fn image_binary(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next().unwrap_or(last)
}

/// The Knative Services (`serving.knative.dev`) of every `.yaml` file in `dir`.
pub fn knative_services(dir: &Path) -> Result<Vec<KnativeService>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for doc in documents(&text).map_err(|e| format!("{}: {e}", file.display()))? {
            let knative = doc["kind"].as_str() == Some("Service")
                && doc["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("serving.knative.dev/"));
            if !knative {
                continue;
            }
            let at = |what: &str| format!("{}: Knative Service without {what}", file.display());
            let name = doc["metadata"]["name"]
                .as_str()
                .ok_or_else(|| at("a name"))?;
            let namespace = doc["metadata"]["namespace"]
                .as_str()
                .ok_or_else(|| at("a namespace"))?;
            let container = &doc["spec"]["template"]["spec"]["containers"][0];
            let image = container["image"].as_str().ok_or_else(|| at("an image"))?;
            let serve = container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|v| v["name"].as_str() == Some("MR_SERVE"))
                .and_then(|v| v["value"].as_str())
                .map(str::to_string);
            out.push(KnativeService {
                name: name.to_string(),
                namespace: namespace.to_string(),
                binary: image_binary(image).to_string(),
                serve,
            });
        }
    }
    Ok(out)
}
