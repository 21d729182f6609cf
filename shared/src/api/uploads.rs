//! The upload extension's HTTP API, under its own prefix
//! `/api/registry_ext/v1` (outside the Kubeflow contract):
//!
//! - `POST /model_versions/{id}/uploads` `{"files": [{"path", "size", "sha256"}]}`
//!   → 201, the session with an `upload` instruction per file (a presigned
//!   `PUT` URL, presigned part URLs, or the relay URL on the local store)
//!   and the `complete` call; 409 when a path is uploaded already or held
//!   by another open session (uploaded files never change), 400 beyond the
//!   session limits (see `domain::upload_sessions`);
//! - `GET /uploads/{id}` → the session;
//! - `POST /uploads/{id}/complete` `{"files": [{"path", "parts": [{"partNumber", "etag"}]}]}`
//!   (parts only for multipart files; the body may be empty otherwise) →
//!   200 with the registered `modelArtifact`, 400 on a size or SHA-256
//!   mismatch;
//! - `PUT /uploads/{id}/files/{token}`: the relay for the local artifact
//!   store (the URL is handed out by the first call).
//!
//! Every call needs the right to change the version's model (`writer`);
//! reading a session's state needs the right to read it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::error::{ApiError, ApiResult, HttpError};
use super::guard::Identity;
use crate::domain::access::Permission;
use crate::domain::entity::parse_id;
use crate::domain::error::Error;
use crate::domain::ownership::Owners;
use crate::domain::upload_sessions::{FileRequest, Session, Transfer, UploadSessions};
use crate::store::artifacts::CompletedPart;

/// The extension's prefix.
pub const PREFIX: &str = "/api/registry_ext/v1";

/// State of the extension's handlers.
#[derive(Clone)]
pub struct UploadsApi {
    pub sessions: UploadSessions,
    /// External base URL for relay URLs (`MR_PUBLIC_URL`); else from `Host`.
    pub public_url: Option<String>,
    /// Which model a version belongs to (per-model access).
    pub owners: Owners,
}

impl UploadsApi {
    /// Check `p` on the model of version `version_id`.
    async fn check(&self, who: &Identity, p: Permission, version_id: u64) -> ApiResult<()> {
        if who.access.allows_everywhere(p) {
            return Ok(());
        }
        let model = match self.owners.model_of_version(version_id).await? {
            Some(m) => self.owners.name(m).await?,
            None => None,
        };
        who.check_model(p, model.as_deref())
    }
}

/// The extension's operations as (method, path under [`PREFIX`]); the
/// router below mounts exactly these (a unit test checks it).
pub const ROUTES: [(&str, &str); 4] = [
    ("post", "/model_versions/{id}/uploads"),
    ("get", "/uploads/{id}"),
    ("post", "/uploads/{id}/complete"),
    ("put", "/uploads/{id}/files/{token}"),
];

/// The extension's routes, under [`PREFIX`].
pub fn routes(state: UploadsApi) -> Router {
    let api = Router::new()
        .route(ROUTES[0].1, post(start))
        .route(ROUTES[1].1, get(status))
        .route(ROUTES[2].1, post(complete))
        .route(ROUTES[3].1, put(relay))
        .with_state(state);
    Router::new().nest(PREFIX, api)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    files: Vec<DeclaredFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredFile {
    path: String,
    size: u64,
    sha256: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    files: Vec<CompletedFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletedFile {
    path: String,
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Part {
    part_number: i32,
    etag: String,
}

fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("invalid request body: {e}")).into())
}

/// The registry's external base URL, for relay URLs: `MR_PUBLIC_URL`, else
/// the `Host` the request was sent to when it is a plain host name or
/// address (`X-Forwarded-*` headers are never trusted: set `MR_PUBLIC_URL`
/// behind a proxy).
fn base_url(state: &UploadsApi, headers: &HeaderMap) -> ApiResult<String> {
    if let Some(url) = &state.public_url {
        return Ok(url.clone());
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !plain {
        return Err(Error::BadRequest("the Host header is not a host name".into()).into());
    }
    Ok(format!("http://{host}"))
}

/// The wire form of a session (ids as strings, times as strings of ms).
fn session_json(s: &Session, base: &str) -> Value {
    let files: Vec<Value> = s
        .files
        .iter()
        .map(|f| {
            json!({"path": f.path, "key": f.key, "size": f.size, "sha256": f.sha256,
                   "multipart": f.multipart.is_some()})
        })
        .collect();
    let mut v = json!({
        "id": s.id,
        "modelVersionId": s.model_version_id.to_string(),
        "modelArtifactId": s.model_artifact_id.to_string(),
        "state": s.state,
        "folder": s.folder,
        "createTimeSinceEpoch": s.create_ms.to_string(),
        "expiresTimeSinceEpoch": s.expires_ms.to_string(),
        "files": files,
        "complete": {"method": "POST", "url": format!("{base}{PREFIX}/uploads/{}/complete", s.id)},
    });
    if !s.problems.is_empty() {
        v["problems"] = json!(s.problems);
    }
    if let Some(r) = &s.registration {
        v["registration"] = json!(r);
    }
    v
}

async fn start(
    State(state): State<UploadsApi>,
    who: Identity,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let version_id = parse_id("id", &id)?;
    state.check(&who, Permission::Write, version_id).await?;
    let request: StartBody = decode(&body)?;
    let files = request
        .files
        .into_iter()
        .map(|f| FileRequest {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
        })
        .collect();
    let base = base_url(&state, &headers)?;
    let (session, transfers) = state.sessions.start(version_id, files).await?;
    let mut wire = session_json(&session, &base);
    if let Some(files) = wire["files"].as_array_mut() {
        for (file, transfer) in files.iter_mut().zip(&transfers) {
            file["upload"] = match transfer {
                Transfer::Put { url } => json!({"method": "PUT", "url": url}),
                Transfer::Parts {
                    upload_id,
                    part_size,
                    urls,
                } => json!({
                    "method": "PUT",
                    "uploadId": upload_id,
                    "partSize": part_size,
                    "parts": urls.iter().enumerate()
                        .map(|(i, url)| json!({"partNumber": i + 1, "url": url}))
                        .collect::<Vec<_>>(),
                }),
                Transfer::Relay { token } => json!({
                    "method": "PUT",
                    "url": format!("{base}{PREFIX}/uploads/{}/files/{token}", session.id),
                }),
            };
        }
    }
    Ok((StatusCode::CREATED, Json(wire)))
}

async fn status(
    State(state): State<UploadsApi>,
    who: Identity,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let session = state.sessions.get(&id).await?;
    state
        .check(&who, Permission::Read, session.model_version_id)
        .await?;
    Ok(Json(session_json(&session, &base_url(&state, &headers)?)))
}

async fn complete(
    State(state): State<UploadsApi>,
    who: Identity,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let session = state.sessions.get(&id).await?;
    state
        .check(&who, Permission::Write, session.model_version_id)
        .await?;
    let request: CompleteBody = if body.iter().all(u8::is_ascii_whitespace) {
        CompleteBody::default()
    } else {
        decode(&body)?
    };
    let mut parts = BTreeMap::new();
    for f in request.files {
        let list = f
            .parts
            .into_iter()
            .map(|p| CompletedPart {
                number: p.part_number,
                etag: p.etag,
            })
            .collect();
        if parts.insert(f.path.clone(), list).is_some() {
            return Err(Error::BadRequest(format!("files: '{}' is listed twice", f.path)).into());
        }
    }
    let (session, artifact) = state.sessions.complete(&id, parts).await?;
    let mut wire = session_json(&session, &base_url(&state, &headers)?);
    wire["modelArtifact"] = super::codec::to_value(&artifact);
    Ok(Json(wire))
}

/// Removes a temporary file when dropped.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `PUT` of one file's bytes through the registry: streamed to a temporary
/// file (never more than the declared size), then into the artifact store.
async fn relay(
    State(state): State<UploadsApi>,
    who: Identity,
    Path((id, token)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let session = state.sessions.get(&id).await?;
    state
        .check(&who, Permission::Write, session.model_version_id)
        .await?;
    let file = state.sessions.relay_target(&id, &token).await?;
    let tmp =
        TempPath(std::env::temp_dir().join(format!("mr-upload-{}", uuid::Uuid::new_v4().simple())));
    let io = |cause: std::io::Error| -> ApiError {
        HttpError::Io {
            what: "relaying an upload to the artifact store".into(),
            cause,
        }
        .into()
    };
    let mut out = tokio::fs::File::create(&tmp.0).await.map_err(io)?;
    let mut body = body;
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(HttpError::Body)?;
        if let Ok(data) = frame.into_data() {
            written = u64::try_from(data.len())
                .ok()
                .and_then(|n| written.checked_add(n))
                .unwrap_or(u64::MAX);
            if written > file.size {
                return Err(Error::BadRequest(format!(
                    "{}: more than the declared {} bytes",
                    file.path, file.size
                ))
                .into());
            }
            out.write_all(&data).await.map_err(io)?;
        }
    }
    out.flush().await.map_err(io)?;
    drop(out);
    let info = state.sessions.store_relayed(&id, &file, &tmp.0).await?;
    Ok(Json(json!({
        "path": file.path,
        "size": info.size,
        "sha256": info.sha256,
    })))
}
