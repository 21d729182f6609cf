//! Authentication: who is calling, from the request, as `MR_AUTH` says.
//!
//! - `none`: every caller is [`ANONYMOUS`] (a laptop; `make run`).
//! - `jwt`: `Authorization: Bearer <token>` verified locally against the
//!   issuer's JWKS (see [`jwt`]); OIDC access tokens and Kubernetes
//!   service-account tokens both fit. Under Lambda, claims that an API
//!   Gateway JWT authorizer already verified are accepted too.
//! - `header`: the user and groups from headers set by an authenticating
//!   proxy (Kubeflow's `kubeflow-userid` / `kubeflow-groups`). Safe only
//!   when nothing but that proxy can reach the server.
//! - `apigateway` (Lambda only): the identity API Gateway's authorizer put
//!   in the request context (JWT authorizer claims, or the IAM principal).
//!
//! Under `jwt` with an OIDC login (`MR_OIDC_*`), the web interface's pages
//! also take the session cookie that login sets (see [`session`]).
//!
//! A request without credentials is [`ANONYMOUS`] in every mode; a request
//! with bad credentials is refused (401), whatever the policy says. An
//! expired or foreign session cookie is no credential: the page asks to
//! log in again.

pub mod http;
pub mod jwt;
pub mod session;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::HeaderMap;
use axum::http::request::Parts;
use lambda_http::request::RequestContext;
use serde_json::Value;

use crate::domain::access::{ANONYMOUS, Caller};
use jwt::{JwtError, JwtVerifier};
use session::Sessions;

/// Longest user name and group name taken from a request, and most groups.
const MAX_NAME: usize = 256;
const MAX_GROUPS: usize = 256;

/// `MR_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Jwt,
    Header,
    ApiGateway,
}

impl AuthMode {
    /// The mode named `raw` (any case), if there is one.
    pub fn parse(raw: &str) -> Option<AuthMode> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "none" => Some(AuthMode::None),
            "jwt" => Some(AuthMode::Jwt),
            "header" => Some(AuthMode::Header),
            "apigateway" => Some(AuthMode::ApiGateway),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Jwt => "jwt",
            AuthMode::Header => "header",
            AuthMode::ApiGateway => "apigateway",
        }
    }
}

/// Where the caller's name and groups are found.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Claim of a token naming the user (`MR_JWT_USER_CLAIM`, default `sub`).
    pub user_claim: String,
    /// Claim of a token listing its groups (`MR_JWT_GROUPS_CLAIM`, default `groups`).
    pub groups_claim: String,
    /// Header naming the user (`MR_AUTH_USER_HEADER`, default `kubeflow-userid`).
    pub user_header: String,
    /// Header listing groups, comma-separated (`MR_AUTH_GROUPS_HEADER`, default `kubeflow-groups`).
    pub groups_header: String,
    /// Prefix removed from the user header (`MR_AUTH_USER_PREFIX`, e.g. `accounts.google.com:`).
    pub user_prefix: Option<String>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            user_header: "kubeflow-userid".into(),
            groups_header: "kubeflow-groups".into(),
            user_prefix: None,
        }
    }
}

/// Why a request's credentials were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Credentials were sent but are not valid (401).
    #[error("{0}")]
    Invalid(String),
    /// The keys to check them could not be fetched (503).
    #[error("cannot verify the token now: {0}")]
    Unavailable(String),
}

impl From<JwtError> for AuthError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::KeysUnavailable(m) => AuthError::Unavailable(m),
            other => AuthError::Invalid(other.to_string()),
        }
    }
}

/// Turns a request into a [`Caller`].
pub struct Authenticator {
    mode: AuthMode,
    identity: IdentitySettings,
    jwt: Option<JwtVerifier>,
    /// Browser sessions of the web interface (`MR_AUTH=jwt` with `MR_OIDC_*`).
    sessions: Option<Sessions>,
}

impl Authenticator {
    pub fn new(mode: AuthMode, identity: IdentitySettings, jwt: Option<JwtVerifier>) -> Self {
        Authenticator {
            mode,
            identity,
            jwt,
            sessions: None,
        }
    }

    /// Also accept the web interface's session cookies (on `/ui` only).
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Does the web interface have a login (sessions are accepted)?
    pub fn has_sessions(&self) -> bool {
        self.sessions.is_some()
    }

    /// The session cookie a request carries where it counts, if sessions
    /// are on: the credentials to remember its caller by.
    pub fn session_cookie<'a>(&self, parts: &'a Parts) -> Option<&'a str> {
        self.sessions.as_ref()?;
        if !session::honoured_on(parts.uri.path()) {
            return None;
        }
        session::cookie(&parts.headers, session::SESSION_COOKIE)
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller of a request, and until when the same credentials may be
    /// taken to mean the same caller without checking them again (a
    /// verified token, until it expires).
    pub async fn authenticate(
        &self,
        parts: &Parts,
    ) -> Result<(Caller, Option<Instant>), AuthError> {
        let once = |c: Caller| (c, None);
        match self.mode {
            AuthMode::None => Ok(once(Caller::anonymous())),
            AuthMode::Header => self.caller_of_headers(&parts.headers).map(once),
            AuthMode::ApiGateway => Ok(once(
                self.caller_of_gateway(parts)?
                    .unwrap_or_else(Caller::anonymous),
            )),
            AuthMode::Jwt => {
                if let Some(token) = bearer(&parts.headers)? {
                    let Some(verifier) = &self.jwt else {
                        return Err(AuthError::Invalid("no token issuer is configured".into()));
                    };
                    let verified = verifier.verify(token).await?;
                    let caller = self.caller_of_claims(&verified.claims)?;
                    return Ok((caller, Some(verified.until)));
                }
                if let (Some(sessions), Some(value)) = (&self.sessions, self.session_cookie(parts))
                    && let Some((caller, until)) = sessions.open(value)
                {
                    return Ok((caller, Some(until)));
                }
                // Behind API Gateway, its JWT authorizer may have verified the token already.
                Ok(once(
                    self.caller_of_gateway(parts)?
                        .unwrap_or_else(Caller::anonymous),
                ))
            }
        }
    }

    fn caller_of_claims(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<Caller, AuthError> {
        caller_of_claims(&self.identity, claims)
    }

    fn caller_of_headers(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let text = |name: &str| -> Result<Option<String>, AuthError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_string()))
                    .map_err(|_| AuthError::Invalid(format!("header {name} is not text"))),
            }
        };
        let Some(mut user) = text(&self.identity.user_header)?.filter(|u| !u.is_empty()) else {
            return Ok(Caller::anonymous());
        };
        if let Some(prefix) = &self.identity.user_prefix
            && let Some(rest) = user.strip_prefix(prefix.as_str())
        {
            user = rest.to_string();
        }
        let groups = text(&self.identity.groups_header)?
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        caller(user, groups)
    }

    /// The identity API Gateway's authorizer established (Lambda only):
    /// JWT authorizer claims (HTTP API), Cognito claims (REST API), or the
    /// IAM principal's ARN.
    fn caller_of_gateway(&self, parts: &Parts) -> Result<Option<Caller>, AuthError> {
        let Some(ctx) = parts.extensions.get::<RequestContext>() else {
            return Ok(None);
        };
        let (claims, iam_arn) = match ctx {
            RequestContext::ApiGatewayV2(c) => match &c.authorizer {
                Some(a) => (
                    a.jwt.as_ref().map(|j| {
                        j.claims
                            .iter()
                            .map(|(k, v)| (k.clone(), gateway_claim(v)))
                            .collect::<serde_json::Map<_, _>>()
                    }),
                    a.iam.as_ref().and_then(|i| i.user_arn.clone()),
                ),
                None => (None, None),
            },
            RequestContext::ApiGatewayV1(c) => (
                c.authorizer
                    .fields
                    .get("claims")
                    .and_then(Value::as_object)
                    .cloned(),
                c.identity.user_arn.clone(),
            ),
            _ => (None, None),
        };
        if let Some(claims) = claims {
            return self.caller_of_claims(&claims).map(Some);
        }
        match iam_arn {
            Some(arn) => caller(arn, Vec::new()).map(Some),
            None => Ok(None),
        }
    }
}

/// Answers remembered per credential (the `Authorization` header's value)
/// until they expire: a token is verified once, not on every request.
/// Bounded: full, it drops what expired, and then everything.
pub struct TokenCache<T> {
    entries: Mutex<HashMap<u64, Remembered<T>>>,
    capacity: usize,
}

/// One credential, what it meant, and until when.
struct Remembered<T> {
    credentials: Box<[u8]>,
    value: T,
    until: Instant,
}

impl<T: Clone> TokenCache<T> {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// What was remembered for exactly these credentials, if not expired.
    pub fn get(&self, credentials: &[u8]) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let known = entries.get(&Self::key(credentials))?;
        (*known.credentials == *credentials && known.until > Instant::now())
            .then(|| known.value.clone())
    }

    pub fn put(&self, credentials: &[u8], value: T, until: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, known| known.until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        let known = Remembered {
            credentials: credentials.into(),
            value,
            until,
        };
        entries.insert(Self::key(credentials), known);
    }

    /// A cheap hash of the credentials' length and last bytes (a token's
    /// signature); equality is still checked on all of them, so a collision
    /// only costs a second verification.
    fn key(credentials: &[u8]) -> u64 {
        let tail = &credentials[credentials.len().saturating_sub(128)..];
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ credentials.len() as u64;
        for b in tail {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// API Gateway flattens claims to strings; lists arrive as `[a b c]`.
fn gateway_claim(v: &str) -> Value {
    match v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => Value::Array(
            inner
                .split_whitespace()
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        None => Value::String(v.to_string()),
    }
}

/// `Authorization: Bearer <token>`, if sent. Another scheme is refused:
/// credentials the server cannot check must not pass as anonymous.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Invalid(
            "the Authorization header must be 'Bearer <token>'".into(),
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Invalid("the bearer token is empty".into()));
    }
    Ok(Some(token))
}

/// A caller from verified token claims (an access token's, or the ID
/// token of a web login), by the claims `identity` names.
pub fn caller_of_claims(
    identity: &IdentitySettings,
    claims: &serde_json::Map<String, Value>,
) -> Result<Caller, AuthError> {
    let user = match claims.get(&identity.user_claim) {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(AuthError::Invalid(format!(
                "the token has no string claim '{}' naming the caller",
                identity.user_claim
            )));
        }
    };
    let groups = match claims.get(&identity.groups_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            return Err(AuthError::Invalid(format!(
                "the token's claim '{}' is not a list of groups",
                identity.groups_claim
            )));
        }
    };
    caller(user, groups)
}

/// A caller with checked names: not empty, not too long, no control
/// characters, and never the reserved anonymous user.
fn caller(user: String, mut groups: Vec<String>) -> Result<Caller, AuthError> {
    let ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(char::is_control);
    if !ok(&user) {
        return Err(AuthError::Invalid(
            "the caller's name is empty or invalid".into(),
        ));
    }
    if user == ANONYMOUS {
        return Err(AuthError::Invalid(format!(
            "'{ANONYMOUS}' is reserved for requests without credentials"
        )));
    }
    if groups.len() > MAX_GROUPS {
        return Err(AuthError::Invalid(format!("more than {MAX_GROUPS} groups")));
    }
    groups.retain(|g| ok(g));
    Ok(Caller { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().uri("/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn auth(mode: AuthMode) -> Authenticator {
        Authenticator::new(mode, IdentitySettings::default(), None)
    }

    #[tokio::test]
    async fn header_mode_reads_the_proxy_headers() {
        let a = auth(AuthMode::Header);
        let (c, _) = a
            .authenticate(&parts(&[
                ("kubeflow-userid", "ada@example.com"),
                ("kubeflow-groups", "ml-team, risk,,"),
            ]))
            .await
            .unwrap();
        assert_eq!(c.user, "ada@example.com");
        assert_eq!(c.groups, vec!["ml-team", "risk"]);
        assert!(a.authenticate(&parts(&[])).await.unwrap().0.is_anonymous());
        assert!(
            a.authenticate(&parts(&[("kubeflow-userid", "anonymous")]))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn other_schemes_are_refused_not_ignored() {
        let a = auth(AuthMode::Jwt);
        for h in ["Basic YTpi", "Bearer ", "Bearer"] {
            assert!(
                matches!(
                    a.authenticate(&parts(&[("authorization", h)])).await,
                    Err(AuthError::Invalid(_))
                ),
                "{h}"
            );
        }
        assert!(a.authenticate(&parts(&[])).await.unwrap().0.is_anonymous());
    }

    #[test]
    fn gateway_lists() {
        assert_eq!(gateway_claim("[a b]"), serde_json::json!(["a", "b"]));
        assert_eq!(gateway_claim("x"), serde_json::json!("x"));
    }
}
