//! Uploads become registered models: model, version and one model artifact
//! per version folder, with the files' size, ETag and SHA-256 and the
//! manifest's metadata; removals mark the artifact; events that are not
//! ours are acknowledged and ignored, malformed ones rejected.

use serde_json::{Value, json};

use crate::support::*;

const MANIFEST: &str = "\
modelFormatName: onnx
modelFormatVersion: 1
description: first try
author: ada
model:
  description: handwritten digits
  owner: ada
metrics:
  accuracy: 0.98
parameters:
  epochs: 10
  optimizer: adam
properties:
  framework: pytorch
  approved: true
";

fn dynalite() -> String {
    server_env("MR_TEST_DYNAMODB_ENDPOINT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_registers_model_version_artifact_digests_and_manifest() {
    let s3 = s3();
    let bucket = new_bucket(&s3, "ev-reg").await;
    let registry = Registry::start("registry-local", &dynalite(), &bucket, &[]).await;
    let api = registry.api();
    let model = uniq("mnist");
    let folder = format!("models/{model}/1.0.0");
    // Big enough to be hashed in several chunks; no checksum: the registry
    // streams it through SHA-256 itself.
    let weights: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let vocab = br#"{"vocab": ["a", "b"]}"#;
    let keys = [
        format!("{folder}/model.onnx"),
        format!("{folder}/tokenizer/vocab.json"),
        format!("{folder}/model-manifest.yaml"),
    ];
    put(&s3, &bucket, &keys[0], &weights).await;
    put_with_checksum(&s3, &bucket, &keys[1], vocab).await;
    put(&s3, &bucket, &keys[2], MANIFEST.as_bytes()).await;

    let mut etags = Vec::new();
    for (key, mode) in keys
        .iter()
        .zip([Mode::Binary, Mode::Structured, Mode::Binary])
    {
        let event = created(&s3, &bucket, key).await;
        etags.push(event.etag.clone().unwrap());
        let report = registry.deliver(&event, mode).await;
        let outcome = &report["events"][0];
        assert_eq!(outcome["outcome"], "registered", "{report}");
        assert_eq!(outcome["applied"], true, "{report}");
        assert_eq!(outcome["artifactState"], "LIVE", "{report}");
    }

    // The model, with the manifest's model fields.
    let m = api
        .get_q("/registered_model", &[("name", &model)])
        .await
        .ok(200);
    assert_eq!(m["description"], "handwritten digits");
    assert_eq!(m["owner"], "ada");
    assert_eq!(m["state"], "LIVE");
    // The version, with the manifest's fields and typed custom properties.
    let v = api
        .get_q(
            "/model_version",
            &[
                ("name", "1.0.0"),
                ("parentResourceId", m["id"].as_str().unwrap()),
            ],
        )
        .await
        .ok(200);
    assert_eq!(v["description"], "first try");
    assert_eq!(v["author"], "ada");
    let custom = &v["customProperties"];
    assert_eq!(
        custom["accuracy"],
        json!({"metadataType": "MetadataDoubleValue", "double_value": 0.98})
    );
    assert_eq!(
        custom["epochs"],
        json!({"metadataType": "MetadataIntValue", "int_value": "10"})
    );
    assert_eq!(custom["optimizer"]["string_value"], "adam");
    assert_eq!(custom["framework"]["string_value"], "pytorch");
    assert_eq!(custom["approved"]["bool_value"], true);
    // Filterable like any custom property.
    let found = api
        .get_q(
            "/model_versions",
            &[(
                "filterQuery",
                "accuracy.double_value > 0.9 AND epochs.int_value = 10",
            )],
        )
        .await
        .ok(200);
    assert!(
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == v["id"]),
        "{found}"
    );

    // One model artifact named after the model, for the folder, with digests.
    let vid = v["id"].as_str().unwrap();
    let artifacts = api
        .get(&format!("/model_versions/{vid}/artifacts"))
        .await
        .ok(200);
    let items = artifacts["items"].as_array().unwrap();
    let models: Vec<&Value> = items
        .iter()
        .filter(|a| a["artifactType"] == "model-artifact")
        .collect();
    assert_eq!(models.len(), 1, "{artifacts}");
    let a = models[0];
    assert_eq!(a["name"], model.as_str());
    assert_eq!(a["uri"], format!("s3://{bucket}/{folder}"));
    assert_eq!(a["state"], "LIVE");
    assert_eq!(a["modelFormatName"], "onnx");
    assert_eq!(a["modelFormatVersion"], "1");
    assert_eq!(prop(a, "file_count"), json!(2));
    assert_eq!(prop(a, "size_bytes"), json!(weights.len() + vocab.len()));
    let (w_sha, v_sha) = (sha256_hex(&weights), sha256_hex(vocab));
    let listing = format!("{w_sha}  model.onnx\n{v_sha}  tokenizer/vocab.json\n");
    assert_eq!(prop(a, "sha256"), json!(sha256_hex(listing.as_bytes())));
    assert_eq!(
        files_of(a),
        json!({
            "model.onnx": {"size": weights.len(), "etag": etags[0], "sha256": w_sha},
            "tokenizer/vocab.json": {"size": vocab.len(), "etag": etags[1], "sha256": v_sha},
        })
    );
    assert_eq!(
        prop(a, "manifest_sha256"),
        json!(sha256_hex(MANIFEST.as_bytes()))
    );
    assert_eq!(prop(a, "manifest_error"), Value::Null);
    // Metrics and parameters as artifacts of the version.
    let metric = items
        .iter()
        .find(|x| x["artifactType"] == "metric")
        .unwrap();
    assert_eq!(
        (&metric["name"], &metric["value"]),
        (&json!("accuracy"), &json!(0.98))
    );
    let params: Vec<(&Value, &Value, &Value)> = items
        .iter()
        .filter(|x| x["artifactType"] == "parameter")
        .map(|x| (&x["name"], &x["value"], &x["parameterType"]))
        .collect();
    assert_eq!(params.len(), 2, "{artifacts}");
    assert!(params.contains(&(&json!("epochs"), &json!("10"), &json!("number"))));
    assert!(params.contains(&(&json!("optimizer"), &json!("adam"), &json!("string"))));

    // Removing a file updates the artifact; removing all marks it DELETED.
    delete(&s3, &bucket, &keys[1]).await;
    registry
        .deliver(&removed(&bucket, &keys[1]), Mode::EventBridge)
        .await;
    let a = artifact_of(&api, &model, "1.0.0").await.unwrap();
    assert_eq!(a["state"], "LIVE");
    assert_eq!(prop(&a, "file_count"), json!(1));
    assert_eq!(prop(&a, "sha256"), json!(w_sha));
    assert_eq!(prop(&a, "etag"), json!(etags[0]));
    delete(&s3, &bucket, &keys[0]).await;
    registry
        .deliver(&removed(&bucket, &keys[0]), Mode::Plain)
        .await;
    let a = artifact_of(&api, &model, "1.0.0").await.unwrap();
    assert_eq!(a["state"], "DELETED", "{a}");
    assert_eq!(prop(&a, "file_count"), json!(0));
    assert_eq!(prop(&a, "sha256"), Value::Null);
    // Not a hard delete: the model and version stay.
    api.get_q("/registered_model", &[("name", &model)])
        .await
        .ok(200);
    // A new upload to the folder brings it back.
    put(&s3, &bucket, &keys[0], b"retrained").await;
    let again = created(&s3, &bucket, &keys[0]).await;
    registry.deliver(&again, Mode::Binary).await;
    let a = artifact_of(&api, &model, "1.0.0").await.unwrap();
    assert_eq!(a["state"], "LIVE");
    assert_eq!(prop(&a, "sha256"), json!(sha256_hex(b"retrained")));
    let snapshot = snapshot(&api, &model).await;
    assert_eq!(
        snapshot[0]["versions"].as_array().unwrap().len(),
        1,
        "{snapshot}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_is_reported_on_the_artifact_and_a_fixed_one_applied() {
    let s3 = s3();
    let bucket = new_bucket(&s3, "ev-manifest").await;
    let registry = Registry::start("registry-local", &dynalite(), &bucket, &[]).await;
    let api = registry.api();
    let model = uniq("bad-manifest");
    let key = format!("models/{model}/2/model-manifest.json");
    put(&s3, &bucket, &format!("models/{model}/2/w.bin"), b"w").await;
    put(&s3, &bucket, &key, br#"{"metrics": {"accuracy": "high"}}"#).await;
    for k in [format!("models/{model}/2/w.bin"), key.clone()] {
        let e = created(&s3, &bucket, &k).await;
        registry.deliver(&e, Mode::Binary).await;
    }
    let a = artifact_of(&api, &model, "2").await.unwrap();
    assert_eq!(a["state"], "LIVE");
    let why = prop(&a, "manifest_error");
    assert!(why.as_str().unwrap().contains("expected a number"), "{a}");
    put(
        &s3,
        &bucket,
        &key,
        br#"{"metrics": {"accuracy": 0.5}, "modelFormatName": "tensorflow"}"#,
    )
    .await;
    let e = created(&s3, &bucket, &key).await;
    registry.deliver(&e, Mode::Binary).await;
    let a = artifact_of(&api, &model, "2").await.unwrap();
    assert_eq!(prop(&a, "manifest_error"), Value::Null, "{a}");
    assert_eq!(a["modelFormatName"], "tensorflow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_are_not_ours_are_ignored_and_malformed_ones_rejected() {
    let s3 = s3();
    let bucket = new_bucket(&s3, "ev-other").await;
    let registry = Registry::start("registry-local", &dynalite(), &bucket, &[]).await;
    let api = registry.api();
    put(&s3, &bucket, "datasets/d/1/x.csv", b"a,b").await;
    let mut outside = created(&s3, &bucket, "datasets/d/1/x.csv").await;
    let report = registry.deliver(&outside, Mode::Binary).await;
    assert_eq!(report["events"][0]["outcome"], "ignored", "{report}");
    outside.bucket = "someone-elses".into();
    outside.key = "models/m/1/x".into();
    let report = registry.deliver(&outside, Mode::Structured).await;
    assert_eq!(report["events"][0]["outcome"], "ignored", "{report}");
    assert!(
        report["events"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("bucket")
    );
    let models = api.get("/registered_models").await.ok(200);
    assert_eq!(models["size"], 0, "{models}");

    // Valid CloudEvents of other types: acknowledged, not retried.
    let (status, body) = registry
        .post_raw(
            "/events/storage",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/apis/v1/namespaces/default/pingsources/p"),
                ("ce-type", "dev.knative.sources.ping"),
                ("content-type", "application/json"),
            ],
            r#"{"message": "hello"}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let tags = json!({"version": "0", "detail-type": "Object Tags Added", "source": "aws.s3",
        "time": "2026-01-01T00:00:00Z", "detail": {"bucket": {"name": bucket}, "object": {"key": "models/m/1/x"}}});
    let (status, _) = registry
        .post_raw(
            "/events/storage",
            &[("content-type", "application/json")],
            &tags.to_string(),
        )
        .await;
    assert_eq!(status, 202);

    // Malformed: 400 in the API's error shape (Knative does not retry 400).
    for (headers, body) in [
        (vec![("content-type", "application/json")], "not json"),
        (
            vec![("content-type", "application/cloudevents+json")],
            r#"{"specversion": "1.0", "type": "t", "source": "s"}"#,
        ),
        (
            vec![
                ("ce-specversion", "0.3"),
                ("ce-id", "1"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            "{}",
        ),
        (
            vec![("content-type", "application/json")],
            r#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]}"#,
        ),
    ] {
        let (status, body) = registry.post_raw("/events/storage", &headers, body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "Bad Request");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_events_function_takes_events_at_its_root() {
    let s3 = s3();
    let bucket = new_bucket(&s3, "ev-fn").await;
    let table = uniq("events-fn");
    let function =
        Registry::start_with("storage-events", registry_env(&dynalite(), &bucket, &table)).await;
    let reader =
        Registry::start_with("registry-local", registry_env(&dynalite(), &bucket, &table)).await;
    let model = uniq("fn");
    let key = format!("models/{model}/v1/model.bin");
    put(&s3, &bucket, &key, b"bytes").await;
    let event = created(&s3, &bucket, &key).await;
    let (status, report) = function.deliver_at("/", &event, Mode::Binary).await;
    assert_eq!(status, 202, "{report}");
    let a = reader.wait_artifact(&model, "v1", "LIVE").await;
    assert_eq!(prop(&a, "sha256"), json!(sha256_hex(b"bytes")));
    // The function serves nothing else.
    let other = function
        .client()
        .get(format!(
            "{}/api/model_registry/v1/registered_models",
            function.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
