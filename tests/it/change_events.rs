//! Change events out: every ledger record reaches a sink as a CloudEvent,
//! in order per entity, at least once: with the sink down for a while,
//! and with the dispatcher killed in the middle of a delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::common::{Api, V1, id, uniq};
use crate::harness::{Server, ServerOpts};

const EXT: &str = "/api/registry_ext/v1";
const SECRET: &str = "s3cret";

/// A sink that keeps what it was sent; it can be down (503) or slow.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Value>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    bad_signatures: Arc<std::sync::atomic::AtomicUsize>,
}

impl Sink {
    async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let s = sink.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let delay = s.delay_ms.load(SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    if s.down.load(SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let expected = format!(
                        "sha256={}",
                        registry::events::hmac_sha256(SECRET.as_bytes(), &body)
                    );
                    if headers
                        .get(registry::events::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        != Some(expected.as_str())
                    {
                        s.bad_signatures.fetch_add(1, SeqCst);
                        return StatusCode::UNAUTHORIZED;
                    }
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    s.received.lock().unwrap().push(event);
                    StatusCode::ACCEPTED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (sink, url)
    }

    fn ids(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn server_for(sink: &str, data_dir: Option<std::path::PathBuf>) -> Server {
    Server::start_with(ServerOpts {
        data_dir,
        env: [
            ("MR_EVENTS_SINK", sink),
            ("MR_EVENTS_SECRET", SECRET),
            ("MR_EVENTS_SETTLE_MS", "300"),
            ("MR_EVENTS_INTERVAL_MS", "200"),
            ("MR_EVENTS_ROUND_MS", "5000"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
    })
    .await
}

/// The ids of every applied record of the audit, oldest first.
async fn audit_ids(s: &Server) -> Vec<String> {
    let ext = Api::new(s.client().clone(), s.base_url(), EXT);
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = ext
            .get(&format!("/audit?pageSize=100&nextPageToken={token}"))
            .await
            .ok(200);
        for r in page["items"].as_array().unwrap() {
            if r["applied"] == true {
                ids.push(r["id"].as_str().unwrap().to_string());
            }
        }
        token = page["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            break;
        }
    }
    ids.reverse();
    ids
}

/// Changes of a model, its versions and an alias: `n` updates each.
async fn changes(api: &Api, name: &str, n: usize) -> String {
    let m = api.create_model(name).await;
    let mid = id(&m);
    let mut versions = Vec::new();
    for v in 0..3 {
        versions.push(id(&api.create_version(&mid, &format!("v{v}")).await));
    }
    for i in 0..n {
        api.patch(
            &format!("/registered_models/{mid}"),
            &json!({"description": format!("take {i}")}),
        )
        .await
        .ok(200);
        for v in &versions {
            api.patch(
                &format!("/model_versions/{v}"),
                &json!({"description": format!("take {i}")}),
            )
            .await
            .ok(200);
        }
    }
    mid
}

/// Wait until the sink has every id of the audit (or fail after `limit`).
async fn wait_for_all(s: &Server, sink: &Sink, limit: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let expected = audit_ids(s).await;
        let got: BTreeSet<String> = sink.ids().into_iter().collect();
        if !expected.is_empty() && expected.iter().all(|id| got.contains(id)) {
            return expected;
        }
        assert!(
            started.elapsed() < limit,
            "the sink has {} of {} events after {limit:?}; missing {:?}",
            got.len(),
            expected.len(),
            expected
                .iter()
                .filter(|id| !got.contains(*id))
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event of one entity arrives after the ones of its earlier
/// revisions (first arrivals; a duplicate repeats an earlier one), and
/// every copy of an event is the same event.
fn check_order_and_duplicates(sink: &Sink) {
    let received = sink.received.lock().unwrap().clone();
    let mut first: BTreeMap<String, Value> = BTreeMap::new();
    let mut last_revision: BTreeMap<String, u64> = BTreeMap::new();
    for e in &received {
        let id = e["id"].as_str().unwrap().to_string();
        if let Some(earlier) = first.get(&id) {
            assert_eq!(earlier, e, "a duplicate is the same event");
            continue;
        }
        let subject = e["subject"].as_str().unwrap().to_string();
        let revision: u64 = e["data"]["revision"].as_str().unwrap().parse().unwrap();
        let before = last_revision.insert(subject.clone(), revision).unwrap_or(0);
        assert!(
            revision > before,
            "{subject}: revision {revision} arrived after {before}"
        );
        first.insert(id, e.clone());
    }
}

#[tokio::test]
async fn every_change_reaches_the_sink_in_order_even_when_it_is_down() {
    let (sink, url) = Sink::start().await;
    let s = server_for(&url, None).await;
    let api = s.api(V1);
    changes(&api, &uniq("events"), 2).await;
    let ids = wait_for_all(&s, &sink, Duration::from_secs(60)).await;
    check_order_and_duplicates(&sink);
    let e = sink.received.lock().unwrap()[0].clone();
    assert_eq!(e["specversion"], "1.0");
    assert!(
        e["type"]
            .as_str()
            .unwrap()
            .starts_with("dev.modelregistry.RegisteredModel."),
        "{e}"
    );
    assert_eq!(
        sink.bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // The sink down for 10 s while changes are made, then up: nothing lost.
    sink.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let m = changes(&api, &uniq("while-down"), 1).await;
    // Ten seconds down, changes going on (and the API answering) meanwhile.
    for i in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        api.patch(
            &format!("/registered_models/{m}"),
            &json!({"description": format!("while down {i}")}),
        )
        .await
        .ok(200);
    }
    let during = sink.ids().len();
    assert_eq!(during, ids.len(), "nothing arrives while the sink is down");
    sink.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let all = wait_for_all(&s, &sink, Duration::from_secs(60)).await;
    assert!(all.len() > ids.len());
    check_order_and_duplicates(&sink);
    // The API answered throughout (its requests never wait for the sink).
}

#[tokio::test]
async fn a_dispatcher_killed_mid_delivery_loses_nothing() {
    let (sink, url) = Sink::start().await;
    let dir = tempfile::Builder::new()
        .prefix("mr-it-events-")
        .tempdir()
        .unwrap();
    let mut s = server_for(&url, Some(dir.path().to_path_buf())).await;
    // Slow deliveries: the kill lands while events are in flight.
    sink.delay_ms
        .store(150, std::sync::atomic::Ordering::SeqCst);
    changes(&s.api(V1), &uniq("killed"), 3).await;
    let started = Instant::now();
    while sink.ids().len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "no deliveries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.restart().await;
    let delivered_before = sink.ids().len();
    sink.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    // The new process waits for the dead one's lease, then goes on from
    // the last saved position: everything arrives, some of it twice.
    let all = wait_for_all(&s, &sink, Duration::from_secs(90)).await;
    check_order_and_duplicates(&sink);
    let received = sink.ids();
    let unique: BTreeSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), all.len(), "every event, and nothing else");
    println!(
        "killed after {delivered_before} deliveries; {} received for {} events ({} duplicates)",
        received.len(),
        all.len(),
        received.len() - unique.len()
    );
    drop(dir);
}
