//! Governance over HTTP (`/api/registry_ext/v1`, see `domain::governance`):
//! every write route of the API and of the extension leaves an audit
//! record naming its caller; aliases with their labels and the
//! `@<alias>` find KServe uses; revert; the audit's filters, paging and
//! visibility, and the admin's check of the chains.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::Secured;
use crate::common::{Api, V1, V1ALPHA3, cp_str, id, uniq};

const EXT: &str = "/api/registry_ext/v1";

/// How long the audit's indexes may lag the table (DynamoDB's global
/// indexes are eventually consistent).
const INDEX_LAG: Duration = Duration::from_secs(20);

/// A client of the extension authenticated as `user`.
fn ext(s: &Secured, user: &str) -> Api {
    anonymous_ext(s).with_bearer(&s.issuer.token(user, &[]))
}

fn anonymous_ext(s: &Secured) -> Api {
    Api::new(s.server.client().clone(), s.server.base_url(), EXT)
}

/// The items of a list answer.
#[track_caller]
fn records(v: &Value) -> Vec<Value> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {v}"))
        .clone()
}

/// A field of every record, in order.
fn column(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The audit's answer to `query` once `done` holds for its items, or the
/// last answer when `INDEX_LAG` has passed (the caller's assertions then
/// say what is missing).
async fn audit_when(api: &Api, query: &[(&str, &str)], done: impl Fn(&[Value]) -> bool) -> Value {
    let deadline = Instant::now() + INDEX_LAG;
    loop {
        let answer = api.get_q("/audit", query).await.ok(200);
        if done(&records(&answer)) || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a version carries alias `alias`'s label.
fn labelled(version: &Value, alias: &str) -> bool {
    version["customProperties"].get(alias) == Some(&cp_str(""))
}

// ------------------------------------------------------------ every write route

/// Entities the write requests change or create under, made by the admin.
struct Fixture {
    model: String,
    version: String,
    artifact: String,
    environment: String,
    inference_service: String,
    experiment: String,
    run: String,
    /// Entities with a second revision, to revert to their first.
    revert_model: String,
    revert_version: String,
    revert_artifact: String,
    /// A model with an approval policy (set by the admin first).
    policy_model: String,
}

/// The alias the delete route removes (set by the admin first).
const DROPPED_ALIAS: &str = "to-drop";

impl Fixture {
    async fn create(api: &Api, ext: &Api) -> Fixture {
        let model = id(&api.create_model(&uniq("gov")).await);
        let version = id(&api.create_version(&model, "v1").await);
        let artifact = id(&api
            .upsert_new_artifact(
                &version,
                json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"}),
            )
            .await);
        let environment = id(&api
            .post("/serving_environments", &json!({"name": uniq("env")}))
            .await
            .ok(201));
        let inference_service = id(&api
            .post(
                "/inference_services",
                &json!({"name": "isvc", "servingEnvironmentId": environment,
                        "registeredModelId": model}),
            )
            .await
            .ok(201));
        let experiment = id(&api
            .post("/experiments", &json!({"name": uniq("exp")}))
            .await
            .ok(201));
        let run = id(&api
            .post(
                "/experiment_runs",
                &json!({"name": "run", "experimentId": experiment}),
            )
            .await
            .ok(201));

        let revert_model = id(&api.create_model(&uniq("gov-revert")).await);
        let revert_version = id(&api.create_version(&revert_model, "v1").await);
        let revert_artifact = id(&api
            .upsert_new_artifact(
                &revert_version,
                json!({"artifactType": "doc-artifact", "name": "readme", "uri": "s3://b/r"}),
            )
            .await);
        for path in [
            format!("/registered_models/{revert_model}"),
            format!("/model_versions/{revert_version}"),
        ] {
            api.patch(&path, &json!({"description": "second"}))
                .await
                .ok(200);
        }
        api.patch(
            &format!("/artifacts/{revert_artifact}"),
            &json!({"artifactType": "doc-artifact", "description": "second"}),
        )
        .await
        .ok(200);

        ext.raw(
            Method::PUT,
            &format!("/registered_models/{model}/aliases/{DROPPED_ALIAS}"),
            &json!({"modelVersionId": version}).to_string(),
        )
        .await
        .ok(200);
        let policy_model = id(&api.create_model(&uniq("gov-policy")).await);
        ext.raw(
            Method::PUT,
            &format!("/registered_models/{policy_model}/approval_policy"),
            &json!({"requiredApprovals": 1}).to_string(),
        )
        .await
        .ok(200);
        Fixture {
            model,
            version,
            artifact,
            environment,
            inference_service,
            experiment,
            run,
            revert_model,
            revert_version,
            revert_artifact,
            policy_model,
        }
    }
}

/// One write request, ready to send, and the audit record it must leave.
struct Write {
    /// The route as the table names it, for messages.
    route: String,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    entity_type: &'static str,
    action: &'static str,
    /// The response's field holding the id of the entity written.
    id_field: &'static str,
    /// The group (bound to the role the route needs) of the caller.
    group: &'static str,
}

fn write(
    (method, route): (&str, &str),
    id: &str,
    body: Option<Value>,
    status: u16,
    (entity_type, action): (&'static str, &'static str),
    id_field: &'static str,
) -> Write {
    Write {
        route: format!("{} {route}", method.to_uppercase()),
        method: Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method"),
        path: route.replace("{id}", id),
        body,
        status,
        entity_type,
        action,
        id_field,
        group: "writers",
    }
}

/// A valid request for a write route of the Kubeflow API, `None` for a
/// route this test does not know yet.
fn kubeflow_write(method: &str, path: &str, fx: &Fixture) -> Option<Write> {
    let name = uniq("w");
    let created = |t| (t, "CREATE");
    let updated = |t| (t, "UPDATE");
    let describe = json!({ "description": name });
    let (id, body, record) = match (method, path) {
        ("post", "/artifacts") => (
            "",
            json!({"artifactType": "model-artifact", "name": name, "uri": "s3://b/a"}),
            created("Artifact"),
        ),
        ("patch", "/artifacts/{id}") => (
            fx.artifact.as_str(),
            json!({"artifactType": "model-artifact", "description": name}),
            updated("Artifact"),
        ),
        ("post", "/model_artifacts") => (
            "",
            json!({"name": name, "uri": "s3://b/m"}),
            created("Artifact"),
        ),
        ("patch", "/model_artifacts/{id}") => (
            fx.artifact.as_str(),
            json!({"artifactType": "model-artifact", "description": name}),
            updated("Artifact"),
        ),
        ("post", "/registered_models") => ("", json!({"name": name}), created("RegisteredModel")),
        ("patch", "/registered_models/{id}") => {
            (fx.model.as_str(), describe, updated("RegisteredModel"))
        }
        ("post", "/registered_models/{id}/versions") => (
            fx.model.as_str(),
            json!({"name": name, "registeredModelId": fx.model}),
            created("ModelVersion"),
        ),
        ("post", "/model_versions") => (
            "",
            json!({"name": name, "registeredModelId": fx.model}),
            created("ModelVersion"),
        ),
        ("patch", "/model_versions/{id}") => {
            (fx.version.as_str(), describe, updated("ModelVersion"))
        }
        ("post", "/model_versions/{id}/artifacts") => (
            fx.version.as_str(),
            json!({"artifactType": "model-artifact", "name": name, "uri": "s3://b/v"}),
            created("Artifact"),
        ),
        ("post", "/serving_environments") => {
            ("", json!({"name": name}), created("ServingEnvironment"))
        }
        ("patch", "/serving_environments/{id}") => (
            fx.environment.as_str(),
            describe,
            updated("ServingEnvironment"),
        ),
        ("post", "/serving_environments/{id}/inference_services") => (
            fx.environment.as_str(),
            json!({"name": name, "servingEnvironmentId": fx.environment,
                    "registeredModelId": fx.model}),
            created("InferenceService"),
        ),
        ("post", "/inference_services") => (
            "",
            json!({"name": name, "servingEnvironmentId": fx.environment,
                    "registeredModelId": fx.model}),
            created("InferenceService"),
        ),
        ("patch", "/inference_services/{id}") => (
            fx.inference_service.as_str(),
            json!({"desiredState": "UNDEPLOYED", "description": name}),
            updated("InferenceService"),
        ),
        ("post", "/inference_services/{id}/serves") => (
            fx.inference_service.as_str(),
            json!({"name": name, "modelVersionId": fx.version}),
            created("ServeModel"),
        ),
        ("post", "/experiments") => ("", json!({"name": name}), created("Experiment")),
        ("patch", "/experiments/{id}") => (fx.experiment.as_str(), describe, updated("Experiment")),
        ("post", "/experiments/{id}/experiment_runs") => (
            fx.experiment.as_str(),
            json!({"name": name, "experimentId": fx.experiment}),
            created("ExperimentRun"),
        ),
        ("post", "/experiment_runs") => (
            "",
            json!({"name": name, "experimentId": fx.experiment}),
            created("ExperimentRun"),
        ),
        ("patch", "/experiment_runs/{id}") => (
            fx.run.as_str(),
            json!({"status": "FINISHED", "description": name}),
            updated("ExperimentRun"),
        ),
        ("post", "/experiment_runs/{id}/artifacts") => (
            fx.run.as_str(),
            json!({"artifactType": "metric", "name": name, "value": 0.5, "step": 1}),
            created("Artifact"),
        ),
        _ => return None,
    };
    let status = if method == "post" { 201 } else { 200 };
    Some(write((method, path), id, Some(body), status, record, "id"))
}

/// A valid request for a write route of the extension, `None` for a route
/// this test does not know yet.
fn extension_write(method: &str, path: &str, fx: &Fixture) -> Option<Write> {
    let reverted = |t| (t, "REVERT");
    // The revision as a string (the API's way with ids) and as a number.
    let w = match (method, path) {
        ("post", "/registered_models/{id}/revert") => write(
            (method, path),
            &fx.revert_model,
            Some(json!({"revision": "1"})),
            200,
            reverted("RegisteredModel"),
            "id",
        ),
        ("post", "/model_versions/{id}/revert") => write(
            (method, path),
            &fx.revert_version,
            Some(json!({"revision": 1})),
            200,
            reverted("ModelVersion"),
            "id",
        ),
        ("post", "/artifacts/{id}/revert") => write(
            (method, path),
            &fx.revert_artifact,
            Some(json!({"revision": "1"})),
            200,
            reverted("Artifact"),
            "id",
        ),
        ("put", "/registered_models/{id}/aliases/{alias}") => write(
            (method, &path.replace("{alias}", "production")),
            &fx.model,
            Some(json!({ "modelVersionId": fx.version })),
            200,
            ("RegisteredModel", "ALIAS"),
            "registeredModelId",
        ),
        ("delete", "/registered_models/{id}/aliases/{alias}") => write(
            (method, &path.replace("{alias}", DROPPED_ALIAS)),
            &fx.model,
            None,
            200,
            ("RegisteredModel", "ALIAS"),
            "registeredModelId",
        ),
        ("put", "/registered_models/{id}/approval_policy") => write(
            (method, path),
            &fx.policy_model,
            Some(json!({"requiredApprovals": 2, "protectedAliases": ["production"]})),
            200,
            ("RegisteredModel", "POLICY"),
            "registeredModelId",
        ),
        ("delete", "/registered_models/{id}/approval_policy") => write(
            (method, path),
            &fx.policy_model,
            None,
            200,
            ("RegisteredModel", "POLICY"),
            "registeredModelId",
        ),
        ("post", "/model_versions/{id}/approvals") => Write {
            group: "approvers",
            ..write(
                (method, path),
                &fx.version,
                Some(json!({"decision": "APPROVE", "comment": "looks good"})),
                200,
                ("ModelVersion", "APPROVAL"),
                "modelVersionId",
            )
        },
        _ => return None,
    };
    Some(w)
}

#[tokio::test]
async fn every_write_route_is_recorded_with_its_caller() {
    let is_write = |m: &str| m != "get";
    let kubeflow: Vec<(&str, &str)> = registry::api::openapi::operations()
        .filter(|(m, _)| is_write(m))
        .collect();
    let extension: Vec<(&str, &str)> = registry::api::extension::ROUTES
        .iter()
        .filter(|r| is_write(r.method))
        .map(|r| (r.method, r.path))
        .collect();
    assert!(
        !kubeflow.is_empty() && !extension.is_empty(),
        "the route tables list writes"
    );
    // One caller per route, so the audit by actor finds that route's
    // records; in the group of the role its route needs.
    let policy = r#"
bindings:
  - role: admin
    users: [root]
  - role: writer
    groups: [writers]
  - role: approver
    groups: [approvers]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let root = ext(&s, "root");
    let fx = Fixture::create(&s.as_user(V1, "root", &[]), &root).await;

    let mut writes = Vec::new();
    let mut missing = Vec::new();
    for (method, path) in &kubeflow {
        match kubeflow_write(method, path, &fx) {
            Some(w) => writes.push((V1, w)),
            None => missing.push(format!("{} {V1}{path}", method.to_uppercase())),
        }
    }
    for (method, path) in &extension {
        match extension_write(method, path, &fx) {
            Some(w) => writes.push((EXT, w)),
            None => missing.push(format!("{} {EXT}{path}", method.to_uppercase())),
        }
    }
    assert!(
        missing.is_empty(),
        "write routes without a request in this test (add one to `kubeflow_write` or \
         `extension_write`): {missing:#?}"
    );

    let users: Vec<String> = (0..writes.len()).map(|i| format!("w{i}")).collect();
    let mut written = Vec::new();
    for ((prefix, w), user) in writes.iter().zip(&users) {
        let token = s.issuer.token(user, &[w.group]);
        let api =
            Api::new(s.server.client().clone(), s.server.base_url(), prefix).with_bearer(&token);
        let r = match &w.body {
            Some(body) => api.raw(w.method.clone(), &w.path, &body.to_string()).await,
            None => api.call(w.method.clone(), &w.path).await,
        };
        let answer = r.ok(w.status);
        let entity_id = answer[w.id_field]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no `{}` in {answer}", w.route, w.id_field))
            .to_string();
        written.push(entity_id);
    }

    for ((w, user), entity_id) in writes.iter().map(|(_, w)| w).zip(&users).zip(&written) {
        let made_it = |r: &Value| {
            r["entityType"] == w.entity_type
                && r["entityId"] == entity_id.as_str()
                && r["action"] == w.action
        };
        let answer = audit_when(&root, &[("actor", user)], |items| items.iter().any(made_it)).await;
        let items = records(&answer);
        assert!(
            items.iter().any(made_it),
            "{} by {user}: no {} record of {} {entity_id} in the audit: {answer:#}",
            w.route,
            w.action,
            w.entity_type
        );
        for r in &items {
            assert_eq!(r["actor"], user.as_str(), "{}: {r:#}", w.route);
            assert_eq!(r["applied"], true, "{}: {r:#}", w.route);
        }
    }
}

// ------------------------------------------------------------ aliases

#[tokio::test]
async fn aliases_over_http() {
    // KServe's storage initializer sends no credentials: anonymous may read
    // the models it deploys.
    let policy = r#"
bindings:
  - role: writer
    users: [ada]
  - role: reader
    users: [rita]
  - role: reader
    users: [anonymous]
    models: ["alias-*"]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let ada_ext = ext(&s, "ada");
    let model = ada.create_model(&uniq("alias")).await;
    let m = id(&model);
    let mut versions = Vec::new();
    for name in ["v1", "v2", "v3"] {
        versions.push(id(&ada.create_version(&m, name).await));
    }
    let (v1, v2, v3) = (&versions[0], &versions[1], &versions[2]);
    let other = ada.create_model(&uniq("alias-other")).await;
    let foreign = id(&ada.create_version(&id(&other), "v1").await);

    let alias_path = |alias: &str| format!("/registered_models/{m}/aliases/{alias}");
    let put = |api: Api, alias: String, body: Value| async move {
        api.raw(Method::PUT, &alias_path(&alias), &body.to_string())
            .await
    };
    let version = |v: String| {
        let ada = ada.clone();
        async move { ada.get(&format!("/model_versions/{v}")).await.ok(200) }
    };

    // Set: the answer names the alias's versions, the version is labelled.
    let set = put(
        ada_ext.clone(),
        "production".into(),
        json!({ "modelVersionId": v1 }),
    )
    .await
    .ok(200);
    assert_eq!(set["alias"], "production", "{set}");
    assert_eq!(set["registeredModelId"], m.as_str(), "{set}");
    assert_eq!(set["modelVersionId"], v1.as_str(), "{set}");
    assert!(
        !set["previousModelVersionId"].is_string(),
        "no previous version: {set}"
    );
    let got = ada_ext.get(&alias_path("production")).await.ok(200);
    assert_eq!(id(&got), *v1, "read your writes: {got}");
    assert!(labelled(&version(v1.clone()).await, "production"));

    // Move: the label moves with it.
    let moved = put(
        ada_ext.clone(),
        "production".into(),
        json!({ "modelVersionId": v2 }),
    )
    .await
    .ok(200);
    assert_eq!(moved["modelVersionId"], v2.as_str(), "{moved}");
    assert_eq!(moved["previousModelVersionId"], v1.as_str(), "{moved}");
    assert_eq!(
        id(&ada_ext.get(&alias_path("production")).await.ok(200)),
        *v2
    );
    assert!(!labelled(&version(v1.clone()).await, "production"));
    assert!(labelled(&version(v2.clone()).await, "production"));

    // What `model-registry://<model>/@production` resolves to, without credentials.
    let anonymous = s.server.api(V1ALPHA3);
    let found = anonymous
        .get_q(
            "/model_version",
            &[("name", "@production"), ("parentResourceId", &m)],
        )
        .await
        .ok(200);
    assert_eq!(id(&found), *v2, "{found}");
    anonymous
        .get_q(
            "/model_version",
            &[("name", "@staging"), ("parentResourceId", &m)],
        )
        .await
        .err(404);

    // A PATCH of the version's custom properties keeps the label.
    let path = format!("/model_versions/{v2}");
    let patched = ada
        .patch(
            &path,
            &json!({"customProperties": {"stage": cp_str("prod")}}),
        )
        .await
        .ok(200);
    assert!(labelled(&patched, "production"), "{patched}");
    assert_eq!(patched["customProperties"]["stage"], cp_str("prod"));
    let cleared = ada
        .patch(&path, &json!({"customProperties": {}}))
        .await
        .ok(200);
    assert!(labelled(&cleared, "production"), "{cleared}");
    assert!(labelled(&version(v2.clone()).await, "production"));

    // The list.
    put(
        ada_ext.clone(),
        "staging".into(),
        json!({ "modelVersionId": v3 }),
    )
    .await
    .ok(200);
    let list = ada_ext
        .get(&format!("/registered_models/{m}/aliases"))
        .await
        .ok(200);
    assert_eq!(
        list,
        json!({"items": [{"alias": "production", "modelVersionId": v2},
                         {"alias": "staging", "modelVersionId": v3}],
               "size": 2, "registeredModelId": m}),
    );

    // Delete: the alias and its label are gone.
    let dropped = ada_ext
        .call(Method::DELETE, &alias_path("production"))
        .await
        .ok(200);
    assert_eq!(dropped["alias"], "production", "{dropped}");
    assert_eq!(dropped["registeredModelId"], m.as_str(), "{dropped}");
    assert!(!dropped["modelVersionId"].is_string(), "{dropped}");
    assert_eq!(dropped["previousModelVersionId"], v2.as_str(), "{dropped}");
    assert!(!labelled(&version(v2.clone()).await, "production"));
    ada_ext.get(&alias_path("production")).await.err(404);
    ada_ext
        .call(Method::DELETE, &alias_path("production"))
        .await
        .err(404);
    anonymous
        .get_q(
            "/model_version",
            &[("name", "@production"), ("parentResourceId", &m)],
        )
        .await
        .err(404);
    let list = ada_ext
        .get(&format!("/registered_models/{m}/aliases"))
        .await
        .ok(200);
    assert_eq!(list["size"], 1, "{list}");

    // Errors.
    let long = "a".repeat(64);
    for bad in [
        "-lead",
        "_lead",
        "sp%20ace",
        "bang!",
        "%C3%A9t%C3%A9",
        &long,
    ] {
        put(
            ada_ext.clone(),
            bad.to_string(),
            json!({ "modelVersionId": v1 }),
        )
        .await
        .err(400);
        ada_ext.get(&alias_path(bad)).await.err(400);
    }
    put(
        ada_ext.clone(),
        "a".repeat(63),
        json!({ "modelVersionId": v1 }),
    )
    .await
    .ok(200);
    put(
        ada_ext.clone(),
        "canary".into(),
        json!({ "modelVersionId": foreign }),
    )
    .await
    .err(400);
    put(ada_ext.clone(), "canary".into(), json!({}))
        .await
        .err(400);
    put(
        ada_ext.clone(),
        "canary".into(),
        json!({"modelVersionId": "999999"}),
    )
    .await
    .err(404);
    ada_ext.get(&alias_path("canary")).await.err(404);
    ada.post(
        "/model_versions",
        &json!({"name": "@canary", "registeredModelId": m}),
    )
    .await
    .err(400);
    ada.post(
        &format!("/registered_models/{m}/versions"),
        &json!({"name": "@canary", "registeredModelId": m}),
    )
    .await
    .err(400);
    let rita = ext(&s, "rita");
    rita.get(&format!("/registered_models/{m}/aliases"))
        .await
        .ok(200);
    put(
        rita.clone(),
        "canary".into(),
        json!({ "modelVersionId": v1 }),
    )
    .await
    .err(403);
    rita.call(Method::DELETE, &alias_path("staging"))
        .await
        .err(403);
    put(
        anonymous_ext(&s),
        "canary".into(),
        json!({ "modelVersionId": v1 }),
    )
    .await
    .err(401);
    anonymous_ext(&s)
        .call(Method::DELETE, &alias_path("staging"))
        .await
        .err(401);
    // Nothing above moved `staging`.
    assert_eq!(id(&ada_ext.get(&alias_path("staging")).await.ok(200)), *v3);
}

// ------------------------------------------------------------ revert

#[tokio::test]
async fn revert_over_http() {
    let policy = r#"
bindings:
  - role: writer
    users: [ada, bob]
  - role: reader
    users: [rita]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let m = id(&ada.create_model(&uniq("revert")).await);
    let path = format!("/registered_models/{m}");
    for i in 1..=3 {
        ada.patch(&path, &json!({"description": format!("take {i}")}))
            .await
            .ok(200);
    }
    let history = |user: &'static str| {
        let api = ext(&s, user);
        let path = format!("/registered_models/{m}/history");
        async move { records(&api.get(&path).await.ok(200)) }
    };
    let before = history("ada").await;
    assert_eq!(column(&before, "revision"), ["4", "3", "2", "1"]);
    let second = before[2]["entity"].clone();
    assert_eq!(second["description"], "take 1", "{second}");

    let revert = format!("{path}/revert");
    let bob = ext(&s, "bob");
    let back = bob.post(&revert, &json!({"revision": "2"})).await.ok(200);
    assert_eq!(back["description"], "take 1", "{back}");
    assert_eq!(
        back,
        ada.get(&path).await.ok(200),
        "the entity as the Kubeflow API shows it"
    );
    let after = history("ada").await;
    let newest = &after[0];
    assert_eq!(newest["revision"], "5", "{newest:#}");
    assert_eq!(newest["action"], "REVERT", "{newest:#}");
    assert_eq!(newest["actor"], "bob", "{newest:#}");
    assert_eq!(newest["applied"], true, "{newest:#}");
    assert_eq!(newest["entity"], back, "{newest:#}");
    assert!(
        newest["changes"]
            .as_array()
            .is_some_and(|c| c
                .contains(&json!({"field": "description", "before": "take 3", "after": "take 1"}))),
        "{newest:#}"
    );

    // The revision as a number; the answer is revision 3's content.
    let again = bob.post(&revert, &json!({"revision": 3})).await.ok(200);
    assert_eq!(again["description"], "take 2", "{again}");

    bob.post(&revert, &json!({"revision": "99"})).await.err(404);
    bob.post(
        "/registered_models/999999/revert",
        &json!({"revision": "1"}),
    )
    .await
    .err(404);
    for bad in [
        "{}",
        "not json",
        r#"{"revision": "two"}"#,
        r#"{"revision": -1}"#,
        r#"{"revision": true}"#,
    ] {
        bob.raw(Method::POST, &revert, bad).await.err(400);
    }
    ext(&s, "rita")
        .post(&revert, &json!({"revision": "2"}))
        .await
        .err(403);
    anonymous_ext(&s)
        .post(&revert, &json!({"revision": "2"}))
        .await
        .err(401);
    // None of the refused reverts wrote anything.
    let last = history("ada").await;
    assert_eq!(column(&last, "revision")[0], "6");
    assert_eq!(ada.get(&path).await.ok(200)["description"], "take 2");
}

// ------------------------------------------------------------ audit and verify

#[tokio::test]
async fn audit_and_verify_over_http() {
    let policy = r#"
bindings:
  - role: admin
    users: [root]
  - role: writer
    users: [ada, bob]
  - role: reader
    users: [vera]
    models: ["visible-*"]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let bob = s.as_user(V1, "bob", &[]);
    let tick = || tokio::time::sleep(Duration::from_millis(5));
    let visible = id(&ada.create_model(&uniq("visible")).await);
    tick().await;
    let hidden = id(&ada.create_model(&uniq("hidden")).await);
    for i in 0..2 {
        tick().await;
        bob.patch(
            &format!("/registered_models/{visible}"),
            &json!({"description": format!("bob {i}")}),
        )
        .await
        .ok(200);
    }
    tick().await;
    ada.patch(
        &format!("/registered_models/{hidden}"),
        &json!({"description": "ada"}),
    )
    .await
    .ok(200);
    const RECORDS: usize = 5;

    let root = ext(&s, "root");
    let all = audit_when(&root, &[("pageSize", "1000")], |items| {
        items.len() >= RECORDS
    })
    .await;
    let all = records(&all);
    assert_eq!(all.len(), RECORDS, "{all:#?}");
    let times: Vec<u64> = column(&all, "time")
        .iter()
        .map(|t| t.parse().expect("time in epoch ms"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    for r in &all {
        for field in [
            "id",
            "time",
            "actor",
            "action",
            "entityType",
            "entityId",
            "revision",
        ] {
            assert!(r[field].is_string(), "`{field}` of {r:#}");
        }
        assert_eq!(r["applied"], true, "{r:#}");
        assert_eq!(r["entity"]["id"], r["entityId"], "{r:#}");
        assert!(r["hash"].as_str().is_some_and(|h| !h.is_empty()), "{r:#}");
    }

    // By actor.
    let bobs = audit_when(&root, &[("actor", "bob")], |items| items.len() >= 2).await;
    let bobs = records(&bobs);
    assert_eq!(column(&bobs, "actor"), ["bob", "bob"]);
    assert_eq!(column(&bobs, "entityId"), [visible.as_str(); 2]);
    assert_eq!(column(&bobs, "action"), ["UPDATE", "UPDATE"]);
    assert_eq!(column(&bobs, "revision"), ["3", "2"]);
    let adas = audit_when(&root, &[("actor", "ada")], |items| items.len() >= 3).await;
    assert_eq!(column(&records(&adas), "actor"), ["ada", "ada", "ada"]);
    let nobody = root.get_q("/audit", &[("actor", "nobody")]).await.ok(200);
    assert_eq!(nobody["size"], 0, "{nobody}");

    // One entity, newest first.
    let one = [
        ("entityType", "RegisteredModel"),
        ("entityId", visible.as_str()),
    ];
    let mine = records(&root.get_q("/audit", &one).await.ok(200));
    assert_eq!(column(&mine, "revision"), ["3", "2", "1"]);
    assert_eq!(column(&mine, "actor"), ["bob", "bob", "ada"]);
    assert_eq!(column(&mine, "action"), ["UPDATE", "UPDATE", "CREATE"]);
    let typed = records(
        &root
            .get_q("/audit", &[("entityType", "ModelVersion")])
            .await
            .ok(200),
    );
    assert!(typed.is_empty(), "no versions were written: {typed:#?}");

    // Paging: every record once, in order.
    for query in [&[][..], &one[..]] {
        let expected: Vec<Value> = if query.is_empty() {
            all.clone()
        } else {
            mine.clone()
        };
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = query.to_vec();
            q.extend([("pageSize", "1"), ("nextPageToken", token.as_str())]);
            let page = root.get_q("/audit", &q).await.ok(200);
            assert_eq!(page["pageSize"], 1, "{page}");
            let items = records(&page);
            assert!(items.len() <= 1, "{page}");
            seen.extend(items);
            token = page["nextPageToken"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if token.is_empty() {
                break;
            }
            assert!(
                seen.len() <= expected.len(),
                "paging does not end: {seen:#?}"
            );
        }
        assert_eq!(column(&seen, "id"), column(&expected, "id"), "{query:?}");
    }

    // By time, both bounds inclusive.
    let t = times[2].to_string();
    let ids_where = |keep: &dyn Fn(u64) -> bool| -> Vec<String> {
        all.iter()
            .zip(&times)
            .filter(|(_, t)| keep(**t))
            .map(|(r, _)| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let since = records(&root.get_q("/audit", &[("since", &t)]).await.ok(200));
    assert_eq!(column(&since, "id"), ids_where(&|x| x >= times[2]));
    assert!(since.len() < RECORDS, "the bound leaves records out");
    let until = records(&root.get_q("/audit", &[("until", &t)]).await.ok(200));
    assert_eq!(column(&until, "id"), ids_where(&|x| x <= times[2]));
    assert!(until.len() < RECORDS, "the bound leaves records out");
    let at = records(
        &root
            .get_q("/audit", &[("since", &t), ("until", &t)])
            .await
            .ok(200),
    );
    assert_eq!(column(&at, "id"), ids_where(&|x| x == times[2]));
    let late = (times[0] + 60_000).to_string();
    let none = root.get_q("/audit", &[("since", &late)]).await.ok(200);
    assert_eq!(none["size"], 0, "{none}");

    // Bad requests.
    for bad in [
        vec![("entityType", "Bogus")],
        vec![("entityId", visible.as_str())],
        vec![("entityType", "RegisteredModel"), ("entityId", "abc")],
        vec![("since", "yesterday")],
        vec![("until", "-1")],
        vec![("pageSize", "many")],
        vec![("nextPageToken", "not-a-token")],
    ] {
        root.get_q("/audit", &bad).await.err(400);
    }

    // A reader of some models sees their records only.
    let vera = ext(&s, "vera");
    let seen = vera.get_q("/audit", &[("pageSize", "1000")]).await.ok(200);
    let items = records(&seen);
    assert_eq!(column(&items, "entityId"), [visible.as_str(); 3]);
    assert_eq!(seen["hidden"], 2, "{seen}");
    assert_eq!(seen["size"], 3, "{seen}");
    vera.get_q("/audit", &one).await.ok(200);
    vera.get_q(
        "/audit",
        &[("entityType", "RegisteredModel"), ("entityId", &hidden)],
    )
    .await
    .err(403);
    anonymous_ext(&s).get("/audit").await.err(401);

    // The check of the chains: the admin's only.
    ext(&s, "ada").get("/audit/verify").await.err(403);
    vera.get("/audit/verify").await.err(403);
    anonymous_ext(&s).get("/audit/verify").await.err(401);
    let deadline = Instant::now() + INDEX_LAG;
    let report = loop {
        let report = root.get("/audit/verify").await.ok(200);
        if report["entities"] == 2 || Instant::now() >= deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["complete"], true, "{report:#}");
    assert_eq!(report["broken"], json!([]), "{report:#}");
    assert_eq!(report["entities"], 2, "{report:#}");
    assert_eq!(report["records"], RECORDS, "{report:#}");
    assert_eq!(report["nextPageToken"], "", "{report:#}");
    let ids: BTreeSet<String> = column(&all, "entityId").into_iter().collect();
    assert_eq!(ids, BTreeSet::from([visible, hidden]));
}
