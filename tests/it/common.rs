//! Payload builders and entity assertions of the API tests; the HTTP
//! client, its error-shape assertions and the paging walker are
//! `registry-test-support`'s (re-exported here for `use crate::common::*`).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};

pub use registry_test_support::{
    Api, PREFIXES, Page, Resp, V1, V1ALPHA3, assert_full_pages, id, ids_of, items, truncate, uniq,
};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

// ---------------------------------------------------------------- payloads

pub fn cp_str(s: &str) -> Value {
    json!({ "metadataType": "MetadataStringValue", "string_value": s })
}

/// `int_value` travels as a JSON string.
pub fn cp_int(i: i64) -> Value {
    json!({ "metadataType": "MetadataIntValue", "int_value": i.to_string() })
}

pub fn cp_double(d: f64) -> Value {
    json!({ "metadataType": "MetadataDoubleValue", "double_value": d })
}

pub fn cp_bool(b: bool) -> Value {
    json!({ "metadataType": "MetadataBoolValue", "bool_value": b })
}

/// `struct_value` is base64 of a JSON object.
pub fn cp_struct(obj: &Value) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD.encode(obj.to_string());
    json!({ "metadataType": "MetadataStructValue", "struct_value": b64 })
}

/// Decodes a `struct_value` (standard or URL-safe base64, padded or not) to JSON.
pub fn decode_struct(b64: &str) -> Value {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .or_else(|_| URL_SAFE.decode(b64))
        .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
        .unwrap_or_else(|e| panic!("struct_value {b64:?} is not base64: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "struct_value does not decode to JSON: {e}: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

// ---------------------------------------------------------------- assertions

#[track_caller]
pub fn id_num(v: &Value) -> u64 {
    let s = id(v);
    s.parse()
        .unwrap_or_else(|_| panic!("id {s:?} is not a decimal integer"))
}

/// Field `f` is a JSON string holding a decimal number; returns it.
#[track_caller]
pub fn num_str(v: &Value, f: &str) -> u64 {
    let s = v
        .get(f)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{f}` must be a JSON string: {v}"));
    s.parse()
        .unwrap_or_else(|_| panic!("`{f}` = {s:?} must be a decimal integer string: {v}"))
}

/// Checks the id pattern `^[1-9][0-9]{0,8}$`.
#[track_caller]
pub fn assert_id_format(v: &Value) {
    let s = id(v);
    let ok = !s.is_empty()
        && s.len() <= 9
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    assert!(ok, "id {s:?} must match ^[1-9][0-9]{{0,8}}$ in {v}");
}

/// Create/update timestamps are decimal strings of plausible epoch milliseconds.
#[track_caller]
pub fn assert_timestamps(v: &Value) -> (u64, u64) {
    let c = num_str(v, "createTimeSinceEpoch");
    let u = num_str(v, "lastUpdateTimeSinceEpoch");
    let now = now_ms();
    for (name, t) in [("createTimeSinceEpoch", c), ("lastUpdateTimeSinceEpoch", u)] {
        assert!(
            t > 1_600_000_000_000 && t <= now + 120_000,
            "{name} = {t} is not epoch milliseconds close to now ({now}): {v}"
        );
    }
    assert!(
        u >= c,
        "lastUpdateTimeSinceEpoch < createTimeSinceEpoch in {v}"
    );
    (c, u)
}

/// No `null` anywhere: unset optional fields are omitted.
#[track_caller]
pub fn assert_no_nulls(v: &Value) {
    fn walk(v: &Value, path: &str, root: &Value) {
        match v {
            Value::Null => panic!("`{path}` is null; unset fields must be omitted: {root}"),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), root);
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), root);
                }
            }
            _ => {}
        }
    }
    walk(v, "$", v);
}

/// Common shape of every entity response.
#[track_caller]
pub fn assert_entity_basics(v: &Value) {
    assert!(v.is_object(), "entity must be a JSON object: {v}");
    assert_id_format(v);
    assert_timestamps(v);
    assert!(
        v.get("customProperties").is_some_and(Value::is_object),
        "customProperties must always be present (an object): {v}"
    );
    assert_no_nulls(v);
}

#[track_caller]
pub fn assert_absent(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(
            v.get(*f).is_none(),
            "unset optional field `{f}` must be omitted (not null, not empty): {v}"
        );
    }
}

pub fn names_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub fn name_set(items: &[Value]) -> BTreeSet<String> {
    names_of(items).into_iter().collect()
}

pub fn set<I, S>(it: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    it.into_iter().map(Into::into).collect()
}

#[track_caller]
pub fn assert_f64(v: &Value, expected: f64, what: &str) {
    let got = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} must be a number, got {v}"));
    assert!(
        (got - expected).abs() < 1e-9,
        "{what}: expected {expected}, got {got}"
    );
}
