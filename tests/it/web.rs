//! The web interface over real HTTP (`/ui/`): every page answers with what
//! the registry holds, escapes what it shows, and shows only what the
//! caller may read.

use serde_json::json;

use crate::auth::Secured;
use crate::common::{V1, id, uniq};
use crate::harness::Server;

/// GET `path` (with a bearer token when given): status and body.
async fn page(client: &reqwest::Client, url: String, token: Option<&str>) -> (u16, String) {
    let mut rb = client.get(url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.expect("GET page");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

const HOSTILE: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn pages_show_the_registry_and_escape_what_they_show() {
    let s = Server::start().await;
    let api = s.api(V1);
    let tag = uniq("web");
    let name = format!("{HOSTILE} {tag}");
    let m = api
        .create_model_body(json!({"name": name, "description": "<b>bold</b> claims"}))
        .await;
    let mid = id(&m);
    let mut versions = Vec::new();
    for (i, acc) in [0.91, 0.87, 0.95].into_iter().enumerate() {
        let v = api
            .post(
                "/model_versions",
                &json!({
                    "name": format!("v{i}"),
                    "registeredModelId": mid,
                    "author": "ada",
                    "customProperties": {
                        "accuracy": {"metadataType": "MetadataDoubleValue", "double_value": acc},
                        "<img src=x onerror=alert(2)>": {"metadataType": "MetadataStringValue", "string_value": HOSTILE},
                    },
                }),
            )
            .await
            .ok(201);
        versions.push(id(&v));
    }
    api.upsert_new_artifact(
        &versions[0],
        json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://bucket/churn/v0/"}),
    )
    .await;
    let c = s.client();
    let get = |path: &str| page(c, s.url(path), None);

    // Every answer, pages and errors alike, may not be framed (an approve
    // button under another site: clickjacking), runs no script, loads
    // nothing from elsewhere and is kept by no cache.
    for path in ["/ui/".to_string(), "/ui/models/999999".to_string()] {
        let r = c.get(s.url(&path)).send().await.unwrap();
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let csp = h("content-security-policy");
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "style-src 'sha256-",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp:?}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("cache-control"), "no-store", "{path}");
        assert_eq!(h("referrer-policy"), "same-origin", "{path}");
    }

    let (status, body) = get("/").await;
    assert_eq!(status, 200, "/ leads to the models page: {body}");
    assert!(body.contains("<h1>Models</h1>"), "{body}");

    let (status, body) = get(&format!("/ui/?q={tag}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("&lt;script&gt;alert(1)&lt;/script&gt; {tag}")),
        "{body}"
    );
    assert!(body.contains(&format!("/ui/models/{mid}")));
    assert!(body.contains(">v2<"), "the latest version: {body}");
    let (_, body) = get("/ui/?q=no-such-model-anywhere").await;
    assert!(body.contains("No model matches."), "{body}");
    let (status, _) = get("/ui/?filter=name%20%3D%3D").await;
    assert_eq!(status, 400, "a bad filterQuery is the caller's error");

    let (status, body) = get(&format!("/ui/models/{mid}")).await;
    assert_eq!(status, 200, "{body}");
    for v in ["v0", "v1", "v2"] {
        assert!(body.contains(&format!(">{v}<")), "{v}: {body}");
    }
    assert!(body.contains("<th class=\"num\">accuracy</th>"), "{body}");
    assert!(body.contains("name=\"versions\""), "{body}");
    assert!(body.contains("&lt;b&gt;bold&lt;/b&gt; claims"), "{body}");

    let (status, body) = get(&format!("/ui/versions/{}", versions[0])).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("s3://bucket/churn/v0/"), "{body}");
    assert!(body.contains("CREATE"), "its history: {body}");
    // How to deploy it: a KServe InferenceService by model-registry:// URI.
    assert!(body.contains("kind: InferenceService"), "{body}");
    assert!(
        body.contains(&format!("storageUri: &quot;model-registry://&lt;script&gt;alert(1)&lt;/script&gt; {tag}/v0&quot;")),
        "{body}"
    );
    assert!(
        body.contains("  name: script-alert-1-script-"),
        "a Kubernetes name: {body}"
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{body}"
    );

    let (status, body) = get(&format!("/ui/compare?versions={}", versions.join(","))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.matches("<rect class=\"mark\"").count(),
        3,
        "one mark per version in the accuracy chart: {body}"
    );
    assert!(body.contains("<figcaption>accuracy</figcaption>"), "{body}");
    let (status, _) = get(&format!(
        "/ui/compare?versions={}&versions={}",
        versions[0], versions[1]
    ))
    .await;
    assert_eq!(status, 200, "checkboxes send the versions one by one");
    for bad in [
        format!("/ui/compare?versions={}", versions[0]),
        "/ui/compare?versions=1,2,3,4,5,6,7,8,9,10,11".to_string(),
        "/ui/compare?versions=x,y".to_string(),
        "/ui/models/abc".to_string(),
        "/ui/audit?entityType=Bogus".to_string(),
        "/ui/audit?since=yesterday".to_string(),
    ] {
        let (status, body) = get(&bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("role=\"alert\""), "an error page: {body}");
    }
    let (status, _) = get("/ui/compare?versions=999998,999999").await;
    assert_eq!(status, 404);
    let (status, _) = get("/ui/models/999999").await;
    assert_eq!(status, 404);

    let (status, body) = get(&format!(
        "/ui/audit?entityType=RegisteredModel&entityId={mid}"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("CREATE"), "{body}");
    assert!(body.contains("/ui/audit.csv?"), "an export link: {body}");

    // The same records as CSV: a header, one line per record, the name
    // with its comma quoted; a name a spreadsheet would run is defused.
    let formula = api
        .create_model_body(
            json!({"name": format!("=HYPERLINK(\"http://evil.example\",\"x\"), {tag}")}),
        )
        .await;
    let r = c
        .get(s.url(&format!(
            "/ui/audit.csv?entityType=RegisteredModel&entityId={}",
            id(&formula)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        r.headers()
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time,actor,action,applied,entity_type,entity_id,entity_name,revision,changed"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(&format!(
            ",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\"), {tag}\","
        )),
        "{csv}"
    );
    assert!(lines[1].contains(",CREATE,true,RegisteredModel,"), "{csv}");
    let (status, _) = get("/ui/audit.csv?since=yesterday").await;
    assert_eq!(status, 400);

    // Nothing hostile came through as markup, on any page.
    for path in [
        format!("/ui/?q={tag}"),
        format!("/ui/models/{mid}"),
        format!("/ui/versions/{}", versions[0]),
        format!("/ui/compare?versions={}", versions.join(",")),
        "/ui/audit".to_string(),
    ] {
        let (_, body) = get(&path).await;
        assert!(!body.contains("<script>alert"), "{path}");
        assert!(!body.contains("<img src=x"), "{path}");
        assert!(!body.contains("<b>bold"), "{path}");
    }
}

#[tokio::test]
async fn an_empty_registry_says_how_to_register_a_model() {
    let s = Server::start().await;
    let c = s.client();
    let (status, body) = page(c, s.url("/ui/"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("No model is registered yet"), "{body}");
    assert!(body.contains("registry.register_model("), "{body}");
    let (_, body) = page(c, s.url("/ui/?q=anything"), None).await;
    assert!(
        body.contains("No model matches."),
        "a search finds nothing: {body}"
    );
}

#[tokio::test]
async fn the_usage_page_shows_what_a_caller_read_to_whom_may_see_it() {
    let policy = r#"
bindings:
  - role: writer
    users: [ada]
  - role: reader
    users: [eve]
    models: ["used-*"]
  - role: admin
    users: [root]
"#;
    let s = Secured::start(Some(policy), &[("MR_USAGE_WINDOW_MS", "10")]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let (_, v) = ada.model_and_version(&uniq("used")).await;
    let vid = id(&v);
    s.as_user(V1, "eve", &[])
        .get(&format!("/model_versions/{vid}"))
        .await
        .ok(200);
    let c = s.server.client();
    let (eve, root) = (s.issuer.token("eve", &[]), s.issuer.token("root", &[]));
    // Written a moment after the read (the usage window).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, body) = page(c, s.server.url("/ui/usage"), Some(&eve)).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("Usage of eve"),
            "one's own by default: {body}"
        );
        if body.contains(&format!("/ui/versions/{vid}")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "eve's read never showed: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Another's usage: for who may read everything only.
    let (status, _) = page(c, s.server.url("/ui/usage?actor=ada"), Some(&eve)).await;
    assert_eq!(status, 403);
    let (status, body) = page(c, s.server.url("/ui/usage?actor=eve"), Some(&root)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("/ui/versions/{vid}")), "{body}");
    // The version page names the reader, with a link to their usage.
    let (_, body) = page(c, s.server.url(&format!("/ui/versions/{vid}")), Some(&root)).await;
    assert!(body.contains("/ui/usage?actor=eve"), "{body}");
}

#[tokio::test]
async fn pages_show_only_what_the_caller_may_read() {
    let policy = r#"
bindings:
  - role: writer
    users: [ada]
  - role: reader
    users: [eve]
    models: ["visible-*"]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let seen = ada.create_model(&uniq("visible")).await;
    let unseen = ada.create_model(&uniq("secret")).await;
    let eve = s.issuer.token("eve", &[]);
    let c = s.server.client();
    let (status, body) = page(c, s.server.url("/ui/?pageSize=100"), Some(&eve)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Signed in as <strong>eve</strong>"), "{body}");
    assert!(body.contains(seen["name"].as_str().unwrap()));
    assert!(!body.contains(unseen["name"].as_str().unwrap()), "{body}");
    let (status, _) = page(
        c,
        s.server.url(&format!("/ui/models/{}", id(&unseen))),
        Some(&eve),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = page(
        c,
        s.server.url(&format!("/ui/models/{}", id(&seen))),
        Some(&eve),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = page(c, s.server.url("/ui/"), None).await;
    assert_eq!(status, 401, "anonymous callers authenticate first");
    // The audit export leaves out what the caller may not read.
    let (status, csv) = page(c, s.server.url("/ui/audit.csv"), Some(&eve)).await;
    assert_eq!(status, 200, "{csv}");
    assert!(csv.contains(seen["name"].as_str().unwrap()), "{csv}");
    assert!(!csv.contains(unseen["name"].as_str().unwrap()), "{csv}");
}

#[tokio::test]
async fn run_experiment_and_deployment_pages() {
    let s = Server::start().await;
    let api = s.api(V1);
    let tag = uniq("webrun");
    let e = api
        .post("/experiments", &json!({"name": format!("exp {tag}")}))
        .await
        .ok(201);
    let run = api
        .post(
            "/experiment_runs",
            &json!({"name": "run-1", "experimentId": id(&e), "status": "FINISHED"}),
        )
        .await
        .ok(201);
    for (step, loss) in [(1, 0.9), (2, 0.5), (3, 0.3)] {
        api.post(
            &format!("/experiment_runs/{}/artifacts", id(&run)),
            &json!({"artifactType": "metric", "name": "loss", "value": loss, "step": step}),
        )
        .await
        .check_in(&[200, 201]);
    }
    let (m, v) = api.model_and_version(&tag).await;
    let env = api
        .post(
            "/serving_environments",
            &json!({"name": format!("prod {tag}")}),
        )
        .await
        .ok(201);
    api.post(
        "/inference_services",
        &json!({
            "name": format!("svc-{tag}"),
            "servingEnvironmentId": id(&env),
            "registeredModelId": id(&m),
            "modelVersionId": id(&v),
            "runtime": "kserve",
        }),
    )
    .await
    .ok(201);
    let c = s.client();
    let (status, body) = page(c, s.url("/ui/experiments"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("exp {tag}")), "{body}");
    let (status, body) = page(c, s.url(&format!("/ui/experiments/{}", id(&e))), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("run-1"), "{body}");
    let (status, body) = page(c, s.url(&format!("/ui/runs/{}", id(&run))), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<figcaption>loss</figcaption>"), "{body}");
    assert_eq!(
        body.matches("<circle class=\"mark\"").count(),
        3,
        "one point per logged step: {body}"
    );
    // Two versions made by two runs: their histories side by side.
    let run2 = api
        .post(
            "/experiment_runs",
            &json!({"name": "run-2", "experimentId": id(&e)}),
        )
        .await
        .ok(201);
    for (step, loss) in [(1, 0.8), (2, 0.4)] {
        api.post(
            &format!("/experiment_runs/{}/artifacts", id(&run2)),
            &json!({"artifactType": "metric", "name": "loss", "value": loss, "step": step}),
        )
        .await
        .check_in(&[200, 201]);
    }
    let v2 = api.create_version(&id(&m), "v-run-2").await;
    for (version, r) in [(&v, &run), (&v2, &run2)] {
        api.upsert_new_artifact(
            &id(version),
            json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w",
                   "experimentId": id(&e), "experimentRunId": id(r)}),
        )
        .await;
    }
    let (status, body) = page(
        c,
        s.url(&format!("/ui/compare?versions={},{}", id(&v), id(&v2))),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Metric histories of the runs"), "{body}");
    assert_eq!(
        body.matches("<polyline class=\"series\"").count(),
        2,
        "a line per version in the loss chart: {body}"
    );
    let (status, body) = page(c, s.url("/ui/deployments"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("svc-{tag}")), "{body}");
    assert!(body.contains(&format!("/ui/versions/{}", id(&v))), "{body}");
}

/// The hidden CSRF token of the first form in `html`.
fn csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

async fn post_form(
    client: &reqwest::Client,
    url: String,
    token: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String) {
    let mut rb = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    if let Some(o) = origin {
        rb = rb.header("origin", o);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn approvers_decide_and_writers_move_aliases_from_the_pages() {
    let policy = r#"
bindings:
  - role: writer
    users: [ada]
  - role: approver
    users: [ada, bob, cyd]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let (m, v) = ada.model_and_version(&uniq("forms")).await;
    let (mid, vid) = (id(&m), id(&v));
    let ext = crate::common::Api::new(
        s.server.client().clone(),
        s.server.base_url(),
        "/api/registry_ext/v1",
    )
    .with_bearer(&s.issuer.token("ada", &[]));
    ext.raw(
        reqwest::Method::PUT,
        &format!("/registered_models/{mid}/approval_policy"),
        r#"{"requiredApprovals": 1, "protectedAliases": ["production"]}"#,
    )
    .await
    .check(200);
    let c = s.server.client();
    let (ada_t, bob_t, cyd_t) = (
        s.issuer.token("ada", &[]),
        s.issuer.token("bob", &[]),
        s.issuer.token("cyd", &[]),
    );
    let version_page = s.server.url(&format!("/ui/versions/{vid}"));
    // The author sees no decision form (four eyes); an approver does.
    let (_, body) = page(c, version_page.clone(), Some(&ada_t)).await;
    assert!(!body.contains("Record decision"), "{body}");
    let (_, body) = page(c, version_page.clone(), Some(&bob_t)).await;
    assert!(body.contains("Record decision"), "{body}");
    let bob_csrf = csrf(&body).expect("a CSRF token in the form");
    // It waits in the approvers' inbox.
    let (_, inbox) = page(c, s.server.url("/ui/approvals"), Some(&cyd_t)).await;
    assert!(inbox.contains(&format!("/ui/versions/{vid}")), "{inbox}");
    let decide = s.server.url(&format!("/ui/versions/{vid}/decision"));
    // Refused: no token, another caller's token, another site.
    let (status, _) = post_form(c, decide.clone(), &bob_t, &[("decision", "APPROVE")], None).await;
    assert_eq!(status, 403);
    let (status, _) = post_form(
        c,
        decide.clone(),
        &cyd_t,
        &[("csrf", &bob_csrf), ("decision", "APPROVE")],
        None,
    )
    .await;
    assert_eq!(status, 403, "a token is its caller's");
    let (status, _) = post_form(
        c,
        decide.clone(),
        &bob_t,
        &[("csrf", &bob_csrf), ("decision", "APPROVE")],
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403, "cross-site");
    // Accepted: back on the version page, which now says APPROVED.
    let (status, body) = post_form(
        c,
        decide,
        &bob_t,
        &[
            ("csrf", &bob_csrf),
            ("decision", "APPROVE"),
            ("comment", "looks good"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("looks good"), "{body}");
    let approval = ext
        .get(&format!("/model_versions/{vid}/approval"))
        .await
        .ok(200);
    assert_eq!(approval["state"], "APPROVED");
    assert_eq!(approval["approvals"][0]["actor"], "bob");
    // The writer moves `production` from the model page.
    let (_, body) = page(c, s.server.url(&format!("/ui/models/{mid}")), Some(&ada_t)).await;
    let ada_csrf = csrf(&body).expect("the alias form's token");
    let aliases = s.server.url(&format!("/ui/models/{mid}/aliases"));
    let (status, body) = post_form(
        c,
        aliases.clone(),
        &ada_t,
        &[
            ("csrf", &ada_csrf),
            ("alias", "production"),
            ("version", &vid),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pointed = ext
        .get(&format!("/registered_models/{mid}/aliases/production"))
        .await
        .ok(200);
    assert_eq!(pointed["id"], vid);
    let (status, _) = post_form(
        c,
        aliases,
        &ada_t,
        &[
            ("csrf", &ada_csrf),
            ("alias", "production"),
            ("remove", "1"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    ext.get(&format!("/registered_models/{mid}/aliases/production"))
        .await
        .err(404);
}
