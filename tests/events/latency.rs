//! Time from upload to visible registration, locally: the object is written
//! to s3s-fs, its event delivered (as a broker would, right away), and the
//! model artifact polled through the API until it is LIVE. Notification
//! delay in a real deployment (S3 to EventBridge or Knative: typically
//! under a second, occasionally more) adds to this. The numbers are printed
//! and written to `target/bench/upload-to-visible.json` for the benchmark
//! report.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_to_visible_registration_latency() {
    const UPLOADS: usize = 30;
    let s3 = s3();
    let bucket = new_bucket(&s3, "ev-latency").await;
    let registry = Registry::start(
        "registry-local",
        &server_env("MR_TEST_DYNAMODB_ENDPOINT"),
        &bucket,
        &[("MR_LOG", "warn".into())],
    )
    .await;
    let api = registry.api();
    let body: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 241) as u8).collect();
    let (mut total, mut delivery) = (Vec::new(), Vec::new());
    for i in 0..UPLOADS {
        let model = uniq("latency");
        let key = format!("models/{model}/{i}/model.bin");
        let started = Instant::now();
        put(&s3, &bucket, &key, &body).await;
        let event = created(&s3, &bucket, &key).await;
        let delivered = Instant::now();
        registry.deliver(&event, Mode::Binary).await;
        delivery.push(delivered.elapsed());
        // Visible to a client: the artifact reads LIVE through the API.
        let a = artifact_of(&api, &model, &i.to_string())
            .await
            .expect("registered");
        assert_eq!(a["state"], "LIVE");
        total.push(started.elapsed());
    }
    total.sort();
    delivery.sort();
    let report = json!({
        "what": "upload to visible registration (s3s-fs + dynalite, registry-local debug build, loopback)",
        "uploads": UPLOADS,
        "object_bytes": body.len(),
        "upload_to_visible_ms": {"p50": percentile(&total, 0.5), "p90": percentile(&total, 0.9), "max": percentile(&total, 1.0)},
        "event_delivery_ms": {"p50": percentile(&delivery, 0.5), "p90": percentile(&delivery, 0.9), "max": percentile(&delivery, 1.0)},
    });
    println!("upload-to-visible: {report:#}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("upload-to-visible.json"), format!("{report:#}\n"));
    }
    // Sanity, not a performance target: seconds, not minutes.
    assert!(percentile(&total, 0.5) < 5000.0, "{report}");
}
