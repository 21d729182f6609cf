//! Table 4: time from upload to visible registration, against a running
//! registry whose artifact store is S3 (`MR_ARTIFACT_BUCKET`, e.g. on
//! s3s-fs), two ways, one upload at a time:
//!
//! - storage event: start an upload session (for the presigned `PUT` URL: no
//!   client credentials needed), `PUT` the bytes to the bucket, deliver the
//!   event S3 would send to `/events/storage` the way Knative delivers it (a
//!   binary-mode CloudEvent), then poll the model artifact through the API
//!   until it reads `LIVE`;
//! - upload extension: start a session, `PUT` the bytes, call completion
//!   (which verifies and registers in-process); its answer holds the
//!   artifact, `LIVE`.
//!
//! The clock starts right before the `PUT` and stops when the client sees
//! the artifact `LIVE`. A deployment adds S3's notification delay (not
//! measured here).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use reqwest::header::{CONTENT_TYPE, ETAG};
use reqwest::{Client, Method, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::load::{self, Outcome};
use crate::results::{self, Record, Timing};

const API: &str = "/api/model_registry/v1";
const EXT: &str = "/api/registry_ext/v1";

/// The `op` of the two ways in `results.jsonl`.
pub const VIA_EVENT: &str = "upload to visible (storage event)";
pub const VIA_EXTENSION: &str = "upload to visible (upload extension)";

/// How long an artifact may take to read `LIVE`.
const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two reads of the artifact.
const POLL: Duration = Duration::from_millis(1);

pub struct UploadArgs {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub system: String,
    pub uploads: u64,
    pub bytes: usize,
    pub warmup: u64,
    pub out: PathBuf,
}

/// One registry, one HTTP client (keep-alive, one connection per host).
struct Ctx {
    client: Client,
    base: String,
    /// Unique per run, so that model names never clash with an earlier run.
    run: String,
    payload: Vec<u8>,
    sha256: String,
}

/// What the registry answered to a session start, for the one file.
struct Session {
    key: String,
    put_url: String,
    complete_url: String,
}

pub async fn run(args: UploadArgs) -> Result<(), String> {
    if args.uploads == 0 || args.bytes == 0 {
        return Err("--uploads and --bytes must be at least 1".into());
    }
    let payload: Vec<u8> = (0..args.bytes).map(|i| (i % 241) as u8).collect();
    let ctx = Ctx {
        client: load::client(1),
        base: args.base.clone(),
        run: run_tag(),
        sha256: sha256_hex(&payload),
        payload,
    };
    // The bucket, from where the registry puts a version's files (a
    // path-style presigned URL: /<bucket>/<key>?X-Amz-...).
    let vid = ctx
        .version(&format!("latency-probe-{}", ctx.run), "0")
        .await?;
    let probe = ctx.start(&vid).await?;
    if probe.put_url.contains(EXT) {
        return Err(format!(
            "the registry at {} has no S3 bucket (MR_ARTIFACT_BUCKET): its uploads go through it \
             ({}), so there is no storage event to measure",
            ctx.base, probe.put_url
        ));
    }
    let url = Url::parse(&probe.put_url).map_err(|e| format!("{}: {e}", probe.put_url))?;
    let bucket = url
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("no bucket in the upload URL {}", probe.put_url))?
        .to_string();

    for (op, way) in [(VIA_EVENT, Way::Event), (VIA_EXTENSION, Way::Extension)] {
        for i in 0..args.warmup {
            ctx.upload(way, &bucket, &format!("w{i}")).await?;
        }
        let mut hist = load::new_histogram();
        let mut wall = Duration::ZERO;
        for i in 0..args.uploads {
            let took = ctx.upload(way, &bucket, &i.to_string()).await?;
            hist.saturating_record((took.as_micros() as u64).max(1));
            wall += took;
        }
        let outcome = Outcome {
            requests: args.uploads,
            errors: 0,
            first_error: None,
            wall,
            latency_us: hist,
        };
        let timing = Timing::of(&outcome, 1);
        eprintln!(
            "  {:<16} {op:<36} {} × {} B  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms",
            args.system, args.uploads, args.bytes, timing.p50_ms, timing.p90_ms, timing.p99_ms,
        );
        results::append(
            &args.out,
            &Record::Workload {
                system: args.system.clone(),
                op: op.to_string(),
                timing,
                object_bytes: Some(args.bytes as u64),
            },
        )?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Way {
    Event,
    Extension,
}

impl Ctx {
    /// One upload of a new version, `way`; the time from before the `PUT`
    /// to the artifact seen `LIVE`.
    async fn upload(&self, way: Way, bucket: &str, name: &str) -> Result<Duration, String> {
        let model = match way {
            Way::Event => format!("latency-ev-{}-{name}", self.run),
            Way::Extension => format!("latency-ext-{}-{name}", self.run),
        };
        let vid = self.version(&model, name).await?;
        let session = self.start(&vid).await?;
        let began = Instant::now();
        let etag = self.put(&session.put_url).await?;
        match way {
            Way::Event => {
                self.deliver(bucket, &session.key, &etag).await?;
                self.visible(&model, &vid).await?;
            }
            Way::Extension => {
                let done = self
                    .call(Method::POST, &session.complete_url, Some("{}".into()))
                    .await
                    .map_err(|e| format!("complete: {e}"))?;
                if done.pointer("/modelArtifact/state").and_then(Value::as_str) != Some("LIVE") {
                    return Err(format!("completion did not register {model}: {done}"));
                }
            }
        }
        Ok(began.elapsed())
    }

    /// A JSON call to the registry; the answer on a 2xx.
    async fn call(&self, method: Method, url: &str, body: Option<String>) -> Result<Value, String> {
        let mut request = self.client.request(method.clone(), url);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        if !status.is_success() {
            let start: String = text.chars().take(300).collect();
            return Err(format!("{method} {url}: {status}: {start}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {url}: {e}: {text}"))
    }

    /// A new model `model` with one version `name`; the version's id.
    async fn version(&self, model: &str, name: &str) -> Result<String, String> {
        let m = self
            .call(
                Method::POST,
                &format!("{}{API}/registered_models", self.base),
                Some(json!({"name": model}).to_string()),
            )
            .await
            .map_err(|e| format!("create model: {e}"))?;
        let v = self
            .call(
                Method::POST,
                &format!("{}{API}/model_versions", self.base),
                Some(json!({"name": name, "registeredModelId": id_of(&m)?}).to_string()),
            )
            .await
            .map_err(|e| format!("create version: {e}"))?;
        id_of(&v)
    }

    /// Start an upload session of one file, `model.bin`.
    async fn start(&self, vid: &str) -> Result<Session, String> {
        let files = json!({"files": [{
            "path": "model.bin", "size": self.payload.len(), "sha256": self.sha256,
        }]});
        let s = self
            .call(
                Method::POST,
                &format!("{}{EXT}/model_versions/{vid}/uploads", self.base),
                Some(files.to_string()),
            )
            .await
            .map_err(|e| format!("start upload: {e}"))?;
        let text = |pointer: &str| {
            s.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("start upload: no {pointer} in {s}"))
        };
        Ok(Session {
            key: text("/files/0/key")?,
            put_url: text("/files/0/upload/url")?,
            complete_url: text("/complete/url")?,
        })
    }

    /// `PUT` the payload to a (presigned) URL; the object's ETag.
    async fn put(&self, url: &str) -> Result<String, String> {
        let response = self
            .client
            .put(url)
            .body(self.payload.clone())
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {e}"))?;
        let status = response.status();
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_matches('"')
            .to_string();
        let text = response.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::OK {
            return Err(format!("PUT {url}: {status}: {text}"));
        }
        Ok(etag)
    }

    /// Deliver the S3 `ObjectCreated:Put` record of `key` to
    /// `/events/storage` as Knative does: a binary-mode CloudEvent (the
    /// attributes in `ce-*` headers, the S3 notification as the body).
    async fn deliver(&self, bucket: &str, key: &str, etag: &str) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let record = json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "eventTime": rfc3339_ms(now),
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": bucket},
                "object": {
                    "key": url_encode_key(key),
                    "size": self.payload.len(),
                    "eTag": etag,
                    "sequencer": format!("{:020X}", now.as_nanos()),
                },
            },
        });
        let url = format!("{}/events/storage", self.base);
        let response = self
            .client
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", unique_id())
            .header("ce-source", format!("arn:aws:s3:::{bucket}"))
            .header("ce-type", "com.amazonaws.s3.ObjectCreated:Put")
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"Records": [record]}).to_string())
            .send()
            .await
            .map_err(|e| format!("deliver event: POST {url}: {e}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::ACCEPTED {
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "deliver event: POST {url}: {status} (expected 202 Accepted): {text}"
            ));
        }
        Ok(())
    }

    /// Poll the artifact of version `vid` of `model` until it reads `LIVE`.
    async fn visible(&self, model: &str, vid: &str) -> Result<(), String> {
        let mut url = Url::parse(&format!("{}{API}/model_artifact", self.base))
            .map_err(|e| format!("{}: {e}", self.base))?;
        url.query_pairs_mut()
            .append_pair("name", model)
            .append_pair("parentResourceId", vid);
        let end = Instant::now() + DEADLINE;
        loop {
            let last = match self.call(Method::GET, url.as_str(), None).await {
                Ok(a) if a.get("state").and_then(Value::as_str) == Some("LIVE") => return Ok(()),
                Ok(a) => a.to_string(),
                Err(e) => e,
            };
            if Instant::now() >= end {
                return Err(format!(
                    "{model}: the artifact was not LIVE within {} s after its storage event \
                     (last answer: {last})",
                    DEADLINE.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn id_of(v: &Value) -> Result<String, String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no 'id' in {v}"))
}

/// A short tag unique to this run (time and process id).
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!(
        "{:08x}",
        (nanos ^ (u64::from(std::process::id()) << 40)) as u32
    )
}

/// A CloudEvent id: unique within the run and across runs.
fn unique_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A key as S3 puts it in a notification: URL-encoded, `/` kept
/// (Python's `urllib.parse.quote(key, safe="/")`).
fn url_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2024-05-01T12:34:56.789Z`, from a time since the Unix epoch.
fn rfc3339_ms(t: Duration) -> String {
    DateTime::from_millis(t.as_millis() as i64)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// Lowercase hex SHA-256 of `data`: the upload session declares it.
fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn event_time_and_key() {
        assert_eq!(
            rfc3339_ms(Duration::from_millis(1_714_566_896_789)),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(rfc3339_ms(Duration::ZERO), "1970-01-01T00:00:00Z");
        assert_eq!(
            url_encode_key("models/a b+c/1/model.bin"),
            "models/a%20b%2Bc/1/model.bin"
        );
    }
}
