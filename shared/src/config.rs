//! Configuration from the environment, read once at start-up.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::api::Serve;
use crate::api::auth::jwt::{JwksError, JwksSource, JwtSettings, JwtVerifier};
use crate::api::auth::session::{MIN_SECRET, Sessions, web_secret};
use crate::api::auth::{AuthMode, Authenticator, IdentitySettings, http};
use crate::api::edge::{Edge, EdgeSettings};
use crate::domain::access::{Policy, PolicyError};
use crate::domain::error::Error;
use crate::domain::registry::{Registry, RegistryConfig};
use crate::domain::upload_sessions::UploadSettings;
use crate::events::EventSettings;
use crate::registration::{DEFAULT_PREFIX, FolderConvention, LOCAL_BUCKET, Registrar};
use crate::runtime::server::ServerSettings;
use crate::store::artifacts::local::LocalArtifactStore;
use crate::store::artifacts::s3::{S3ArtifactStore, S3Settings};
use crate::store::artifacts::{ArtifactError, ArtifactRead, ArtifactStore};
use crate::store::coalesce::Coalesced;
use crate::store::dynamodb::DynamoTable;
use crate::store::layout::migrate;
use crate::store::layout::usage::USAGE_PREFIX;
use crate::store::port::{ReadOnly, Table, WritesUnder};
use crate::web::oidc::{CALLBACK_PATH, Login, OidcSettings};

/// Why the configuration cannot be used; start-up stops with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting holds something it cannot.
    #[error("{name}: '{value}' {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// Settings that go together are missing or do not match.
    #[error("{0}")]
    Incomplete(String),
    #[error("MR_POLICY: cannot read {}", path.display())]
    PolicyUnreadable {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("MR_POLICY: {} is not a valid policy", path.display())]
    PolicyInvalid {
        path: PathBuf,
        #[source]
        cause: PolicyError,
    },
    #[error("MR_JWT_JWKS")]
    Jwks(#[source] JwksError),
}

fn invalid(name: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        expected: expected.into(),
    }
}

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
    /// `MR_LIST_CACHE_MS` (default 0, at most 10000): how long this process
    /// serves a page of a global list again (the reading functions in
    /// infra/ set 1000; see `store::layout::entities::PageCache`).
    pub list_cache: Duration,
    /// `MR_USAGE_WINDOW_MS` (default 10000, 10 to 3600000): how long this
    /// process counts a caller's reads of a version before it writes them
    /// (see `domain::usage`).
    pub usage_window: Duration,
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
    /// `MR_AUTH`: how callers are authenticated.
    pub auth: AuthMode,
    /// Where a caller's name and groups come from (claims, headers).
    pub identity: IdentitySettings,
    /// `MR_JWT_*` (with `MR_AUTH=jwt`).
    pub jwt: Option<JwtSettings>,
    /// `MR_POLICY`: the policy file (default: see [`Config::policy`]).
    pub policy: Option<PathBuf>,
    /// The edge's limits (`MR_MAX_IN_FLIGHT`, timeouts, CORS, body size).
    pub edge: EdgeSettings,
    /// The HTTP server's address, connection cap and timeouts.
    pub server: ServerSettings,
    /// `MR_MAX_LISTS`: lists read at once (each holds about one store page).
    pub max_lists: usize,
    /// `MR_SERVE=all|reads|writes` (default `all`): which of the API's
    /// methods this function answers; `reads` also makes the table handle
    /// read-only.
    pub serve: Serve,
    /// Change events (`K_SINK` or `MR_EVENTS_SINK`, ...): None without a sink.
    pub events: Option<EventSettings>,
    /// `MR_OIDC_*`: the web interface's login (with `MR_AUTH=jwt`).
    pub oidc: Option<OidcSettings>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let port = match var("PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| invalid("PORT", &p, "is not a port number"))?,
            None => 8080,
        };
        let claim_lease = match var("MR_CLAIM_LEASE_MS") {
            Some(v) => Duration::from_millis(
                v.parse()
                    .map_err(|_| invalid("MR_CLAIM_LEASE_MS", &v, "is not a number"))?,
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
            Some(other) => return Err(invalid("MR_STORE", other, "is not embedded or dynamodb")),
        };
        let auth = match var("MR_AUTH") {
            None => AuthMode::None,
            Some(raw) => AuthMode::parse(&raw).ok_or_else(|| {
                invalid("MR_AUTH", &raw, "is not none, jwt, header or apigateway")
            })?,
        };
        let serve = match var("MR_SERVE") {
            None => Serve::All,
            Some(raw) => Serve::parse(&raw)
                .ok_or_else(|| invalid("MR_SERVE", &raw, "is not all, reads or writes"))?,
        };
        let create_table = var("MR_CREATE_TABLE")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"));
        if serve == Serve::Reads && create_table {
            return Err(ConfigError::Incomplete(
                "MR_CREATE_TABLE=true with MR_SERVE=reads: a reading function never writes; \
                 let a writing one create the table"
                    .into(),
            ));
        }
        let public_url = match var("MR_PUBLIC_URL") {
            Some(u) => Some(public_url(&u)?),
            None => None,
        };
        let identity = IdentitySettings {
            user_claim: var("MR_JWT_USER_CLAIM").unwrap_or_else(|| "sub".into()),
            groups_claim: var("MR_JWT_GROUPS_CLAIM").unwrap_or_else(|| "groups".into()),
            user_header: var("MR_AUTH_USER_HEADER")
                .unwrap_or_else(|| "kubeflow-userid".into())
                .to_ascii_lowercase(),
            groups_header: var("MR_AUTH_GROUPS_HEADER")
                .unwrap_or_else(|| "kubeflow-groups".into())
                .to_ascii_lowercase(),
            user_prefix: var("MR_AUTH_USER_PREFIX"),
        };
        let jwt = match auth {
            AuthMode::Jwt => Some(jwt_settings()?),
            _ => None,
        };
        let bind = match var("MR_BIND") {
            Some(b) => b
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| invalid("MR_BIND", &b, "is not an IP address"))?,
            // Without authentication, only this machine may call.
            None if auth == AuthMode::None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(number(
                name,
                var(name),
                default,
                1..=3600,
            )?))
        };
        let count = |name: &'static str, default: u64| -> Result<usize, ConfigError> {
            Ok(number(name, var(name), default, 1..=1_000_000)? as usize)
        };
        let oidc = oidc_settings(auth, public_url.as_deref())?;
        let edge = EdgeSettings {
            max_in_flight: count("MR_MAX_IN_FLIGHT", 256)?,
            request_timeout: secs("MR_REQUEST_TIMEOUT_SECS", 30)?,
            body_timeout: secs("MR_BODY_TIMEOUT_SECS", 30)?,
            stream_timeout: secs("MR_STREAM_TIMEOUT_SECS", 600)?,
            max_body_bytes: number(
                "MR_MAX_BODY_BYTES",
                var("MR_MAX_BODY_BYTES"),
                1024 * 1024,
                1024..=64 * 1024 * 1024,
            )? as usize,
            cors_origins: var("MR_CORS_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            public_url: public_url.clone(),
        };
        let server = ServerSettings {
            bind,
            port,
            max_connections: count("MR_MAX_CONNECTIONS", 1024)?,
            header_timeout: secs("MR_HEADER_TIMEOUT_SECS", 10)?,
            write_timeout: secs("MR_BODY_TIMEOUT_SECS", 30)?,
            shutdown_grace: secs("MR_SHUTDOWN_GRACE_SECS", 20)?,
        };
        Ok(Config {
            auth,
            identity,
            jwt,
            policy: var("MR_POLICY").map(PathBuf::from),
            edge,
            server,
            max_lists: count("MR_MAX_LISTS", 32)?,
            store,
            table: var("MR_TABLE").unwrap_or_else(|| "model-registry".into()),
            create_table,
            serve,
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
            public_url,
            port,
            data_dir: var("MR_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data")),
            json_logs: var("MR_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            claim_lease,
            list_cache: Duration::from_millis(number(
                "MR_LIST_CACHE_MS",
                var("MR_LIST_CACHE_MS"),
                0,
                0..=10_000,
            )?),
            events: events_settings()?,
            oidc,
            usage_window: Duration::from_millis(number(
                "MR_USAGE_WINDOW_MS",
                var("MR_USAGE_WINDOW_MS"),
                10_000,
                10..=3_600_000,
            )?),
        })
    }

    /// Open the configured store and build the registry on it.
    pub async fn registry(&self) -> Result<Registry, Error> {
        let table = self.table(self.serve == Serve::Reads).await?;
        let (table, usage): (Arc<dyn Table>, Arc<dyn Table>) = match self.serve {
            Serve::Reads => (
                Arc::new(ReadOnly(table.clone())),
                Arc::new(WritesUnder(table, USAGE_PREFIX)),
            ),
            Serve::All | Serve::Writes => (table.clone(), table),
        };
        Ok(self.registry_on(table).with_usage_table(usage))
    }

    /// The registry of the events function: it reads everything and writes
    /// only its cursor (`DISPATCH#...`), as its IAM policy allows; on
    /// DynamoDB it leaves the table's layout mark to the writers.
    pub async fn events_registry(&self) -> Result<Registry, Error> {
        if self.store == StoreKind::Embedded {
            return self.registry().await;
        }
        let table = self.table(true).await?;
        Ok(self.registry_on(Arc::new(WritesUnder(table, "DISPATCH#"))))
    }

    fn registry_on(&self, table: Arc<dyn Table>) -> Registry {
        Registry::new(
            table,
            RegistryConfig {
                claim_lease: self.claim_lease,
                list_cache: self.list_cache,
                usage_window: self.usage_window,
                ..RegistryConfig::default()
            },
        )
    }

    /// The configured store; `read_only`: open it for reading only (a
    /// DynamoDB table is then checked, never marked, on first use).
    async fn table(&self, read_only: bool) -> Result<Arc<dyn Table>, Error> {
        Ok(match self.store {
            StoreKind::Embedded => {
                Arc::new(migrate::open_embedded(&self.data_dir, read_only).await?)
            }
            StoreKind::DynamoDb => {
                let sdk = aws_sdk_config().await;
                let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&sdk), &self.table);
                if self.create_table {
                    table.create_table_if_missing().await?;
                }
                // Checked on first use: a function starts without a network
                // call. Gets of one key arriving together share a read.
                let guarded = migrate::Guarded::new(Arc::new(table), &self.table, read_only);
                Arc::new(Coalesced::new(Arc::new(guarded)))
            }
        })
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
    /// The policy: `MR_POLICY`, else everything for everyone without
    /// authentication (a laptop), or everything for every authenticated
    /// caller with it (upstream's all-or-nothing proxy model).
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        match &self.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| {
                    ConfigError::PolicyUnreadable {
                        path: path.clone(),
                        cause,
                    }
                })?;
                Policy::from_yaml(&text).map_err(|cause| ConfigError::PolicyInvalid {
                    path: path.clone(),
                    cause,
                })
            }
            None if self.auth == AuthMode::None => Ok(Policy::allow_all()),
            None => Ok(Policy::authenticated_all()),
        }
    }

    /// The edge: authentication, policy and limits (reads `MR_POLICY` and
    /// JWKS files now, so a bad one stops start-up with a clear message).
    pub fn edge(&self) -> Result<Edge, ConfigError> {
        let jwt = match &self.jwt {
            Some(settings) => Some(JwtVerifier::new(settings).map_err(ConfigError::Jwks)?),
            None => None,
        };
        let mut auth = Authenticator::new(self.auth, self.identity.clone(), jwt);
        if let Some(oidc) = &self.oidc {
            auth = auth.with_sessions(Sessions::new(web_secret(), oidc.session));
        }
        Ok(Edge::new(auth, self.policy()?, self.edge.clone()))
    }

    /// The web interface's login, when `MR_OIDC_ISSUER` is set.
    pub fn web_login(&self) -> Option<Arc<Login>> {
        self.oidc
            .clone()
            .map(|settings| Arc::new(Login::new(settings, self.identity.clone())))
    }
}

impl Config {
    /// Which objects register models: those of bucket `MR_ARTIFACT_BUCKET`
    /// (`local` for the local store) under `MR_EVENTS_PREFIX`.
    pub fn folder_convention(&self) -> FolderConvention {
        let bucket = self
            .artifact_bucket
            .clone()
            .unwrap_or_else(|| LOCAL_BUCKET.to_string());
        FolderConvention::new(bucket, self.events_prefix.clone())
    }

    /// The registrar of the configured convention, reading `store` (the
    /// configured [`Config::artifact_store`]; it only reads).
    pub fn registrar(&self, registry: Registry, store: Arc<dyn ArtifactRead>) -> Registrar {
        Registrar::new(registry, store, self.folder_convention())
    }

    /// Settings of the upload extension.
    pub fn upload_settings(&self) -> UploadSettings {
        UploadSettings {
            ttl: self.upload_ttl,
            part_size: self.upload_part_size,
        }
    }
}

/// `MR_OIDC_*`: the web interface's login through an OpenID provider.
/// Needs `MR_AUTH=jwt`, a client id, where the provider sends the browser
/// back (`MR_OIDC_REDIRECT_URL`, or `MR_PUBLIC_URL` + `/ui/auth/callback`),
/// and a `MR_WEB_SECRET` of at least 32 characters shared by every
/// instance (it signs sessions).
fn oidc_settings(
    auth: AuthMode,
    public_url: Option<&str>,
) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = var("MR_OIDC_ISSUER") else {
        return Ok(None);
    };
    let issuer = issuer.trim().to_string();
    http::check_url(&issuer).map_err(|e| invalid("MR_OIDC_ISSUER", &issuer, e))?;
    if auth != AuthMode::Jwt {
        return Err(ConfigError::Incomplete(format!(
            "MR_OIDC_ISSUER is a login for MR_AUTH=jwt, not MR_AUTH={}",
            auth.as_str()
        )));
    }
    let client_id = var("MR_OIDC_CLIENT_ID")
        .ok_or_else(|| ConfigError::Incomplete("MR_OIDC_ISSUER needs MR_OIDC_CLIENT_ID".into()))?;
    let redirect_url = match (var("MR_OIDC_REDIRECT_URL"), public_url) {
        (Some(url), _) => url.trim().to_string(),
        (None, Some(base)) => format!("{}{CALLBACK_PATH}", base.trim_end_matches('/')),
        (None, None) => {
            return Err(ConfigError::Incomplete(
                "MR_OIDC_ISSUER needs MR_OIDC_REDIRECT_URL (or MR_PUBLIC_URL): where the \
                 identity provider sends the browser back, e.g. \
                 https://registry.example.com/ui/auth/callback"
                    .into(),
            ));
        }
    };
    // The session cookie is Secure: a browser keeps it over https, or on localhost.
    http::check_url(&redirect_url)
        .map_err(|e| invalid("MR_OIDC_REDIRECT_URL", &redirect_url, e))?;
    if !redirect_url
        .split(['?', '#'])
        .next()
        .is_some_and(|u| u.ends_with(CALLBACK_PATH))
    {
        return Err(invalid(
            "MR_OIDC_REDIRECT_URL",
            &redirect_url,
            format!("must end with {CALLBACK_PATH}"),
        ));
    }
    if std::env::var("MR_WEB_SECRET").map_or(0, |s| s.trim().len()) < MIN_SECRET {
        return Err(ConfigError::Incomplete(format!(
            "MR_OIDC_ISSUER needs MR_WEB_SECRET of at least {MIN_SECRET} characters, the same on \
             every instance: it signs the sessions (e.g. `openssl rand -hex 32`)"
        )));
    }
    let session = Duration::from_secs(number(
        "MR_OIDC_SESSION_SECS",
        var("MR_OIDC_SESSION_SECS"),
        8 * 3600,
        60..=7 * 24 * 3600,
    )?);
    let scopes = var("MR_OIDC_SCOPES").unwrap_or_else(|| "openid profile email".into());
    if !scopes.split_whitespace().any(|s| s == "openid") {
        return Err(invalid("MR_OIDC_SCOPES", &scopes, "must include openid"));
    }
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret: var("MR_OIDC_CLIENT_SECRET"),
        redirect_url,
        scopes,
        session,
    }))
}

/// `MR_JWT_ISSUER` and `MR_JWT_JWKS` (comma-separated, pairwise: the n-th
/// issuer's keys are the n-th JWKS) and `MR_JWT_AUDIENCE`.
fn jwt_settings() -> Result<JwtSettings, ConfigError> {
    let list = |name: &str| -> Vec<String> {
        var(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let issuers = list("MR_JWT_ISSUER");
    let jwks = list("MR_JWT_JWKS");
    if issuers.is_empty() || (!jwks.is_empty() && issuers.len() != jwks.len()) {
        return Err(ConfigError::Incomplete(format!(
            "MR_AUTH=jwt needs MR_JWT_ISSUER, and MR_JWT_JWKS either unset (each issuer's keys \
             from its discovery document) or one per issuer ({} issuers, {} JWKS given)",
            issuers.len(),
            jwks.len()
        )));
    }
    let issuers = if jwks.is_empty() {
        issuers
            .into_iter()
            .map(|iss| {
                http::check_url(&iss).map_err(|e| invalid("MR_JWT_ISSUER", &iss, e))?;
                let source = JwksSource::Discover(iss.clone());
                Ok((iss, source))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?
    } else {
        issuers
            .into_iter()
            .zip(jwks)
            .map(|(iss, src)| {
                let source =
                    JwksSource::parse(&src).map_err(|e| invalid("MR_JWT_JWKS", &src, e))?;
                Ok((iss, source))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?
    };
    let audience = var("MR_JWT_AUDIENCE")
        .ok_or_else(|| ConfigError::Incomplete("MR_AUTH=jwt needs MR_JWT_AUDIENCE".into()))?;
    let refresh_min = Duration::from_secs(number(
        "MR_JWT_REFRESH_SECS",
        var("MR_JWT_REFRESH_SECS"),
        crate::api::auth::jwt::REFRESH_MIN_INTERVAL.as_secs(),
        0..=86_400,
    )?);
    Ok(JwtSettings {
        issuers,
        audience,
        refresh_min,
    })
}

/// `MR_PUBLIC_URL`: an absolute http(s) URL without query or fragment.
fn public_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split_once("://").is_some_and(|(_, rest)| {
            let host = rest.split('/').next().unwrap_or("");
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        && !url.contains(['?', '#', ' ']);
    if ok {
        Ok(url.to_string())
    } else {
        Err(invalid(
            "MR_PUBLIC_URL",
            raw,
            "is not an http(s) URL like https://registry.example.com",
        ))
    }
}

/// `MR_EVENTS_PREFIX`: a key prefix ending in `/` (one is added), or empty.
fn events_prefix(raw: Option<String>) -> Result<String, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PREFIX.to_string());
    };
    let prefix = match raw.trim() {
        "" | "/" => return Ok(String::new()),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    };
    crate::store::artifacts::validate_prefix(&prefix)
        .map(|()| prefix)
        .map_err(|e| invalid("MR_EVENTS_PREFIX", &raw, e.to_string()))
}

/// The change events' settings (see `events`): None without a sink.
fn events_settings() -> Result<Option<EventSettings>, ConfigError> {
    let Some(sink) = var("K_SINK").or_else(|| var("MR_EVENTS_SINK")) else {
        return Ok(None);
    };
    if !(sink.starts_with("http://") || sink.starts_with("https://"))
        || sink.parse::<axum::http::Uri>().is_err()
    {
        return Err(invalid(
            "MR_EVENTS_SINK",
            &sink,
            "is not an http:// or https:// URL",
        ));
    }
    let ms = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
        number(name, var(name), default, range).map(Duration::from_millis)
    };
    Ok(Some(EventSettings {
        sink,
        secret: var("MR_EVENTS_SECRET").map(String::into_bytes),
        source: var("MR_EVENTS_SOURCE").unwrap_or_else(|| "/model-registry".into()),
        stream: var("MR_EVENTS_STREAM").unwrap_or_else(|| "default".into()),
        settle: ms("MR_EVENTS_SETTLE_MS", 10_000, 0..=600_000)?,
        round: ms("MR_EVENTS_ROUND_MS", 50_000, 1_000..=900_000)?,
        interval: ms("MR_EVENTS_INTERVAL_MS", 2_000, 100..=3_600_000)?,
    }))
}

/// A whole number setting within `range` (`default` when unset).
fn number(
    name: &'static str,
    raw: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(invalid(
            name,
            &raw,
            format!(
                "is not a number between {} and {}",
                range.start(),
                range.end()
            ),
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
