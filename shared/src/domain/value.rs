//! Typed custom properties (`customProperties` values), tagged on the wire by
//! `metadataType`. Ints travel as strings; structs as base64 of a JSON object.

use serde::{Deserialize, Serialize};

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
