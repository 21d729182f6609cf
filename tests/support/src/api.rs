//! The Kubeflow Model Registry REST API over HTTP, as the tests talk to
//! it: [`Api`] (one server, one prefix) returns a [`Resp`] per exchange,
//! whose assertions describe the request and the response when they fail,
//! and check the error shape (`{"code": <status text>, "message": ...}`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

pub const V1ALPHA3: &str = "/api/model_registry/v1alpha3";
pub const V1: &str = "/api/model_registry/v1";
/// Both API prefixes (clients 0.3.12+ use v1, older ones v1alpha3).
pub const PREFIXES: [&str; 2] = [V1ALPHA3, V1];

/// Short tag for a prefix, handy inside unique names.
pub fn tag(prefix: &str) -> &'static str {
    if prefix.ends_with("v1alpha3") {
        "a3"
    } else {
        "v1"
    }
}

/// A name unique across processes and calls: `<label>-<pid>-<nanos>-<n>`
/// (lowercase when `label` is, so also a bucket or table name).
pub fn uniq(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{label}-{}-{nanos:x}-{n}", std::process::id())
}

// ---------------------------------------------------------------- responses

/// One HTTP exchange: what was asked and what came back.
#[derive(Debug, Clone)]
pub struct Resp {
    /// "METHOD URL body=..." for failure messages.
    pub req: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub text: String,
    /// Parsed JSON body, `Value::Null` when the body is not JSON.
    pub body: Value,
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("?")
}

impl Resp {
    /// The request and the response, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "request:  {}\nresponse: {} {} content-type={:?}\nbody:     {}",
            self.req,
            self.status,
            reason(self.status),
            self.content_type,
            truncate(&self.text, 2000)
        )
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn check(&self, expected: u16) -> &Value {
        if self.status != expected {
            panic!(
                "expected HTTP {expected} {}\n{}",
                reason(expected),
                self.describe()
            );
        }
        &self.body
    }

    /// Asserts the status and returns the JSON body by value.
    #[track_caller]
    pub fn ok(self, expected: u16) -> Value {
        self.check(expected);
        self.body
    }

    /// Asserts one of several statuses and returns the JSON body.
    #[track_caller]
    pub fn check_in(&self, allowed: &[u16]) -> &Value {
        if !allowed.contains(&self.status) {
            panic!("expected HTTP status in {allowed:?}\n{}", self.describe());
        }
        &self.body
    }

    /// Asserts an error response: status `expected`, content type application/json and a
    /// `{"code": "<status text>", "message": "<non-empty>"}` body.
    #[track_caller]
    pub fn err(&self, expected: u16) -> &Self {
        if self.status != expected {
            panic!(
                "expected error HTTP {expected} {}\n{}",
                reason(expected),
                self.describe()
            );
        }
        self.assert_error_shape();
        self
    }

    /// Asserts a 4xx (never 5xx) error with the standard error shape.
    #[track_caller]
    pub fn client_err(&self) -> &Self {
        if !(400..500).contains(&self.status) {
            panic!("expected a 4xx client error\n{}", self.describe());
        }
        self.assert_error_shape();
        self
    }

    #[track_caller]
    pub fn assert_error_shape(&self) {
        let ct = self.content_type.clone().unwrap_or_default();
        if !ct.starts_with("application/json") {
            panic!(
                "error response must have content-type application/json\n{}",
                self.describe()
            );
        }
        let code = self.body.get("code").and_then(Value::as_str);
        let message = self.body.get("message").and_then(Value::as_str);
        match (code, message) {
            (Some(code), Some(message)) => {
                if code != reason(self.status) {
                    panic!(
                        "error `code` must be the HTTP status text {:?}, got {code:?}\n{}",
                        reason(self.status),
                        self.describe()
                    );
                }
                if message.trim().is_empty() {
                    panic!("error `message` must not be empty\n{}", self.describe());
                }
            }
            _ => panic!(
                "error body must be {{\"code\": string, \"message\": string}}\n{}",
                self.describe()
            ),
        }
    }

    /// The error message (after [`Resp::err`]).
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...({} bytes)", &s[..cut], s.len())
}

// ---------------------------------------------------------------- client

/// HTTP client bound to one server and one API prefix.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    pub prefix: &'static str,
    /// Sent as `Authorization: Bearer <token>` when set.
    bearer: Option<String>,
}

impl Api {
    pub fn new(client: reqwest::Client, base_url: String, prefix: &'static str) -> Api {
        Api {
            client,
            base: base_url,
            prefix,
            bearer: None,
        }
    }

    /// The same client, authenticated with `token`.
    pub fn with_bearer(&self, token: &str) -> Api {
        Api {
            bearer: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// A request builder for `path` under this prefix (send it with [`Api::send`]).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Absolute URL of `path` under this prefix.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}{}", self.base, self.prefix, path)
    }

    pub fn tag(&self) -> &'static str {
        tag(self.prefix)
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder, body: Option<String>) -> Resp {
        let rb = match &self.bearer {
            Some(token) => rb.bearer_auth(token),
            None => rb,
        };
        let req = rb.build().expect("build request");
        let mut desc = format!("{} {}", req.method(), req.url());
        if let Some(b) = body {
            desc.push_str(" body=");
            desc.push_str(&truncate(&b, 600));
        }
        let resp = self
            .client
            .execute(req)
            .await
            .unwrap_or_else(|e| panic!("{desc}: transport error: {e:?}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{desc}: reading body: {e:?}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            req: desc,
            status,
            content_type,
            text,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path)), None).await
    }

    /// GET with query parameters (properly URL-encoded).
    pub async fn get_q(&self, path: &str, query: &[(&str, &str)]) -> Resp {
        self.send(self.client.get(self.url(path)).query(query), None)
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client.post(self.url(path)).json(body),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client.patch(self.url(path)).json(body),
            Some(body.to_string()),
        )
        .await
    }

    /// Any method with a raw (possibly invalid) JSON body.
    pub async fn raw(&self, method: Method, path: &str, body: &str) -> Resp {
        self.send(
            self.client
                .request(method, self.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned()),
            Some(body.to_owned()),
        )
        .await
    }

    /// Any method without a body.
    pub async fn call(&self, method: Method, path: &str) -> Resp {
        self.send(self.client.request(method, self.url(path)), None)
            .await
    }

    // ------------------------------------------------------------ entity helpers

    pub async fn create_model(&self, name: &str) -> Value {
        self.post("/registered_models", &json!({ "name": name }))
            .await
            .ok(201)
    }

    pub async fn create_model_body(&self, body: Value) -> Value {
        self.post("/registered_models", &body).await.ok(201)
    }

    /// POST /model_versions.
    pub async fn create_version(&self, model_id: &str, name: &str) -> Value {
        self.post(
            "/model_versions",
            &json!({ "name": name, "registeredModelId": model_id }),
        )
        .await
        .ok(201)
    }

    /// A model plus one version: (model, version).
    pub async fn model_and_version(&self, label: &str) -> (Value, Value) {
        let m = self.create_model(&uniq(label)).await;
        let v = self.create_version(&id(&m), "v1").await;
        (m, v)
    }

    /// POST /model_versions/{vid}/artifacts expecting 201 (model and doc artifacts).
    pub async fn upsert_new_artifact(&self, version_id: &str, body: Value) -> Value {
        self.post(&format!("/model_versions/{version_id}/artifacts"), &body)
            .await
            .ok(201)
    }

    /// GET a list endpoint and check the envelope.
    pub async fn list(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let v = self.get_q(path, query).await.ok(200);
        assert_envelope(&v, path);
        v
    }
}

// ---------------------------------------------------------------- entities and lists

/// The `id` of an entity (a decimal string).
#[track_caller]
pub fn id(v: &Value) -> String {
    let s = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("entity has no string `id`: {v}"));
    s.to_owned()
}

/// The list envelope `{items, nextPageToken, pageSize, size}` with the right types.
#[track_caller]
pub fn assert_envelope(v: &Value, what: &str) {
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{what}: list must have an `items` array: {v}"));
    assert!(
        v.get("nextPageToken").is_some_and(Value::is_string),
        "{what}: list must have a string `nextPageToken`: {v}"
    );
    let page_size = v.get("pageSize").and_then(Value::as_u64);
    assert!(
        page_size.is_some(),
        "{what}: list must have an integer `pageSize`: {v}"
    );
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{what}: list must have an integer `size`: {v}"));
    assert_eq!(
        size as usize,
        items.len(),
        "{what}: `size` must equal the number of items: {v}"
    );
}

/// The `items` of a list (empty when there are none).
pub fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The ids of entities, in order.
pub fn ids_of(items: &[Value]) -> Vec<String> {
    items.iter().map(id).collect()
}
