//! The artifact store port: one contract suite run against both adapters
//! (the local directory store on a temporary directory, the S3 store on a
//! real s3s-fs server), then what only one backend does: multipart, presigned
//! URLs used over plain HTTP and credential errors on S3; atomic files,
//! sidecars and `Unsupported` presigning on the local store.
//!
//! The S3 tests need the server that `make test` starts
//! (`tests/servers/servers.sh start`): they read `MR_TEST_S3_ENDPOINT`,
//! `MR_TEST_S3_ACCESS_KEY` and `MR_TEST_S3_SECRET_KEY`, or else
//! `.cache/servers/env` at the workspace root. Every test uses its own bucket,
//! so they run in parallel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use registry::store::artifacts::{
    ArtifactError, ArtifactList, ArtifactLocator, ArtifactMultipart, ArtifactPresign, ArtifactRead,
    ArtifactStore, ArtifactWrite, CompletedPart, LocalArtifactStore, ObjectInfo, S3ArtifactStore,
    S3Settings,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MB: usize = 1024 * 1024;

// ---------------------------------------------------------------- helpers

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic, incompressible-looking bytes (so a wrong offset shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, ArtifactError>, what: &str) {
    assert!(
        matches!(result, Err(ArtifactError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

fn keys(infos: &[ObjectInfo]) -> Vec<&str> {
    infos.iter().map(|i| i.key.as_str()).collect()
}

/// Storing bytes, for the tests: the port stores files only (the registry
/// never holds a whole object in memory to write it), so the bytes go
/// through a temporary file and [`ArtifactWrite::put_file`].
trait PutBytes {
    async fn put(&self, key: &str, body: &[u8]) -> Result<ObjectInfo, ArtifactError>;
}

impl<S: ArtifactWrite + ?Sized> PutBytes for S {
    async fn put(&self, key: &str, body: &[u8]) -> Result<ObjectInfo, ArtifactError> {
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        std::fs::write(file.path(), body).expect("write temporary file");
        self.put_file(key, file.path()).await
    }
}

// ---------------------------------------------------------------- backends

fn local_store() -> (LocalArtifactStore, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalArtifactStore::in_data_dir(dir.path()).expect("open local store");
    (store, dir)
}

struct S3Env {
    endpoint: String,
    access_key: String,
    secret_key: String,
}

/// The test server's address: from the environment, else from the file
/// `servers.sh start` writes.
fn s3_env() -> S3Env {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap_or(&manifest_dir);
    let file = workspace.join(".cache/servers/env");
    let from_file = || -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "no S3 test server: MR_TEST_S3_ENDPOINT is not set and {} cannot be read ({e}). \
                 Run `make test`, or start the servers with `bash tests/servers/servers.sh start` \
                 and export .cache/servers/env.",
                file.display()
            )
        });
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let (endpoint, access_key, secret_key) = match var("MR_TEST_S3_ENDPOINT") {
        Some(endpoint) => (
            endpoint,
            var("MR_TEST_S3_ACCESS_KEY"),
            var("MR_TEST_S3_SECRET_KEY"),
        ),
        None => {
            let vars = from_file();
            let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let endpoint = get("MR_TEST_S3_ENDPOINT").unwrap_or_else(|| {
                panic!(
                    "{} has no MR_TEST_S3_ENDPOINT; rerun `make test`",
                    file.display()
                )
            });
            (
                endpoint,
                get("MR_TEST_S3_ACCESS_KEY"),
                get("MR_TEST_S3_SECRET_KEY"),
            )
        }
    };
    S3Env {
        endpoint,
        access_key: access_key.expect("MR_TEST_S3_ACCESS_KEY is not set"),
        secret_key: secret_key.expect("MR_TEST_S3_SECRET_KEY is not set"),
    }
}

fn sdk_config(access_key: &str, secret_key: &str) -> SdkConfig {
    SdkConfig::builder()
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key, secret_key, None, None, "tests",
        )))
        .behavior_version(BehaviorVersion::latest())
        .build()
}

fn unique_bucket() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

fn s3_store_on(bucket: &str, access_key: &str, secret_key: &str) -> S3ArtifactStore {
    let env = s3_env();
    let settings = S3Settings::new(bucket).with_endpoint(env.endpoint);
    S3ArtifactStore::new(&sdk_config(access_key, secret_key), settings)
}

/// A store on a new, empty bucket of the test server.
async fn s3_store() -> S3ArtifactStore {
    let env = s3_env();
    let store = s3_store_on(&unique_bucket(), &env.access_key, &env.secret_key);
    if let Err(e) = store.create_bucket_if_missing().await {
        panic!(
            "cannot create a bucket on the S3 test server at {} ({e}); is it running? \
             Start it with `bash tests/servers/servers.sh start` (or run `make test`).",
            env.endpoint
        );
    }
    store
}

// ---------------------------------------------------------------- contract

/// Run each contract case against both adapters, as `local::<case>` and
/// `s3::<case>`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _dir) = super::local_store();
                    super::$case(Arc::new(store)).await;
                }
            )*
            use std::sync::Arc;
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(Arc::new(super::s3_store().await)).await;
                }
            )*
            use std::sync::Arc;
        }
    };
}

contract!(
    put_then_get_returns_the_bytes_and_their_sha256,
    missing_keys_are_absent_not_errors,
    put_replaces_the_previous_object,
    empty_objects_round_trip,
    delete_removes_the_object_and_is_idempotent,
    list_returns_keys_under_a_string_prefix_in_key_order,
    put_file_stores_the_file,
    put_file_of_a_missing_path_is_invalid,
    keys_with_spaces_and_unicode_round_trip,
    invalid_keys_are_rejected,
);

async fn put_then_get_returns_the_bytes_and_their_sha256(store: Arc<dyn ArtifactStore>) {
    let body = pattern(300 * 1024, 1);
    let info = store
        .put("models/m1/v1/model.onnx", &body)
        .await
        .expect("put");
    assert_eq!(info.key, "models/m1/v1/model.onnx");
    assert_eq!(info.size, body.len() as u64);
    assert_eq!(info.sha256.as_deref(), Some(sha256(&body).as_str()));

    assert_eq!(
        store.get("models/m1/v1/model.onnx").await.expect("get"),
        body
    );
    let head = store
        .head("models/m1/v1/model.onnx")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.sha256, info.sha256);
    let modified = head.last_modified_ms.expect("last modified");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(
        modified.abs_diff(now_ms) < 60_000,
        "last modified {modified} is not about now ({now_ms})"
    );
}

async fn missing_keys_are_absent_not_errors(store: Arc<dyn ArtifactStore>) {
    assert_eq!(store.head("nope/missing.bin").await.expect("head"), None);
    let got = store.get("nope/missing.bin").await;
    assert!(matches!(got, Err(ArtifactError::NotFound(_))), "{got:?}");
    assert_eq!(store.list("nope/").await.expect("list"), vec![]);
}

async fn put_replaces_the_previous_object(store: Arc<dyn ArtifactStore>) {
    store
        .put("k/model.bin", b"first version")
        .await
        .expect("put 1");
    let second = b"second, longer version".to_vec();
    store.put("k/model.bin", &second).await.expect("put 2");
    assert_eq!(store.get("k/model.bin").await.expect("get"), second);
    let head = store
        .head("k/model.bin")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.size, second.len() as u64);
    assert_eq!(head.sha256.as_deref(), Some(sha256(&second).as_str()));
    assert_eq!(
        keys(&store.list("k/").await.expect("list")),
        ["k/model.bin"]
    );
}

async fn empty_objects_round_trip(store: Arc<dyn ArtifactStore>) {
    let info = store.put("empty/.keep", &Vec::new()).await.expect("put");
    assert_eq!(info.size, 0);
    assert_eq!(info.sha256.as_deref(), Some(sha256(b"").as_str()));
    assert_eq!(
        store.get("empty/.keep").await.expect("get"),
        Vec::<u8>::new()
    );
    assert_eq!(
        store
            .head("empty/.keep")
            .await
            .expect("head")
            .expect("exists")
            .size,
        0
    );
}

async fn delete_removes_the_object_and_is_idempotent(store: Arc<dyn ArtifactStore>) {
    store.put("d/x/model.bin", b"bytes").await.expect("put");
    store.put("d/keep.bin", b"other").await.expect("put other");
    store.delete("d/x/model.bin").await.expect("delete");
    assert_eq!(store.head("d/x/model.bin").await.expect("head"), None);
    assert!(matches!(
        store.get("d/x/model.bin").await,
        Err(ArtifactError::NotFound(_))
    ));
    store.delete("d/x/model.bin").await.expect("delete again");
    store
        .delete("d/never-existed")
        .await
        .expect("delete a missing key");
    assert_eq!(keys(&store.list("d/").await.expect("list")), ["d/keep.bin"]);
}

async fn list_returns_keys_under_a_string_prefix_in_key_order(store: Arc<dyn ArtifactStore>) {
    let all = [
        "m/b/4.bin",
        "m/a/2.bin",
        "other/5.bin",
        "m/ab/3.bin",
        "m/a/1.bin",
        "m/a/sub/6.bin",
    ];
    for (i, key) in all.iter().enumerate() {
        store.put(key, &vec![b'x'; i + 1]).await.expect("put");
    }
    let listed = store.list("m/a/").await.expect("list m/a/");
    assert_eq!(keys(&listed), ["m/a/1.bin", "m/a/2.bin", "m/a/sub/6.bin"]);
    assert_eq!(listed[0].size, 5);
    assert_eq!(listed[1].size, 2);
    // A prefix is a string prefix, not a directory.
    assert_eq!(
        keys(&store.list("m/a").await.expect("list m/a")),
        ["m/a/1.bin", "m/a/2.bin", "m/a/sub/6.bin", "m/ab/3.bin"]
    );
    let mut everything = all.to_vec();
    everything.sort();
    assert_eq!(keys(&store.list("").await.expect("list all")), everything);
    assert_eq!(
        keys(&store.list("m/b/4").await.expect("list one")),
        ["m/b/4.bin"]
    );
    assert!(store.list("m/c").await.expect("list none").is_empty());
}

async fn put_file_stores_the_file(store: Arc<dyn ArtifactStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weights.safetensors");
    let body = pattern(2 * MB + 17, 2);
    std::fs::write(&path, &body).expect("write file");
    let info = store
        .put_file("f/weights.safetensors", &path)
        .await
        .expect("put_file");
    assert_eq!(info.size, body.len() as u64);
    assert_eq!(info.sha256.as_deref(), Some(sha256(&body).as_str()));
    assert_eq!(store.get("f/weights.safetensors").await.expect("get"), body);
    let head = store
        .head("f/weights.safetensors")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.sha256, info.sha256);
}

async fn put_file_of_a_missing_path_is_invalid(store: Arc<dyn ArtifactStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_invalid(
        store.put_file("f/x.bin", &dir.path().join("absent")).await,
        "missing file",
    );
    assert_eq!(store.head("f/x.bin").await.expect("head"), None);
}

async fn keys_with_spaces_and_unicode_round_trip(store: Arc<dyn ArtifactStore>) {
    let key = "odd names/model ü+v=1&x;(2).bin";
    store.put(key, b"odd").await.expect("put");
    assert_eq!(store.get(key).await.expect("get"), b"odd");
    assert_eq!(keys(&store.list("odd names/").await.expect("list")), [key]);
    store.delete(key).await.expect("delete");
    assert_eq!(store.head(key).await.expect("head"), None);
}

async fn invalid_keys_are_rejected(store: Arc<dyn ArtifactStore>) {
    for key in [
        "",
        "/abs/key",
        "a/../../etc/passwd",
        "..",
        "a//b",
        "dir/",
        "a\\b",
        "a\nb",
    ] {
        assert_invalid(store.put(key, b"x").await, key);
        assert_invalid(store.get(key).await, key);
        assert_invalid(store.head(key).await, key);
        assert_invalid(store.delete(key).await, key);
    }
    assert_invalid(store.list("/").await, "list /");
    assert_invalid(store.list("../").await, "list ../");
    assert!(
        store.list("").await.expect("list all").is_empty(),
        "nothing was written"
    );
}

// ---------------------------------------------------------------- local only

#[tokio::test]
async fn local_presigning_and_client_multipart_are_unsupported() {
    let (store, _dir) = local_store();
    let ttl = Duration::from_secs(60);
    let unsupported =
        |r: Result<String, ArtifactError>| matches!(r, Err(ArtifactError::Unsupported(_)));
    assert!(unsupported(store.presign_put("a.bin", ttl).await));
    assert!(unsupported(store.start_multipart("a.bin").await));
    assert!(unsupported(store.presign_part("a.bin", "u", 1, ttl).await));
    assert!(matches!(
        store.complete_multipart("a.bin", "u", vec![]).await,
        Err(ArtifactError::Unsupported(_))
    ));
    assert!(matches!(
        store.abort_multipart("a.bin", "u").await,
        Err(ArtifactError::Unsupported(_))
    ));
}

/// Local only: s3s-fs renames the object's bytes into place atomically but
/// writes its metadata (our `x-amz-meta-sha256`) and stored checksum in
/// separate steps afterwards, so concurrent PUTs of one key can leave the
/// bytes of one writer with the hash of another (AWS S3 cannot).
#[tokio::test]
async fn local_concurrent_puts_leave_one_whole_version_with_its_hash() {
    let (store, _dir) = local_store();
    let store = Arc::new(store);
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| pattern(64 * 1024 + i * 1000, i as u64 + 10))
        .collect();
    let mut writers = tokio::task::JoinSet::new();
    for body in bodies.clone() {
        let store = Arc::clone(&store);
        writers.spawn(async move { store.put("race/model.bin", &body).await });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("task").expect("put");
    }
    let got = store.get("race/model.bin").await.expect("get");
    assert!(
        bodies.contains(&got),
        "the object is a mix of writes ({} bytes)",
        got.len()
    );
    let head = store
        .head("race/model.bin")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.size, got.len() as u64);
    assert_eq!(
        head.sha256.as_deref(),
        Some(sha256(&got).as_str()),
        "hash of another version"
    );
}

#[tokio::test]
async fn local_uri_is_the_absolute_file_url_of_the_object() {
    let (store, dir) = local_store();
    store.put("m/model v1.bin", b"x").await.expect("put");
    let path = dir.path().join("artifacts/objects/m/model v1.bin");
    assert_eq!(std::fs::read(&path).expect("object file"), b"x");
    let expected = format!("file://{}", path.display()).replace(' ', "%20");
    assert_eq!(store.uri("m/model v1.bin"), expected);
}

#[tokio::test]
async fn local_writes_leave_no_temporary_or_sidecar_files_in_listings() {
    let (store, dir) = local_store();
    store.put("a/one.bin", b"1").await.expect("put");
    let file = dir.path().join("src.bin");
    std::fs::write(&file, b"two").expect("write");
    store.put_file("a/two.bin", &file).await.expect("put_file");
    let tmp = std::fs::read_dir(dir.path().join("artifacts/tmp"))
        .expect("tmp dir")
        .count();
    assert_eq!(tmp, 0, "temporary files left behind");
    assert_eq!(
        keys(&store.list("").await.expect("list")),
        ["a/one.bin", "a/two.bin"]
    );
}

#[tokio::test]
async fn local_head_recomputes_the_sha256_of_a_file_changed_behind_its_back() {
    let (store, _dir) = local_store();
    store.put("m/model.bin", b"original").await.expect("put");
    // Someone replaces the file by hand; the sidecar no longer matches it.
    std::fs::write(store.object_path("m/model.bin"), b"edited by hand").expect("edit");
    let head = store
        .head("m/model.bin")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.size, 14);
    assert_eq!(
        head.sha256.as_deref(),
        Some(sha256(b"edited by hand").as_str())
    );
    // The refreshed sidecar is used by list from now on.
    let listed = store.list("m/").await.expect("list");
    assert_eq!(listed[0].sha256, head.sha256);
}

#[tokio::test]
async fn local_key_and_prefix_of_other_keys_cannot_coexist() {
    let (store, _dir) = local_store();
    store.put("a", b"file").await.expect("put a");
    assert_invalid(store.put("a/b", b"x").await, "a/b under file a");
    store.delete("a").await.expect("delete a");
    store.put("a/b", b"x").await.expect("put a/b");
    assert_invalid(store.put("a", b"x").await, "a over directory a/");
    assert_eq!(
        store.head("a").await.expect("head a"),
        None,
        "a directory is not an object"
    );
    // Deleting the last key below a/ prunes the directory, so `a` fits again.
    store.delete("a/b").await.expect("delete a/b");
    store.put("a", b"file again").await.expect("put a again");
    assert_eq!(store.get("a").await.expect("get a"), b"file again");
}

#[tokio::test]
async fn local_store_reopens_with_its_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalArtifactStore::in_data_dir(dir.path()).expect("open");
    store.put("m/model.bin", b"kept").await.expect("put");
    drop(store);
    let reopened = LocalArtifactStore::in_data_dir(dir.path()).expect("reopen");
    assert_eq!(reopened.get("m/model.bin").await.expect("get"), b"kept");
    let head = reopened
        .head("m/model.bin")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.sha256.as_deref(), Some(sha256(b"kept").as_str()));
}

// ---------------------------------------------------------------- S3 only

#[tokio::test]
async fn s3_put_file_of_20_mb_goes_through_multipart_and_round_trips() {
    let store = s3_store().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.bin");
    let body = pattern(20 * 1000 * 1000, 4);
    std::fs::write(&path, &body).expect("write");
    let info = store
        .put_file("big/file.bin", &path)
        .await
        .expect("put_file");
    assert_eq!(info.size, body.len() as u64);
    assert!(
        info.etag.as_deref().is_some_and(|e| e.ends_with("-3")),
        "etag {:?}",
        info.etag
    );
    assert_eq!(info.sha256.as_deref(), Some(sha256(&body).as_str()));
    let head = store
        .head("big/file.bin")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.sha256, info.sha256);
    assert!(
        store.get("big/file.bin").await.expect("get") == body,
        "content differs"
    );
    store
        .delete("big/file.bin")
        .await
        .expect("delete (keeps the test server small)");
}

#[tokio::test]
async fn s3_presigned_put_works_over_plain_http_for_its_key_and_method_only() {
    let store = s3_store().await;
    let body = pattern(100 * 1024, 5);
    let put_url = store
        .presign_put("up/model.bin", Duration::from_secs(300))
        .await
        .expect("presign put");
    let put = http::request("PUT", &put_url, &body).await;
    assert_eq!(put.status, 200, "presigned PUT: {}", put.text());

    let head = store
        .head("up/model.bin")
        .await
        .expect("head")
        .expect("uploaded");
    assert_eq!(head.size, body.len() as u64);
    assert!(
        store.get("up/model.bin").await.expect("get") == body,
        "uploaded bytes differ"
    );

    // The signature covers the method and the key.
    let wrong_method = http::request("GET", &put_url, b"").await;
    assert_eq!(wrong_method.status, 403, "{}", wrong_method.text());
    let other_key = put_url.replacen("up/model.bin", "up/other.bin", 1);
    assert_eq!(http::request("PUT", &other_key, b"x").await.status, 403);
    assert_eq!(store.head("up/other.bin").await.expect("head"), None);
}

#[tokio::test]
async fn s3_presigned_urls_expire() {
    let store = s3_store().await;
    let url = store
        .presign_put("e/x.bin", Duration::from_secs(1))
        .await
        .expect("presign");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = http::request("PUT", &url, b"x").await;
    assert_eq!(
        got.status,
        403,
        "an expired URL still works: {}",
        got.text()
    );
    assert_eq!(store.head("e/x.bin").await.expect("head"), None);
}

#[tokio::test]
async fn s3_client_multipart_upload_through_presigned_parts() {
    let store = s3_store().await;
    let first = pattern(5 * MB, 6);
    let last = pattern(1234, 7);
    let upload_id = store.start_multipart("mp/model.bin").await.expect("start");
    let mut parts = Vec::new();
    for (number, bytes) in [(1, &first), (2, &last)] {
        let url = store
            .presign_part("mp/model.bin", &upload_id, number, Duration::from_secs(300))
            .await
            .expect("presign part");
        let sent = http::request("PUT", &url, bytes).await;
        assert_eq!(sent.status, 200, "part {number}: {}", sent.text());
        let etag = sent.header("etag").expect("part ETag").to_string();
        parts.push(CompletedPart { number, etag });
    }
    parts.reverse(); // the store orders them
    let info = store
        .complete_multipart("mp/model.bin", &upload_id, parts)
        .await
        .expect("complete");
    assert_eq!(info.size, (first.len() + last.len()) as u64);
    let mut whole = first.clone();
    whole.extend_from_slice(&last);
    assert!(
        store.get("mp/model.bin").await.expect("get") == whole,
        "assembled bytes differ"
    );
}

#[tokio::test]
async fn s3_aborted_multipart_upload_leaves_no_object() {
    let store = s3_store().await;
    let upload_id = store
        .start_multipart("mp/aborted.bin")
        .await
        .expect("start");
    let url = store
        .presign_part("mp/aborted.bin", &upload_id, 1, Duration::from_secs(60))
        .await
        .expect("presign part");
    assert_eq!(http::request("PUT", &url, b"part").await.status, 200);
    store
        .abort_multipart("mp/aborted.bin", &upload_id)
        .await
        .expect("abort");
    assert_eq!(store.head("mp/aborted.bin").await.expect("head"), None);
    assert_invalid(
        store
            .presign_part("mp/aborted.bin", &upload_id, 0, Duration::from_secs(60))
            .await,
        "part 0",
    );
    assert_invalid(
        store
            .complete_multipart("mp/aborted.bin", &upload_id, vec![])
            .await,
        "no parts",
    );
}

#[tokio::test]
async fn s3_wrong_secret_key_is_denied() {
    let store = s3_store().await;
    store.put("secret/model.bin", b"x").await.expect("put");
    let env = s3_env();
    let intruder = s3_store_on(store.bucket(), &env.access_key, "not-the-secret-key");
    let denied = |what: &str, r: Result<(), ArtifactError>| {
        assert!(
            matches!(r, Err(ArtifactError::Denied(_))),
            "{what}: expected Denied, got {r:?}"
        );
    };
    denied("get", intruder.get("secret/model.bin").await.map(drop));
    denied("head", intruder.head("secret/model.bin").await.map(drop));
    denied(
        "put",
        intruder.put("secret/model.bin", b"y").await.map(drop),
    );
    denied("list", intruder.list("").await.map(drop));
    denied("delete", intruder.delete("secret/model.bin").await);
    assert_eq!(
        store.get("secret/model.bin").await.expect("get"),
        b"x",
        "the object was not touched"
    );

    let unknown = s3_store_on(store.bucket(), "no-such-access-key", &env.secret_key);
    denied(
        "unknown access key",
        unknown.get("secret/model.bin").await.map(drop),
    );
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_unavailable_and_fails_fast() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let settings = S3Settings::new("any-bucket").with_endpoint(format!("http://127.0.0.1:{port}"));
    let store = S3ArtifactStore::new(&sdk_config("a", "b"), settings);
    let started = Instant::now();
    let got = store.get("k").await;
    assert!(matches!(got, Err(ArtifactError::Unavailable(_))), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn s3_server_that_never_answers_times_out_as_unavailable() {
    // Accepts connections, never responds.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut settings =
        S3Settings::new("any-bucket").with_endpoint(format!("http://127.0.0.1:{port}"));
    settings.operation_timeout = Duration::from_secs(1);
    let store = S3ArtifactStore::new(&sdk_config("a", "b"), settings);
    let started = Instant::now();
    let got = store.head("k").await;
    assert!(matches!(got, Err(ArtifactError::Unavailable(_))), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn s3_create_bucket_if_missing_is_idempotent_and_uri_names_the_bucket() {
    let store = s3_store().await;
    store
        .create_bucket_if_missing()
        .await
        .expect("second create");
    assert_eq!(
        store.uri("m/v1/model.bin"),
        format!("s3://{}/m/v1/model.bin", store.bucket())
    );
}

// ---------------------------------------------------------------- plain HTTP

/// A minimal HTTP/1.1 client, enough to use presigned URLs without the SDK.
mod http {
    use super::*;

    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Send one request to an `http://host:port/path?query` URL, as is.
    pub async fn request(method: &str, url: &str, body: &[u8]) -> Response {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (authority, target) = rest
            .find('/')
            .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .expect("connect");
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body).await.expect("send body");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .expect("response within 30 s")
            .expect("read response");

        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if response
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            response.body = dechunk(&response.body);
        }
        response
    }

    fn dechunk(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let eol = data
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size_text = String::from_utf8_lossy(&data[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            data = &data[eol + 2..];
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&data[..size]);
            data = &data[size + 2..];
        }
    }
}
