//! CloudEvents 1.0 over HTTP, as Knative Eventing delivers them: binary
//! content mode (attributes in `ce-*` headers, the data as the body),
//! structured mode (`application/cloudevents+json`) and batched mode
//! (`application/cloudevents-batch+json`). A plain JSON body (a MinIO
//! webhook, an S3 notification posted as is) is read as data without an
//! envelope.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Map, Value};

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

/// Decode a request. `Err` says why it is malformed (answered 400).
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Envelope, String> {
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
            Value::Array(events) if events.len() > super::MAX_RECORDS => {
                Err(super::too_many_records(events.len()))
            }
            Value::Array(events) => events
                .iter()
                .enumerate()
                .map(|(i, e)| structured(e).map_err(|why| format!("event {i}: {why}")))
                .collect::<Result<Vec<_>, _>>()
                .map(Envelope::Batch),
            _ => Err("a CloudEvents batch must be a JSON array".into()),
        },
        _ if header(headers, "ce-specversion").is_some() => binary(headers, &content_type, body),
        _ => json_body(body).map(Envelope::Plain),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn json_body(body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Err("the request body is empty".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))
}

/// Is data of this content type JSON (absent means JSON, as in the spec's
/// structured mode)?
fn is_json(content_type: &str) -> bool {
    content_type.is_empty()
        || content_type == "application/json"
        || content_type == "text/json"
        || content_type.ends_with("+json")
}

fn required(attrs: &Map<String, Value>, name: &str) -> Result<String, String> {
    match attrs.get(name).and_then(Value::as_str) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("CloudEvent attribute '{name}' is missing or empty")),
    }
}

fn check_version(version: Option<&str>) -> Result<(), String> {
    match version {
        Some("1.0") => Ok(()),
        Some(v) => Err(format!(
            "CloudEvents specversion '{v}' is not supported (1.0 is)"
        )),
        None => Err("CloudEvent attribute 'specversion' is missing".into()),
    }
}

/// A structured-mode event (a JSON object of attributes and data).
fn structured(value: &Value) -> Result<CloudEvent, String> {
    let attrs = value
        .as_object()
        .ok_or("a structured CloudEvent must be a JSON object")?;
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
        (Some(_), Some(_)) => return Err("a CloudEvent has both data and data_base64".into()),
        (Some(Value::String(s)), None) if !is_json(&content_type) => serde_json::from_str(s).ok(),
        (Some(data), None) => Some(data.clone()),
        (None, Some(encoded)) => {
            let encoded = encoded.as_str().ok_or("data_base64 must be a string")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("data_base64 is not base64: {e}"))?;
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
fn binary(headers: &HeaderMap, content_type: &str, body: &[u8]) -> Result<Envelope, String> {
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
        Some(
            serde_json::from_slice(body)
                .map_err(|e| format!("the event data is declared JSON but is not: {e}"))?,
        )
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
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
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
        assert!(decode(&missing, b"{}").unwrap_err().contains("source"));
        let old = headers(&[
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]);
        assert!(decode(&old, b"{}").unwrap_err().contains("0.3"));
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
        let too_many = vec![event.clone(); super::super::MAX_RECORDS + 1];
        let err = decode(&batch, Value::from(too_many).to_string().as_bytes()).unwrap_err();
        assert!(err.contains("at most 1000 records"), "{err}");
    }

    #[test]
    fn plain_json_and_garbage() {
        let h = headers(&[("content-type", "application/json")]);
        assert_eq!(
            decode(&h, b"{\"Records\":[]}").unwrap(),
            Envelope::Plain(json!({"Records": []}))
        );
        assert!(decode(&h, b"").is_err());
        assert!(decode(&HeaderMap::new(), b"not json").is_err());
    }
}
