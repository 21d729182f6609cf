//! The web interface: server-rendered pages under `/ui/` for everyone in a
//! model's life (browse models, a model's versions with their metrics,
//! a version's artifacts, lineage, approval, usage and history, compare
//! versions with charts, the audit). HTML from `maud` (every interpolation
//! escaped), one inline style sheet, no script: every page works and reads
//! without JavaScript. Served by the `web` function and by `make run`;
//! pages read through the registry directly (no HTTP hop), behind the same
//! edge as the API, and show only what the caller may read.

mod chart;
mod csrf;
pub mod oidc;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::api::Serve;
use crate::api::guard::Identity;
use crate::domain::error::Error;
use crate::domain::ownership::Owners;
use crate::domain::registry::Registry;

/// What every page handler gets.
#[derive(Clone)]
pub struct WebState {
    pub registry: Registry,
    pub owners: Owners,
    /// The OIDC login (`MR_AUTH=jwt` with `MR_OIDC_*`), if there is one.
    pub login: Option<Arc<oidc::Login>>,
}

/// The pages, and `/` redirecting to `/ui/`; with `login`, the login's own
/// pages too (`/ui/login`, `/ui/auth/callback`, `/ui/logout`,
/// `/ui/signed-out`).
/// `serve`: with `reads`, the forms that write answer 405.
pub fn routes(registry: Registry, login: Option<Arc<oidc::Login>>, serve: Serve) -> Router {
    let state = WebState {
        owners: Owners::new(registry.clone()),
        registry,
        login,
    };
    // The forms write: a reading deployment refuses them as the API's
    // writes (405 naming MR_SERVE).
    let forms = Router::new()
        .route(
            "/ui/versions/{id}/decision",
            axum::routing::post(pages::decide),
        )
        .route(
            "/ui/models/{id}/aliases",
            axum::routing::post(pages::move_alias),
        );
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::models))
        .route("/ui/models/{id}", get(pages::model))
        .route("/ui/versions/{id}", get(pages::version))
        .route("/ui/compare", get(pages::compare))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit.csv", get(pages::audit_csv))
        .route("/ui/experiments", get(pages::experiments))
        .route("/ui/experiments/{id}", get(pages::experiment))
        .route("/ui/runs/{id}", get(pages::run))
        .route("/ui/deployments", get(pages::deployments))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/usage", get(pages::usage))
        .merge(crate::api::only(forms, serve))
        .route("/ui/login", get(oidc::login))
        .route(oidc::CALLBACK_PATH, get(oidc::callback))
        .route("/ui/logout", axum::routing::post(oidc::logout))
        .route("/ui/signed-out", get(oidc::signed_out))
        .with_state(state)
        .layer(axum::middleware::map_response(guarded))
}

/// A page's answer: its HTML, or an error page with the error's status.
pub type Page = Result<Markup, PageError>;

/// An error shown as a page.
pub struct PageError {
    status: StatusCode,
    message: String,
    /// A 5xx whose message says only what may be said (the identity
    /// provider cannot be reached): shown as it is.
    public: bool,
    /// A failed login: offer to start again, back to this page.
    sign_in_again: Option<String>,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
            public: false,
            sign_in_again: None,
        }
    }

    /// Another server failed (a 502 or 503 with its own clear message).
    fn upstream(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            public: true,
            ..PageError::new(status, message)
        }
    }

    fn sign_in_again(mut self, next: &str) -> PageError {
        self.sign_in_again = Some(oidc_login_link(next));
        self
    }
}

/// The login, coming back to `next`.
fn oidc_login_link(next: &str) -> String {
    crate::api::auth::session::login_location(next)
}

impl From<Error> for PageError {
    fn from(e: Error) -> PageError {
        crate::api::error::ApiError::from(e).into()
    }
}

impl From<crate::api::error::ApiError> for PageError {
    fn from(e: crate::api::error::ApiError) -> PageError {
        PageError::new(e.status(), e.message().to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_string();
        let body = html! {
            h1 { (self.status.as_u16()) " " (title) }
            p role="alert" { (self.message) }
            @if let Some(login) = &self.sign_in_again {
                p { a href=(login) { "Sign in again" } }
            } @else {
                p { a href="/ui/" { "Back to the models" } }
            }
        };
        let mut response = (self.status, layout(&title, None, body)).into_response();
        // A page, not the API's JSON error shape; a 5xx is left to the
        // edge, which logs its cause and answers without internals.
        if !self.status.is_server_error() || self.public {
            response
                .extensions_mut()
                .insert(crate::api::edge::PublicBody);
        }
        response
    }
}

/// Headers of every answer of the interface: no framing (an approve button
/// under another site's page: clickjacking), no script and nothing loaded
/// from elsewhere (the one style sheet by its hash), no sniffing, no
/// referrer beyond the registry, and no copy kept by caches or the back
/// button (pages show what one caller may read).
async fn guarded(mut response: Response) -> Response {
    use axum::http::{HeaderValue, header};
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
        let value = format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'"
        );
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("frame-ancestors 'none'"))
    });
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const STYLE: &str = r#"
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0b5cad; --bg2: #f6f8fa; --diff: #fff4c2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; padding: .6rem 1rem; background: #0d2b4e; color: #fff; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header nav { display: flex; flex-wrap: wrap; gap: .2rem 1rem; }
header nav a { font-weight: 400; }
header .who { margin-left: auto; font-size: .9rem; }
header form.who { margin: 0 0 0 auto; }
button.link { background: none; border: 1px solid #fff; color: #fff; padding: .1rem .5rem; font-size: .85rem; }
main { padding: 1rem; max-width: 1400px; margin: 0 auto; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #f0a000; outline-offset: 1px; }
h1 { font-size: 1.5rem; margin: .2rem 0 .8rem; word-break: break-word; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
.muted { color: var(--muted); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; word-break: break-word; }
th { background: var(--bg2); font-weight: 600; white-space: nowrap; word-break: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.diff td { background: var(--diff); }
.badge { display: inline-block; padding: 0 .45rem; margin: 0 .2rem .2rem 0; border-radius: 1rem; font-size: .8rem; border: 1px solid var(--line); background: var(--bg2); }
.badge.alias { background: #dbeafe; border-color: #93c5fd; }
.badge.APPROVED { background: #dcfce7; border-color: #86efac; }
.badge.REJECTED { background: #fee2e2; border-color: #fca5a5; }
.badge.PENDING { background: #fef3c7; border-color: #fcd34d; }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: flex-end; margin-bottom: 1rem; }
form.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
input, select, button { font: inherit; padding: .3rem .45rem; border: 1px solid #8c959f; border-radius: 4px; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-word; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure.chart { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .5rem; width: 100%; max-width: 420px; }
figure.chart figcaption { font-weight: 600; margin-bottom: .3rem; }
figure.chart svg { width: 100%; height: auto; }
.pager { margin: 1rem 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .88em; }
pre.snippet { background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem; overflow-x: auto; }
@media (max-width: 700px) { main { padding: .5rem; } th, td { padding: .3rem; } }
"#;

/// Who is looking at a page, for its header.
pub enum Viewer {
    /// Named by the edge (a token, a proxy's headers, or nobody: no login).
    Caller(String),
    /// No session, and the interface has a login: a sign-in link.
    SignIn,
    /// Signed in through the login: a sign-out form (its CSRF token).
    Session { user: String, csrf: String },
}

/// The page around `body`.
pub fn layout(title: &str, who: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Model registry" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/ui/" { "Model registry" }
                    nav aria-label="Main" {
                        a href="/ui/" { "Models" }
                        a href="/ui/experiments" { "Experiments" }
                        a href="/ui/deployments" { "Deployments" }
                        a href="/ui/approvals" { "Approvals" }
                        a href="/ui/audit" { "Audit" }
                        a href="/ui/usage" { "Usage" }
                    }
                    @match who {
                        Some(Viewer::SignIn) => span.who { a href="/ui/login" { "Sign in" } },
                        Some(Viewer::Session { user, csrf }) => form.who method="post" action="/ui/logout" {
                            "Signed in as " strong { (user) } " "
                            input type="hidden" name="csrf" value=(csrf);
                            button.link type="submit" { "Sign out" }
                        },
                        Some(Viewer::Caller(user)) => span.who { "Signed in as " strong { (user) } },
                        None => {},
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The caller, for the header.
fn who(s: &WebState, id: &Identity) -> Viewer {
    let user = id.caller.user.clone();
    match (&s.login, id.caller.is_anonymous()) {
        (None, _) => Viewer::Caller(user),
        (Some(_), true) => Viewer::SignIn,
        (Some(_), false) => Viewer::Session {
            csrf: csrf::token(&user),
            user,
        },
    }
}

/// A 400 page.
fn bad_request(message: impl Into<String>) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, message)
}
