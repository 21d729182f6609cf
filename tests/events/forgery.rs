//! Storage events are hints, the bucket is the truth: anyone who can reach
//! `/events/storage` can post an event, so an event the bucket does not
//! bear out (a removal of a present object, a creation of an absent one)
//! changes nothing, whatever position (sequencer, time) it claims, and
//! genuine events and completed uploads still apply after it. Numbers out
//! of range and oversized deliveries are malformed (400); an oversized
//! manifest is reported on the artifact while the rest registers. Each
//! test runs on the embedded store and on DynamoDB, with the bytes on
//! s3s-fs.

use serde_json::{Value, json};

use crate::support::*;

/// The highest sequencer the registry accepts (40 hex digits).
fn highest_sequencer() -> String {
    "F".repeat(40)
}

/// An event as an attacker writes it: `created` or not, for `key`, with
/// the position it claims.
fn forged(bucket: &str, key: &str, created: bool, sequencer: &str, time: &str) -> ObjectEvent {
    ObjectEvent {
        bucket: bucket.into(),
        key: key.into(),
        created,
        size: created.then_some(5),
        etag: created.then(|| "0123456789abcdef0123456789abcdef".to_string()),
        sequencer: sequencer.into(),
        time: time.into(),
    }
}

/// Deliver an event that must be rejected as malformed: the message.
async fn rejected(registry: &Registry, e: &ObjectEvent) -> String {
    let (status, body) = registry
        .deliver_at("/events/storage", e, Mode::Binary)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "Bad Request", "{body}");
    body["message"].as_str().expect("message").to_string()
}

/// The id of version `version` of model `model`.
async fn version_id(registry: &Registry, model: &str, version: &str) -> String {
    let api = registry.api();
    let m = api
        .get_q("/registered_model", &[("name", model)])
        .await
        .ok(200);
    let v = api
        .get_q(
            "/model_version",
            &[
                ("name", version),
                ("parentResourceId", m["id"].as_str().unwrap()),
            ],
        )
        .await
        .ok(200);
    v["id"].as_str().unwrap().to_string()
}

/// Upload `body` as `path` of a version through the upload extension
/// (presigned PUT to s3s-fs, then completion): the completed session.
async fn upload_through_the_registry(
    registry: &Registry,
    version_id: &str,
    path: &str,
    body: &[u8],
) -> Value {
    let http = registry.client();
    let base = format!("{}/api/registry_ext/v1", registry.base);
    let session: Value = http
        .post(format!("{base}/model_versions/{version_id}/uploads"))
        .json(&json!({"files": [{"path": path, "size": body.len(), "sha256": sha256_hex(body)}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = session["files"][0]["upload"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{session}"));
    let put = http.put(url).body(body.to_vec()).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let done = http
        .post(session["complete"]["url"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    done.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_removal_of_a_present_object_changes_nothing() {
    let s3 = s3();
    for backend in Backend::ALL {
        let bucket = new_bucket(&s3, "ev-forged-rm").await;
        let registry = backend.start(&bucket).await;
        let api = registry.api();
        let model = uniq("forged-rm");
        let key = format!("models/{model}/1/model.onnx");
        put(&s3, &bucket, &key, b"weights").await;
        registry
            .deliver(&created(&s3, &bucket, &key).await, Mode::Binary)
            .await;
        registry.wait_artifact(&model, "1", "LIVE").await;

        // The attack: the highest sequencer, then the latest time there is.
        let latest = "9999-12-31T23:59:59.999Z";
        for e in [
            forged(&bucket, &key, false, &highest_sequencer(), latest),
            forged(&bucket, &key, false, "", latest),
        ] {
            let report = registry.deliver(&e, Mode::Binary).await;
            let outcome = &report["events"][0];
            assert_eq!(outcome["applied"], false, "{backend:?}: {report}");
            assert_eq!(outcome["artifactState"], "LIVE", "{backend:?}: {report}");
        }
        // Positions out of range are not even read.
        let far = forged(&bucket, &key, false, "", "1000000000000-01-01T00:00:00Z");
        assert!(rejected(&registry, &far).await.contains("eventTime"));
        let long = forged(&bucket, &key, false, &"F".repeat(64), latest);
        assert!(rejected(&registry, &long).await.contains("sequencer"));
        let a = artifact_of(&api, &model, "1").await.unwrap();
        assert_eq!(a["state"], "LIVE", "{backend:?}: {a}");
        assert_eq!(prop(&a, "file_count"), json!(1));
        assert_eq!(prop(&a, "sha256"), json!(sha256_hex(b"weights")));

        // Nothing is pinned: a completed upload registers its file...
        let vid = version_id(&registry, &model, "1").await;
        let done = upload_through_the_registry(&registry, &vid, "config.json", b"{}").await;
        assert_eq!(done["modelArtifact"]["state"], "LIVE", "{done}");
        assert_eq!(prop(&done["modelArtifact"], "file_count"), json!(2));
        // ...genuine removals (with lower sequencers) apply...
        for path in ["model.onnx", "config.json"] {
            let k = format!("models/{model}/1/{path}");
            delete(&s3, &bucket, &k).await;
            registry
                .deliver(&removed(&bucket, &k), Mode::EventBridge)
                .await;
        }
        let a = artifact_of(&api, &model, "1").await.unwrap();
        assert_eq!(a["state"], "DELETED", "{backend:?}: {a}");
        // ...and so does a genuine creation.
        put(&s3, &bucket, &key, b"retrained").await;
        registry
            .deliver(&created(&s3, &bucket, &key).await, Mode::Structured)
            .await;
        let a = artifact_of(&api, &model, "1").await.unwrap();
        assert_eq!(a["state"], "LIVE", "{backend:?}: {a}");
        assert_eq!(prop(&a, "sha256"), json!(sha256_hex(b"retrained")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_creation_of_an_absent_object_registers_nothing() {
    let s3 = s3();
    for backend in Backend::ALL {
        let bucket = new_bucket(&s3, "ev-forged-cr").await;
        let registry = backend.start(&bucket).await;
        let api = registry.api();
        let now = "2026-01-01T00:00:00.000Z";

        let ghost = uniq("ghost");
        let key = format!("models/{ghost}/1/model.onnx");
        let report = registry
            .deliver(
                &forged(&bucket, &key, true, &highest_sequencer(), now),
                Mode::Binary,
            )
            .await;
        assert_eq!(report["events"][0]["outcome"], "ignored", "{report}");
        let models = api.get("/registered_models").await.ok(200);
        assert_eq!(models["size"], 0, "{backend:?}: {models}");

        // Nor does a forged file count in a registered folder.
        let model = uniq("forged-cr");
        let real = format!("models/{model}/1/model.onnx");
        put(&s3, &bucket, &real, b"weights").await;
        registry
            .deliver(&created(&s3, &bucket, &real).await, Mode::Binary)
            .await;
        let ghost_file = format!("models/{model}/1/ghost.bin");
        let report = registry
            .deliver(
                &forged(&bucket, &ghost_file, true, &highest_sequencer(), now),
                Mode::Plain,
            )
            .await;
        assert_eq!(report["events"][0]["applied"], false, "{report}");
        let a = artifact_of(&api, &model, "1").await.unwrap();
        assert_eq!(prop(&a, "file_count"), json!(1), "{backend:?}: {a}");
        // A creation whose ETag the bucket does not bear out records what
        // the bucket holds, not what the event says.
        let mut lying = created(&s3, &bucket, &real).await;
        lying.etag = Some("ffffffffffffffffffffffffffffffff".into());
        lying.size = Some(1);
        registry.deliver(&lying, Mode::Binary).await;
        let a = artifact_of(&api, &model, "1").await.unwrap();
        let listed = files_of(&a);
        assert_eq!(listed["model.onnx"]["size"], 7, "{backend:?}: {listed}");
        assert_ne!(
            listed["model.onnx"]["etag"], "ffffffffffffffffffffffffffffffff",
            "{listed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_out_of_range_and_oversized_deliveries_are_malformed() {
    let s3 = s3();
    for backend in Backend::ALL {
        let bucket = new_bucket(&s3, "ev-bounds").await;
        let registry = backend.start(&bucket).await;
        let model = uniq("bounds");
        let key = format!("models/{model}/1/model.onnx");
        put(&s3, &bucket, &key, b"weights").await;
        let genuine = created(&s3, &bucket, &key).await;

        let mut far = genuine.clone();
        far.time = "1000000000000-01-01T00:00:00Z".into();
        let why = rejected(&registry, &far).await;
        assert!(why.contains("eventTime"), "{why}");
        let mut huge = genuine.clone();
        huge.size = Some(u64::MAX);
        let why = rejected(&registry, &huge).await;
        assert!(why.contains("size"), "{why}");
        // Nothing was registered by the rejected deliveries.
        assert!(artifact_of(&registry.api(), &model, "1").await.is_none());

        // 1,000 records (here of another prefix: ignored) are fine, 1,001 not.
        let record = |n: usize| {
            let mut e = genuine.clone();
            e.key = format!("datasets/{model}/{n}.csv");
            s3_notification(&e)["Records"][0].clone()
        };
        let notification = |n: usize| json!({"Records": (0..n).map(record).collect::<Vec<_>>()});
        let plain = [("content-type", "application/json")];
        let (status, body) = registry
            .post_raw("/events/storage", &plain, &notification(1000).to_string())
            .await;
        assert_eq!(status, 202, "{backend:?}: {body}");
        let (status, body) = registry
            .post_raw("/events/storage", &plain, &notification(1001).to_string())
            .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(body["code"], "Bad Request");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("at most 1000 records, this one has 1001"),
            "{body}"
        );
        let batch: Vec<Value> = (0..1001)
            .map(|i| {
                json!({"specversion": "1.0", "id": i.to_string(), "source": "s",
                       "type": "dev.knative.sources.ping", "data": {}})
            })
            .collect();
        let (status, body) = registry
            .post_raw(
                "/events/storage",
                &[("content-type", "application/cloudevents-batch+json")],
                &Value::from(batch).to_string(),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("1000"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_manifest_is_reported_and_the_rest_registered() {
    let s3 = s3();
    for backend in Backend::ALL {
        let bucket = new_bucket(&s3, "ev-big-manifest").await;
        let registry = backend.start(&bucket).await;
        let api = registry.api();
        let model = uniq("big-manifest");

        // Over 1 MiB: not read at all.
        let mut big = b"description: never applied\n".to_vec();
        big.resize(1024 * 1024 + 1, b'#');
        // Within 1 MiB, but 1,001 metrics: read, and refused whole.
        let many: Vec<String> = (0..1001).map(|i| format!("m{i}: {i}")).collect();
        let many = format!(
            "description: never applied\nmetrics: {{{}}}\n",
            many.join(", ")
        );
        for (version, manifest) in [("1", big), ("2", many.into_bytes())] {
            let folder = format!("models/{model}/{version}");
            for (path, body) in [
                ("model.onnx", b"weights".to_vec()),
                ("model-manifest.yaml", manifest),
            ] {
                let key = format!("{folder}/{path}");
                put(&s3, &bucket, &key, &body).await;
                registry
                    .deliver(&created(&s3, &bucket, &key).await, Mode::Binary)
                    .await;
            }
        }
        for (version, why) in [("1", "larger than 1048576 bytes"), ("2", "at most 1000")] {
            let a = artifact_of(&api, &model, version).await.unwrap();
            assert_eq!(a["state"], "LIVE", "{backend:?}: {a}");
            assert_eq!(prop(&a, "file_count"), json!(1));
            assert_eq!(prop(&a, "sha256"), json!(sha256_hex(b"weights")));
            let error = prop(&a, "manifest_error");
            assert!(
                error.as_str().is_some_and(|e| e.contains(why)),
                "{backend:?} {version}: {a}"
            );
            let vid = version_id(&registry, &model, version).await;
            let v = api.get(&format!("/model_versions/{vid}")).await.ok(200);
            assert_eq!(v.get("description"), None, "{v}");
            let artifacts = api
                .get(&format!("/model_versions/{vid}/artifacts"))
                .await
                .ok(200);
            assert_eq!(artifacts["size"], 1, "{artifacts}");
        }
    }
}
