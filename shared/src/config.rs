//! Configuration from the environment, read once at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::registry::{Registry, RegistryConfig};
use crate::store::embedded::EmbeddedTable;
use crate::store::port::StoreError;

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
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let port = match var("PORT") {
            Some(p) => p.parse().map_err(|_| format!("PORT: '{p}' is not a port number"))?,
            None => 8080,
        };
        let claim_lease = match var("MR_CLAIM_LEASE_MS") {
            Some(v) => Duration::from_millis(
                v.parse().map_err(|_| format!("MR_CLAIM_LEASE_MS: '{v}' is not a number"))?,
            ),
            None => RegistryConfig::default().claim_lease,
        };
        Ok(Config {
            port,
            data_dir: var("MR_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data")),
            json_logs: var("MR_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            claim_lease,
        })
    }

    /// Open the configured store and build the registry on it.
    pub fn registry(&self) -> Result<Registry, StoreError> {
        let table = EmbeddedTable::open(&self.data_dir)?;
        Ok(Registry::new(
            Arc::new(table),
            RegistryConfig {
                claim_lease: self.claim_lease,
            },
        ))
    }
}
