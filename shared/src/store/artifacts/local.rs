//! The artifact store on a local directory: the embedded default, used by
//! `registry-local` with `$MR_DATA_DIR/artifacts`.
//!
//! Layout under the root directory:
//!
//! ```text
//! objects/<key>   the bytes, at their key's path (what `uri` points to)
//! sha256/<key>    sidecar: "<sha256 hex> <size> <mtime ns>"
//! tmp/            files being written
//! ```
//!
//! Writes are atomic: the bytes go to a new file in `tmp/` (same directory
//! tree, so the same file system), are fsynced, then renamed over
//! `objects/<key>`; readers see the old object or the new one, never a
//! part. Keeping temporary files and sidecars out of `objects/` means no key
//! is reserved and `list` never shows bookkeeping files.
//!
//! The SHA-256 is computed while writing and kept in the sidecar together
//! with the size and modification time of the file it describes. `head`
//! trusts the sidecar only when both still match; otherwise (the file was
//! replaced by hand, or a crash fell between the two renames) it recomputes
//! the hash from the file and rewrites the sidecar. `list` reports the hash
//! only when the sidecar is valid (it never reads whole files).
//!
//! Filesystem work runs on tokio's blocking pool.
//!
//! On a file system a path cannot be both a file and a directory, so keys
//! `a` and `a/b` cannot coexist here (they can on S3): writing one while the
//! other exists fails with [`ArtifactError::Invalid`].

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{
    ArtifactError, ArtifactList, ArtifactLocator, ArtifactMultipart, ArtifactPresign, ArtifactRead,
    ArtifactWrite, CompletedPart, ObjectInfo, validate_key, validate_prefix,
};

/// Read/write buffer for streaming copies and hashing.
const BUF_SIZE: usize = 1024 * 1024;
/// How often a rename is retried when a concurrent delete pruned its parent.
const RENAME_ATTEMPTS: usize = 5;

/// An artifact store over a directory (every capability of [`super::ArtifactStore`]).
///
/// Presigned URLs and client-driven multipart uploads are not possible on a
/// plain directory: those methods return [`ArtifactError::Unsupported`] (the
/// upload extension relays client uploads through the registry instead).
#[derive(Debug, Clone)]
pub struct LocalArtifactStore {
    root: PathBuf,
}

impl LocalArtifactStore {
    /// Open (creating if needed) a store rooted at `root`. A relative `root`
    /// is resolved against the current directory once, here.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = std::path::absolute(root.into()).map_err(|e| io_error("resolve root", e))?;
        for dir in ["objects", "sha256", "tmp"] {
            fs::create_dir_all(root.join(dir))
                .map_err(|e| io_error(&format!("create {}", root.display()), e))?;
        }
        Ok(LocalArtifactStore { root })
    }

    /// The embedded default: `<data_dir>/artifacts`.
    pub fn in_data_dir(data_dir: &Path) -> Result<Self, ArtifactError> {
        Self::open(data_dir.join("artifacts"))
    }

    /// The absolute root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bytes of `key` live (the key must be valid).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(key)
    }

    fn sidecar_path(&self, key: &str) -> PathBuf {
        self.root.join("sha256").join(key)
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Write an object atomically; `fill` streams the content into the
    /// (hashing) temporary file.
    fn write_object(
        &self,
        key: &str,
        fill: impl FnOnce(&mut HashingWriter) -> Result<(), ArtifactError>,
    ) -> Result<ObjectInfo, ArtifactError> {
        let dest = self.object_path(key);
        // Fail before writing any byte when the key collides with a "directory".
        create_parent(key, &dest)?;
        if dest.is_dir() {
            return Err(conflict(key));
        }

        let (tmp, file) = TempFile::create(self.tmp_path())?;
        let mut writer = HashingWriter::new(file);
        fill(&mut writer)?;
        let (file, sha256, size) = writer.finish();
        file.sync_all().map_err(|e| io_error("fsync", e))?;
        let mtime_ns = mtime_ns(&file.metadata().map_err(|e| io_error("stat", e))?);
        drop(file);

        // Sidecar first: if we crash before the object's rename, the sidecar
        // does not match the old object's size/mtime and `head` recomputes.
        let sidecar = Sidecar {
            sha256,
            size,
            mtime_ns,
        };
        self.write_sidecar(key, &sidecar)?;
        rename_into(key, tmp.path(), &dest)?;
        tmp.disarm();
        sync_dir(dest.parent());

        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            etag: None,
            sha256: Some(sidecar.sha256),
            last_modified_ms: Some(u64::try_from(mtime_ns / 1_000_000).unwrap_or(u64::MAX)),
        })
    }

    fn write_sidecar(&self, key: &str, sidecar: &Sidecar) -> Result<(), ArtifactError> {
        let dest = self.sidecar_path(key);
        create_parent(key, &dest)?;
        let (tmp, mut file) = TempFile::create(self.tmp_path())?;
        file.write_all(sidecar.to_line().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("write sidecar", e))?;
        drop(file);
        rename_into(key, tmp.path(), &dest)?;
        tmp.disarm();
        Ok(())
    }

    /// A valid sidecar for a file with this metadata, if there is one.
    fn read_sidecar(&self, key: &str, meta: &fs::Metadata) -> Option<Sidecar> {
        let text = fs::read_to_string(self.sidecar_path(key)).ok()?;
        Sidecar::parse(&text).filter(|s| s.size == meta.len() && s.mtime_ns == mtime_ns(meta))
    }

    fn head_blocking(&self, key: &str) -> Result<Option<ObjectInfo>, ArtifactError> {
        let mut file = match File::open(self.object_path(key)) {
            Ok(f) => f,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(io_error("open", e)),
        };
        // Metadata and hash come from the same open file, so a concurrent
        // replace cannot mix two versions.
        let meta = file.metadata().map_err(|e| io_error("stat", e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let sha256 = match self.read_sidecar(key, &meta) {
            Some(sidecar) => sidecar.sha256,
            None => {
                let sha256 = hash_reader(&mut file).map_err(|e| io_error("hash", e))?;
                let sidecar = Sidecar {
                    sha256,
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                };
                if let Err(e) = self.write_sidecar(key, &sidecar) {
                    tracing::warn!(key, error = %e, "could not refresh the sha256 sidecar");
                }
                sidecar.sha256
            }
        };
        Ok(Some(info(key, &meta, Some(sha256))))
    }

    fn delete_blocking(&self, key: &str) -> Result<(), ArtifactError> {
        let objects = self.root.join("objects");
        let sidecars = self.root.join("sha256");
        for (dir, path) in [
            (&objects, self.object_path(key)),
            (&sidecars, self.sidecar_path(key)),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => prune_empty_parents(dir, &path),
                // Missing, or a "directory" (not an object): nothing to delete.
                Err(e) if is_absent(&e) || e.kind() == ErrorKind::IsADirectory => {}
                Err(e) => return Err(io_error("delete", e)),
            }
        }
        Ok(())
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError> {
        let objects = self.root.join("objects");
        // Only walk the deepest directory the prefix fully names.
        let start_key = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if start_key.is_empty() {
            objects.clone()
        } else {
            objects.join(start_key)
        };
        let mut found = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(io_error("list", e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list", e))?;
                let file_type = entry.file_type().map_err(|e| io_error("list", e))?;
                let path = entry.path();
                if file_type.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !file_type.is_file() {
                    continue; // symlinks and special files are not objects
                }
                let Some(key) = key_of(&objects, &path) else {
                    continue;
                };
                if !key.starts_with(prefix) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if is_absent(&e) => continue, // deleted meanwhile
                    Err(e) => return Err(io_error("stat", e)),
                };
                let sha256 = self.read_sidecar(&key, &meta).map(|s| s.sha256);
                found.push(info(&key, &meta, sha256));
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn unsupported(what: &str) -> ArtifactError {
        ArtifactError::Unsupported(format!(
            "{what} is not available on the local artifact store; transfer through the registry instead"
        ))
    }
}

impl ArtifactLocator for LocalArtifactStore {
    /// `file://` + the absolute path of the object, percent-encoded.
    fn uri(&self, key: &str) -> String {
        let path = self.object_path(key);
        let mut uri = String::from("file://");
        for b in path.to_string_lossy().bytes() {
            if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
                uri.push(char::from(b));
            } else {
                uri.push_str(&format!("%{b:02X}"));
            }
        }
        uri
    }
}

#[async_trait]
impl ArtifactRead for LocalArtifactStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>, ArtifactError> {
        validate_key(key)?;
        let path = self.object_path(key);
        let key = key.to_string();
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if is_absent(&e) || e.kind() == ErrorKind::IsADirectory => {
                Err(ArtifactError::NotFound(key))
            }
            Err(e) => Err(io_error("read", e)),
        })
        .await
    }

    /// Recomputes the SHA-256 when the sidecar is missing or stale (see the
    /// module docs), which reads the whole file once.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ArtifactError> {
        validate_key(key)?;
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.head_blocking(&key)).await
    }
}

#[async_trait]
impl ArtifactList for LocalArtifactStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError> {
        validate_prefix(prefix)?;
        let (store, prefix) = (self.clone(), prefix.to_string());
        blocking(move || store.list_blocking(&prefix)).await
    }
}

#[async_trait]
impl ArtifactWrite for LocalArtifactStore {
    async fn put_file(&self, key: &str, path: &Path) -> Result<ObjectInfo, ArtifactError> {
        validate_key(key)?;
        let (store, key, path) = (self.clone(), key.to_string(), path.to_path_buf());
        blocking(move || {
            let mut source = File::open(&path).map_err(|e| {
                ArtifactError::Invalid(format!("cannot read {}: {e}", path.display()))
            })?;
            store.write_object(&key, |w| {
                let mut buf = vec![0u8; BUF_SIZE];
                loop {
                    let n = match source.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_error(&format!("read {}", path.display()), e)),
                    };
                    w.write_all(&buf[..n]).map_err(|e| io_error("write", e))?;
                }
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), ArtifactError> {
        validate_key(key)?;
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.delete_blocking(&key)).await
    }
}

/// Always [`ArtifactError::Unsupported`]: a directory cannot presign (the
/// upload extension relays the bytes through the registry instead).
#[async_trait]
impl ArtifactPresign for LocalArtifactStore {
    async fn presign_put(&self, _key: &str, _ttl: Duration) -> Result<String, ArtifactError> {
        Err(Self::unsupported("presigned upload"))
    }
}

/// Always [`ArtifactError::Unsupported`].
#[async_trait]
impl ArtifactMultipart for LocalArtifactStore {
    async fn start_multipart(&self, _key: &str) -> Result<String, ArtifactError> {
        Err(Self::unsupported("client multipart upload"))
    }

    async fn presign_part(
        &self,
        _key: &str,
        _id: &str,
        _part: i32,
        _ttl: Duration,
    ) -> Result<String, ArtifactError> {
        Err(Self::unsupported("client multipart upload"))
    }

    async fn complete_multipart(
        &self,
        _key: &str,
        _upload_id: &str,
        _parts: Vec<CompletedPart>,
    ) -> Result<ObjectInfo, ArtifactError> {
        Err(Self::unsupported("client multipart upload"))
    }

    async fn abort_multipart(&self, _key: &str, _upload_id: &str) -> Result<(), ArtifactError> {
        Err(Self::unsupported("client multipart upload"))
    }
}

/// Tests seed objects from bytes; the registry itself only stores files
/// ([`ArtifactWrite::put_file`]).
#[cfg(test)]
impl LocalArtifactStore {
    pub(crate) async fn put_bytes(
        &self,
        key: &str,
        body: &[u8],
    ) -> Result<ObjectInfo, ArtifactError> {
        validate_key(key)?;
        let (store, key, body) = (self.clone(), key.to_string(), body.to_vec());
        blocking(move || {
            store.write_object(&key, |w| {
                w.write_all(&body).map_err(|e| io_error("write", e))
            })
        })
        .await
    }
}

/// What the sidecar remembers: the hash and which file it was computed for.
struct Sidecar {
    sha256: String,
    size: u64,
    mtime_ns: u128,
}

impl Sidecar {
    fn to_line(&self) -> String {
        format!("{} {} {}\n", self.sha256, self.size, self.mtime_ns)
    }

    fn parse(text: &str) -> Option<Sidecar> {
        let mut fields = text.split_whitespace();
        let sha256 = fields.next()?.to_string();
        let size = fields.next()?.parse().ok()?;
        let mtime_ns = fields.next()?.parse().ok()?;
        (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Sidecar {
            sha256,
            size,
            mtime_ns,
        })
    }
}

/// A file writer that hashes and counts what goes through it.
struct HashingWriter {
    file: File,
    hasher: Sha256,
    size: u64,
}

impl HashingWriter {
    fn new(file: File) -> Self {
        HashingWriter {
            file,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn finish(self) -> (File, String, u64) {
        (self.file, hex::encode(self.hasher.finalize()), self.size)
    }
}

/// A temporary file removed on drop unless [`TempFile::disarm`]ed (after it
/// was renamed into place).
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<(Self, File), ArtifactError> {
        let file = File::create_new(&path).map_err(|e| io_error("create temporary file", e))?;
        Ok((TempFile { path, armed: true }, file))
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn hash_reader(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hex::encode(hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Create the parent directory of `path`; a file in the way means the key
/// collides with a shorter key.
fn create_parent(key: &str, path: &Path) -> Result<(), ArtifactError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    match fs::create_dir_all(parent) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::NotADirectory | ErrorKind::AlreadyExists
            ) =>
        {
            Err(conflict(key))
        }
        Err(e) => Err(io_error("create directory", e)),
    }
}

/// Rename `tmp` over `dest`, recreating the parent if a concurrent delete
/// pruned it in between.
fn rename_into(key: &str, tmp: &Path, dest: &Path) -> Result<(), ArtifactError> {
    for _ in 0..RENAME_ATTEMPTS {
        match fs::rename(tmp, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && tmp.exists() => create_parent(key, dest)?,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::IsADirectory | ErrorKind::DirectoryNotEmpty
                ) =>
            {
                return Err(conflict(key));
            }
            Err(e) if e.kind() == ErrorKind::NotADirectory => return Err(conflict(key)),
            Err(e) => return Err(io_error("rename", e)),
        }
    }
    Err(ArtifactError::Unavailable(format!(
        "{key}: directory kept disappearing during the write"
    )))
}

/// Remove now-empty directories from `path`'s parent up to (excluding) `root`.
fn prune_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Persist a rename (best effort: not every platform can fsync a directory).
fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// The key of a file below `objects`, if its path is valid UTF-8.
fn key_of(objects: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(objects).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn info(key: &str, meta: &fs::Metadata, sha256: Option<String>) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: meta.len(),
        etag: None,
        sha256,
        last_modified_ms: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// The path does not exist, or a component of it is a file.
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

fn conflict(key: &str) -> ArtifactError {
    ArtifactError::Invalid(format!(
        "key {key:?} conflicts with an existing key: on the local store a key cannot also be a prefix directory of another"
    ))
}

fn io_error(context: &str, e: io::Error) -> ArtifactError {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            ArtifactError::Unavailable(format!("{context}: {e}"))
        }
        // A name or path the file system refuses (ENAMETOOLONG): the key's
        // fault, not the store's, whatever `validate_key` let through.
        ErrorKind::InvalidFilename => ArtifactError::Invalid(format!(
            "{context}: the file system refuses this key as a path: {e}"
        )),
        _ => ArtifactError::Internal(format!("{context}: {e}")),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ArtifactError::Internal(format!("artifact store task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_system_refuses_are_the_keys_fault() {
        let too_long = io::Error::from(ErrorKind::InvalidFilename);
        assert!(matches!(
            io_error("open", too_long),
            ArtifactError::Invalid(_)
        ));
        let other = io::Error::from(ErrorKind::PermissionDenied);
        assert!(matches!(
            io_error("open", other),
            ArtifactError::Internal(_)
        ));
    }
}
