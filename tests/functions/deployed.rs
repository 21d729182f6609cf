//! The function binaries run with the configuration the deployment files
//! give them, then asked what the deployment promises: health answers
//! without credentials, nothing else does, tokens of the configured issuer
//! and audience are accepted, the policy decides, a family's writer writes
//! and its reader reads but refuses to write (`MR_SERVE`), the web
//! interface shows its pages to the callers the policy names (tokens, or
//! Kubeflow's headers) and takes its forms where the routing sends them
//! (refused without the form's token, written with it), under Lambda logs
//! a person in through the identity provider (its cookies in the HTTP
//! API's `cookies`, both ways), the storage-events Trigger's OIDC identity
//! may register uploads, and a tick of the events function (the
//! PingSource's OIDC identity, the Lambda schedule) delivers the change
//! events to the sink, signed.
//!
//! - Knative: a Service's environment from its ConfigMaps and `env`, and
//!   its mounted ConfigMaps as files (the policy);
//! - Lambda: the template's environment (parameters at their defaults) and
//!   the policy `make lambda-zip` bundles, under the Runtime API emulator of
//!   `lambda`, with the claims API Gateway's JWT authorizer passes on.
//!
//! Only what cannot exist here is replaced: the embedded store for
//! DynamoDB, local files for the bucket, the test issuer's keys for each
//! trusted issuer's (the cluster's JWKS, an identity provider's URL),
//! loopback for the pod's address, a local sink for the SinkBinding's and
//! the `EventsSink` parameter's, and the Secret's signing key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry_tests::issuer::{Alg, TestIssuer, now_secs};
use serde_json::{Value as Json, json};

use crate::contract::{ALL_IN_ONE, EVENTS, HEALTH, WEB, WEB_FORMS, reader};
use crate::lambda::{Outcome, RuntimeApi};
use crate::manifests::{
    LAMBDA_POLICY, PolicyFile, Role, binary_of, config_maps, container_of, environment,
    knative_documents, knative_services, lambda_deployments, lambda_environment, lambda_routed,
    list, mounted_policy, ping_source_identities, ref_target, repo, template, trigger_identities,
};
use registry_test_support::{Process, free_port, http_client};
use registry_tests::routing::{ROUTING_YAML, Routing, image_binary};

const V1: &str = "/api/model_registry/v1";

/// A caller the policy lets create models everywhere: the first user (or,
/// without users, a member of the first group) of a writer or admin binding
/// without `models`.
fn a_writer(policy: &PolicyFile) -> (String, Vec<String>) {
    let binding = policy
        .bindings
        .iter()
        .find(|b| matches!(b.role, Role::Writer | Role::Admin) && b.models.is_none())
        .expect("the policy names someone who may register models");
    match binding.users.iter().find(|u| *u != "anonymous") {
        Some(user) => (user.clone(), Vec::new()),
        None => (
            "someone@example.com".into(),
            vec![binding.groups[0].clone()],
        ),
    }
}

/// Claims the server reads: the user and groups under the configured claim
/// names, valid for ten minutes.
fn claims(
    env: &BTreeMap<String, String>,
    issuer: &str,
    audience: &str,
    user: &str,
    groups: &[String],
) -> Json {
    let now = now_secs();
    let mut claims =
        json!({"iss": issuer, "aud": audience, "iat": now, "nbf": now, "exp": now + 600});
    let user_claim = env.get("MR_JWT_USER_CLAIM").map_or("sub", String::as_str);
    let groups_claim = env
        .get("MR_JWT_GROUPS_CLAIM")
        .map_or("groups", String::as_str);
    claims[user_claim] = json!(user);
    claims[groups_claim] = json!(groups);
    claims
}

/// A Knative Service's function, started the way its pod starts it.
struct KnativeFunction {
    process: Process,
    base: String,
    /// The environment of the manifests (before the replacements).
    env: BTreeMap<String, String>,
    /// One test issuer standing in for each trusted issuer.
    issuers: Vec<TestIssuer>,
    policy: PolicyFile,
    _files: tempfile::TempDir,
}

impl KnativeFunction {
    /// The headers naming the caller and its groups under `MR_AUTH=header`.
    fn identity_headers(&self) -> (&str, &str) {
        let header =
            |key: &str, default: &'static str| self.env.get(key).map_or(default, String::as_str);
        (
            header("MR_AUTH_USER_HEADER", "kubeflow-userid"),
            header("MR_AUTH_GROUPS_HEADER", "kubeflow-groups"),
        )
    }

    /// Start `name` as `kubectl apply -k infra/knative` deploys it, with the
    /// ConfigMap patches of the kustomize component `component` (e.g.
    /// `header-mode`) if one is given.
    async fn start(name: &str, component: Option<&str>) -> KnativeFunction {
        KnativeFunction::start_with(name, component, &[]).await
    }

    /// [`KnativeFunction::start`] with `extra` environment (which wins):
    /// what the cluster adds (a SinkBinding's `K_SINK`, a Secret's value).
    async fn start_with(
        name: &str,
        component: Option<&str>,
        extra: &[(&str, String)],
    ) -> KnativeFunction {
        let docs = knative_documents();
        let mut config_maps = config_maps(&docs);
        if let Some(dir) = component {
            let dir = repo().join("infra/knative").join(dir);
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
            let kustomization: serde_norway::Value =
                serde_norway::from_str(&read("kustomization.yaml")).unwrap();
            for patch in kustomization["patches"].as_sequence().into_iter().flatten() {
                let file = patch["path"].as_str().unwrap().to_string();
                let doc = serde_norway::from_str(&read(&file)).unwrap();
                for (name, data) in crate::manifests::config_maps(&[(file, doc)]) {
                    config_maps
                        .get_mut(&name)
                        .expect("a patch of a base ConfigMap")
                        .extend(data);
                }
            }
        }
        let services = knative_services(&docs);
        let (file, ksvc) = services
            .iter()
            .find(|(_, k)| k.metadata.name == name)
            .unwrap_or_else(|| panic!("no Knative Service {name}"));
        let at = format!("{file} ({name})");
        let container = container_of(ksvc);
        let declared = environment(container, &config_maps, &at);
        let policy = mounted_policy(ksvc, &declared, &config_maps, &at);
        let env: BTreeMap<String, String> = declared
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        let files = tempfile::tempdir().unwrap();

        // The mounted ConfigMaps of the manifests, as the kubelet writes them.
        let mut run = env.clone();
        for mount in &container.volume_mounts {
            let volume = ksvc
                .spec
                .template
                .spec
                .volumes
                .iter()
                .find(|v| v.name == mount.name);
            let Some(cm) = volume.and_then(|v| v.config_map.as_ref()) else {
                continue;
            };
            let Some(data) = config_maps.get(&cm.name) else {
                continue; // the operator's (the cluster's JWKS): replaced below
            };
            let dir = files.path().join(mount.mount_path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir).unwrap();
            let projected: Vec<(String, String)> = match &cm.items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in projected {
                std::fs::write(dir.join(path), &data[&key]).unwrap();
            }
            let prefix = format!("{}/", mount.mount_path.trim_end_matches('/'));
            for value in run.values_mut() {
                if value.starts_with(&prefix) {
                    *value = format!("{}{value}", files.path().display());
                }
            }
        }

        // Every trusted issuer's keys: a test issuer's, as a file.
        let mut issuers = Vec::new();
        if env.get("MR_AUTH").map(String::as_str) == Some("jwt") {
            let audience = &env["MR_JWT_AUDIENCE"];
            let mut jwks = Vec::new();
            for (i, iss) in list(env.get("MR_JWT_ISSUER").map(String::as_str))
                .iter()
                .enumerate()
            {
                let issuer = TestIssuer::new(iss, audience, &i.to_string());
                let path = files.path().join(format!("jwks-{i}.json"));
                std::fs::write(&path, issuer.jwks().to_string()).unwrap();
                jwks.push(path.display().to_string());
                issuers.push(issuer);
            }
            run.insert("MR_JWT_JWKS".into(), jwks.join(","));
        }
        run.insert("MR_STORE".into(), "embedded".into());
        run.remove("MR_ARTIFACT_BUCKET"); // local files stand in for the bucket
        run.insert("MR_BIND".into(), "127.0.0.1".into());
        for (k, v) in extra {
            run.insert(k.to_string(), v.clone());
        }
        let run: Vec<(&str, String)> = run.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        // The binary of its image (a reader runs its writer's).
        let (process, base) = Process::start_http(image_binary(&container.image), &run).await;
        KnativeFunction {
            process,
            base,
            env,
            issuers,
            policy,
            _files: files,
        }
    }

    /// A token of the first trusted issuer for `user` in `groups`.
    fn token(&self, audience: &str, user: &str, groups: &[String]) -> String {
        let issuer = self.issuers.first().expect("MR_AUTH=jwt with an issuer");
        let claims = claims(&self.env, &issuer.issuer, audience, user, groups);
        issuer.sign(&claims, Alg::Rs256, None)
    }

    fn audience(&self) -> &str {
        &self.env["MR_JWT_AUDIENCE"]
    }
}

#[tokio::test]
async fn knative_functions_run_with_their_manifests() {
    let f = KnativeFunction::start("registered-models", None).await;
    assert_eq!(
        f.env.get("MR_AUTH").map(String::as_str),
        Some("jwt"),
        "the manifests' default"
    );
    let http = http_client();
    let models = format!("{}{V1}/registered_models", f.base);
    let create = |token: Option<String>, name: &str| {
        let mut req = http.post(&models).json(&json!({"name": name}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();

    // Health is open (the readiness probe sends no token); nothing else is.
    let health = http
        .get(format!("{}{HEALTH}", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(status(create(None, "deployed-0").await.unwrap()), 401);

    // A writer of the policy, with a token of the trusted issuer for the
    // configured audience, registers a model.
    let (user, groups) = a_writer(&f.policy);
    let ok = create(Some(f.token(f.audience(), &user, &groups)), "deployed-1")
        .await
        .unwrap();
    assert_eq!(
        ok.status(),
        201,
        "{user}: {}\n{}",
        ok.text().await.unwrap(),
        f.process.log()
    );

    // The same caller's token for another audience is refused; a caller the
    // policy does not name may not do anything.
    let other = create(
        Some(f.token("another-service", &user, &groups)),
        "deployed-2",
    );
    assert_eq!(status(other.await.unwrap()), 401);
    let stranger = f.token(f.audience(), "system:serviceaccount:default:default", &[]);
    let denied = create(Some(stranger), "deployed-3").await.unwrap();
    assert_eq!(denied.status(), 403);
    // JSON logs, one access-log line per request, naming the caller.
    assert!(
        f.process
            .log()
            .lines()
            .any(|l| l.starts_with('{') && l.contains(&user)),
        "{}",
        f.process.log()
    );
}

#[tokio::test]
async fn knative_readers_read_and_refuse_to_write() {
    let f = KnativeFunction::start(&reader("registered-models"), None).await;
    assert_eq!(f.env.get("MR_SERVE").map(String::as_str), Some("reads"));
    let http = http_client();
    let models = format!("{}{V1}/registered_models", f.base);
    let health = http
        .get(format!("{}{HEALTH}", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the readiness probe");
    assert_eq!(http.get(&models).send().await.unwrap().status(), 401);
    let (user, groups) = a_writer(&f.policy);
    let token = f.token(f.audience(), &user, &groups);
    let listed = http.get(&models).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        listed.status(),
        200,
        "{}\n{}",
        listed.text().await.unwrap(),
        f.process.log()
    );
    // Even a writer of the policy cannot write through the reader.
    let refused = http
        .post(&models)
        .bearer_auth(&token)
        .json(&json!({"name": "through-the-reader"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        405,
        "{}\n{}",
        refused.text().await.unwrap(),
        f.process.log()
    );
}

#[tokio::test]
async fn storage_events_take_the_triggers_oidc_identity() {
    let f = KnativeFunction::start("storage-events", None).await;
    let docs = knative_documents();
    let (_, trigger) = docs
        .iter()
        .find(|(_, d)| d["kind"].as_str() == Some("Trigger"))
        .expect("the storage-events Trigger");
    let namespace = trigger["metadata"]["namespace"].as_str().unwrap();
    let name = trigger["metadata"]["name"].as_str().unwrap();
    let audience = trigger["spec"]["subscriber"]["audience"].as_str().unwrap();
    let identity = trigger_identities(namespace, name)
        .into_iter()
        .find(|id| f.policy.writes_everything(id))
        .expect("the policy names the Trigger's identity");

    // An object removed under the upload convention (`local` is the bucket
    // name of the local store): an instruction to change a model.
    let prefix = f
        .env
        .get("MR_EVENTS_PREFIX")
        .map_or("models/", String::as_str);
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T12:00:00.000Z", "eventName": "ObjectRemoved:Delete",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "local", "arn": "arn:aws:s3:::local"},
               "object": {"key": format!("{prefix}churn/1/model.bin"), "sequencer": "0A1B2C3D4E5F678901"}}
    }]});
    let http = http_client();
    let send = |token: Option<String>| {
        let mut req = http.post(format!("{}/", f.base)).json(&event);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // Without Eventing's OIDC feature the broker sends no token: refused.
    assert_eq!(send(None).await.unwrap().status(), 401);
    let other = f.token(audience, "system:serviceaccount:default:default", &[]);
    assert_eq!(send(Some(other)).await.unwrap().status(), 403);
    let accepted = send(Some(f.token(audience, &identity, &[]))).await.unwrap();
    let status = accepted.status();
    assert!(
        status.is_success(),
        "{identity}: {status} {}\n{}",
        accepted.text().await.unwrap(),
        f.process.log()
    );
}

#[tokio::test]
async fn header_mode_names_the_caller_from_kubeflows_headers() {
    let f = KnativeFunction::start("registered-models", Some("header-mode")).await;
    assert_eq!(f.env.get("MR_AUTH").map(String::as_str), Some("header"));
    let (user_header, groups_header) = f.identity_headers();
    let http = http_client();
    let models = format!("{}{V1}/registered_models", f.base);
    let body = json!({"name": "header-mode-0"});
    // No identity headers: anonymous, who has no role.
    let anonymous = http.post(&models).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let stranger = http
        .post(&models)
        .header(user_header, "eve@example.com")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 403);
    let (user, groups) = a_writer(&f.policy);
    let created = http
        .post(&models)
        .header(user_header, &user)
        .header(groups_header, groups.join(","))
        .json(&json!({"name": "header-mode-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        201,
        "{}\n{}",
        created.text().await.unwrap(),
        f.process.log()
    );
    // storage-events keeps verifying the broker's tokens.
    let events = KnativeFunction::start("storage-events", Some("header-mode")).await;
    assert_eq!(events.env.get("MR_AUTH").map(String::as_str), Some("jwt"));
}

/// A client that shows redirects instead of following them.
fn not_following() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The content type of a form a browser posts.
const FORM: &str = "application/x-www-form-urlencoded";

/// The hidden CSRF token of the first form of a page.
fn csrf_of(html: &str) -> Option<String> {
    let field = "name=\"csrf\" value=\"";
    let at = html.find(field)? + field.len();
    Some(html[at..].split('"').next()?.to_string())
}

/// What the web interface answers a form without the token of a form it
/// showed the caller: the form's handler got it (not a 404 of a route the
/// function lacks, nor the 405 of a role that does not write).
const FORM_REFUSED: &str = "was not shown to you";

/// Stop a function (SIGTERM, then SIGKILL after 10 s), so that another
/// can open its embedded store.
async fn stop(process: &mut Process) {
    process.terminate();
    if process.wait_exit(Duration::from_secs(10)).await.is_none() {
        process.kill().await;
    }
}

/// The `id` of the entity a 201 created.
async fn created(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: Json = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn knative_web_shows_pages_to_the_callers_the_policy_names() {
    let f = KnativeFunction::start(WEB, None).await;
    assert_eq!(f.env.get("MR_SERVE").map(String::as_str), Some("all"));
    let http = not_following();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(format!("{}{path}", f.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // The readiness probe sends no token; a browser without one gets no page.
    assert_eq!(get(HEALTH, None).await.unwrap().status(), 200);
    assert_eq!(get("/ui/", None).await.unwrap().status(), 401);
    // A caller the policy names, with a token of the trusted issuer: `/`
    // leads to the models page, which is HTML.
    let (user, groups) = a_writer(&f.policy);
    let token = f.token(f.audience(), &user, &groups);
    let root = get("/", Some(&token)).await.unwrap();
    assert_eq!(root.status(), 303, "{}", f.process.log());
    assert_eq!(root.headers()["location"], "/ui/");
    let page = get("/ui/", Some(&token)).await.unwrap();
    assert_eq!(page.status(), 200, "{}", f.process.log());
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers()
    );
    let stranger = f.token(f.audience(), "system:serviceaccount:default:default", &[]);
    // A caller the policy does not name sees no page.
    assert_eq!(get("/ui/", Some(&stranger)).await.unwrap().status(), 403);
    // Each form's POST, which the routing sends here, reaches the form:
    // without the token of a form shown to the caller, refused.
    let routing = Routing::load(ROUTING_YAML).unwrap();
    for form in WEB_FORMS {
        let to = routing.route("POST", form).map(|r| r.function.as_str());
        assert_eq!(to, Some(WEB), "POST {form}: the routing");
        let sent = http
            .post(format!("{}{form}", f.base))
            .bearer_auth(&token)
            .header("content-type", FORM)
            .body("decision=APPROVE")
            .send()
            .await
            .unwrap();
        let status = sent.status();
        let body = sent.text().await.unwrap();
        assert_eq!(status, 403, "POST {form}: {body}\n{}", f.process.log());
        assert!(body.contains(FORM_REFUSED), "POST {form}: {body}");
    }

    // Behind Kubeflow's gateway (header mode) the caller comes from its
    // headers: a browser needs nothing more.
    let f = KnativeFunction::start(WEB, Some("header-mode")).await;
    assert_eq!(f.env.get("MR_AUTH").map(String::as_str), Some("header"));
    let (user_header, groups_header) = f.identity_headers();
    let (user, groups) = a_writer(&f.policy);
    let page = http
        .get(format!("{}/ui/", f.base))
        .header(user_header, &user)
        .header(groups_header, groups.join(","))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{}", f.process.log());
    // Without them: `anonymous`, whom the policy gives no role.
    let anonymous = http.get(format!("{}/ui/", f.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // The browser sends the headers with a form too, and the form's token
    // is what tells it from a forged one.
    let forged = http
        .post(format!("{}{}", f.base, WEB_FORMS[0]))
        .header(user_header, &user)
        .header(groups_header, groups.join(","))
        .header("content-type", FORM)
        .body("decision=APPROVE")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

#[tokio::test]
async fn knative_web_forms_write_with_the_manifests_role() {
    // A model with a version, registered through the API's writer on the
    // store the web interface then opens.
    let data = tempfile::tempdir().unwrap();
    let store = [("MR_DATA_DIR", data.path().display().to_string())];
    let mut api = KnativeFunction::start_with("registered-models", None, &store).await;
    let (user, groups) = a_writer(&api.policy);
    let token = api.token(api.audience(), &user, &groups);
    let http = not_following();
    let post = |path: String, body: Json| {
        http.post(format!("{}{V1}{path}", api.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let mid = created(
        post("/registered_models".into(), json!({"name": "web-forms"}))
            .await
            .unwrap(),
    )
    .await;
    let vid = created(
        post(
            format!("/registered_models/{mid}/versions"),
            json!({"name": "v1", "registeredModelId": mid}),
        )
        .await
        .unwrap(),
    )
    .await;
    stop(&mut api.process).await;

    // The writer moves an alias from the model's page, with its form's token.
    let f = KnativeFunction::start_with(WEB, None, &store).await;
    let token = f.token(f.audience(), &user, &groups);
    let model_page = format!("{}/ui/models/{mid}", f.base);
    let page = |http: &reqwest::Client| http.get(&model_page).bearer_auth(&token).send();
    let shown = page(&http).await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&shown).expect("the alias form, with its token");
    let form = [
        ("csrf", csrf.as_str()),
        ("alias", "production"),
        ("version", vid.as_str()),
    ];
    let moved = http
        .post(format!("{model_page}/aliases"))
        .bearer_auth(&token)
        .header("content-type", FORM)
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    let status = moved.status();
    let location = moved.headers().get("location").cloned();
    let body = moved.text().await.unwrap();
    assert_eq!(status, 303, "{body}\n{}", f.process.log());
    assert_eq!(location.unwrap(), format!("/ui/models/{mid}").as_str());
    let shown = page(&http).await.unwrap().text().await.unwrap();
    assert!(
        shown.contains("class=\"badge alias\">production<"),
        "the version carries the alias: {shown}"
    );
}

/// An API Gateway HTTP API (payload 2.0) event on the `$default` stage,
/// with the claims of the JWT authorizer (if any) and the bearer token it
/// checked (which API Gateway passes on).
fn http_api_event(
    method: &str,
    path: &str,
    body: Option<Json>,
    auth: Option<(Json, String)>,
) -> Json {
    let domain = "r3pmxmplak.execute-api.us-east-1.amazonaws.com";
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("ANY {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"accept": "application/json", "content-type": "application/json", "host": domain},
        "requestContext": {
            "accountId": "123456789012", "apiId": "r3pmxmplak", "domainName": domain,
            "domainPrefix": "r3pmxmplak",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "198.51.100.7", "userAgent": "curl/8.5.0"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": format!("ANY {path}"), "stage": "$default",
            "time": "10/Mar/2026:00:03:58 +0000", "timeEpoch": 1773101038000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    if let Some((claims, token)) = auth {
        // API Gateway flattens claims to strings, lists as `[a b]`.
        let flat: serde_json::Map<String, Json> = claims
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Json::String(s) => s.clone(),
                    Json::Array(a) => format!(
                        "[{}]",
                        a.iter()
                            .filter_map(Json::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    other => other.to_string(),
                };
                (k.clone(), Json::String(s))
            })
            .collect();
        event["requestContext"]["authorizer"] = json!({"jwt": {"claims": flat, "scopes": null}});
        event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    }
    event
}

/// A Lambda function of the template, run as Lambda runs it: the template's
/// environment (parameters at their defaults; those without one, Issuer
/// and Audience, as an operator would give them), the bundled policy, under
/// its own Runtime API emulator.
struct LambdaFunction {
    api: RuntimeApi,
    process: Process,
    env: BTreeMap<String, String>,
    issuer: TestIssuer,
    policy: PolicyFile,
    _files: tempfile::TempDir,
}

impl LambdaFunction {
    /// Start the function deployed as `deployment` (`registered-models`,
    /// `registered-models-reader`, ...).
    async fn start(deployment: &str) -> LambdaFunction {
        LambdaFunction::start_with(deployment, &[]).await
    }

    /// [`LambdaFunction::start`] with `extra` environment (which wins): what
    /// an operator's parameters would give.
    async fn start_with(deployment: &str, extra: &[(&str, String)]) -> LambdaFunction {
        let t = template();
        let params = &t["Parameters"];
        let (_, function) = lambda_deployments(&t)
            .remove(deployment)
            .unwrap_or_else(|| panic!("no Lambda function {deployment}"));
        let mut env = BTreeMap::new();
        for (name, value) in lambda_environment(&t, &function) {
            let value = match ref_target(&value) {
                Some(p) if params[&p].is_null() => continue, // a resource (the table)
                Some(p) => match &params[&p]["Default"] {
                    serde_norway::Value::Null if p == "Issuer" => "https://idp.example.com".into(),
                    serde_norway::Value::Null => format!("test-{}", p.to_lowercase()),
                    serde_norway::Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other).unwrap().trim().to_string(),
                },
                // Chosen by a condition (`!If`): the web login's settings,
                // whose conditions (OidcClientId, PublicUrl given) are false
                // with the default parameters, which leave the login off.
                None if matches!(&value, serde_norway::Value::Tagged(t) if t.tag == "If") => {
                    continue;
                }
                None => value.as_str().expect("a plain value").to_string(),
            };
            env.insert(name, value);
        }
        let policy_file = repo().join("infra/lambda/policy.yaml");
        assert_eq!(env["MR_POLICY"], LAMBDA_POLICY);
        let policy = PolicyFile::parse(
            &std::fs::read_to_string(&policy_file).unwrap(),
            "policy.yaml",
        );
        let mut run = env.clone();
        run.insert("MR_POLICY".into(), policy_file.display().to_string()); // what /var/task holds
        run.insert("MR_STORE".into(), "embedded".into());
        let files = tempfile::tempdir().unwrap();
        let issuer = TestIssuer::new(&env["MR_JWT_ISSUER"], &env["MR_JWT_AUDIENCE"], "lambda");
        if env["MR_AUTH"] == "jwt" {
            let jwks = files.path().join("jwks.json");
            std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
            run.insert("MR_JWT_JWKS".into(), jwks.display().to_string());
        }
        for (k, v) in extra {
            run.insert(k.to_string(), v.clone());
        }
        let run: Vec<(&str, String)> = run.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let api = RuntimeApi::start().await;
        let process = api.spawn_with(&binary_of(&function), free_port(), &run);
        LambdaFunction {
            api,
            process,
            env,
            issuer,
            policy,
            _files: files,
        }
    }

    /// What the authorizer verified and passed on, for a caller.
    fn caller(&self, user: &str, groups: &[String]) -> Option<(Json, String)> {
        let issuer = &self.issuer;
        let claims = claims(&self.env, &issuer.issuer, &issuer.audience, user, groups);
        let token = issuer.sign(&claims, Alg::Rs256, None);
        Some((claims, token))
    }

    /// The HTTP status the function answers `event` with.
    async fn status(&self, event: Json) -> u64 {
        self.respond(event).await.0
    }

    /// The HTTP status, headers and body the function answers `event` with.
    async fn respond(&self, event: Json) -> (u64, Json, String) {
        match self.api.invoke(event, &self.process).await {
            Outcome::Response(v) => {
                let body = body_text(&v);
                (
                    v["statusCode"].as_u64().unwrap(),
                    v["headers"].clone(),
                    body,
                )
            }
            Outcome::Error(kind, body) => {
                panic!("invocation error {kind}: {body}\n{}", self.process.log())
            }
        }
    }
}

/// A browser's POST of a form (`body`, url-encoded) in an HTTP API event.
fn form_event(path: &str, body: &str, auth: Option<(Json, String)>) -> Json {
    let mut event = http_api_event("POST", path, None, auth);
    event["headers"]["content-type"] = json!(FORM);
    event["headers"]["accept"] = json!("text/html");
    event["body"] = json!(body);
    event
}

#[tokio::test]
async fn lambda_functions_run_with_the_template_and_the_bundled_policy() {
    let f = LambdaFunction::start("registered-models").await;
    assert_eq!(f.env.get("MR_SERVE").map(String::as_str), Some("writes"));
    let models = format!("{V1}/registered_models");
    let create =
        |name: &str, auth| http_api_event("POST", &models, Some(json!({ "name": name })), auth);
    // Without the authorizer's verdict (a request that got past it cannot
    // exist, but the function does not count on that): 401.
    assert_eq!(f.status(create("bundled-0", None)).await, 401);
    // A writer of the bundled policy registers a model; a stranger may not.
    let (user, groups) = a_writer(&f.policy);
    assert_eq!(
        f.status(create("bundled-policy", f.caller(&user, &groups)))
            .await,
        201,
        "{user} {groups:?}\n{}",
        f.process.log()
    );
    let stranger = f.caller("stranger", &["not-a-group".to_string()]);
    assert_eq!(f.status(create("bundled-1", stranger)).await, 403);
}

#[tokio::test]
async fn lambda_readers_read_and_refuse_to_write() {
    let f = LambdaFunction::start(&reader("registered-models")).await;
    assert_eq!(f.env.get("MR_SERVE").map(String::as_str), Some("reads"));
    let models = format!("{V1}/registered_models");
    // The health route has no authorizer: the reader, which takes it,
    // answers it anyway.
    let health = http_api_event("GET", HEALTH, None, None);
    assert_eq!(f.status(health).await, 200);
    let list = |auth| http_api_event("GET", &models, None, auth);
    assert_eq!(f.status(list(None)).await, 401);
    let (user, groups) = a_writer(&f.policy);
    assert_eq!(
        f.status(list(f.caller(&user, &groups))).await,
        200,
        "{}",
        f.process.log()
    );
    let stranger = f.caller("stranger", &["not-a-group".to_string()]);
    assert_eq!(f.status(list(stranger)).await, 403);
    // Even a writer of the policy cannot write through the reader.
    let create = http_api_event(
        "POST",
        &models,
        Some(json!({"name": "through-the-reader"})),
        f.caller(&user, &groups),
    );
    assert_eq!(f.status(create).await, 405, "{}", f.process.log());
}

#[tokio::test]
async fn lambda_web_shows_pages_to_the_callers_the_policy_names() {
    let f = LambdaFunction::start(WEB).await;
    assert_eq!(f.env.get("MR_SERVE").map(String::as_str), Some("all"));
    let page = |path: &str, auth| http_api_event("GET", path, None, auth);
    // Without the authorizer's verdict: 401, as for the API.
    assert_eq!(f.status(page("/ui/", None)).await, 401);
    // A caller the policy names: `/` and `/ui` lead to the models page.
    let (user, groups) = a_writer(&f.policy);
    for (path, status) in [("/", 303), ("/ui", 303), ("/ui/", 200)] {
        assert_eq!(
            f.status(page(path, f.caller(&user, &groups))).await,
            status,
            "GET {path}\n{}",
            f.process.log()
        );
    }
    let stranger = f.caller("stranger", &["not-a-group".to_string()]);
    assert_eq!(f.status(page("/ui/", stranger)).await, 403);
    // Each form's POST, which the HTTP API's routes send here, reaches the
    // form: without the token of a form shown to the caller, refused.
    for form in WEB_FORMS {
        let to = lambda_routed("POST", form);
        assert_eq!(to.as_deref(), Some(WEB), "POST {form}: the routes");
        let sent = form_event(form, "decision=APPROVE", f.caller(&user, &groups));
        let (status, _, body) = f.respond(sent).await;
        assert_eq!(status, 403, "POST {form}: {body}\n{}", f.process.log());
        assert!(body.contains(FORM_REFUSED), "POST {form}: {body}");
    }
}

#[tokio::test]
async fn lambda_web_forms_write_with_the_templates_role() {
    // A model with a version, registered through the API's writer on the
    // store the web interface then opens.
    let data = tempfile::tempdir().unwrap();
    let store = [("MR_DATA_DIR", data.path().display().to_string())];
    let mut api = LambdaFunction::start_with("registered-models", &store).await;
    let (user, groups) = a_writer(&api.policy);
    let create = async |path: String, body: Json| {
        let event = http_api_event("POST", &path, Some(body), api.caller(&user, &groups));
        let (status, _, body) = api.respond(event).await;
        assert_eq!(status, 201, "{body}\n{}", api.process.log());
        let body: Json = serde_json::from_str(&body).unwrap();
        body["id"].as_str().expect("an id").to_string()
    };
    let mid = create(
        format!("{V1}/registered_models"),
        json!({"name": "web-forms"}),
    )
    .await;
    let vid = create(
        format!("{V1}/registered_models/{mid}/versions"),
        json!({"name": "v1", "registeredModelId": mid}),
    )
    .await;
    stop(&mut api.process).await;

    // The writer moves an alias from the model's page, with its form's token.
    let f = LambdaFunction::start_with(WEB, &store).await;
    let model_page = format!("/ui/models/{mid}");
    let page = || http_api_event("GET", &model_page, None, f.caller(&user, &groups));
    let (status, _, shown) = f.respond(page()).await;
    assert_eq!(status, 200, "{shown}\n{}", f.process.log());
    let csrf = csrf_of(&shown).expect("the alias form, with its token");
    let form = [
        ("csrf", csrf.as_str()),
        ("alias", "production"),
        ("version", vid.as_str()),
    ];
    let body = serde_urlencoded::to_string(form).unwrap();
    let moved = form_event(
        &format!("{model_page}/aliases"),
        &body,
        f.caller(&user, &groups),
    );
    let (status, headers, body) = f.respond(moved).await;
    assert_eq!(status, 303, "{body}\n{}", f.process.log());
    assert_eq!(headers["location"].as_str(), Some(model_page.as_str()));
    let (_, _, shown) = f.respond(page()).await;
    assert!(
        shown.contains("class=\"badge alias\">production<"),
        "the version carries the alias: {shown}"
    );
}

/// A browser's GET of `path_and_query` in an HTTP API (payload 2.0) event,
/// without a bearer token: API Gateway takes the browser's `Cookie` header
/// out of `headers` and sends its cookies as the event's `cookies` array.
fn browser_event(path_and_query: &str, cookies: &[&str]) -> Json {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut event = http_api_event("GET", path, None, None);
    event["routeKey"] = json!("GET /ui/{proxy+}");
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["rawQueryString"] = json!(query);
    if !query.is_empty() {
        let params: BTreeMap<String, String> = serde_urlencoded::from_str(query).unwrap();
        event["queryStringParameters"] = json!(params);
    }
    event["headers"] = json!({
        "accept": "text/html",
        "host": event["headers"]["host"].clone(),
        "user-agent": "Mozilla/5.0",
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    event
}

/// The body of a Lambda proxy response, decoded when base64.
fn body_text(response: &Json) -> String {
    let raw = response["body"].as_str().unwrap_or_default();
    if response["isBase64Encoded"].as_bool() == Some(true) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64 body");
        String::from_utf8(bytes).expect("UTF-8 body")
    } else {
        raw.to_string()
    }
}

#[tokio::test]
async fn lambda_web_logs_a_person_in_through_the_identity_provider() {
    use registry_tests::oidc::{Provider, ProviderOpts, hidden_inputs};

    const CLIENT: &str = "model-registry-web";
    // The registry's URL (the PublicUrl parameter): the provider only
    // sends the browser there, which the test does by hand.
    const CALLBACK: &str = "https://registry.example.com/ui/auth/callback";
    let provider = Provider::start(ProviderOpts {
        client_id: CLIENT.into(),
        client_secret: Some("the client's secret".into()),
        redirect_uris: vec![CALLBACK.into()],
        keys_dir: None,
        port: 0,
    })
    .await;
    // The parameters an operator gives for a login (Issuer, OidcClientId,
    // OidcClientSecret, PublicUrl, WebSecret; the template's `!If`s turn
    // the first and the last into MR_OIDC_ISSUER and MR_OIDC_REDIRECT_URL).
    // JwksUrl stays at its default, empty: the Issuer's keys come from its
    // discovery document, which the provider serves.
    let extra = [
        ("MR_JWT_ISSUER", provider.issuer()),
        ("MR_JWT_JWKS", String::new()),
        ("MR_OIDC_ISSUER", provider.issuer()),
        ("MR_OIDC_CLIENT_ID", CLIENT.into()),
        ("MR_OIDC_CLIENT_SECRET", "the client's secret".into()),
        ("MR_OIDC_REDIRECT_URL", CALLBACK.into()),
        (
            "MR_WEB_SECRET",
            "a web secret of more than thirty-two characters".into(),
        ),
    ];
    let f = LambdaFunction::start_with(WEB, &extra).await;
    assert_eq!(f.env.get("MR_AUTH").map(String::as_str), Some("jwt"));
    // The HTTP API's answer as the function returns it to Lambda: payload
    // 2.0 has `headers` (one value each) and `cookies` (the Set-Cookies).
    let answer = async |event: Json| -> Json {
        match f.api.invoke(event, &f.process).await {
            Outcome::Response(v) => v,
            Outcome::Error(kind, body) => {
                panic!("invocation error {kind}: {body}\n{}", f.process.log())
            }
        }
    };
    let location = |a: &Json| -> String {
        a["headers"]["location"]
            .as_str()
            .unwrap_or_else(|| panic!("no location: {a}"))
            .to_string()
    };
    // The Set-Cookies of an answer: all in `cookies`, none left in `headers`
    // (where two would be joined into one value a browser cannot split).
    let set_cookies = |a: &Json| -> Vec<String> {
        assert!(
            a["headers"]
                .as_object()
                .is_some_and(|h| !h.keys().any(|k| k.eq_ignore_ascii_case("set-cookie"))),
            "Set-Cookie left in the headers: {a}"
        );
        a["cookies"]
            .as_array()
            .unwrap_or_else(|| panic!("no cookies: {a}"))
            .iter()
            .map(|c| c.as_str().expect("a cookie line").to_string())
            .collect()
    };
    // `name=value` of the Set-Cookie line of cookie `name`.
    let pair = |lines: &[String], name: &str| -> String {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} among {lines:?}"));
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(line.contains(attribute), "{attribute} missing: {line}");
        }
        line.split(';').next().unwrap().to_string()
    };

    // A page without a session: to the login, which comes back to it.
    let a = answer(browser_event("/ui/", &[])).await;
    assert_eq!(a["statusCode"], 303, "{a}\n{}", f.process.log());
    assert_eq!(location(&a), "/ui/login?next=%2Fui%2F");

    // The login: to the provider's authorization endpoint, with the login
    // cookie, in the response's `cookies`.
    let a = answer(browser_event(&location(&a), &[])).await;
    assert_eq!(a["statusCode"], 303, "{a}\n{}", f.process.log());
    let authorize = location(&a);
    assert!(
        authorize.starts_with(&format!("{}/authorize?", provider.issuer())),
        "{authorize}"
    );
    let cookies = set_cookies(&a);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let login_cookie = pair(&cookies, "__Host-mr_login");

    // At the provider (the browser's own requests there): its login page,
    // then its form sent as a writer of the bundled policy.
    let (user, groups) = a_writer(&f.policy);
    let http = not_following();
    let page = http.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let mut form = hidden_inputs(&page.text().await.unwrap());
    form.push(("username".into(), user.clone()));
    form.push(("groups".into(), groups.join(",")));
    let signed_in = http
        .post(format!("{}/authorize", provider.issuer()))
        .header("content-type", FORM)
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let back = signed_in.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let callback = back
        .strip_prefix("https://registry.example.com")
        .unwrap_or_else(|| panic!("back to the registry: {back}"));
    assert!(
        callback.starts_with("/ui/auth/callback?code="),
        "{callback}"
    );

    // Back at the registry without the login cookie (another browser): no
    // session. The cookie is what binds the answer to the login.
    let a = answer(browser_event(callback, &[])).await;
    assert_eq!(a["statusCode"], 400, "{a}\n{}", f.process.log());
    assert_eq!(provider.tokens_issued(), 0, "the code was not exchanged");

    // With it (from the event's `cookies`): the code is exchanged, and the
    // answer sets BOTH cookies, the session and the login's removal.
    let a = answer(browser_event(callback, &[&login_cookie])).await;
    assert_eq!(a["statusCode"], 303, "{a}\n{}", f.process.log());
    assert_eq!(location(&a), "/ui/");
    assert_eq!(provider.tokens_issued(), 1);
    let cookies = set_cookies(&a);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let session = pair(&cookies, "__Host-mr_session");
    assert!(session.len() > "__Host-mr_session=".len(), "{session}");
    assert_eq!(pair(&cookies, "__Host-mr_login"), "__Host-mr_login=");
    let cleared = cookies
        .iter()
        .find(|c| c.starts_with("__Host-mr_login="))
        .unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The page, with the session among the browser's other cookies (which
    // lambda_http joins into one Cookie header).
    let a = answer(browser_event("/ui/", &["theme=dark", &session])).await;
    assert_eq!(a["statusCode"], 200, "{a}\n{}", f.process.log());
    let body = body_text(&a);
    assert!(
        body.contains("Signed in as") && body.contains(&user),
        "{body}"
    );
}

// ------------------------------------------------------------ change events

/// The key a test signs events with (the Secret's, the parameter's).
const EVENTS_SECRET: &str = "s3cret";

/// A sink that keeps the events it was sent whose signature is right, and
/// answers the others with 401.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Json>>>,
}

impl Sink {
    /// Serve it on a free port; its URL.
    async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let kept = sink.received.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let signature = format!(
                            "sha256={}",
                            registry::events::hmac_sha256(EVENTS_SECRET.as_bytes(), &body)
                        );
                        let signed = headers
                            .get(registry::events::SIGNATURE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            == Some(signature.as_str());
                        if !signed {
                            return axum::http::StatusCode::UNAUTHORIZED;
                        }
                        kept.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or(Json::Null));
                        axum::http::StatusCode::ACCEPTED
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (sink, url)
    }

    fn events(&self) -> Vec<Json> {
        self.received.lock().unwrap().clone()
    }
}

/// An embedded store in `dir` holding one registered model named `name`,
/// written by `registry-local`, which then stops (the store is one
/// process's file): the change the events function has to deliver.
async fn store_with_a_model(dir: &std::path::Path, name: &str) {
    let (mut writer, base) =
        Process::start_http(ALL_IN_ONE, &[("MR_DATA_DIR", dir.display().to_string())]).await;
    let created = http_client()
        .post(format!("{base}{V1}/registered_models"))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", writer.log());
    writer.terminate();
    writer
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("registry-local stops on SIGTERM");
}

/// The events function's environment beyond its deployment's: the store
/// of `dir`, and no settle time, so a change made a moment ago is old
/// enough (the default waits 10 s for the audit index to catch up).
fn events_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("MR_DATA_DIR", dir.display().to_string()),
        ("MR_EVENTS_SETTLE_MS", "0".to_string()),
        ("MR_EVENTS_SECRET", EVENTS_SECRET.to_string()),
    ]
}

/// The change event that created the model `name`, among `events`: a
/// CloudEvent of the registry's.
fn model_created(events: &[Json], name: &str) {
    let event = events
        .iter()
        .find(|e| e["data"]["entity"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no event of {name} in {events:?}"));
    assert_eq!(event["specversion"], "1.0", "{event}");
    assert_eq!(event["data"]["entityType"], "RegisteredModel", "{event}");
    assert!(
        event["type"].as_str().is_some_and(|t| {
            t.starts_with(registry::events::TYPE_PREFIX) && t.ends_with(".create")
        }),
        "{event}"
    );
}

#[tokio::test]
async fn knative_events_function_delivers_a_round_per_tick_of_its_ping_source() {
    let data = tempfile::tempdir().unwrap();
    store_with_a_model(data.path(), "ticked-on-knative").await;
    let (sink, sink_url) = Sink::start().await;
    // K_SINK is what the SinkBinding injects.
    let mut extra = events_env(data.path());
    extra.push(("K_SINK", sink_url));
    let f = KnativeFunction::start_with(EVENTS, None, &extra).await;

    let docs = knative_documents();
    let (_, ping) = docs
        .iter()
        .find(|(_, d)| {
            d["kind"].as_str() == Some("PingSource")
                && d["spec"]["sink"]["ref"]["name"].as_str() == Some(EVENTS)
        })
        .expect("the events PingSource");
    let namespace = ping["metadata"]["namespace"].as_str().unwrap();
    let name = ping["metadata"]["name"].as_str().unwrap();
    let audience = ping["spec"]["sink"]["audience"].as_str().unwrap();
    let identity = ping_source_identities(namespace, name)
        .into_iter()
        .find(|id| !f.policy.roles_of(id).is_empty())
        .expect("the policy names the PingSource's identity");

    // A tick: a CloudEvent in binary mode, as the PingSource posts it.
    let http = http_client();
    let tick = |token: Option<String>| {
        let mut req = http
            .post(format!("{}/", f.base))
            .header("ce-specversion", "1.0")
            .header("ce-id", "tick-1")
            .header("ce-type", "dev.knative.sources.ping")
            .header(
                "ce-source",
                format!("/apis/v1/namespaces/{namespace}/pingsources/{name}"),
            );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // Without Eventing's OIDC feature the tick has no token: refused, as is
    // a caller the policy does not name; nothing is delivered.
    assert_eq!(tick(None).await.unwrap().status(), 401);
    let stranger = f.token(audience, "system:serviceaccount:default:default", &[]);
    assert_eq!(tick(Some(stranger)).await.unwrap().status(), 403);
    assert!(sink.events().is_empty());

    let answered = tick(Some(f.token(audience, &identity, &[]))).await.unwrap();
    let status = answered.status();
    let report: Json = answered.json().await.unwrap_or(Json::Null);
    assert_eq!(status, 200, "{identity}: {report}\n{}", f.process.log());
    assert!(
        report["delivered"].as_u64().is_some_and(|n| n >= 1) && report["caughtUp"] == true,
        "{report}\n{}",
        f.process.log()
    );
    model_created(&sink.events(), "ticked-on-knative");
}

#[tokio::test]
async fn lambda_events_function_delivers_a_round_per_scheduled_event() {
    let data = tempfile::tempdir().unwrap();
    store_with_a_model(data.path(), "ticked-on-lambda").await;
    let (sink, sink_url) = Sink::start().await;
    // MR_EVENTS_SINK and MR_EVENTS_SECRET are the EventsSink and
    // EventsSecret parameters an operator gives.
    let mut extra = events_env(data.path());
    extra.push(("MR_EVENTS_SINK", sink_url));
    let f = LambdaFunction::start_with(EVENTS, &extra).await;

    // What an EventBridge schedule invokes the function with.
    let tick = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-30T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/registry-EveryMinute"],
        "detail": {}
    });
    let report = match f.api.invoke(tick, &f.process).await {
        Outcome::Response(v) => v,
        Outcome::Error(kind, body) => {
            panic!("invocation error {kind}: {body}\n{}", f.process.log())
        }
    };
    assert!(
        report["delivered"].as_u64().is_some_and(|n| n >= 1) && report["caughtUp"] == true,
        "{report}\n{}",
        f.process.log()
    );
    model_created(&sink.events(), "ticked-on-lambda");
}
