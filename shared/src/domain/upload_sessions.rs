//! Uploads through the registry (an extension outside the Kubeflow
//! contract): a client asks for upload URLs for a model version's files,
//! sends the bytes straight to the bucket, and calls completion, which
//! checks every file's size and SHA-256 and registers them (the same path
//! as storage events, run in-process: see `crate::registration`).
//!
//! - On S3 the URLs are presigned: one `PUT` per file, or, for files larger
//!   than the part size, a multipart upload with one presigned URL per part
//!   (the client reports the parts' ETags at completion).
//! - On the local artifact store (the embedded default) nothing can be
//!   presigned: the URLs point back at the registry (a relay endpoint whose
//!   path carries a random per-file token), which streams the body into the
//!   store.
//!
//! A session is one table item, written with optimistic versions (the keys
//! and item bodies of sessions and of the path claims below are the store
//! layout's: [`UploadItems`]). Completion is idempotent: repeating it after
//! success returns the same result. A size or digest mismatch fails the
//! session, deletes its files and is answered 400 (start a new session).
//!
//! ## Uploaded files never change
//! Every path of a session is claimed when the session starts: one item per
//! path of the version folder naming the session, written only if absent.
//! So at any time at most one session holds URLs for a path, and:
//! - a claim of a `COMPLETE` session is final: no other session may name
//!   that path again (409: register a new version for new bytes);
//! - a session that fails releases its claims after deleting its files;
//! - a claim of a session that never completed lapses
//!   [`CLAIM_GRACE_MS`] after the session expired (its URLs expired with it).
//!   The session that takes such a claim over first marks the old one
//!   `FAILED` (a conditional write on its item), so the old one can no
//!   longer complete, nor delete anything.
//!
//! A path already in the version's folder (uploaded another way, or by a
//! session that never completed) is refused the same way. Completion checks
//! again that the session still holds every path before it looks at the
//! bytes, and commits `COMPLETE` with a conditional write before registering.
//!
//! ## Limits
//! Checked when a session starts, before anything is written, the same on
//! every backend: see the constants below. They keep the session item within
//! DynamoDB's 400 KB whatever is declared (a unit test builds the largest
//! session they allow).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::entity::{Entity, Family};
use super::error::{Error, Result, bad_request};
use crate::domain::now_ms;
use crate::registration::{Outcome, Registrar, Registration, storage_error};
use crate::store::artifacts::{
    ArtifactError, ArtifactStore, CompletedPart, ObjectInfo, validate_key,
};
use crate::store::layout::uploads::{PathClaim, PathClaims, UploadItems};

const TIB: u64 = 1024 * 1024 * 1024 * 1024;
/// Most files in one session.
pub const MAX_FILES: usize = 1000;
/// Most files of one session that are larger than the part size (each
/// stores a multipart upload id in the session).
pub const MAX_MULTIPART_FILES: usize = 200;
/// Most bytes the paths of one session take in all, as stored (JSON: a `"`
/// counts twice). With [`MAX_FILES`] that is 98 bytes a path on average.
pub const MAX_PATHS_BYTES: usize = 96 * 1024;
/// Largest file: 5 TiB, S3's largest object.
pub const MAX_FILE_SIZE: u64 = 5 * TIB;
/// Most bytes one session may declare in all.
pub const MAX_SESSION_SIZE: u64 = 5 * TIB;
/// Most upload URLs one session hands out (one per file, or one per part of
/// a multipart file): bounds the answer to the start call.
pub const MAX_URLS: u64 = 10_000;
/// S3's most parts per multipart upload.
const MAX_PARTS: u64 = 10_000;
/// Longest multipart upload id the session stores (S3's are ~100 bytes).
const MAX_UPLOAD_ID_BYTES: usize = 512;
/// Longest ETag accepted in a completion's part list.
const MAX_ETAG_BYTES: usize = 1024;
/// Problems a failed session keeps, each at most [`MAX_PROBLEM_BYTES`].
const MAX_PROBLEMS: usize = 10;
const MAX_PROBLEM_BYTES: usize = 512;
/// How long after its session expired a claim on a path lapses. Covers
/// URLs presigned an instant after the expiry was computed, clocks that
/// differ between instances, and a completion that began before the expiry.
/// A failed session deletes its files only within half of it.
pub const CLAIM_GRACE_MS: u64 = 10 * 60 * 1000;
/// Attempts to claim one path while other sessions change its claim.
const CLAIM_ATTEMPTS: usize = 4;
/// Claims written at once by one start.
const CLAIMS_IN_FLIGHT: usize = 16;

/// Tunables of the extension.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// How long URLs and sessions stay valid.
    pub ttl: Duration,
    /// Files larger than this go in parts of this size (raised so a file has
    /// at most 10 000 parts).
    pub part_size: u64,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionState {
    /// Waiting for the bytes and the completion call.
    Pending,
    /// Verified and registered.
    Complete,
    /// A file did not match what was declared (its files were deleted), or
    /// the session expired and another one took its paths.
    Failed,
}

/// A file the client wants to upload, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// Path inside the version folder (`/`-separated).
    pub path: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// A client-driven multipart upload of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipart {
    pub upload_id: String,
    pub part_size: u64,
    pub parts: u64,
}

/// One file of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFile {
    pub path: String,
    /// `<folder><path>`: not stored (the item stays small), set on load.
    #[serde(default, skip_serializing)]
    pub key: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Multipart>,
    /// Capability of the relay endpoint (local artifact store only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// One upload session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub model_version_id: u64,
    pub model_artifact_id: u64,
    pub folder: String,
    pub state: SessionState,
    pub create_ms: u64,
    pub expires_ms: u64,
    pub files: Vec<SessionFile>,
    /// Why the session failed (at most `MAX_PROBLEMS` lines, and a count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
}

/// How the client sends one file (same order as the session's files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// One `PUT` of the whole file to this presigned URL.
    Put { url: String },
    /// A `PUT` of each part to its URL (part `n` is bytes
    /// `(n-1)*part_size ..`), then the parts' ETags at completion.
    Parts {
        upload_id: String,
        part_size: u64,
        urls: Vec<String>,
    },
    /// One `PUT` of the whole file to the registry's relay endpoint.
    Relay { token: String },
}

/// The upload extension's service: it registers through the registrar,
/// and uses every capability of the artifact store (it lists a version's
/// folder, presigns uploads and drives multipart ones, stores relayed
/// files, reads them back to check them, and deletes rejected ones).
#[derive(Clone)]
pub struct UploadSessions {
    registrar: Registrar,
    store: Arc<dyn ArtifactStore>,
    settings: UploadSettings,
    /// The sessions' and path claims' items.
    uploads: UploadItems,
}

/// What the holder of a claim means for a session that wants the path (a
/// claim lapses [`CLAIM_GRACE_MS`] after its session expired, unless the
/// session completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// The holder completed: the path is uploaded, for good.
    Completed,
    /// The holder may still upload, until `lapse_ms`.
    Busy { lapse_ms: u64 },
    /// The holder is gone, failed or expired long enough ago.
    Lapsed,
}

impl Holder {
    /// `owner` is the claim's session as read (`None`: there is none).
    fn of(claim: &PathClaim, owner: Option<&Session>, now_ms: u64) -> Holder {
        if owner.is_some_and(|s| s.state == SessionState::Complete) {
            return Holder::Completed;
        }
        let lapse_ms = claim.expires_ms.saturating_add(CLAIM_GRACE_MS);
        if now_ms <= lapse_ms {
            Holder::Busy { lapse_ms }
        } else {
            Holder::Lapsed
        }
    }
}

/// A declared file, checked, and whether it goes in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedFile {
    path: String,
    size: u64,
    sha256: String,
    parts: Option<PartPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartPlan {
    part_size: u64,
    parts: u64,
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Compare secrets without an early exit.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A path as messages show it: long ones cut short.
fn shown(path: &str) -> String {
    truncated(path, 80)
}

/// `s` cut to at most `max` bytes (at a character boundary, marked `…`).
fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn already_uploaded(path: &str) -> Error {
    Error::Conflict(format!(
        "files: '{}' is already uploaded to this model version, and uploaded files never \
         change: register a new model version to upload new content",
        shown(path)
    ))
}

impl UploadSessions {
    /// Sessions whose files go to `store` and register through
    /// `registrar` (which should read the same bucket).
    pub fn new(
        registrar: Registrar,
        store: Arc<dyn ArtifactStore>,
        settings: UploadSettings,
    ) -> Self {
        let uploads = registrar.registry().layout().uploads();
        UploadSessions {
            registrar,
            store,
            settings,
            uploads,
        }
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// Open a session for `files` of model version `version_id`: the files
    /// are checked against the limits, their paths must not be uploaded yet
    /// nor held by another session (409), the model artifact is created
    /// `PENDING` if the version has none yet, and every file gets its
    /// transfer.
    pub async fn start(
        &self,
        version_id: u64,
        files: Vec<FileRequest>,
    ) -> Result<(Session, Vec<Transfer>)> {
        let registry = self.registrar.registry();
        let version = registry.get(Family::ModelVersion, None, version_id).await?;
        let model_id = version
            .parent
            .ok_or_else(|| Error::internal(format!("model version {version_id} has no model")))?;
        let model = registry
            .get(Family::RegisteredModel, None, model_id)
            .await?;
        let folder = self
            .registrar
            .convention()
            .folder(&model.name, &version.name)?;
        let plan = check_files(&folder, files, self.settings.part_size)?;
        self.check_not_in_folder(&folder, &plan).await?;

        let out_of_range = || Error::internal("MR_UPLOAD_TTL_SECS is out of range");
        let ttl_ms = u64::try_from(self.settings.ttl.as_millis()).map_err(|_| out_of_range())?;
        let create_ms = now_ms();
        let expires_ms = create_ms.checked_add(ttl_ms).ok_or_else(out_of_range)?;
        let id = random_token();
        let claimed = self.claim_paths(&folder, &id, expires_ms, &plan).await?;
        let session = Session {
            id,
            model_version_id: version.id,
            model_artifact_id: 0,
            folder,
            state: SessionState::Pending,
            create_ms,
            expires_ms,
            files: Vec::with_capacity(plan.len()),
            problems: Vec::new(),
            registration: None,
        };
        match self.open(session, &model, &version, plan).await {
            Ok(opened) => Ok(opened),
            Err((session, e)) => {
                self.abort_multiparts(&session).await;
                self.release(&session.folder, &claimed).await;
                Err(e)
            }
        }
    }

    /// The part of [`UploadSessions::start`] after the claims: the artifact,
    /// the transfers and the session item. On failure the session as far as
    /// it got, to undo it.
    async fn open(
        &self,
        mut session: Session,
        model: &Entity,
        version: &Entity,
        plan: Vec<PlannedFile>,
    ) -> std::result::Result<(Session, Vec<Transfer>), (Session, Error)> {
        let artifact = match self.registrar.prepare(model, version).await {
            Ok(a) => a,
            Err(e) => return Err((session, e)),
        };
        session.model_artifact_id = artifact.id;
        let mut transfers = Vec::with_capacity(plan.len());
        for f in plan {
            match self.transfer(&mut session, f).await {
                Ok(t) => transfers.push(t),
                Err(e) => return Err((session, e)),
            }
        }
        if let Err(e) = self.save(&session, None).await {
            return Err((session, e));
        }
        tracing::info!(session = %session.id, version = version.id, files = session.files.len(), "upload session opened");
        Ok((session, transfers))
    }

    /// Add `f` to the session with its transfer: presigned (S3), or the
    /// relay when the store cannot presign. The URLs expire with the session.
    async fn transfer(&self, session: &mut Session, f: PlannedFile) -> Result<Transfer> {
        let store = &self.store;
        let key = format!("{}{}", session.folder, f.path);
        let left = session.expires_ms.saturating_sub(now_ms());
        if left < 1000 {
            return Err(Error::unavailable(format!(
                "upload {} expired while it was being opened, retry",
                session.id
            )));
        }
        let ttl = Duration::from_millis(left);
        let mut file = SessionFile {
            path: f.path,
            key: key.clone(),
            size: f.size,
            sha256: f.sha256,
            multipart: None,
            token: None,
        };
        let presigned = match f.parts {
            Some(plan) => match store.start_multipart(&key).await {
                Ok(upload_id) => {
                    file.multipart = Some(Multipart {
                        upload_id: upload_id.clone(),
                        part_size: plan.part_size,
                        parts: plan.parts,
                    });
                    // Recorded before anything else can fail, to be aborted then.
                    session.files.push(file);
                    if upload_id.len() > MAX_UPLOAD_ID_BYTES {
                        return Err(Error::internal(format!(
                            "the artifact store's multipart upload id is longer than {MAX_UPLOAD_ID_BYTES} bytes"
                        )));
                    }
                    let mut urls = Vec::with_capacity(usize::try_from(plan.parts).unwrap_or(0));
                    for n in 1..=plan.parts {
                        let number = i32::try_from(n)
                            .map_err(|_| Error::internal(format!("part number {n}")))?;
                        urls.push(
                            store
                                .presign_part(&key, &upload_id, number, ttl)
                                .await
                                .map_err(storage_error)?,
                        );
                    }
                    return Ok(Transfer::Parts {
                        upload_id,
                        part_size: plan.part_size,
                        urls,
                    });
                }
                Err(ArtifactError::Unsupported(_)) => None,
                Err(e) => return Err(storage_error(e)),
            },
            None => match store.presign_put(&key, ttl).await {
                Ok(url) => Some(Transfer::Put { url }),
                Err(ArtifactError::Unsupported(_)) => None,
                Err(e) => return Err(storage_error(e)),
            },
        };
        let transfer = presigned.unwrap_or_else(|| {
            let token = random_token();
            file.token = Some(token.clone());
            Transfer::Relay { token }
        });
        session.files.push(file);
        Ok(transfer)
    }

    /// Refuse paths the version's folder already holds (409), or that
    /// would make a file of the folder a folder or the reverse.
    async fn check_not_in_folder(&self, folder: &str, plan: &[PlannedFile]) -> Result<()> {
        let present: BTreeSet<String> = self
            .store
            .list(folder)
            .await
            .map_err(storage_error)?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(folder).map(str::to_string))
            .collect();
        for f in plan {
            if present.contains(&f.path) {
                return Err(already_uploaded(&f.path));
            }
            if let Some(other) = folder_conflict(&present, &f.path) {
                return Err(Error::Conflict(format!(
                    "files: '{}' cannot be uploaded next to the uploaded '{}' (a path cannot be \
                     both a file and a folder), and uploaded files never change: register a new \
                     model version to upload new content",
                    shown(&f.path),
                    shown(other)
                )));
            }
        }
        Ok(())
    }

    /// The path claims of `folder` (of the convention's bucket).
    fn claims(&self, folder: &str) -> PathClaims {
        self.uploads
            .claims(self.registrar.convention().bucket(), folder)
    }

    /// Claim every path of `plan` for session `id`: the first in path order
    /// alone (of concurrent starts naming the same files, the one that gets
    /// it goes on, the others stop there), then the others
    /// [`CLAIMS_IN_FLIGHT`] at a time. Returns the claims taken (path, item
    /// version); on a refusal the ones taken are released.
    async fn claim_paths(
        &self,
        folder: &str,
        id: &str,
        expires_ms: u64,
        plan: &[PlannedFile],
    ) -> Result<Vec<(String, u64)>> {
        use futures_util::StreamExt as _;
        let claims = self.claims(folder);
        let claim = PathClaim {
            session: id.to_string(),
            expires_ms,
        };
        let mut paths: Vec<&str> = plan.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        let Some((first, rest)) = paths.split_first() else {
            return Ok(Vec::new());
        };
        let mut taken = vec![(first.to_string(), self.claim(&claims, first, &claim).await?)];
        let (claims, claim) = (&claims, &claim);
        // Owned paths: a stream of futures borrowing them is not `Send`.
        let rest: Vec<String> = rest.iter().map(|p| p.to_string()).collect();
        let results: Vec<(String, Result<u64>)> = futures_util::stream::iter(rest)
            .map(|path| async move {
                let result = self.claim(claims, &path, claim).await;
                (path, result)
            })
            .buffer_unordered(CLAIMS_IN_FLIGHT)
            .collect()
            .await;
        let mut refused: Option<(String, Error)> = None;
        for (path, result) in results {
            match result {
                Ok(version) => taken.push((path, version)),
                // Report the first path refused (in the order of paths).
                Err(e) if refused.as_ref().is_none_or(|(p, _)| path < *p) => {
                    refused = Some((path, e));
                }
                Err(_) => {}
            }
        }
        if let Some((_, e)) = refused {
            self.release(folder, &taken).await;
            return Err(e);
        }
        Ok(taken)
    }

    /// Claim one path: written if absent, else taken over from a holder
    /// that lapsed (after fencing it), else refused with 409.
    async fn claim(&self, claims: &PathClaims, path: &str, claim: &PathClaim) -> Result<u64> {
        for _ in 0..CLAIM_ATTEMPTS {
            if claims.insert(path, claim).await? {
                return Ok(1);
            }
            let Some((held, version)) = claims.get(path).await? else {
                continue; // released meanwhile
            };
            let owner = self.find(&held.session).await?;
            let now = now_ms();
            match Holder::of(&held, owner.as_ref().map(|(s, _)| s), now) {
                Holder::Completed => return Err(already_uploaded(path)),
                Holder::Busy { lapse_ms } => {
                    return Err(Error::Conflict(format!(
                        "files: '{}' is being uploaded by another upload session (for {} more \
                         seconds at most); a path is uploaded once: complete that session, or \
                         register a new model version",
                        shown(path),
                        lapse_ms.saturating_sub(now).div_ceil(1000)
                    )));
                }
                Holder::Lapsed => {}
            }
            if let Some((mut stale, read)) = owner
                && stale.state == SessionState::Pending
            {
                // Fence it: once FAILED it can neither complete nor delete.
                stale.state = SessionState::Failed;
                stale.problems = vec!["expired before it was completed".into()];
                match self.save(&stale, Some(read)).await {
                    Ok(()) => self.abort_multiparts(&stale).await,
                    Err(Error::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            if let Some(taken) = claims.replace(path, claim, version).await? {
                return Ok(taken);
            }
        }
        Err(Error::Conflict(format!(
            "files: '{}' is being claimed by concurrent upload sessions, retry",
            shown(path)
        )))
    }

    /// Give back claims (best effort: an unreleased claim lapses anyway).
    async fn release(&self, folder: &str, claims: &[(String, u64)]) {
        let held = self.claims(folder);
        for (path, version) in claims {
            match held.delete(path, *version).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(path = %path, "could not release an upload path claim: it changed meanwhile");
                }
                Err(e) => {
                    tracing::warn!(path = %path, error = %e, "could not release an upload path claim");
                }
            }
        }
    }

    /// Completion's check that the session still holds every path (no
    /// other session took one over after it expired). A path without a
    /// claim (a session opened before claims existed) is claimed now.
    async fn check_claims(&self, session: &Session) -> Result<()> {
        let claims = self.claims(&session.folder);
        let held = claims.all().await?;
        for file in &session.files {
            match held.get(&file.path) {
                Some((claim, _)) if claim.session == session.id => {}
                Some(_) => {
                    return Err(Error::Conflict(format!(
                        "upload {}: '{}' belongs to another upload session now (this one \
                         expired before it was completed); start a new one",
                        session.id,
                        shown(&file.path)
                    )));
                }
                None => {
                    let claim = PathClaim {
                        session: session.id.clone(),
                        expires_ms: session.expires_ms,
                    };
                    if !claims.insert(&file.path, &claim).await? {
                        return Err(Error::Conflict(format!(
                            "upload {}: '{}' was claimed by another upload session; start a new one",
                            session.id,
                            shown(&file.path)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// A session by id.
    pub async fn get(&self, id: &str) -> Result<Session> {
        self.load(id).await.map(|(s, _)| s)
    }

    /// The file a relay `PUT` may write: the session must be pending and
    /// unexpired, and the token one of its files'.
    pub async fn relay_target(&self, id: &str, token: &str) -> Result<SessionFile> {
        let (session, _) = self.load(id).await?;
        let file = session
            .files
            .iter()
            .find(|f| f.token.as_deref().is_some_and(|t| same_secret(t, token)))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("upload {id} has no such file")))?;
        self.check_open(&session)?;
        Ok(file)
    }

    /// Store the relayed bytes (already in a local file) under the file's
    /// key. The session must still be open now, after the body arrived:
    /// bytes never land after it expired (its paths may be another
    /// session's by then) or after it completed.
    pub async fn store_relayed(
        &self,
        id: &str,
        file: &SessionFile,
        path: &std::path::Path,
    ) -> Result<ObjectInfo> {
        let (session, _) = self.load(id).await?;
        self.check_open(&session)?;
        self.store
            .put_file(&file.key, path)
            .await
            .map_err(storage_error)
    }

    /// Finish a session: assemble multipart files from their `parts` (by
    /// path), check every file's size and SHA-256 against the declaration,
    /// and register them. A bad request (a path that is none of the
    /// session's, a bad part list) or a missing file is a 400 and the session
    /// stays open; a mismatch fails the session and deletes its files.
    pub async fn complete(
        &self,
        id: &str,
        mut parts: BTreeMap<String, Vec<CompletedPart>>,
    ) -> Result<(Session, Entity)> {
        let (mut session, read) = self.load(id).await?;
        match session.state {
            SessionState::Complete => return self.register(session, read, None).await,
            SessionState::Failed => {
                // Finish what a failure interrupted (idempotent).
                self.discard(&session).await?;
                return bad_request(format!(
                    "upload {id} failed ({}); start a new one",
                    session.problems.join("; ")
                ));
            }
            SessionState::Pending => self.check_open(&session)?,
        }
        check_completion(&session, &parts)?;
        self.check_claims(&session).await?;
        let store = &self.store;
        let mut found = Vec::with_capacity(session.files.len());
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for file in &session.files {
            if let Some(m) = &file.multipart {
                match parts.remove(&file.path) {
                    Some(list) => match store
                        .complete_multipart(&file.key, &m.upload_id, list)
                        .await
                    {
                        Ok(_) => {}
                        // Completed by an earlier call that did not finish.
                        Err(ArtifactError::NotFound(_)) => {}
                        Err(ArtifactError::Invalid(why)) => {
                            return bad_request(format!("{}: {why}", shown(&file.path)));
                        }
                        Err(e) => return Err(storage_error(e)),
                    },
                    None => {
                        if store
                            .head(&file.key)
                            .await
                            .map_err(storage_error)?
                            .is_none()
                        {
                            return bad_request(format!(
                                "{}: list its parts (partNumber, etag) to complete the multipart upload",
                                shown(&file.path)
                            ));
                        }
                    }
                }
            }
            match store
                .head_with_sha256(&file.key)
                .await
                .map_err(storage_error)?
            {
                None => missing.push(shown(&file.path)),
                Some(info) if info.size != file.size => mismatched.push(format!(
                    "{}: {} bytes uploaded, {} declared",
                    shown(&file.path),
                    info.size,
                    file.size
                )),
                Some(info) if info.sha256.as_deref() != Some(file.sha256.as_str()) => mismatched
                    .push(format!(
                        "{}: sha256 {} uploaded, {} declared",
                        shown(&file.path),
                        info.sha256.as_deref().unwrap_or("unknown"),
                        file.sha256
                    )),
                Some(info) => found.push((file.key.clone(), Some(info))),
            }
        }
        if !mismatched.is_empty() {
            return self.reject(session, read, &mismatched).await;
        }
        if !missing.is_empty() {
            return bad_request(format!(
                "upload {id}: not uploaded yet: {}",
                summary(&missing).join(", ")
            ));
        }
        // Commit: from here on the session's paths are its own for good.
        session.state = SessionState::Complete;
        let read = match self.save(&session, Some(read)).await {
            Ok(()) => read.saturating_add(1),
            Err(Error::Conflict(_)) => {
                let (current, version) = self.load(id).await?;
                if current.state != SessionState::Complete {
                    return Err(Error::Conflict(format!(
                        "upload {id} expired and was closed while it was being completed; start a new one"
                    )));
                }
                // A concurrent completion of this session committed first.
                session = current;
                version
            }
            Err(e) => return Err(e),
        };
        let (session, artifact) = self.register(session, read, Some(found)).await?;
        tracing::info!(session = %id, artifact = artifact.id, "upload complete");
        Ok((session, artifact))
    }

    /// Register a committed session's files (unless done already) and
    /// return the session with its artifact. `found` is what completion just
    /// saw in the store; `None` looks again.
    async fn register(
        &self,
        mut session: Session,
        read: u64,
        found: Option<Vec<(String, Option<ObjectInfo>)>>,
    ) -> Result<(Session, Entity)> {
        if session.registration.is_none() {
            let keys = found.unwrap_or_else(|| {
                session
                    .files
                    .iter()
                    .map(|f| (f.key.clone(), None))
                    .collect()
            });
            let registration = match self.registrar.observe(keys).await? {
                Outcome::Registered { registration, .. } => registration,
                Outcome::Ignored { reason } => {
                    return Err(Error::internal(format!(
                        "upload {} is outside the convention: {reason}",
                        session.id
                    )));
                }
            };
            session.registration = Some(registration);
            match self.save(&session, Some(read)).await {
                // A concurrent completion recorded the same registration.
                Ok(()) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let artifact = self
            .registrar
            .registry()
            .get(Family::Artifact, None, session.model_artifact_id)
            .await?;
        Ok((session, artifact))
    }

    /// Fail a pending session whose bytes did not match, then delete its
    /// files and release its paths. Always an error: 400 with `problems`.
    async fn reject(
        &self,
        mut session: Session,
        read: u64,
        problems: &[String],
    ) -> Result<(Session, Entity)> {
        let id = session.id.clone();
        let problems = summary(problems);
        session.state = SessionState::Failed;
        session.problems = problems
            .iter()
            .map(|p| truncated(p, MAX_PROBLEM_BYTES))
            .collect();
        match self.save(&session, Some(read)).await {
            Ok(()) => {}
            Err(Error::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "upload {id} changed while it was being checked; read its state"
                )));
            }
            Err(e) => return Err(e),
        }
        tracing::warn!(session = %id, problems = ?session.problems, "upload rejected");
        self.discard(&session).await?;
        bad_request(format!(
            "upload {id} rejected, its files were deleted (start a new one): {}",
            problems.join("; ")
        ))
    }

    /// Delete what a failed session uploaded, record the deletions, and
    /// release its paths: only the paths it still holds, and only while no
    /// other session can have taken them over (half the grace after its
    /// expiry; later its bytes stay, unregistered, for an operator).
    /// Safe to repeat.
    async fn discard(&self, session: &Session) -> Result<()> {
        let cutoff = session.expires_ms.saturating_add(CLAIM_GRACE_MS / 2);
        if now_ms() > cutoff {
            tracing::warn!(session = %session.id, "failed upload session is too old to delete its files safely");
            return Ok(());
        }
        let held = self.claims(&session.folder).all().await?;
        let store = &self.store;
        let mut removed = Vec::new();
        let mut owned = Vec::new();
        for file in &session.files {
            let Some((claim, version)) = held.get(&file.path) else {
                continue;
            };
            if claim.session != session.id {
                continue;
            }
            if let Some(m) = &file.multipart
                && let Err(e) = store.abort_multipart(&file.key, &m.upload_id).await
            {
                tracing::debug!(key = %file.key, error = %e, "multipart upload not aborted");
            }
            store.delete(&file.key).await.map_err(storage_error)?;
            removed.push((file.key.clone(), None));
            owned.push((file.path.clone(), *version));
        }
        if !removed.is_empty() {
            // So the artifact does not describe deleted bytes.
            self.registrar.observe(removed).await?;
        }
        self.release(&session.folder, &owned).await;
        Ok(())
    }

    /// Abort the session's multipart uploads (best effort: a bucket
    /// lifecycle rule cleans up what remains).
    async fn abort_multiparts(&self, session: &Session) {
        let store = &self.store;
        for file in &session.files {
            if let Some(m) = &file.multipart
                && let Err(e) = store.abort_multipart(&file.key, &m.upload_id).await
            {
                tracing::debug!(key = %file.key, error = %e, "multipart upload not aborted");
            }
        }
    }

    fn check_open(&self, session: &Session) -> Result<()> {
        if session.state != SessionState::Pending {
            return bad_request(format!("upload {} is no longer open", session.id));
        }
        if now_ms() > session.expires_ms {
            return bad_request(format!("upload {} expired; start a new one", session.id));
        }
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<(Session, u64)> {
        self.find(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("upload {id} not found")))
    }

    /// A session and its item version, if there is one.
    async fn find(&self, id: &str) -> Result<Option<(Session, u64)>> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let Some((mut session, version)) = self.uploads.session(id).await? else {
            return Ok(None);
        };
        for f in &mut session.files {
            f.key = format!("{}{}", session.folder, f.path);
        }
        Ok(Some((session, version)))
    }

    /// Write a session: new (`None`) or replacing the version read.
    async fn save(&self, session: &Session, read: Option<u64>) -> Result<()> {
        if self.uploads.put_session(session, read).await? {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "upload {} changed concurrently",
                session.id
            )))
        }
    }
}

/// At most [`MAX_PROBLEMS`] lines of `lines`, and how many more there are.
fn summary(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().take(MAX_PROBLEMS).cloned().collect();
    if lines.len() > MAX_PROBLEMS {
        out.push(format!("and {} more", lines.len() - MAX_PROBLEMS));
    }
    out
}

/// A path of `set` that is a folder of `path` (`a` for `a/b`), or that
/// `path` is a folder of (`a/b` for `a`): the two cannot both be files.
fn folder_conflict<'a>(set: &'a BTreeSet<String>, path: &str) -> Option<&'a str> {
    for (i, _) in path.match_indices('/') {
        if let Some(parent) = set.get(&path[..i]) {
            return Some(parent);
        }
    }
    let below = format!("{path}/");
    set.range(below.clone()..)
        .next()
        .filter(|k| k.starts_with(&below))
        .map(String::as_str)
}

/// Check one path of a version folder: relative, clean (no empty, `.` or
/// `..` segment), every segment at most 255 bytes, the key at most 1,024.
fn check_path(folder: &str, path: &str) -> Result<()> {
    if path.is_empty() {
        return bad_request("files: a path is empty");
    }
    match validate_key(&format!("{folder}{path}")) {
        Ok(()) => Ok(()),
        Err(ArtifactError::Invalid(why)) => {
            bad_request(format!("files: path '{}': {why}", shown(path)))
        }
        Err(e) => bad_request(format!("files: path '{}': {e}", shown(path))),
    }
}

/// How a file of `size` bytes travels with the configured part size: in one
/// piece, or in parts (the part size raised so there are at most 10 000).
fn part_plan(size: u64, part_size: u64) -> Option<PartPlan> {
    let part_size = part_size.max(size.div_ceil(MAX_PARTS));
    if part_size == 0 || size <= part_size {
        return None;
    }
    Some(PartPlan {
        part_size,
        parts: size.div_ceil(part_size),
    })
}

/// Validate the declared files against the limits, before anything is
/// written: relative paths that make valid keys, no duplicates and no path
/// that is also another's folder, sizes, SHA-256 as 64 hex digits, and the
/// session totals.
fn check_files(folder: &str, files: Vec<FileRequest>, part_size: u64) -> Result<Vec<PlannedFile>> {
    if files.is_empty() {
        return bad_request("files: list at least one file");
    }
    if files.len() > MAX_FILES {
        return bad_request(format!(
            "files: {} listed, at most {MAX_FILES} per upload session: upload the rest in another session",
            files.len()
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(files.len());
    let mut total: u64 = 0;
    let mut path_bytes: usize = 0;
    let mut urls: u64 = 0;
    let mut multipart: usize = 0;
    for f in files {
        check_path(folder, &f.path)?;
        if !seen.insert(f.path.clone()) {
            return bad_request(format!("files: '{}' is listed twice", shown(&f.path)));
        }
        if f.size > MAX_FILE_SIZE {
            return bad_request(format!(
                "files: '{}' is larger than 5 TiB ({MAX_FILE_SIZE} bytes), the largest file",
                shown(&f.path)
            ));
        }
        total = total
            .checked_add(f.size)
            .filter(|t| *t <= MAX_SESSION_SIZE)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "files: more than 5 TiB ({MAX_SESSION_SIZE} bytes) in all, the most one \
                     upload session takes: upload the rest in another session"
                ))
            })?;
        let sha256 = f.sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad_request(format!(
                "files: '{}': sha256 must be 64 hex digits",
                shown(&f.path)
            ));
        }
        // As stored: JSON-escaped, without the quotes.
        let stored = serde_json::to_string(&f.path)
            .map_err(|e| Error::internal(e.to_string()))?
            .len()
            .saturating_sub(2);
        path_bytes = path_bytes.saturating_add(stored);
        let parts = part_plan(f.size, part_size);
        urls = urls.saturating_add(parts.map_or(1, |p| p.parts));
        multipart += usize::from(parts.is_some());
        out.push(PlannedFile {
            path: f.path,
            size: f.size,
            sha256,
            parts,
        });
    }
    if path_bytes > MAX_PATHS_BYTES {
        return bad_request(format!(
            "files: the paths take {path_bytes} bytes, at most {MAX_PATHS_BYTES} per upload \
             session (a session is stored as one item): use shorter paths, or fewer files per session"
        ));
    }
    if multipart > MAX_MULTIPART_FILES {
        return bad_request(format!(
            "files: {multipart} files are larger than the part size ({part_size} bytes), at most \
             {MAX_MULTIPART_FILES} per upload session: upload the rest in another session"
        ));
    }
    if urls > MAX_URLS {
        return bad_request(format!(
            "files: uploading them takes {urls} URLs (one per file, one per part of a large file), \
             at most {MAX_URLS} per upload session: upload the rest in another session"
        ));
    }
    for path in &seen {
        if let Some(other) = folder_conflict(&seen, path) {
            return bad_request(format!(
                "files: '{}' and '{}': a path cannot be both a file and a folder",
                shown(path),
                shown(other)
            ));
        }
    }
    Ok(out)
}

/// Check a completion's part lists before anything is assembled: every
/// path a clean path of the session, part numbers in range, ETags sane.
fn check_completion(session: &Session, parts: &BTreeMap<String, Vec<CompletedPart>>) -> Result<()> {
    let files: BTreeMap<&str, &SessionFile> =
        session.files.iter().map(|f| (f.path.as_str(), f)).collect();
    for (path, list) in parts {
        check_path(&session.folder, path)?;
        let Some(file) = files.get(path.as_str()) else {
            return bad_request(format!(
                "upload {} has no file '{}'",
                session.id,
                shown(path)
            ));
        };
        let Some(m) = &file.multipart else {
            continue; // a single-piece file has no parts to assemble
        };
        if u64::try_from(list.len()).unwrap_or(u64::MAX) > m.parts {
            return bad_request(format!(
                "files: '{}': {} parts listed, the upload has {}",
                shown(path),
                list.len(),
                m.parts
            ));
        }
        for p in list {
            if !u64::try_from(p.number).is_ok_and(|n| (1..=m.parts).contains(&n)) {
                return bad_request(format!(
                    "files: '{}': part number {} is not between 1 and {}",
                    shown(path),
                    p.number,
                    m.parts
                ));
            }
            if p.etag.is_empty() || p.etag.len() > MAX_ETAG_BYTES {
                return bad_request(format!(
                    "files: '{}': part {} has no usable etag",
                    shown(path),
                    p.number
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::registry::Registry;
    use crate::registration::{FolderConvention, LOCAL_BUCKET};
    use crate::store::artifacts::{LocalArtifactStore, MAX_KEY_LEN};
    use crate::store::port::MAX_ITEM_BYTES;

    const PART: u64 = 5 * 1024 * 1024;

    fn file(path: &str) -> FileRequest {
        FileRequest {
            path: path.into(),
            size: 1,
            sha256: "A".repeat(64),
        }
    }

    fn sized(path: &str, size: u64) -> FileRequest {
        FileRequest { size, ..file(path) }
    }

    fn check(files: Vec<FileRequest>) -> Result<Vec<PlannedFile>> {
        check_files("models/m/1/", files, PART)
    }

    #[test]
    fn declared_files_are_checked() {
        let ok = check(vec![file("model.onnx"), file("sub/x.bin")]).unwrap();
        assert_eq!(ok[0].sha256, "a".repeat(64));
        for bad in [
            vec![],
            vec![file("")],
            vec![file("../x")],
            vec![file("/abs")],
            vec![file("a//b")],
            vec![file("a/")],
            vec![file("./a")],
            vec![file("x"), file("x")],
            vec![file("a"), file("a/b")],
            vec![file("a/b/c"), file("a/b")],
            vec![FileRequest {
                sha256: "z".repeat(64),
                ..file("x")
            }],
            vec![sized("x", MAX_FILE_SIZE + 1)],
        ] {
            assert!(
                matches!(check(bad.clone()), Err(Error::BadRequest(_))),
                "{bad:?}"
            );
        }
        // Siblings that only share a prefix are fine.
        assert!(check(vec![file("a"), file("ab/c"), file("a.b")]).is_ok());
    }

    #[test]
    fn a_path_is_a_clean_relative_path_of_file_names() {
        let long = "s".repeat(300);
        for path in [
            long.clone(),
            format!("dir/{long}"),
            format!("{long}/x"),
            format!("a/{}", "😀".repeat(64)),
        ] {
            let e = check(vec![file(&path)]).unwrap_err();
            assert!(
                matches!(&e, Error::BadRequest(m) if m.contains("255")),
                "{path}: {e}"
            );
        }
        assert!(check(vec![file(&"s".repeat(255))]).is_ok());
        // Segments of 255 bytes, but a key over 1,024.
        let deep = vec!["s".repeat(255); 4].join("/");
        assert!(check(vec![file(&deep)]).is_err());
        assert!(check(vec![file(&"s".repeat(MAX_KEY_LEN))]).is_err());
    }

    #[test]
    fn session_totals_are_bounded() {
        let count = |e: Result<Vec<PlannedFile>>, what: &str| match e {
            Err(Error::BadRequest(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{what}: {other:?}"),
        };
        let many = |n: usize, size: u64| -> Vec<FileRequest> {
            (0..n).map(|i| sized(&format!("f{i}"), size)).collect()
        };
        assert!(check(many(MAX_FILES, 1)).is_ok());
        count(check(many(MAX_FILES + 1, 1)), "at most 1000");
        count(
            check(vec![sized("a", 3 * TIB), sized("b", 3 * TIB)]),
            "in all",
        );
        count(
            check(vec![sized("a", u64::MAX), sized("b", u64::MAX)]),
            "larger than 5 TiB",
        );
        // 1000 paths of 100 bytes are more than 96 KiB.
        let long_paths: Vec<FileRequest> = (0..MAX_FILES)
            .map(|i| file(&format!("{i:0>100}")))
            .collect();
        count(check(long_paths), "the paths take");
        // A '"' is stored escaped: it counts twice.
        let quoted: Vec<FileRequest> = (0..MAX_FILES)
            .map(|i| file(&format!("{i:0>4}{}", "\"".repeat(50))))
            .collect();
        count(check(quoted), "the paths take");
        assert!(check(many(MAX_MULTIPART_FILES, PART + 1)).is_ok());
        count(
            check(many(MAX_MULTIPART_FILES + 1, PART + 1)),
            "larger than the part size",
        );
        // 4 TiB takes all 10 000 parts; one more file is one URL too many.
        let plan = check(vec![sized("big", 4 * TIB)]).unwrap();
        assert_eq!(plan[0].parts.unwrap().parts, MAX_PARTS);
        count(
            check(vec![sized("big", 4 * TIB), file("small")]),
            "10001 URLs",
        );
    }

    #[test]
    fn part_plans_keep_within_s3s_limits() {
        assert_eq!(part_plan(PART, PART), None);
        assert_eq!(
            part_plan(PART + 1, PART),
            Some(PartPlan {
                part_size: PART,
                parts: 2
            })
        );
        let p = part_plan(MAX_FILE_SIZE, PART).unwrap();
        assert!(p.parts <= MAX_PARTS && p.part_size.checked_mul(p.parts).unwrap() >= MAX_FILE_SIZE);
        assert_eq!(part_plan(0, 0), None);
        assert!(part_plan(u64::MAX, PART).unwrap().parts <= MAX_PARTS);
    }

    /// The limits are what keeps a session one table item: the largest
    /// session they allow (every file with a relay token, the most
    /// multipart files with the longest upload ids, paths of all the bytes
    /// allowed, a folder of escaped characters, the most problems, the
    /// largest numbers) must fit DynamoDB's 400 KB.
    #[test]
    fn the_largest_session_the_limits_allow_fits_one_table_item() {
        let per_path = MAX_PATHS_BYTES / MAX_FILES;
        let files = (0..MAX_FILES)
            .map(|i| SessionFile {
                path: format!("{i:0>per_path$}"),
                key: String::new(),
                size: MAX_FILE_SIZE,
                sha256: "f".repeat(64),
                multipart: (i < MAX_MULTIPART_FILES).then(|| Multipart {
                    upload_id: "u".repeat(MAX_UPLOAD_ID_BYTES),
                    part_size: u64::MAX,
                    parts: MAX_PARTS,
                }),
                token: Some(random_token()),
            })
            .collect();
        let big = u64::MAX.to_string();
        let mut problems = vec!["\"".repeat(MAX_PROBLEM_BYTES); MAX_PROBLEMS];
        problems.push(format!("and {} more", MAX_FILES));
        let session = Session {
            id: random_token(),
            model_version_id: u64::MAX,
            model_artifact_id: u64::MAX,
            folder: "\"".repeat(MAX_KEY_LEN),
            state: SessionState::Complete,
            create_ms: u64::MAX,
            expires_ms: u64::MAX,
            files,
            problems,
            registration: Some(Registration {
                registered_model_id: big.clone(),
                model_version_id: big.clone(),
                model_artifact_id: big,
                artifact_state: "UNKNOWN".into(),
            }),
        };
        let item = crate::store::layout::uploads::largest_session_item(&session);
        let size = item.charged_size();
        assert!(item.check_limits().is_ok(), "{size} bytes");
        // Some room to spare, for fields a later change adds.
        assert!(size < MAX_ITEM_BYTES - 16 * 1024, "{size} bytes");
    }

    #[test]
    fn a_claim_lapses_only_when_its_session_did_not_complete() {
        let claim = PathClaim {
            session: "s".into(),
            expires_ms: 1_000,
        };
        let session = |state| Session {
            id: "s".into(),
            model_version_id: 1,
            model_artifact_id: 1,
            folder: "models/m/1/".into(),
            state,
            create_ms: 0,
            expires_ms: 1_000,
            files: vec![],
            problems: vec![],
            registration: None,
        };
        let late = 1_000 + CLAIM_GRACE_MS + 1;
        let complete = session(SessionState::Complete);
        assert_eq!(Holder::of(&claim, Some(&complete), late), Holder::Completed);
        for owner in [
            Some(session(SessionState::Pending)),
            Some(session(SessionState::Failed)),
            None,
        ] {
            assert_eq!(
                Holder::of(&claim, owner.as_ref(), 500),
                Holder::Busy {
                    lapse_ms: 1_000 + CLAIM_GRACE_MS
                }
            );
            assert_eq!(
                Holder::of(&claim, owner.as_ref(), 1_000 + CLAIM_GRACE_MS),
                Holder::Busy {
                    lapse_ms: 1_000 + CLAIM_GRACE_MS
                }
            );
            assert_eq!(Holder::of(&claim, owner.as_ref(), late), Holder::Lapsed);
        }
        let forever = PathClaim {
            session: "s".into(),
            expires_ms: u64::MAX,
        };
        assert!(matches!(
            Holder::of(&forever, None, u64::MAX),
            Holder::Busy { .. }
        ));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn messages_cut_long_paths_at_a_character() {
        assert_eq!(shown("short"), "short");
        let cut = shown(&"😀".repeat(100));
        assert!(cut.len() <= 80 && cut.ends_with('…'), "{cut}");
    }

    // ---- sessions on the embedded table and the local artifact store ----

    struct Setup {
        sessions: UploadSessions,
        store: Arc<dyn ArtifactStore>,
        version: u64,
        _dir: tempfile::TempDir,
    }

    /// A registry with model `m` version `1` (registered by a seed file).
    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let table = crate::store::embedded::EmbeddedTable::open(dir.path()).unwrap();
        let registry = Registry::new(Arc::new(table), Default::default());
        let files = Arc::new(LocalArtifactStore::open(dir.path().join("files")).unwrap());
        let registrar = Registrar::new(
            registry,
            files.clone(),
            FolderConvention::new(LOCAL_BUCKET, "models/"),
        );
        files
            .put_bytes("models/m/1/seed.bin", b"seed")
            .await
            .unwrap();
        let version = match registrar
            .observe(vec![("models/m/1/seed.bin".into(), None)])
            .await
            .unwrap()
        {
            Outcome::Registered { registration, .. } => {
                registration.model_version_id.parse().unwrap()
            }
            other => panic!("{other:?}"),
        };
        let store: Arc<dyn ArtifactStore> = files;
        let sessions = UploadSessions::new(
            registrar,
            store.clone(),
            UploadSettings {
                ttl: Duration::from_secs(3600),
                part_size: PART,
            },
        );
        Setup {
            sessions,
            store,
            version,
            _dir: dir,
        }
    }

    fn declared(path: &str, body: &[u8]) -> FileRequest {
        use sha2::Digest as _;
        FileRequest {
            path: path.into(),
            size: body.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(body)),
        }
    }

    /// Relay `body` as the file at `path` of session `s`.
    async fn relay(t: &Setup, s: &Session, path: &str, body: &[u8]) {
        let f = s.files.iter().find(|f| f.path == path).unwrap();
        let target = t
            .sessions
            .relay_target(&s.id, f.token.as_deref().unwrap())
            .await
            .unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), body).unwrap();
        t.sessions
            .store_relayed(&s.id, &target, tmp.path())
            .await
            .unwrap();
    }

    fn conflict_about(r: Result<(Session, Vec<Transfer>)>, what: &str) {
        match r {
            Err(Error::Conflict(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("expected 409 ({what}): {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_path_is_uploaded_once() {
        let t = setup().await;
        let body = b"the first bytes".to_vec();
        let (x, _) = t
            .sessions
            .start(t.version, vec![declared("a.bin", &body)])
            .await
            .unwrap();
        // Held by a pending session.
        conflict_about(
            t.sessions
                .start(t.version, vec![declared("a.bin", b"other")])
                .await,
            "being uploaded by another upload session",
        );
        relay(&t, &x, "a.bin", &body).await;
        let (done, _) = t.sessions.complete(&x.id, BTreeMap::new()).await.unwrap();
        assert_eq!(done.state, SessionState::Complete);
        // Completed: for good.
        conflict_about(
            t.sessions
                .start(t.version, vec![declared("a.bin", b"other")])
                .await,
            "register a new model version",
        );
        conflict_about(
            t.sessions
                .start(t.version, vec![declared("a.bin/inner", b"other")])
                .await,
            "both a file and a folder",
        );
        // In the folder already (the seed, uploaded another way).
        conflict_about(
            t.sessions
                .start(t.version, vec![declared("seed.bin", b"other")])
                .await,
            "already uploaded",
        );
        // The refused starts released what they claimed: b.bin is free.
        t.sessions
            .start(
                t.version,
                vec![declared("b.bin", b"b"), declared("c.bin", b"c")],
            )
            .await
            .unwrap();
        assert_eq!(t.store.get("models/m/1/a.bin").await.unwrap(), body);
    }

    #[tokio::test]
    async fn of_concurrent_starts_naming_a_path_one_gets_it() {
        let t = setup().await;
        let starts = (0..8).map(|i| {
            let sessions = t.sessions.clone();
            let version = t.version;
            // Different orders and extra paths: claims go in path order.
            let files = if i % 2 == 0 {
                vec![declared("p.bin", b"p"), declared(&format!("x{i}"), b"x")]
            } else {
                vec![declared(&format!("x{i}"), b"x"), declared("p.bin", b"p")]
            };
            tokio::spawn(async move { sessions.start(version, files).await })
        });
        let mut opened = 0;
        for r in futures_util::future::join_all(starts).await {
            match r.unwrap() {
                Ok(_) => opened += 1,
                Err(Error::Conflict(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(opened, 1);
    }

    #[tokio::test]
    async fn completion_needs_the_paths_still_held() {
        let t = setup().await;
        let body = b"bytes".to_vec();
        let (x, _) = t
            .sessions
            .start(t.version, vec![declared("held.bin", &body)])
            .await
            .unwrap();
        relay(&t, &x, "held.bin", &body).await;
        // Another session took the path over (as after x expired).
        let claims = t.sessions.claims("models/m/1/");
        let (_, version) = claims.get("held.bin").await.unwrap().unwrap();
        let other = PathClaim {
            session: "someoneelse".into(),
            expires_ms: u64::MAX,
        };
        let taken = claims.replace("held.bin", &other, version).await.unwrap();
        assert!(taken.is_some());
        match t.sessions.complete(&x.id, BTreeMap::new()).await {
            Err(Error::Conflict(m)) => assert!(m.contains("another upload session"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Nothing was deleted, and x is still pending.
        assert!(t.store.head("models/m/1/held.bin").await.unwrap().is_some());
        assert_eq!(
            t.sessions.get(&x.id).await.unwrap().state,
            SessionState::Pending
        );
    }

    #[tokio::test]
    async fn a_rejected_session_deletes_its_files_and_frees_its_paths() {
        let t = setup().await;
        let (x, _) = t
            .sessions
            .start(
                t.version,
                vec![
                    declared("good.bin", b"good"),
                    declared("bad.bin", b"declared"),
                ],
            )
            .await
            .unwrap();
        relay(&t, &x, "good.bin", b"good").await;
        relay(&t, &x, "bad.bin", b"the other").await;
        match t.sessions.complete(&x.id, BTreeMap::new()).await {
            Err(Error::BadRequest(m)) => assert!(m.contains("bad.bin"), "{m}"),
            other => panic!("{other:?}"),
        }
        for key in ["models/m/1/good.bin", "models/m/1/bad.bin"] {
            assert!(t.store.head(key).await.unwrap().is_none(), "{key}");
        }
        // Repeating answers the same, and the paths can be uploaded again.
        assert!(matches!(
            t.sessions.complete(&x.id, BTreeMap::new()).await,
            Err(Error::BadRequest(_))
        ));
        let (y, _) = t
            .sessions
            .start(
                t.version,
                vec![declared("good.bin", b"good"), declared("bad.bin", b"fixed")],
            )
            .await
            .unwrap();
        relay(&t, &y, "good.bin", b"good").await;
        relay(&t, &y, "bad.bin", b"fixed").await;
        t.sessions.complete(&y.id, BTreeMap::new()).await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_completion_request_leaves_the_session_open() {
        let t = setup().await;
        let (x, _) = t
            .sessions
            .start(t.version, vec![declared("m.bin", b"m")])
            .await
            .unwrap();
        for path in ["s".repeat(300), "../m.bin".into(), "other.bin".into()] {
            let parts = BTreeMap::from([(path.clone(), vec![])]);
            assert!(
                matches!(
                    t.sessions.complete(&x.id, parts).await,
                    Err(Error::BadRequest(_))
                ),
                "{path}"
            );
        }
        relay(&t, &x, "m.bin", b"m").await;
        let (done, _) = t.sessions.complete(&x.id, BTreeMap::new()).await.unwrap();
        assert_eq!(done.state, SessionState::Complete);
    }
}
