//! Configuration from the environment, read once at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::domain::registry::{Registry, RegistryConfig};
use crate::domain::upload_sessions::UploadSettings;
use crate::domain::uploads::{LOCAL_BUCKET, UploadConvention, Uploads};
use crate::store::artifacts::local::LocalArtifactStore;
use crate::store::artifacts::s3::{S3ArtifactStore, S3Settings};
use crate::store::artifacts::{ArtifactError, ArtifactStore};
use crate::store::dynamodb::DynamoTable;
use crate::store::embedded::EmbeddedTable;
use crate::store::port::{StoreError, Table};

/// Which metadata store to use (`MR_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// redb under `MR_DATA_DIR` (default).
    Embedded,
    /// DynamoDB-compatible (DynamoDB, Alternator, dynalite) via the AWS SDK.
    DynamoDb,
}

/// Everything a function needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (default 8080).
    pub port: u16,
    /// `MR_DATA_DIR` (default `./data`): where the embedded store lives.
    pub data_dir: PathBuf,
    /// `MR_LOG_FORMAT=json` for JSON logs.
    pub json_logs: bool,
    /// `MR_CLAIM_LEASE_MS` (default 10000): how long an unfinished create holds its name.
    pub claim_lease: Duration,
    /// `MR_STORE=embedded|dynamodb`.
    pub store: StoreKind,
    /// `MR_TABLE` (default `model-registry`).
    pub table: String,
    /// `MR_CREATE_TABLE=true`: create the table at start-up when missing.
    pub create_table: bool,
    /// `MR_ARTIFACT_BUCKET`: S3 bucket of artifact bytes (unset: local files under `MR_DATA_DIR`).
    pub artifact_bucket: Option<String>,
    /// `MR_EVENTS_PREFIX` (default `models/`): where uploads register models
    /// (`<prefix><model>/<version>/<files>`); `""` is the whole bucket.
    pub events_prefix: String,
    /// `MR_UPLOAD_TTL_SECS` (default 3600): how long upload URLs and sessions of
    /// the upload extension stay valid.
    pub upload_ttl: Duration,
    /// `MR_UPLOAD_PART_SIZE` (default 64 MiB, at least 5 MiB): files larger than
    /// this are uploaded in parts of this size.
    pub upload_part_size: u64,
    /// `MR_PUBLIC_URL`: the registry's external base URL, for upload URLs that
    /// point back at it (local artifact store); default: the request's `Host`.
    pub public_url: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let port = match var("PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("PORT: '{p}' is not a port number"))?,
            None => 8080,
        };
        let claim_lease = match var("MR_CLAIM_LEASE_MS") {
            Some(v) => Duration::from_millis(
                v.parse()
                    .map_err(|_| format!("MR_CLAIM_LEASE_MS: '{v}' is not a number"))?,
            ),
            None => RegistryConfig::default().claim_lease,
        };
        let store = match var("MR_STORE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("embedded") => StoreKind::Embedded,
            Some("dynamodb") => StoreKind::DynamoDb,
            Some(other) => return Err(format!("MR_STORE: '{other}' is not embedded or dynamodb")),
        };
        Ok(Config {
            store,
            table: var("MR_TABLE").unwrap_or_else(|| "model-registry".into()),
            create_table: var("MR_CREATE_TABLE")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes")),
            artifact_bucket: var("MR_ARTIFACT_BUCKET"),
            events_prefix: events_prefix(var("MR_EVENTS_PREFIX"))?,
            upload_ttl: Duration::from_secs(number(
                "MR_UPLOAD_TTL_SECS",
                var("MR_UPLOAD_TTL_SECS"),
                3600,
                60..=7 * 24 * 3600,
            )?),
            upload_part_size: number(
                "MR_UPLOAD_PART_SIZE",
                var("MR_UPLOAD_PART_SIZE"),
                64 * 1024 * 1024,
                5 * 1024 * 1024..=5 * 1024 * 1024 * 1024,
            )?,
            public_url: var("MR_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            port,
            data_dir: var("MR_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data")),
            json_logs: var("MR_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            claim_lease,
        })
    }

    /// Open the configured store and build the registry on it.
    pub async fn registry(&self) -> Result<Registry, StoreError> {
        let table: Arc<dyn Table> = match self.store {
            StoreKind::Embedded => Arc::new(EmbeddedTable::open(&self.data_dir)?),
            StoreKind::DynamoDb => {
                let sdk = aws_sdk_config().await;
                let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&sdk), &self.table);
                if self.create_table {
                    table.create_table_if_missing().await?;
                }
                Arc::new(table)
            }
        };
        Ok(Registry::new(
            table,
            RegistryConfig {
                claim_lease: self.claim_lease,
            },
        ))
    }
}

impl Config {
    /// The store of artifact bytes: S3 (`MR_ARTIFACT_BUCKET`, endpoint from
    /// `AWS_ENDPOINT_URL_S3`, path-style for non-AWS endpoints) or files under
    /// `MR_DATA_DIR/artifacts`.
    pub async fn artifact_store(&self) -> Result<Arc<dyn ArtifactStore>, ArtifactError> {
        match &self.artifact_bucket {
            Some(bucket) => {
                let sdk = aws_sdk_config().await;
                let mut settings = S3Settings::new(bucket);
                if let Some(endpoint) = var("AWS_ENDPOINT_URL_S3") {
                    settings = settings.with_endpoint(endpoint);
                }
                Ok(Arc::new(S3ArtifactStore::new(&sdk, settings)))
            }
            None => Ok(Arc::new(LocalArtifactStore::in_data_dir(&self.data_dir)?)),
        }
    }
}

impl Config {
    /// Registration of uploads on the configured artifact store: objects of
    /// bucket `MR_ARTIFACT_BUCKET` (`local` for the local store) under
    /// `MR_EVENTS_PREFIX`.
    pub async fn uploads(&self, registry: Registry) -> Result<Uploads, String> {
        let store = self.artifact_store().await.map_err(|e| e.to_string())?;
        let bucket = self
            .artifact_bucket
            .clone()
            .unwrap_or_else(|| LOCAL_BUCKET.to_string());
        let convention = UploadConvention::new(bucket, self.events_prefix.clone());
        Ok(Uploads::new(registry, store, convention))
    }

    /// Settings of the upload extension.
    pub fn upload_settings(&self) -> UploadSettings {
        UploadSettings {
            ttl: self.upload_ttl,
            part_size: self.upload_part_size,
        }
    }
}

/// `MR_EVENTS_PREFIX`: a key prefix ending in `/` (one is added), or empty.
fn events_prefix(raw: Option<String>) -> Result<String, String> {
    let Some(raw) = raw else {
        return Ok(crate::domain::uploads::DEFAULT_PREFIX.to_string());
    };
    let prefix = match raw.trim() {
        "" | "/" => return Ok(String::new()),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    };
    crate::store::artifacts::validate_prefix(&prefix)
        .map(|()| prefix)
        .map_err(|e| format!("MR_EVENTS_PREFIX: {e}"))
}

/// A whole number setting within `range` (`default` when unset).
fn number(
    name: &str,
    raw: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "{name}: '{raw}' is not a number between {} and {}",
            range.start(),
            range.end()
        )),
    }
}

/// The AWS SDK configuration from the standard variables (`AWS_REGION`,
/// `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`, credentials...), with
/// bounded timeouts so an unreachable store answers 503 quickly instead of
/// hanging. The region defaults to us-east-1 without probing instance metadata.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}
