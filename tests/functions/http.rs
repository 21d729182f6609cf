//! The function binaries in HTTP mode (Knative, local): each serves the
//! routes of its slice and answers 404 for the others (the web interface
//! the pages and forms the contract lists), starts without touching the
//! store, and stops cleanly on SIGTERM (the web interface's too).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::contract::{
    ALL_IN_ONE, FUNCTIONS, HEALTH, WEB, WEB_FORMS, WEB_PAGES, requests, shared_paths,
};
use registry_test_support::{Process, http_client};

/// What the router answers for a path no slice of the binary serves.
const NO_ROUTE: &str = "no such route";

/// Whether a response came from a handler of the binary (any status, even a
/// 404 for an unknown id) rather than from its "no such route" fallback.
async fn handled(resp: reqwest::Response) -> (bool, String) {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    let fallback = (status == 404 && message == NO_ROUTE) || status == 405;
    (!fallback, format!("{status} {body}"))
}

#[tokio::test]
async fn each_function_serves_its_routes_and_404s_the_others() {
    let names: Vec<&'static str> = FUNCTIONS.into_iter().chain([ALL_IN_ONE]).collect();
    let starts = names
        .into_iter()
        .map(|name| tokio::spawn(async move { (name, Process::start_http(name, &[]).await) }));
    let mut servers = Vec::new();
    for start in starts.collect::<Vec<_>>() {
        servers.push(start.await.expect("start task"));
    }
    let http = http_client();
    let mut wrong = Vec::new();
    for (name, (_process, base)) in &servers {
        for path in [HEALTH.to_string()].into_iter().chain(shared_paths()) {
            let resp = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{name} GET {path}");
        }
        for (path, method, owner) in requests() {
            let req = http.request(method.parse().unwrap(), format!("{base}{path}"));
            let req = if method == "GET" {
                req
            } else {
                req.header("content-type", "application/json").body("{}")
            };
            let (was_handled, answer) = handled(req.send().await.unwrap()).await;
            let should = *name == owner || *name == ALL_IN_ONE;
            if was_handled != should {
                wrong.push(format!(
                    "{name}: {method} {path} answered {answer} (owner: {owner})"
                ));
            }
            if !should && !answer.starts_with("404") {
                wrong.push(format!(
                    "{name}: {method} {path} should be 404, got {answer}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "routes served wrongly:\n{}",
        wrong.join("\n")
    );
}

/// The web interface serves each page of the contract on GET and each form
/// on POST, and nothing else there (405): the lists the routing is checked
/// against are its routes.
#[tokio::test]
async fn web_serves_the_pages_and_forms_of_the_contract() {
    let (_process, base) = Process::start_http(WEB, &[]).await;
    let http = http_client();
    let mut wrong = Vec::new();
    let send = |method: &str, path: &str| {
        http.request(method.parse().unwrap(), format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
    };
    for page in WEB_PAGES {
        let (was_handled, answer) = handled(send("GET", page).await.unwrap()).await;
        if !was_handled {
            wrong.push(format!("GET {page} (a page) answered {answer}"));
        }
        let status = send("POST", page).await.unwrap().status();
        if status != 405 {
            wrong.push(format!("POST {page} (a page) answered {status}"));
        }
    }
    for form in WEB_FORMS {
        // Its handler got it: no token of a form shown to the caller.
        let resp = send("POST", form).await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status != 403 || !body.contains("was not shown to you") {
            wrong.push(format!("POST {form} (a form) answered {status} {body}"));
        }
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            let status = send(method, form).await.unwrap().status();
            if status != 405 {
                wrong.push(format!("{method} {form} (a form) answered {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A TCP listener standing in for DynamoDB: it counts connections and
/// closes them at once.
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (endpoint, count)
}

#[tokio::test]
async fn start_up_does_no_network_io() {
    let checks: Vec<_> = FUNCTIONS
        .into_iter()
        .chain([WEB])
        .map(|name| tokio::spawn(starts_without_touching_the_store(name)))
        .collect();
    for check in checks {
        check.await.expect("check task");
    }
}

/// Start `name` on a DynamoDB endpoint that only counts connections: none
/// until the first request that needs the store, which then answers 503.
async fn starts_without_touching_the_store(name: &'static str) {
    let (endpoint, connections) = counting_listener().await;
    let env = [
        ("MR_STORE", "dynamodb".to_string()),
        ("MR_TABLE", "never-created".to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let (process, base) = Process::start_http(name, &env).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "{name} connected to the store before any request\n{}",
        process.log()
    );
    // A list: of the function's family, or of all models (the web's first page).
    let path = crate::contract::ENDPOINTS
        .iter()
        .find(|e| e.function == name && e.methods.contains(&"GET") && !e.template.contains('{'))
        .map(|e| e.path(crate::contract::PREFIXES[0]))
        .or_else(|| (name == WEB).then(|| "/ui/".to_string()))
        .expect("a list path of the function");
    let resp = http_client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "{name} GET {path}\n{}", process.log());
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "{name} never reached the store"
    );
}

#[tokio::test]
async fn sigterm_stops_a_function_cleanly() {
    for name in FUNCTIONS.into_iter().chain([WEB]) {
        let (mut process, base) = Process::start_http(name, &[]).await;
        let resp = http_client()
            .get(format!("{base}{HEALTH}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        process.terminate();
        let status = process
            .wait_exit(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{name} still running 5 s after SIGTERM"));
        assert!(
            status.success(),
            "{name} exited with {status}\n{}",
            process.log()
        );
        assert!(process.log().contains("shutting down"), "{}", process.log());
    }
}

#[tokio::test]
async fn bad_configuration_fails_at_start_with_a_message() {
    let mut process = Process::spawn("model-versions", &[("PORT", "eighty".to_string())]);
    let status = process
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits at once");
    assert_eq!(status.code(), Some(1));
    let log = process.log();
    assert!(
        log.contains("model-versions: PORT: 'eighty' is not a port number"),
        "{log}"
    );
}
