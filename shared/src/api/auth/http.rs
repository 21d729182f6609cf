//! The few outbound HTTP calls authentication makes (an issuer's JWKS and
//! discovery document, an authorization code exchanged for tokens):
//! `https://`, or plain `http://` on a loopback address only, each bounded
//! in time and size.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one call may take, from connecting to the last byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// Is `url` one this server may call: `https://`, or `http://` to
/// `127.0.0.1`, `localhost` or `[::1]` (a local issuer in development)?
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("'{url}': expected an https URL"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        Ok(())
    } else {
        Err(format!(
            "'{url}': plain http is only allowed on a loopback address; use https"
        ))
    }
}

/// An answer: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One client per process, built on first use: the system's root
/// certificates are read once, and connections to the provider are kept
/// alive between logins.
fn client() -> Result<HttpsClient, String> {
    static CLIENT: std::sync::OnceLock<Result<HttpsClient, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| format!("TLS roots: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(Client::builder(TokioExecutor::new()).build(https))
        })
        .clone()
}

/// Send `request` to `url` and read the answer (any status).
async fn call(url: &str, request: Request<Full<Bytes>>) -> Result<Answer, String> {
    check_url(url)?;
    let client = client()?;
    let method = request.method().clone();
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?
            .to_bytes();
        let body = String::from_utf8(body.to_vec())
            .map_err(|_| format!("{method} {url}: the answer is not UTF-8"))?;
        Ok(Answer { status, body })
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| format!("{method} {url}: timed out after {TIMEOUT:?}"))?
}

/// GET `url`; anything but a 2xx is an error.
pub async fn get(url: &str) -> Result<String, String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("GET {url}: {e}"))?;
    let answer = call(url, request).await?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("GET {url}: status {}", answer.status));
    }
    Ok(answer.body)
}

/// POST a form to `url`, with HTTP Basic credentials when given; the
/// answer whatever its status (a token endpoint explains refusals in it).
pub async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let body = serde_urlencoded::to_string(form).map_err(|e| format!("POST {url}: {e}"))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    if let Some((user, password)) = basic {
        use base64::Engine as _;
        // RFC 6749 §2.3.1: both parts form-encoded before Basic's base64.
        let encode = |v: &str| {
            let pair = serde_urlencoded::to_string([("", v)]).unwrap_or_default();
            pair[1..].to_string() // without the leading `=`
        };
        let pair = format!("{}:{}", encode(user), encode(password));
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        request = request.header(header::AUTHORIZATION, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("POST {url}: {e}"))?;
    call(url, request).await
}

/// An OpenID provider's discovery document
/// (`<issuer>/.well-known/openid-configuration`), checked to be the
/// issuer's own (OpenID Connect Discovery §4.3).
pub struct Discovery {
    doc: serde_json::Map<String, serde_json::Value>,
    issuer: String,
}

impl Discovery {
    pub async fn fetch(issuer: &str) -> Result<Discovery, String> {
        let base = issuer.trim_end_matches('/');
        let url = format!("{base}/.well-known/openid-configuration");
        let doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&get(&url).await?).map_err(|e| format!("{url}: {e}"))?;
        let named = doc
            .get("issuer")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("{url} names no issuer"))?;
        if named.trim_end_matches('/') != base {
            return Err(format!("{url} is of issuer '{named}', not '{issuer}'"));
        }
        Ok(Discovery {
            issuer: named.to_string(),
            doc,
        })
    }

    /// The issuer as the document names it (what its tokens' `iss` says).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The URL under `key`, one this server may call.
    pub fn endpoint(&self, key: &str) -> Result<String, String> {
        let url = self
            .doc
            .get(key)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("the discovery document of {} has no {key}", self.issuer))?;
        check_url(url).map_err(|e| format!("{key} {e}"))?;
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_https_or_loopback() {
        assert!(super::check_url("https://issuer/keys").is_ok());
        assert!(super::check_url("http://127.0.0.1:9000/keys").is_ok());
        assert!(super::check_url("http://localhost/keys").is_ok());
        assert!(super::check_url("http://[::1]:80/x").is_ok());
        assert!(super::check_url("http://evil.example/keys").is_err());
        assert!(super::check_url("http://127.0.0.1.evil.example/keys").is_err());
        assert!(super::check_url("ftp://x").is_err());
    }
}
