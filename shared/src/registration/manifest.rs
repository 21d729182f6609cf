//! The optional manifest of a version folder: a file named
//! `model-manifest.json`, `model-manifest.yaml` or `model-manifest.yml` at
//! the root of `<prefix><model>/<version>/`, whose content registration
//! applies to the entities. Every key is optional; unknown keys are an
//! error (like the API's strict decoding).
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
//!
//! The format ([`Manifest::parse`]) and its application (`apply`): a
//! manifest is applied when its content changed, and only then, so later
//! edits through the API are not overwritten by other files' events.
//! Problems are recorded on the model artifact (`manifest_error`) rather
//! than failing the delivery: retrying would not fix a manifest.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::explain;
use super::find_or_create::find_or_create;
use super::reconcile::props;
use super::storage_error;
use crate::domain::entity::{Entity, Family, Kind, MAX_NAME, Patch};
use crate::domain::error::{Error, Result};
use crate::domain::registry::Registry;
use crate::domain::value::{MetadataValue, check_text};
use crate::store::artifacts::{ArtifactError, ArtifactRead};
use crate::store::layout::objects::Recorded;

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

/// A manifest that cannot be applied: which file, and (as the source) what
/// is wrong with it. [`explain`] gives the text `manifest_error` records
/// (`<key>: <problem>: <cause>`).
#[derive(Debug, thiserror::Error)]
#[error("{key}")]
pub struct ManifestError {
    pub key: String,
    #[source]
    pub problem: ManifestProblem,
}

/// What is wrong with a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error("larger than {MAX_MANIFEST_BYTES} bytes, not read")]
    TooLarge,
    #[error("invalid JSON")]
    Json(#[source] serde_json::Error),
    #[error("invalid YAML")]
    Yaml(#[source] serde_norway::Error),
    /// JSON or YAML of another shape: an unknown key, a value of the wrong type.
    #[error(transparent)]
    Shape(serde_json::Error),
    #[error("metrics: {0} listed, at most {MAX_MANIFEST_METRICS} are allowed")]
    TooManyMetrics(usize),
    #[error(
        "parameters and properties: {0} listed, at most {MAX_MANIFEST_PROPERTIES} are allowed together"
    )]
    TooManyProperties(usize),
    /// A text the registry does not store (a NUL byte).
    #[error(transparent)]
    Text(Error),
    /// `model` is not a valid PATCH of a registered model.
    #[error("model")]
    Model(#[source] Error),
    #[error("model: externalId and customProperties cannot be set here")]
    ModelFields,
    #[error("expected a string, got {0}")]
    NotAString(Value),
    #[error("{section}: names must have 1 to {MAX_NAME} characters")]
    NameLength { section: &'static str },
    #[error("'{name}' is in both {first} and {second}")]
    Twice {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("{section}.{name}: null is not a value")]
    Null { section: &'static str, name: String },
    #[error("metrics.{name}: expected a number, got {value}")]
    NotANumber { name: String, value: Value },
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
    /// YAML).
    pub fn parse(key: &str, bytes: &[u8]) -> std::result::Result<Manifest, ManifestError> {
        Manifest::read(key, bytes).map_err(|problem| ManifestError {
            key: key.to_string(),
            problem,
        })
    }

    fn read(key: &str, bytes: &[u8]) -> std::result::Result<Manifest, ManifestProblem> {
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_MANIFEST_BYTES {
            return Err(ManifestProblem::TooLarge);
        }
        let value: Value = if key.ends_with(".json") {
            serde_json::from_slice(bytes).map_err(ManifestProblem::Json)?
        } else {
            serde_norway::from_slice(bytes).map_err(ManifestProblem::Yaml)?
        };
        if value.is_null() {
            return Ok(Manifest::default());
        }
        let raw: Raw = serde_json::from_value(value).map_err(ManifestProblem::Shape)?;
        Manifest::validate(raw)
    }

    fn validate(raw: Raw) -> std::result::Result<Manifest, ManifestProblem> {
        if raw.metrics.len() > MAX_MANIFEST_METRICS {
            return Err(ManifestProblem::TooManyMetrics(raw.metrics.len()));
        }
        let properties = raw.parameters.len().saturating_add(raw.properties.len());
        if properties > MAX_MANIFEST_PROPERTIES {
            return Err(ManifestProblem::TooManyProperties(properties));
        }
        let text = |what: &str, v: Option<String>| {
            if let Some(s) = &v {
                check_text(what, s).map_err(ManifestProblem::Text)?;
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
            let patch = crate::api::codec::decode_patch(Kind::RegisteredModel, &model)
                .map_err(ManifestProblem::Model)?;
            if patch.external_id.is_some() || patch.custom.is_some() {
                return Err(ManifestProblem::ModelFields);
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
                if let Some(first) = seen.insert(name.clone(), section) {
                    return Err(ManifestProblem::Twice {
                        name: name.clone(),
                        first,
                        second: section,
                    });
                }
                if value.is_null() {
                    return Err(ManifestProblem::Null {
                        section,
                        name: name.clone(),
                    });
                }
                if let Value::String(s) = value {
                    check_text(&format!("{section}.{name}"), s).map_err(ManifestProblem::Text)?;
                }
            }
        }
        for (name, value) in raw.metrics {
            match value.as_f64() {
                Some(x) if x.is_finite() => {
                    m.metrics.insert(name, x);
                }
                _ => return Err(ManifestProblem::NotANumber { name, value }),
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
fn scalar_text(v: Option<Value>) -> std::result::Result<Option<String>, ManifestProblem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(ManifestProblem::NotAString(other)),
    }
}

fn check_key(section: &'static str, name: &str) -> std::result::Result<(), ManifestProblem> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ManifestProblem::NameLength { section });
    }
    check_text(&format!("{section} name"), name).map_err(ManifestProblem::Text)
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

/// Apply the manifest recorded in `recorded` (its state item) unless its
/// content was already applied (the artifact remembers the SHA-256 of what
/// it applied): the model's and version's fields and custom properties,
/// the artifact's format, and metric/parameter artifacts. Problems are
/// recorded on the artifact (`manifest_error`).
pub(super) async fn apply(
    registry: &Registry,
    store: &dyn ArtifactRead,
    recorded: &Recorded,
    model: &Entity,
    version: &Entity,
    artifact: Entity,
) -> Result<Entity> {
    let (key, state) = (recorded.key.as_str(), &recorded.state);
    let applied = match artifact.custom.get(props::MANIFEST_SHA256) {
        Some(MetadataValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    if applied.is_some() && applied == state.sha256.as_deref() {
        return Ok(artifact);
    }
    let mut problems = Vec::new();
    let too_large = || {
        explain(&ManifestError {
            key: key.to_string(),
            problem: ManifestProblem::TooLarge,
        })
    };
    let content = if state.size.unwrap_or(0) > MAX_MANIFEST_BYTES {
        problems.push(too_large());
        None
    } else {
        match store.get(key).await {
            // Replaced by a larger one since it was recorded: its event
            // follows; this content is not parsed either.
            Ok(bytes) if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_MANIFEST_BYTES => {
                problems.push(too_large());
                None
            }
            Ok(bytes) => Some(bytes),
            // Removed meanwhile: its removal event follows.
            Err(ArtifactError::NotFound(_)) => return Ok(artifact),
            Err(e) => return Err(storage_error(e)),
        }
    };
    let sha256 = match &content {
        Some(bytes) => hex::encode(Sha256::digest(bytes)),
        None => state.sha256.clone().unwrap_or_default(),
    };
    if applied == Some(sha256.as_str()) {
        return Ok(artifact);
    }
    let manifest = match content.as_deref().map(|b| Manifest::parse(key, b)) {
        Some(Ok(m)) => Some(m),
        Some(Err(why)) => {
            problems.push(explain(&why));
            None
        }
        None => None,
    };
    if let Some(m) = &manifest {
        problems.extend(apply_to_entities(registry, m, model, version).await?);
    }
    if !problems.is_empty() {
        tracing::warn!(manifest = key, problems = ?problems, "manifest not fully applied");
    }
    registry
        .modify(Family::Artifact, artifact.id, |e| {
            let before = e.clone();
            if let Some(m) = &manifest {
                for (field, value) in [
                    ("modelFormatName", &m.format_name),
                    ("modelFormatVersion", &m.format_version),
                ] {
                    if let Some(v) = value {
                        e.fields.insert(field.into(), Value::from(v.as_str()));
                    }
                }
            }
            e.custom.insert(
                props::MANIFEST_SHA256.into(),
                MetadataValue::String(sha256.clone()),
            );
            if problems.is_empty() {
                e.custom.remove(props::MANIFEST_ERROR);
            } else {
                e.custom.insert(
                    props::MANIFEST_ERROR.into(),
                    MetadataValue::String(problems.join("; ")),
                );
            }
            Ok(*e != before)
        })
        .await
}

/// The manifest's model fields, version fields and custom properties,
/// and its metrics and parameters as artifacts of the version. Returns
/// the problems that a retry would not fix.
async fn apply_to_entities(
    registry: &Registry,
    m: &Manifest,
    model: &Entity,
    version: &Entity,
) -> Result<Vec<String>> {
    if let Some(patch) = &m.model {
        registry
            .modify(Family::RegisteredModel, model.id, |e| {
                let before = e.clone();
                patch.apply(e);
                Ok(*e != before)
            })
            .await?;
    }
    let custom = m.version_properties();
    registry
        .modify(Family::ModelVersion, version.id, |e| {
            let before = e.clone();
            for (field, value) in [("description", &m.description), ("author", &m.author)] {
                if let Some(v) = value {
                    e.fields.insert(field.into(), Value::from(v.as_str()));
                }
            }
            e.custom.extend(custom.clone());
            Ok(*e != before)
        })
        .await?;
    let mut problems = Vec::new();
    for (kind, body) in m.artifact_bodies() {
        match upsert_measure(registry, version.id, kind, &body).await {
            Ok(()) => {}
            Err(e @ (Error::Unavailable { .. } | Error::Internal { .. })) => return Err(e),
            Err(e) => problems.push(format!(
                "{} '{}': {e}",
                kind.artifact_type().unwrap_or_default(),
                body["name"].as_str().unwrap_or_default()
            )),
        }
    }
    Ok(problems)
}

/// Create or update a metric/parameter artifact of the version by name,
/// skipping the write when it already holds these values.
async fn upsert_measure(
    registry: &Registry,
    version_id: u64,
    kind: Kind,
    body: &Value,
) -> Result<()> {
    let name = body["name"].as_str().unwrap_or_default();
    find_or_create(
        || format!("{name} is being written concurrently, retry"),
        || async move {
            let found = registry
                .find(
                    Family::Artifact,
                    Some(kind),
                    Some(name),
                    None,
                    Some(version_id),
                )
                .await;
            match found {
                Ok(existing) => {
                    let same = ["value", "parameterType"].iter().all(|f| {
                        body.get(*f)
                            .is_none_or(|v| existing.fields.get(*f) == Some(v))
                    });
                    Ok(same.then_some(()))
                }
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        },
        || async move {
            let upsert = crate::api::codec::decode_artifact_upsert(body)?;
            registry
                .upsert_version_artifact(version_id, upsert)
                .await
                .map(drop)
        },
    )
    .await
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

    /// Why the manifest cannot be applied, as `manifest_error` says it.
    fn problem(key: &str, text: &[u8]) -> String {
        explain(&Manifest::parse(key, text).unwrap_err())
    }

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
        let err = problem(
            "m.json",
            listing("metrics", MAX_MANIFEST_METRICS + 1).as_bytes(),
        );
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
        let err = problem("m.yaml", both.as_bytes());
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
            let err = problem("m/v/model-manifest.yaml", text.as_bytes());
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(err.starts_with("m/v/model-manifest.yaml: "), "{err}");
        }
        assert!(Manifest::parse("x.json", b"{").is_err());
        let huge = vec![b' '; usize::try_from(MAX_MANIFEST_BYTES).unwrap() + 1];
        let err = problem("x.yaml", &huge);
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
        assert_eq!(Manifest::parse("x.yaml", b"").unwrap(), Manifest::default());
    }
}
