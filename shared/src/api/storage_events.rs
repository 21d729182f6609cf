//! HTTP endpoint of storage events: `POST /events/storage` on every server
//! that serves the slice, and also `POST /` on the `storage-events` function
//! (where a Knative Trigger delivers by default). The body is a CloudEvent
//! in any content mode, or plain JSON (a MinIO webhook, an S3 notification
//! or an EventBridge event posted as is); see `registration::delivery`
//! for what the status codes tell the sender.
//!
//! With authentication on, the sender must be allowed to change every
//! model its events would register (`writer` on them): an event is an
//! instruction to (re)register a model, whoever sends it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::edge::{PublicBody, RequestId};
use super::guard::Identity;
use crate::domain::access::Permission;
use crate::registration::Registrar;
use crate::registration::delivery::{Delivery, Verdict, deliver};
use crate::registration::events::{self, Parsed};

/// Where events are accepted on every server.
pub const PATH: &str = "/events/storage";

/// `POST /events/storage`.
pub fn routes(registrar: Registrar) -> Router {
    Router::new()
        .route(PATH, post(receive))
        .with_state(registrar)
}

/// `POST /` and `POST /events/storage` (the `storage-events` function).
pub fn function_routes(registrar: Registrar) -> Router {
    Router::new()
        .route("/", post(receive))
        .route(PATH, post(receive))
        .with_state(registrar)
}

async fn receive(
    State(registrar): State<Registrar>,
    who: Identity,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delivery = match events::from_http(&headers, &body) {
        Ok(parsed) => {
            if let Err(refused) = authorize(&registrar, &who, &parsed) {
                return refused.into_response();
            }
            deliver(&registrar, parsed).await
        }
        Err(why) => Delivery::malformed(&why),
    };
    let id = request_id.map(|Extension(RequestId(id))| id);
    respond(delivery, id.as_deref())
}

/// The sender must be allowed to change each model its events name
/// (events outside the convention register nothing and need no right).
fn authorize(
    registrar: &Registrar,
    who: &Identity,
    parsed: &Parsed,
) -> Result<(), super::error::ApiError> {
    if who.access.allows_everywhere(Permission::Write) {
        return Ok(());
    }
    for event in &parsed.events {
        if let Ok(at) = registrar.convention().locate(&event.bucket, &event.key) {
            who.check_model(Permission::Write, Some(&at.model))?;
        }
    }
    Ok(())
}

/// The status a broker acts on, with the report as the body (and the
/// API's `{code, message}` on errors).
/// A 503's report keeps the outcome of every event (a broker may log it)
/// but not the store's error text, which went to the log with the request
/// id the message names.
fn respond(delivery: Delivery, request_id: Option<&str>) -> Response {
    let status = match delivery.verdict {
        Verdict::Done => StatusCode::ACCEPTED,
        Verdict::Malformed => StatusCode::BAD_REQUEST,
        Verdict::Failed => StatusCode::UNPROCESSABLE_ENTITY,
        Verdict::Retry => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut report = delivery.report;
    if status != StatusCode::ACCEPTED
        && let Some(obj) = report.as_object_mut()
    {
        obj.insert(
            "code".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        if !obj.contains_key("message") {
            let message = match delivery.verdict {
                Verdict::Retry => "some events could not be applied now: deliver again",
                _ => "some events cannot be registered: see events[].error",
            };
            obj.insert("message".into(), json!(message));
        }
    }
    if status.is_server_error()
        && let Some(obj) = report.as_object_mut()
    {
        if let Some(events) = obj.get_mut("events").and_then(Value::as_array_mut) {
            for e in events.iter_mut().filter(|e| e["outcome"] == "retry") {
                e["error"] = json!("temporarily unavailable");
            }
        }
        obj.insert(
            "message".into(),
            json!(format!(
                "some events could not be applied now: deliver again (request id {})",
                request_id.unwrap_or("-")
            )),
        );
    }
    let mut response = (status, axum::Json(report)).into_response();
    response.extensions_mut().insert(PublicBody);
    response
}
