//! Uploads through the registry (an extension outside the Kubeflow
//! contract): a client asks for upload URLs for a model version's files,
//! sends the bytes straight to the bucket, and calls completion, which
//! checks every file's size and SHA-256 and registers them (the same path
//! as storage events, run in-process: see `uploads`).
//!
//! - On S3 the URLs are presigned: one `PUT` per file, or, for files larger
//!   than the part size, a multipart upload with one presigned URL per part
//!   (the client reports the parts' ETags at completion).
//! - On the local artifact store (the embedded default) nothing can be
//!   presigned: the URLs point back at the registry (a relay endpoint whose
//!   path carries a random per-file token), which streams the body into the
//!   store.
//!
//! A session is one table item (`pk = UPLOAD`, `sk = <id>`), written with
//! optimistic versions. Completion is idempotent: repeating it after success
//! returns the same result. A size or digest mismatch deletes the offending
//! objects, fails the session and is answered 400 (start a new session).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::entity::{Entity, Family};
use super::error::{Error, Result, bad_request};
use super::uploads::{Outcome, Registration, Uploads, storage_error};
use crate::store::artifacts::{ArtifactError, CompletedPart, ObjectInfo, validate_key};
use crate::store::port::{Cond, Item, StoreError};

/// Partition of the session items.
const SESSIONS: &str = "UPLOAD";
/// Most files in one session.
pub const MAX_FILES: usize = 1000;
/// S3's limits: parts per upload, and object size.
const MAX_PARTS: u64 = 10_000;
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;

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
    /// A file did not match what was declared; its object was deleted.
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
    /// Why the session failed.
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

/// The upload extension's service.
#[derive(Clone)]
pub struct UploadSessions {
    uploads: Uploads,
    settings: UploadSettings,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

impl UploadSessions {
    pub fn new(uploads: Uploads, settings: UploadSettings) -> Self {
        UploadSessions { uploads, settings }
    }

    pub fn uploads(&self) -> &Uploads {
        &self.uploads
    }

    /// Open a session for `files` of model version `version_id`: the model
    /// artifact is created `PENDING` if the version has none yet, and every
    /// file gets its transfer.
    pub async fn start(
        &self,
        version_id: u64,
        files: Vec<FileRequest>,
    ) -> Result<(Session, Vec<Transfer>)> {
        let registry = self.uploads.registry();
        let version = registry.get(Family::ModelVersion, None, version_id).await?;
        let model_id = version
            .parent
            .ok_or_else(|| Error::Internal(format!("model version {version_id} has no model")))?;
        let model = registry
            .get(Family::RegisteredModel, None, model_id)
            .await?;
        let folder = self
            .uploads
            .convention()
            .folder(&model.name, &version.name)?;
        let files = check_files(&folder, files)?;
        let artifact = self.uploads.prepare(&model, &version).await?;

        let store = self.uploads.store();
        let ttl = self.settings.ttl;
        let mut session_files = Vec::with_capacity(files.len());
        let mut transfers = Vec::with_capacity(files.len());
        for f in files {
            let key = format!("{folder}{}", f.path);
            let mut file = SessionFile {
                path: f.path,
                key: key.clone(),
                size: f.size,
                sha256: f.sha256,
                multipart: None,
                token: None,
            };
            let part_size = self.settings.part_size.max(f.size.div_ceil(MAX_PARTS));
            let transfer = if f.size > part_size {
                match store.start_multipart(&key).await {
                    Ok(upload_id) => {
                        let parts = f.size.div_ceil(part_size);
                        let mut urls = Vec::with_capacity(parts as usize);
                        for n in 1..=parts {
                            let number = i32::try_from(n).unwrap_or(i32::MAX);
                            urls.push(
                                store
                                    .presign_part(&key, &upload_id, number, ttl)
                                    .await
                                    .map_err(storage_error)?,
                            );
                        }
                        file.multipart = Some(Multipart {
                            upload_id: upload_id.clone(),
                            part_size,
                            parts,
                        });
                        Some(Transfer::Parts {
                            upload_id,
                            part_size,
                            urls,
                        })
                    }
                    Err(ArtifactError::Unsupported(_)) => None,
                    Err(e) => return Err(storage_error(e)),
                }
            } else {
                match store.presign_put(&key, ttl).await {
                    Ok(url) => Some(Transfer::Put { url }),
                    Err(ArtifactError::Unsupported(_)) => None,
                    Err(e) => return Err(storage_error(e)),
                }
            };
            let transfer = transfer.unwrap_or_else(|| {
                let token = random_token();
                file.token = Some(token.clone());
                Transfer::Relay { token }
            });
            session_files.push(file);
            transfers.push(transfer);
        }
        let now = now_ms();
        let session = Session {
            id: random_token(),
            model_version_id: version.id,
            model_artifact_id: artifact.id,
            folder,
            state: SessionState::Pending,
            create_ms: now,
            expires_ms: now.saturating_add(ttl.as_millis() as u64),
            files: session_files,
            problems: Vec::new(),
            registration: None,
        };
        self.save(&session, None).await?;
        tracing::info!(session = %session.id, version = version.id, files = session.files.len(), "upload session opened");
        Ok((session, transfers))
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

    /// Store the relayed bytes (already in a local file) under the file's key.
    pub async fn store_relayed(
        &self,
        file: &SessionFile,
        path: &std::path::Path,
    ) -> Result<ObjectInfo> {
        self.uploads
            .store()
            .put_file(&file.key, path)
            .await
            .map_err(storage_error)
    }

    /// Finish a session: assemble multipart files from their `parts` (by
    /// path), check every file's size and SHA-256 against the declaration,
    /// and register them. A missing file is a 400 and the session stays
    /// open; a mismatch deletes the object and fails the session.
    pub async fn complete(
        &self,
        id: &str,
        mut parts: BTreeMap<String, Vec<CompletedPart>>,
    ) -> Result<(Session, Entity)> {
        let (mut session, version) = self.load(id).await?;
        let registry = self.uploads.registry();
        match session.state {
            SessionState::Complete => {
                let artifact = registry
                    .get(Family::Artifact, None, session.model_artifact_id)
                    .await?;
                return Ok((session, artifact));
            }
            SessionState::Failed => {
                return bad_request(format!(
                    "upload {id} failed ({}); start a new one",
                    session.problems.join("; ")
                ));
            }
            SessionState::Pending => self.check_open(&session)?,
        }
        if let Some(unknown) = parts
            .keys()
            .find(|p| !session.files.iter().any(|f| &f.path == *p))
        {
            return bad_request(format!("upload {id} has no file '{unknown}'"));
        }
        let store = self.uploads.store();
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
                            return bad_request(format!("{}: {why}", file.path));
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
                                file.path
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
                None => missing.push(file.path.clone()),
                Some(info) if info.size != file.size => mismatched.push((
                    file,
                    format!(
                        "{}: {} bytes uploaded, {} declared",
                        file.path, info.size, file.size
                    ),
                )),
                Some(info) if info.sha256.as_deref() != Some(file.sha256.as_str()) => mismatched
                    .push((
                        file,
                        format!(
                            "{}: sha256 {} uploaded, {} declared",
                            file.path,
                            info.sha256.as_deref().unwrap_or("unknown"),
                            file.sha256
                        ),
                    )),
                Some(info) => found.push((file.key.clone(), Some(info))),
            }
        }
        if !mismatched.is_empty() {
            let problems: Vec<String> = mismatched.iter().map(|(_, why)| why.clone()).collect();
            for (file, _) in &mismatched {
                store.delete(&file.key).await.map_err(storage_error)?;
            }
            // Record the deletions so the artifact does not show bad bytes.
            let removed = mismatched
                .iter()
                .map(|(file, _)| (file.key.clone(), None))
                .collect();
            self.uploads.observe(removed).await?;
            session.state = SessionState::Failed;
            session.problems = problems.clone();
            self.save(&session, Some(version)).await?;
            tracing::warn!(session = %id, problems = ?problems, "upload rejected");
            return bad_request(format!(
                "upload {id} rejected, the mismatched files were deleted: {}",
                problems.join("; ")
            ));
        }
        if !missing.is_empty() {
            return bad_request(format!(
                "upload {id}: not uploaded yet: {}",
                missing.join(", ")
            ));
        }
        let registration = match self.uploads.observe(found).await? {
            Outcome::Registered { registration, .. } => registration,
            Outcome::Ignored { reason } => {
                return Err(Error::Internal(format!(
                    "upload {id} is outside the convention: {reason}"
                )));
            }
        };
        session.state = SessionState::Complete;
        session.registration = Some(registration);
        match self.save(&session, Some(version)).await {
            Ok(()) => {}
            // A concurrent completion won; it registered the same files.
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let artifact = registry
            .get(Family::Artifact, None, session.model_artifact_id)
            .await?;
        tracing::info!(session = %id, artifact = artifact.id, "upload complete");
        Ok((session, artifact))
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
        let missing = || Error::NotFound(format!("upload {id} not found"));
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(missing());
        }
        let item = self
            .uploads
            .registry()
            .table()
            .get(SESSIONS, id)
            .await?
            .ok_or_else(missing)?;
        let session = serde_json::from_str(&item.body)
            .map_err(|e| Error::Internal(format!("corrupt upload session {id}: {e}")))?;
        Ok((session, item.version))
    }

    /// Write a session: new (`None`) or replacing the version read.
    async fn save(&self, session: &Session, read: Option<u64>) -> Result<()> {
        let body = serde_json::to_string(session).map_err(|e| Error::Internal(e.to_string()))?;
        let (version, cond) = match read {
            Some(v) => (v + 1, Cond::Version(v)),
            None => (1, Cond::Absent),
        };
        match self
            .uploads
            .registry()
            .table()
            .put(
                Item::plain(SESSIONS, session.id.as_str(), version, body),
                cond,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed) => Err(Error::Conflict(format!(
                "upload {} changed concurrently",
                session.id
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// Validate the declared files: relative paths that make valid keys, no
/// duplicates, sizes within S3's limit, SHA-256 as 64 hex digits.
fn check_files(folder: &str, files: Vec<FileRequest>) -> Result<Vec<FileRequest>> {
    if files.is_empty() {
        return bad_request("files: list at least one file");
    }
    if files.len() > MAX_FILES {
        return bad_request(format!("files: at most {MAX_FILES} per upload"));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(files.len());
    for mut f in files {
        let key = format!("{folder}{}", f.path);
        if f.path.is_empty() {
            return bad_request("files: a path is empty");
        }
        validate_key(&key)
            .map_err(|e| Error::BadRequest(format!("files: path '{}': {e}", f.path)))?;
        if !seen.insert(f.path.clone()) {
            return bad_request(format!("files: '{}' is listed twice", f.path));
        }
        if f.size > MAX_OBJECT_SIZE {
            return bad_request(format!("files: '{}' is larger than 5 TiB", f.path));
        }
        f.sha256 = f.sha256.to_ascii_lowercase();
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad_request(format!("files: '{}': sha256 must be 64 hex digits", f.path));
        }
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> FileRequest {
        FileRequest {
            path: path.into(),
            size: 1,
            sha256: "A".repeat(64),
        }
    }

    #[test]
    fn declared_files_are_checked() {
        let ok = check_files("models/m/1/", vec![file("model.onnx"), file("sub/x.bin")]).unwrap();
        assert_eq!(ok[0].sha256, "a".repeat(64));
        for bad in [
            vec![],
            vec![file("")],
            vec![file("../x")],
            vec![file("/abs")],
            vec![file("a//b")],
            vec![file("x"), file("x")],
            vec![FileRequest {
                sha256: "z".repeat(64),
                ..file("x")
            }],
            vec![FileRequest {
                size: MAX_OBJECT_SIZE + 1,
                ..file("x")
            }],
        ] {
            assert!(check_files("models/m/1/", bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
