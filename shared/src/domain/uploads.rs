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
//! Deliveries may repeat, fail half-way and arrive out of order, and anyone
//! who can reach the endpoint can post an event. Two things make any such
//! history end in the state of one clean, in-order delivery:
//!
//! 1. **The bucket is the truth; an event is a hint.** One state item per
//!    object, `pk = OBJ#<bucket>#<folder>`, `sk = <key>`, holds what the
//!    bucket was last seen to hold there (present with size, ETag and
//!    SHA-256, or absent). An event only says which object to look at: its
//!    delivery reads the item, HEADs the object, and writes the item (a
//!    conditional write on the item's version) only when the two disagree,
//!    with what the bucket holds, whatever the event claimed. It then looks
//!    again, until the item and the bucket agree (bounded rounds), so an
//!    observation that went stale before it was written is corrected by its
//!    own writer. Nothing from an event body (sequencer, time, size, ETag)
//!    is recorded as state: a forged removal of a present object or a forged
//!    creation of an absent one changes nothing, and an object that is
//!    absent and was never recorded registers nothing. Event positions (the
//!    S3 `sequencer`, or the event time) decide nothing: the item keeps the
//!    position of the event that recorded it when the bucket bore that event
//!    out, as a label; duplicates and stale deliveries find the item already
//!    agreeing with the bucket and write nothing (`applied: false`).
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
//! A delivery that fails after recording is redelivered by the broker; it
//! looks at the bucket again and the derivation completes.

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
use crate::store::port::{Cond, Item, StoreError, read_partition};

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
/// Longest S3 `sequencer` accepted, in hex digits (S3's have 16 to 18); a
/// longer one makes its event malformed.
pub const MAX_SEQUENCER_LEN: usize = 40;
/// Rounds of look-at-the-bucket-and-record on one object before giving up
/// (the object or its item keeps changing under this delivery: retry).
const RECORD_ROUNDS: usize = 16;
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

/// What the bucket was last seen to hold at one key (the state item's body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ObjectState {
    /// Who recorded it (see [`order_key`]): the position of the event whose
    /// delivery wrote it, when the bucket bore that event out, else the time
    /// of the observation. A label: it decides nothing.
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

    /// Does this state describe what the bucket holds (`info`): the same
    /// object (size, ETag, SHA-256), or both absent? Positions do not count.
    fn describes(&self, info: Option<&ObjectInfo>) -> bool {
        match info {
            None => !self.present,
            Some(i) => {
                self.present
                    && self.size == Some(i.size)
                    && self.etag == i.etag
                    && self.sha256 == i.sha256
            }
        }
    }
}

impl StorageEvent {
    /// Does what the bucket holds (`info`) bear this event out: removed and
    /// absent, or created and present with the size and ETag the event
    /// gives (when it gives them)? An event that is not borne out is stale
    /// or forged; either way the bucket's state is what gets recorded.
    fn borne_out_by(&self, info: Option<&ObjectInfo>) -> bool {
        match (self.change, info) {
            (Change::Removed, None) => true,
            (Change::Created, Some(i)) => {
                self.size.is_none_or(|s| s == i.size)
                    && self
                        .etag
                        .as_deref()
                        .is_none_or(|e| i.etag.as_deref() == Some(e))
            }
            _ => false,
        }
    }
}

/// Who asks for an object's state item to be brought to the bucket.
#[derive(Debug, Clone, Copy)]
enum Asker<'a> {
    /// A storage event (a hint: which object to look at).
    Event(&'a StorageEvent),
    /// The registry itself (the upload extension), with the object it just
    /// saw in the bucket, or `None` to look.
    Registry(Option<&'a ObjectInfo>),
}

/// What bringing one object's state item to the bucket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemChange {
    /// The item now says what the bucket holds, and this delivery wrote it.
    Written,
    /// The item already said what the bucket holds (a duplicate, a stale
    /// or a forged event): nothing written.
    Unchanged,
    /// The object is absent and was never recorded: nothing to register.
    Untracked,
}

/// Where an event sits in the history of its key: the sequencer when there
/// is one (left-padded hex: AWS compares sequencers of one key that way),
/// otherwise the time in milliseconds. Events without a sequencer (and the
/// registry's own observations) sort before every event that has one. Only
/// a label on the state item now (the bucket decides the state): any input
/// gives a string of fixed width, without arithmetic.
pub fn order_key(sequencer: Option<&str>, time_ms: u64) -> String {
    let sequencer = sequencer
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_SEQUENCER_LEN)
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
    match sequencer {
        Some(s) => format!(
            "{:0>width$}:{:020}",
            s.to_ascii_uppercase(),
            0,
            width = MAX_SEQUENCER_LEN
        ),
        None => format!("{}:{time_ms:020}", "0".repeat(MAX_SEQUENCER_LEN)),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
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

    /// Apply one storage event: bring the object's state item to what the
    /// bucket holds (the event only says which object to look at), then the
    /// folder's registration to what its items describe. Safe to repeat, to
    /// run concurrently, and to receive from anyone: an event the bucket
    /// does not bear out changes nothing.
    pub async fn apply(&self, event: &StorageEvent) -> Result<Outcome> {
        let location = match self.convention.locate(&event.bucket, &event.key) {
            Ok(l) => l,
            Err(reason) => return Ok(Outcome::Ignored { reason }),
        };
        let change = self
            .record(&location, &event.key, Asker::Event(event))
            .await?;
        self.settle(&location, change == ItemChange::Written, || {
            format!(
                "{} is not in the bucket and was never registered",
                event.key
            )
        })
        .await
    }

    /// Register what the store holds under `keys` of one version folder now
    /// (each key's info when the caller just looked, or `None` to look): the
    /// upload extension's in-process path, instead of (or besides)
    /// notifications. Keys outside the convention are ignored.
    pub async fn observe(&self, keys: Vec<(String, Option<ObjectInfo>)>) -> Result<Outcome> {
        let mut folder = None;
        let mut applied = false;
        for (key, info) in &keys {
            let location = match self.convention.locate(&self.convention.bucket, key) {
                Ok(l) => l,
                Err(reason) => return Ok(Outcome::Ignored { reason }),
            };
            let change = self
                .record(&location, key, Asker::Registry(info.as_ref()))
                .await?;
            applied |= change == ItemChange::Written;
            folder = Some(location);
        }
        let Some(location) = folder else {
            return Ok(Outcome::Ignored {
                reason: "no objects".into(),
            });
        };
        self.settle(&location, applied, || {
            "none of the objects is in the bucket".into()
        })
        .await
    }

    /// The folder's registration after recording, or `Ignored` (with
    /// `why_not`) when nothing of the folder was ever in the bucket.
    async fn settle(
        &self,
        location: &Location,
        applied: bool,
        why_not: impl FnOnce() -> String,
    ) -> Result<Outcome> {
        Ok(match self.reconcile(location).await? {
            Some(registration) => Outcome::Registered {
                applied,
                registration,
            },
            None => Outcome::Ignored { reason: why_not() },
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

    /// Bring the object's state item to what the bucket holds at `key`:
    /// read the item, look at the bucket, write what the bucket holds if the
    /// item says otherwise (a conditional write on the item's version), and
    /// repeat until a look taken after the item was read agrees with it. So
    /// the last writer of an item always saw the bucket agree after its
    /// write: an observation that went stale before it was written (a
    /// concurrent delivery saw a later change and wrote first) is corrected
    /// by the delivery that wrote it. What the asker claims is never
    /// recorded; an event's position is kept as a label when the bucket
    /// bears the event out.
    async fn record(&self, location: &Location, key: &str, asker: Asker<'_>) -> Result<ItemChange> {
        let pk = self.partition(location);
        let table = self.registry.table();
        // What the registry itself just saw stands for the first look.
        let mut seen_by_caller = match asker {
            Asker::Registry(Some(info)) => Some(Some(info.clone())),
            Asker::Registry(None) | Asker::Event(_) => None,
        };
        let mut wrote = false;
        for round in 0..RECORD_ROUNDS {
            let current = match table.get(&pk, key).await? {
                Some(item) => Some((decode_state(&item)?, item.version)),
                None => None,
            };
            let recorded = current.as_ref().map(|(state, _)| state);
            let seen = match seen_by_caller.take() {
                Some(info) => info,
                None => self.look(key, recorded).await?,
            };
            let borne_out = match asker {
                Asker::Event(event) => event.borne_out_by(seen.as_ref()),
                Asker::Registry(_) => true,
            };
            if !borne_out && round == 0 {
                tracing::info!(
                    key,
                    present = seen.is_some(),
                    "storage event not borne out by the bucket (stale or forged): what the bucket holds counts"
                );
            }
            match recorded {
                Some(state) if state.describes(seen.as_ref()) => {
                    return Ok(if wrote {
                        ItemChange::Written
                    } else {
                        ItemChange::Unchanged
                    });
                }
                // Never seen, and not there: a stale or forged event of a
                // key that registers nothing.
                None if seen.is_none() => return Ok(ItemChange::Untracked),
                _ => {}
            }
            let order = match asker {
                Asker::Event(event) if borne_out => {
                    order_key(event.sequencer.as_deref(), event.time_ms.unwrap_or(0))
                }
                Asker::Event(_) | Asker::Registry(_) => order_key(None, now_ms()),
            };
            let state = ObjectState::of(order, seen.as_ref());
            let body = serde_json::to_string(&state).map_err(|e| Error::Internal(e.to_string()))?;
            let (version, cond) = match &current {
                Some((_, v)) => (v.saturating_add(1), Cond::Version(*v)),
                None => (1, Cond::Absent),
            };
            match table
                .put(Item::plain(pk.as_str(), key, version, body), cond)
                .await
            {
                // Look again: the bucket may have changed since this look.
                Ok(()) => wrote = true,
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable(format!(
            "object {key} keeps changing while it is being recorded, retry"
        )))
    }

    /// What the bucket holds at `key` now, with its SHA-256: from the object
    /// (metadata or checksum), from the item when the bucket still holds the
    /// object it describes (same ETag and size), or else by reading the
    /// object once. `None` when the object is absent.
    async fn look(&self, key: &str, recorded: Option<&ObjectState>) -> Result<Option<ObjectInfo>> {
        let Some(mut info) = self.store.head(key).await.map_err(storage_error)? else {
            return Ok(None);
        };
        if info.sha256.is_none()
            && let Some(r) = recorded
            && r.present
            && info.etag.is_some()
            && r.etag == info.etag
            && r.size == Some(info.size)
        {
            info.sha256.clone_from(&r.sha256);
        }
        if info.sha256.is_some() {
            return Ok(Some(info));
        }
        self.store
            .head_with_sha256(key)
            .await
            .map_err(storage_error)
    }

    /// Every state item of a folder (one consistent Query, paged).
    async fn read_folder(&self, location: &Location) -> Result<Vec<Recorded>> {
        let pk = self.partition(location);
        read_partition(self.registry.table().as_ref(), &pk, &location.folder)
            .await?
            .iter()
            .map(|item| {
                Ok(Recorded {
                    key: item.sk.clone(),
                    version: item.version,
                    state: decode_state(item)?,
                })
            })
            .collect()
    }

    /// Bring the folder's registration to what its items describe, until a
    /// derivation ran on a view of the folder that was still current after it.
    /// `None` when the folder has no items (nothing of it was ever seen in
    /// the bucket): nothing is registered.
    async fn reconcile(&self, location: &Location) -> Result<Option<Registration>> {
        let mut view = self.read_folder(location).await?;
        if view.is_empty() {
            return Ok(None);
        }
        for _ in 0..RECONCILE_ROUNDS {
            let registration = self.derive(location, &view).await?;
            let again = self.read_folder(location).await?;
            if fingerprint(&again) == fingerprint(&view) {
                return Ok(Some(registration));
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
        let too_large = || format!("{key}: larger than {MAX_MANIFEST_BYTES} bytes, not read");
        let content = if recorded.size.unwrap_or(0) > MAX_MANIFEST_BYTES {
            problems.push(too_large());
            None
        } else {
            match self.store.get(key).await {
                // Replaced by a larger one since it was recorded: its event
                // follows; this content is not parsed either.
                Ok(bytes)
                    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_MANIFEST_BYTES =>
                {
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
    let total = files
        .values()
        .fold(0u64, |sum, f| sum.saturating_add(f.size));
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
        let observed = order_key(None, u64::MAX);
        assert!(observed < order_key(Some("1"), 0));
        assert!(order_key(None, 1) < order_key(None, 2));
        assert_eq!(order_key(Some("not hex"), 7), order_key(None, 7));
        let longest = "F".repeat(MAX_SEQUENCER_LEN + 1);
        assert_eq!(order_key(Some(&longest), 7), order_key(None, 7));
        assert_eq!(order_key(None, u64::MAX).len(), order_key(None, 0).len());
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
        for key in ["models/m/2/kept.bin", "models/m/2/gone.bin"] {
            store.put(key, b"x".to_vec(), None).await.unwrap();
        }
        store.delete("models/m/2/gone.bin").await.unwrap();
        let history = [
            event("models/m/1/a.bin", Change::Created, 1),
            event("models/m/1/b.bin", Change::Created, 2),
            event("models/m/1/model-manifest.yaml", Change::Created, 3),
            event("models/m/2/gone.bin", Change::Created, 4),
            event("models/m/2/gone.bin", Change::Removed, 5),
            event("models/m/2/kept.bin", Change::Created, 6),
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
        for i in [5, 4, 2, 4, 0, 3, 1, 1, 0, 2, 3, 5] {
            shuffled.apply(&history[i]).await.unwrap();
        }
        assert_eq!(registered(&shuffled, "m").await, expected);
        let stale = shuffled.apply(&history[3]).await.unwrap();
        assert!(
            matches!(stale, Outcome::Registered { applied: false, .. }),
            "{stale:?}"
        );
    }

    /// A registry on a local artifact store holding `models/m/1/w.bin`.
    async fn one_file(dir: &std::path::Path) -> (Uploads, Arc<dyn ArtifactStore>) {
        let files = crate::store::artifacts::LocalArtifactStore::open(dir.join("files")).unwrap();
        let store: Arc<dyn ArtifactStore> = Arc::new(files);
        store
            .put("models/m/1/w.bin", b"weights".to_vec(), None)
            .await
            .unwrap();
        (uploads_in(&dir.join("table"), &store), store)
    }

    fn state_of(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Registered { registration, .. } => &registration.artifact_state,
            Outcome::Ignored { reason } => panic!("ignored: {reason}"),
        }
    }

    #[tokio::test]
    async fn a_forged_removal_of_a_present_object_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (uploads, store) = one_file(dir.path()).await;
        let created = uploads
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        assert_eq!(state_of(&created), "LIVE");
        let mut forged = event("models/m/1/w.bin", Change::Removed, 0);
        forged.sequencer = Some("F".repeat(MAX_SEQUENCER_LEN));
        forged.time_ms = Some(u64::MAX);
        let outcome = uploads.apply(&forged).await.unwrap();
        assert!(
            matches!(&outcome, Outcome::Registered { applied: false, registration } if registration.artifact_state == "LIVE"),
            "{outcome:?}"
        );
        // A genuine removal with a lower position still applies, and a new
        // upload brings the artifact back.
        store.delete("models/m/1/w.bin").await.unwrap();
        let removed = event("models/m/1/w.bin", Change::Removed, 2);
        assert_eq!(state_of(&uploads.apply(&removed).await.unwrap()), "DELETED");
        store
            .put("models/m/1/w.bin", b"retrained".to_vec(), None)
            .await
            .unwrap();
        let again = event("models/m/1/w.bin", Change::Created, 3);
        assert_eq!(state_of(&uploads.apply(&again).await.unwrap()), "LIVE");
    }

    #[tokio::test]
    async fn a_forged_creation_of_an_absent_object_registers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (uploads, _store) = one_file(dir.path()).await;
        let mut ghost = event("models/ghost/1/w.bin", Change::Created, 0);
        ghost.sequencer = Some("F".repeat(MAX_SEQUENCER_LEN));
        ghost.size = Some(1);
        ghost.etag = Some("0123".into());
        let outcome = uploads.apply(&ghost).await.unwrap();
        assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
        let found = uploads
            .registry()
            .find(Family::RegisteredModel, None, Some("ghost"), None, None)
            .await;
        assert!(matches!(found, Err(Error::NotFound(_))), "{found:?}");
        // Nor does a forged file in a registered folder count as a file.
        uploads
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        let outcome = uploads
            .apply(&event("models/m/1/ghost.bin", Change::Created, 9))
            .await
            .unwrap();
        let Outcome::Registered { applied, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(!applied);
        let artifact = uploads
            .registry()
            .find(
                Family::Artifact,
                Some(Kind::ModelArtifact),
                Some("m"),
                None,
                None,
            )
            .await;
        let count = artifact.map(|a| a.custom.get(props::FILE_COUNT).cloned());
        assert!(
            matches!(&count, Ok(Some(MetadataValue::Int(1)))),
            "{count:?}"
        );
    }

    /// An artifact store whose first HEAD answers what the bucket held a
    /// moment ago: a look taken before a concurrent change, written late.
    struct StaleOnce {
        inner: Arc<dyn ArtifactStore>,
        stale: std::sync::Mutex<Option<ObjectInfo>>,
    }

    #[async_trait::async_trait]
    impl ArtifactStore for StaleOnce {
        async fn put(
            &self,
            key: &str,
            body: Vec<u8>,
            content_type: Option<&str>,
        ) -> std::result::Result<ObjectInfo, ArtifactError> {
            self.inner.put(key, body, content_type).await
        }
        async fn put_file(
            &self,
            key: &str,
            path: &std::path::Path,
        ) -> std::result::Result<ObjectInfo, ArtifactError> {
            self.inner.put_file(key, path).await
        }
        async fn get(&self, key: &str) -> std::result::Result<Vec<u8>, ArtifactError> {
            self.inner.get(key).await
        }
        async fn head(&self, key: &str) -> std::result::Result<Option<ObjectInfo>, ArtifactError> {
            let stale = self.stale.lock().unwrap().take();
            match stale {
                Some(info) => Ok(Some(info)),
                None => self.inner.head(key).await,
            }
        }
        async fn delete(&self, key: &str) -> std::result::Result<(), ArtifactError> {
            self.inner.delete(key).await
        }
        async fn list(&self, prefix: &str) -> std::result::Result<Vec<ObjectInfo>, ArtifactError> {
            self.inner.list(prefix).await
        }
        async fn presign_get(
            &self,
            key: &str,
            ttl: Duration,
        ) -> std::result::Result<String, ArtifactError> {
            self.inner.presign_get(key, ttl).await
        }
        async fn presign_put(
            &self,
            key: &str,
            ttl: Duration,
        ) -> std::result::Result<String, ArtifactError> {
            self.inner.presign_put(key, ttl).await
        }
        async fn start_multipart(&self, key: &str) -> std::result::Result<String, ArtifactError> {
            self.inner.start_multipart(key).await
        }
        async fn presign_part(
            &self,
            key: &str,
            upload_id: &str,
            part_number: i32,
            ttl: Duration,
        ) -> std::result::Result<String, ArtifactError> {
            self.inner
                .presign_part(key, upload_id, part_number, ttl)
                .await
        }
        async fn complete_multipart(
            &self,
            key: &str,
            upload_id: &str,
            parts: Vec<crate::store::artifacts::CompletedPart>,
        ) -> std::result::Result<ObjectInfo, ArtifactError> {
            self.inner.complete_multipart(key, upload_id, parts).await
        }
        async fn abort_multipart(
            &self,
            key: &str,
            upload_id: &str,
        ) -> std::result::Result<(), ArtifactError> {
            self.inner.abort_multipart(key, upload_id).await
        }
        fn uri(&self, key: &str) -> String {
            self.inner.uri(key)
        }
    }

    #[tokio::test]
    async fn a_stale_look_written_late_is_corrected_by_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (_, files) = one_file(dir.path()).await;
        let before = files.head("models/m/1/w.bin").await.unwrap();
        files.delete("models/m/1/w.bin").await.unwrap();
        // The delivery of the creation looked while the file was there; by
        // the time it writes, the file is gone (and the removal's delivery,
        // which saw it gone, found nothing to record).
        let store: Arc<dyn ArtifactStore> = Arc::new(StaleOnce {
            inner: files,
            stale: std::sync::Mutex::new(before),
        });
        let uploads = uploads_in(&dir.path().join("stale"), &store);
        let outcome = uploads
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        assert_eq!(state_of(&outcome), "DELETED", "{outcome:?}");
        let location = uploads
            .convention()
            .locate(LOCAL_BUCKET, "models/m/1/w.bin")
            .unwrap();
        let items = uploads.read_folder(&location).await.unwrap();
        assert_eq!(items.len(), 1);
        assert!(!items[0].state.present, "{:?}", items[0]);
        assert_eq!(items[0].version, 2, "written stale, then corrected");
    }

    #[tokio::test]
    async fn a_state_item_the_bucket_contradicts_is_corrected_whatever_its_position() {
        // What the old rule let a forged event leave behind: the object
        // recorded absent at the highest position while it is present.
        let dir = tempfile::tempdir().unwrap();
        let (uploads, _store) = one_file(dir.path()).await;
        let location = uploads
            .convention()
            .locate(LOCAL_BUCKET, "models/m/1/w.bin")
            .unwrap();
        let pinned = ObjectState::of(order_key(Some(&"F".repeat(MAX_SEQUENCER_LEN)), 0), None);
        uploads
            .registry()
            .table()
            .put(
                Item::plain(
                    uploads.partition(&location).as_str(),
                    "models/m/1/w.bin",
                    1,
                    serde_json::to_string(&pinned).unwrap(),
                ),
                Cond::Absent,
            )
            .await
            .unwrap();
        let outcome = uploads
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        assert!(
            matches!(&outcome, Outcome::Registered { applied: true, registration } if registration.artifact_state == "LIVE"),
            "{outcome:?}"
        );
        // And the same for the registry's own observation (the upload
        // extension's completion).
        let observed = uploads
            .observe(vec![("models/m/1/w.bin".into(), None)])
            .await
            .unwrap();
        assert_eq!(state_of(&observed), "LIVE");
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
