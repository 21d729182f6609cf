//! The edge every request passes before a handler, and every response after:
//!
//! - a request id (the caller's `x-request-id` when it is a sane one, else a
//!   new one), echoed in the response and in the access log;
//! - load shedding: at most `max_in_flight` requests at once (the permit
//!   lives until the response body is sent), else 503 with `Retry-After`;
//! - no cross-site writes: a write whose `Origin` is neither the registry's
//!   own nor listed in `MR_CORS_ORIGINS` is refused (403), whatever its
//!   content type; CORS answers only for the listed origins. Clients that
//!   send no `Origin` (curl, the Python client, pipelines) are not affected;
//! - without authentication (`MR_AUTH=none`), only loopback names and IP
//!   addresses (or `MR_PUBLIC_URL`'s host) are accepted as `Host`, so a web
//!   page cannot reach a laptop's registry by DNS rebinding;
//! - authentication (`auth`) and the caller's rights (`MR_POLICY`), put in
//!   the request for handlers (`guard::Identity`);
//! - time limits: the request body must keep arriving (`body_timeout`
//!   between chunks), the handler must answer within `request_timeout`;
//! - errors in the API's shape: any error response that is not JSON yet
//!   (413 from the body limit, 415, 405, ...) becomes `{"code", "message"}`,
//!   and a 5xx answers only a generic message with the request id, while
//!   the detail goes to the log line with that id;
//! - one access log line per request: id, caller, method, route template,
//!   status, duration.
//!
//! Health checks (`/readyz/...`) skip shedding and authentication.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::{AuthError, AuthMode, Authenticator, TokenCache, session};
use super::error::ErrorChain;
use super::guard::Identity;
use crate::domain::access::{Caller, Policy};

/// How many callers are remembered by their credentials.
const IDENTITIES_REMEMBERED: usize = 4096;

/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Limits and settings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Requests handled at once before new ones are shed (`MR_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Longest time to the response's head (`MR_REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// Longest wait for the next chunk of a request body (`MR_BODY_TIMEOUT_SECS`).
    pub body_timeout: Duration,
    /// Longest time to send a streamed response body (a list of everything).
    pub stream_timeout: Duration,
    /// Largest JSON request body (`MR_MAX_BODY_BYTES`); uploads stream apart.
    pub max_body_bytes: usize,
    /// Origins allowed to call cross-site (`MR_CORS_ORIGINS`).
    pub cors_origins: Vec<String>,
    /// `MR_PUBLIC_URL`: the registry's own external URL.
    pub public_url: Option<String>,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            max_in_flight: 256,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            stream_timeout: Duration::from_secs(600),
            max_body_bytes: 1024 * 1024,
            cors_origins: Vec::new(),
            public_url: None,
        }
    }
}

/// The edge: authentication, policy and limits shared by all requests.
pub struct Edge {
    auth: Authenticator,
    policy: Policy,
    settings: EdgeSettings,
    in_flight: Arc<Semaphore>,
    /// `scheme://authority` of `MR_PUBLIC_URL`.
    public_origin: Option<String>,
    /// Callers without credentials, worked out once.
    anonymous: Identity,
    /// Callers by their verified credentials, until these expire.
    identities: TokenCache<Identity>,
}

/// Marks a response whose body already says only what may be said (made
/// by the edge, or by a handler that kept internals out of it): the 5xx
/// rewrite leaves it alone.
#[derive(Clone, Copy)]
pub struct PublicBody;

/// The id of the request being handled (for handlers that put it in a body).
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

impl Edge {
    pub fn new(auth: Authenticator, policy: Policy, settings: EdgeSettings) -> Edge {
        let public_origin = settings.public_url.as_deref().and_then(origin_of);
        let anonymous = Caller::anonymous();
        let anonymous = Identity {
            access: Arc::new(policy.access(&anonymous)),
            caller: Arc::new(anonymous),
        };
        Edge {
            anonymous,
            identities: TokenCache::new(IDENTITIES_REMEMBERED),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            auth,
            policy,
            settings,
            public_origin,
        }
    }

    /// Wrap every route of `app` (mount all routes first).
    pub fn wrap(self: Arc<Self>, app: Router) -> Router {
        let limit = self.settings.max_body_bytes;
        app.layer(middleware::from_fn_with_state(self, handle))
            .layer(DefaultBodyLimit::max(limit))
    }

    /// Is `origin` the registry's own (by `MR_PUBLIC_URL`, else the `Host` it was sent to)?
    fn own_origin(&self, origin: &str, headers: &HeaderMap) -> bool {
        if self.public_origin.as_deref() == Some(origin) {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match (origin.split_once("://"), host) {
            (Some((_, authority)), Some(host)) => authority.eq_ignore_ascii_case(host),
            _ => false,
        }
    }

    fn listed(&self, origin: &str) -> bool {
        self.settings.cors_origins.iter().any(|o| o == origin)
    }

    /// DNS-rebinding protection without authentication: `Host` must be a
    /// loopback name, an IP address, or `MR_PUBLIC_URL`'s host.
    fn host_accepted(&self, parts: &Parts) -> bool {
        // Lambda's events come through API Gateway or a function URL, not
        // from a browser straight to this process.
        if self.auth.mode() != AuthMode::None
            || parts
                .extensions
                .get::<lambda_http::request::RequestContext>()
                .is_some()
        {
            return true;
        }
        let Some(host) = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        else {
            return true; // HTTP/1.0 or Lambda: no browser sends a request without Host
        };
        if let Some(origin) = &self.public_origin
            && origin
                .split_once("://")
                .is_some_and(|(_, a)| a.eq_ignore_ascii_case(host))
        {
            return true;
        }
        let name = host_name(host);
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::IpAddr>().is_ok()
            || name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok())
    }
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase()
        )
    })
}

/// The host of a `Host` header, without its port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The request id: the caller's when it is short and plain, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A new request id: 32 hex digits, a random prefix per process and a
/// counter (unique without a random number per request).
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digits = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for word in [process, n] {
        for shift in (0..16).rev() {
            id.push(digits[((word >> (shift * 4)) & 0xf) as usize] as char);
        }
    }
    id
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = status.canonical_reason().unwrap_or("Error");
    let mut r = (
        status,
        axum::Json(json!({"code": code, "message": message.into()})),
    )
        .into_response();
    r.extensions_mut().insert(PublicBody);
    r
}

fn retry_later(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn is_write(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

async fn handle(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let uri = req.uri().clone();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let health = uri.path().starts_with("/readyz/");
    let (mut response, caller) = if health {
        (next.run(req).await, None)
    } else {
        req.extensions_mut()
            .insert(RequestId(Arc::from(id.as_str())));
        let run = admit(&edge, req, next, origin.as_deref());
        if tracing::enabled!(tracing::Level::INFO) {
            let span = tracing::info_span!("request", request_id = %id);
            tracing::Instrument::instrument(run, span).await
        } else {
            run.await
        }
    };
    let path = route
        .as_ref()
        .map_or_else(|| short(uri.path()), MatchedPath::as_str);
    response = finish(&edge, response, &id, path, origin.as_deref()).await;
    let status = response.status().as_u16();
    let user = caller.as_ref().map_or("-", |c| c.user.as_str());
    let millis = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let route = route.as_ref().map_or("-", MatchedPath::as_str);
    if health {
        tracing::debug!(target: "access", request_id = %id, caller = user, %method, route, status, duration_ms = millis, "request");
    } else {
        tracing::info!(target: "access", request_id = %id, caller = user, %method, route, status, duration_ms = millis, "request");
    }
    response
}

/// At most 200 bytes of `s` (cut at a character), for logs.
fn short(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Everything before and around the handler; returns the response and
/// the caller, when it got that far.
async fn admit(
    edge: &Edge,
    req: Request,
    next: Next,
    origin: Option<&str>,
) -> (Response, Option<Arc<Caller>>) {
    let (mut parts, body) = req.into_parts();
    if !edge.host_accepted(&parts) {
        return (
            error(
                StatusCode::FORBIDDEN,
                "this Host is not accepted without authentication (set MR_PUBLIC_URL to the registry's external URL)",
            ),
            None,
        );
    }
    if let Some(origin) = origin {
        let preflight = parts.method == Method::OPTIONS
            && parts
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return (preflight_response(edge, origin), None);
        }
        if is_write(&parts.method)
            && !edge.listed(origin)
            && !edge.own_origin(origin, &parts.headers)
        {
            return (
                error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-site writes from origin '{}' are not allowed (MR_CORS_ORIGINS)",
                        origin.chars().take(200).collect::<String>()
                    ),
                ),
                None,
            );
        }
    }
    let Ok(permit) = edge.in_flight.clone().try_acquire_owned() else {
        return (
            retry_later(format!(
                "the server is handling its limit of {} requests; retry shortly",
                edge.settings.max_in_flight
            )),
            None,
        );
    };
    let identity = match identify(edge, &parts).await {
        Ok(identity) => identity,
        Err(AuthError::Invalid(why)) => return (unauthorized(&why, true), None),
        Err(e @ AuthError::Unavailable(_)) => {
            tracing::warn!(error = %e, "authentication unavailable");
            return (
                retry_later("cannot verify credentials right now; retry shortly"),
                None,
            );
        }
    };
    let caller = identity.caller.clone();
    let path = parts.uri.path();
    // With a web login, its own pages are open to everyone.
    let login_page = edge.auth.has_sessions() && session::LOGIN_PATHS.contains(&path);
    if identity.access.is_empty() && !login_page {
        let response = if caller.is_anonymous() {
            if edge.auth.has_sessions() && session::honoured_on(path) {
                // A person at a page: log in, then come back to it; a form
                // sent after the session ended (it is not kept): back to
                // the page it was on (`/ui/versions/7/decision`: `/ui/versions/7`).
                let back = if matches!(parts.method, Method::GET | Method::HEAD) {
                    parts.uri.path_and_query().map_or(path, |p| p.as_str())
                } else {
                    path.rsplit_once('/').map_or("/ui/", |(page, _)| page)
                };
                let to = session::login_location(back); // form-encoded: a valid header
                return (Redirect::to(&to).into_response(), Some(caller));
            }
            unauthorized("authentication required", false)
        } else {
            error(
                StatusCode::FORBIDDEN,
                format!("{} has no role in this registry", caller.user),
            )
        };
        return (response, Some(caller));
    }
    parts.extensions.insert(identity);
    // A request without a body needs no timer on it.
    let body = if body.is_end_stream() {
        body
    } else {
        GuardedBody::request(body, edge.settings.body_timeout)
    };
    let req = Request::from_parts(parts, body);
    // Changes the handler makes are the caller's in the ledger.
    let handled = crate::domain::actor::acting(caller.user.clone(), next.run(req));
    let response = match tokio::time::timeout(edge.settings.request_timeout, handled).await {
        Ok(r) => r,
        Err(_) => retry_later(format!(
            "the request took longer than {} s; retry, or ask for less (a pageSize, a narrower filter)",
            edge.settings.request_timeout.as_secs()
        )),
    };
    let deadline = edge.settings.stream_timeout;
    (
        // A body already in memory (most answers) needs neither the slot
        // nor a deadline any more; a streamed one keeps both.
        response.map(|b| match b.size_hint().exact() {
            Some(_) => b,
            None => GuardedBody::response(b, permit, deadline),
        }),
        Some(caller),
    )
}

/// The caller of a request and its rights: remembered per credential while
/// they stay valid (a token is verified and its rights worked out once).
async fn identify(edge: &Edge, parts: &Parts) -> Result<Identity, AuthError> {
    let credentials = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .or_else(|| edge.auth.session_cookie(parts).map(str::as_bytes));
    if let Some(known) = credentials.and_then(|c| edge.identities.get(c)) {
        return Ok(known);
    }
    let (caller, reusable_until) = edge.auth.authenticate(parts).await?;
    if caller.is_anonymous() {
        return Ok(edge.anonymous.clone());
    }
    let identity = Identity {
        access: Arc::new(edge.policy.access(&caller)),
        caller: Arc::new(caller),
    };
    if let (Some(credentials), Some(until)) = (credentials, reusable_until) {
        edge.identities.put(credentials, identity.clone(), until);
    }
    Ok(identity)
}

fn unauthorized(why: &str, invalid: bool) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, why);
    let challenge = if invalid {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

fn preflight_response(edge: &Edge, origin: &str) -> Response {
    if !edge.listed(origin) {
        return error(
            StatusCode::FORBIDDEN,
            "this origin may not call the registry (MR_CORS_ORIGINS)",
        );
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-request-id"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r.extensions_mut().insert(PublicBody);
    r
}

/// After the handler: request id and CORS headers, errors in the API's
/// shape, 5xx details to the log only.
async fn finish(
    edge: &Edge,
    response: Response,
    id: &str,
    route: &str,
    origin: Option<&str>,
) -> Response {
    let mut response = if response.status().is_client_error() || response.status().is_server_error()
    {
        shape_error(response, id, route, edge.settings.max_body_bytes).await
    } else {
        response
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(REQUEST_ID, v);
    }
    if let Some(origin) = origin.filter(|o| edge.listed(o))
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// Error bodies as `{"code", "message"}`; 5xx with a generic message.
async fn shape_error(response: Response, id: &str, route: &str, max_body: usize) -> Response {
    let status = response.status();
    let public = response.extensions().get::<PublicBody>().is_some();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if public || (is_json && !status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let chain = parts.extensions.get::<ErrorChain>().map(|c| c.0.clone());
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let detail = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(text),
        Err(_) => text,
    };
    let message = if status.is_server_error() {
        let detail = chain.unwrap_or(detail);
        tracing::error!(request_id = %id, %status, route, detail = %detail, "request failed");
        let what = if status == StatusCode::SERVICE_UNAVAILABLE {
            "temporarily unavailable; retry shortly"
        } else {
            "internal error"
        };
        format!("{what} (request id {id})")
    } else if status == StatusCode::PAYLOAD_TOO_LARGE && detail.contains("length limit") {
        format!("the request body is larger than {max_body} bytes (MR_MAX_BODY_BYTES)")
    } else {
        detail.trim().to_string()
    };
    let mut shaped = error(status, message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

/// A body with time limits: it fails when no frame arrives for `stall`
/// (a client that stops sending a request body), or when it is still
/// going at `deadline` (a response sent for too long); it holds `permit`
/// (the request's in-flight slot) until it is dropped. Timers are armed
/// only while the inner body is pending, so a body that is ready at once
/// (most answers) costs no timer.
struct GuardedBody {
    inner: Body,
    stall: Option<Duration>,
    deadline: Option<Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl GuardedBody {
    /// A request body that fails after `stall` without data.
    fn request(inner: Body, stall: Duration) -> Body {
        Body::new(GuardedBody {
            inner,
            stall: Some(stall),
            deadline: None,
            timer: None,
            _permit: None,
        })
    }

    /// A response body that holds `permit` and is cut off after `limit`.
    fn response(inner: Body, permit: OwnedSemaphorePermit, limit: Duration) -> Body {
        Body::new(GuardedBody {
            inner,
            stall: None,
            deadline: Some(Instant::now() + limit),
            timer: None,
            _permit: Some(permit),
        })
    }
}

fn timed_out(what: String) -> axum::Error {
    axum::Error::new(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let late = || timed_out("the response took too long to send".into());
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                if this.deadline.is_some_and(|d| Instant::now() > d) {
                    return Poll::Ready(Some(Err(late())));
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let until = match (this.stall, this.deadline) {
                    (Some(stall), _) => tokio::time::Instant::now() + stall,
                    (None, Some(deadline)) => deadline.into(),
                    (None, None) => return Poll::Pending,
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(match this.stall {
                        Some(stall) => timed_out(format!(
                            "the request body stalled for {} s",
                            stall.as_secs()
                        )),
                        None => late(),
                    }))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_hosts() {
        assert_eq!(
            origin_of("HTTPS://Registry.Example.com/base/").as_deref(),
            Some("https://registry.example.com")
        );
        assert_eq!(origin_of("nope"), None);
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn request_ids_are_taken_only_when_plain() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("a b"));
        assert_ne!(request_id(&h), "a b");
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
    }
}
