//! Bearer tokens (JWT) verified locally, without a call per request.
//!
//! - Signatures: RS256 and ES256 only, against the keys of the issuer's JWKS
//!   (a file, or an `https://` URL; `http://` only on a loopback address).
//!   Never `none`, never HMAC: a key is used only with the algorithm of its
//!   type, so a public key can never serve as an HMAC secret.
//! - Claims: `iss` is one of the configured issuers (each with its own
//!   JWKS), `aud` contains the configured audience, `exp` and `nbf` hold
//!   with 60 s of leeway.
//! - Keys are cached; a token signed with an unknown `kid` makes the JWKS
//!   be read again (at most once per `MR_JWT_REFRESH_SECS`), so rotated
//!   keys are picked up; cached keys are re-read after [`KEYS_MAX_AGE`].
//! - [`JwtVerifier::verify`] says how long its answer may be reused (until
//!   the token expires, at most [`VERIFIED_TTL`]): the edge remembers the
//!   caller for that long (`auth::TokenCache`), so a client that sends the
//!   same token on every request pays for one signature check.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Clock skew accepted on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// Longest token accepted.
const MAX_TOKEN: usize = 16 * 1024;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// An unknown `kid` reloads the JWKS at most this often (default of
/// `MR_JWT_REFRESH_SECS`).
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Cached keys are reloaded when older than this.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// How long a verified token is remembered (never past its `exp`).
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Where an issuer's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
    /// The `jwks_uri` of the issuer's discovery document (this issuer URL's
    /// `/.well-known/openid-configuration`), read with the keys.
    Discover(String),
}

impl JwksSource {
    /// `https://...`, `http://127.0.0.1...` / `http://localhost...` / `http://[::1]...`, or a file path.
    pub fn parse(raw: &str) -> Result<JwksSource, String> {
        let raw = raw.trim();
        if raw.starts_with("http://") || raw.starts_with("https://") {
            super::http::check_url(raw).map_err(|e| format!("JWKS URL {e}"))?;
            return Ok(JwksSource::Url(raw.to_string()));
        }
        if raw.contains("://") {
            return Err(format!(
                "JWKS '{raw}': expected an https URL or a file path"
            ));
        }
        Ok(JwksSource::File(PathBuf::from(raw)))
    }
}

/// Why the configured keys cannot be used (start-up).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{0}")]
    Settings(String),
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0} is not accepted (RS256 or ES256)")]
    Algorithm(String),
    #[error("token issuer '{0}' is not trusted")]
    Issuer(String),
    #[error("no key of the issuer matches the token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The issuer's keys could not be read: not the caller's fault.
    #[error("{0}")]
    KeysUnavailable(String),
}

/// One usable public key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    loaded: Option<Instant>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        let fits = |k: &&Key| k.alg == alg;
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned(),
            // Without a kid: the only key of that algorithm, if there is one.
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// One trusted issuer and its keys.
struct Issuer {
    issuer: String,
    source: JwksSource,
    keys: RwLock<Arc<KeySet>>,
    /// Serialises reloads; holds the time of the last attempt.
    reload: tokio::sync::Mutex<Option<Instant>>,
    refresh_min: Duration,
}

/// A verified token's claims, and until when that verdict may be reused.
pub struct Verified {
    pub claims: Map<String, Value>,
    pub until: Instant,
}

/// Verifies bearer tokens of the configured issuers.
pub struct JwtVerifier {
    issuers: Vec<Issuer>,
    audience: String,
}

/// `MR_JWT_*`: the issuers (each with its JWKS) and the audience.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuers: Vec<(String, JwksSource)>,
    pub audience: String,
    /// Least time between two reloads of one JWKS.
    pub refresh_min: Duration,
}

impl JwtVerifier {
    /// A verifier; JWKS files are read now (a bad file stops start-up),
    /// URLs on the first token (start-up does no network I/O).
    pub fn new(settings: &JwtSettings) -> Result<JwtVerifier, JwksError> {
        if settings.issuers.is_empty() {
            return Err(JwksError::Settings(
                "MR_AUTH=jwt needs MR_JWT_ISSUER and MR_JWT_JWKS".into(),
            ));
        }
        if settings.audience.trim().is_empty() {
            return Err(JwksError::Settings(
                "MR_AUTH=jwt needs MR_JWT_AUDIENCE".into(),
            ));
        }
        let mut issuers = Vec::new();
        for (issuer, source) in &settings.issuers {
            let keys = match source {
                JwksSource::File(path) => {
                    let text =
                        std::fs::read_to_string(path).map_err(|cause| JwksError::Unreadable {
                            path: path.clone(),
                            cause,
                        })?;
                    Arc::new(parse_jwks(&text).map_err(|reason| JwksError::Invalid {
                        path: path.clone(),
                        reason,
                    })?)
                }
                JwksSource::Url(_) | JwksSource::Discover(_) => Arc::new(KeySet::default()),
            };
            issuers.push(Issuer {
                issuer: issuer.clone(),
                source: source.clone(),
                keys: RwLock::new(keys),
                reload: tokio::sync::Mutex::new(None),
                refresh_min: settings.refresh_min,
            });
        }
        Ok(JwtVerifier {
            issuers,
            audience: settings.audience.clone(),
        })
    }

    /// The claims of a valid token.
    pub async fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        if token.len() > MAX_TOKEN {
            return Err(JwtError::Malformed(format!(
                "longer than {MAX_TOKEN} bytes"
            )));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        // Which issuer's keys to try: the unverified `iss`, checked again below.
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| JwtError::Malformed(e.to_string()))?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| JwtError::Invalid("the token has no iss".into()))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or_else(|| JwtError::Issuer(iss.chars().take(200).collect()))?;
        let kid = header.kid.as_deref();
        let mut key = issuer.key(kid, header.alg);
        if key.is_none() || issuer.is_stale() {
            match issuer.reload_keys(key.is_none()).await {
                Ok(()) => key = issuer.key(kid, header.alg).or(key),
                Err(e) if key.is_none() => return Err(e),
                Err(e) => tracing::warn!(issuer = %issuer.issuer, error = %e, "keeping old JWKS"),
            }
        }
        let key = key.ok_or_else(|| JwtError::UnknownKey(header.kid.clone()))?;
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.issuer]);
        // The audience is checked below, as API Gateway's JWT authorizer does.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        if !for_audience(&data.claims, &self.audience) {
            return Err(JwtError::Invalid(format!(
                "the token is not for audience '{}' (aud, or client_id without aud)",
                self.audience
            )));
        }
        let until = reusable_until(&data.claims);
        Ok(Verified {
            claims: data.claims,
            until,
        })
    }
}

/// Is a token for `audience`: its `aud` (a string or a list) names it, or,
/// without `aud`, its `client_id` is it (Cognito's access tokens carry no
/// `aud`; API Gateway's JWT authorizer accepts them the same way).
fn for_audience(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        None | Some(Value::Null) => {
            claims.get("client_id").and_then(Value::as_str) == Some(audience)
        }
        Some(_) => false,
    }
}

/// Until when a verified token's verdict may be reused: its `exp` (with the
/// leeway), at most [`VERIFIED_TTL`] from now.
fn reusable_until(claims: &Map<String, Value>) -> Instant {
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let left = Duration::from_secs(exp.saturating_add(LEEWAY_SECS).saturating_sub(now_secs));
    Instant::now() + left.min(VERIFIED_TTL)
}

impl Issuer {
    fn key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(kid, alg)
    }

    /// Keys never loaded, or loaded longer ago than [`KEYS_MAX_AGE`].
    fn is_stale(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.loaded.is_none_or(|t| t.elapsed() > KEYS_MAX_AGE)
    }

    /// Read the JWKS again, unless another request did within
    /// `refresh_min` (then an unknown kid stays unknown).
    async fn reload_keys(&self, unknown_kid: bool) -> Result<(), JwtError> {
        let mut last = self.reload.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.refresh_min) {
            if !unknown_kid {
                return Ok(());
            }
            let loaded = self
                .keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys
                .len();
            if loaded == 0 && !matches!(self.source, JwksSource::File(_)) {
                return Err(JwtError::KeysUnavailable(format!(
                    "the keys of issuer {} could not be fetched recently",
                    self.issuer
                )));
            }
            return Ok(());
        }
        *last = Some(Instant::now());
        let text = match &self.source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| JwtError::KeysUnavailable(format!("{}: {e}", path.display())))?,
            JwksSource::Url(url) => super::http::get(url)
                .await
                .map_err(JwtError::KeysUnavailable)?,
            JwksSource::Discover(issuer) => {
                let uri = super::http::Discovery::fetch(issuer)
                    .await
                    .and_then(|d| d.endpoint("jwks_uri"))
                    .map_err(JwtError::KeysUnavailable)?;
                super::http::get(&uri)
                    .await
                    .map_err(JwtError::KeysUnavailable)?
            }
        };
        let set = parse_jwks(&text)
            .map_err(|e| JwtError::KeysUnavailable(format!("JWKS of {}: {e}", self.issuer)))?;
        tracing::info!(issuer = %self.issuer, keys = set.keys.len(), "loaded JWKS");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }
}

/// The RS256 and ES256 signing keys of a JWKS document; others are skipped.
fn parse_jwks(text: &str) -> Result<KeySet, String> {
    if text.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut keys = Vec::new();
    for raw in list {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue; // a key type this server does not know
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key: Arc::new(key),
        });
    }
    if keys.is_empty() {
        return Err("no RS256 or ES256 signing key".into());
    }
    Ok(KeySet {
        keys,
        loaded: Some(Instant::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_sources() {
        assert_eq!(
            JwksSource::parse("/etc/jwks.json").unwrap(),
            JwksSource::File("/etc/jwks.json".into())
        );
        assert!(matches!(
            JwksSource::parse("https://issuer/keys").unwrap(),
            JwksSource::Url(_)
        ));
        assert!(JwksSource::parse("http://127.0.0.1:9000/keys").is_ok());
        assert!(JwksSource::parse("http://localhost/keys").is_ok());
        assert!(JwksSource::parse("http://evil.example/keys").is_err());
        assert!(JwksSource::parse("http://127.0.0.1.evil.example/keys").is_err());
        assert!(JwksSource::parse("ftp://x").is_err());
    }

    #[test]
    fn the_audience_is_aud_or_else_client_id() {
        let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
        let a = "model-registry";
        assert!(for_audience(&claims(serde_json::json!({"aud": a})), a));
        assert!(for_audience(
            &claims(serde_json::json!({"aud": ["x", a]})),
            a
        ));
        assert!(for_audience(
            &claims(serde_json::json!({"client_id": a})),
            a
        ));
        assert!(for_audience(
            &claims(serde_json::json!({"aud": null, "client_id": a})),
            a
        ));
        // An aud that names another wins over a client_id that fits.
        assert!(!for_audience(
            &claims(serde_json::json!({"aud": "x", "client_id": a})),
            a
        ));
        assert!(!for_audience(
            &claims(serde_json::json!({"client_id": "x"})),
            a
        ));
        assert!(!for_audience(&claims(serde_json::json!({})), a));
        assert!(!for_audience(&claims(serde_json::json!({"aud": 7})), a));
    }

    #[test]
    fn jwks_without_usable_keys_is_refused() {
        assert!(parse_jwks("{\"keys\": []}").is_err());
        assert!(parse_jwks("{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}").is_err());
        assert!(parse_jwks("[]").is_err());
    }
}
