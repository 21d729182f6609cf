//! The artifact store port: where the bytes of model files live.
//!
//! The metadata of a model (names, versions, artifact records) lives in the
//! table behind [`crate::store::port`]; the files those records point to live
//! in an artifact store. Two adapters implement it:
//!
//! - [`s3::S3ArtifactStore`]: any S3 API (AWS, MinIO, Ceph, s3s-fs), with
//!   multipart uploads and presigned URLs so clients can move large files
//!   without the bytes passing through the registry;
//! - [`local::LocalArtifactStore`]: a directory (the embedded default keeps it
//!   under `$MR_DATA_DIR/artifacts`), with atomic writes but no presigning.
//!
//! The port is split by capability, so that a user depends only on what it
//! uses, and its IAM policy can say the same (S3 actions in brackets):
//!
//! | capability | methods | S3 |
//! |---|---|---|
//! | [`ArtifactLocator`] | `uri` | none (no request) |
//! | [`ArtifactRead`] | `head`, `head_with_sha256`, `get` | `s3:GetObject` (GET and HEAD) |
//! | [`ArtifactList`] | `list` | `s3:ListBucket` |
//! | [`ArtifactWrite`] | `put_file`, `delete` | `s3:PutObject`, `s3:DeleteObject` |
//! | [`ArtifactPresign`] | `presign_put` | `s3:PutObject` (the URL acts as its signer) |
//! | [`ArtifactMultipart`] | `start_multipart`, `presign_part`, `complete_multipart`, `abort_multipart` | `s3:PutObject`, `s3:AbortMultipartUpload` |
//!
//! The registrar (storage events) reads; the upload extension uses every
//! capability ([`ArtifactStore`]). On S3, HEAD and GET of a missing key
//! answer 404 only to a caller that may also list the bucket
//! (`s3:ListBucket`), and 403 otherwise: a reader that must tell "absent"
//! from "denied" needs that permission too.
//!
//! Keys are `/`-separated relative paths such as `models/m1/v2/model.onnx`.
//! Every adapter validates them with [`validate_key`], so a key that works on
//! one backend works on the other.

pub mod local;
pub mod s3;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalArtifactStore;
pub use s3::{S3ArtifactStore, S3Settings};

/// Longest key accepted, in bytes (the S3 limit).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest segment of a key (between `/`s) accepted, in bytes: a segment is
/// a file or directory name on the local store, and file systems take at
/// most 255 bytes there. S3 would take more; refusing it everywhere keeps a
/// key valid on every backend.
pub const MAX_SEGMENT_LEN: usize = 255;

/// What a store knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The backend's entity tag, without quotes, when it has one (S3 does;
    /// the local store does not). For multipart objects on S3 it is not a
    /// content hash (`<md5 of part md5s>-<part count>`).
    pub etag: Option<String>,
    /// SHA-256 of the content, lowercase hex, when known. Known for objects
    /// written with [`ArtifactWrite::put_file`]; not known for objects
    /// uploaded by clients through presigned URLs, nor in the results of
    /// [`ArtifactList::list`] on S3 (that would cost one request per key).
    pub sha256: Option<String>,
    /// Last modification time, milliseconds since the Unix epoch, when known.
    pub last_modified_ms: Option<u64>,
}

/// One uploaded part of a client-driven multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number, as given to [`ArtifactMultipart::presign_part`].
    pub number: i32,
    /// The `ETag` response header of the part's upload, verbatim.
    pub etag: String,
}

/// Why an artifact store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// The object (or multipart upload) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend refused the credentials or the signature.
    #[error("access denied: {0}")]
    Denied(String),
    /// This backend cannot do that (e.g. presigning on the local store).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The backend could not be reached or timed out; retrying may help.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request is wrong: a bad key, part list or expiry.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else: a bug, a misconfiguration, a local I/O failure.
    #[error("artifact store error: {0}")]
    Internal(String),
}

/// Names objects: what every capability shares (no request, no permission).
pub trait ArtifactLocator: Send + Sync + 'static {
    /// Where the object lives, as a URI for artifact records
    /// (`s3://bucket/key`, `file:///abs/path`). Does not check existence.
    fn uri(&self, key: &str) -> String;
}

/// Reading objects (S3: `s3:GetObject`, which covers HEAD). Keys are
/// checked with [`validate_key`] before any I/O, here and below.
#[async_trait]
pub trait ArtifactRead: ArtifactLocator {
    /// The whole content of `key` (meant for small objects, such as a
    /// manifest).
    async fn get(&self, key: &str) -> Result<Vec<u8>, ArtifactError>;

    /// What is known about `key`, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ArtifactError>;

    /// Like [`ArtifactRead::head`], with `sha256` always filled in: from
    /// what the object carries (metadata, a full-object checksum, the local
    /// sidecar) or else computed from its content, which costs one full read
    /// (streamed where the backend can). `None` when the object does not exist.
    async fn head_with_sha256(&self, key: &str) -> Result<Option<ObjectInfo>, ArtifactError> {
        let Some(mut info) = self.head(key).await? else {
            return Ok(None);
        };
        if info.sha256.is_none() {
            let bytes = match self.get(key).await {
                Ok(bytes) => bytes,
                Err(ArtifactError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            use sha2::Digest as _;
            info.size = bytes.len() as u64;
            info.sha256 = Some(hex::encode(sha2::Sha256::digest(&bytes)));
        }
        Ok(Some(info))
    }
}

/// Listing keys (S3: `s3:ListBucket` on the bucket).
#[async_trait]
pub trait ArtifactList: ArtifactLocator {
    /// Every object whose key starts with `prefix` (a string prefix, not a
    /// directory: `models/a` matches `models/ab/x`), sorted by key. An empty
    /// prefix lists everything.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError>;
}

/// Writing and removing objects (S3: `s3:PutObject`, `s3:DeleteObject`).
#[async_trait]
pub trait ArtifactWrite: ArtifactLocator {
    /// Store the file at `path` under `key`, replacing any previous object,
    /// streaming it: memory use stays bounded (a few parts on S3) whatever
    /// the file size. A `path` that cannot be read is
    /// [`ArtifactError::Invalid`].
    async fn put_file(&self, key: &str, path: &Path) -> Result<ObjectInfo, ArtifactError>;

    /// Remove `key`. Removing a missing key succeeds (as on S3).
    async fn delete(&self, key: &str) -> Result<(), ArtifactError>;
}

/// Letting clients upload one object without credentials (S3: the URL acts
/// with its signer's `s3:PutObject`). [`ArtifactError::Unsupported`] where
/// nothing can be presigned (the local store).
#[async_trait]
pub trait ArtifactPresign: ArtifactLocator {
    /// A URL that lets anyone holding it `PUT` the object (one request, no
    /// extra headers needed) for `ttl`.
    async fn presign_put(&self, key: &str, ttl: Duration) -> Result<String, ArtifactError>;
}

/// Client-driven multipart uploads (S3: `s3:PutObject` for starting,
/// parts and completing; `s3:AbortMultipartUpload`).
/// [`ArtifactError::Unsupported`] on the local store.
#[async_trait]
pub trait ArtifactMultipart: ArtifactLocator {
    /// Begin a multipart upload whose parts clients send through
    /// [`ArtifactMultipart::presign_part`]; returns the upload id.
    async fn start_multipart(&self, key: &str) -> Result<String, ArtifactError>;

    /// A URL to `PUT` part `part_number` (1..=10000) of an upload. Every part
    /// but the last must be at least 5 MiB.
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        ttl: Duration,
    ) -> Result<String, ArtifactError>;

    /// Assemble the listed parts (in any order: they are joined by part
    /// number) into the object.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ObjectInfo, ArtifactError>;

    /// Discard an unfinished upload and its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ArtifactError>;
}

/// Every capability: what both adapters implement, what configuration
/// builds, and what the upload extension uses (it reads, lists, writes,
/// presigns and drives multipart uploads). Narrow it to a capability where
/// less is used: `Arc<dyn ArtifactStore>` coerces to `Arc<dyn ArtifactRead>`.
pub trait ArtifactStore:
    ArtifactRead + ArtifactList + ArtifactWrite + ArtifactPresign + ArtifactMultipart
{
}

impl<T> ArtifactStore for T where
    T: ArtifactRead + ArtifactList + ArtifactWrite + ArtifactPresign + ArtifactMultipart + ?Sized
{
}

/// Check a key: non-empty, at most [`MAX_KEY_LEN`] bytes, relative (no
/// leading `/`), no empty, `.` or `..` segments (so no `//` and no trailing
/// `/`), no segment over [`MAX_SEGMENT_LEN`] bytes, no control characters
/// and no backslash. These rules keep keys safe as file paths and identical
/// in meaning on every backend.
pub fn validate_key(key: &str) -> Result<(), ArtifactError> {
    let invalid = |why: &str| Err(ArtifactError::Invalid(format!("key {key:?}: {why}")));
    if key.is_empty() {
        return invalid("must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return invalid("must not start with '/'");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return invalid("must not contain control characters or '\\'");
    }
    for segment in key.split('/') {
        match segment {
            "" => return invalid("must not contain empty segments ('//' or a trailing '/')"),
            "." | ".." => return invalid("must not contain '.' or '..' segments"),
            s if s.len() > MAX_SEGMENT_LEN => {
                return Err(ArtifactError::Invalid(format!(
                    "key {key:?}: the segment of {} bytes starting {:?} is longer than \
                     {MAX_SEGMENT_LEN} bytes (the longest file or folder name)",
                    s.len(),
                    s.chars().take(16).collect::<String>()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Check a listing prefix: like a key, but it may be empty and may end with
/// `/` (`models/` lists a "folder").
pub fn validate_prefix(prefix: &str) -> Result<(), ArtifactError> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some("") => Err(ArtifactError::Invalid(
            "prefix \"/\": must not start with '/'".into(),
        )),
        Some(dir) => validate_key(dir),
        None => validate_key(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "models/m1/v2/model.onnx",
            ".gitattributes",
            "a/..b/c.",
            "dir/with space/ü.bin",
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn rejects_keys_that_escape_or_are_ambiguous() {
        for key in [
            "", "/abs", "a/../b", "..", "./a", "a//b", "a/", "a\\b", "a\0b", "a\nb",
        ] {
            assert!(
                matches!(validate_key(key), Err(ArtifactError::Invalid(_))),
                "{key:?}"
            );
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn segments_are_at_most_255_bytes_as_file_names() {
        let longest = "s".repeat(MAX_SEGMENT_LEN);
        assert_eq!(validate_key(&format!("a/{longest}/b")), Ok(()));
        assert_eq!(validate_key(&longest), Ok(()));
        for key in [
            "s".repeat(MAX_SEGMENT_LEN + 1),
            format!("a/{}", "s".repeat(300)),
            format!("{}/b", "s".repeat(300)),
            // 86 characters, 258 bytes.
            format!("a/{}", "😀".repeat(64) + "ab"),
        ] {
            assert!(
                matches!(validate_key(&key), Err(ArtifactError::Invalid(m)) if m.contains("255")),
                "{key}"
            );
        }
        assert!(validate_prefix(&format!("{}/", "s".repeat(300))).is_err());
    }

    #[test]
    fn prefixes_may_be_empty_or_end_with_a_slash() {
        for prefix in ["", "models/", "models/m", "a/b/"] {
            assert_eq!(validate_prefix(prefix), Ok(()), "{prefix}");
        }
        for prefix in ["/", "/a", "a//", "../", "a/../"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        use sha2::{Digest, Sha256};
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
