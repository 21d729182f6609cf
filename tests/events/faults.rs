//! Exactly once in effect: every delivery of an upload's events twice, in
//! reverse order, concurrently, and with the registry failing attempts half
//! way (503 from an injected DynamoDB fault, then the broker's retry) ends in
//! the same registry state as one clean, in-order delivery, without
//! duplicate entities.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn dynalite() -> String {
    server_env("MR_TEST_DYNAMODB_ENDPOINT")
}

/// One upload (three files, one of them written twice, and a manifest) in
/// one folder, plus a second folder with a file that stays and one that was
/// created and then removed; the events of both, in the order S3 emitted
/// them. By the time they are delivered, the first event of the file written
/// twice and the creation of the removed file are stale: the bucket no
/// longer bears them out. (A folder whose only file came and went before
/// any delivery registers nothing: the registry never saw it in the bucket.)
struct Upload {
    bucket: String,
    model: String,
    events: Vec<ObjectEvent>,
}

async fn upload(s3: &aws_sdk_s3::Client, label: &str) -> Upload {
    let bucket = new_bucket(s3, label).await;
    let model = uniq("faulty");
    let mut events = Vec::new();
    for (path, body) in [
        ("1.0.0/weights/part-1.bin", b"first try".as_slice()),
        ("1.0.0/model.onnx", b"onnx bytes"),
        ("1.0.0/weights/part-1.bin", b"0123456789"),
        ("1.0.0/weights/part-2.bin", b"abcdefghij"),
        (
            "1.0.0/model-manifest.json",
            br#"{"modelFormatName": "onnx", "description": "faulty", "metrics": {"f1": 0.7}, "parameters": {"lr": 0.01}}"#,
        ),
        ("2.0.0/model.onnx", b"kept"),
        ("2.0.0/short-lived.bin", b"short-lived"),
    ] {
        let key = format!("models/{model}/{path}");
        put(s3, &bucket, &key, body).await;
        events.push(created(s3, &bucket, &key).await);
    }
    let gone = format!("models/{model}/2.0.0/short-lived.bin");
    delete(s3, &bucket, &gone).await;
    events.push(removed(&bucket, &gone));
    Upload {
        bucket,
        model,
        events,
    }
}

/// The state after one clean, in-order delivery (a registry of its own).
async fn clean_state(up: &Upload) -> Value {
    let clean = Registry::start("registry-local", &dynalite(), &up.bucket, &[]).await;
    for e in &up.events {
        clean.deliver(e, Mode::Binary).await;
    }
    let state = snapshot(&clean.api(), &up.model).await;
    let versions = state[0]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{state}");
    state
}

/// Deliver until accepted, as a broker retries a 503 with backoff.
async fn deliver_until_accepted(registry: &Registry, e: &ObjectEvent, mode: Mode) {
    for _ in 0..50 {
        let (status, body) = registry.deliver_at("/events/storage", e, mode).await;
        match status {
            202 => return,
            503 => {
                assert_eq!(body["code"], "Service Unavailable", "{body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => panic!("{} {status}: {body}", e.key),
        }
    }
    panic!("{} never accepted", e.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_reversed_and_failing_deliveries_end_like_one_clean_delivery() {
    let s3 = s3();
    let up = upload(&s3, "ev-faults").await;
    let expected = clean_state(&up).await;

    let proxy = FaultProxy::start(&dynalite()).await;
    // A short claim lease: a create cut off half way leaves its name claimed
    // until the lease ends (see README, "Crash safety").
    let faulty = Registry::start(
        "registry-local",
        &proxy.url,
        &up.bucket,
        &[("MR_CLAIM_LEASE_MS", "200".into())],
    )
    .await;
    // Every event twice, the whole history in reverse order first; each
    // first attempt cut off after a different number of store requests.
    let schedule: Vec<&ObjectEvent> = up.events.iter().rev().chain(up.events.iter()).collect();
    let modes = [
        Mode::Binary,
        Mode::Structured,
        Mode::EventBridge,
        Mode::Plain,
    ];
    let mut refused = 0;
    for (i, e) in schedule.iter().enumerate() {
        let mode = modes[i % modes.len()];
        proxy.fail_after(i as i64 % 12);
        let (status, body) = faulty.deliver_at("/events/storage", e, mode).await;
        proxy.heal();
        match status {
            202 => {}
            503 => {
                refused += 1;
                assert_eq!(body["verdict"], "retry", "{body}");
            }
            other => panic!("{} {other}: {body}", e.key),
        }
        deliver_until_accepted(&faulty, e, mode).await;
        // And a late duplicate of an earlier event, now stale.
        deliver_until_accepted(&faulty, schedule[i / 2], Mode::Binary).await;
    }
    assert!(
        refused >= schedule.len() / 2,
        "the faults hit only {refused} of {} deliveries",
        schedule.len()
    );
    assert!(proxy.failed() > 0);
    let got = snapshot(&faulty.api(), &up.model).await;
    assert_eq!(got, expected, "\nfaulty: {got:#}\nclean:  {expected:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_deliveries_end_like_one_clean_delivery() {
    let s3 = s3();
    let up = upload(&s3, "ev-concurrent").await;
    let expected = clean_state(&up).await;
    let registry = Arc::new(Registry::start("registry-local", &dynalite(), &up.bucket, &[]).await);
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..3 {
        for (i, e) in up.events.iter().enumerate() {
            let (registry, e) = (registry.clone(), e.clone());
            let mode = if (i + round) % 2 == 0 {
                Mode::Binary
            } else {
                Mode::Structured
            };
            tasks.spawn(async move { deliver_until_accepted(&registry, &e, mode).await });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let got = snapshot(&registry.api(), &up.model).await;
    assert_eq!(
        got, expected,
        "\nconcurrent: {got:#}\nclean:      {expected:#}"
    );
}
