//! Typed custom properties (`customProperties` values), tagged on the wire by
//! `metadataType`. Ints travel as strings; structs as base64 of a JSON object.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Result, bad_request};
use super::filter::Scalar;

/// One custom property value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum MetadataValue {
    String(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Base64 text of a JSON object, kept as sent.
    Struct(String),
}

impl MetadataValue {
    /// Decode the wire form, strictly (unknown keys and wrong types are errors).
    pub fn from_wire(key: &str, v: &Value) -> Result<Self> {
        let Some(obj) = v.as_object() else {
            return bad_request(format!(
                "customProperties.{key}: expected an object with metadataType"
            ));
        };
        let Some(t) = obj.get("metadataType").and_then(Value::as_str) else {
            return bad_request(format!("customProperties.{key}: missing metadataType"));
        };
        let (field, allowed) = match t {
            "MetadataStringValue" => ("string_value", 2),
            "MetadataIntValue" => ("int_value", 2),
            "MetadataDoubleValue" => ("double_value", 2),
            "MetadataBoolValue" => ("bool_value", 2),
            "MetadataStructValue" => ("struct_value", 2),
            "MetadataProtoValue" => {
                return bad_request(format!(
                    "customProperties.{key}: MetadataProtoValue is not supported"
                ));
            }
            other => {
                return bad_request(format!(
                    "customProperties.{key}: unknown metadataType '{other}'"
                ));
            }
        };
        if let Some(extra) = obj.keys().find(|k| *k != "metadataType" && *k != field) {
            return bad_request(format!(
                "customProperties.{key}: unknown field '{extra}' for {t}"
            ));
        }
        debug_assert!(obj.len() <= allowed);
        let Some(raw) = obj.get(field) else {
            return bad_request(format!("customProperties.{key}: {t} requires '{field}'"));
        };
        let wrong = || {
            bad_request(format!(
                "customProperties.{key}.{field}: wrong type for {t}"
            ))
        };
        Ok(match t {
            "MetadataStringValue" => match raw.as_str() {
                Some(s) => {
                    check_text(&format!("customProperties.{key}"), s)?;
                    MetadataValue::String(s.to_string())
                }
                None => return wrong(),
            },
            "MetadataIntValue" => match raw {
                Value::String(s) => match s.trim().parse::<i64>() {
                    Ok(i) => MetadataValue::Int(i),
                    Err(e) => {
                        let shown: String = s.chars().take(40).collect();
                        let why = match e.kind() {
                            std::num::IntErrorKind::PosOverflow
                            | std::num::IntErrorKind::NegOverflow => {
                                "is out of range (a 64-bit integer)"
                            }
                            _ => "is not an integer",
                        };
                        return bad_request(format!(
                            "customProperties.{key}.int_value: '{shown}' {why}"
                        ));
                    }
                },
                Value::Number(n) if n.is_i64() => MetadataValue::Int(n.as_i64().unwrap_or(0)),
                _ => return wrong(),
            },
            "MetadataDoubleValue" => match raw.as_f64() {
                Some(f) => MetadataValue::Double(f),
                None => match raw.as_str().and_then(|s| s.parse::<f64>().ok()) {
                    Some(f) if f.is_finite() => MetadataValue::Double(f),
                    _ => return wrong(),
                },
            },
            "MetadataBoolValue" => match raw.as_bool() {
                Some(b) => MetadataValue::Bool(b),
                None => return wrong(),
            },
            _ => match raw.as_str() {
                Some(s) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s.trim()));
                    let ok = decoded
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                        .is_some_and(|v| v.is_object());
                    if !ok {
                        return bad_request(format!(
                            "customProperties.{key}.struct_value: expected base64 of a JSON object"
                        ));
                    }
                    MetadataValue::Struct(s.trim().to_string())
                }
                None => return wrong(),
            },
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> Value {
        let (t, field, v) = match self {
            MetadataValue::String(s) => (
                "MetadataStringValue",
                "string_value",
                Value::from(s.as_str()),
            ),
            MetadataValue::Int(i) => ("MetadataIntValue", "int_value", Value::from(i.to_string())),
            MetadataValue::Double(f) => ("MetadataDoubleValue", "double_value", Value::from(*f)),
            MetadataValue::Bool(b) => ("MetadataBoolValue", "bool_value", Value::from(*b)),
            MetadataValue::Struct(s) => (
                "MetadataStructValue",
                "struct_value",
                Value::from(s.as_str()),
            ),
        };
        let mut m = Map::new();
        m.insert(field.into(), v);
        m.insert("metadataType".into(), Value::from(t));
        Value::Object(m)
    }

    /// The value a filter sees (structs are opaque to filters).
    pub fn scalar(&self) -> Option<Scalar> {
        Some(match self {
            MetadataValue::String(s) => Scalar::Str(s.clone()),
            MetadataValue::Int(i) => Scalar::Int(*i),
            MetadataValue::Double(f) => Scalar::Double(*f),
            MetadataValue::Bool(b) => Scalar::Bool(*b),
            MetadataValue::Struct(_) => return None,
        })
    }
}

/// Text fields may not carry NUL bytes (stores and the upstream database reject them).
pub fn check_text(field: &str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return bad_request(format!("{field}: NUL bytes are not allowed"));
    }
    Ok(())
}
