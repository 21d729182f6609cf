//! HTTP endpoint of storage events: `POST /events/storage` on every server
//! that serves the slice, and also `POST /` on the `storage-events` function
//! (where a Knative Trigger delivers by default). The body is a CloudEvent
//! in any content mode, or plain JSON (a MinIO webhook, an S3 notification
//! or an EventBridge event posted as is); see `events` for what the status
//! codes tell the sender.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::domain::uploads::Uploads;
use crate::events::{self, Delivery, Verdict};

/// Where events are accepted on every server.
pub const PATH: &str = "/events/storage";

/// `POST /events/storage`.
pub fn routes(uploads: Uploads) -> Router {
    Router::new().route(PATH, post(receive)).with_state(uploads)
}

/// `POST /` and `POST /events/storage` (the `storage-events` function).
pub fn function_routes(uploads: Uploads) -> Router {
    Router::new()
        .route("/", post(receive))
        .route(PATH, post(receive))
        .with_state(uploads)
}

async fn receive(State(uploads): State<Uploads>, headers: HeaderMap, body: Bytes) -> Response {
    let delivery = match events::from_http(&headers, &body) {
        Ok(parsed) => events::deliver(&uploads, parsed).await,
        Err(why) => Delivery::malformed(&why),
    };
    respond(delivery)
}

/// The status a broker acts on, with the report as the body (and the
/// API's `{code, message}` on errors).
fn respond(delivery: Delivery) -> Response {
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
    (status, axum::Json(report)).into_response()
}
