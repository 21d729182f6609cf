//! The upload extension (`/api/registry_ext/v1`) with plain HTTP, as curl
//! would use it: presigned single and multipart uploads on S3, the relay on
//! the embedded store, completion that verifies size and SHA-256, and the
//! rejection of a mismatch.

use serde_json::{Value, json};

use crate::harness::Process;
use crate::support::*;

const EXT: &str = "/api/registry_ext/v1";

/// A model and a version through the Kubeflow API; returns the version id.
async fn model_version(registry: &Registry, model: &str, version: &str) -> String {
    let api = registry.api();
    let m = api
        .post("/registered_models", &json!({"name": model}))
        .await
        .ok(201);
    let v = api
        .post(
            "/model_versions",
            &json!({"name": version, "registeredModelId": m["id"]}),
        )
        .await
        .ok(201);
    v["id"].as_str().unwrap().to_string()
}

async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client.post(url).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `PUT` bytes to a URL as curl would (`curl -T`): returns status and ETag.
async fn put_bytes(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Option<String>) {
    let resp = client.put(url).body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, etag)
}

fn declared(path: &str, body: &[u8]) -> Value {
    json!({"path": path, "size": body.len(), "sha256": sha256_hex(body)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_single_and_multipart_uploads_register_and_a_mismatch_is_rejected() {
    let s3 = s3();
    let bucket = new_bucket(&s3, "ev-presign").await;
    let part = 5 * 1024 * 1024;
    let registry = Registry::start(
        "registry-local",
        &server_env("MR_TEST_DYNAMODB_ENDPOINT"),
        &bucket,
        &[("MR_UPLOAD_PART_SIZE", part.to_string())],
    )
    .await;
    let api = registry.api();
    let http = registry.client().clone();
    let model = unique("presigned");
    let vid = model_version(&registry, &model, "1").await;

    let small = b"small onnx model".to_vec();
    let big: Vec<u8> = (0..part + 300_000).map(|i| (i % 253) as u8).collect();
    let (status, session) = post_json(
        &http,
        &format!("{}{EXT}/model_versions/{vid}/uploads", registry.base),
        &json!({"files": [declared("model.onnx", &small), declared("weights/big.bin", &big)]}),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["state"], "PENDING");
    assert_eq!(session["modelVersionId"], vid.as_str());
    // The artifact exists already, PENDING.
    let pending = artifact_of(&api, &model, "1").await.unwrap();
    assert_eq!(pending["state"], "PENDING");
    assert_eq!(pending["uri"], format!("s3://{bucket}/models/{model}/1"));

    let files = session["files"].as_array().unwrap();
    let single = &files[0]["upload"];
    assert!(
        single["url"]
            .as_str()
            .unwrap()
            .starts_with(&server_env("MR_TEST_S3_ENDPOINT"))
    );
    assert_eq!(
        put_bytes(&http, single["url"].as_str().unwrap(), small.clone())
            .await
            .0,
        200
    );
    let multi = &files[1]["upload"];
    assert_eq!(multi["partSize"], part);
    let mut parts = Vec::new();
    for (i, p) in multi["parts"].as_array().unwrap().iter().enumerate() {
        let chunk = big[i * part..((i + 1) * part).min(big.len())].to_vec();
        let (status, etag) = put_bytes(&http, p["url"].as_str().unwrap(), chunk).await;
        assert_eq!(status, 200);
        parts.push(json!({"partNumber": p["partNumber"], "etag": etag.unwrap()}));
    }
    assert_eq!(parts.len(), 2);
    // Nothing is registered LIVE before completion (no notifications here).
    assert_eq!(
        artifact_of(&api, &model, "1").await.unwrap()["state"],
        "PENDING"
    );
    let complete_url = session["complete"]["url"].as_str().unwrap().to_string();
    let (status, done) = post_json(
        &http,
        &complete_url,
        &json!({"files": [{"path": "weights/big.bin", "parts": parts}]}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "COMPLETE");
    let a = &done["modelArtifact"];
    assert_eq!(a["state"], "LIVE");
    assert_eq!(a["name"], model.as_str());
    let listing = format!(
        "{}  model.onnx\n{}  weights/big.bin\n",
        sha256_hex(&small),
        sha256_hex(&big)
    );
    assert_eq!(prop(a, "sha256"), json!(sha256_hex(listing.as_bytes())));
    assert_eq!(prop(a, "size_bytes"), json!(small.len() + big.len()));
    // Repeating the completion is harmless; the session reads back.
    let (status, again) = post_json(&http, &complete_url, &json!({})).await;
    assert_eq!(
        (status, &again["state"]),
        (200, &json!("COMPLETE")),
        "{again}"
    );
    let id = session["id"].as_str().unwrap();
    let got = http
        .get(format!("{}{EXT}/uploads/{id}", registry.base))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    // S3's own event for the same upload changes nothing (no duplicates).
    let before = snapshot(&api, &model).await;
    let event = created(&s3, &bucket, &format!("models/{model}/1/model.onnx")).await;
    registry.deliver(&event, Mode::Binary).await;
    assert_eq!(snapshot(&api, &model).await, before);

    // A file whose bytes do not match its declared digest is rejected.
    let good = b"the declared content".to_vec();
    let evil = b"another content, same".to_vec();
    let (status, bad) = post_json(
        &http,
        &format!("{}{EXT}/model_versions/{vid}/uploads", registry.base),
        &json!({"files": [{"path": "extra.bin", "size": evil.len(), "sha256": sha256_hex(&good)}]}),
    )
    .await;
    assert_eq!(status, 201, "{bad}");
    let url = bad["files"][0]["upload"]["url"].as_str().unwrap();
    // Not uploaded yet: 400, and the session stays open.
    let complete_bad = bad["complete"]["url"].as_str().unwrap().to_string();
    let (status, early) = post_json(&http, &complete_bad, &json!({})).await;
    assert_eq!(status, 400, "{early}");
    assert!(
        early["message"].as_str().unwrap().contains("not uploaded"),
        "{early}"
    );
    assert_eq!(put_bytes(&http, url, evil.clone()).await.0, 200);
    let (status, rejected) = post_json(&http, &complete_bad, &json!({})).await;
    assert_eq!(status, 400, "{rejected}");
    assert_eq!(rejected["code"], "Bad Request");
    assert!(
        rejected["message"].as_str().unwrap().contains("sha256"),
        "{rejected}"
    );
    // The bad bytes are gone, the session failed, the artifact unchanged.
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(format!("models/{model}/1/extra.bin"))
        .send()
        .await;
    assert!(head.is_err(), "the mismatched object was not deleted");
    let bad_id = bad["id"].as_str().unwrap();
    let state: Value = http
        .get(format!("{}{EXT}/uploads/{bad_id}", registry.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["state"], "FAILED", "{state}");
    let a = artifact_of(&api, &model, "1").await.unwrap();
    assert_eq!(a["state"], "LIVE");
    assert_eq!(prop(&a, "file_count"), json!(2));

    // Bad requests.
    for (body, why) in [
        (json!({"files": []}), "at least one"),
        (
            json!({"files": [{"path": "../x", "size": 1, "sha256": sha256_hex(b"x")}]}),
            "path",
        ),
        (
            json!({"files": [{"path": "x", "size": 1, "sha256": "nope"}]}),
            "sha256",
        ),
        (json!({"files": [{"path": "x", "size": 1}]}), "sha256"),
        (json!({"files": [], "extra": 1}), "unknown field"),
    ] {
        let (status, err) = post_json(
            &http,
            &format!("{}{EXT}/model_versions/{vid}/uploads", registry.base),
            &body,
        )
        .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(why),
            "{body}: {err}"
        );
    }
    let (status, _) = post_json(
        &http,
        &format!("{}{EXT}/model_versions/999999/uploads", registry.base),
        &json!({"files": [declared("x", b"x")]}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_uploads_go_through_the_registry() {
    // The default `make run` set-up: embedded store, local artifact directory.
    let (_process, base) = Process::start_http("registry-local", &[]).await;
    let http = crate::harness::client();
    let api = crate::common::Api::new(http.clone(), base.clone(), crate::common::V1);
    let m = api
        .post("/registered_models", &json!({"name": "local model"}))
        .await
        .ok(201);
    let v = api
        .post(
            "/model_versions",
            &json!({"name": "v1", "registeredModelId": m["id"]}),
        )
        .await
        .ok(201);
    let vid = v["id"].as_str().unwrap();
    let body = b"local bytes".to_vec();
    let (status, session) = post_json(
        &http,
        &format!("{base}{EXT}/model_versions/{vid}/uploads"),
        &json!({"files": [declared("model.bin", &body), declared("too-big.bin", b"12")]}),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let url = session["files"][0]["upload"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{base}{EXT}/uploads/")), "{url}");
    // A wrong token is not a way in.
    let flipped = if url.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &url[..url.len() - 1]);
    assert_eq!(put_bytes(&http, &forged, body.clone()).await.0, 404);
    // More bytes than declared are refused.
    let too_big = session["files"][1]["upload"]["url"].as_str().unwrap();
    assert_eq!(put_bytes(&http, too_big, b"123".to_vec()).await.0, 400);
    assert_eq!(put_bytes(&http, too_big, b"12".to_vec()).await.0, 200);
    assert_eq!(put_bytes(&http, url, body.clone()).await.0, 200);
    let (status, done) = post_json(
        &http,
        session["complete"]["url"].as_str().unwrap(),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let a = &done["modelArtifact"];
    assert_eq!(a["state"], "LIVE");
    assert!(a["uri"].as_str().unwrap().starts_with("file:///"), "{a}");
    assert!(
        a["uri"]
            .as_str()
            .unwrap()
            .ends_with("/models/local%20model/v1"),
        "{a}"
    );
    assert_eq!(prop(a, "file_count"), json!(2));
    let listing = format!(
        "{}  model.bin\n{}  too-big.bin\n",
        sha256_hex(&body),
        sha256_hex(b"12")
    );
    assert_eq!(prop(a, "sha256"), json!(sha256_hex(listing.as_bytes())));
    // A finished session takes no more bytes.
    assert_eq!(put_bytes(&http, url, body.clone()).await.0, 400);
}
