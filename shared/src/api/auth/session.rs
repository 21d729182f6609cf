//! Browser sessions of the web interface under `MR_AUTH=jwt` with an OIDC
//! login (`web::oidc`): after the login the caller's name and groups ride
//! in a cookie, signed with HMAC-SHA256 under `MR_WEB_SECRET` and valid
//! for `MR_OIDC_SESSION_SECS`. Nothing is stored server-side, so any
//! instance of any function checks a session (scale to zero, no sticky
//! sessions); the price is that a session cannot be revoked before it
//! expires but by changing the secret (which ends every session).
//!
//! The cookie is `__Host-` (Secure, `Path=/`, no `Domain`: no other host
//! can set or shadow it), HttpOnly (no script reads it) and `SameSite=Lax`
//! (sent on a top-level navigation from the identity provider, never on a
//! cross-site form post or fetch). It is honoured on `/ui` only: the API
//! takes bearer tokens, so a cookie can never make a cross-site API call.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::domain::access::Caller;
use crate::domain::now_ms;
use crate::events::hmac_sha256;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-mr_session";
/// Longest session cookie value (browsers keep 4 KiB per cookie, name and
/// attributes included).
pub const MAX_COOKIE: usize = 3800;
/// Shortest `MR_WEB_SECRET` accepted where it signs sessions.
pub const MIN_SECRET: usize = 32;

/// `MR_WEB_SECRET`, or (unset) a secret drawn once per process: forms and
/// sessions signed by one instance are then refused by the others.
pub fn web_secret() -> &'static [u8] {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET.get_or_init(|| match std::env::var("MR_WEB_SECRET") {
        Ok(s) if !s.trim().is_empty() => s.into_bytes(),
        _ => {
            let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
            bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            bytes
        }
    })
}

/// `a == b` in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a session cookie says.
#[derive(Serialize, Deserialize)]
struct Claims {
    /// The user.
    u: String,
    /// Their groups.
    g: Vec<String>,
    /// Expiry, ms since the epoch.
    e: u64,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "the identity has too many groups ({0}) to fit a browser session; \
         ask the identity provider to send fewer (or set MR_JWT_GROUPS_CLAIM to a shorter list)"
    )]
    TooLarge(usize),
}

/// Issues and checks session cookies.
#[derive(Clone)]
pub struct Sessions {
    secret: Arc<[u8]>,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(secret: &[u8], lifetime: Duration) -> Sessions {
        Sessions {
            secret: secret.into(),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn mac(&self, payload: &str) -> String {
        hmac_sha256(&self.secret, format!("session\u{0}{payload}").as_bytes())
    }

    /// The cookie value of a new session of `caller`.
    pub fn issue(&self, caller: &Caller) -> Result<String, SessionError> {
        let claims = Claims {
            u: caller.user.clone(),
            g: caller.groups.clone(),
            e: now_ms() + self.lifetime.as_millis() as u64,
        };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let value = format!("{payload}.{}", self.mac(&payload));
        if value.len() > MAX_COOKIE {
            return Err(SessionError::TooLarge(caller.groups.len()));
        }
        Ok(value)
    }

    /// The caller of a session cookie and until when it holds, if it was
    /// issued here (this secret) and has not expired.
    pub fn open(&self, value: &str) -> Option<(Caller, Instant)> {
        if value.len() > MAX_COOKIE {
            return None;
        }
        let (payload, mac) = value.rsplit_once('.')?;
        if !constant_time_eq(mac.as_bytes(), self.mac(payload).as_bytes()) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        let left = claims.e.checked_sub(now_ms()).filter(|ms| *ms > 0)?;
        let caller = Caller {
            user: claims.u,
            groups: claims.g,
        };
        Some((caller, Instant::now() + Duration::from_millis(left)))
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value for `name`: `__Host-` rules (Secure, `Path=/`),
/// HttpOnly, `SameSite=Lax`; `max_age` zero deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Max-Age={}; Path=/; Secure; HttpOnly; SameSite=Lax",
        max_age.as_secs()
    )
}

/// The login's own pages, open to callers without a session: where a
/// login starts, where the identity provider sends the browser back, the
/// sign-out form's target and the page after it.
pub const LOGIN_PATHS: [&str; 4] = [
    "/ui/login",
    "/ui/auth/callback",
    "/ui/logout",
    "/ui/signed-out",
];

/// Where a page asked for without a session sends the browser: the login,
/// which comes back to `path_and_query` (the page) afterwards.
pub fn login_location(path_and_query: &str) -> String {
    format!(
        "/ui/login?{}",
        serde_urlencoded::to_string([("next", path_and_query)]).unwrap_or_default()
    )
}

/// Is `path` one where the session cookie counts (the web interface)?
pub fn honoured_on(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Caller {
        Caller {
            user: "ada".into(),
            groups: vec!["ml".into(), "risk".into()],
        }
    }

    #[test]
    fn a_session_opens_only_as_issued() {
        let s = Sessions::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let value = s.issue(&ada()).unwrap();
        let (caller, until) = s.open(&value).unwrap();
        assert_eq!(caller.user, "ada");
        assert_eq!(caller.groups, vec!["ml", "risk"]);
        assert!(until > Instant::now() + Duration::from_secs(50));
        // Another secret, a changed payload, a cut value: refused.
        let other = Sessions::new(
            b"another secret of 32 bytes ......",
            Duration::from_secs(60),
        );
        assert!(other.open(&value).is_none());
        let (payload, mac) = value.rsplit_once('.').unwrap();
        let forged = B64.encode(
            serde_json::to_vec(&Claims {
                u: "admin".into(),
                g: vec!["admins".into()],
                e: u64::MAX,
            })
            .unwrap(),
        );
        assert!(s.open(&format!("{forged}.{mac}")).is_none());
        assert!(s.open(payload).is_none());
        assert!(s.open("").is_none());
        // Expired.
        let short = Sessions::new(b"0123456789abcdef0123456789abcdef", Duration::ZERO);
        assert!(short.open(&short.issue(&ada()).unwrap()).is_none());
    }

    #[test]
    fn too_many_groups_are_refused_not_cut() {
        let s = Sessions::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let many = Caller {
            user: "ada".into(),
            groups: (0..400).map(|i| format!("group-number-{i}")).collect(),
        };
        assert!(matches!(s.issue(&many), Err(SessionError::TooLarge(400))));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; __Host-mr_session=abc.def".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc.def"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(honoured_on("/ui/models/1") && honoured_on("/ui"));
        assert!(!honoured_on(
            "/api/model_registry/v1alpha3/registered_models"
        ));
        assert!(!honoured_on("/uix"));
    }
}
