//! A delivery of storage events, applied, and the verdict a broker acts on:
//!
//! | verdict | HTTP | Lambda | meaning |
//! |---|---|---|---|
//! | done | 202 | result | applied, or ignored (not ours: other bucket, prefix or event type) |
//! | malformed | 400 | result | unreadable or incomplete event: retrying cannot help |
//! | failed | 422 | result | a valid event of ours that cannot be registered (e.g. a name clash) |
//! | retry | 503 | error | the store or the bucket is unavailable: deliver again |
//!
//! 202 (not 200) because a Knative broker would read a 200 body as a reply
//! event; 400 and 422 are not retried by Knative, 503 is (with backoff);
//! under Lambda an invocation error makes Lambda retry asynchronous events.
//! The HTTP side is `api::storage_events`.

use serde_json::{Value, json};

use super::events::{self, Change, Malformed, Parsed};
use super::explain;
use super::registrar::{Outcome, Registrar};
use crate::domain::error::Error;

/// What a delivery comes to, for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Applied or ignored: do not deliver again.
    Done,
    /// Unreadable: do not deliver again (dead-letter it).
    Malformed,
    /// Valid but impossible to register: do not deliver again.
    Failed,
    /// Deliver again later.
    Retry,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Malformed => "malformed",
            Verdict::Failed => "failed",
            Verdict::Retry => "retry",
        }
    }
}

/// The verdict and a JSON report of what each event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub verdict: Verdict,
    pub report: Value,
}

impl Delivery {
    /// A delivery that could not be read: the report's message says why,
    /// causes included.
    pub fn malformed(why: &Malformed) -> Delivery {
        let message = explain(why);
        tracing::warn!(reason = %message, "malformed storage event rejected");
        Delivery {
            verdict: Verdict::Malformed,
            report: json!({"verdict": Verdict::Malformed.as_str(), "message": message}),
        }
    }
}

/// Apply every event (all of them, even after a failure: each is safe to
/// repeat) and sum up the verdict: retry if any needs it, else failed if any
/// failed, else done.
pub async fn deliver(registrar: &Registrar, parsed: Parsed) -> Delivery {
    let mut verdict = Verdict::Done;
    let mut results = Vec::with_capacity(parsed.events.len());
    for event in &parsed.events {
        let mut entry = json!({
            "bucket": event.bucket,
            "key": event.key,
            "change": match event.change { Change::Created => "created", Change::Removed => "removed" },
        });
        match registrar.apply(event).await {
            Ok(Outcome::Registered {
                applied,
                registration,
            }) => {
                entry["outcome"] = json!("registered");
                entry["applied"] = json!(applied);
                if let (Some(e), Ok(Value::Object(r))) =
                    (entry.as_object_mut(), serde_json::to_value(&registration))
                {
                    e.extend(r);
                }
                tracing::info!(bucket = %event.bucket, key = %event.key, applied,
                    version = %registration.model_version_id, state = %registration.artifact_state,
                    "storage event registered");
            }
            Ok(Outcome::Ignored { reason }) => {
                tracing::debug!(bucket = %event.bucket, key = %event.key, %reason, "storage event ignored");
                entry["outcome"] = json!("ignored");
                entry["reason"] = json!(reason);
            }
            Err(e) => {
                let retry = matches!(e, Error::Unavailable { .. } | Error::Internal { .. });
                if retry {
                    tracing::warn!(bucket = %event.bucket, key = %event.key, error = %e, "storage event failed, to be retried");
                    verdict = Verdict::Retry;
                } else {
                    tracing::error!(bucket = %event.bucket, key = %event.key, error = %e, "storage event cannot be registered");
                    if verdict == Verdict::Done {
                        verdict = Verdict::Failed;
                    }
                }
                entry["outcome"] = json!(if retry { "retry" } else { "failed" });
                entry["error"] = json!(e.to_string());
            }
        }
        results.push(entry);
    }
    for why in &parsed.ignored {
        tracing::debug!(reason = %why, "payload ignored");
    }
    Delivery {
        verdict,
        report: json!({
            "verdict": verdict.as_str(),
            "events": results,
            "ignored": parsed.ignored,
        }),
    }
}

/// A Lambda invocation some of whose events must be delivered again: the
/// invocation fails, so Lambda retries it. The report says what each event
/// did.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("storage events to be retried: {report}")]
pub struct RetryLater {
    pub report: Value,
}

/// One Lambda invocation of the `storage-events` function: the report as
/// the result, or [`RetryLater`] (an invocation error, which makes Lambda
/// deliver the event again) when the verdict is retry. Malformed and failed
/// events are answered with their report, not retried.
pub async fn handle_lambda(registrar: &Registrar, payload: &Value) -> Result<Value, RetryLater> {
    let delivery = match events::from_lambda(payload) {
        Ok(parsed) => deliver(registrar, parsed).await,
        Err(why) => Delivery::malformed(&why),
    };
    match delivery.verdict {
        Verdict::Retry => Err(RetryLater {
            report: delivery.report,
        }),
        _ => Ok(delivery.report),
    }
}
