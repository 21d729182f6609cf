//! Storage events in, registry state out: reading object-change events from
//! HTTP requests (CloudEvents, as Knative Eventing delivers them, or plain
//! JSON) and from Lambda invocations (S3 notifications, EventBridge), into
//! [`StorageEvent`]s for `domain::uploads`, and the verdict a broker acts
//! on:
//!
//! | verdict | HTTP | Lambda | meaning |
//! |---|---|---|---|
//! | done | 202 | result | applied, or ignored (not ours: other bucket, prefix or event type) |
//! | malformed | 400 | result | unreadable or incomplete event: retrying cannot help |
//! | failed | 422 | result | a valid event of ours that cannot be registered (e.g. a name clash) |
//! | retry | 503 | error | the store or the bucket is unavailable: deliver again |
//!
//! 202 (not 200) because a Knative broker would read a 200 body as a reply
//! event; 400 and 422 are not retried by Knative, 503 is (with backoff);
//! under Lambda an invocation error makes Lambda retry asynchronous events.
//!
//! An event is a hint, not a fact: `domain::uploads` records what the bucket
//! holds, so a forged or stale event changes nothing. What is checked here
//! is that reading a delivery stays cheap and safe: at most [`MAX_RECORDS`]
//! records, and every number in range (see [`s3`]); anything else is
//! malformed.

pub mod cloudevents;
pub mod s3;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::domain::error::Error;
use crate::domain::uploads::{Change, Outcome, StorageEvent, Uploads};
pub use s3::Parsed;

/// Most records one delivery may carry, counted across a CloudEvents batch,
/// the `Records` of a notification and the SQS/SNS messages wrapping them
/// (S3 sends one record per notification; SQS batches at most 10 messages).
/// Each record costs a look at the bucket and a read of its folder, so a
/// larger delivery is malformed: split it.
pub const MAX_RECORDS: usize = 1000;

/// Why a delivery of `n` records is malformed.
pub(crate) fn too_many_records(n: usize) -> String {
    format!("a delivery carries at most {MAX_RECORDS} records, this one has {n}: split it")
}

/// `parsed`, unless it holds more than [`MAX_RECORDS`] records (events and
/// ignored parts together).
fn bounded(parsed: Parsed) -> Result<Parsed, String> {
    let n = parsed.events.len().saturating_add(parsed.ignored.len());
    if n > MAX_RECORDS {
        return Err(too_many_records(n));
    }
    Ok(parsed)
}

/// What a delivery comes to, for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Applied or ignored: do not deliver again.
    Done,
    /// Unreadable: do not deliver again (dead-letter it).
    Malformed,
    /// Valid but impossible to register: do not deliver again.
    Failed,
    /// Deliver again later.
    Retry,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Malformed => "malformed",
            Verdict::Failed => "failed",
            Verdict::Retry => "retry",
        }
    }
}

/// The verdict and a JSON report of what each event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub verdict: Verdict,
    pub report: Value,
}

impl Delivery {
    /// A delivery that could not be read.
    pub fn malformed(why: &str) -> Delivery {
        tracing::warn!(reason = why, "malformed storage event rejected");
        Delivery {
            verdict: Verdict::Malformed,
            report: json!({"verdict": Verdict::Malformed.as_str(), "message": why}),
        }
    }
}

/// The storage events of an HTTP request: a CloudEvent (binary, structured
/// or batched mode) whose data is one of the shapes of [`s3`], or such a
/// shape as a plain JSON body. `Err` says why the request is malformed.
pub fn from_http(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, String> {
    let events = match cloudevents::decode(headers, body)? {
        cloudevents::Envelope::Plain(value) => return s3::read(&value, None).and_then(bounded),
        cloudevents::Envelope::One(e) => vec![e],
        cloudevents::Envelope::Batch(all) => all,
    };
    let mut parsed = Parsed::default();
    for e in events {
        match &e.data {
            Some(data) => {
                let one = s3::read(data, Some(&e.ty))
                    .map_err(|why| format!("CloudEvent {} from {}: {why}", e.id, e.source))?;
                parsed.events.extend(one.events);
                parsed.ignored.extend(
                    one.ignored
                        .into_iter()
                        .map(|why| format!("CloudEvent {} ({}): {why}", e.id, e.ty)),
                );
            }
            None => parsed.ignored.push(format!(
                "CloudEvent {} ({}) carries no JSON data",
                e.id, e.ty
            )),
        }
        if parsed.events.len().saturating_add(parsed.ignored.len()) > MAX_RECORDS {
            break;
        }
    }
    bounded(parsed)
}

/// The storage events of a Lambda invocation: an S3 notification, an
/// EventBridge event, or SQS/SNS records wrapping them.
pub fn from_lambda(event: &Value) -> Result<Parsed, String> {
    s3::read(event, None).and_then(bounded)
}

/// Apply every event (all of them, even after a failure: each is safe to
/// repeat) and sum up the verdict: retry if any needs it, else failed if any
/// failed, else done.
pub async fn deliver(uploads: &Uploads, parsed: Parsed) -> Delivery {
    let mut verdict = Verdict::Done;
    let mut results = Vec::with_capacity(parsed.events.len());
    for event in &parsed.events {
        let mut entry = json!({
            "bucket": event.bucket,
            "key": event.key,
            "change": match event.change { Change::Created => "created", Change::Removed => "removed" },
        });
        match uploads.apply(event).await {
            Ok(Outcome::Registered {
                applied,
                registration,
            }) => {
                entry["outcome"] = json!("registered");
                entry["applied"] = json!(applied);
                if let (Some(e), Ok(Value::Object(r))) =
                    (entry.as_object_mut(), serde_json::to_value(&registration))
                {
                    e.extend(r);
                }
                tracing::info!(bucket = %event.bucket, key = %event.key, applied,
                    version = %registration.model_version_id, state = %registration.artifact_state,
                    "storage event registered");
            }
            Ok(Outcome::Ignored { reason }) => {
                tracing::debug!(bucket = %event.bucket, key = %event.key, %reason, "storage event ignored");
                entry["outcome"] = json!("ignored");
                entry["reason"] = json!(reason);
            }
            Err(e) => {
                let retry = matches!(e, Error::Unavailable(_) | Error::Internal(_));
                if retry {
                    tracing::warn!(bucket = %event.bucket, key = %event.key, error = %e, "storage event failed, to be retried");
                    verdict = Verdict::Retry;
                } else {
                    tracing::error!(bucket = %event.bucket, key = %event.key, error = %e, "storage event cannot be registered");
                    if verdict == Verdict::Done {
                        verdict = Verdict::Failed;
                    }
                }
                entry["outcome"] = json!(if retry { "retry" } else { "failed" });
                entry["error"] = json!(e.to_string());
            }
        }
        results.push(entry);
    }
    for why in &parsed.ignored {
        tracing::debug!(reason = %why, "payload ignored");
    }
    Delivery {
        verdict,
        report: json!({
            "verdict": verdict.as_str(),
            "events": results,
            "ignored": parsed.ignored,
        }),
    }
}

/// One Lambda invocation of the `storage-events` function: the report as
/// the result, or an error (which makes Lambda deliver the event again)
/// when the verdict is retry. Malformed and failed events are answered with
/// their report, not retried.
pub async fn handle_lambda(uploads: &Uploads, payload: &Value) -> Result<Value, String> {
    let delivery = match from_lambda(payload) {
        Ok(parsed) => deliver(uploads, parsed).await,
        Err(why) => Delivery::malformed(&why),
    };
    match delivery.verdict {
        Verdict::Retry => Err(format!("storage events to be retried: {}", delivery.report)),
        _ => Ok(delivery.report),
    }
}

/// Convenience for tests and tools: the events of one upload as Knative's
/// S3 sources deliver them (one S3 notification record per CloudEvent).
pub fn s3_record(event: &StorageEvent) -> Value {
    let name = match event.change {
        Change::Created => "ObjectCreated:Put",
        Change::Removed => "ObjectRemoved:Delete",
    };
    let key: String = event
        .key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": event.bucket},
            "object": {"key": key, "size": event.size, "eTag": event.etag, "sequencer": event.sequencer}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_record_we_write_reads_back() {
        let event = StorageEvent {
            bucket: "ml".into(),
            key: "models/my model/1/a+b€.onnx".into(),
            change: Change::Created,
            size: Some(3),
            etag: Some("e".into()),
            sequencer: Some("0A".into()),
            time_ms: None,
        };
        let parsed = s3::read(&json!({"Records": [s3_record(&event)]}), None).unwrap();
        assert_eq!(parsed.events, vec![event]);
    }

    #[test]
    fn a_delivery_carries_at_most_so_many_records() {
        let record = json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "ml"}, "object": {"key": "models/m/1/f"}}});
        let notification = |n: usize| json!({"Records": vec![record.clone(); n]});
        let plain = from_http(
            &HeaderMap::new(),
            notification(MAX_RECORDS).to_string().as_bytes(),
        );
        assert_eq!(plain.unwrap().events.len(), MAX_RECORDS);
        let err = from_http(
            &HeaderMap::new(),
            notification(MAX_RECORDS + 1).to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(
            err.contains("at most 1000 records, this one has 1001"),
            "{err}"
        );
        // Within bounds at each level, too many in all: 2 SQS messages of 600.
        let message = json!({"eventSource": "aws:sqs", "body": notification(600).to_string()});
        let sqs = json!({"Records": [message, message]});
        assert!(from_lambda(&sqs).unwrap_err().contains("1200"));
        // A CloudEvents batch of 2 events of 600 records each.
        let ce = json!({"specversion": "1.0", "id": "1", "source": "s",
            "type": "com.amazonaws.s3.ObjectCreated:Put", "data": notification(600)});
        let mut batch = HeaderMap::new();
        batch.insert(
            "content-type",
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        let err = from_http(&batch, json!([ce, ce]).to_string().as_bytes()).unwrap_err();
        assert!(err.contains("at most 1000 records"), "{err}");
    }

    #[test]
    fn http_requests_of_every_mode() {
        let record = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "ml"}, "object": {"key": "models/m/1/f"}}}]});
        let mut binary = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "arn:aws:s3:::ml"),
            ("ce-type", "com.amazonaws.s3.ObjectCreated:Put"),
            ("content-type", "application/json"),
        ] {
            binary.insert(k, HeaderValue::from_static(v));
        }
        let p = from_http(&binary, record.to_string().as_bytes()).unwrap();
        assert_eq!(p.events.len(), 1);
        let mut structured = HeaderMap::new();
        structured.insert(
            "content-type",
            HeaderValue::from_static("application/cloudevents+json"),
        );
        let body = json!({"specversion": "1.0", "id": "2", "source": "s", "type": "dev.knative.sources.ping", "data": {"hello": 1}});
        let p = from_http(&structured, body.to_string().as_bytes()).unwrap();
        assert!(p.events.is_empty());
        assert!(
            p.ignored[0].contains("dev.knative.sources.ping"),
            "{:?}",
            p.ignored
        );
        let p = from_http(&HeaderMap::new(), record.to_string().as_bytes()).unwrap();
        assert_eq!(p.events[0].key, "models/m/1/f");
        assert!(from_http(&HeaderMap::new(), b"<xml/>").is_err());
    }
}
