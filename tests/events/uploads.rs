//! The upload extension (`/api/registry_ext/v1`) with plain HTTP, as curl
//! would use it: presigned single and multipart uploads on S3, the relay on
//! the embedded store, completion that verifies size and SHA-256, and the
//! rejection of a mismatch. Then, on both (s3s-fs + dynalite, and the
//! embedded default with its local files): paths that cannot be file names,
//! files that never change once uploaded, and the limits of a session.

use serde_json::{Value, json};

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
    let model = uniq("presigned");
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
    let http = http_client();
    let api = Api::new(http.clone(), base.clone(), V1);
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

// ---- on both set-ups: S3 (s3s-fs + dynalite) and the embedded default ----

const PART: usize = 5 * 1024 * 1024;
const TIB: u64 = 1024 * 1024 * 1024 * 1024;

/// Where a registry keeps the bytes.
enum Bucket {
    S3 {
        s3: aws_sdk_s3::Client,
        bucket: String,
    },
    /// Files under the process's data directory (found from artifact URIs).
    Local,
}

/// A `registry-local` serving the extension, with parts of 5 MiB.
struct Server {
    name: &'static str,
    base: String,
    http: reqwest::Client,
    api: Api,
    bucket: Bucket,
    _process: Keep,
}

#[allow(dead_code)] // held for their Drop: the processes stop with the test
enum Keep {
    Registry(Registry),
    Process(Process),
}

impl Server {
    /// On s3s-fs and dynalite.
    async fn s3(label: &str) -> Server {
        let s3 = s3();
        let bucket = new_bucket(&s3, label).await;
        let registry = Registry::start(
            "registry-local",
            &server_env("MR_TEST_DYNAMODB_ENDPOINT"),
            &bucket,
            &[("MR_UPLOAD_PART_SIZE", PART.to_string())],
        )
        .await;
        Server {
            name: "s3",
            base: registry.base.clone(),
            http: registry.client().clone(),
            api: registry.api(),
            bucket: Bucket::S3 { s3, bucket },
            _process: Keep::Registry(registry),
        }
    }

    /// The `make run` default: embedded store, local artifact files.
    async fn local() -> Server {
        let (process, base) = Process::start_http(
            "registry-local",
            &[("MR_UPLOAD_PART_SIZE", PART.to_string())],
        )
        .await;
        let http = http_client();
        Server {
            name: "local",
            api: Api::new(http.clone(), base.clone(), V1),
            base,
            http,
            bucket: Bucket::Local,
            _process: Keep::Process(process),
        }
    }

    /// Both set-ups, started together.
    async fn both(label: &str) -> [Server; 2] {
        let (s3, local) = tokio::join!(Server::s3(label), Server::local());
        [s3, local]
    }

    fn uploads_url(&self, version_id: &str) -> String {
        format!("{}{EXT}/model_versions/{version_id}/uploads", self.base)
    }

    /// `POST` a start; the status and the body.
    async fn start(&self, version_id: &str, files: Vec<Value>) -> (u16, Value) {
        post_json(
            &self.http,
            &self.uploads_url(version_id),
            &json!({ "files": files }),
        )
        .await
    }

    /// `PUT` every file of a started session (single-piece ones).
    async fn send_all(&self, session: &Value, bodies: &[&[u8]]) {
        for (file, body) in session["files"].as_array().unwrap().iter().zip(bodies) {
            let url = file["upload"]["url"].as_str().unwrap();
            let (status, _) = put_bytes(&self.http, url, body.to_vec()).await;
            assert_eq!(status, 200, "{}: PUT {}", self.name, file["path"]);
        }
    }

    /// The bytes stored at `path` of `model`/`version`.
    async fn read(&self, model: &str, version: &str, path: &str) -> Option<Vec<u8>> {
        match &self.bucket {
            Bucket::S3 { s3, bucket } => {
                let got = s3
                    .get_object()
                    .bucket(bucket)
                    .key(format!("models/{model}/{version}/{path}"))
                    .send()
                    .await
                    .ok()?;
                Some(got.body.collect().await.unwrap().into_bytes().to_vec())
            }
            Bucket::Local => std::fs::read(self.local_folder(model, version).await.join(path)).ok(),
        }
    }

    /// Put `body` at `path` of the version folder without the registry (a
    /// pipeline writing to the bucket, someone copying into the directory).
    async fn put_behind(&self, model: &str, version: &str, path: &str, body: &[u8]) {
        match &self.bucket {
            Bucket::S3 { s3, bucket } => {
                put(
                    s3,
                    bucket,
                    &format!("models/{model}/{version}/{path}"),
                    body,
                )
                .await;
            }
            Bucket::Local => {
                let file = self.local_folder(model, version).await.join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, body).unwrap();
            }
        }
    }

    /// The directory of a version folder on the local store, from its
    /// artifact's `file://` URI.
    async fn local_folder(&self, model: &str, version: &str) -> std::path::PathBuf {
        let a = artifact_of(&self.api, model, version)
            .await
            .expect("the version has an artifact");
        let uri = a["uri"].as_str().unwrap();
        let encoded = uri
            .strip_prefix("file://")
            .expect("a file:// URI")
            .as_bytes();
        let mut path = Vec::with_capacity(encoded.len());
        let mut i = 0;
        while i < encoded.len() {
            if encoded[i] == b'%' {
                let hex = std::str::from_utf8(&encoded[i + 1..i + 3]).unwrap();
                path.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                path.push(encoded[i]);
                i += 1;
            }
        }
        std::path::PathBuf::from(String::from_utf8(path).unwrap())
    }
}

/// A 400 in the API's error shape whose message says `why`.
fn assert_bad_request(server: &Server, status: u16, err: &Value, why: &str) {
    assert_eq!(status, 400, "{}: {err}", server.name);
    assert_eq!(err["code"], "Bad Request", "{}: {err}", server.name);
    assert!(
        err["message"].as_str().unwrap().contains(why),
        "{}: expected '{why}' in {err}",
        server.name
    );
}

fn declared_size(path: &str, size: u64) -> Value {
    json!({"path": path, "size": size, "sha256": "0".repeat(64)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_cannot_be_file_names_are_refused_and_the_session_still_completes() {
    for server in Server::both("ev-long-paths").await {
        let model = uniq("long-paths");
        let vid = model_version_on(&server, &model).await;
        let long = "s".repeat(300);
        for (path, why) in [
            (long.clone(), "255"),
            (format!("dir/{long}"), "255"),
            (format!("{long}/model.bin"), "255"),
            (vec!["s".repeat(250); 5].join("/"), "1024"),
            ("a/../model.bin".to_string(), "'..'"),
            ("/model.bin".to_string(), "empty"),
            ("a//b".to_string(), "empty"),
            ("dir/".to_string(), "empty"),
        ] {
            let (status, err) = server.start(&vid, vec![declared(&path, b"x")]).await;
            assert_bad_request(&server, status, &err, why);
        }
        // Refused before anything was written: no artifact yet.
        assert!(artifact_of(&server.api, &model, "1").await.is_none());

        // A name of 255 bytes is a file name. (Only on the local store:
        // s3s-fs, the test S3, names a file after the base64 of each whole
        // key, so it cannot store one this long; real S3 takes 1,024 bytes.)
        let longest = match server.bucket {
            Bucket::Local => "n".repeat(255),
            Bucket::S3 { .. } => "n".repeat(40),
        };
        let body = b"model bytes".to_vec();
        let (status, session) = server
            .start(
                &vid,
                vec![declared("model.bin", &body), declared(&longest, b"longest")],
            )
            .await;
        assert_eq!(status, 201, "{}: {session}", server.name);
        let complete = session["complete"]["url"].as_str().unwrap().to_string();
        // A completion naming a path that cannot be one: 400, nothing changes.
        for (files, why) in [
            (json!([{"path": long}]), "255"),
            (
                json!([{"path": format!("dir/{long}"), "parts": [{"partNumber": 1, "etag": "e"}]}]),
                "255",
            ),
            (json!([{"path": "../model.bin"}]), "'..'"),
            (json!([{"path": "other.bin"}]), "no file"),
        ] {
            let (status, err) =
                post_json(&server.http, &complete, &json!({ "files": files })).await;
            assert_bad_request(&server, status, &err, why);
        }
        let (status, early) = post_json(&server.http, &complete, &json!({})).await;
        assert_bad_request(&server, status, &early, "not uploaded");
        // The session is still open: upload, complete.
        server
            .send_all(&session, &[body.as_slice(), b"longest"])
            .await;
        let (status, done) = post_json(&server.http, &complete, &json!({})).await;
        assert_eq!(status, 200, "{}: {done}", server.name);
        assert_eq!(done["state"], "COMPLETE");
        assert_eq!(done["modelArtifact"]["state"], "LIVE");
        assert_eq!(prop(&done["modelArtifact"], "file_count"), json!(2));
        assert_eq!(server.read(&model, "1", "model.bin").await, Some(body));
        assert_eq!(
            server.read(&model, "1", &longest).await.as_deref(),
            Some(b"longest".as_slice())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_files_never_change_and_a_path_is_uploaded_once() {
    for server in Server::both("ev-immutable").await {
        let model = uniq("immutable");
        let vid = model_version_on(&server, &model).await;
        let original = b"the registered bytes".to_vec();
        let config = b"{}".to_vec();

        // Concurrent sessions naming the same path: one gets it.
        let mut starts = tokio::task::JoinSet::new();
        for i in 0..4 {
            let (http, url) = (server.http.clone(), server.uploads_url(&vid));
            let files = json!({"files": [
                declared(&format!("own-{i}.txt"), b"x"),
                declared("model.bin", &original),
                declared("config.json", &config),
            ]});
            starts.spawn(async move { post_json(&http, &url, &files).await });
        }
        let mut winner = None;
        let mut refused = 0;
        while let Some(joined) = starts.join_next().await {
            let (status, body) = joined.unwrap();
            match status {
                201 => assert!(
                    winner.replace(body).is_none(),
                    "{}: two sessions",
                    server.name
                ),
                409 => {
                    assert!(
                        body["message"].as_str().unwrap().contains("being uploaded"),
                        "{}: {body}",
                        server.name
                    );
                    refused += 1;
                }
                _ => panic!("{}: {status} {body}", server.name),
            }
        }
        assert_eq!(refused, 3, "{}", server.name);
        let session = winner.unwrap();
        server
            .send_all(&session, &[b"x".as_slice(), &original, &config])
            .await;
        let (status, done) = post_json(
            &server.http,
            session["complete"]["url"].as_str().unwrap(),
            &json!({}),
        )
        .await;
        assert_eq!(status, 200, "{}: {done}", server.name);
        let registered = artifact_of(&server.api, &model, "1").await.unwrap();

        // A second session naming an uploaded path: 409, whatever else it names.
        let evil = b"other bytes, same path".to_vec();
        for files in [
            vec![declared("model.bin", &evil)],
            vec![declared("new.bin", b"new"), declared("model.bin", &evil)],
            vec![declared("model.bin/inner", &evil)],
        ] {
            let (status, err) = server.start(&vid, files).await;
            assert_eq!(status, 409, "{}: {err}", server.name);
            assert_eq!(err["code"], "Conflict");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap()
                    .contains("register a new model version"),
                "{}: {err}",
                server.name
            );
        }
        // A file put in the folder without the registry counts as uploaded.
        server
            .put_behind(&model, "1", "direct.bin", b"direct")
            .await;
        let (status, err) = server
            .start(&vid, vec![declared("direct.bin", &evil)])
            .await;
        assert_eq!(status, 409, "{}: {err}", server.name);
        // The bytes and the registration are unchanged.
        assert_eq!(
            server.read(&model, "1", "model.bin").await,
            Some(original.clone())
        );
        let now = artifact_of(&server.api, &model, "1").await.unwrap();
        assert_eq!(prop(&now, "sha256"), prop(&registered, "sha256"));

        // The refused sessions claimed nothing: a new path is free, and a
        // rejected upload frees its path for the next attempt.
        let (status, bad) = server
            .start(&vid, vec![declared("new.bin", b"declared")])
            .await;
        assert_eq!(status, 201, "{}: {bad}", server.name);
        server.send_all(&bad, &[b"DECLARED"]).await;
        let (status, err) = post_json(
            &server.http,
            bad["complete"]["url"].as_str().unwrap(),
            &json!({}),
        )
        .await;
        assert_bad_request(&server, status, &err, "sha256");
        assert_eq!(server.read(&model, "1", "new.bin").await, None);
        let (status, retry) = server
            .start(&vid, vec![declared("new.bin", b"declared")])
            .await;
        assert_eq!(status, 201, "{}: {retry}", server.name);
        server.send_all(&retry, &[b"declared"]).await;
        let (status, done) = post_json(
            &server.http,
            retry["complete"]["url"].as_str().unwrap(),
            &json!({}),
        )
        .await;
        assert_eq!(status, 200, "{}: {done}", server.name);

        // New bytes for model.bin: a new version.
        let api = &server.api;
        let m = api
            .get_q("/registered_model", &[("name", &model)])
            .await
            .ok(200);
        let v2 = api
            .post(
                "/model_versions",
                &json!({"name": "2", "registeredModelId": m["id"]}),
            )
            .await
            .ok(201);
        let (status, next) = server
            .start(
                v2["id"].as_str().unwrap(),
                vec![declared("model.bin", &evil)],
            )
            .await;
        assert_eq!(status, 201, "{}: {next}", server.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_beyond_the_limits_is_refused_before_anything_is_written() {
    for server in Server::both("ev-limits").await {
        let model = uniq("limits");
        let vid = model_version_on(&server, &model).await;
        let many = |n: usize, path_len: usize, size: u64| -> Vec<Value> {
            (0..n)
                .map(|i| declared_size(&format!("{i:0>path_len$}"), size))
                .collect()
        };
        let big = (PART + 1) as u64;
        for (files, why) in [
            (many(1001, 4, 1), "at most 1000"),
            (
                vec![declared_size("huge.bin", 5 * TIB + 1)],
                "larger than 5 TiB",
            ),
            (
                vec![declared_size("huge.bin", u64::MAX)],
                "larger than 5 TiB",
            ),
            (
                vec![
                    declared_size("a.bin", 3 * TIB),
                    declared_size("b.bin", 3 * TIB),
                ],
                "in all",
            ),
            // 1000 paths of 100 bytes: more than the 96 KiB a session stores.
            (many(1000, 100, 1), "the paths take"),
            (many(201, 4, big), "larger than the part size"),
            (
                vec![declared_size("big.bin", 4 * TIB), declared_size("x", 1)],
                "10001 URLs",
            ),
        ] {
            let (status, err) = server.start(&vid, files).await;
            assert_bad_request(&server, status, &err, why);
        }
        // Sizes that are no u64 are refused by the body's decoding.
        let (status, err) = post_json(
            &server.http,
            &server.uploads_url(&vid),
            &json!({"files": [{"path": "x", "size": -1, "sha256": "0".repeat(64)}]}),
        )
        .await;
        assert_bad_request(&server, status, &err, "invalid request body");
        assert!(artifact_of(&server.api, &model, "1").await.is_none());

        // The largest session the limits allow is stored and reads back: 1000
        // files, 200 of them in parts, paths of 98,200 bytes in all (one item
        // on dynalite). The paths of the multipart files are short: s3s-fs
        // names a file after the whole key of each upload (real S3 would
        // take 1,024 bytes).
        let mut files = many(800, 122, 1);
        files.extend((800..1000).map(|i| declared_size(&format!("{i}"), big)));
        let (status, session) = server.start(&vid, files).await;
        assert_eq!(status, 201, "{}: {}", server.name, session["message"]);
        let files = session["files"].as_array().unwrap();
        assert_eq!(files.len(), 1000);
        if server.name == "s3" {
            assert_eq!(files[999]["upload"]["parts"].as_array().unwrap().len(), 2);
        }
        let id = session["id"].as_str().unwrap();
        let got = server
            .http
            .get(format!("{}{EXT}/uploads/{id}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        let got: Value = got.json().await.unwrap();
        assert_eq!(got["files"].as_array().unwrap().len(), 1000);
        assert_eq!(got["state"], "PENDING");
    }
}

/// A model with version `1` through the Kubeflow API; the version id.
async fn model_version_on(server: &Server, model: &str) -> String {
    let m = server
        .api
        .post("/registered_models", &json!({"name": model}))
        .await
        .ok(201);
    let v = server
        .api
        .post(
            "/model_versions",
            &json!({"name": "1", "registeredModelId": m["id"]}),
        )
        .await
        .ok(201);
    v["id"].as_str().unwrap().to_string()
}
