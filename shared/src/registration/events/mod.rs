//! Storage events in: where object-change events come from, read into one
//! event model. A [`StorageEvent`] says which object of which bucket was
//! created or removed, whatever carried it:
//!
//! - [`cloudevents`]: CloudEvents 1.0 over HTTP, as Knative Eventing
//!   delivers them (binary, structured or batched), or a plain JSON body;
//! - [`s3_notification`]: S3 event notifications (and MinIO's), also
//!   wrapped in SQS or SNS records, as they invoke a Lambda function;
//! - [`eventbridge`]: EventBridge events from S3, or their `detail` alone;
//! - [`fields`]: sizes, sequencers, times and keys inside them, checked.
//!
//! A payload is read by its content, whatever envelope carried it
//! ([`read`]), and ignored (with a reason) when it is not an object change.
//! An event is a hint, not a fact: the registrar records what the bucket
//! holds, so a forged or stale event changes nothing. What is checked here
//! is that reading a delivery stays cheap and safe: at most [`MAX_RECORDS`]
//! records, every number in range; anything else is [`Malformed`].

pub mod cloudevents;
pub mod eventbridge;
pub mod fields;
pub mod s3_notification;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use cloudevents::CloudEventError;
pub use fields::FieldError;

/// Most records one delivery may carry, counted across a CloudEvents batch,
/// the `Records` of a notification and the SQS/SNS messages wrapping them
/// (S3 sends one record per notification; SQS batches at most 10 messages).
/// Each record costs a look at the bucket and a read of its folder, so a
/// larger delivery is malformed: split it.
pub const MAX_RECORDS: usize = 1000;

/// Longest S3 `sequencer` accepted, in hex digits (S3's have 16 to 18); a
/// longer one makes its event malformed.
pub const MAX_SEQUENCER_LEN: usize = 40;

/// Unwrapping depth (SNS in SQS in ...).
const MAX_DEPTH: usize = 4;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `ObjectCreated:*`, EventBridge "Object Created".
    Created,
    /// `ObjectRemoved:*`, lifecycle expiration, EventBridge "Object Deleted".
    Removed,
}

/// One object change, normalized from whatever carried it (S3 notification
/// record, EventBridge event, CloudEvent).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageEvent {
    pub bucket: String,
    /// The object key, decoded (notifications URL-encode it).
    pub key: String,
    pub change: Change,
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// S3's ordering token for one key (hex); absent from some sources.
    pub sequencer: Option<String>,
    /// When it happened, milliseconds since the epoch.
    pub time_ms: Option<u64>,
}

/// Events found in one payload, and what was skipped as not ours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub events: Vec<StorageEvent>,
    /// Why parts of the payload were ignored (valid, but not object changes).
    pub ignored: Vec<String>,
}

impl Parsed {
    fn one(event: StorageEvent) -> Parsed {
        Parsed {
            events: vec![event],
            ignored: Vec::new(),
        }
    }

    fn ignore(reason: impl Into<String>) -> Parsed {
        Parsed {
            events: Vec::new(),
            ignored: vec![reason.into()],
        }
    }

    fn extend(&mut self, other: Parsed) {
        self.events.extend(other.events);
        self.ignored.extend(other.ignored);
    }

    /// Records in all, events and ignored parts together.
    fn records(&self) -> usize {
        self.events.len().saturating_add(self.ignored.len())
    }
}

/// A delivery of more than [`MAX_RECORDS`] records (how many it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a delivery carries at most {MAX_RECORDS} records, this one has {0}: split it")]
pub struct TooManyRecords(pub usize);

/// Why a payload that claims to be a storage event cannot be read. The
/// message of each variant is its own part; what is inside (the record of
/// a list, a JSON error, a field) is its source.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("events nested too deeply")]
    TooDeep,
    #[error("Records: expected an array")]
    RecordsNotArray,
    #[error(transparent)]
    TooMany(#[from] TooManyRecords),
    /// Record `index` of a `Records` list is malformed.
    #[error("Records[{index}]")]
    InRecord {
        index: usize,
        #[source]
        cause: Box<PayloadError>,
    },
    #[error("SQS record without a body")]
    SqsWithoutBody,
    #[error("SQS message body is not JSON")]
    SqsBodyNotJson(#[source] serde_json::Error),
    #[error("SNS record without Sns.Message")]
    SnsWithoutMessage,
    #[error("SNS message is not JSON")]
    SnsMessageNotJson(#[source] serde_json::Error),
    /// A required field (named as in the event: `s3.object.key`) is absent.
    #[error("{0} missing")]
    Missing(&'static str),
    #[error("s3.object.key '{0}' is not URL-encoded UTF-8")]
    KeyNotEncoded(String),
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Why a delivery is malformed: answered 400 (dead-lettered, not retried).
/// [`crate::registration::explain`] gives the whole message, causes
/// included.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// Not a readable CloudEvent (nor plain JSON).
    #[error(transparent)]
    Envelope(#[from] CloudEventError),
    /// The data of a CloudEvent is not a readable storage event.
    #[error("CloudEvent {id} from {sender}")]
    Data {
        id: String,
        /// The CloudEvent's `source` attribute.
        sender: String,
        #[source]
        cause: PayloadError,
    },
    /// A plain payload (a Lambda event, a JSON body) is not readable.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    TooMany(#[from] TooManyRecords),
}

/// `parsed`, unless it holds more than [`MAX_RECORDS`] records (events and
/// ignored parts together).
fn bounded(parsed: Parsed) -> Result<Parsed, TooManyRecords> {
    match parsed.records() {
        n if n > MAX_RECORDS => Err(TooManyRecords(n)),
        _ => Ok(parsed),
    }
}

/// The storage events of an HTTP request: a CloudEvent (binary, structured
/// or batched mode) whose data is one of the shapes [`read`] knows, or such
/// a shape as a plain JSON body.
pub fn from_http(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Malformed> {
    let events = match cloudevents::decode(headers, body)? {
        cloudevents::Envelope::Plain(value) => return Ok(bounded(read(&value, None)?)?),
        cloudevents::Envelope::One(e) => vec![e],
        cloudevents::Envelope::Batch(all) => all,
    };
    let mut parsed = Parsed::default();
    for e in events {
        match &e.data {
            Some(data) => {
                let one = read(data, Some(&e.ty)).map_err(|cause| Malformed::Data {
                    id: e.id.clone(),
                    sender: e.source.clone(),
                    cause,
                })?;
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
        if parsed.records() > MAX_RECORDS {
            break;
        }
    }
    Ok(bounded(parsed)?)
}

/// The storage events of a Lambda invocation: an S3 notification, an
/// EventBridge event, or SQS/SNS records wrapping them.
pub fn from_lambda(event: &Value) -> Result<Parsed, Malformed> {
    Ok(bounded(read(event, None)?)?)
}

/// Read a payload by its content: an S3 notification (`Records`, or one
/// record alone, as some CloudEvents sources send it), SQS/SNS records
/// wrapping one, an EventBridge event, the `detail` of one (`hint`, a
/// CloudEvent type, says which change), or the S3 test event (ignored).
/// Anything else is ignored too.
pub fn read(payload: &Value, hint: Option<&str>) -> Result<Parsed, PayloadError> {
    read_at(payload, hint, 0)
}

fn read_at(payload: &Value, hint: Option<&str>, depth: usize) -> Result<Parsed, PayloadError> {
    if depth > MAX_DEPTH {
        return Err(PayloadError::TooDeep);
    }
    let Some(obj) = payload.as_object() else {
        return Ok(Parsed::ignore("payload is not a JSON object"));
    };
    if let Some(records) = obj.get("Records") {
        let records = records.as_array().ok_or(PayloadError::RecordsNotArray)?;
        if records.len() > MAX_RECORDS {
            return Err(TooManyRecords(records.len()).into());
        }
        let mut parsed = Parsed::default();
        for (index, record) in records.iter().enumerate() {
            let one = read_record(record, depth).map_err(|cause| PayloadError::InRecord {
                index,
                cause: Box::new(cause),
            })?;
            parsed.extend(one);
        }
        return Ok(parsed);
    }
    if obj.contains_key("detail-type") && obj.contains_key("detail") {
        return eventbridge::read_event(payload);
    }
    if obj.contains_key("s3") && obj.contains_key("eventName") {
        return read_record(payload, depth);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Parsed::ignore("S3 test event"));
    }
    if obj.contains_key("bucket") && obj.contains_key("object") {
        return match hint.and_then(cloudevents::change_of_type) {
            Some(change) => Ok(Parsed::one(eventbridge::read_detail(
                payload, change, None,
            )?)),
            None => Ok(Parsed::ignore(format!(
                "object event of type '{}' is neither a creation nor a removal",
                hint.unwrap_or("")
            ))),
        };
    }
    Ok(Parsed::ignore("not a storage event"))
}

/// One record of a `Records` list: an S3 notification record, or an SQS or
/// SNS record whose message is a payload of its own.
fn read_record(record: &Value, depth: usize) -> Result<Parsed, PayloadError> {
    let source = record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match source {
        "aws:sqs" => {
            let body = record
                .get("body")
                .and_then(Value::as_str)
                .ok_or(PayloadError::SqsWithoutBody)?;
            let inner: Value = serde_json::from_str(body).map_err(PayloadError::SqsBodyNotJson)?;
            read_at(&inner, None, depth + 1)
        }
        "aws:sns" => {
            let message = record
                .pointer("/Sns/Message")
                .and_then(Value::as_str)
                .ok_or(PayloadError::SnsWithoutMessage)?;
            let inner: Value =
                serde_json::from_str(message).map_err(PayloadError::SnsMessageNotJson)?;
            read_at(&inner, None, depth + 1)
        }
        _ if record.get("s3").is_some() => s3_notification::read_record(record),
        other => Ok(Parsed::ignore(format!(
            "record from '{other}' is not a storage event"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::registration::explain;

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
        let err = explain(
            &from_http(
                &HeaderMap::new(),
                notification(MAX_RECORDS + 1).to_string().as_bytes(),
            )
            .unwrap_err(),
        );
        assert!(
            err.contains("at most 1000 records, this one has 1001"),
            "{err}"
        );
        // Within bounds at each level, too many in all: 2 SQS messages of 600.
        let message = json!({"eventSource": "aws:sqs", "body": notification(600).to_string()});
        let sqs = json!({"Records": [message, message]});
        assert!(explain(&from_lambda(&sqs).unwrap_err()).contains("1200"));
        // A CloudEvents batch of 2 events of 600 records each.
        let ce = json!({"specversion": "1.0", "id": "1", "source": "s",
            "type": "com.amazonaws.s3.ObjectCreated:Put", "data": notification(600)});
        let mut batch = HeaderMap::new();
        batch.insert(
            "content-type",
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        let err = explain(&from_http(&batch, json!([ce, ce]).to_string().as_bytes()).unwrap_err());
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

    #[test]
    fn a_malformed_cloudevent_is_named_with_its_cause() {
        let mut binary = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "7"),
            ("ce-source", "minio"),
            ("ce-type", "com.amazonaws.s3.ObjectCreated:Put"),
            ("content-type", "application/json"),
        ] {
            binary.insert(k, HeaderValue::from_static(v));
        }
        let body = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "ml"}, "object": {"key": "k", "size": -1}}}]});
        let err = from_http(&binary, body.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, Malformed::Data { .. }), "{err:?}");
        assert_eq!(
            explain(&err),
            "CloudEvent 7 from minio: Records[0]: s3.object.size: -1 is not a size in bytes \
             (0 to 9223372036854775807)"
        );
    }
}
