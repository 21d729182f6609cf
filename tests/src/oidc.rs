//! An OpenID Connect provider for tests of the browser login: the
//! authorization-code flow with PKCE (S256 only), one registered client, a
//! login page that asks for a user name and groups instead of a password,
//! and id_tokens signed with a [`TestIssuer`]'s keys. It is strict where a
//! lenient provider would hide a client bug (exact redirect URIs, single-use
//! codes bound to client, redirect URI and PKCE challenge, no repeated
//! parameters, client authentication by one method only), and it can
//! [`Tamper`] with its id_tokens so tests see the client refuse them.
//!
//! Plain HTTP on 127.0.0.1 only: it is a test double, not a provider.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64_STD, URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::issuer::{Alg, TestIssuer, now_secs};

/// `aud` of the access tokens: what the registry accepts as a bearer token.
pub const ACCESS_TOKEN_AUDIENCE: &str = "model-registry";

/// Largest form body accepted (login form, token request).
const MAX_FORM: usize = 64 * 1024;
/// How long an authorization code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Lifetime of the issued tokens, in seconds.
const TOKEN_LIFETIME: u64 = 3600;
/// What `scope` may hold (also in the discovery document).
const SCOPES: [&str; 4] = ["openid", "profile", "email", "groups"];
/// Parameters of the login form itself, not of the authorization request.
const LOGIN_FIELDS: [&str; 3] = ["username", "groups", "deny"];

/// How the provider configures its one client, and where it listens.
#[derive(Debug, Clone)]
pub struct ProviderOpts {
    pub client_id: String,
    /// Some: a confidential client, the token endpoint requires its secret
    /// (HTTP Basic per RFC 6749 §2.3.1, or `client_secret` in the form).
    /// None: a public client, which must send no credentials at all.
    pub client_secret: Option<String>,
    /// Compared as exact strings, as OAuth 2.0 Security BCP requires.
    pub redirect_uris: Vec<String>,
    /// Some: keys kept in this directory ([`TestIssuer::in_dir`]), so the
    /// `test-issuer jwks` tool prints them; None: fresh keys.
    pub keys_dir: Option<PathBuf>,
    /// 0: any free port. The provider binds 127.0.0.1.
    pub port: u16,
}

/// A defect put into the id_tokens issued from then on, for tests that the
/// client checks each part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tamper {
    #[default]
    None,
    /// `nonce` is "not-the-nonce" instead of the one of the request.
    WrongNonce,
    /// `aud` is "someone-else" instead of the client id.
    WrongAudience,
    /// `iat` three hours and `exp` two hours in the past (beyond any leeway).
    Expired,
    /// `iss` is "https://evil.example".
    WrongIssuer,
    /// Signed by another key that claims the kid of the provider's RSA key.
    ForeignKey,
    /// The token response has no `id_token` at all.
    NoIdToken,
}

/// A running provider. The server stops when this is dropped.
pub struct Provider {
    shared: Arc<Shared>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The state the handlers share with [`Provider`].
struct Shared {
    /// Base URL, also the `iss` of the tokens.
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    redirect_uris: Vec<String>,
    keys: TestIssuer,
    /// Signs [`Tamper::ForeignKey`] tokens; made on first use (RSA key
    /// generation is slow enough to keep it off the start-up path).
    foreign: OnceLock<TestIssuer>,
    tamper: Mutex<Tamper>,
    /// Authorization codes not yet exchanged.
    codes: Mutex<HashMap<String, Grant>>,
    tokens_issued: AtomicUsize,
    token_errors: AtomicUsize,
    logouts: AtomicUsize,
    last_token_request: Mutex<Option<Vec<(String, String)>>>,
    last_authorize_query: Mutex<Option<Vec<(String, String)>>>,
}

/// What an authorization code stands for until it is exchanged.
struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    username: String,
    groups: Vec<String>,
    issued: Instant,
}

impl Provider {
    /// Binds 127.0.0.1:`opts.port` and serves in a background task.
    /// Panics if the port is taken or a redirect URI has a fragment (which
    /// RFC 6749 §3.1.2 forbids).
    pub async fn start(opts: ProviderOpts) -> Provider {
        for uri in &opts.redirect_uris {
            assert!(!uri.contains('#'), "redirect URI with a fragment: {uri}");
        }
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .unwrap_or_else(|e| panic!("OIDC provider: bind 127.0.0.1:{}: {e}", opts.port));
        let port = listener.local_addr().expect("local address").port();
        let issuer = format!("http://127.0.0.1:{port}");
        let keys = match &opts.keys_dir {
            Some(dir) => TestIssuer::in_dir(dir, &issuer, ACCESS_TOKEN_AUDIENCE),
            None => TestIssuer::new(&issuer, ACCESS_TOKEN_AUDIENCE, "oidc"),
        };
        let shared = Arc::new(Shared {
            issuer,
            client_id: opts.client_id,
            client_secret: opts.client_secret,
            redirect_uris: opts.redirect_uris,
            keys,
            foreign: OnceLock::new(),
            tamper: Mutex::new(Tamper::None),
            codes: Mutex::new(HashMap::new()),
            tokens_issued: AtomicUsize::new(0),
            token_errors: AtomicUsize::new(0),
            logouts: AtomicUsize::new(0),
            last_token_request: Mutex::new(None),
            last_authorize_query: Mutex::new(None),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize_page).post(authorize_submit))
            .route("/token", axum::routing::post(token))
            .route("/logout", get(logout))
            .with_state(shared.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { shared, task }
    }

    /// Serves until the server fails (in practice: until the process is
    /// killed); for the `test-issuer oidc` tool.
    pub async fn serve_forever(mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// "http://127.0.0.1:<port>", no trailing slash; the `iss` of the tokens.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The keys that sign the tokens (their `jwks()` is served at /jwks).
    pub fn keys(&self) -> &TestIssuer {
        &self.shared.keys
    }

    /// Affects the id_tokens issued from now on.
    pub fn set_tamper(&self, t: Tamper) {
        *self.shared.tamper.lock().unwrap() = t;
    }

    /// Successful /token answers.
    pub fn tokens_issued(&self) -> usize {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// Refused /token requests.
    pub fn token_errors(&self) -> usize {
        self.shared.token_errors.load(Ordering::SeqCst)
    }

    /// GET /logout calls.
    pub fn logouts(&self) -> usize {
        self.shared.logouts.load(Ordering::SeqCst)
    }

    /// The form fields of the last /token POST in order (code_verifier
    /// included), plus ("authorization", header value) if the request had an
    /// Authorization header.
    pub fn last_token_request(&self) -> Option<Vec<(String, String)>> {
        self.shared.last_token_request.lock().unwrap().clone()
    }

    /// The query parameters of the last GET /authorize, in order.
    pub fn last_authorize_query(&self) -> Option<Vec<(String, String)>> {
        self.shared.last_authorize_query.lock().unwrap().clone()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Discovery and keys

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    let base = &s.issuer;
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": SCOPES,
        "claims_supported": ["iss", "sub", "aud", "azp", "iat", "exp", "nonce",
                             "groups", "preferred_username", "email"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(s.keys.jwks()).into_response()
}

// ---------------------------------------------------------------------------
// Authorization endpoint

/// A validated authorization request.
struct AuthzRequest {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    code_challenge: String,
}

/// Why an authorization request is refused, and how.
enum AuthzError {
    /// The client or its redirect URI is not known: answering with a
    /// redirect would make the provider an open redirector (RFC 6749
    /// §4.1.2.1), so the user agent gets a 400.
    NoRedirect(String),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl IntoResponse for AuthzError {
    fn into_response(self) -> Response {
        match self {
            AuthzError::NoRedirect(why) => text(StatusCode::BAD_REQUEST, why),
            AuthzError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut params = vec![("error", error), ("error_description", &description)];
                if let Some(state) = &state {
                    params.push(("state", state));
                }
                redirect(&redirect_uri, &params)
            }
        }
    }
}

impl Shared {
    /// Checks the authorization request in `p` (the query of GET /authorize,
    /// or the hidden fields of the login form, checked again on POST).
    fn validate(&self, p: &Params) -> Result<AuthzRequest, AuthzError> {
        // Who to answer first: until both are known good, nothing redirects.
        if p.count("client_id") > 1 || p.get("client_id") != Some(self.client_id.as_str()) {
            return Err(AuthzError::NoRedirect("unknown client_id".into()));
        }
        let redirect_uri = match p.get("redirect_uri") {
            Some(uri)
                if p.count("redirect_uri") == 1 && self.redirect_uris.iter().any(|r| r == uri) =>
            {
                uri.to_string()
            }
            _ => {
                return Err(AuthzError::NoRedirect(
                    "redirect_uri is not registered".into(),
                ));
            }
        };
        let state = (p.count("state") == 1).then(|| p.get("state")).flatten();
        let refuse = |error, description: String| AuthzError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.map(str::to_string),
            error,
            description,
        };
        // RFC 6749 §3.1: parameters must not be repeated.
        if let Some(name) = p.repeated() {
            return Err(refuse("invalid_request", format!("{name} is repeated")));
        }
        match p.get("response_type") {
            None => return Err(refuse("invalid_request", "response_type is missing".into())),
            Some("code") => {}
            Some(other) => {
                return Err(refuse(
                    "unsupported_response_type",
                    format!("response_type {other} is not supported, only code"),
                ));
            }
        }
        let code_challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
            (Some(challenge), Some("S256")) => challenge,
            (None, _) => {
                return Err(refuse(
                    "invalid_request",
                    "PKCE is required: code_challenge is missing".into(),
                ));
            }
            (Some(_), _) => {
                return Err(refuse(
                    "invalid_request",
                    "PKCE is required with code_challenge_method S256".into(),
                ));
            }
        };
        // An S256 challenge is the base64url (no padding) of a SHA-256.
        if B64.decode(code_challenge).map(|d| d.len()) != Ok(32) {
            return Err(refuse(
                "invalid_request",
                "code_challenge is not a base64url SHA-256".into(),
            ));
        }
        let scope = p.get("scope").unwrap_or_default();
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(refuse("invalid_scope", "scope must include openid".into()));
        }
        if let Some(unknown) = scope
            .split(' ')
            .find(|s| !s.is_empty() && !SCOPES.contains(s))
        {
            return Err(refuse("invalid_scope", format!("unknown scope {unknown}")));
        }
        Ok(AuthzRequest {
            redirect_uri: redirect_uri.clone(),
            state: state.map(str::to_string),
            nonce: p.get("nonce").map(str::to_string),
            scope: scope.to_string(),
            code_challenge: code_challenge.to_string(),
        })
    }
}

/// GET /authorize: the login page, or the request's error.
async fn authorize_page(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    *s.last_authorize_query.lock().unwrap() = Some(params.0.clone());
    let request = match s.validate(&params) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Carry the request through the form; the form's own fields are not
    // part of it.
    let hidden: String = params
        .0
        .iter()
        .filter(|(name, _)| !LOGIN_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| {
            format!(
                "    <input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let page = format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sign in to the test OpenID provider</title>
</head>
<body>
  <h1>Sign in</h1>
  <p>Client <code>{client}</code> asks for <code>{scope}</code>.</p>
  <form method="post" action="/authorize">
{hidden}    <label for="username">User</label><input id="username" name="username">
    <label for="groups">Groups (comma-separated)</label><input id="groups" name="groups">
    <button id="sign-in" type="submit">Sign in</button>
    <button id="deny" type="submit" name="deny" value="1">Deny</button>
  </form>
</body>
</html>
"#,
        client = escape(&s.client_id),
        scope = escape(&request.scope),
    );
    let mut response = Html(page).into_response();
    no_store(&mut response);
    response
}

/// POST /authorize: the login form. Issues a code, or the user's refusal.
async fn authorize_submit(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match read_form(&headers, body).await {
        Ok(p) => p,
        Err((status, why)) => return text(status, why),
    };
    let request = match s.validate(&params) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let state: Vec<(&str, &str)> = request
        .state
        .as_deref()
        .map(|st| ("state", st))
        .into_iter()
        .collect();
    if params.get("deny") == Some("1") {
        let error = [
            ("error", "access_denied"),
            ("error_description", "the user denied"),
        ];
        return redirect(&request.redirect_uri, &[&error[..], &state].concat());
    }
    let username = params.get("username").unwrap_or_default().trim();
    if username.is_empty() {
        return text(StatusCode::BAD_REQUEST, "a user name is required".into());
    }
    let groups = params
        .get("groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let code = random_code();
    let grant = Grant {
        client_id: s.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge,
        nonce: request.nonce,
        scope: request.scope,
        username: username.to_string(),
        groups,
        issued: Instant::now(),
    };
    {
        let mut codes = s.codes.lock().unwrap();
        // Forget the codes nobody came for.
        codes.retain(|_, g| g.issued.elapsed() <= CODE_LIFETIME);
        codes.insert(code.clone(), grant);
    }
    redirect(
        &request.redirect_uri,
        &[&[("code", code.as_str())][..], &state].concat(),
    )
}

/// 256 random bits, base64url: unguessable and safe in a URL as is.
fn random_code() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("random code");
    B64.encode(bytes)
}

// ---------------------------------------------------------------------------
// Token endpoint

/// A refused token request: status, RFC 6749 §5.2 error code, description.
struct Refusal(StatusCode, &'static str, String);

fn bad(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, error, description.into())
}

fn unauthorized(description: impl Into<String>) -> Refusal {
    Refusal(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        description.into(),
    )
}

/// POST /token: exchanges a code (with its PKCE verifier) for tokens.
async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let result = s.exchange(&headers, body).await;
    let mut response = match result {
        Ok(answer) => {
            s.tokens_issued.fetch_add(1, Ordering::SeqCst);
            axum::Json(answer).into_response()
        }
        Err(Refusal(status, error, description)) => {
            s.token_errors.fetch_add(1, Ordering::SeqCst);
            let mut response = (
                status,
                axum::Json(json!({"error": error, "error_description": description})),
            )
                .into_response();
            // RFC 6749 §5.2: a 401 names the scheme the client should use.
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"test-oidc\""),
                );
            }
            response
        }
    };
    // RFC 6749 §5.1: token responses must not be cached.
    no_store(&mut response);
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

impl Shared {
    async fn exchange(&self, headers: &HeaderMap, body: Body) -> Result<Value, Refusal> {
        let authorization = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| unauthorized("Authorization header is not ASCII"))?
                    .to_string(),
            ),
        };
        let form = read_form(headers, body)
            .await
            // RFC 6749 §5.2: 400 unless said otherwise.
            .map_err(|(_, why)| bad("invalid_request", why))?;
        let mut recorded = form.0.clone();
        if let Some(value) = &authorization {
            recorded.push(("authorization".into(), value.clone()));
        }
        *self.last_token_request.lock().unwrap() = Some(recorded);

        if let Some(name) = form.repeated() {
            return Err(bad("invalid_request", format!("{name} is repeated")));
        }
        match form.get("grant_type") {
            None => return Err(bad("invalid_request", "grant_type is missing")),
            Some("authorization_code") => {}
            Some(other) => {
                return Err(bad(
                    "unsupported_grant_type",
                    format!("grant_type {other} is not supported"),
                ));
            }
        }
        let client_id = self.authenticate(&form, authorization.as_deref())?;

        let code = form
            .get("code")
            .ok_or_else(|| bad("invalid_request", "code is missing"))?;
        // Removed before any other check: a code is good for one attempt.
        let grant = self
            .codes
            .lock()
            .unwrap()
            .remove(code)
            .ok_or_else(|| bad("invalid_grant", "unknown or already used code"))?;
        if grant.issued.elapsed() > CODE_LIFETIME {
            return Err(bad("invalid_grant", "the code has expired"));
        }
        if grant.client_id != client_id {
            return Err(bad(
                "invalid_grant",
                "the code was issued to another client",
            ));
        }
        if form.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Err(bad(
                "invalid_grant",
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| bad("invalid_grant", "code_verifier is missing"))?;
        // RFC 7636 §4.1: 43 to 128 unreserved characters.
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if !(43..=128).contains(&verifier.len()) || !verifier.chars().all(unreserved) {
            return Err(bad(
                "invalid_grant",
                "code_verifier must be 43 to 128 unreserved characters",
            ));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        if B64.encode(digest.as_ref()) != grant.code_challenge {
            return Err(bad(
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            ));
        }

        let groups: Vec<&str> = grant.groups.iter().map(String::as_str).collect();
        let mut access = self.keys.claims(&grant.username, &groups);
        access["client_id"] = json!(grant.client_id);
        access["scope"] = json!(grant.scope);
        let mut answer = json!({
            "access_token": self.keys.sign(&access, Alg::Rs256, None),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": grant.scope,
        });
        if let Some(id_token) = self.id_token(&grant) {
            answer["id_token"] = json!(id_token);
        }
        Ok(answer)
    }

    /// Client authentication (RFC 6749 §2.3.1); returns the client id.
    fn authenticate(&self, form: &Params, authorization: Option<&str>) -> Result<String, Refusal> {
        let form_id = form.get("client_id");
        let form_secret = form.get("client_secret");
        let Some(secret) = &self.client_secret else {
            // A public client has nothing to prove; credentials mean the
            // client believes it is confidential, a configuration error.
            if authorization.is_some() || form_secret.is_some() {
                return Err(unauthorized("a public client sends no credentials"));
            }
            return match form_id {
                Some(id) if id == self.client_id => Ok(id.to_string()),
                _ => Err(unauthorized("unknown client_id")),
            };
        };
        let (id, given) = match authorization {
            Some(value) => {
                // RFC 6749 §2.3: one authentication method per request.
                if form_secret.is_some() {
                    return Err(bad(
                        "invalid_request",
                        "client credentials both in Authorization and in the form",
                    ));
                }
                let (id, given) = parse_basic(value)
                    .ok_or_else(|| unauthorized("Authorization is not valid HTTP Basic"))?;
                if form_id.is_some_and(|f| f != id) {
                    return Err(unauthorized("client_id differs from the Basic user"));
                }
                (id, given)
            }
            None => match (form_id, form_secret) {
                (Some(id), Some(given)) => (id.to_string(), given.to_string()),
                _ => return Err(unauthorized("client authentication is required")),
            },
        };
        let secret_ok =
            aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), secret.as_bytes())
                .is_ok();
        if id != self.client_id || !secret_ok {
            return Err(unauthorized("wrong client_id or client_secret"));
        }
        Ok(id)
    }

    /// The id_token for `grant`, with the current [`Tamper`] applied.
    fn id_token(&self, grant: &Grant) -> Option<String> {
        let tamper = *self.tamper.lock().unwrap();
        if tamper == Tamper::NoIdToken {
            return None;
        }
        let now = now_secs();
        let (iat, exp) = match tamper {
            Tamper::Expired => (now - 3 * 3600, now - 2 * 3600),
            _ => (now, now + TOKEN_LIFETIME),
        };
        let mut claims = json!({
            "iss": self.issuer,
            "sub": grant.username,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": iat,
            "exp": exp,
            "groups": grant.groups,
            "preferred_username": grant.username,
            "email": format!("{}@example.test", grant.username),
        });
        if let Some(nonce) = &grant.nonce {
            claims["nonce"] = json!(nonce);
        }
        match tamper {
            Tamper::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
            Tamper::WrongAudience => claims["aud"] = json!("someone-else"),
            Tamper::WrongIssuer => claims["iss"] = json!("https://evil.example"),
            _ => {}
        }
        Some(if tamper == Tamper::ForeignKey {
            let foreign = self
                .foreign
                .get_or_init(|| TestIssuer::new(&self.issuer, ACCESS_TOKEN_AUDIENCE, "foreign"));
            foreign.sign(&claims, Alg::Rs256, Some(&self.keys.rsa_kid))
        } else {
            self.keys.sign(&claims, Alg::Rs256, None)
        })
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` → (id, secret).
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(B64_STD.decode(credentials.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id).ok()?, form_decode(secret).ok()?))
}

// ---------------------------------------------------------------------------
// Logout

/// GET /logout: RP-initiated logout; counted, then back to the client.
async fn logout(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    s.logouts.fetch_add(1, Ordering::SeqCst);
    let params = match Params::parse(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    if params.get("client_id").is_some_and(|id| id != s.client_id) {
        return text(StatusCode::BAD_REQUEST, "unknown client_id".into());
    }
    match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let state: Vec<(&str, &str)> = params
                .get("state")
                .map(|st| ("state", st))
                .into_iter()
                .collect();
            redirect(uri, &state)
        }
        None => text(StatusCode::OK, "signed out".into()),
    }
}

// ---------------------------------------------------------------------------
// Forms, URLs, HTML

/// Parameters of a query or form, in order, repeats kept (to refuse them).
struct Params(Vec<(String, String)>);

impl Params {
    /// `application/x-www-form-urlencoded`; malformed escapes and invalid
    /// UTF-8 are errors rather than being patched up.
    fn parse(input: &str) -> Result<Params, String> {
        let mut pairs = Vec::new();
        for part in input.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((form_decode(name)?, form_decode(value)?));
        }
        Ok(Params(pairs))
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(n, _)| n == name).count()
    }

    /// The first parameter given more than once.
    fn repeated(&self) -> Option<&str> {
        self.0
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| self.count(n) > 1)
    }
}

/// Reads a form body of at most [`MAX_FORM`] bytes.
async fn read_form(headers: &HeaderMap, body: Body) -> Result<Params, (StatusCode, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-www-form-urlencoded".into(),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the form is larger than {MAX_FORM} bytes"),
        )
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| (StatusCode::BAD_REQUEST, "the form is not UTF-8".to_string()))?;
    Params::parse(text).map_err(|why| (StatusCode::BAD_REQUEST, why))
}

/// Decodes one name or value: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Encodes one name or value the way HTML forms do (space as `+`).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// 303 to `uri` with `params` added to its query.
fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    let query: Vec<String> = params
        .iter()
        .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
        .collect();
    let mut location = uri.to_string();
    if !query.is_empty() {
        if !location.contains('?') {
            location.push('?');
        } else if !location.ends_with(['?', '&']) {
            location.push('&');
        }
        location.push_str(&query.join("&"));
    }
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            "the redirect URI is not a valid header value".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Escapes text for HTML content and double- or single-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `name`/`value` of the hidden inputs of an HTML form: a test takes the
/// provider's login page (which carries the authorization request in them)
/// and sends its form as a browser would.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let attr = |a: &str| {
                let at = tag.find(&format!("{a}=\""))? + a.len() + 2;
                Some(unescape(tag[at..].split('"').next()?))
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The provider against a hand-driven client: one login per case.

    use super::*;

    const REDIRECT: &str = "http://127.0.0.1:9/cb?app=1";
    const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-long";

    fn challenge(verifier: &str) -> String {
        B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ))
    }

    async fn provider(secret: Option<&str>) -> Provider {
        Provider::start(ProviderOpts {
            client_id: "app".into(),
            client_secret: secret.map(str::to_string),
            redirect_uris: vec![REDIRECT.into()],
            keys_dir: None,
            port: 0,
        })
        .await
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The query of a 303's Location, after checking where it goes.
    fn location_query(response: &reqwest::Response) -> Params {
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        let query = location
            .strip_prefix("http://127.0.0.1:9/cb?app=1&")
            .unwrap();
        Params::parse(query).unwrap()
    }

    /// Logs in through the form; returns the code.
    async fn login(p: &Provider, nonce: Option<&str>) -> String {
        let mut form = vec![
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid groups"),
            ("state", "s t"),
            ("code_challenge_method", "S256"),
            ("username", "alice"),
            ("groups", " a, ,b ,"),
        ];
        let challenge = challenge(VERIFIER);
        form.push(("code_challenge", &challenge));
        form.extend(nonce.map(|n| ("nonce", n)));
        let response = client()
            .post(format!("{}/authorize", p.issuer()))
            .form(&form)
            .send()
            .await
            .unwrap();
        let query = location_query(&response);
        assert_eq!(query.get("state"), Some("s t"));
        query.get("code").unwrap().to_string()
    }

    async fn exchange(p: &Provider, code: &str, basic: Option<&str>) -> reqwest::Response {
        let mut request = client().post(format!("{}/token", p.issuer())).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "app"),
        ]);
        if let Some(secret) = basic {
            request = request.basic_auth("app", Some(secret));
        }
        request.send().await.unwrap()
    }

    fn claims(jwt: &str) -> Value {
        serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    /// Whether the provider's RSA key signed `jwt`.
    fn signed_by(p: &Provider, jwt: &str) -> bool {
        let jwk = p.keys().rsa_jwk();
        let key = aws_lc_rs::signature::RsaPublicKeyComponents {
            n: B64.decode(jwk["n"].as_str().unwrap()).unwrap(),
            e: B64.decode(jwk["e"].as_str().unwrap()).unwrap(),
        };
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        key.verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &B64.decode(sig).unwrap(),
        )
        .is_ok()
    }

    #[tokio::test]
    async fn code_flow_then_replay() {
        let p = provider(Some("se:cret")).await;
        let code = login(&p, Some("n1")).await;
        let response = exchange(&p, &code, Some("se:cret")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body: Value = response.json().await.unwrap();
        let id = body["id_token"].as_str().unwrap();
        assert!(signed_by(&p, id));
        let c = claims(id);
        assert_eq!(c["iss"], p.issuer());
        assert_eq!(
            (&c["aud"], &c["azp"], &c["sub"]),
            (&json!("app"), &json!("app"), &json!("alice"))
        );
        assert_eq!(
            (&c["nonce"], &c["groups"]),
            (&json!("n1"), &json!(["a", "b"]))
        );
        assert_eq!(c["email"], "alice@example.test");
        assert_eq!(
            claims(body["access_token"].as_str().unwrap())["aud"],
            ACCESS_TOKEN_AUDIENCE
        );
        let recorded = p.last_token_request().unwrap();
        assert!(recorded.contains(&("code_verifier".into(), VERIFIER.into())));
        assert!(
            recorded
                .iter()
                .any(|(n, v)| n == "authorization" && v.starts_with("Basic "))
        );

        let replay = exchange(&p, &code, Some("se:cret")).await;
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            replay.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
        let wrong = exchange(&p, &login(&p, None).await, Some("nope")).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!((p.tokens_issued(), p.token_errors()), (1, 2));
    }

    #[tokio::test]
    async fn public_client_and_tampering() {
        let p = provider(None).await;
        for tamper in [
            Tamper::WrongNonce,
            Tamper::WrongAudience,
            Tamper::Expired,
            Tamper::WrongIssuer,
            Tamper::ForeignKey,
            Tamper::NoIdToken,
        ] {
            p.set_tamper(tamper);
            let code = login(&p, Some("n1")).await;
            let body: Value = exchange(&p, &code, None).await.json().await.unwrap();
            let Some(id) = body["id_token"].as_str() else {
                assert_eq!(tamper, Tamper::NoIdToken);
                continue;
            };
            let c = claims(id);
            assert_eq!(c["nonce"] == "n1", tamper != Tamper::WrongNonce);
            assert_eq!(c["aud"] == "app", tamper != Tamper::WrongAudience);
            assert_eq!(
                c["exp"].as_u64().unwrap() > now_secs(),
                tamper != Tamper::Expired
            );
            assert_eq!(c["iss"] == p.issuer(), tamper != Tamper::WrongIssuer);
            assert_eq!(signed_by(&p, id), tamper != Tamper::ForeignKey);
        }
        assert_eq!(p.tokens_issued(), 6);
        // Credentials from a public client are refused.
        let code = login(&p, None).await;
        assert_eq!(
            exchange(&p, &code, Some("x")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn authorize_errors() {
        let p = provider(None).await;
        let get = |query: String| {
            let url = format!("{}/authorize?{query}", p.issuer());
            async move { client().get(url).send().await.unwrap() }
        };
        let redirect = form_encode(REDIRECT);
        let c = challenge(VERIFIER);
        let base = format!("client_id=app&redirect_uri={redirect}&state=s");
        let unknown = get(format!("client_id=app&redirect_uri={redirect}x")).await;
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        for (query, error) in [
            (
                format!(
                    "response_type=token&scope=openid&code_challenge={c}&code_challenge_method=S256"
                ),
                "unsupported_response_type",
            ),
            ("response_type=code&scope=openid".into(), "invalid_request"),
            (
                format!(
                    "response_type=code&scope=openid&code_challenge={c}&code_challenge_method=plain"
                ),
                "invalid_request",
            ),
            (
                format!(
                    "response_type=code&scope=profile&code_challenge={c}&code_challenge_method=S256"
                ),
                "invalid_scope",
            ),
        ] {
            let response = get(format!("{base}&{query}")).await;
            let answer = location_query(&response);
            assert_eq!(
                (answer.get("error"), answer.get("state")),
                (Some(error), Some("s")),
                "{query}"
            );
        }
        let page = get(format!("{base}&response_type=code&scope=openid&nonce=%3Cb%3E&code_challenge={c}&code_challenge_method=S256")).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains(r#"name="nonce" value="&lt;b&gt;""#), "{html}");
        assert!(html.contains(r#"<button id="sign-in" type="submit">Sign in</button>"#));
        assert_eq!(
            p.last_authorize_query().unwrap()[0],
            ("client_id".into(), "app".into())
        );
    }
}
