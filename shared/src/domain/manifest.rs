//! The optional manifest of an uploaded model version: a file named
//! `model-manifest.json`, `model-manifest.yaml` or `model-manifest.yml` at
//! the root of the version folder (`models/<model>/<version>/`), whose
//! content registration applies to the entities (see `uploads`). Every key
//! is optional; unknown keys are an error (like the API's strict decoding).
//!
//! ```yaml
//! modelFormatName: onnx        # the model artifact's format
//! modelFormatVersion: "1"
//! description: first try       # the version's description
//! author: ada                  # the version's author
//! model:                       # fields of the registered model (PATCH rules)
//!   description: handwritten digits
//!   owner: ada
//! metrics:                     # numbers: metric artifacts of the version,
//!   accuracy: 0.98             # and double custom properties of the version
//! parameters:                  # parameter artifacts of the version, and
//!   epochs: 10                 # custom properties typed from the value
//!   optimizer: adam
//! properties:                  # more custom properties of the version
//!   framework: pytorch
//!   approved: true
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::entity::{Kind, MAX_NAME, Patch};
use super::value::{MetadataValue, check_text};

/// File names of the manifest in a version folder, in order of precedence.
pub const MANIFEST_NAMES: [&str; 3] = [
    "model-manifest.json",
    "model-manifest.yaml",
    "model-manifest.yml",
];

/// Larger manifests are not read (the artifact's `manifest_error` says so;
/// the rest of the registration goes on): a manifest is metadata, and it is
/// read whole into memory.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Most `metrics` one manifest may list: each becomes a metric artifact of
/// the version (written one by one) and a custom property of the version.
pub const MAX_MANIFEST_METRICS: usize = 1000;

/// Most `parameters` and `properties`, together, one manifest may list:
/// each becomes a custom property of the version (and each parameter a
/// parameter artifact).
pub const MAX_MANIFEST_PROPERTIES: usize = 1000;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub format_name: Option<String>,
    pub format_version: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    /// Fields of the registered model, as a PATCH would set them.
    pub model: Option<Patch>,
    pub metrics: BTreeMap<String, f64>,
    pub parameters: BTreeMap<String, Value>,
    pub properties: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    model_format_name: Option<Value>,
    model_format_version: Option<Value>,
    description: Option<String>,
    author: Option<String>,
    model: Option<Value>,
    #[serde(default)]
    metrics: BTreeMap<String, Value>,
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

impl Manifest {
    /// Parse and validate the manifest at `key` (JSON for `.json`, else
    /// YAML). The error says what is wrong, for the artifact's
    /// `manifest_error`.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Manifest, String> {
        let fail = |why: String| format!("{key}: {why}");
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_MANIFEST_BYTES {
            return Err(fail(format!(
                "larger than {MAX_MANIFEST_BYTES} bytes, not read"
            )));
        }
        let value: Value = if key.ends_with(".json") {
            serde_json::from_slice(bytes).map_err(|e| fail(format!("invalid JSON: {e}")))?
        } else {
            serde_norway::from_slice(bytes).map_err(|e| fail(format!("invalid YAML: {e}")))?
        };
        if value.is_null() {
            return Ok(Manifest::default());
        }
        let raw: Raw = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
        Manifest::validate(raw).map_err(fail)
    }

    fn validate(raw: Raw) -> Result<Manifest, String> {
        if raw.metrics.len() > MAX_MANIFEST_METRICS {
            return Err(format!(
                "metrics: {} listed, at most {MAX_MANIFEST_METRICS} are allowed",
                raw.metrics.len()
            ));
        }
        let properties = raw.parameters.len().saturating_add(raw.properties.len());
        if properties > MAX_MANIFEST_PROPERTIES {
            return Err(format!(
                "parameters and properties: {properties} listed, at most \
                 {MAX_MANIFEST_PROPERTIES} are allowed together"
            ));
        }
        let text = |what: &str, v: Option<String>| -> Result<Option<String>, String> {
            if let Some(s) = &v {
                check_text(what, s).map_err(|e| e.to_string())?;
            }
            Ok(v)
        };
        let mut m = Manifest {
            format_name: text("modelFormatName", scalar_text(raw.model_format_name)?)?,
            format_version: text("modelFormatVersion", scalar_text(raw.model_format_version)?)?,
            description: text("description", raw.description)?,
            author: text("author", raw.author)?,
            model: None,
            metrics: BTreeMap::new(),
            parameters: BTreeMap::new(),
            properties: BTreeMap::new(),
        };
        if let Some(model) = raw.model {
            let patch = Patch::from_wire(Kind::RegisteredModel, &model)
                .map_err(|e| format!("model: {e}"))?;
            if patch.external_id.is_some() || patch.custom.is_some() {
                return Err("model: externalId and customProperties cannot be set here".into());
            }
            m.model = Some(patch);
        }
        let mut seen = BTreeMap::new();
        for (section, entries) in [
            ("metrics", &raw.metrics),
            ("parameters", &raw.parameters),
            ("properties", &raw.properties),
        ] {
            for (name, value) in entries {
                check_key(section, name)?;
                if let Some(other) = seen.insert(name.clone(), section) {
                    return Err(format!("'{name}' is in both {other} and {section}"));
                }
                if value.is_null() {
                    return Err(format!("{section}.{name}: null is not a value"));
                }
                if let Value::String(s) = value {
                    check_text(&format!("{section}.{name}"), s).map_err(|e| e.to_string())?;
                }
            }
        }
        for (name, value) in raw.metrics {
            match value.as_f64() {
                Some(x) if x.is_finite() => {
                    m.metrics.insert(name, x);
                }
                _ => return Err(format!("metrics.{name}: expected a number, got {value}")),
            }
        }
        m.parameters = raw.parameters;
        m.properties = raw.properties;
        Ok(m)
    }

    /// Custom properties of the version: metrics as doubles, parameters and
    /// properties typed from their values.
    pub fn version_properties(&self) -> BTreeMap<String, MetadataValue> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.metrics {
            out.insert(k.clone(), MetadataValue::Double(*v));
        }
        for (k, v) in self.parameters.iter().chain(&self.properties) {
            out.insert(k.clone(), typed(v));
        }
        out
    }

    /// Upsert bodies (`POST /model_versions/{id}/artifacts`) of the metric
    /// and parameter artifacts.
    pub fn artifact_bodies(&self) -> Vec<(Kind, Value)> {
        let metrics = self.metrics.iter().map(|(name, value)| {
            (
                Kind::Metric,
                json!({"artifactType": "metric", "name": name, "value": value}),
            )
        });
        let parameters = self.parameters.iter().map(|(name, value)| {
            let (text, kind) = match value {
                Value::String(s) => (s.clone(), "string"),
                Value::Bool(b) => (b.to_string(), "boolean"),
                Value::Number(n) => (n.to_string(), "number"),
                other => (other.to_string(), "object"),
            };
            (
                Kind::Parameter,
                json!({"artifactType": "parameter", "name": name, "value": text, "parameterType": kind}),
            )
        });
        metrics.chain(parameters).collect()
    }
}

/// A string, or a number/bool written without quotes (YAML `1` for `"1"`).
fn scalar_text(v: Option<Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(format!("expected a string, got {other}")),
    }
}

fn check_key(section: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(format!(
            "{section}: names must have 1 to {MAX_NAME} characters"
        ));
    }
    check_text(&format!("{section} name"), name).map_err(|e| e.to_string())
}

/// A custom property typed from a JSON value: integers, doubles, booleans
/// and strings as such; objects as struct values; lists as their JSON text.
fn typed(v: &Value) -> MetadataValue {
    match v {
        Value::Bool(b) => MetadataValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => MetadataValue::Int(i),
            None => MetadataValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => MetadataValue::String(s.clone()),
        Value::Object(o) => MetadataValue::Struct(
            base64::engine::general_purpose::STANDARD
                .encode(Value::Object(Map::clone(o)).to_string()),
        ),
        other => MetadataValue::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
modelFormatName: onnx
modelFormatVersion: 1
description: first try
author: ada
model:
  description: digits
  owner: ada
metrics:
  accuracy: 0.98
  epochs_run: 10
parameters:
  epochs: 10
  optimizer: adam
  pretrained: true
  layers: {a: 1}
properties:
  framework: pytorch
"#;

    #[test]
    fn yaml_and_json_give_the_same_manifest() {
        let y = Manifest::parse("models/m/1/model-manifest.yaml", YAML.as_bytes()).unwrap();
        let as_json: Value = serde_norway::from_str(YAML).unwrap();
        let j = Manifest::parse("m/1/model-manifest.json", as_json.to_string().as_bytes()).unwrap();
        assert_eq!(y, j);
        assert_eq!(y.format_name.as_deref(), Some("onnx"));
        assert_eq!(y.format_version.as_deref(), Some("1"));
        assert_eq!(y.metrics["accuracy"], 0.98);
        let props = y.version_properties();
        assert_eq!(props["accuracy"], MetadataValue::Double(0.98));
        assert_eq!(props["epochs_run"], MetadataValue::Double(10.0));
        assert_eq!(props["epochs"], MetadataValue::Int(10));
        assert_eq!(props["pretrained"], MetadataValue::Bool(true));
        assert_eq!(props["framework"], MetadataValue::String("pytorch".into()));
        assert!(matches!(props["layers"], MetadataValue::Struct(_)));
        let bodies = y.artifact_bodies();
        assert_eq!(bodies.len(), 6);
        let epochs = bodies.iter().find(|(_, b)| b["name"] == "epochs").unwrap();
        assert_eq!(epochs.1["value"], "10");
        assert_eq!(epochs.1["parameterType"], "number");
    }

    #[test]
    fn manifests_list_at_most_so_many_metrics_and_properties() {
        let listing = |section: &str, n: usize| -> String {
            let entries: Vec<String> = (0..n).map(|i| format!("\"{section}{i}\": {i}")).collect();
            format!("{{\"{section}\": {{{}}}}}", entries.join(", "))
        };
        let at_limit = Manifest::parse(
            "m.json",
            listing("metrics", MAX_MANIFEST_METRICS).as_bytes(),
        )
        .unwrap();
        assert_eq!(at_limit.metrics.len(), MAX_MANIFEST_METRICS);
        let err = Manifest::parse(
            "m.json",
            listing("metrics", MAX_MANIFEST_METRICS + 1).as_bytes(),
        )
        .unwrap_err();
        assert!(err.contains("at most 1000"), "{err}");
        let half = MAX_MANIFEST_PROPERTIES / 2;
        let both = format!(
            "parameters: {{{}}}\nproperties: {{{}}}\n",
            (0..half)
                .map(|i| format!("p{i}: {i}"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..=half)
                .map(|i| format!("q{i}: {i}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let err = Manifest::parse("m.yaml", both.as_bytes()).unwrap_err();
        assert!(err.contains("parameters and properties: 1001"), "{err}");
        assert!(
            Manifest::parse(
                "m.json",
                listing("parameters", MAX_MANIFEST_PROPERTIES).as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, expect) in [
            ("bogus: 1", "unknown field"),
            ("metrics: {acc: high}", "expected a number"),
            ("metrics: {a: 1}\nparameters: {a: 2}", "both"),
            ("model: {name: x}", "unknown field"),
            ("model: {state: GONE}", "invalid value"),
            ("description: [1]", "invalid type"),
            ("metrics: [1, 2]", "invalid type"),
            ("parameters: {p: null}", "null"),
            (": : :", "invalid YAML"),
        ] {
            let err = Manifest::parse("m/v/model-manifest.yaml", text.as_bytes()).unwrap_err();
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(err.starts_with("m/v/model-manifest.yaml: "), "{err}");
        }
        assert!(Manifest::parse("x.json", b"{").is_err());
        let huge = vec![b' '; usize::try_from(MAX_MANIFEST_BYTES).unwrap() + 1];
        let err = Manifest::parse("x.yaml", &huge).unwrap_err();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
        assert_eq!(Manifest::parse("x.yaml", b"").unwrap(), Manifest::default());
    }
}
