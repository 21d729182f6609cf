//! The registry on DynamoDB survives an outage of its store: while dynalite
//! is down, requests answer 503 with the JSON error body within a bounded
//! time (no hang); when it comes back, the same registry process recovers.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::process::{Child, Command};

use registry_test_support::{free_port, server_env};

use crate::common::*;
use crate::harness::{Server, ServerOpts};

async fn start_dynalite(bin: &str, port: u16, dir: &PathBuf) -> Child {
    let child = Command::new(bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--createTableMs",
            "0",
        ])
        .arg("--path")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start dynalite");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "dynalite did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_gives_503_then_recovers() {
    let bin = server_env("MR_TEST_DYNALITE_BIN");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let port = free_port();
    let mut dynalite = start_dynalite(&bin, port, &data).await;
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("MR_STORE", "dynamodb"),
        ("MR_CREATE_TABLE", "true"),
        ("MR_TABLE", "outage"),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let server = Server::start_with(ServerOpts {
        data_dir: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
    .await;
    let api = server.api("/api/model_registry/v1");
    let before = api
        .post("/registered_models", &json!({"name": "before-outage"}))
        .await
        .ok(201);

    dynalite.kill().await.expect("stop dynalite");
    for (what, started, resp) in [
        (
            "get",
            Instant::now(),
            api.get(&format!("/registered_models/{}", id(&before)))
                .await,
        ),
        (
            "list",
            Instant::now(),
            api.get("/registered_models?pageSize=5").await,
        ),
        (
            "create",
            Instant::now(),
            api.post("/registered_models", &json!({"name": "during"}))
                .await,
        ),
        (
            "find",
            Instant::now(),
            api.get("/registered_model?name=before-outage").await,
        ),
    ] {
        resp.err(503);
        let took = started.elapsed();
        // Bounded, not a performance target: the SDK's timeouts and retries end it.
        assert!(took < Duration::from_secs(30), "{what} hung for {took:?}");
    }

    let _dynalite = start_dynalite(&bin, port, &data).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api
            .get(&format!("/registered_models/{}", id(&before)))
            .await;
        if r.status == 200 {
            assert_eq!(r.body["name"], "before-outage");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "registry did not recover: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.post("/registered_models", &json!({"name": "after-outage"}))
        .await
        .ok(201);
}
