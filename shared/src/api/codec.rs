//! The wire codec: the JSON the Kubeflow Model Registry API speaks, turned
//! into the domain's typed inputs (a new entity, a patch) and the domain's
//! entities turned back into JSON.
//!
//! Decoding is strict, as upstream's: an unknown field is a 400, a required
//! field missing a 422, a wrong type or enum value a 400. Encoding borrows:
//! [`Wire`] serializes an entity straight from its fields, without building
//! a JSON tree per entity.

use std::collections::BTreeMap;

use base64::Engine;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::domain::entity::FieldType::{Double, Enum, Id, Int, Int64Str, Str, StrList};
use crate::domain::entity::{
    ArtifactUpsert, Entity, Family, Field, Kind, MAX_CUSTOM_PROPERTIES,
    MAX_CUSTOM_PROPERTY_KEY_BYTES, NewEntity, Patch, check_external_id, check_name, parse_id,
};
use crate::domain::error::{Error, Result, bad_request};
use crate::domain::value::{MetadataValue, check_text};

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

fn as_object(body: &Value) -> Result<&Map<String, Value>> {
    body.as_object()
        .ok_or_else(|| Error::BadRequest("request body must be a JSON object".into()))
}

/// Decode the artifact kind of a request body (`artifactType`, default model-artifact when allowed).
pub fn artifact_kind(body: &Value, default: Option<Kind>) -> Result<Kind> {
    match as_object(body)?.get("artifactType") {
        Some(Value::String(t)) => Kind::from_artifact_type(t),
        Some(Value::Null) | None => default.ok_or_else(|| {
            Error::BadRequest("artifactType is required (model-artifact, doc-artifact, dataset-artifact, metric or parameter)".into())
        }),
        Some(_) => bad_request("artifactType: expected a string"),
    }
}

/// Strictly decode a create body for `kind`: unknown fields are 400,
/// a missing required field 422.
pub fn decode_new(kind: Kind, body: &Value) -> Result<NewEntity> {
    let obj = as_object(body)?;
    let mut new = NewEntity {
        kind,
        name: None,
        external_id: None,
        parent: None,
        fields: Map::new(),
        custom: BTreeMap::new(),
    };
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "name" => match v.as_str() {
                Some(s) => {
                    check_name(s)?;
                    new.name = Some(s.to_string());
                }
                None => return bad_request("name: expected a string"),
            },
            "externalId" => match v.as_str() {
                Some(s) => {
                    check_external_id(s)?;
                    new.external_id = Some(s.to_string());
                }
                None => return bad_request("externalId: expected a string"),
            },
            "customProperties" => new.custom = decode_custom(v)?,
            "artifactType" if kind.artifact_type().is_some() => {
                if v.as_str() != kind.artifact_type() {
                    return bad_request(format!(
                        "artifactType: expected '{}'",
                        kind.artifact_type().unwrap_or_default()
                    ));
                }
            }
            k if Some(k) == kind.parent_field() => match v.as_str() {
                Some(s) => new.parent = Some(parse_id(k, s)?),
                None => return bad_request(format!("{k}: expected an id string")),
            },
            k => match kind.field(k) {
                Some(field) => {
                    new.fields
                        .insert(k.to_string(), validate_field(kind, field, v)?);
                }
                None => return bad_request(unknown_field(kind, k)),
            },
        }
    }
    if kind.name_required() && new.name.is_none() {
        return Err(zero_value("name"));
    }
    if let Some(p) = kind.parent_field()
        && new.parent.is_none()
    {
        return Err(zero_value(p));
    }
    if let Some(missing) = kind
        .required()
        .iter()
        .find(|f| !new.fields.contains_key(**f))
    {
        return match kind.family() {
            Family::Artifact => {
                bad_request(format!("a {} requires '{missing}'", unknown_label(kind)))
            }
            _ => Err(zero_value(missing)),
        };
    }
    Ok(new)
}

/// Strictly decode a PATCH body: name, id, timestamps and parent ids are unknown fields.
pub fn decode_patch(kind: Kind, body: &Value) -> Result<Patch> {
    let obj = as_object(body)?;
    let mut patch = Patch::empty(kind);
    patch.typed = obj.get("artifactType").is_some_and(|t| !t.is_null());
    for (key, v) in obj {
        match key.as_str() {
            "artifactType" if kind.artifact_type().is_some() => match v {
                Value::Null => {}
                Value::String(t) if Some(t.as_str()) == kind.artifact_type() => {}
                Value::String(t) => {
                    return bad_request(format!(
                        "artifactType cannot change from '{}' to '{t}'",
                        kind.artifact_type().unwrap_or_default()
                    ));
                }
                _ => return bad_request("artifactType: expected a string"),
            },
            _ if v.is_null() => {}
            "externalId" => match v.as_str() {
                Some(s) => {
                    check_external_id(s)?;
                    patch.external_id = Some(s.to_string());
                }
                None => return bad_request("externalId: expected a string"),
            },
            "customProperties" => patch.custom = Some(decode_custom(v)?),
            k if kind.create_only().contains(&k) => {
                return bad_request(format!("{k} cannot be changed after create"));
            }
            k => match kind.field(k) {
                Some(field) => {
                    patch
                        .fields
                        .insert(k.to_string(), validate_field(kind, field, v)?);
                }
                None => return bad_request(unknown_field(kind, k)),
            },
        }
    }
    Ok(patch)
}

/// An upsert body of `POST /model_versions/{id}/artifacts` (and of a run's
/// artifacts): `artifactType` is required; with `id`, an update of that
/// artifact; the body is decoded as a create and as a patch (see
/// [`ArtifactUpsert`]).
pub fn decode_artifact_upsert(body: &Value) -> Result<ArtifactUpsert> {
    let obj = as_object(body)?;
    let kind = artifact_kind(body, None)?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => Some(parse_id("id", s)?),
        Some(Value::Null) | None => None,
        Some(_) => return bad_request("id: expected an id string"),
    };
    let name = match obj.get("name") {
        Some(Value::String(n)) => Some(n.clone()),
        _ => None,
    };
    let mut rest = obj.clone();
    for k in [
        "id",
        "createTimeSinceEpoch",
        "lastUpdateTimeSinceEpoch",
        "name",
    ] {
        rest.remove(k);
    }
    Ok(ArtifactUpsert {
        kind,
        id,
        name,
        new: decode_new(kind, body),
        patch: decode_patch(kind, &Value::Object(rest)),
    })
}

fn unknown_label(kind: Kind) -> String {
    kind.artifact_type()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// Upstream's words for a field the schema does not have (Go's JSON decoder).
fn unknown_field(_kind: Kind, k: &str) -> String {
    format!("json: unknown field {}", Value::from(k))
}

/// Upstream's words for a required field missing or empty (422).
fn zero_value(field: &str) -> Error {
    Error::Unprocessable(format!("required field '{field}' is zero value."))
}

fn validate_field(kind: Kind, field: &Field, v: &Value) -> Result<Value> {
    let name = field.name;
    let wrong = |expected: &str| bad_request(format!("{name}: expected {expected} for {:?}", kind));
    match field.ty {
        Str => match v.as_str() {
            Some(s) => {
                check_text(name, s)?;
                Ok(v.clone())
            }
            None => wrong("a string"),
        },
        StrList => match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => {
                for s in a.iter().filter_map(Value::as_str) {
                    check_text(name, s)?;
                }
                Ok(v.clone())
            }
            _ => wrong("an array of strings"),
        },
        Enum(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(v.clone()),
            Some(s) => bad_request(format!(
                "{name}: invalid value '{s}' (expected one of {})",
                allowed.join(", ")
            )),
            None => wrong("a string"),
        },
        Double => match v.as_f64() {
            Some(x) => Ok(Value::from(x)),
            None => wrong("a number"),
        },
        Int => match v {
            Value::Number(_) => match parse_i64(name, v)? {
                Some(x) => Ok(Value::from(x)),
                None => wrong("an integer"),
            },
            _ => wrong("an integer"),
        },
        Int64Str => match parse_i64(name, v)? {
            Some(x) => Ok(Value::from(x.to_string())),
            None => wrong("an integer as a string"),
        },
        Id => match v.as_str() {
            Some(s) => parse_id(name, s).map(|id| Value::from(id.to_string())),
            None => wrong("an id string"),
        },
    }
}

/// A 64-bit integer from a decimal string or a JSON integer; out of range
/// is an error (never a wrap).
fn parse_i64(name: &str, v: &Value) -> Result<Option<i64>> {
    let out_of_range = || {
        let shown: String = v.to_string().chars().take(40).collect();
        bad_request(format!(
            "{name}: {shown} is out of range (a 64-bit integer, {} to {})",
            i64::MIN,
            i64::MAX
        ))
    };
    match v {
        Value::String(s) => match s.parse::<i64>() {
            Ok(x) => Ok(Some(x)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
                ) =>
            {
                out_of_range()
            }
            Err(_) => Ok(None),
        },
        Value::Number(n) => match n.as_i64() {
            Some(x) => Ok(Some(x)),
            None if n.is_u64() => out_of_range(),
            None => match n.as_f64() {
                // A whole number too large for i64 (1e20); 5.0 is no integer.
                Some(f) if f.fract() == 0.0 && f.abs() >= 9.223_372_036_854_776e18 => {
                    out_of_range()
                }
                _ => Ok(None),
            },
        },
        _ => Ok(None),
    }
}

fn decode_custom(v: &Value) -> Result<BTreeMap<String, MetadataValue>> {
    let Some(obj) = v.as_object() else {
        return bad_request("customProperties: expected an object");
    };
    if obj.len() > MAX_CUSTOM_PROPERTIES {
        return bad_request(format!(
            "customProperties: {} keys, at most {MAX_CUSTOM_PROPERTIES}",
            obj.len()
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        check_text("customProperties key", k)?;
        if k.is_empty() {
            return bad_request("customProperties: empty key");
        }
        if k.len() > MAX_CUSTOM_PROPERTY_KEY_BYTES {
            let shown: String = k.chars().take(40).collect();
            return bad_request(format!(
                "customProperties: key '{shown}...' is {} bytes in UTF-8, at most {MAX_CUSTOM_PROPERTY_KEY_BYTES}",
                k.len()
            ));
        }
        out.insert(k.clone(), decode_value(k, v)?);
    }
    Ok(out)
}

/// Decode the wire form, strictly (unknown keys and wrong types are errors).
pub fn decode_value(key: &str, v: &Value) -> Result<MetadataValue> {
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

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// An entity in its wire form (camelCase, ids and times as strings,
/// `customProperties` always present), serialized by borrowing it.
pub struct Wire<'a>(pub &'a Entity);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &Decimal(e.id))?;
        m.serialize_entry("name", &e.name)?;
        if let Some(x) = &e.external_id {
            m.serialize_entry("externalId", x)?;
        }
        if let Some(t) = e.kind.artifact_type() {
            m.serialize_entry("artifactType", t)?;
        }
        if let (Some(f), Some(p)) = (e.kind.parent_field(), e.parent) {
            m.serialize_entry(f, &Decimal(p))?;
        }
        for (k, v) in &e.fields {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry("createTimeSinceEpoch", &Decimal(e.create_ms))?;
        m.serialize_entry("lastUpdateTimeSinceEpoch", &Decimal(e.update_ms))?;
        m.serialize_entry("customProperties", &WireProperties(&e.custom))?;
        m.end()
    }
}

/// A number the wire carries as a decimal string.
struct Decimal(u64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct WireProperties<'a>(&'a BTreeMap<String, MetadataValue>);

impl Serialize for WireProperties<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &WireValue(v))?;
        }
        m.end()
    }
}

/// A custom property value, tagged by `metadataType` (ints as strings).
pub struct WireValue<'a>(pub &'a MetadataValue);

impl Serialize for WireValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self.0 {
            MetadataValue::String(v) => {
                m.serialize_entry("metadataType", "MetadataStringValue")?;
                m.serialize_entry("string_value", v)?;
            }
            MetadataValue::Int(v) => {
                m.serialize_entry("metadataType", "MetadataIntValue")?;
                m.serialize_entry("int_value", &v.to_string())?;
            }
            MetadataValue::Double(v) => {
                m.serialize_entry("metadataType", "MetadataDoubleValue")?;
                m.serialize_entry("double_value", v)?;
            }
            MetadataValue::Bool(v) => {
                m.serialize_entry("metadataType", "MetadataBoolValue")?;
                m.serialize_entry("bool_value", v)?;
            }
            MetadataValue::Struct(v) => {
                m.serialize_entry("metadataType", "MetadataStructValue")?;
                m.serialize_entry("struct_value", v)?;
            }
        }
        m.end()
    }
}

/// The wire form as a JSON value (for callers that edit it).
pub fn to_value(e: &Entity) -> Value {
    serde_json::to_value(Wire(e)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entity::{MAX_NAME, check_owned_name};
    use serde_json::json;

    #[test]
    fn create_is_strict() {
        let e = decode_new(Kind::RegisteredModel, &json!({"name": "m", "bogus": 1}));
        assert!(matches!(e, Err(Error::BadRequest(m)) if m.contains("bogus")));
        let e = decode_new(Kind::RegisteredModel, &json!({"description": "x"}));
        assert!(matches!(e, Err(Error::Unprocessable(_))));
        let e = decode_new(Kind::RegisteredModel, &json!({"name": ""}));
        assert!(matches!(e, Err(Error::Unprocessable(_))));
        let e = decode_new(
            Kind::RegisteredModel,
            &json!({"name": "m", "state": "GONE"}),
        );
        assert!(matches!(e, Err(Error::BadRequest(_))));
        let e = decode_new(Kind::Metric, &json!({"name": "acc"}));
        assert!(matches!(e, Err(Error::BadRequest(_))));
        let e = decode_new(Kind::ModelVersion, &json!({"name": "v"}));
        assert!(matches!(e, Err(Error::Unprocessable(_))));
        let long = "x".repeat(MAX_NAME + 1);
        let e = decode_new(Kind::RegisteredModel, &json!({ "name": long }));
        assert!(matches!(e, Err(Error::BadRequest(_))));
        let e = decode_new(Kind::RegisteredModel, &json!({"name": "a\u{0}b"}));
        assert!(matches!(e, Err(Error::BadRequest(_))));
    }

    #[test]
    fn names_are_bounded_in_characters_and_bytes() {
        let model = |name: String| decode_new(Kind::RegisteredModel, &json!({ "name": name }));
        // 250 emoji are 1,000 bytes: the byte limit, accepted.
        assert!(model("😀".repeat(250)).is_ok());
        // 255 characters but 1,020 bytes: over the byte limit.
        let e = model("😀".repeat(255));
        assert!(
            matches!(&e, Err(Error::BadRequest(m)) if m.contains("at most 1000")),
            "{e:?}"
        );
        // 255 three-byte characters always fit.
        assert!(model("é€".repeat(127) + "€").is_ok());
        let xid = |x: String| {
            decode_new(
                Kind::RegisteredModel,
                &json!({"name": "m", "externalId": x}),
            )
        };
        assert!(xid("😀".repeat(256)).is_ok());
        assert!(
            matches!(xid(format!("a{}", "😀".repeat(256))), Err(Error::BadRequest(m)) if m.contains("1025 bytes"))
        );
    }

    #[test]
    fn owned_names_count_the_parent_id_prefix() {
        assert!(check_owned_name(&"v".repeat(255), None).is_ok());
        // Stored as "12:<name>": 3 + 252 = 255.
        assert!(check_owned_name(&"v".repeat(252), Some(12)).is_ok());
        let e = check_owned_name(&"v".repeat(253), Some(12));
        assert!(
            matches!(&e, Err(Error::BadRequest(m)) if m.contains("at most 252")),
            "{e:?}"
        );
        assert!(check_owned_name(&"v".repeat(250), Some(1234)).is_ok());
        assert!(check_owned_name(&"v".repeat(250), Some(12345)).is_err());
    }

    #[test]
    fn numbers_out_of_range_are_bad_requests() {
        let run = |extra: Value| {
            let mut body = json!({"name": "r", "experimentId": "1"});
            if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(x.clone());
            }
            decode_new(Kind::ExperimentRun, &body)
        };
        let ok = run(json!({"startTimeSinceEpoch": i64::MAX.to_string()})).unwrap();
        assert_eq!(
            ok.fields["startTimeSinceEpoch"],
            json!(i64::MAX.to_string())
        );
        for bad in [
            json!({"startTimeSinceEpoch": "9223372036854775808"}),
            json!({"startTimeSinceEpoch": "-9223372036854775809"}),
            json!({"startTimeSinceEpoch": "99999999999999999999999999999"}),
            json!({"endTimeSinceEpoch": 18446744073709551615u64}),
            json!({"endTimeSinceEpoch": 1e30}),
        ] {
            let e = run(bad.clone());
            assert!(
                matches!(&e, Err(Error::BadRequest(m)) if m.contains("out of range")),
                "{bad}: {e:?}"
            );
        }
        let metric = |extra: Value| {
            let mut body = json!({"name": "m", "value": 1.0});
            if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(x.clone());
            }
            decode_new(Kind::Metric, &body)
        };
        assert!(metric(json!({"step": i64::MIN, "timestamp": "0"})).is_ok());
        for bad in [
            json!({"step": 9223372036854775808u64}),
            json!({"step": 1e20}),
            json!({"step": 1.5}),
            json!({"step": "3"}),
            json!({"timestamp": "1e400"}),
            json!({"timestamp": "18446744073709551616"}),
        ] {
            assert!(
                matches!(metric(bad.clone()), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn custom_properties_are_bounded() {
        let props = |n: usize, key_len: usize| {
            let map: Map<String, Value> = (0..n)
                .map(|i| {
                    let key = format!("{i:0>key_len$}");
                    (
                        key,
                        json!({"metadataType": "MetadataBoolValue", "bool_value": true}),
                    )
                })
                .collect();
            decode_new(
                Kind::RegisteredModel,
                &json!({"name": "m", "customProperties": map}),
            )
        };
        assert!(props(MAX_CUSTOM_PROPERTIES, 4).is_ok());
        let e = props(MAX_CUSTOM_PROPERTIES + 1, 4);
        assert!(
            matches!(&e, Err(Error::BadRequest(m)) if m.contains("at most 1000")),
            "{e:?}"
        );
        assert!(props(1, MAX_CUSTOM_PROPERTY_KEY_BYTES).is_ok());
        let e = props(1, MAX_CUSTOM_PROPERTY_KEY_BYTES + 1);
        assert!(
            matches!(&e, Err(Error::BadRequest(m)) if m.contains("256 bytes")),
            "{e:?}"
        );
        let patch = decode_patch(
            Kind::RegisteredModel,
            &json!({"customProperties": (0..=MAX_CUSTOM_PROPERTIES).map(|i| (i.to_string(), json!({"metadataType": "MetadataBoolValue", "bool_value": true}))).collect::<Map<String, Value>>()}),
        );
        assert!(matches!(patch, Err(Error::BadRequest(_))));
    }

    #[test]
    fn patch_rejects_immutable_fields() {
        for body in [
            json!({"name": "x"}),
            json!({"id": "1"}),
            json!({"createTimeSinceEpoch": "1"}),
        ] {
            assert!(
                decode_patch(Kind::RegisteredModel, &body).is_err(),
                "{body}"
            );
        }
        assert!(decode_patch(Kind::ModelVersion, &json!({"registeredModelId": "1"})).is_err());
        let p = decode_patch(
            Kind::ModelArtifact,
            &json!({"artifactType": "doc-artifact"}),
        );
        assert!(p.is_err());
    }

    #[test]
    fn wire_round_trip_keeps_types() {
        let body = json!({
            "name": "m", "language": ["en"], "customProperties": {
                "i": {"metadataType": "MetadataIntValue", "int_value": "10"},
                "d": {"metadataType": "MetadataDoubleValue", "double_value": 0.5},
                "b": {"metadataType": "MetadataBoolValue", "bool_value": true},
                "s": {"metadataType": "MetadataStringValue", "string_value": ""},
                "st": {"metadataType": "MetadataStructValue", "struct_value": "eyJhIjoxfQ=="}
            }
        });
        let new = decode_new(Kind::RegisteredModel, &body).unwrap();
        let e = Entity::create(new, 7, "m".into(), 1000);
        let w = to_value(&e);
        assert_eq!(w["id"], "7");
        assert_eq!(w["state"], "LIVE");
        assert_eq!(w["customProperties"]["i"]["int_value"], "10");
        assert_eq!(w["customProperties"]["st"]["struct_value"], "eyJhIjoxfQ==");
        assert!(w.get("description").is_none());
        let proto = json!({"name": "m", "customProperties": {"p": {"metadataType": "MetadataProtoValue", "type": "x", "proto_value": ""}}});
        assert!(decode_new(Kind::RegisteredModel, &proto).is_err());
    }
}
