//! Change events out: every ledger record becomes a CloudEvent (structured
//! JSON mode), delivered at least once, in order per entity, to a sink
//! (`K_SINK` from a Knative SinkBinding, or `MR_EVENTS_SINK`).
//!
//! A dispatcher works in rounds (a loop in `registry-local`, a PingSource
//! or schedule invoking the `events` function): it takes the stream's lease
//! (`store::layout::dispatch`: one dispatcher at a time, so events leave in
//! order), reads the ledger's audit index by time after its cursor, and
//! posts each record in turn, retrying a failing sink with backoff until
//! the round's time is up; the cursor moves (durably, every
//! [`CHECKPOINT_EVERY`] events or on renewing the lease, and at the end)
//! only past what was delivered. A dispatcher killed mid-delivery leaves the
//! cursor behind what it sent: the next round sends those again, with the
//! same event ids (`<entityType>/<entityId>/<revision>`), so sinks can drop
//! duplicates.
//!
//! Records younger than the settle time (`MR_EVENTS_SETTLE_MS`, default
//! 10 s) wait for the next round: the audit index is a global index, which
//! may lag the table. A record whose change did not happen (its writer lost
//! a race or died, see `store::layout::ledger`) is not an event; one of a
//! change that may still be landing waits too.
//!
//! The sink is called from the dispatcher only: a slow or failing sink
//! never slows or fails an API request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::codec;
use crate::api::extension::entity_type;
use crate::domain::entity::Family;
use crate::domain::error::{Error, Result};
use crate::domain::now_ms;
use crate::domain::registry::{Record, Registry};

/// Events delivered between two saves of the cursor.
pub const CHECKPOINT_EVERY: u64 = 50;
/// How long a dispatcher's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(15);
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The CloudEvents type namespace: `<TYPE_PREFIX>.<EntityType>.<action>`.
pub const TYPE_PREFIX: &str = "dev.modelregistry";
/// The header carrying the HMAC-SHA256 of the body when a secret is set.
pub const SIGNATURE_HEADER: &str = "x-registry-signature";

/// Where and how events go.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// The sink's URL (`K_SINK`, else `MR_EVENTS_SINK`).
    pub sink: String,
    /// `MR_EVENTS_SECRET`: sign each body (HMAC-SHA256, hex, in
    /// [`SIGNATURE_HEADER`] as `sha256=<hex>`).
    pub secret: Option<Vec<u8>>,
    /// `MR_EVENTS_SOURCE` (default `/model-registry`): the events' `source`.
    pub source: String,
    /// `MR_EVENTS_STREAM` (default `default`): the name of the cursor, so
    /// two sinks can each have their own.
    pub stream: String,
    /// `MR_EVENTS_SETTLE_MS` (default 10000).
    pub settle: Duration,
    /// How long one round may take (`MR_EVENTS_ROUND_MS`, default 50 s).
    pub round: Duration,
    /// Pause between rounds of the dispatcher loop (`MR_EVENTS_INTERVAL_MS`,
    /// default 2000).
    pub interval: Duration,
}

/// The REST collection of a family, for events' `subject`.
fn collection(f: Family) -> &'static str {
    match f {
        Family::RegisteredModel => "registered_models",
        Family::ModelVersion => "model_versions",
        Family::Artifact => "artifacts",
        Family::ServingEnvironment => "serving_environments",
        Family::InferenceService => "inference_services",
        Family::ServeModel => "serve_models",
        Family::Experiment => "experiments",
        Family::ExperimentRun => "experiment_runs",
        Family::MetricHistory => "metric_history",
    }
}

/// The CloudEvent of a ledger record.
pub fn cloud_event(r: &Record, source: &str) -> Value {
    let family = r.entity.kind.family();
    let kind = entity_type(family);
    json!({
        "specversion": "1.0",
        "id": format!("{kind}/{}/{}", r.entity.id, r.revision),
        "source": source,
        "type": format!("{TYPE_PREFIX}.{kind}.{}", r.action.wire().to_ascii_lowercase()),
        "subject": format!("{}/{}", collection(family), r.entity.id),
        "time": crate::domain::rfc3339(r.at_ms),
        "datacontenttype": "application/json",
        "data": {
            "entityType": kind,
            "entityId": r.entity.id.to_string(),
            "revision": r.revision.to_string(),
            "action": r.action.wire(),
            "actor": r.actor,
            "changes": r.changes,
            "hash": r.hash,
            "prevHash": r.prev_hash,
            "entity": codec::to_value(&r.entity),
        },
    })
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104), hex.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<axum::body::Bytes>,
>;

/// What a round did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundReport {
    pub delivered: u64,
    /// Records of changes that did not happen, passed over.
    pub skipped: u64,
    /// Another dispatcher holds the lease: nothing done.
    pub busy: bool,
    /// Everything old enough was delivered.
    pub caught_up: bool,
    /// Why the round stopped early (the sink failing until the round's end).
    pub error: Option<String>,
}

/// Delivers the change events of one registry to one sink.
pub struct Dispatcher {
    registry: Registry,
    settings: EventSettings,
    client: Client,
    owner: String,
}

impl Dispatcher {
    pub fn new(registry: Registry, settings: EventSettings) -> Result<Arc<Dispatcher>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| Error::internal(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Arc::new(Dispatcher {
            registry,
            settings,
            client,
            owner: uuid::Uuid::new_v4().to_string(),
        }))
    }

    /// Rounds, one after the other, `interval` apart, for ever.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.round().await {
                Ok(r) if r.delivered > 0 || r.error.is_some() => {
                    tracing::info!(delivered = r.delivered, skipped = r.skipped, error = ?r.error, "change events")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "change events: round failed"),
            }
            tokio::time::sleep(self.settings.interval).await;
        }
    }

    /// POST one event; Ok when the sink answered 2xx.
    async fn post(&self, event: &Value) -> std::result::Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let mut request = axum::http::Request::post(&self.settings.sink).header(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        );
        if let Some(secret) = &self.settings.secret {
            request = request.header(
                SIGNATURE_HEADER,
                format!("sha256={}", hmac_sha256(secret, &body)),
            );
        }
        let request = request
            .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
            .map_err(|e| format!("sink URL {}: {e}", self.settings.sink))?;
        let response = tokio::time::timeout(DELIVERY_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("the sink did not answer within {DELIVERY_TIMEOUT:?}"))?
            .map_err(|e| format!("POST {}: {e}", self.settings.sink))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the sink answered {}", response.status()))
        }
    }

    /// One round: deliver what is old enough, in order, until caught up or
    /// the round's time is up.
    pub async fn round(&self) -> Result<RoundReport> {
        let started = Instant::now();
        let deadline = started + self.settings.round;
        let items = self.registry.layout().dispatch(&self.settings.stream);
        let entities = self.registry.layout().entities();
        let mut report = RoundReport::default();
        let (state, version) = items.load().await?;
        let mut stream = Stream {
            items,
            state,
            version,
            unsaved: 0,
        };
        if stream.state.owner != self.owner && stream.state.lease_until_ms > now_ms() {
            report.busy = true;
            return Ok(report);
        }
        stream.state.owner = self.owner.clone();
        if !stream
            .checkpoint(now_ms() + LEASE.as_millis() as u64)
            .await?
        {
            report.busy = true;
            return Ok(report);
        }
        let lease_ms = LEASE.as_millis() as u64;
        let orphan_age = self.registry.claim_lease().as_millis() as u64;
        let settle = self.settings.settle.as_millis() as u64;
        'rounds: while Instant::now() < deadline {
            let page = entities.ledger().feed(stream.state.cursor(), 100).await?;
            if page.records.is_empty() {
                report.caught_up = true;
                break;
            }
            let refs: Vec<(Family, u64)> = page
                .records
                .iter()
                .map(|(r, _)| (r.entity.kind.family(), r.entity.id))
                .collect();
            let versions = entities.versions(&refs).await?;
            let read = page.records.len();
            for (i, ((record, cursor), v)) in page.records.into_iter().zip(versions).enumerate() {
                if Instant::now() >= deadline {
                    break 'rounds;
                }
                let now = now_ms();
                if record.at_ms.saturating_add(settle) > now {
                    report.caught_up = true;
                    break 'rounds;
                }
                if v.is_none_or(|v| record.revision > v) {
                    if record.at_ms.saturating_add(orphan_age) > now {
                        // Its change may still be landing.
                        report.caught_up = true;
                        break 'rounds;
                    }
                    report.skipped += 1;
                    stream.state.set_cursor(&cursor);
                    continue;
                }
                let event = cloud_event(&record, &self.settings.source);
                let mut pause = Duration::from_millis(100);
                loop {
                    match self.post(&event).await {
                        Ok(()) => break,
                        Err(e) if Instant::now() + pause >= deadline => {
                            report.error = Some(e);
                            break 'rounds;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, id = %event["id"], "change event not delivered yet");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                            if stream.state.lease_until_ms < now_ms() + lease_ms / 2
                                && !stream.checkpoint(now_ms() + lease_ms).await?
                            {
                                return Ok(report);
                            }
                        }
                    }
                }
                stream.state.set_cursor(&cursor);
                stream.state.delivered += 1;
                report.delivered += 1;
                stream.unsaved += 1;
                if (stream.unsaved >= CHECKPOINT_EVERY
                    || stream.state.lease_until_ms < now_ms() + lease_ms / 2)
                    && !stream.checkpoint(now_ms() + lease_ms).await?
                {
                    return Ok(report);
                }
                if i + 1 == read && page.exhausted {
                    report.caught_up = true;
                    break 'rounds;
                }
            }
        }
        // Leave the cursor where delivery stands, and the lease free.
        stream.checkpoint(0).await?;
        Ok(report)
    }
}

/// A round's hold on its stream.
struct Stream {
    items: crate::store::layout::dispatch::DispatchItems,
    state: crate::store::layout::dispatch::DispatchState,
    version: u64,
    /// Events delivered since the cursor was last saved.
    unsaved: u64,
}

impl Stream {
    /// Save the cursor with the lease until `until` (0: free): false when
    /// another dispatcher took the stream meanwhile (its lease had run out).
    async fn checkpoint(&mut self, until: u64) -> Result<bool> {
        self.state.lease_until_ms = until;
        if self.items.save(&self.state, self.version).await? {
            self.version += 1;
            self.unsaved = 0;
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
