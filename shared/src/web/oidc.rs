//! Logging in to the web interface under `MR_AUTH=jwt`: the OpenID Connect
//! authorization-code flow with PKCE (RFC 7636, `S256`), for a browser,
//! which has no bearer token of its own.
//!
//! 1. `GET /ui/login?next=/ui/...` sends the browser to the provider's
//!    authorization endpoint with a fresh `state`, a `nonce` and a code
//!    challenge, and sets a short-lived login cookie binding `state` and
//!    the page to come back to (signed, so it cannot be swapped).
//! 2. The provider sends the browser to `GET /ui/auth/callback?code&state`:
//!    the state must be the cookie's; the code is exchanged at the token
//!    endpoint with the code verifier; the ID token must be signed by the
//!    provider's keys (its JWKS), name this client as audience, carry the
//!    login's nonce and be unexpired. Its claims give the caller (the same
//!    `MR_JWT_USER_CLAIM` and `MR_JWT_GROUPS_CLAIM` as bearer tokens), who
//!    gets a session cookie (`api::auth::session`) and the page asked for.
//! 3. `POST /ui/logout` ends the session and, when the provider has one,
//!    goes through its end-session endpoint to `/ui/signed-out`.
//!
//! Nothing is kept on the server between the steps: the code verifier and
//! the nonce are derived from `state` with `MR_WEB_SECRET` (HMAC), so they
//! never reach the browser, and any instance can finish a login another
//! one started. The provider is discovered (`/.well-known/openid-configuration`)
//! on the first login, not at start-up (a cold start makes no call), and
//! again after a failure.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use maud::html;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::pages::Args;
use super::{Page, PageError, WebState, layout};
use crate::api::auth::jwt::{JwksSource, JwtSettings, JwtVerifier};
use crate::api::auth::session::{
    self, SESSION_COOKIE, Sessions, constant_time_eq, set_cookie, web_secret,
};
use crate::api::auth::{IdentitySettings, caller_of_claims, http};
use crate::api::guard::Identity;
use crate::domain::now_ms;
use crate::events::hmac_sha256;

/// The cookie carrying a login in progress.
const LOGIN_COOKIE: &str = "__Host-mr_login";
/// How long a login may take at the provider.
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);
/// Longest page path a login comes back to.
const MAX_NEXT: usize = 1024;
/// Where the provider sends the browser back, under the registry's URL.
pub const CALLBACK_PATH: &str = "/ui/auth/callback";

/// `MR_OIDC_*`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// `MR_OIDC_ISSUER`: the provider (its discovery document is under it).
    pub issuer: String,
    /// `MR_OIDC_CLIENT_ID`: this registry's client at the provider.
    pub client_id: String,
    /// `MR_OIDC_CLIENT_SECRET`: for a confidential client (sent with HTTP
    /// Basic); without one the client is public and PKCE alone binds the code.
    pub client_secret: Option<String>,
    /// `MR_OIDC_REDIRECT_URL` (default `MR_PUBLIC_URL` + `/ui/auth/callback`):
    /// registered at the provider.
    pub redirect_url: String,
    /// `MR_OIDC_SCOPES` (default `openid profile email`).
    pub scopes: String,
    /// `MR_OIDC_SESSION_SECS` (default 8 hours): how long a login lasts.
    pub session: Duration,
}

/// What discovery found.
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    end_session_endpoint: Option<String>,
    /// ID tokens: the provider's keys, its issuer, this client as audience.
    id_tokens: JwtVerifier,
}

/// The login of the web interface.
pub struct Login {
    settings: OidcSettings,
    identity: IdentitySettings,
    sessions: Sessions,
    provider: tokio::sync::OnceCell<Provider>,
}

impl Login {
    pub fn new(settings: OidcSettings, identity: IdentitySettings) -> Login {
        Login {
            sessions: Sessions::new(web_secret(), settings.session),
            settings,
            identity,
            provider: tokio::sync::OnceCell::new(),
        }
    }

    /// The provider, discovered once (a failure is retried next time).
    async fn provider(&self) -> Result<&Provider, PageError> {
        self.provider
            .get_or_try_init(|| discover(&self.settings))
            .await
            .map_err(|why| {
                tracing::warn!(issuer = %self.settings.issuer, error = %why, "OIDC discovery failed");
                PageError::upstream(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("The identity provider cannot be reached now ({why}). Try again shortly."),
                )
            })
    }

    /// The page under the registry's URL that `path` names.
    fn own_url(&self, path: &str) -> String {
        let base = &self.settings.redirect_url;
        let origin_end = base
            .find("://")
            .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(base.len());
        format!("{}{path}", &base[..origin_end])
    }
}

/// Read the provider's discovery document: its endpoints and keys.
async fn discover(settings: &OidcSettings) -> Result<Provider, String> {
    let doc = http::Discovery::fetch(&settings.issuer).await?;
    let id_tokens = JwtVerifier::new(&JwtSettings {
        issuers: vec![(
            doc.issuer().to_string(),
            JwksSource::parse(&doc.endpoint("jwks_uri")?)?,
        )],
        audience: settings.client_id.clone(),
        refresh_min: crate::api::auth::jwt::REFRESH_MIN_INTERVAL,
    })
    .map_err(|e| e.to_string())?;
    Ok(Provider {
        authorization_endpoint: doc.endpoint("authorization_endpoint")?,
        token_endpoint: doc.endpoint("token_endpoint")?,
        end_session_endpoint: doc.endpoint("end_session_endpoint").ok(),
        id_tokens,
    })
}

/// What a login derives from its `state` (never sent to the browser).
fn derived(state: &str, what: &str) -> String {
    hmac_sha256(web_secret(), format!("oidc-{what}\u{0}{state}").as_bytes())
}

/// The login cookie's value: state, expiry and page, signed.
fn login_cookie(state: &str, expires: u64, next: &str) -> String {
    let next = B64.encode(next);
    let mac = derived(&format!("{state}.{expires}.{next}"), "login");
    format!("{state}.{expires}.{next}.{mac}")
}

/// The state and page of a login cookie issued here and still valid.
fn open_login_cookie(value: &str) -> Option<(String, String)> {
    let mut parts = value.split('.');
    let (state, expires, next, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let expected = derived(&format!("{state}.{expires}.{next}"), "login");
    if parts.next().is_some() || !constant_time_eq(mac.as_bytes(), expected.as_bytes()) {
        return None;
    }
    if expires.parse::<u64>().ok()? <= now_ms() {
        return None;
    }
    let next = String::from_utf8(B64.decode(next).ok()?).ok()?;
    Some((state.to_string(), next))
}

/// A page of the web interface to come back to, or `/ui/`: never another
/// site (`//evil.example`, `/\evil.example`) nor anything outside `/ui`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.len() <= MAX_NEXT
                && session::honoured_on(n.split(['?', '#']).next().unwrap_or(""))
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !session::LOGIN_PATHS.iter().any(|p| n.starts_with(p)) =>
        {
            n.to_string()
        }
        _ => "/ui/".into(),
    }
}

/// `url` with `params` added to its query.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

/// 303 to `to`, setting `cookies` (never cached: every answer of the
/// interface is `no-store`).
fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

fn login_of(s: &WebState) -> Result<&Arc<Login>, PageError> {
    s.login.as_ref().ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "this registry has no login (MR_OIDC_ISSUER is not set)",
        )
    })
}

/// A refused login: a 400 page that offers to start again.
fn failed(why: impl Into<String>, next: &str) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, why).sign_in_again(next)
}

/// `GET /ui/login?next=`: off to the provider.
pub async fn login(
    State(s): State<WebState>,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    let login = login_of(&s)?;
    let args = Args::parse(q)?;
    let next = safe_next(args.get("next"));
    let provider = login.provider().await?;
    let state = {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        format!("{}{}", a.simple(), b.simple())
    };
    let verifier = derived(&state, "pkce");
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    let nonce = derived(&state, "nonce");
    let to = with_query(
        &provider.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", &login.settings.client_id),
            ("redirect_uri", &login.settings.redirect_url),
            ("scope", &login.settings.scopes),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let expires = now_ms() + LOGIN_LIFETIME.as_millis() as u64;
    let cookie = set_cookie(
        LOGIN_COOKIE,
        &login_cookie(&state, expires, &next),
        LOGIN_LIFETIME,
    );
    Ok(redirect(&to, &[cookie]))
}

/// `GET /ui/auth/callback?code&state` (or `?error`): back from the provider.
pub async fn callback(
    State(s): State<WebState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    let login = login_of(&s)?;
    let args = Args::parse(q)?;
    let pending = session::cookie(&headers, LOGIN_COOKIE).and_then(open_login_cookie);
    let next = pending
        .as_ref()
        .map_or("/ui/", |(_, n)| n.as_str())
        .to_string();
    if let Some(error) = args.get("error") {
        let detail = args.get("error_description").unwrap_or("");
        return Err(failed(
            format!("The identity provider did not log you in: {error}. {detail}"),
            &next,
        ));
    }
    let Some((state, next)) = pending else {
        return Err(failed(
            "This login has expired or was started in another browser or tab. Sign in again.",
            "/ui/",
        ));
    };
    let sent = args.get("state").unwrap_or("");
    if !constant_time_eq(sent.as_bytes(), state.as_bytes()) {
        return Err(failed(
            "This answer belongs to another login (its state does not match). Sign in again.",
            &next,
        ));
    }
    let code = args
        .get("code")
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| failed("The identity provider sent no code. Sign in again.", &next))?;
    let provider = login.provider().await?;
    let settings = &login.settings;
    let verifier = derived(&state, "pkce");
    let answer = http::post_form(
        &provider.token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &settings.redirect_url),
            ("client_id", &settings.client_id),
            ("code_verifier", &verifier),
        ],
        settings
            .client_secret
            .as_deref()
            .map(|secret| (settings.client_id.as_str(), secret)),
    )
    .await
    .map_err(|why| {
        tracing::warn!(error = %why, "OIDC token endpoint unreachable");
        PageError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "The identity provider cannot be reached now. Try again shortly.",
        )
        .sign_in_again(&next)
    })?;
    let body: Map<String, Value> = serde_json::from_str(&answer.body).unwrap_or_default();
    if answer.status != 200 {
        let error = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        let detail = body
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        tracing::warn!(status = answer.status, error, detail, "OIDC code refused");
        return Err(failed(
            format!(
                "The identity provider refused this login's code ({error}{}{detail}). Sign in again.",
                if detail.is_empty() { "" } else { ": " }
            ),
            &next,
        ));
    }
    let id_token = body.get("id_token").and_then(Value::as_str).ok_or_else(|| {
        PageError::upstream(
            StatusCode::BAD_GATEWAY,
            "The identity provider answered without an ID token (is the scope 'openid' in MR_OIDC_SCOPES?).",
        )
    })?;
    let verified = provider.id_tokens.verify(id_token).await.map_err(|e| {
        tracing::warn!(error = %e, "OIDC ID token refused");
        failed(
            format!("The identity provider's ID token was refused: {e}."),
            &next,
        )
    })?;
    let claims = verified.claims;
    let nonce = derived(&state, "nonce");
    let sent_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !constant_time_eq(sent_nonce.as_bytes(), nonce.as_bytes()) {
        return Err(failed(
            "The ID token is not this login's (its nonce does not match). Sign in again.",
            &next,
        ));
    }
    // OIDC Core §3.1.3.7: with several audiences, this client must be the party it was issued to.
    let audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .map_or(1, Vec::len);
    if audiences > 1
        && claims.get("azp").and_then(Value::as_str) != Some(settings.client_id.as_str())
    {
        return Err(failed(
            "The ID token was issued to another client (azp). Sign in again.",
            &next,
        ));
    }
    let caller = caller_of_claims(&login.identity, &claims).map_err(|e| {
        failed(
            format!("The ID token does not say who you are: {e}."),
            &next,
        )
    })?;
    let value = login
        .sessions
        .issue(&caller)
        .map_err(|e| failed(e.to_string(), &next))?;
    tracing::info!(caller = %caller.user, groups = caller.groups.len(), "signed in");
    Ok(redirect(
        &next,
        &[
            set_cookie(SESSION_COOKIE, &value, login.sessions.lifetime()),
            set_cookie(LOGIN_COOKIE, "", Duration::ZERO),
        ],
    ))
}

/// `POST /ui/logout` (the header's form): end the session, and the
/// provider's too when it has an end-session endpoint.
pub async fn logout(
    State(s): State<WebState>,
    id: Identity,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let login = login_of(&s)?;
    if !id.caller.is_anonymous() {
        super::pages::checked_form(&id, &body)?;
        tracing::info!(caller = %id.caller.user, "signed out");
    }
    let signed_out = login.own_url("/ui/signed-out");
    let to = match login
        .provider
        .get()
        .and_then(|p| p.end_session_endpoint.as_deref())
    {
        Some(end) => with_query(
            end,
            &[
                ("client_id", login.settings.client_id.as_str()),
                ("post_logout_redirect_uri", signed_out.as_str()),
            ],
        ),
        None => "/ui/signed-out".to_string(),
    };
    Ok(redirect(
        &to,
        &[set_cookie(SESSION_COOKIE, "", Duration::ZERO)],
    ))
}

/// `GET /ui/signed-out`.
pub async fn signed_out() -> Page {
    Ok(layout(
        "Signed out",
        None,
        html! {
            h1 { "You are signed out" }
            p { a href="/ui/login" { "Sign in again" } }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_come_back_only_to_pages_of_the_interface() {
        for ok in ["/ui/", "/ui/models/3?columns=accuracy", "/ui"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "//evil.example/ui/",
            "/\\evil.example",
            "https://evil.example/ui/",
            "/api/model_registry/v1alpha3/registered_models",
            "/ui/login?next=/ui/",
            "/ui/auth/callback",
            "/uix",
            "/ui/\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn a_login_cookie_opens_only_as_issued() {
        let expires = now_ms() + 60_000;
        let value = login_cookie("abc", expires, "/ui/models/1");
        assert_eq!(
            open_login_cookie(&value),
            Some(("abc".to_string(), "/ui/models/1".to_string()))
        );
        let swapped = value.replacen("abc", "abd", 1);
        assert_eq!(open_login_cookie(&swapped), None);
        let old = login_cookie("abc", now_ms() - 1, "/ui/");
        assert_eq!(open_login_cookie(&old), None);
        assert_eq!(open_login_cookie("a.b.c"), None);
    }

    #[test]
    fn the_verifier_is_a_valid_pkce_verifier() {
        let v = derived("state", "pkce");
        // RFC 7636 §4.1: 43 to 128 unreserved characters.
        assert!((43..=128).contains(&v.len()));
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        );
        assert_ne!(v, derived("state", "nonce"));
        assert_ne!(v, derived("other", "pkce"));
    }
}
