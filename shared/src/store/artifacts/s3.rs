//! The artifact store on the S3 API: AWS S3 or any compatible server
//! (MinIO, Ceph RGW, s3s-fs in the tests).
//!
//! - Files larger than one part (8 MiB by default) are sent as multipart
//!   uploads, a few parts in flight at a time; a failed upload is aborted so
//!   no orphan parts are billed.
//! - The SHA-256 of everything written through [`ArtifactWrite::put_file`]
//!   is stored as user metadata `x-amz-meta-sha256` (hex), because that
//!   works for multipart objects and
//!   on every server: S3's own SHA-256 checksum of a multipart object is a
//!   checksum of part checksums, not of the content. Single-request uploads
//!   also send `x-amz-checksum-sha256`, so the server verifies the bytes it
//!   received. `head` reads the metadata first, then a full-object
//!   `x-amz-checksum-sha256`.
//! - `put_file` reads a large file twice: once to hash it (the metadata must
//!   be given when the upload starts), once to upload it while hashing again;
//!   if the two hashes differ the file changed meanwhile and the upload is
//!   aborted.
//! - Request checksums are only sent when S3 requires them (the SDK's default
//!   adds CRC32 checksums to every upload and to presigned `PUT` URLs, which
//!   then only accept an empty body, and some S3-compatible servers reject
//!   them).
//! - Timeouts are bounded: connecting (2 s) and each whole operation
//!   including retries (30 s, i.e. per part for multipart uploads).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumMode, CompletedMultipartUpload,
    CompletedPart as S3CompletedPart, CreateBucketConfiguration,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{
    ArtifactError, ArtifactList, ArtifactLocator, ArtifactMultipart, ArtifactPresign, ArtifactRead,
    ArtifactWrite, CompletedPart, ObjectInfo, validate_key, validate_prefix,
};

/// User metadata name of the content hash (`x-amz-meta-sha256` on the wire).
const SHA256_METADATA: &str = "sha256";
/// S3's smallest part (except the last one).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's highest part number.
const MAX_PART_NUMBER: i32 = 10_000;
/// Read buffer for hashing files.
const READ_BUF: usize = 1024 * 1024;

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Endpoint URL of a non-AWS server (`http://127.0.0.1:9000`); implies
    /// path-style addressing. `None` uses the SDK configuration's endpoint
    /// (AWS, or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Time allowed to open a connection (default 2 s).
    pub connect_timeout: Duration,
    /// Time allowed for one operation, retries included (default 30 s). A
    /// multipart upload is one operation per part.
    pub operation_timeout: Duration,
    /// Part size of multipart uploads and the size above which they are used
    /// (default 8 MiB, at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded concurrently (default 4); memory use is about
    /// `part_size * (parts_in_flight + 2)` per upload.
    pub parts_in_flight: usize,
}

impl S3Settings {
    /// Defaults for `bucket` on the SDK configuration's endpoint.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Settings {
            bucket: bucket.into(),
            endpoint: None,
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(30),
            part_size: 8 * 1024 * 1024,
            parts_in_flight: 4,
        }
    }

    /// The same settings on a custom (non-AWS) endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
}

/// An artifact store on one S3 bucket (every capability of
/// [`super::ArtifactStore`]).
#[derive(Debug, Clone)]
pub struct S3ArtifactStore {
    client: Client,
    bucket: String,
    part_size: usize,
    parts_in_flight: usize,
}

impl S3ArtifactStore {
    /// A store on `settings.bucket`, with credentials and region from `sdk`.
    /// Path-style addressing is forced whenever a custom endpoint is set
    /// (in `settings` or in `sdk`), as non-AWS servers need it.
    pub fn new(sdk: &SdkConfig, settings: S3Settings) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_timeout(settings.operation_timeout)
            .build();
        let mut config = aws_sdk_s3::config::Builder::from(sdk)
            .timeout_config(timeouts)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = settings.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        } else if sdk.endpoint_url().is_some() {
            config = config.force_path_style(true);
        }
        S3ArtifactStore {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket,
            part_size: settings.part_size.max(MIN_PART_SIZE),
            parts_in_flight: settings.parts_in_flight.max(1),
        }
    }

    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Create the bucket unless it exists (for tests and local set-ups;
    /// production buckets are made by infrastructure code).
    pub async fn create_bucket_if_missing(&self) -> Result<(), ArtifactError> {
        let what = format!("bucket {}", self.bucket);
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => match map_sdk_error(&what, e) {
                ArtifactError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the default and must not be named.
        if let Some(region) = self
            .client
            .config()
            .region()
            .map(|r| r.as_ref().to_string())
            && region != "us-east-1"
        {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(map_sdk_error(&what, e)),
        }
    }

    /// One `PutObject` with the content hash as metadata and checksum.
    async fn put_single(
        &self,
        key: &str,
        body: Vec<u8>,
        digest: &[u8],
    ) -> Result<ObjectInfo, ArtifactError> {
        let size = body.len() as u64;
        let sha256 = hex::encode(digest);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .metadata(SHA256_METADATA, &sha256)
            .checksum_sha256(BASE64.encode(digest))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| map_sdk_error(&format!("put {key}"), e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            etag: out.e_tag().map(unquote),
            sha256: Some(sha256),
            last_modified_ms: None,
        })
    }

    fn presigning(ttl: Duration) -> Result<PresigningConfig, ArtifactError> {
        PresigningConfig::expires_in(ttl)
            .map_err(|e| ArtifactError::Invalid(format!("presign expiry: {e}")))
    }
}

#[async_trait]
impl ArtifactWrite for S3ArtifactStore {
    async fn put_file(&self, key: &str, path: &Path) -> Result<ObjectInfo, ArtifactError> {
        validate_key(key)?;
        // Small files: one request (read at most one part plus a byte).
        let (path_buf, part_size) = (path.to_path_buf(), self.part_size);
        let (head, digest) = blocking(move || {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(open(&path_buf)?, part_size as u64 + 1),
                &mut bytes,
            )
            .map_err(|e| unreadable(&path_buf, &e))?;
            let digest = Sha256::digest(&bytes);
            Ok((bytes, digest))
        })
        .await?;
        if head.len() <= self.part_size {
            return self.put_single(key, head, &digest).await;
        }
        drop(head);

        // Large files: hash, then upload while hashing again.
        let path_buf = path.to_path_buf();
        let (expected, _) = blocking(move || hash_file(&path_buf)).await?;
        let mut upload = PartUpload::start(self, key, &expected).await?;
        let (tx, mut rx) = mpsc::channel(1);
        let (path_buf, part_size) = (path.to_path_buf(), self.part_size);
        let reader = tokio::task::spawn_blocking(move || read_parts(&path_buf, part_size, &tx));
        let sent = async {
            while let Some(part) = rx.recv().await {
                upload.send(part).await?;
            }
            let (actual, size) = reader
                .await
                .map_err(|e| ArtifactError::Internal(format!("file reader failed: {e}")))??;
            if actual != expected {
                return Err(ArtifactError::Invalid(format!(
                    "{} changed while it was being uploaded",
                    path.display()
                )));
            }
            Ok((upload.complete().await?, size))
        }
        .await;
        drop(rx); // unblocks the reader if the upload stopped early
        match sent {
            Ok((etag, size)) => Ok(ObjectInfo {
                key: key.to_string(),
                size,
                etag,
                sha256: Some(expected),
                last_modified_ms: None,
            }),
            Err(e) => Err(upload.abort(e).await),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ArtifactError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_sdk_error(&format!("delete {key}"), e) {
                ArtifactError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

#[async_trait]
impl ArtifactRead for S3ArtifactStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>, ArtifactError> {
        validate_key(key)?;
        let what = format!("get {key}");
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            // Lets the SDK verify the bytes against a stored full-object checksum.
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| map_sdk_error(&what, e))?;
        let body = out.body.collect().await.map_err(|e| {
            ArtifactError::Unavailable(format!("{what}: reading the body: {}", error_chain(&e)))
        })?;
        Ok(body.to_vec())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ArtifactError> {
        validate_key(key)?;
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match map_sdk_error(&format!("head {key}"), e) {
                    ArtifactError::NotFound(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let from_metadata = out
            .metadata()
            .and_then(|m| m.get(SHA256_METADATA))
            .map(|v| v.to_ascii_lowercase())
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        // A composite (multipart) checksum ends in "-<parts>" and is not a content hash.
        let from_checksum = || {
            out.checksum_sha256()
                .and_then(|c| BASE64.decode(c).ok())
                .filter(|d| d.len() == 32)
                .map(hex::encode)
        };
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            etag: out.e_tag().map(unquote),
            sha256: from_metadata.or_else(from_checksum),
            last_modified_ms: out.last_modified().and_then(millis),
        }))
    }

    /// Streams the content through SHA-256 when the object carries no hash
    /// (objects written by other clients), so memory use stays bounded.
    async fn head_with_sha256(&self, key: &str) -> Result<Option<ObjectInfo>, ArtifactError> {
        let Some(info) = self.head(key).await? else {
            return Ok(None);
        };
        if info.sha256.is_some() {
            return Ok(Some(info));
        }
        let what = format!("hash {key}");
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        // Hash exactly the object `head` described, not a newer one.
        if let Some(etag) = &info.etag {
            request = request.if_match(format!("\"{etag}\""));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if e.code() == Some("PreconditionFailed") => {
                return Err(ArtifactError::Unavailable(format!(
                    "{what}: the object changed while it was being read, retry"
                )));
            }
            Err(e) => {
                return match map_sdk_error(&what, e) {
                    ArtifactError::NotFound(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ArtifactError::Unavailable(format!("{what}: reading the body: {}", error_chain(&e)))
            })?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some(ObjectInfo {
            size,
            etag: out.e_tag.as_deref().map(unquote).or(info.etag),
            sha256: Some(hex::encode(hasher.finalize())),
            ..info
        }))
    }
}

#[async_trait]
impl ArtifactList for S3ArtifactStore {
    /// Follows continuation tokens through every page; `sha256` is `None`.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError> {
        validate_prefix(prefix)?;
        let what = format!("list {prefix}");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_sdk_error(&what, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                found.push(ObjectInfo {
                    key: key.to_string(),
                    size: object
                        .size()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    etag: object.e_tag().map(unquote),
                    sha256: None,
                    last_modified_ms: object.last_modified().and_then(millis),
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

#[async_trait]
impl ArtifactPresign for S3ArtifactStore {
    async fn presign_put(&self, key: &str, ttl: Duration) -> Result<String, ArtifactError> {
        validate_key(key)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(Self::presigning(ttl)?)
            .await
            .map_err(|e| map_sdk_error(&format!("presign put {key}"), e))?;
        Ok(request.uri().to_string())
    }
}

#[async_trait]
impl ArtifactMultipart for S3ArtifactStore {
    async fn start_multipart(&self, key: &str) -> Result<String, ArtifactError> {
        validate_key(key)?;
        let what = format!("start multipart {key}");
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error(&what, e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| ArtifactError::Internal(format!("{what}: no upload id in the response")))
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        ttl: Duration,
    ) -> Result<String, ArtifactError> {
        validate_key(key)?;
        validate_upload_id(upload_id)?;
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(ArtifactError::Invalid(format!(
                "part number {part_number}: must be between 1 and {MAX_PART_NUMBER}"
            )));
        }
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .presigned(Self::presigning(ttl)?)
            .await
            .map_err(|e| map_sdk_error(&format!("presign part {part_number} of {key}"), e))?;
        Ok(request.uri().to_string())
    }

    /// The returned info comes from a `HEAD` after completion (so it has the
    /// size); `sha256` is `None` as the registry never saw the bytes.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ObjectInfo, ArtifactError> {
        validate_key(key)?;
        validate_upload_id(upload_id)?;
        if parts.is_empty() {
            return Err(ArtifactError::Invalid(
                "a multipart upload needs at least one part".into(),
            ));
        }
        let mut parts = parts;
        parts.sort_by_key(|p| p.number);
        let what = format!("complete multipart {key}");
        let parts = parts
            .into_iter()
            .map(|p| {
                S3CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(p.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk_error(&what, e))?;
        self.head(key).await?.ok_or_else(|| {
            ArtifactError::Internal(format!("{what}: object missing right after completion"))
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ArtifactError> {
        validate_key(key)?;
        validate_upload_id(upload_id)?;
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| map_sdk_error(&format!("abort multipart {key}"), e))?;
        Ok(())
    }
}

impl ArtifactLocator for S3ArtifactStore {
    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// A multipart upload driven by the registry itself, with a bounded number
/// of parts in flight.
struct PartUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    max_in_flight: usize,
    next_number: i32,
    in_flight: JoinSet<Result<S3CompletedPart, ArtifactError>>,
    done: Vec<S3CompletedPart>,
}

impl PartUpload {
    async fn start(
        store: &S3ArtifactStore,
        key: &str,
        sha256: &str,
    ) -> Result<Self, ArtifactError> {
        let what = format!("start upload of {key}");
        let out = store
            .client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(key)
            .metadata(SHA256_METADATA, sha256)
            .send()
            .await
            .map_err(|e| map_sdk_error(&what, e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| {
                ArtifactError::Internal(format!("{what}: no upload id in the response"))
            })?
            .to_string();
        Ok(PartUpload {
            client: store.client.clone(),
            bucket: store.bucket.clone(),
            key: key.to_string(),
            upload_id,
            max_in_flight: store.parts_in_flight,
            next_number: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
        })
    }

    /// Queue the next part, waiting while too many are in flight.
    async fn send(&mut self, body: Vec<u8>) -> Result<(), ArtifactError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.join_one().await?;
        }
        if self.next_number > MAX_PART_NUMBER {
            return Err(ArtifactError::Invalid(format!(
                "{}: more than {MAX_PART_NUMBER} parts; raise the part size",
                self.key
            )));
        }
        let number = self.next_number;
        self.next_number += 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(body));
        let what = format!("upload part {number} of {}", self.key);
        self.in_flight.spawn(async move {
            let out = request.send().await.map_err(|e| map_sdk_error(&what, e))?;
            Ok(S3CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), ArtifactError> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(part))) => {
                self.done.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(ArtifactError::Internal(format!(
                "part upload task failed: {e}"
            ))),
        }
    }

    /// Wait for the remaining parts and assemble the object; returns its ETag.
    async fn complete(&mut self) -> Result<Option<String>, ArtifactError> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk_error(&format!("complete upload of {}", self.key), e))?;
        Ok(out.e_tag().map(unquote))
    }

    /// Stop the parts still running and discard the upload (best effort: a
    /// bucket lifecycle rule should also expire incomplete uploads). Returns
    /// the error that caused the abort.
    async fn abort(&mut self, cause: ArtifactError) -> ArtifactError {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key = %self.key, upload_id = %self.upload_id, error = %error_chain(&e),
                "could not abort a failed multipart upload");
        }
        cause
    }
}

/// Translate an SDK error: the HTTP status and S3 error code decide the kind.
fn map_sdk_error<E>(what: &str, err: SdkError<E>) -> ArtifactError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if !matches!(err, SdkError::ServiceError(_)) {
        let detail = format!("{what}: {}", error_chain(&err));
        return match err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => ArtifactError::Unavailable(detail),
            _ => ArtifactError::Internal(detail),
        };
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code();
    let detail = || {
        let mut detail = format!("{what}: {}", code.unwrap_or("error"));
        if let Some(message) = err.message() {
            detail.push_str(&format!(": {message}"));
        }
        if let Some(status) = status {
            detail.push_str(&format!(" (HTTP {status})"));
        }
        detail
    };
    match (code, status) {
        // The store's own bucket is missing: a deployment error, not a missing object.
        (Some("NoSuchBucket"), _) => ArtifactError::Internal(detail()),
        (Some("NoSuchKey" | "NotFound" | "NoSuchUpload"), _) | (_, Some(404)) => {
            ArtifactError::NotFound(detail())
        }
        (
            Some(
                "AccessDenied"
                | "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired"
                | "RequestTimeTooSkewed"
                | "AuthorizationHeaderMalformed",
            ),
            _,
        )
        | (_, Some(401 | 403)) => ArtifactError::Denied(detail()),
        (Some("NotImplemented"), _) | (_, Some(501)) => ArtifactError::Unsupported(detail()),
        (Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout"), _)
        | (_, Some(500..=599)) => ArtifactError::Unavailable(detail()),
        (_, Some(400..=499)) => ArtifactError::Invalid(detail()),
        _ => ArtifactError::Internal(detail()),
    }
}

/// "outer: inner: root cause", without the Debug dump `DisplayErrorContext` adds.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn validate_upload_id(upload_id: &str) -> Result<(), ArtifactError> {
    if upload_id.trim().is_empty() {
        return Err(ArtifactError::Invalid("upload id must not be empty".into()));
    }
    Ok(())
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn millis(time: &DateTime) -> Option<u64> {
    time.to_millis().ok().and_then(|ms| u64::try_from(ms).ok())
}

fn open(path: &Path) -> Result<std::fs::File, ArtifactError> {
    std::fs::File::open(path).map_err(|e| unreadable(path, &e))
}

fn unreadable(path: &Path, e: &std::io::Error) -> ArtifactError {
    ArtifactError::Invalid(format!("cannot read {}: {e}", path.display()))
}

/// SHA-256 (hex) and size of a file, read in 1 MiB blocks.
fn hash_file(path: &Path) -> Result<(String, u64), ArtifactError> {
    let mut file = open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut size = 0u64;
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => return Ok((hex::encode(hasher.finalize()), size)),
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(path, &e)),
        }
    }
}

/// Read a file in `part_size` pieces into `parts`, hashing as it goes;
/// returns the SHA-256 (hex) and size of what was read. Stops early (with
/// an error the caller ignores) when the receiver is gone.
fn read_parts(
    path: &Path,
    part_size: usize,
    parts: &mpsc::Sender<Vec<u8>>,
) -> Result<(String, u64), ArtifactError> {
    let file = open(path)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut reader = std::io::Read::take(file, 0);
    loop {
        let mut part = Vec::with_capacity(part_size);
        reader.set_limit(part_size as u64);
        std::io::Read::read_to_end(&mut reader, &mut part).map_err(|e| unreadable(path, &e))?;
        if part.is_empty() {
            return Ok((hex::encode(hasher.finalize()), size));
        }
        hasher.update(&part);
        size += part.len() as u64;
        let last = part.len() < part_size;
        parts
            .blocking_send(part)
            .map_err(|_| ArtifactError::Internal("upload stopped".into()))?;
        if last {
            return Ok((hex::encode(hasher.finalize()), size));
        }
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
    fn etags_lose_their_quotes() {
        assert_eq!(unquote("\"abc-3\""), "abc-3");
        assert_eq!(unquote("abc"), "abc");
    }

    #[test]
    fn tiny_part_sizes_are_raised_to_the_s3_minimum() {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let mut settings = S3Settings::new("b").with_endpoint("http://127.0.0.1:1");
        settings.part_size = 1;
        let store = S3ArtifactStore::new(&sdk, settings);
        assert_eq!(store.part_size, MIN_PART_SIZE);
        assert_eq!(store.uri("models/a.bin"), "s3://b/models/a.bin");
    }
}
