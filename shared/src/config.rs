//! Configuration from the environment, read once at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::domain::registry::{Registry, RegistryConfig};
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
