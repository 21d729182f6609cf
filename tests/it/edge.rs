//! The edge under attack, over real sockets: cross-site writes, slow and
//! silent connections, too many connections or requests, shutdown with
//! slow clients, error shapes and request ids, a filter built to burn CPU,
//! big lists without `pageSize`, and `Host` headers that lie.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{V1, id, uniq};
use crate::harness::{Server, ServerOpts};

fn opts(env: &[(&str, &str)]) -> ServerOpts {
    ServerOpts {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// A raw connection to the server.
async fn connect(server: &Server) -> TcpStream {
    let addr = server.base_url().trim_start_matches("http://").to_string();
    TcpStream::connect(addr).await.expect("connect")
}

/// Read until the server closes the connection (or `limit` passes): what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn cross_site_writes_are_refused_whatever_the_content_type() {
    let server = Server::start_with(opts(&[("MR_CORS_ORIGINS", "https://ui.example")])).await;
    let api = server.api(V1);
    let name = uniq("csrf");
    let body = json!({"name": name}).to_string();
    // What a web page on another site can send without a preflight.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json",
    ] {
        let r = api
            .send(
                api.request(Method::POST, "/registered_models")
                    .header("origin", "http://evil.example")
                    .header("content-type", ct)
                    .body(body.clone()),
                None,
            )
            .await;
        r.err(403);
    }
    api.get_q("/registered_model", &[("name", &name)])
        .await
        .err(404);
    // curl -d without a content type, and without Origin: fine.
    let r = api
        .send(
            api.request(Method::POST, "/registered_models")
                .body(body.clone()),
            None,
        )
        .await;
    let m = r.ok(201);
    // A PATCH from the other site is refused too; reads are not writes.
    let r = api
        .send(
            api.request(Method::PATCH, &format!("/registered_models/{}", id(&m)))
                .header("origin", "http://evil.example")
                .header("content-type", "text/plain")
                .body(r#"{"description": "pwned"}"#),
            None,
        )
        .await;
    r.err(403);
    // The listed origin may write, and gets CORS headers.
    let r = server
        .client()
        .post(api.url("/registered_models"))
        .header("origin", "https://ui.example")
        .json(&json!({"name": uniq("cors")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    // Preflight: listed origin yes, others no.
    let pre = |origin: &'static str| {
        server
            .client()
            .request(Method::OPTIONS, api.url("/registered_models"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let ok = pre("https://ui.example").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert!(
        ok.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(pre("http://evil.example").await.unwrap().status(), 403);
    // Its own origin (a page the registry serves) may write.
    let own = server.base_url();
    let r = server
        .client()
        .post(api.url("/registered_models"))
        .header("origin", own)
        .json(&json!({"name": uniq("own")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_host_that_is_not_this_machine_is_refused_without_authentication() {
    let server = Server::start().await;
    // DNS rebinding: a page on rebind.example resolves to 127.0.0.1.
    let r = server
        .client()
        .get(server.url_v1("/registered_models"))
        .header("host", "rebind.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for host in ["localhost:8080", "127.0.0.1", "[::1]:9000"] {
        let r = server
            .client()
            .get(server.url_v1("/registered_models"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn slow_and_silent_connections_are_closed() {
    let server = Server::start_with(opts(&[("MR_HEADER_TIMEOUT_SECS", "1")])).await;
    // Headers that never finish.
    let mut slow = connect(&server).await;
    slow.write_all(b"GET /readyz/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    // A connection that sends nothing.
    let mut silent = connect(&server).await;
    // A keep-alive connection that goes idle after one request.
    let mut idle = connect(&server).await;
    idle.write_all(b"GET /readyz/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for (what, stream) in [
        ("slow", &mut slow),
        ("silent", &mut silent),
        ("idle", &mut idle),
    ] {
        let seen = read_until_closed(stream, Duration::from_secs(10)).await;
        assert!(seen.is_some(), "{what} connection still open after 10 s");
        if what == "idle" {
            assert!(seen.unwrap().starts_with("HTTP/1.1 200"));
        }
    }
    println!(
        "slow, silent and idle connections closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_request_body_is_cut_off() {
    let server = Server::start_with(opts(&[("MR_BODY_TIMEOUT_SECS", "1")])).await;
    let mut s = connect(&server).await;
    s.write_all(
        format!(
            "POST {V1}/registered_models HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let seen = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("answered and closed within 10 s");
    assert!(seen.starts_with("HTTP/1.1 400"), "{seen}");
    assert!(seen.contains("stalled"), "{seen}");
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_period_with_slow_clients() {
    let mut server = Server::start_with(opts(&[("MR_SHUTDOWN_GRACE_SECS", "2")])).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut s = connect(&server).await;
        // A request in flight whose body never comes.
        s.write_all(
            format!(
                "POST {V1}/registered_models HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        clients.push(s);
    }
    for _ in 0..20 {
        clients.push(connect(&server).await); // and idle ones
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server
        .terminate(Duration::from_secs(15))
        .await
        .expect("exited after SIGTERM");
    println!("shutdown with 40 slow clients took {took:?} (grace 2 s)");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn requests_over_the_limits_are_shed_with_retry_after() {
    let server = Server::start_with(opts(&[
        ("MR_MAX_IN_FLIGHT", "1"),
        ("MR_BODY_TIMEOUT_SECS", "5"),
    ]))
    .await;
    // One request in flight, waiting for its body.
    let mut holder = connect(&server).await;
    holder
        .write_all(
            format!(
                "POST {V1}/registered_models HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = server
        .client()
        .get(server.url_v1("/registered_models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "Service Unavailable");
    // Health is never shed.
    let r = server
        .client()
        .get(server.url("/readyz/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_retry_after() {
    let server = Server::start_with(opts(&[("MR_MAX_CONNECTIONS", "4")])).await;
    // Open connections (sending nothing) until one is refused; the test
    // harness may hold an idle one of its own.
    let mut held = Vec::new();
    let mut refused = None;
    for i in 0..10 {
        let mut c = connect(&server).await;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let seen = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(seen.starts_with("HTTP/1.1 503"), "{seen}");
                assert!(
                    seen.to_ascii_lowercase().contains("retry-after: 1"),
                    "{seen}"
                );
                refused = Some(i);
                break;
            }
            _ => held.push(c),
        }
    }
    let refused = refused.expect("a connection over the cap was refused");
    assert!(
        (3..=4).contains(&refused),
        "refused the connection number {refused}"
    );
}

#[tokio::test]
async fn every_error_has_the_api_shape_and_a_request_id() {
    let server = Server::start_with(opts(&[("MR_MAX_BODY_BYTES", "2048")])).await;
    let api = server.api(V1);
    let big = json!({"name": uniq("big"), "description": "x".repeat(4096)});
    let r = api.post("/registered_models", &big).await;
    r.err(413);
    assert!(r.message().contains("2048"), "{}", r.message());
    api.call(Method::DELETE, "/registered_models")
        .await
        .err(405);
    api.get("/no_such_thing").await.err(404);
    let r = api
        .send(
            api.request(Method::POST, "/registered_models")
                .header("x-request-id", "trace-42")
                .body("{not json"),
            None,
        )
        .await;
    r.err(400);
    let r = server
        .client()
        .get(server.url_v1("/registered_models/1"))
        .header("x-request-id", "trace-43")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-43");
    let r = server
        .client()
        .get(server.url_v1("/registered_models/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 32, "a new id");
}

#[tokio::test]
async fn a_filter_built_to_burn_cpu_does_not_stall_health() {
    let server = Server::start().await;
    let api = server.api(V1);
    // Entities are at most 64 KiB (what DynamoDB can store with our indexes).
    let long = "a".repeat(60_000);
    for _ in 0..40 {
        api.create_model_body(json!({"name": uniq("victim"), "description": long}))
            .await;
    }
    // The longest pattern allowed, shaped to defeat simple matchers.
    let pattern = format!("%{}b%", "a_".repeat(500));
    let too_long = format!("%{}b", "a".repeat(4000));
    api.get_q(
        "/registered_models",
        &[("filterQuery", &format!("description LIKE '{too_long}'"))],
    )
    .await
    .err(400);
    let query = format!("description LIKE '{pattern}'");
    let mut attacks = Vec::new();
    for _ in 0..6 {
        let api = api.clone();
        let query = query.clone();
        attacks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let r = api
                    .get_q("/registered_models", &[("filterQuery", &query)])
                    .await;
                assert_eq!(r.check(200)["size"], 0);
            }
        }));
    }
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while attacks.iter().any(|a| !a.is_finished()) {
        let t = Instant::now();
        let r = server
            .client()
            .get(server.url("/readyz/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        worst = worst.max(t.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for a in attacks {
        a.await.unwrap();
    }
    println!(
        "health during the attack: {probes} probes, slowest {worst:?} (target 100 ms, in make bench)"
    );
    assert!(
        worst < Duration::from_secs(5),
        "health stalled for {worst:?}"
    );
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn big_lists_without_page_size_stream_in_bounded_memory() {
    let server = Server::start().await;
    let api = server.api(V1);
    let description = "d".repeat(60_000);
    let n = 300;
    for _ in 0..n {
        api.create_model_body(json!({"name": uniq("big"), "description": description}))
            .await;
    }
    let before = peak_rss(server.pid());
    // What is measured is memory: the lists may take minutes on a loaded
    // dynalite (a page of a global list is a Query of each of its 4 shards),
    // so this client waits longer than the suite's 60 s.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let mut readers = Vec::new();
    for _ in 0..32 {
        let url = api.url("/registered_models");
        let client = client.clone();
        readers.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            v["size"].as_u64().unwrap()
        }));
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), n);
    }
    let peak = peak_rss(server.pid());
    println!(
        "32 concurrent unpaged lists of {n} x 60 KB: peak RSS {} MiB (before {} MiB)",
        peak >> 20,
        before >> 20
    );
    // The Knative memory limit in infra/ is 128 Mi.
    assert!(peak < 128 << 20, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
async fn upload_urls_never_trust_forwarded_host_headers() {
    let server = Server::start().await;
    let api = server.api(V1);
    let (_, v) = api.model_and_version("fwd").await;
    let body = json!({"files": [{"path": "m.bin", "size": 3,
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}]});
    let r = server
        .client()
        .post(server.url(&format!(
            "/api/registry_ext/v1/model_versions/{}/uploads",
            id(&v)
        )))
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains("evil.example"), "{text}");
}

#[tokio::test]
async fn one_json_access_log_line_per_request() {
    let server = Server::start_with(opts(&[("MR_LOG_FORMAT", "json")])).await;
    let api = server.api(V1);
    let m = api.create_model(&uniq("logged")).await;
    let r = api
        .send(
            api.request(Method::GET, &format!("/registered_models/{}", id(&m)))
                .header("x-request-id", "trace-77"),
            None,
        )
        .await;
    r.check(200);
    // The line is written after the response; give it a moment.
    let mut line = None;
    for _ in 0..50 {
        line = server.output().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["request_id"] == "trace-77").then_some(v)
        });
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = line.expect("an access log line for trace-77");
    let f = &line["fields"];
    assert_eq!(line["target"], "access", "{line}");
    assert_eq!(f["caller"], "anonymous", "{line}");
    assert_eq!(f["method"], "GET", "{line}");
    assert_eq!(
        f["route"], "/api/model_registry/v1/registered_models/{id}",
        "{line}"
    );
    assert_eq!(f["status"], 200, "{line}");
    assert!(f["duration_ms"].as_f64().is_some(), "{line}");
}
