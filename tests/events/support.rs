//! What the storage-event tests share: the test servers (s3s-fs, dynalite),
//! an S3 client to upload real objects, events built from those objects'
//! metadata the way Knative (or S3, or EventBridge) would send them, a
//! registry process on DynamoDB + S3, a fault-injecting proxy in front of
//! dynalite, and snapshots of registry state for comparisons.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use registry_test_support::{Api, Process, V1, http_client, server_env, uniq};

/// An S3 client on s3s-fs, as a pipeline would use it.
pub fn s3() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server_env("MR_TEST_S3_ENDPOINT"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            server_env("MR_TEST_S3_ACCESS_KEY"),
            server_env("MR_TEST_S3_SECRET_KEY"),
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A fresh bucket.
pub async fn new_bucket(s3: &aws_sdk_s3::Client, label: &str) -> String {
    let bucket = uniq(label);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    bucket
}

/// Upload `body` as a pipeline would (no metadata, no checksum: the
/// registry has to hash the content itself).
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// Upload with an S3 SHA-256 checksum (which the registry reads instead of
/// hashing).
pub async fn put_with_checksum(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    use base64::Engine as _;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body)))
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One object change, as a notification describes it.
#[derive(Debug, Clone)]
pub struct ObjectEvent {
    pub bucket: String,
    pub key: String,
    pub created: bool,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub sequencer: String,
    /// RFC 3339.
    pub time: String,
}

/// Increasing S3-style sequencers (s3s-fs has no notifications, so the
/// harness numbers the changes it makes, as S3 would).
pub fn next_sequencer() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0x0062_0000_0000_0000);
    format!("{:018X}", SEQ.fetch_add(1, Ordering::SeqCst))
}

fn rfc3339(ms: i64) -> String {
    registry::domain::rfc3339(u64::try_from(ms).unwrap_or(0))
}

/// The created event of an object, from its real metadata (HEAD).
pub async fn created(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> ObjectEvent {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
    let time = head
        .last_modified()
        .and_then(|t| t.to_millis().ok())
        .unwrap_or(0);
    ObjectEvent {
        bucket: bucket.into(),
        key: key.into(),
        created: true,
        size: head.content_length().map(|n| n as u64),
        etag: head.e_tag().map(|e| e.trim_matches('"').to_string()),
        sequencer: next_sequencer(),
        time: rfc3339(time),
    }
}

/// The removed event of an object.
pub fn removed(bucket: &str, key: &str) -> ObjectEvent {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ObjectEvent {
        bucket: bucket.into(),
        key: key.into(),
        created: false,
        size: None,
        etag: None,
        sequencer: next_sequencer(),
        time: rfc3339(now),
    }
}

/// How an event travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// CloudEvent, binary mode, data = an S3 notification (Knative's usual).
    Binary,
    /// CloudEvent, structured mode, data = an S3 notification.
    Structured,
    /// CloudEvent, binary mode, data = an EventBridge event.
    EventBridge,
    /// A MinIO-style webhook: the S3 notification as a plain JSON body.
    Plain,
}

/// The key as S3 notifications write it (form-URL-encoded, `/` kept).
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An S3 event notification (one record), as S3 sends it.
pub fn s3_notification(e: &ObjectEvent) -> Value {
    let mut object = json!({"key": encode_key(&e.key), "sequencer": e.sequencer});
    if let Some(size) = e.size {
        object["size"] = json!(size);
    }
    if let Some(etag) = &e.etag {
        object["eTag"] = json!(etag);
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": e.time,
        "eventName": if e.created { "ObjectCreated:Put" } else { "ObjectRemoved:Delete" },
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "registry",
            "bucket": {"name": e.bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                       "arn": format!("arn:aws:s3:::{}", e.bucket)},
            "object": object
        }
    }]})
}

/// An EventBridge event from S3.
pub fn eventbridge(e: &ObjectEvent) -> Value {
    let mut object = json!({"key": e.key, "sequencer": e.sequencer});
    if let Some(size) = e.size {
        object["size"] = json!(size);
    }
    if let Some(etag) = &e.etag {
        object["etag"] = json!(etag);
    }
    json!({
        "version": "0",
        "id": uniq("eb"),
        "detail-type": if e.created { "Object Created" } else { "Object Deleted" },
        "source": "aws.s3",
        "account": "123456789012",
        "time": e.time,
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{}", e.bucket)],
        "detail": {
            "version": "0",
            "bucket": {"name": e.bucket},
            "object": object,
            "request-id": "57H08PA84AB1JZW0",
            "requester": "123456789012",
            "reason": if e.created { "PutObject" } else { "DeleteObject" }
        }
    })
}

/// The HTTP request (headers, body) delivering `e` in `mode`.
pub fn request(e: &ObjectEvent, mode: Mode) -> (Vec<(&'static str, String)>, String) {
    let ce_type = if e.created {
        "com.amazonaws.s3.ObjectCreated:Put"
    } else {
        "com.amazonaws.s3.ObjectRemoved:Delete"
    };
    let id = uniq("ce");
    let source = format!("arn:aws:s3:::{}", e.bucket);
    match mode {
        Mode::Binary | Mode::EventBridge => {
            let data = if mode == Mode::Binary {
                s3_notification(e)
            } else {
                eventbridge(e)
            };
            let ce_type = if mode == Mode::Binary {
                ce_type.to_string()
            } else {
                format!(
                    "com.amazonaws.events.{}",
                    data["detail-type"].as_str().unwrap()
                )
            };
            (
                vec![
                    ("ce-specversion", "1.0".into()),
                    ("ce-id", id),
                    ("ce-source", source),
                    ("ce-type", ce_type),
                    ("ce-subject", e.key.clone()),
                    ("ce-time", e.time.clone()),
                    ("content-type", "application/json".into()),
                ],
                data.to_string(),
            )
        }
        Mode::Structured => (
            vec![("content-type", "application/cloudevents+json".into())],
            json!({
                "specversion": "1.0", "id": id, "source": source, "type": ce_type,
                "time": e.time, "datacontenttype": "application/json",
                "data": s3_notification(e)
            })
            .to_string(),
        ),
        Mode::Plain => (
            vec![("content-type", "application/json".into())],
            s3_notification(e).to_string(),
        ),
    }
}

/// A registry process (any binary) on dynalite (or a proxy of it) and s3s-fs.
pub struct Registry {
    _process: Process,
    pub base: String,
    client: reqwest::Client,
}

/// The environment of a registry on DynamoDB at `dynamodb` and bucket `bucket`.
pub fn registry_env(dynamodb: &str, bucket: &str, table: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MR_STORE", "dynamodb".into()),
        ("MR_CREATE_TABLE", "true".into()),
        ("MR_TABLE", table.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.into()),
        ("AWS_ENDPOINT_URL_S3", server_env("MR_TEST_S3_ENDPOINT")),
        ("AWS_ACCESS_KEY_ID", server_env("MR_TEST_S3_ACCESS_KEY")),
        ("AWS_SECRET_ACCESS_KEY", server_env("MR_TEST_S3_SECRET_KEY")),
        ("AWS_REGION", "us-east-1".into()),
        ("MR_ARTIFACT_BUCKET", bucket.into()),
        ("MR_LOG", "info,registry=debug".into()),
    ]
}

/// Where a registry keeps its metadata (the bytes are on s3s-fs either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store (redb) in the process's own data directory.
    Embedded,
    /// DynamoDB (dynalite), a new table.
    DynamoDb,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Embedded, Backend::DynamoDb];

    /// `registry-local` on this backend, with bucket `bucket` on s3s-fs.
    pub async fn start(self, bucket: &str) -> Registry {
        let dynalite = server_env("MR_TEST_DYNAMODB_ENDPOINT");
        let mut env = registry_env(&dynalite, bucket, &uniq("events"));
        if self == Backend::Embedded {
            // Applied after registry_env's MR_STORE=dynamodb.
            env.push(("MR_STORE", "embedded".into()));
        }
        Registry::start_with("registry-local", env).await
    }
}

impl Registry {
    /// Start `binary` (e.g. `registry-local`, `storage-events`) on a new
    /// table, with `extra` environment.
    pub async fn start(
        binary: &str,
        dynamodb: &str,
        bucket: &str,
        extra: &[(&'static str, String)],
    ) -> Registry {
        let mut env = registry_env(dynamodb, bucket, &uniq("events"));
        env.extend(extra.iter().cloned());
        Registry::start_with(binary, env).await
    }

    /// Start `binary` with exactly `env` (see [`registry_env`]).
    pub async fn start_with(binary: &str, env: Vec<(&'static str, String)>) -> Registry {
        let (process, base) = Process::start_http(binary, &env).await;
        Registry {
            _process: process,
            base,
            client: http_client(),
        }
    }

    /// The Kubeflow API on `/api/model_registry/v1`.
    pub fn api(&self) -> Api {
        Api::new(self.client.clone(), self.base.clone(), V1)
    }

    /// Deliver one event at `path`: the status and the JSON body.
    pub async fn deliver_at(&self, path: &str, e: &ObjectEvent, mode: Mode) -> (u16, Value) {
        let (headers, body) = request(e, mode);
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("deliver event");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Deliver at `/events/storage`, expecting 202.
    pub async fn deliver(&self, e: &ObjectEvent, mode: Mode) -> Value {
        let (status, body) = self.deliver_at("/events/storage", e, mode).await;
        assert_eq!(status, 202, "{} {}: {body}", e.key, e.created);
        body
    }

    /// POST a raw body with headers at `path`.
    pub async fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Wait until the model artifact of `model`/`version` is in `state`;
    /// returns it.
    pub async fn wait_artifact(&self, model: &str, version: &str, state: &str) -> Value {
        let api = self.api();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = artifact_of(&api, model, version).await;
            if let Some(a) = &found
                && a["state"] == state
            {
                return a.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{model}/{version} not {state}: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The model artifact named after `model` in its version `version`, if any.
pub async fn artifact_of(api: &Api, model: &str, version: &str) -> Option<Value> {
    let m = api.get_q("/registered_model", &[("name", model)]).await;
    if m.status == 404 {
        return None;
    }
    let m = m.ok(200);
    let v = api
        .get_q(
            "/model_version",
            &[
                ("name", version),
                ("parentResourceId", m["id"].as_str().unwrap()),
            ],
        )
        .await;
    if v.status == 404 {
        return None;
    }
    let v = v.ok(200);
    let r = api
        .get_q(
            "/model_artifact",
            &[
                ("name", model),
                ("parentResourceId", v["id"].as_str().unwrap()),
            ],
        )
        .await;
    (r.status == 200).then_some(r.body)
}

/// Everything registered for `model`, without ids and timestamps (which
/// legitimately differ between two registries): the model, its versions
/// and each version's artifacts (sorted by type and name).
pub async fn snapshot(api: &Api, model: &str) -> Value {
    fn strip(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            for k in [
                "id",
                "createTimeSinceEpoch",
                "lastUpdateTimeSinceEpoch",
                "registeredModelId",
            ] {
                o.remove(k);
            }
        }
        v
    }
    let models = api
        .get_q(
            "/registered_models",
            &[("filterQuery", &format!("name = '{model}'"))],
        )
        .await
        .ok(200);
    let mut out = Vec::new();
    for m in models["items"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap();
        let versions = api
            .get(&format!("/registered_models/{id}/versions?orderBy=NAME"))
            .await
            .ok(200);
        let mut vs = Vec::new();
        for v in versions["items"].as_array().unwrap() {
            let vid = v["id"].as_str().unwrap();
            let artifacts = api
                .get(&format!("/model_versions/{vid}/artifacts"))
                .await
                .ok(200);
            let mut arts: Vec<Value> = artifacts["items"]
                .as_array()
                .unwrap()
                .iter()
                .cloned()
                .map(strip)
                .collect();
            arts.sort_by_key(|a| format!("{}/{}", a["artifactType"], a["name"]));
            let mut v = strip(v.clone());
            v["artifacts"] = Value::Array(arts);
            vs.push(v);
        }
        let mut m = strip(m.clone());
        m["versions"] = Value::Array(vs);
        out.push(m);
    }
    Value::Array(out)
}

/// A custom property's value (whatever its type), as a JSON value.
pub fn prop(entity: &Value, key: &str) -> Value {
    let p = &entity["customProperties"][key];
    for field in ["string_value", "double_value", "bool_value", "struct_value"] {
        if let Some(v) = p.get(field) {
            return v.clone();
        }
    }
    match p.get("int_value").and_then(Value::as_str) {
        Some(i) => json!(i.parse::<i64>().unwrap()),
        None => Value::Null,
    }
}

/// The per-file listing of an artifact (`files`, a struct value).
pub fn files_of(artifact: &Value) -> Value {
    use base64::Engine as _;
    let raw = prop(artifact, "files");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.as_str().expect("files struct"))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

// ------------------------------------------------------------------ faults

/// A proxy in front of dynalite that can fail requests: after
/// [`FaultProxy::fail_after`]`(n)`, `n` more requests pass and every later
/// one is answered with a DynamoDB error the registry treats as an outage
/// (and the SDK does not retry), until [`FaultProxy::heal`].
pub struct FaultProxy {
    pub url: String,
    state: Arc<ProxyState>,
}

struct ProxyState {
    target: String,
    /// -1: healthy; n >= 0: requests that still pass.
    passes: AtomicI64,
    failed: AtomicU64,
    client: reqwest::Client,
}

impl FaultProxy {
    pub async fn start(target: &str) -> FaultProxy {
        let state = Arc::new(ProxyState {
            target: target.trim_end_matches('/').to_string(),
            passes: AtomicI64::new(-1),
            failed: AtomicU64::new(0),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy { url, state }
    }

    pub fn fail_after(&self, n: i64) {
        self.state.passes.store(n, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.state.passes.store(-1, Ordering::SeqCst);
    }

    /// Requests failed so far.
    pub fn failed(&self) -> u64 {
        self.state.failed.load(Ordering::SeqCst)
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pass = state
        .passes
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            -1 => Some(-1),
            0 => None,
            n => Some(n - 1),
        })
        .is_ok();
    if !pass {
        state.failed.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            json!({"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                   "message": "injected fault"})
            .to_string(),
        )
            .into_response();
    }
    let mut req = state
        .client
        .request(method, format!("{}{}", state.target, uri.path()))
        .body(body);
    for (k, v) in &headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection") {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = HeaderMap::new();
            for (k, v) in resp.headers() {
                if !matches!(
                    k.as_str(),
                    "content-length" | "connection" | "transfer-encoding"
                ) {
                    out.insert(k.clone(), v.clone());
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
