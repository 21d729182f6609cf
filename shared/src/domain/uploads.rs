//! Registration of uploads: objects that land in the artifact bucket become a
//! registered model, a model version and a model artifact, by themselves.
//!
//! ## The convention
//! Under the prefix (`MR_EVENTS_PREFIX`, default `models/`) of the artifact
//! bucket, `<prefix><model>/<version>/<path...>` belongs to version
//! `<version>` of model `<model>`. The first object of a version folder
//! registers the model (if new), the version (if new) and one model artifact
//! named after the model (as the upstream client's `register_model` names
//! it) whose `uri` is the folder. Every later change of the folder updates
//! that artifact: its state (`LIVE` while a file is present, `DELETED` once
//! all are removed, `PENDING` while only a manifest is there) and its
//! storage properties (size, file count, SHA-256, per-file ETag and SHA-256).
//! An optional manifest in the folder (see [`super::manifest`]) adds the
//! format, description, author, metrics and parameters.
//!
//! ## Exactly once in effect
//! Deliveries may repeat, fail half-way and arrive out of order. Two things
//! make any such history end in the state of one clean, in-order delivery:
//!
//! 1. **One state item per object**, `pk = OBJ#<bucket>#<folder>`,
//!    `sk = <key>`, holding the object's last known state (present with size,
//!    ETag and SHA-256, or absent) and the position of the event that set it:
//!    the S3 `sequencer` (hex, left-padded, compared as text, as AWS
//!    documents for one key) or else the event time. An event writes the item
//!    only if it is newer (a conditional write on the item's version), so
//!    duplicates and stale events change nothing.
//! 2. **Registry state derived from the folder, not from the event.** After
//!    recording, the folder's items are read with one consistent Query and
//!    the model, version and artifact are brought to what they describe,
//!    finding entities by their natural names (the Registry's name claims
//!    turn a concurrent second create into 409, then a find) and writing only
//!    what differs. The folder is read again afterwards: if it changed
//!    meanwhile (a concurrent delivery recorded something this one did not
//!    see) the derivation runs again, so the last writer always wrote from a
//!    complete view.
//!
//! A delivery that fails after recording is redelivered by the broker; the
//! record is then a no-op and the derivation completes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::entity::{Entity, Family, Kind, MAX_NAME, NewEntity};
use super::error::{Error, Result};
use super::manifest::{MANIFEST_NAMES, MAX_MANIFEST_BYTES, Manifest};
use super::registry::Registry;
use super::value::MetadataValue;
use crate::store::artifacts::{ArtifactError, ArtifactStore, ObjectInfo, validate_key};
use crate::store::port::{Cond, Cursor, Index, Item, Query, StoreError};

/// Default `MR_EVENTS_PREFIX`.
pub const DEFAULT_PREFIX: &str = "models/";
/// The bucket name events carry for the local artifact store (no
/// `MR_ARTIFACT_BUCKET`): `make run` users can post events for it by hand.
pub const LOCAL_BUCKET: &str = "local";

/// Custom properties of the model artifact that registration manages.
pub mod props {
    /// Total bytes of the version's files (manifest excluded).
    pub const SIZE: &str = "size_bytes";
    /// Number of files present.
    pub const FILE_COUNT: &str = "file_count";
    /// SHA-256 of the single file; with several files, the SHA-256 of their
    /// `sha256sum`-style listing (`<sha256>  <path>\n`, sorted by path).
    pub const SHA256: &str = "sha256";
    /// ETag of the single file (absent with several files).
    pub const ETAG: &str = "etag";
    /// Per file: `{"<path>": {"size", "etag", "sha256"}}` (a struct value),
    /// for folders of at most [`super::MAX_LISTED_FILES`] files.
    pub const FILES: &str = "files";
    /// SHA-256 of the manifest content last applied.
    pub const MANIFEST_SHA256: &str = "manifest_sha256";
    /// Why (part of) the manifest could not be applied.
    pub const MANIFEST_ERROR: &str = "manifest_error";

    /// The storage summary keys, rewritten on every change of the folder.
    pub const SUMMARY: [&str; 5] = [SIZE, FILE_COUNT, SHA256, ETAG, FILES];
}

/// Folders with more files than this get no per-file listing (`files`):
/// it would make the artifact item too large for DynamoDB (400 KB).
pub const MAX_LISTED_FILES: usize = 200;
/// Width the sequencer is left-padded to before comparing.
const SEQUENCER_WIDTH: usize = 40;
/// Conditional-write attempts on one object's state item.
const RECORD_ATTEMPTS: usize = 16;
/// Derivations of one folder before giving up (the folder keeps changing).
const RECONCILE_ROUNDS: usize = 8;
/// Find-or-create attempts while another delivery holds the name.
const ENSURE_ATTEMPTS: u32 = 20;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `ObjectCreated:*`, EventBridge "Object Created".
    Created,
    /// `ObjectRemoved:*`, lifecycle expiration, EventBridge "Object Deleted".
    Removed,
}

/// One object change, normalized from whatever carried it (S3 notification
/// record, EventBridge event, CloudEvent, or the registry itself).
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

/// Where an object sits in the convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub model: String,
    pub version: String,
    /// `<prefix><model>/<version>/`
    pub folder: String,
    /// The object's path inside the folder.
    pub path: String,
}

/// The bucket and prefix whose objects register models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConvention {
    bucket: String,
    prefix: String,
}

impl UploadConvention {
    /// `prefix` is empty or ends with `/`.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        UploadConvention {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where `key` of `bucket` belongs, or why the object is none of ours.
    pub fn locate(&self, bucket: &str, key: &str) -> std::result::Result<Location, String> {
        if bucket != self.bucket {
            return Err(format!(
                "bucket '{bucket}' is not the artifact bucket '{}'",
                self.bucket
            ));
        }
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return Err(format!("key is outside the prefix '{}'", self.prefix));
        };
        let mut parts = rest.splitn(3, '/');
        let (model, version, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(v), Some(p)) if !m.is_empty() && !v.is_empty() && !p.is_empty() => {
                (m, v, p)
            }
            _ => {
                return Err(format!(
                    "key is not {}<model>/<version>/<file>",
                    self.prefix
                ));
            }
        };
        if p_is_folder_marker(path) {
            return Err("key is a folder marker".into());
        }
        check_segment("model name", model)?;
        check_segment("version name", version)?;
        validate_key(key).map_err(|e| e.to_string())?;
        Ok(Location {
            model: model.to_string(),
            version: version.to_string(),
            folder: format!("{}{model}/{version}/", self.prefix),
            path: path.to_string(),
        })
    }

    /// The folder of version `version` of model `model`, for uploads through
    /// the registry: names that cannot be one path segment are refused.
    pub fn folder(&self, model: &str, version: &str) -> Result<String> {
        for (what, name) in [("model name", model), ("version name", version)] {
            if name.contains('/') || name == "." || name == ".." {
                return Err(Error::BadRequest(format!(
                    "{what} '{name}' cannot be a folder of the upload convention \
                     ({}<model>/<version>/): it contains '/' or is '.' or '..'",
                    self.prefix
                )));
            }
        }
        let folder = format!("{}{model}/{version}/", self.prefix);
        match self.locate(&self.bucket, &format!("{folder}x")) {
            Ok(_) => Ok(folder),
            Err(why) => Err(Error::BadRequest(format!(
                "cannot upload model '{model}' version '{version}': {why}"
            ))),
        }
    }
}

fn p_is_folder_marker(path: &str) -> bool {
    path.ends_with('/')
}

fn check_segment(what: &str, s: &str) -> std::result::Result<(), String> {
    if s == "." || s == ".." {
        return Err(format!("{what} '{s}' is not allowed"));
    }
    if s.chars().count() > MAX_NAME {
        return Err(format!("{what} is longer than {MAX_NAME} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// The entities an upload registered, and the artifact's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub registered_model_id: String,
    pub model_version_id: String,
    pub model_artifact_id: String,
    pub artifact_state: String,
}

/// What a storage event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The folder's registration is up to date. `applied` is false when the
    /// event was a duplicate or older than what was already recorded.
    Registered {
        applied: bool,
        registration: Registration,
    },
    /// Not an object of the convention (other bucket or prefix, folder
    /// marker, unusable name): acknowledged and ignored.
    Ignored { reason: String },
}

/// The last known state of one object (the state item's body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ObjectState {
    /// Position of the event that set this state (see [`order_key`]).
    order: String,
    present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

impl ObjectState {
    fn of(order: String, info: Option<&ObjectInfo>) -> Self {
        ObjectState {
            order,
            present: info.is_some(),
            size: info.map(|i| i.size),
            etag: info.and_then(|i| i.etag.clone()),
            sha256: info.and_then(|i| i.sha256.clone()),
        }
    }
}

/// Where an event sits in the history of its key: the sequencer when there
/// is one (left-padded hex: AWS compares sequencers of one key that way),
/// otherwise the time in nanoseconds. Events without a sequencer (and the
/// registry's own observations) sort before every event that has one.
pub fn order_key(sequencer: Option<&str>, time_ns: u128) -> String {
    let sequencer = sequencer
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= SEQUENCER_WIDTH)
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
    match sequencer {
        Some(s) => format!(
            "{:0>width$}:{:024}",
            s.to_ascii_uppercase(),
            0,
            width = SEQUENCER_WIDTH
        ),
        None => format!("{}:{time_ns:024}", "0".repeat(SEQUENCER_WIDTH)),
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// One state item of a folder, as read.
#[derive(Debug, Clone)]
struct Recorded {
    key: String,
    version: u64,
    state: ObjectState,
}

/// One present file of a version folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FileSummary {
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// Turns storage events (and the registry's own observations) into registry
/// state, following the convention.
#[derive(Clone)]
pub struct Uploads {
    registry: Registry,
    store: Arc<dyn ArtifactStore>,
    convention: UploadConvention,
}

impl Uploads {
    pub fn new(
        registry: Registry,
        store: Arc<dyn ArtifactStore>,
        convention: UploadConvention,
    ) -> Self {
        Uploads {
            registry,
            store,
            convention,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn store(&self) -> &Arc<dyn ArtifactStore> {
        &self.store
    }

    pub fn convention(&self) -> &UploadConvention {
        &self.convention
    }

    /// Apply one storage event: record the object's state if the event is
    /// newer than what is known, then bring the folder's registration up to
    /// date. Safe to repeat and to run concurrently.
    pub async fn apply(&self, event: &StorageEvent) -> Result<Outcome> {
        let location = match self.convention.locate(&event.bucket, &event.key) {
            Ok(l) => l,
            Err(reason) => return Ok(Outcome::Ignored { reason }),
        };
        let time_ns = u128::from(event.time_ms.unwrap_or(0)) * 1_000_000;
        let order = order_key(event.sequencer.as_deref(), time_ns);
        let applied = self
            .record(&location, &event.key, order, event.change, None)
            .await?;
        let registration = self.reconcile(&location).await?;
        Ok(Outcome::Registered {
            applied,
            registration,
        })
    }

    /// Register what the store holds under `keys` of one version folder now
    /// (each key's info, or `None` for a fresh `head`): the upload
    /// extension's in-process path, instead of (or besides) notifications.
    /// These observations sort before any event that carries a sequencer,
    /// so they never override one. Keys outside the convention are ignored.
    pub async fn observe(&self, keys: Vec<(String, Option<ObjectInfo>)>) -> Result<Outcome> {
        let mut folder = None;
        let mut applied = false;
        for (key, info) in keys {
            let location = match self.convention.locate(&self.convention.bucket, &key) {
                Ok(l) => l,
                Err(reason) => return Ok(Outcome::Ignored { reason }),
            };
            let order = order_key(None, now_ns());
            let known = info.map(Some);
            applied |= self
                .record(&location, &key, order, Change::Created, known)
                .await?;
            folder = Some(location);
        }
        let Some(location) = folder else {
            return Ok(Outcome::Ignored {
                reason: "no objects".into(),
            });
        };
        let registration = self.reconcile(&location).await?;
        Ok(Outcome::Registered {
            applied,
            registration,
        })
    }

    /// The model artifact uploads to `version` (of `model`) will describe:
    /// found by name, or created `PENDING` with the folder's URI until the
    /// first file is registered.
    pub async fn prepare(&self, model: &Entity, version: &Entity) -> Result<Entity> {
        let folder = self.convention.folder(&model.name, &version.name)?;
        let uri = self.store.uri(folder.trim_end_matches('/'));
        let fresh = || {
            let mut new = NewEntity {
                kind: Kind::ModelArtifact,
                name: Some(model.name.clone()),
                external_id: None,
                parent: Some(version.id),
                fields: Default::default(),
                custom: BTreeMap::new(),
            };
            new.fields.insert("uri".into(), Value::from(uri.as_str()));
            new.fields.insert("state".into(), Value::from("PENDING"));
            new
        };
        self.find_or_create(Kind::ModelArtifact, &model.name, Some(version.id), fresh)
            .await
    }

    fn partition(&self, location: &Location) -> String {
        format!("OBJ#{}#{}", self.convention.bucket, location.folder)
    }

    /// Write the object's state item if `order` is newer than the recorded
    /// one; returns whether it wrote. `known`: what the store holds, when the
    /// caller already knows (else a created object is looked up).
    async fn record(
        &self,
        location: &Location,
        key: &str,
        order: String,
        change: Change,
        mut known: Option<Option<ObjectInfo>>,
    ) -> Result<bool> {
        let pk = self.partition(location);
        let table = self.registry.table();
        for _ in 0..RECORD_ATTEMPTS {
            let current = table.get(&pk, key).await?;
            let current = match current {
                Some(item) => Some((decode_state(&item)?, item.version)),
                None => None,
            };
            if let Some((state, _)) = &current
                && state.order >= order
            {
                return Ok(false);
            }
            let state = match change {
                Change::Removed => ObjectState::of(order.clone(), None),
                Change::Created => {
                    let info = match &known {
                        Some(info) => info.clone(),
                        None => {
                            let info = self
                                .store
                                .head_with_sha256(key)
                                .await
                                .map_err(storage_error)?;
                            known = Some(info.clone());
                            info
                        }
                    };
                    ObjectState::of(order.clone(), info.as_ref())
                }
            };
            let body = serde_json::to_string(&state).map_err(|e| Error::Internal(e.to_string()))?;
            let (version, cond) = match &current {
                Some((_, v)) => (v + 1, Cond::Version(*v)),
                None => (1, Cond::Absent),
            };
            match table
                .put(Item::plain(pk.as_str(), key, version, body), cond)
                .await
            {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable(format!(
            "object {key} is being recorded concurrently, retry"
        )))
    }

    /// Every state item of a folder (one consistent Query, paged).
    async fn read_folder(&self, location: &Location) -> Result<Vec<Recorded>> {
        let pk = self.partition(location);
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .registry
                .table()
                .query(&Query {
                    index: Index::Base,
                    partition: pk.clone(),
                    prefix: location.folder.clone(),
                    after: after.clone(),
                    descending: false,
                    limit: 1000,
                })
                .await?;
            for item in &page.items {
                after = Some(Cursor {
                    index_key: item.sk.clone(),
                    pk: item.pk.clone(),
                    sk: item.sk.clone(),
                });
                found.push(Recorded {
                    key: item.sk.clone(),
                    version: item.version,
                    state: decode_state(item)?,
                });
            }
            if page.exhausted || page.items.is_empty() {
                return Ok(found);
            }
        }
    }

    /// Bring the folder's registration to what its items describe, until a
    /// derivation ran on a view of the folder that was still current after it.
    async fn reconcile(&self, location: &Location) -> Result<Registration> {
        let mut view = self.read_folder(location).await?;
        for _ in 0..RECONCILE_ROUNDS {
            let registration = self.derive(location, &view).await?;
            let again = self.read_folder(location).await?;
            if fingerprint(&again) == fingerprint(&view) {
                return Ok(registration);
            }
            view = again;
        }
        Err(Error::Unavailable(format!(
            "folder {} keeps changing, retry",
            location.folder
        )))
    }

    /// One derivation of the registration from a view of the folder.
    async fn derive(&self, location: &Location, view: &[Recorded]) -> Result<Registration> {
        let is_manifest = |key: &str| {
            key.strip_prefix(location.folder.as_str())
                .is_some_and(|p| MANIFEST_NAMES.contains(&p))
        };
        let mut files: BTreeMap<String, FileSummary> = BTreeMap::new();
        let mut any_file = false;
        for r in view.iter().filter(|r| !is_manifest(&r.key)) {
            any_file = true;
            if r.state.present {
                let path = r.key[location.folder.len()..].to_string();
                files.insert(
                    path,
                    FileSummary {
                        size: r.state.size.unwrap_or(0),
                        etag: r.state.etag.clone(),
                        sha256: r.state.sha256.clone(),
                    },
                );
            }
        }
        let manifest = MANIFEST_NAMES.iter().find_map(|name| {
            let key = format!("{}{name}", location.folder);
            view.iter().find(|r| r.key == key && r.state.present)
        });
        let state = if !files.is_empty() {
            "LIVE"
        } else if any_file {
            "DELETED"
        } else {
            "PENDING"
        };

        let model = self
            .ensure(Kind::RegisteredModel, &location.model, None)
            .await?;
        let version = self
            .ensure(Kind::ModelVersion, &location.version, Some(model.id))
            .await?;
        let artifact = self
            .ensure_artifact(version.id, location, state, &files)
            .await?;
        let artifact = match manifest {
            Some(m) => {
                self.apply_manifest(&m.key, &m.state, &model, &version, artifact)
                    .await?
            }
            None => artifact,
        };
        Ok(Registration {
            registered_model_id: model.id.to_string(),
            model_version_id: version.id.to_string(),
            model_artifact_id: artifact.id.to_string(),
            artifact_state: artifact
                .fields
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or(state)
                .to_string(),
        })
    }

    /// Find the model (or version) by name, creating it when missing.
    async fn ensure(&self, kind: Kind, name: &str, parent: Option<u64>) -> Result<Entity> {
        let fresh = || NewEntity {
            kind,
            name: Some(name.to_string()),
            external_id: None,
            parent,
            fields: Default::default(),
            custom: BTreeMap::new(),
        };
        self.find_or_create(kind, name, parent, fresh).await
    }

    async fn find_or_create(
        &self,
        kind: Kind,
        name: &str,
        parent: Option<u64>,
        fresh: impl Fn() -> NewEntity,
    ) -> Result<Entity> {
        for attempt in 0..ENSURE_ATTEMPTS {
            match self
                .registry
                .find(kind.family(), Some(kind), Some(name), None, parent)
                .await
            {
                Ok(e) => return Ok(e),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            match self.registry.create(fresh()).await {
                Ok(e) => return Ok(e),
                // Another delivery is creating it: find it in a moment.
                Err(Error::Conflict(_)) => {
                    let wait = 10 * u64::from(attempt + 1);
                    tokio::time::sleep(Duration::from_millis(wait.min(200))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!(
            "{} '{name}' is still being created elsewhere, retry",
            kind.family().label()
        )))
    }

    /// The version's model artifact (named after the model), with the
    /// folder's URI, state and storage summary.
    async fn ensure_artifact(
        &self,
        version_id: u64,
        location: &Location,
        state: &str,
        files: &BTreeMap<String, FileSummary>,
    ) -> Result<Entity> {
        let folder_uri = self.store.uri(location.folder.trim_end_matches('/'));
        let summary = summary_properties(files)?;
        let fresh = || {
            let mut new = NewEntity {
                kind: Kind::ModelArtifact,
                name: Some(location.model.clone()),
                external_id: None,
                parent: Some(version_id),
                fields: Default::default(),
                custom: summary.clone(),
            };
            new.fields
                .insert("uri".into(), Value::from(folder_uri.as_str()));
            new.fields.insert("state".into(), Value::from(state));
            new
        };
        let artifact = self
            .find_or_create(
                Kind::ModelArtifact,
                &location.model,
                Some(version_id),
                fresh,
            )
            .await?;
        self.registry
            .modify(Family::Artifact, artifact.id, |e| {
                let before = e.clone();
                let keeps_uri = e
                    .fields
                    .get("uri")
                    .and_then(Value::as_str)
                    .is_some_and(|u| same_location(u, &folder_uri));
                if !keeps_uri {
                    e.fields
                        .insert("uri".into(), Value::from(folder_uri.as_str()));
                }
                e.fields.insert("state".into(), Value::from(state));
                for key in props::SUMMARY {
                    e.custom.remove(key);
                }
                e.custom.extend(summary.clone());
                Ok(*e != before)
            })
            .await
    }

    /// Apply the manifest unless its content was already applied (the
    /// artifact remembers the SHA-256 of what it applied): the model's and
    /// version's fields and custom properties, the artifact's format, and
    /// metric/parameter artifacts. Problems are recorded on the artifact
    /// (`manifest_error`) rather than failing the delivery: retrying would
    /// not fix a manifest.
    async fn apply_manifest(
        &self,
        key: &str,
        recorded: &ObjectState,
        model: &Entity,
        version: &Entity,
        artifact: Entity,
    ) -> Result<Entity> {
        let applied = match artifact.custom.get(props::MANIFEST_SHA256) {
            Some(MetadataValue::String(s)) => Some(s.as_str()),
            _ => None,
        };
        if applied.is_some() && applied == recorded.sha256.as_deref() {
            return Ok(artifact);
        }
        let mut problems = Vec::new();
        let content = if recorded.size.unwrap_or(0) > MAX_MANIFEST_BYTES {
            problems.push(format!(
                "{key}: larger than {MAX_MANIFEST_BYTES} bytes, not read"
            ));
            None
        } else {
            match self.store.get(key).await {
                Ok(bytes) => Some(bytes),
                // Removed meanwhile: its removal event follows.
                Err(ArtifactError::NotFound(_)) => return Ok(artifact),
                Err(e) => return Err(storage_error(e)),
            }
        };
        let sha256 = match &content {
            Some(bytes) => hex::encode(Sha256::digest(bytes)),
            None => recorded.sha256.clone().unwrap_or_default(),
        };
        if applied == Some(sha256.as_str()) {
            return Ok(artifact);
        }
        let manifest = match content.as_deref().map(|b| Manifest::parse(key, b)) {
            Some(Ok(m)) => Some(m),
            Some(Err(why)) => {
                problems.push(why);
                None
            }
            None => None,
        };
        if let Some(m) = &manifest {
            problems.extend(self.apply_to_entities(m, model, version).await?);
        }
        if !problems.is_empty() {
            tracing::warn!(manifest = key, problems = ?problems, "manifest not fully applied");
        }
        self.registry
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
        &self,
        m: &Manifest,
        model: &Entity,
        version: &Entity,
    ) -> Result<Vec<String>> {
        if let Some(patch) = &m.model {
            self.registry
                .modify(Family::RegisteredModel, model.id, |e| {
                    let before = e.clone();
                    patch.apply(e);
                    Ok(*e != before)
                })
                .await?;
        }
        let custom = m.version_properties();
        self.registry
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
            match self.upsert_measure(version.id, kind, &body).await {
                Ok(()) => {}
                Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => return Err(e),
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
    async fn upsert_measure(&self, version_id: u64, kind: Kind, body: &Value) -> Result<()> {
        let name = body["name"].as_str().unwrap_or_default();
        for attempt in 0..ENSURE_ATTEMPTS {
            match self
                .registry
                .find(
                    Family::Artifact,
                    Some(kind),
                    Some(name),
                    None,
                    Some(version_id),
                )
                .await
            {
                Ok(existing) => {
                    let same = ["value", "parameterType"].iter().all(|f| {
                        body.get(*f)
                            .is_none_or(|v| existing.fields.get(*f) == Some(v))
                    });
                    if same {
                        return Ok(());
                    }
                }
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            match self
                .registry
                .upsert_version_artifact(version_id, body)
                .await
            {
                Ok(_) => return Ok(()),
                Err(Error::Conflict(_)) => {
                    let wait = 10 * u64::from(attempt + 1);
                    tokio::time::sleep(Duration::from_millis(wait.min(200))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!(
            "{name} is being written concurrently, retry"
        )))
    }
}

fn decode_state(item: &Item) -> Result<ObjectState> {
    serde_json::from_str(&item.body)
        .map_err(|e| Error::Internal(format!("corrupt object state {}/{}: {e}", item.pk, item.sk)))
}

/// What identifies a view of a folder: every item and its version.
fn fingerprint(view: &[Recorded]) -> Vec<(&str, u64)> {
    view.iter().map(|r| (r.key.as_str(), r.version)).collect()
}

/// Does `uri` (perhaps with a query, as the upstream client writes
/// `s3://b/p?endpoint=...`) name the same place as `folder_uri`?
fn same_location(uri: &str, folder_uri: &str) -> bool {
    let bare = uri.split(['?', '#']).next().unwrap_or(uri);
    bare.trim_end_matches('/') == folder_uri.trim_end_matches('/')
}

/// The storage summary custom properties of the present files.
fn summary_properties(
    files: &BTreeMap<String, FileSummary>,
) -> Result<BTreeMap<String, MetadataValue>> {
    let mut out = BTreeMap::new();
    let total: u64 = files.values().map(|f| f.size).sum();
    out.insert(
        props::SIZE.into(),
        MetadataValue::Int(i64::try_from(total).unwrap_or(i64::MAX)),
    );
    out.insert(
        props::FILE_COUNT.into(),
        MetadataValue::Int(i64::try_from(files.len()).unwrap_or(i64::MAX)),
    );
    if files.is_empty() {
        return Ok(out);
    }
    let digest = match files.iter().next() {
        Some((_, only)) if files.len() == 1 => only.sha256.clone(),
        _ if files.values().all(|f| f.sha256.is_some()) => {
            let listing: String = files
                .iter()
                .map(|(path, f)| format!("{}  {path}\n", f.sha256.as_deref().unwrap_or_default()))
                .collect();
            Some(hex::encode(Sha256::digest(listing.as_bytes())))
        }
        _ => None,
    };
    if let Some(d) = digest {
        out.insert(props::SHA256.into(), MetadataValue::String(d));
    }
    if let (1, Some(etag)) = (
        files.len(),
        files.values().next().and_then(|f| f.etag.clone()),
    ) {
        out.insert(props::ETAG.into(), MetadataValue::String(etag));
    }
    if files.len() > MAX_LISTED_FILES {
        return Ok(out);
    }
    let listing = serde_json::to_vec(&json!(files)).map_err(|e| Error::Internal(e.to_string()))?;
    out.insert(
        props::FILES.into(),
        MetadataValue::Struct(base64::engine::general_purpose::STANDARD.encode(listing)),
    );
    Ok(out)
}

/// Artifact store failures as registry errors: the store being away is
/// retryable; anything else is not this delivery's fault either, but also
/// needs an operator (credentials, bucket), so it is retried too.
pub fn storage_error(e: ArtifactError) -> Error {
    match e {
        ArtifactError::Invalid(m) => Error::BadRequest(m),
        ArtifactError::NotFound(m) => Error::NotFound(m),
        ArtifactError::Unavailable(m) => Error::Unavailable(m),
        ArtifactError::Denied(m) | ArtifactError::Unsupported(m) | ArtifactError::Internal(m) => {
            Error::Internal(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convention() -> UploadConvention {
        UploadConvention::new("ml", "models/")
    }

    #[test]
    fn locates_objects_of_the_convention() {
        let l = convention()
            .locate("ml", "models/mnist/1.0.0/onnx/model.onnx")
            .unwrap();
        assert_eq!(l.model, "mnist");
        assert_eq!(l.version, "1.0.0");
        assert_eq!(l.folder, "models/mnist/1.0.0/");
        assert_eq!(l.path, "onnx/model.onnx");
        let root = UploadConvention::new("ml", "");
        assert_eq!(root.locate("ml", "m/v/f").unwrap().folder, "m/v/");
    }

    #[test]
    fn ignores_what_is_not_ours() {
        let c = convention();
        for (bucket, key) in [
            ("other", "models/m/v/f"),
            ("ml", "datasets/m/v/f"),
            ("ml", "models/m/v"),
            ("ml", "models/m/v/"),
            ("ml", "models/m//f"),
            ("ml", "models/m/v/dir/"),
            ("ml", "models/../v/f"),
            ("ml", "models/m/v/a//b"),
            ("ml", "models/m\u{1}/v/f"),
        ] {
            assert!(c.locate(bucket, key).is_err(), "{bucket}/{key}");
        }
        let long = "m".repeat(MAX_NAME + 1);
        assert!(c.locate("ml", &format!("models/{long}/v/f")).is_err());
    }

    #[test]
    fn folders_for_uploads_refuse_names_that_are_not_one_segment() {
        let c = convention();
        assert_eq!(c.folder("mnist", "1").unwrap(), "models/mnist/1/");
        assert!(c.folder("team/mnist", "1").is_err());
        assert!(c.folder("mnist", "..").is_err());
    }

    #[test]
    fn sequencers_order_by_padded_hex_and_beat_times() {
        let a = order_key(Some("0055AED6DCD90281E5"), 0);
        let b = order_key(Some("55AED6DCD90281E6"), 0);
        assert!(a < b, "padding makes lengths comparable");
        assert_eq!(
            order_key(Some("ff"), 5),
            order_key(Some("FF"), 9),
            "case and time do not matter"
        );
        let observed = order_key(None, u128::from(u64::MAX));
        assert!(observed < order_key(Some("1"), 0));
        assert!(order_key(None, 1) < order_key(None, 2));
        assert_eq!(order_key(Some("not hex"), 7), order_key(None, 7));
    }

    #[test]
    fn summary_of_one_file_and_of_several() {
        let one = BTreeMap::from([(
            "model.onnx".to_string(),
            FileSummary {
                size: 3,
                etag: Some("e1".into()),
                sha256: Some("aa".into()),
            },
        )]);
        let p = summary_properties(&one).unwrap();
        assert_eq!(p[props::SHA256], MetadataValue::String("aa".into()));
        assert_eq!(p[props::ETAG], MetadataValue::String("e1".into()));
        assert_eq!(p[props::SIZE], MetadataValue::Int(3));
        let mut two = one.clone();
        two.insert(
            "config.json".into(),
            FileSummary {
                size: 4,
                etag: None,
                sha256: Some("bb".into()),
            },
        );
        let p = summary_properties(&two).unwrap();
        let expected = hex::encode(Sha256::digest(b"bb  config.json\naa  model.onnx\n"));
        assert_eq!(p[props::SHA256], MetadataValue::String(expected));
        assert!(!p.contains_key(props::ETAG));
        assert_eq!(p[props::FILE_COUNT], MetadataValue::Int(2));
        let empty = summary_properties(&BTreeMap::new()).unwrap();
        assert_eq!(empty.len(), 2);
    }

    /// What a folder registered, without ids and times.
    async fn registered(uploads: &Uploads, model: &str) -> Value {
        use crate::domain::paging::{ListParams, OrderBy};
        use crate::domain::registry::{Narrow, Scope};
        let registry = uploads.registry();
        let all = ListParams {
            page_size: 0,
            order_by: OrderBy::Name,
            descending: false,
            after: None,
            filter: None,
        };
        let m = registry
            .find(Family::RegisteredModel, None, Some(model), None, None)
            .await
            .unwrap();
        let strip = |e: &Entity| {
            let mut w = e.to_wire();
            for k in [
                "id",
                "createTimeSinceEpoch",
                "lastUpdateTimeSinceEpoch",
                "registeredModelId",
            ] {
                w.as_object_mut().unwrap().remove(k);
            }
            w
        };
        let versions = registry
            .list(
                Family::ModelVersion,
                Scope::Parent(m.id),
                &Narrow::default(),
                &all,
            )
            .await
            .unwrap();
        let mut out = vec![strip(&m)];
        for v in &versions.items {
            out.push(strip(v));
            let artifacts = registry
                .list(
                    Family::Artifact,
                    Scope::Parent(v.id),
                    &Narrow::default(),
                    &all,
                )
                .await
                .unwrap();
            let mut arts: Vec<Value> = artifacts.items.iter().map(strip).collect();
            arts.sort_by_key(|a| a["name"].to_string());
            out.extend(arts);
        }
        Value::Array(out)
    }

    fn uploads_in(dir: &std::path::Path, store: &Arc<dyn ArtifactStore>) -> Uploads {
        let table = crate::store::embedded::EmbeddedTable::open(dir).unwrap();
        let registry = Registry::new(Arc::new(table), Default::default());
        Uploads::new(
            registry,
            store.clone(),
            UploadConvention::new(LOCAL_BUCKET, "models/"),
        )
    }

    fn event(key: &str, change: Change, seq: u64) -> StorageEvent {
        StorageEvent {
            bucket: LOCAL_BUCKET.into(),
            key: key.into(),
            change,
            size: None,
            etag: None,
            sequencer: Some(format!("{seq:016X}")),
            time_ms: None,
        }
    }

    #[tokio::test]
    async fn any_delivery_order_with_duplicates_ends_like_one_in_order_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let files =
            crate::store::artifacts::LocalArtifactStore::open(dir.path().join("files")).unwrap();
        let store: Arc<dyn ArtifactStore> = Arc::new(files);
        let manifest = b"metrics: {acc: 0.5}\nparameters: {lr: 0.1}\nmodelFormatName: onnx\n";
        for (key, body) in [
            ("models/m/1/a.bin", b"aaa".as_slice()),
            ("models/m/1/b.bin", b"bbbb"),
            ("models/m/1/model-manifest.yaml", manifest),
        ] {
            store.put(key, body.to_vec(), None).await.unwrap();
        }
        store
            .put("models/m/2/gone.bin", b"x".to_vec(), None)
            .await
            .unwrap();
        store.delete("models/m/2/gone.bin").await.unwrap();
        let history = [
            event("models/m/1/a.bin", Change::Created, 1),
            event("models/m/1/b.bin", Change::Created, 2),
            event("models/m/1/model-manifest.yaml", Change::Created, 3),
            event("models/m/2/gone.bin", Change::Created, 4),
            event("models/m/2/gone.bin", Change::Removed, 5),
        ];
        let in_order = uploads_in(&dir.path().join("a"), &store);
        for e in &history {
            in_order.apply(e).await.unwrap();
        }
        let expected = registered(&in_order, "m").await;
        assert_eq!(
            expected.as_array().unwrap().len(),
            1 + 1 + 3 + 1 + 1,
            "{expected:#}"
        );

        let shuffled = uploads_in(&dir.path().join("b"), &store);
        for i in [4, 2, 4, 0, 3, 1, 1, 0, 2, 3] {
            shuffled.apply(&history[i]).await.unwrap();
        }
        assert_eq!(registered(&shuffled, "m").await, expected);
        let stale = shuffled.apply(&history[3]).await.unwrap();
        assert!(
            matches!(stale, Outcome::Registered { applied: false, .. }),
            "{stale:?}"
        );
    }

    #[test]
    fn client_uris_with_a_query_name_the_folder() {
        assert!(same_location(
            "s3://b/models/m/1?endpoint=http://x&defaultRegion=us-east-1",
            "s3://b/models/m/1"
        ));
        assert!(same_location("s3://b/models/m/1/", "s3://b/models/m/1"));
        assert!(!same_location("s3://b/models/m/12", "s3://b/models/m/1"));
    }
}
