//! CloudEvents 1.0 over HTTP, as Knative Eventing delivers them: binary
//! content mode (attributes in `ce-*` headers, the data as the body),
//! structured mode (`application/cloudevents+json`) and batched mode
//! (`application/cloudevents-batch+json`). A plain JSON body (a MinIO
//! webhook, an S3 notification posted as is) is read as data without an
//! envelope.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Change, MAX_RECORDS, TooManyRecords};

/// The attributes of one CloudEvent that matter here, and its JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub ty: String,
    /// `None` when the event has no data, or data that is not JSON.
    pub data: Option<Value>,
}

/// What an HTTP request carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// One CloudEvent (binary or structured mode).
    One(CloudEvent),
    /// A batch (`application/cloudevents-batch+json`).
    Batch(Vec<CloudEvent>),
    /// Not a CloudEvent: a JSON body as it is.
    Plain(Value),
}

/// Why a request is not a readable CloudEvent (nor plain JSON): answered
/// 400. The message of each variant is its own part; a cause (a JSON or
/// base64 error, the event of a batch) is its source.
#[derive(Debug, thiserror::Error)]
pub enum CloudEventError {
    #[error("the request body is empty")]
    EmptyBody,
    #[error("the request body is not JSON")]
    BodyNotJson(#[source] serde_json::Error),
    #[error("a CloudEvents batch must be a JSON array")]
    BatchNotArray,
    #[error(transparent)]
    TooMany(#[from] TooManyRecords),
    /// Event `index` of a batch is malformed.
    #[error("event {index}")]
    InBatch {
        index: usize,
        #[source]
        cause: Box<CloudEventError>,
    },
    #[error("a structured CloudEvent must be a JSON object")]
    NotAnObject,
    #[error("CloudEvent attribute 'specversion' is missing")]
    NoSpecVersion,
    #[error("CloudEvents specversion '{0}' is not supported (1.0 is)")]
    UnsupportedSpecVersion(String),
    #[error("CloudEvent attribute '{0}' is missing or empty")]
    MissingAttribute(&'static str),
    #[error("a CloudEvent has both data and data_base64")]
    DataTwice,
    #[error("data_base64 must be a string")]
    DataBase64NotString,
    #[error("data_base64 is not base64")]
    DataBase64(#[source] base64::DecodeError),
    #[error("the event data is declared JSON but is not")]
    DataNotJson(#[source] serde_json::Error),
}

/// Decode a request.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Envelope, CloudEventError> {
    let content_type = header(headers, "content-type")
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match content_type.as_str() {
        "application/cloudevents+json" => {
            let value = json_body(body)?;
            structured(&value).map(Envelope::One)
        }
        "application/cloudevents-batch+json" => match json_body(body)? {
            Value::Array(events) if events.len() > MAX_RECORDS => {
                Err(TooManyRecords(events.len()).into())
            }
            Value::Array(events) => events
                .iter()
                .enumerate()
                .map(|(index, e)| {
                    structured(e).map_err(|cause| CloudEventError::InBatch {
                        index,
                        cause: Box::new(cause),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Envelope::Batch),
            _ => Err(CloudEventError::BatchNotArray),
        },
        _ if header(headers, "ce-specversion").is_some() => binary(headers, &content_type, body),
        _ => json_body(body).map(Envelope::Plain),
    }
}

/// What a CloudEvent type says happened, when it names an object change
/// (`com.amazonaws.s3.ObjectCreated:Put`, `com.amazon.s3.objectremoved`,
/// `aws.s3.Object Created`, ...).
pub fn change_of_type(t: &str) -> Option<Change> {
    let t = t.to_ascii_lowercase().replace([' ', '_', '-'], "");
    if t.contains("objectcreated") {
        Some(Change::Created)
    } else if t.contains("objectremoved") || t.contains("objectdeleted") {
        Some(Change::Removed)
    } else {
        None
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn json_body(body: &[u8]) -> Result<Value, CloudEventError> {
    if body.is_empty() {
        return Err(CloudEventError::EmptyBody);
    }
    serde_json::from_slice(body).map_err(CloudEventError::BodyNotJson)
}

/// Is data of this content type JSON (absent means JSON, as in the spec's
/// structured mode)?
fn is_json(content_type: &str) -> bool {
    content_type.is_empty()
        || content_type == "application/json"
        || content_type == "text/json"
        || content_type.ends_with("+json")
}

fn required(attrs: &Map<String, Value>, name: &'static str) -> Result<String, CloudEventError> {
    match attrs.get(name).and_then(Value::as_str) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(CloudEventError::MissingAttribute(name)),
    }
}

fn check_version(version: Option<&str>) -> Result<(), CloudEventError> {
    match version {
        Some("1.0") => Ok(()),
        Some(v) => Err(CloudEventError::UnsupportedSpecVersion(v.to_string())),
        None => Err(CloudEventError::NoSpecVersion),
    }
}

/// A structured-mode event (a JSON object of attributes and data).
fn structured(value: &Value) -> Result<CloudEvent, CloudEventError> {
    let attrs = value.as_object().ok_or(CloudEventError::NotAnObject)?;
    check_version(attrs.get("specversion").and_then(Value::as_str))?;
    let content_type = attrs
        .get("datacontenttype")
        .and_then(Value::as_str)
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let data = match (attrs.get("data"), attrs.get("data_base64")) {
        (Some(_), Some(_)) => return Err(CloudEventError::DataTwice),
        (Some(Value::String(s)), None) if !is_json(&content_type) => serde_json::from_str(s).ok(),
        (Some(data), None) => Some(data.clone()),
        (None, Some(encoded)) => {
            let encoded = encoded
                .as_str()
                .ok_or(CloudEventError::DataBase64NotString)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(CloudEventError::DataBase64)?;
            serde_json::from_slice(&bytes).ok()
        }
        (None, None) => None,
    };
    Ok(CloudEvent {
        id: required(attrs, "id")?,
        source: required(attrs, "source")?,
        ty: required(attrs, "type")?,
        data,
    })
}

/// A binary-mode event: attributes in `ce-*` headers, the body is the data.
fn binary(
    headers: &HeaderMap,
    content_type: &str,
    body: &[u8],
) -> Result<Envelope, CloudEventError> {
    check_version(header(headers, "ce-specversion"))?;
    let mut attrs = Map::new();
    for name in ["id", "source", "type"] {
        if let Some(v) = header(headers, &format!("ce-{name}")) {
            attrs.insert(name.into(), Value::from(v));
        }
    }
    let data = if body.is_empty() || !is_json(content_type) {
        None
    } else {
        Some(serde_json::from_slice(body).map_err(CloudEventError::DataNotJson)?)
    };
    Ok(Envelope::One(CloudEvent {
        id: required(&attrs, "id")?,
        source: required(&attrs, "source")?,
        ty: required(&attrs, "type")?,
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::explain;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// Why the request is malformed, as the sender is told.
    fn malformed(headers: &HeaderMap, body: &[u8]) -> String {
        explain(&decode(headers, body).unwrap_err())
    }

    #[test]
    fn binary_mode() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "minio"),
            ("ce-type", "com.amazonaws.s3.ObjectCreated"),
            ("content-type", "application/json"),
        ]);
        let Envelope::One(e) = decode(&h, br#"{"a":1}"#).unwrap() else {
            panic!()
        };
        assert_eq!(e.ty, "com.amazonaws.s3.ObjectCreated");
        assert_eq!(e.data, Some(json!({"a": 1})));
        let xml = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("content-type", "application/xml"),
        ]);
        let Envelope::One(e) = decode(&xml, b"<a/>").unwrap() else {
            panic!()
        };
        assert_eq!(e.data, None);
        let missing = headers(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")]);
        assert!(malformed(&missing, b"{}").contains("source"));
        let old = headers(&[
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]);
        assert!(malformed(&old, b"{}").contains("0.3"));
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("content-type", "application/json"),
        ]);
        assert!(decode(&h, b"{nope").is_err());
    }

    #[test]
    fn structured_and_batched_modes() {
        let h = headers(&[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )]);
        let event =
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": {"x": 1}});
        let Envelope::One(e) = decode(&h, event.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(e.data, Some(json!({"x": 1})));
        let encoded = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "data_base64": base64::engine::general_purpose::STANDARD.encode(br#"{"y":2}"#)});
        let Envelope::One(e) = decode(&h, encoded.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(e.data, Some(json!({"y": 2})));
        assert!(decode(&h, br#"{"specversion":"1.0","id":"1","type":"t"}"#).is_err());
        assert!(decode(&h, b"[]").is_err());
        let batch = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let Envelope::Batch(all) =
            decode(&batch, json!([event, event]).to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(all.len(), 2);
        assert!(decode(&batch, event.to_string().as_bytes()).is_err());
        let too_many = vec![event.clone(); MAX_RECORDS + 1];
        let err = malformed(&batch, Value::from(too_many).to_string().as_bytes());
        assert!(err.contains("at most 1000 records"), "{err}");
        let broken = json!([event, {"specversion": "1.0", "id": "2", "type": "t"}]);
        let err = malformed(&batch, broken.to_string().as_bytes());
        assert_eq!(
            err,
            "event 1: CloudEvent attribute 'source' is missing or empty"
        );
    }

    #[test]
    fn plain_json_and_garbage() {
        let h = headers(&[("content-type", "application/json")]);
        assert_eq!(
            decode(&h, b"{\"Records\":[]}").unwrap(),
            Envelope::Plain(json!({"Records": []}))
        );
        assert!(decode(&h, b"").is_err());
        let err = malformed(&HeaderMap::new(), b"not json");
        assert!(
            err.starts_with("the request body is not JSON: expected"),
            "the cause is kept: {err}"
        );
    }

    #[test]
    fn types_that_name_an_object_change() {
        assert_eq!(
            change_of_type("com.amazon.s3.objectcreated"),
            Some(Change::Created)
        );
        assert_eq!(
            change_of_type("aws.s3.Object Deleted"),
            Some(Change::Removed)
        );
        assert_eq!(change_of_type("dev.knative.apiserver.resource.add"), None);
    }
}
