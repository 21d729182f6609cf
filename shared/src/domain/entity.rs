//! Entities of the registry and their schemas.
//!
//! Every entity kind shares the base resource fields (id, name, externalId,
//! customProperties, timestamps) and declares its own fields in a schema
//! table taken from the upstream contract. One generic `Entity` carries them,
//! so create, PATCH, strict decoding, filters and storage are written once
//! for all kinds, and a new kind is a new schema row.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, Result, bad_request};
use super::filter::{FilterTarget, Scalar};
use super::value::{MetadataValue, check_text};

/// Longest accepted name, in characters (upstream limit). For an entity
/// with a parent, upstream stores `<parentId>:<name>` and that whole string
/// must fit (see [`check_owned_name`]).
pub const MAX_NAME: usize = 255;
/// Longest accepted name in UTF-8 bytes. Names are part of keys: the name
/// claim `<scope>#<name>`, the local index key `<scope>#<name>\u{1}` and the
/// global one `<name>\u{1}<id>`, where a scope or id is at most 20 digits
/// (a u64). A sort key is at most 1,024 bytes on DynamoDB, so a name may
/// take 1,024 - 22 = 1,002; 1,000 keeps a round number. (255 characters of
/// up to 3 bytes always fit; only names of many 4-byte characters, such as
/// emoji, reach it.)
pub const MAX_NAME_BYTES: usize = 1000;
/// Longest accepted externalId in UTF-8 bytes: the externalId claim's sort
/// key is the externalId itself, and a sort key is at most 1,024 bytes.
pub const MAX_EXTERNAL_ID_BYTES: usize = 1024;
/// Most custom properties one entity may carry.
pub const MAX_CUSTOM_PROPERTIES: usize = 1000;
/// Longest custom property key, in UTF-8 bytes (values are bounded by the
/// entity's size).
pub const MAX_CUSTOM_PROPERTY_KEY_BYTES: usize = 255;

/// Names of the own fields the rules read.
pub mod fields {
    pub const STATE: &str = "state";
    pub const URI: &str = "uri";
    pub const STEP: &str = "step";
    pub const TIMESTAMP: &str = "timestamp";
    pub const REGISTERED_MODEL_ID: &str = "registeredModelId";
    pub const MODEL_VERSION_ID: &str = "modelVersionId";
    pub const EXPERIMENT_ID: &str = "experimentId";
    pub const EXPERIMENT_RUN_ID: &str = "experimentRunId";
}

/// The kinds of entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    RegisteredModel,
    ModelVersion,
    ModelArtifact,
    DocArtifact,
    DataSet,
    Metric,
    Parameter,
    ServingEnvironment,
    InferenceService,
    ServeModel,
    Experiment,
    ExperimentRun,
    /// One logged value of a run's metric (the run's `metric` artifact shows the latest).
    MetricHistory,
}

/// Families share an id sequence, a storage partition and externalId scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    RegisteredModel,
    ModelVersion,
    Artifact,
    ServingEnvironment,
    InferenceService,
    ServeModel,
    Experiment,
    ExperimentRun,
    MetricHistory,
}

impl Family {
    /// Id sequence, as upstream: contexts (models, versions, serving
    /// environments, inference services, experiments, runs) share one,
    /// artifacts another, executions (serve models) a third.
    pub fn sequence(self) -> &'static str {
        match self {
            Family::Artifact | Family::MetricHistory => "artifact",
            Family::ServeModel => "execution",
            _ => "context",
        }
    }
    /// Scope of externalId uniqueness.
    pub fn external_id_scope(self) -> &'static str {
        self.sequence()
    }
    /// Does an entity of this family always have a parent?
    pub fn has_parent(self) -> bool {
        matches!(
            self,
            Family::ModelVersion
                | Family::InferenceService
                | Family::ServeModel
                | Family::ExperimentRun
                | Family::MetricHistory
        )
    }
    /// Do clients read a parent's children of this family by id as
    /// creation order (the highest id is the latest)? Versions, runs,
    /// inference services and serve records; not artifacts (ordered by
    /// time) nor metric history (by step).
    pub fn ordered_children(self) -> bool {
        self.has_parent() && self != Family::MetricHistory
    }
    /// Is the name unique in its scope? (Metric history repeats names.)
    pub fn unique_names(self) -> bool {
        self != Family::MetricHistory
    }
    /// Human name for messages.
    pub fn label(self) -> &'static str {
        match self {
            Family::RegisteredModel => "registered model",
            Family::ModelVersion => "model version",
            Family::Artifact => "artifact",
            Family::ServingEnvironment => "serving environment",
            Family::InferenceService => "inference service",
            Family::ServeModel => "serve model",
            Family::Experiment => "experiment",
            Family::ExperimentRun => "experiment run",
            Family::MetricHistory => "metric history record",
        }
    }
}

/// Type of an own field on the wire.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    Str,
    StrList,
    Enum(&'static [&'static str]),
    /// JSON number.
    Double,
    /// Integer carried as a decimal string (timestamps).
    Int64Str,
    /// JSON integer.
    Int,
    /// Id of another entity, a decimal string.
    Id,
}

/// One own field of a kind.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field { name, ty }
}

const MODEL_STATES: &[&str] = &["LIVE", "ARCHIVED"];
const ARTIFACT_STATES: &[&str] = &[
    "UNKNOWN",
    "PENDING",
    "LIVE",
    "MARKED_FOR_DELETION",
    "DELETED",
    "ABANDONED",
    "REFERENCE",
];
const PARAMETER_TYPES: &[&str] = &["string", "number", "boolean", "object"];
const DESIRED_STATES: &[&str] = &["DEPLOYED", "UNDEPLOYED"];
const EXECUTION_STATES: &[&str] = &[
    "UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED",
];
const RUN_STATUSES: &[&str] = &["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

use FieldType::*;

const REGISTERED_MODEL: &[Field] = &[
    f("description", Str),
    f("owner", Str),
    f("state", Enum(MODEL_STATES)),
    f("readme", Str),
    f("maturity", Str),
    f("language", StrList),
    f("tasks", StrList),
    f("provider", Str),
    f("logo", Str),
    f("license", Str),
    f("licenseLink", Str),
    f("libraryName", Str),
];
const MODEL_VERSION: &[Field] = &[
    f("description", Str),
    f("state", Enum(MODEL_STATES)),
    f("author", Str),
];
const ARTIFACT_BASE: &[Field] = &[
    f("description", Str),
    f("state", Enum(ARTIFACT_STATES)),
    f("experimentId", Id),
    f("experimentRunId", Id),
];
const MODEL_ARTIFACT: &[Field] = &[
    f("uri", Str),
    f("modelFormatName", Str),
    f("modelFormatVersion", Str),
    f("storageKey", Str),
    f("storagePath", Str),
    f("serviceAccountName", Str),
    f("modelSourceKind", Str),
    f("modelSourceClass", Str),
    f("modelSourceGroup", Str),
    f("modelSourceId", Str),
    f("modelSourceName", Str),
];
const DOC_ARTIFACT: &[Field] = &[f("uri", Str)];
const DATA_SET: &[Field] = &[
    f("uri", Str),
    f("digest", Str),
    f("sourceType", Str),
    f("source", Str),
    f("schema", Str),
    f("profile", Str),
];
const METRIC: &[Field] = &[f("value", Double), f("timestamp", Int64Str), f("step", Int)];
const PARAMETER: &[Field] = &[f("value", Str), f("parameterType", Enum(PARAMETER_TYPES))];
const SERVING_ENVIRONMENT: &[Field] = &[f("description", Str)];
const INFERENCE_SERVICE: &[Field] = &[
    f("description", Str),
    f("registeredModelId", Id),
    f("modelVersionId", Id),
    f("runtime", Str),
    f("desiredState", Enum(DESIRED_STATES)),
];
const SERVE_MODEL: &[Field] = &[
    f("description", Str),
    f("modelVersionId", Id),
    f("lastKnownState", Enum(EXECUTION_STATES)),
];
const EXPERIMENT: &[Field] = &[
    f("description", Str),
    f("owner", Str),
    f("state", Enum(MODEL_STATES)),
];
const EXPERIMENT_RUN: &[Field] = &[
    f("description", Str),
    f("owner", Str),
    f("state", Enum(MODEL_STATES)),
    f("status", Enum(RUN_STATUSES)),
    f("startTimeSinceEpoch", Int64Str),
    f("endTimeSinceEpoch", Int64Str),
];

impl Kind {
    pub const ARTIFACTS: [Kind; 5] = [
        Kind::ModelArtifact,
        Kind::DocArtifact,
        Kind::DataSet,
        Kind::Metric,
        Kind::Parameter,
    ];

    pub fn family(self) -> Family {
        match self {
            Kind::RegisteredModel => Family::RegisteredModel,
            Kind::ModelVersion => Family::ModelVersion,
            Kind::ServingEnvironment => Family::ServingEnvironment,
            Kind::InferenceService => Family::InferenceService,
            Kind::ServeModel => Family::ServeModel,
            Kind::Experiment => Family::Experiment,
            Kind::ExperimentRun => Family::ExperimentRun,
            Kind::MetricHistory => Family::MetricHistory,
            _ => Family::Artifact,
        }
    }

    /// The `artifactType` discriminator of artifact kinds.
    pub fn artifact_type(self) -> Option<&'static str> {
        Some(match self {
            Kind::ModelArtifact => "model-artifact",
            Kind::DocArtifact => "doc-artifact",
            Kind::DataSet => "dataset-artifact",
            Kind::Metric | Kind::MetricHistory => "metric",
            Kind::Parameter => "parameter",
            _ => return None,
        })
    }

    /// The artifact kind named by an `artifactType` value.
    pub fn from_artifact_type(t: &str) -> Result<Kind> {
        Kind::ARTIFACTS
            .into_iter()
            .find(|k| k.artifact_type() == Some(t))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown artifactType '{t}' (expected one of model-artifact, doc-artifact, dataset-artifact, metric, parameter)"
                ))
            })
    }

    /// Own fields, in wire order.
    pub fn fields(self) -> impl Iterator<Item = &'static Field> {
        let (base, own): (&[Field], &[Field]) = match self {
            Kind::RegisteredModel => (&[], REGISTERED_MODEL),
            Kind::ModelVersion => (&[], MODEL_VERSION),
            Kind::ModelArtifact => (ARTIFACT_BASE, MODEL_ARTIFACT),
            Kind::DocArtifact => (ARTIFACT_BASE, DOC_ARTIFACT),
            Kind::DataSet => (ARTIFACT_BASE, DATA_SET),
            Kind::Metric | Kind::MetricHistory => (ARTIFACT_BASE, METRIC),
            Kind::Parameter => (ARTIFACT_BASE, PARAMETER),
            Kind::ServingEnvironment => (&[], SERVING_ENVIRONMENT),
            Kind::InferenceService => (&[], INFERENCE_SERVICE),
            Kind::ServeModel => (&[], SERVE_MODEL),
            Kind::Experiment => (&[], EXPERIMENT),
            Kind::ExperimentRun => (&[], EXPERIMENT_RUN),
        };
        base.iter().chain(own.iter())
    }

    /// The own field `name` of this kind.
    pub fn field(self, name: &str) -> Option<&'static Field> {
        self.fields().find(|f| f.name == name)
    }

    /// Wire name of the parent id field, when the kind has one.
    pub fn parent_field(self) -> Option<&'static str> {
        match self {
            Kind::ModelVersion => Some("registeredModelId"),
            Kind::InferenceService => Some("servingEnvironmentId"),
            Kind::ExperimentRun => Some("experimentId"),
            _ => None,
        }
    }

    /// The family of the parent, for kinds whose parent is always of one family.
    pub fn parent_family(self) -> Option<Family> {
        match self {
            Kind::ModelVersion => Some(Family::RegisteredModel),
            Kind::InferenceService => Some(Family::ServingEnvironment),
            Kind::ServeModel => Some(Family::InferenceService),
            Kind::ExperimentRun => Some(Family::Experiment),
            Kind::MetricHistory => Some(Family::ExperimentRun),
            _ => None,
        }
    }

    /// Own fields that are set on create and never change.
    pub fn create_only(self) -> &'static [&'static str] {
        match self {
            Kind::InferenceService => &["registeredModelId"],
            Kind::ServeModel => &["modelVersionId"],
            Kind::ExperimentRun => &["startTimeSinceEpoch"],
            _ => &[],
        }
    }

    /// Own fields required on create (besides name and parent).
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Metric | Kind::MetricHistory => &["value"],
            Kind::InferenceService => &["registeredModelId"],
            Kind::ServeModel => &["modelVersionId"],
            _ => &[],
        }
    }

    /// State given to new entities that do not set one.
    /// Default values of own fields of new entities (`state` and the like).
    pub fn defaults(self) -> &'static [(&'static str, &'static str)] {
        match self.family() {
            Family::Artifact | Family::MetricHistory => &[("state", "UNKNOWN")],
            Family::InferenceService => &[("desiredState", "DEPLOYED")],
            Family::ServeModel => &[("lastKnownState", "UNKNOWN")],
            Family::ServingEnvironment => &[],
            _ => &[("state", "LIVE")],
        }
    }

    /// Is `name` required on create? (Otherwise a unique one is generated.)
    pub fn name_required(self) -> bool {
        matches!(
            self,
            Kind::RegisteredModel
                | Kind::ModelVersion
                | Kind::ServingEnvironment
                | Kind::Experiment
        )
    }
}

/// One stored entity of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub kind: Kind,
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The parent: the model of a version, the version an artifact was created in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    pub create_ms: u64,
    pub update_ms: u64,
    /// Own fields, validated, in wire form.
    #[serde(default)]
    pub fields: Map<String, Value>,
    #[serde(default)]
    pub custom: BTreeMap<String, MetadataValue>,
    /// Other versions an artifact was attached to (upsert with `id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<u64>,
    /// What governance keeps on the entity (not part of the Kubeflow
    /// contract; shown to its clients only as custom properties).
    #[serde(default, skip_serializing_if = "Governance::is_empty")]
    pub gov: Governance,
}

/// Governance state of an entity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Governance {
    /// A model's aliases: alias → the version it points at.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, u64>,
    /// A model's aliases' previous versions, whose labels a crash or a
    /// concurrent move may have left behind: the alias's next write
    /// takes them off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moved_from: BTreeMap<String, u64>,
    /// A version's aliases: it carries each as a label (a custom property
    /// with an empty string value, the UI's convention).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub labels: std::collections::BTreeSet<String>,
    /// A model's approval policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ApprovalPolicy>,
    /// A version's approval decisions since its content last changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Vote>,
    /// A version's approval state as last computed, shown to clients as
    /// the custom property [`APPROVAL_PROPERTY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// The custom property that shows a version's approval state.
pub const APPROVAL_PROPERTY: &str = "approval_state";

impl Governance {
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
            && self.moved_from.is_empty()
            && self.labels.is_empty()
            && self.policy.is_none()
            && self.votes.is_empty()
            && self.approval.is_none()
    }

    /// Put the custom properties governance owns on an entity of `kind`
    /// (`custom`) as they are: its alias labels and, on a version, its
    /// approval state (which no client may set: none before a decision).
    pub fn show(&self, kind: Kind, custom: &mut BTreeMap<String, MetadataValue>) {
        for alias in &self.labels {
            custom.insert(alias.clone(), MetadataValue::String(String::new()));
        }
        if kind == Kind::ModelVersion {
            match &self.approval {
                Some(state) => {
                    custom.insert(
                        APPROVAL_PROPERTY.into(),
                        MetadataValue::String(state.clone()),
                    );
                }
                None => {
                    custom.remove(APPROVAL_PROPERTY);
                }
            }
        }
    }

    /// Is `key` a custom property governance owns on a version?
    pub fn owns(&self, key: &str) -> bool {
        self.labels.contains(key) || key == APPROVAL_PROPERTY
    }
}

/// A model's approval policy: how many distinct approvers a version needs,
/// the filterQuery expressions it must pass, and the aliases that may
/// only point at an approved version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalPolicy {
    pub required_approvals: u32,
    #[serde(default)]
    pub gates: Vec<String>,
    #[serde(default)]
    pub protected_aliases: Vec<String>,
}

/// What an approver decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    Approve,
    Reject,
}

/// One approver's decision on a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub actor: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    pub at_ms: u64,
}

/// Bytes a value takes in the stored JSON (a string without its quotes).
fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    match serde_json::to_string(v) {
        Ok(s) if s.starts_with('"') => s.len().saturating_sub(2),
        Ok(s) => s.len(),
        Err(_) => 0,
    }
}

impl Entity {
    /// The part that takes most of the stored entity, for messages about its
    /// size: `("description", 500000)` or `("customProperties (1000 keys,
    /// largest 'blob' 40000 bytes)", 60000)`.
    pub fn largest_part(&self) -> (String, usize) {
        let mut parts: Vec<(String, usize)> = vec![("name".into(), json_len(&self.name))];
        if let Some(x) = &self.external_id {
            parts.push(("externalId".into(), json_len(x)));
        }
        for (k, v) in &self.fields {
            parts.push((k.clone(), json_len(v)));
        }
        let custom: Vec<(&String, usize)> = self
            .custom
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    MetadataValue::String(s) | MetadataValue::Struct(s) => json_len(s),
                    other => json_len(other),
                };
                (k, k.len() + value)
            })
            .collect();
        if let Some((key, size)) = custom.iter().max_by_key(|(_, n)| *n) {
            let total: usize = custom.iter().map(|(_, n)| n).sum();
            let label = if custom.len() == 1 {
                format!("customProperties.{key}")
            } else {
                format!(
                    "customProperties ({} keys, largest '{key}' {size} bytes)",
                    custom.len()
                )
            };
            parts.push((label, total));
        }
        parts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .unwrap_or_default()
    }

    /// Is this entity a child of `parent` (its own parent, or a version it was attached to)?
    pub fn belongs_to(&self, parent: u64) -> bool {
        self.parent == Some(parent) || self.links.contains(&parent)
    }
}

/// A validated create request, before an id is given.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntity {
    pub kind: Kind,
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub parent: Option<u64>,
    pub fields: Map<String, Value>,
    pub custom: BTreeMap<String, MetadataValue>,
}

/// A validated PATCH of an entity of `kind`: fields to overwrite; `custom`
/// replaces the map when present.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub kind: Kind,
    /// The request named the artifact type itself (so a different stored
    /// type is a change of type, not a miss).
    pub typed: bool,
    pub external_id: Option<String>,
    pub fields: Map<String, Value>,
    pub custom: Option<BTreeMap<String, MetadataValue>>,
}

impl Patch {
    /// A patch that changes nothing yet.
    pub fn empty(kind: Kind) -> Patch {
        Patch {
            kind,
            typed: false,
            external_id: None,
            fields: Map::new(),
            custom: None,
        }
    }
}

/// An upsert of an artifact into a version or a run: update the artifact
/// `id` (or, for metrics and parameters, the one named `name` in that
/// parent), else create it. The body is decoded both ways; the rule picks
/// one, and its decoding error is the answer when it fails.
#[derive(Debug, Clone)]
pub struct ArtifactUpsert {
    pub kind: Kind,
    pub id: Option<u64>,
    pub name: Option<String>,
    /// The body as a new artifact.
    pub new: Result<NewEntity>,
    /// The body as a patch of an existing one (without id, name and times).
    pub patch: Result<Patch>,
}

/// Parse a decimal id as used in paths, bodies and filters.
pub fn parse_id(what: &str, s: &str) -> Result<u64> {
    let ok = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<u64>() {
        Ok(v) if ok && v > 0 => Ok(v),
        _ => bad_request(format!("{what}: '{s}' is not a valid id")),
    }
}

/// A name is 1 to [`MAX_NAME`] characters and at most [`MAX_NAME_BYTES`]
/// bytes, without control characters.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Unprocessable("name must not be empty".into()));
    }
    if name.chars().count() > MAX_NAME {
        return bad_request(format!("name is longer than {MAX_NAME} characters"));
    }
    if name.len() > MAX_NAME_BYTES {
        return bad_request(format!(
            "name is {} bytes in UTF-8, at most {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return bad_request("name must not contain control characters or NUL bytes");
    }
    Ok(())
}

/// Upstream stores the name of an entity with a parent as
/// `<parentId>:<name>` and limits that whole string to [`MAX_NAME`]
/// characters, so a version of model 12 may have a name of 252 characters.
pub fn check_owned_name(name: &str, parent: Option<u64>) -> Result<()> {
    let Some(parent) = parent else {
        return Ok(());
    };
    let prefix = parent.to_string().len() + 1;
    let chars = name.chars().count();
    if prefix.saturating_add(chars) > MAX_NAME {
        return bad_request(format!(
            "name is {chars} characters; stored as '{parent}:<name>' it may have at most {} (the whole at most {MAX_NAME})",
            MAX_NAME.saturating_sub(prefix)
        ));
    }
    Ok(())
}

/// An externalId: not empty, no NUL, at most [`MAX_EXTERNAL_ID_BYTES`].
pub fn check_external_id(v: &str) -> Result<()> {
    check_text("externalId", v)?;
    if v.is_empty() {
        return bad_request("externalId must not be empty");
    }
    if v.len() > MAX_EXTERNAL_ID_BYTES {
        return bad_request(format!(
            "externalId is {} bytes in UTF-8, at most {MAX_EXTERNAL_ID_BYTES}",
            v.len()
        ));
    }
    Ok(())
}

impl Patch {
    /// Does applying the patch change anything but the update time?
    pub fn apply(&self, e: &mut Entity) {
        if let Some(x) = &self.external_id {
            e.external_id = Some(x.clone());
        }
        for (k, v) in &self.fields {
            e.fields.insert(k.clone(), v.clone());
        }
        if let Some(c) = &self.custom {
            e.custom = c.clone();
            // Alias labels and the approval state are governance's, not the caller's.
            e.gov.show(e.kind, &mut e.custom);
        }
    }
}

impl Entity {
    /// Build the stored entity from a create request.
    pub fn create(new: NewEntity, id: u64, name: String, now_ms: u64) -> Entity {
        let mut fields = new.fields;
        for (k, v) in new.kind.defaults() {
            fields.entry(*k).or_insert_with(|| Value::from(*v));
        }
        Entity {
            kind: new.kind,
            id,
            name,
            external_id: new.external_id,
            parent: new.parent,
            create_ms: now_ms,
            update_ms: now_ms,
            fields,
            custom: new.custom,
            links: Vec::new(),
            gov: Governance::default(),
        }
    }

    /// An own text field (`state`, `uri`, `description`, ...).
    pub fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    /// An id this entity refers to (`registeredModelId`, `modelVersionId`, ...).
    pub fn reference(&self, field: &str) -> Option<u64> {
        self.text(field).and_then(|id| parse_id(field, id).ok())
    }

    /// The model an inference service serves.
    pub fn registered_model_id(&self) -> Option<u64> {
        self.reference(fields::REGISTERED_MODEL_ID)
    }

    /// The version an inference service or serve record names.
    pub fn model_version_id(&self) -> Option<u64> {
        self.reference(fields::MODEL_VERSION_ID)
    }

    /// The step of a metric value.
    pub fn step(&self) -> Option<i64> {
        self.fields.get(fields::STEP).and_then(Value::as_i64)
    }
}

fn scalar_of(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::Str(s.clone())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(Scalar::Int(i)),
            None => n.as_f64().map(Scalar::Double),
        },
        _ => None,
    }
}

impl FilterTarget for Entity {
    fn own_field(&self, name: &str) -> Option<Option<Scalar>> {
        // Out of the i64 range (never from a real clock or counter): no value.
        let int = |v: u64| Some(i64::try_from(v).ok().map(Scalar::Int));
        match name {
            "id" => int(self.id),
            "name" => Some(Some(Scalar::Str(self.name.clone()))),
            "externalId" => Some(self.external_id.clone().map(Scalar::Str)),
            "createTimeSinceEpoch" => int(self.create_ms),
            "lastUpdateTimeSinceEpoch" => int(self.update_ms),
            "artifactType" if self.kind.family() == Family::Artifact => {
                Some(self.kind.artifact_type().map(|t| Scalar::Str(t.into())))
            }
            n if Some(n) == self.kind.parent_field() => Some(
                self.parent
                    .and_then(|p| i64::try_from(p).ok())
                    .map(Scalar::Int),
            ),
            n => {
                let field = self.kind.field(n)?;
                let v = self.fields.get(n);
                Some(match (field.ty, v) {
                    (Id | Int64Str, Some(Value::String(s))) => s.parse().ok().map(Scalar::Int),
                    (_, Some(v)) => scalar_of(v),
                    (_, None) => None,
                })
            }
        }
    }

    fn custom_property(&self, name: &str) -> Option<Scalar> {
        self.custom.get(name).and_then(MetadataValue::scalar)
    }
}
