//! The Lambda path, for real: a Lambda Runtime API on 127.0.0.1 hands API
//! Gateway (REST v1, HTTP API v2) and Function URL events to a function
//! binary started with `AWS_LAMBDA_RUNTIME_API` pointing at it, and collects
//! what the binary posts back to `.../response` or `.../error`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};

use registry_test_support::{Process, free_port};

/// What the function posted back for one invocation.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `POST /2018-06-01/runtime/invocation/{id}/response`: the function's result.
    Response(Value),
    /// `POST /2018-06-01/runtime/invocation/{id}/error`: type header and error body.
    Error(String, Value),
}

struct Emulator {
    events: Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<Value>>,
}

/// A Lambda Runtime API serving one function process.
pub(crate) struct RuntimeApi {
    address: String,
    emulator: Arc<Emulator>,
    queue: mpsc::UnboundedSender<(String, Value)>,
    next_id: AtomicU64,
}

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

async fn next(State(emu): State<Arc<Emulator>>) -> impl IntoResponse {
    // Long poll, like Lambda: answer when an event is queued.
    let Some((id, event)) = emu.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:registry-test"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
            .parse()
            .unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    (StatusCode::OK, headers, event.to_string())
}

async fn response(
    State(emu): State<Arc<Emulator>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&emu, &id, Outcome::Response(value)).await
}

async fn error(
    State(emu): State<Arc<Emulator>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let kind = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&emu, &id, Outcome::Error(kind, value)).await
}

async fn init_error(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    emu.init_errors.lock().await.push(value);
    StatusCode::ACCEPTED
}

async fn finish(emu: &Emulator, id: &str, outcome: Outcome) -> StatusCode {
    match emu.waiting.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

impl RuntimeApi {
    pub(crate) async fn start() -> RuntimeApi {
        let (queue, events) = mpsc::unbounded_channel();
        let emulator = Arc::new(Emulator {
            events: Mutex::new(events),
            waiting: Mutex::new(HashMap::new()),
            init_errors: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(NEXT, get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(emulator.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        RuntimeApi {
            address,
            emulator,
            queue,
            next_id: AtomicU64::new(1),
        }
    }

    /// Start `function` as Lambda would: the Runtime API address and the
    /// function's identity in the environment. `PORT` is set too, to check
    /// that the binary does not also serve HTTP.
    fn spawn(&self, function: &str, port: u16) -> Process {
        self.spawn_with(function, port, &[])
    }

    /// [`RuntimeApi::spawn`] with `extra` environment (which wins).
    pub(crate) fn spawn_with(
        &self,
        function: &str,
        port: u16,
        extra: &[(&str, String)],
    ) -> Process {
        let mut env = vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]test".to_string(),
            ),
            ("AWS_REGION", "us-east-1".to_string()),
            ("PORT", port.to_string()),
        ];
        env.extend(extra.iter().cloned());
        Process::spawn(function, &env)
    }

    /// Queue one event and wait for what the function posts back.
    pub(crate) async fn invoke(&self, event: Value, process: &Process) -> Outcome {
        let id = format!(
            "8476a536-e9f4-11e8-9739-{:012}",
            self.next_id.fetch_add(1, Ordering::SeqCst)
        );
        let (tx, rx) = oneshot::channel();
        self.emulator.waiting.lock().await.insert(id.clone(), tx);
        self.queue.send((id, event)).unwrap();
        match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!(
                "no answer from {} (init errors: {:?})\n{}",
                process.name,
                self.emulator.init_errors.lock().await,
                process.log()
            ),
        }
    }

    /// Invoke with an HTTP event and return the HTTP response it encodes.
    async fn http(&self, event: Value, process: &Process) -> HttpAnswer {
        match self.invoke(event, process).await {
            Outcome::Response(v) => HttpAnswer::from_lambda(v),
            Outcome::Error(kind, body) => {
                panic!("invocation error {kind}: {body}\n{}", process.log())
            }
        }
    }
}

/// The HTTP response inside a Lambda response (any of the three event kinds).
#[derive(Debug)]
struct HttpAnswer {
    status: u16,
    content_type: String,
    json: Value,
}

impl HttpAnswer {
    fn from_lambda(v: Value) -> HttpAnswer {
        let status = v["statusCode"].as_u64().expect("statusCode") as u16;
        let raw = v["body"].as_str().unwrap_or_default();
        let body = if v["isBase64Encoded"].as_bool() == Some(true) {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .expect("base64 body"),
            )
            .expect("UTF-8 body")
        } else {
            raw.to_string()
        };
        let content_type = v["headers"]["content-type"]
            .as_str()
            .or_else(|| v["multiValueHeaders"]["content-type"][0].as_str())
            .unwrap_or_default()
            .to_string();
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?} in {v}"));
        HttpAnswer {
            status,
            content_type,
            json,
        }
    }
}

/// Where an HTTP API v2 event comes from.
#[derive(Clone, Copy)]
enum Source {
    /// API Gateway HTTP API, `$default` stage.
    HttpApi,
    /// API Gateway HTTP API, a named stage reached through its execute-api
    /// URL: `rawPath` starts with the stage.
    HttpApiStage(&'static str),
    /// A Lambda Function URL.
    FunctionUrl,
}

/// An API Gateway HTTP API (payload 2.0) or Function URL event, as AWS
/// documents them. `query` is the raw (encoded) query string.
fn v2_event(source: Source, method: &str, path: &str, query: &str, body: Option<&str>) -> Value {
    let (domain, stage, route_key, raw_path) = match source {
        Source::HttpApi => (
            "r3pmxmplak.execute-api.us-east-1.amazonaws.com",
            "$default",
            format!("ANY {path}"),
            path.to_string(),
        ),
        Source::HttpApiStage(stage) => (
            "r3pmxmplak.execute-api.us-east-1.amazonaws.com",
            stage,
            format!("ANY {path}"),
            format!("/{stage}{path}"),
        ),
        Source::FunctionUrl => (
            "a5ixmplstfoyxsqk6ft3s4e6hm0jvkew.lambda-url.us-east-1.on.aws",
            "$default",
            "$default".to_string(),
            path.to_string(),
        ),
    };
    let params: serde_json::Map<String, Value> = url_pairs(query)
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    let (body, encoded) = match body {
        // Function URLs base64-encode bodies; API Gateway passes text as is.
        Some(b) if matches!(source, Source::FunctionUrl) => (
            Value::from(base64::engine::general_purpose::STANDARD.encode(b)),
            true,
        ),
        Some(b) => (Value::from(b), false),
        None => (Value::Null, false),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {
            "accept": "application/json",
            "content-type": "application/json",
            "host": domain,
            "user-agent": "model-registry-python/0.3.18",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": domain.split('.').next().unwrap(),
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap(),
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "model-registry-python/0.3.18"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": route_key,
            "stage": stage,
            "time": "10/Mar/2026:00:03:58 +0000",
            "timeEpoch": 1773101038000u64
        },
        "body": body,
        "isBase64Encoded": encoded
    });
    if !params.is_empty() {
        event["queryStringParameters"] = Value::Object(params);
    }
    event
}

/// An API Gateway REST API (payload 1.0) proxy event on stage `stage`.
fn v1_event(
    stage: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let single: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let multi: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!([v])))
        .collect();
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "application/json", "host": "1234567890.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"content-type": ["application/json"], "host": ["1234567890.execute-api.us-east-1.amazonaws.com"]},
        "queryStringParameters": if single.is_empty() { Value::Null } else { Value::Object(single) },
        "multiValueQueryStringParameters": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
        "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "1234567890",
            "domainName": "1234567890.execute-api.us-east-1.amazonaws.com",
            "httpMethod": method,
            "identity": {"sourceIp": "198.51.100.7", "userAgent": "curl/8.5.0"},
            "path": format!("/{stage}{path}"),
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTimeEpoch": 1773101038000u64,
            "resourceId": "123456",
            "resourcePath": "/{proxy+}",
            "stage": stage
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Decoded `key=value` pairs of a query string (what API Gateway puts in
/// `queryStringParameters`).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit()
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

const V1: &str = "/api/model_registry/v1";
const V1ALPHA3: &str = "/api/model_registry/v1alpha3";

/// Create, get, list with query parameters and errors through one kind of
/// HTTP API v2 event, against the `registered-models` function.
async fn registered_models_through(source: Source, tag: &str) {
    let api = RuntimeApi::start().await;
    let port = free_port();
    let process = api.spawn("registered-models", port);

    // create (201), twice, for a list of two
    let mut ids = Vec::new();
    for name in [format!("{tag}-mnist"), format!("{tag}-resnet")] {
        let body = json!({"name": name, "owner": "ada", "customProperties": {
            "framework": {"metadataType": "MetadataStringValue", "string_value": "pytorch"}}})
        .to_string();
        let created = api
            .http(
                v2_event(
                    source,
                    "POST",
                    &format!("{V1}/registered_models"),
                    "",
                    Some(&body),
                ),
                &process,
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.content_type, "application/json");
        assert_eq!(created.json["name"], name.as_str());
        ids.push(created.json["id"].as_str().expect("id").to_string());
    }

    // In Lambda mode the binary serves events only: nothing listens on PORT.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the Lambda binary also listens on PORT"
    );

    // get by id (200), on the other prefix
    let got = api
        .http(
            v2_event(
                source,
                "GET",
                &format!("{V1ALPHA3}/registered_models/{}", ids[0]),
                "",
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.json["id"], ids[0].as_str());
    assert_eq!(
        got.json["customProperties"]["framework"]["string_value"],
        "pytorch"
    );

    // list with query parameters: paging, ordering and an encoded filter
    let filter = format!("name LIKE '{tag}-%' AND framework.string_value = 'pytorch'");
    let query = format!(
        "pageSize=1&orderBy=NAME&sortOrder=DESC&filterQuery={}",
        encode(&filter)
    );
    let page = api
        .http(
            v2_event(
                source,
                "GET",
                &format!("{V1}/registered_models"),
                &query,
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    let items = page.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page:?}");
    assert_eq!(items[0]["name"], format!("{tag}-resnet").as_str());
    assert_eq!(page.json["pageSize"], 1);
    let token = page.json["nextPageToken"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(!token.is_empty());
    let query = format!("{query}&nextPageToken={}", encode(&token));
    let last = api
        .http(
            v2_event(
                source,
                "GET",
                &format!("{V1}/registered_models"),
                &query,
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(
        last.json["items"][0]["name"],
        format!("{tag}-mnist").as_str()
    );
    assert_eq!(last.json["nextPageToken"], "");

    // errors keep the API's shape: bad id (400), unknown id (404), malformed
    // body (400), a path another function serves (404)
    let bad = api
        .http(
            v2_event(
                source,
                "GET",
                &format!("{V1}/registered_models/abc"),
                "",
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.json["code"], "Bad Request");
    let missing = api
        .http(
            v2_event(
                source,
                "GET",
                &format!("{V1}/registered_models/999999"),
                "",
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.json["message"].is_string());
    let malformed = api
        .http(
            v2_event(
                source,
                "POST",
                &format!("{V1}/registered_models"),
                "",
                Some("{\"name\": "),
            ),
            &process,
        )
        .await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    let elsewhere = api
        .http(
            v2_event(source, "GET", &format!("{V1}/model_versions"), "", None),
            &process,
        )
        .await;
    assert_eq!(elsewhere.status, 404, "{elsewhere:?}");
    assert_eq!(elsewhere.json["message"], "no such route");
}

/// Percent-encode a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn http_api_v2_events() {
    registered_models_through(Source::HttpApi, "httpapi").await;
}

#[tokio::test]
async fn http_api_v2_events_on_a_named_stage() {
    registered_models_through(Source::HttpApiStage("prod"), "staged").await;
}

#[tokio::test]
async fn function_url_events() {
    registered_models_through(Source::FunctionUrl, "url").await;
}

#[tokio::test]
async fn rest_api_v1_events_on_a_stage() {
    let api = RuntimeApi::start().await;
    let process = api.spawn("model-versions", free_port());
    // A version needs a model, which another function serves: this store has
    // none, so the create is a 404 in the API's shape...
    let create = api
        .http(
            v1_event(
                "prod",
                "POST",
                &format!("{V1}/model_versions"),
                &[],
                Some(r#"{"name":"1.0.0","registeredModelId":"1"}"#),
            ),
            &process,
        )
        .await;
    assert_eq!(create.status, 404, "{create:?}");
    assert_eq!(create.json["code"], "Not Found");
    // ...and lists (with multi-value query parameters) work on the stage.
    let list = api
        .http(
            v1_event(
                "prod",
                "GET",
                &format!("{V1ALPHA3}/model_versions"),
                &[("pageSize", "5"), ("orderBy", "CREATE_TIME")],
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.json["pageSize"], 5);
    assert_eq!(list.json["items"], json!([]));
}

#[tokio::test]
async fn an_event_that_is_not_http_is_an_invocation_error_and_the_function_goes_on() {
    let api = RuntimeApi::start().await;
    let process = api.spawn("artifacts", free_port());
    match api
        .invoke(json!({"Records": [{"eventSource": "aws:s3"}]}), &process)
        .await
    {
        Outcome::Error(kind, body) => {
            assert!(!kind.is_empty(), "error type header: {body}");
            assert!(body["errorMessage"].is_string(), "{body}");
        }
        Outcome::Response(v) => panic!("expected an invocation error, got {v}"),
    }
    let next = api
        .http(
            v2_event(
                Source::FunctionUrl,
                "GET",
                &format!("{V1}/artifacts"),
                "pageSize=2",
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.json["size"], 0);
}

/// `MR_AUTH=apigateway`: the caller is what API Gateway's JWT authorizer
/// put in the request context (claims flattened to strings, lists as
/// `[a b]`), and the policy scopes it like any other caller.
#[tokio::test]
async fn api_gateway_authorizer_claims_name_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "bindings:\n  - role: writer\n    groups: [ml-team]\n    models: [\"churn-*\"]\n",
    )
    .unwrap();
    let api = RuntimeApi::start().await;
    let process = api.spawn_with(
        "registered-models",
        free_port(),
        &[
            ("MR_AUTH", "apigateway".to_string()),
            ("MR_POLICY", policy.display().to_string()),
            ("MR_DATA_DIR", dir.path().join("data").display().to_string()),
        ],
    );
    let with_claims = |name: &str, claims: Value| {
        let mut e = v2_event(
            Source::HttpApi,
            "POST",
            &format!("{V1}/registered_models"),
            "",
            Some(&json!({"name": name}).to_string()),
        );
        e["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
        e
    };
    let team = json!({"sub": "ada", "groups": "[ml-team risk]", "iss": "https://idp"});
    let ok = api
        .http(with_claims("churn-1", team.clone()), &process)
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    let denied = api.http(with_claims("fraud-1", team), &process).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    let outsider = json!({"sub": "eve", "groups": "[other]"});
    let denied = api.http(with_claims("churn-2", outsider), &process).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    // No authorizer context: anonymous, who has no role here.
    let anon = api
        .http(
            v2_event(
                Source::HttpApi,
                "GET",
                &format!("{V1}/registered_models"),
                "",
                None,
            ),
            &process,
        )
        .await;
    assert_eq!(anon.status, 401, "{anon:?}");
}
