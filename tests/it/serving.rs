//! Serving: serving environments, inference services (with `/model`, `/version`, `/serves`)
//! and serve models. Also holds the list checker shared with `experiments.rs`
//! ([`check_paged_orders`]).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;

// ---------------------------------------------------------------- shared list checks

pub(crate) const ORDER_BYS: [&str; 4] = ["ID", "CREATE_TIME", "LAST_UPDATE_TIME", "NAME"];
pub(crate) const SORT_ORDERS: [&str; 2] = ["ASC", "DESC"];

/// Distinct milliseconds make CREATE_TIME / LAST_UPDATE_TIME orders meaningful.
pub(crate) async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    N(u64),
    S(String),
}

fn sort_key(item: &Value, order_by: &str) -> Key {
    match order_by {
        "ID" => Key::N(id_num(item)),
        "CREATE_TIME" => Key::N(num_str(item, "createTimeSinceEpoch")),
        "LAST_UPDATE_TIME" => Key::N(num_str(item, "lastUpdateTimeSinceEpoch")),
        "NAME" => Key::S(item["name"].as_str().unwrap_or_default().to_owned()),
        other => panic!("no sort key for {other}"),
    }
}

/// Walks `path` (plus `extra` query parameters) with `pageSize=page_size` and returns the
/// concatenated pages, checking the envelope, full pages before the last, no repeated
/// token, and `nextPageToken: ""` on the last page.
pub(crate) async fn page_through(
    api: &Api,
    path: &str,
    extra: &[(&str, &str)],
    page_size: usize,
    max_items: usize,
) -> Vec<Value> {
    let ps = page_size.to_string();
    let mut token = String::new();
    let mut out: Vec<Value> = Vec::new();
    let mut seen_tokens = BTreeSet::new();
    for page_no in 0.. {
        assert!(
            page_no <= max_items + 2,
            "{} {path} {extra:?}: pager does not terminate (the client would loop)",
            api.prefix
        );
        let mut q: Vec<(&str, &str)> = extra.to_vec();
        q.push(("pageSize", &ps));
        if !token.is_empty() {
            q.push(("nextPageToken", &token));
        }
        let page = api.list(path, &q).await;
        assert_eq!(
            page["pageSize"].as_u64(),
            Some(page_size as u64),
            "{path} {q:?}: pageSize echoed: {page}"
        );
        let its = items(&page);
        assert!(
            its.len() <= page_size,
            "{path} {q:?}: more than pageSize items: {page}"
        );
        let next = page["nextPageToken"].as_str().unwrap().to_owned();
        out.extend(its.iter().cloned());
        if next.is_empty() {
            break;
        }
        assert_eq!(
            its.len(),
            page_size,
            "{path} {q:?}: a page with a non-empty nextPageToken must be full: {page}"
        );
        assert!(
            seen_tokens.insert(next.clone()),
            "{path} {q:?}: token {next:?} repeated (the client would loop)"
        );
        token = next;
    }
    out
}

/// Every `orderBy` x `sortOrder` on `path` (plus `extra`), unpaged and with `pageSize=2`:
/// exactly the `expected` items (in their latest state), each once, sorted by the key in
/// the requested direction, pages concatenated equal to the unpaged order, last token "".
pub(crate) async fn check_paged_orders(
    api: &Api,
    path: &str,
    extra: &[(&str, &str)],
    expected: &[Value],
) {
    let expected_ids: Vec<String> = ids_of(expected);
    let expected_set: BTreeSet<String> = expected_ids.iter().cloned().collect();
    assert_eq!(
        expected_set.len(),
        expected.len(),
        "test setup: duplicate expected items"
    );
    for ob in ORDER_BYS {
        for so in SORT_ORDERS {
            let mut q: Vec<(&str, &str)> = extra.to_vec();
            q.push(("orderBy", ob));
            q.push(("sortOrder", so));
            let ctx = format!("{} {path} {q:?}", api.prefix);

            let full = api.list(path, &q).await;
            assert_eq!(full["nextPageToken"], "", "{ctx}: unpaged list is complete");
            assert_eq!(full["pageSize"], json!(0), "{ctx}: no pageSize = 0: {full}");
            let full_items = items(&full);
            let full_ids = ids_of(&full_items);
            assert_eq!(
                full_ids.iter().cloned().collect::<BTreeSet<_>>(),
                expected_set,
                "{ctx}: exactly the expected items"
            );
            assert_eq!(full_ids.len(), expected.len(), "{ctx}: duplicates: {full}");
            for it in &full_items {
                let want = expected.iter().find(|e| id(e) == id(it)).unwrap();
                assert_eq!(it, want, "{ctx}: listed item differs from its latest state");
                assert_entity_basics(it);
            }
            for w in full_items.windows(2) {
                let (a, b) = (sort_key(&w[0], ob), sort_key(&w[1], ob));
                let ok = if so == "ASC" { a <= b } else { a >= b };
                assert!(ok, "{ctx}: {} then {} out of order", w[0], w[1]);
            }

            let paged = page_through(api, path, &q, 2, expected.len()).await;
            assert_eq!(
                ids_of(&paged),
                full_ids,
                "{ctx}: pages of 2 concatenated must equal the unpaged order"
            );
        }
    }
    // Default order is ID ascending.
    let default = api.list(path, extra).await;
    let mut by_id = expected_ids.clone();
    by_id.sort_by_key(|s| s.parse::<u64>().unwrap());
    assert_eq!(
        ids_of(&items(&default)),
        by_id,
        "{} {path} {extra:?}: default order is ID ASC",
        api.prefix
    );
}

/// Names of the filtered list (unpaged), as a set.
pub(crate) async fn filtered_names(api: &Api, path: &str, filter: &str) -> BTreeSet<String> {
    let l = api.list(path, &[("filterQuery", filter)]).await;
    name_set(&items(&l))
}

// ---------------------------------------------------------------- fixtures

async fn create_env(api: &Api, name: &str) -> Value {
    api.post("/serving_environments", &json!({ "name": name }))
        .await
        .ok(201)
}

async fn create_isvc(api: &Api, env_id: &str, model_id: &str, name: &str) -> Value {
    api.post(
        "/inference_services",
        &json!({"name": name, "servingEnvironmentId": env_id, "registeredModelId": model_id}),
    )
    .await
    .ok(201)
}

/// A model with one version, an environment, and an inference service of that model
/// without `modelVersionId`: (model, version, env, isvc).
async fn deployment(api: &Api, label: &str) -> (Value, Value, Value, Value) {
    let (m, v) = api.model_and_version(label).await;
    let env = create_env(api, &uniq(&format!("{label}-env"))).await;
    let isvc = create_isvc(api, &id(&env), &id(&m), &format!("{label}-isvc")).await;
    (m, v, env, isvc)
}

/// Name of the i-th of `n` created items: a permutation, so NAME order differs from ID order.
fn perm_name(label: &str, i: usize, n: usize) -> String {
    format!("{label}-{:02}", (i * 5) % n)
}

// ---------------------------------------------------------------- serving environments

#[tokio::test]
async fn serving_environment_create_get_and_errors() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("env-{}", api.tag()));
        let ext = uniq("env-ext");
        let body = json!({
            "name": name,
            "description": "k8s prod cluster",
            "externalId": ext,
            "customProperties": {"region": cp_str("eu-west-1"), "gpus": cp_int(8)}
        });
        let env = api.post("/serving_environments", &body).await.ok(201);
        assert_entity_basics(&env);
        for f in ["name", "description", "externalId", "customProperties"] {
            assert_eq!(env.get(f), body.get(f), "field `{f}` in {env}");
        }
        let got = api
            .get(&format!("/serving_environments/{}", id(&env)))
            .await
            .ok(200);
        assert_eq!(got, env);

        let minimal = create_env(&api, &uniq("env-min")).await;
        assert_entity_basics(&minimal);
        assert_eq!(minimal["customProperties"], json!({}));
        assert_absent(&minimal, &["description", "externalId"]);
        assert!(id_num(&minimal) > id_num(&env), "ids increase");

        // Names are unique registry-wide, externalIds among contexts.
        api.post("/serving_environments", &json!({ "name": name }))
            .await
            .err(409);
        api.post(
            "/serving_environments",
            &json!({"name": uniq("env-x"), "externalId": ext}),
        )
        .await
        .err(409);
        // Required name, strict decoding.
        api.post("/serving_environments", &json!({"description": "no name"}))
            .await
            .err(422);
        api.post("/serving_environments", &json!({"name": ""}))
            .await
            .err(422);
        api.post(
            "/serving_environments",
            &json!({"name": uniq("env-bogus"), "bogus": 1}),
        )
        .await
        .err(400);
        api.post(
            "/serving_environments",
            &json!({"name": uniq("env-st"), "state": "LIVE"}),
        )
        .await
        .err(400);
        api.post("/serving_environments", &json!({"name": "e".repeat(300)}))
            .await
            .client_err();
        api.raw(reqwest::Method::POST, "/serving_environments", "{not json")
            .await
            .err(400);
        // GET errors.
        api.get("/serving_environments/999999").await.err(404);
        api.get("/serving_environments/abc").await.err(400);
    }
}

#[tokio::test]
async fn serving_environment_patch_and_find() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("envp-{}", api.tag()));
        let ext = uniq("envp-ext");
        let env = api
            .post(
                "/serving_environments",
                &json!({"name": name, "externalId": ext, "customProperties": {"a": cp_str("1")}}),
            )
            .await
            .ok(201);
        let path = format!("/serving_environments/{}", id(&env));

        tick().await;
        let p = api
            .patch(&path, &json!({"description": "now described"}))
            .await
            .ok(200);
        assert_eq!(p["description"], "now described");
        assert_eq!(p["name"], json!(name), "name kept");
        assert_eq!(
            p["customProperties"], env["customProperties"],
            "absent keeps"
        );
        assert_eq!(p["createTimeSinceEpoch"], env["createTimeSinceEpoch"]);
        assert!(
            num_str(&p, "lastUpdateTimeSinceEpoch") > num_str(&env, "lastUpdateTimeSinceEpoch"),
            "lastUpdateTimeSinceEpoch increases: {env} -> {p}"
        );
        let p2 = api
            .patch(&path, &json!({"customProperties": {"b": cp_bool(true)}}))
            .await
            .ok(200);
        assert_eq!(
            p2["customProperties"],
            json!({"b": cp_bool(true)}),
            "customProperties replaces the map"
        );
        assert_eq!(p2["description"], "now described");
        assert_eq!(api.get(&path).await.ok(200), p2);

        // Immutable / unknown fields, unknown ids.
        for bad in [
            json!({"name": "renamed"}),
            json!({"id": "5"}),
            json!({"createTimeSinceEpoch": "1"}),
            json!({"bogus": true}),
        ] {
            api.patch(&path, &bad).await.err(400);
        }
        api.patch("/serving_environments/999999", &json!({"description": "x"}))
            .await
            .err(404);

        // Find by name, by externalId.
        let by_name = api
            .get_q("/serving_environment", &[("name", &name)])
            .await
            .ok(200);
        assert_eq!(by_name, p2);
        let by_ext = api
            .get_q("/serving_environment", &[("externalId", &ext)])
            .await
            .ok(200);
        assert_eq!(by_ext, p2);
        api.get_q("/serving_environment", &[("name", "no-such-env")])
            .await
            .err(404);
        api.get_q("/serving_environment", &[("externalId", "no-such-ext")])
            .await
            .err(404);
        api.get("/serving_environment").await.err(400);
    }
}

#[tokio::test]
async fn serving_environments_ordering_and_paging() {
    const N: usize = 7;
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let mut envs = Vec::new();
        for i in 0..N {
            envs.push(create_env(&api, &perm_name("env", i, N)).await);
            tick().await;
        }
        for i in [4, 1, 5] {
            envs[i] = api
                .patch(
                    &format!("/serving_environments/{}", id(&envs[i])),
                    &json!({"description": format!("touched {i}")}),
                )
                .await
                .ok(200);
            tick().await;
        }
        check_paged_orders(&api, "/serving_environments", &[], &envs).await;

        // filterQuery on own fields and custom properties.
        api.patch(
            &format!("/serving_environments/{}", id(&envs[2])),
            &json!({"customProperties": {"tier": cp_str("gold")}}),
        )
        .await
        .ok(200);
        assert_eq!(
            filtered_names(&api, "/serving_environments", "tier = 'gold'").await,
            set([perm_name("env", 2, N)])
        );
        assert_eq!(
            filtered_names(&api, "/serving_environments", "description LIKE 'touched%'").await,
            set([4, 1, 5].map(|i| perm_name("env", i, N)))
        );
        assert_eq!(
            filtered_names(&api, "/serving_environments", "name = 'env-03'").await,
            set(["env-03"])
        );
    }
}

// ---------------------------------------------------------------- inference services

#[tokio::test]
async fn inference_service_create_via_both_routes() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (m, v) = api.model_and_version(&format!("isvc-{}", api.tag())).await;
        let env = create_env(&api, &uniq("isvc-env")).await;
        let (mid, vid, eid) = (id(&m), id(&v), id(&env));

        let body = json!({
            "name": "mnist-isvc",
            "servingEnvironmentId": eid,
            "registeredModelId": mid,
            "modelVersionId": vid,
            "runtime": "kserve-ovms",
            "desiredState": "DEPLOYED",
            "description": "first deployment",
            "externalId": uniq("isvc-ext"),
            "customProperties": {"url": cp_str("https://mnist.example.com")}
        });
        let full = api.post("/inference_services", &body).await.ok(201);
        assert_entity_basics(&full);
        for f in [
            "name",
            "servingEnvironmentId",
            "registeredModelId",
            "modelVersionId",
            "runtime",
            "desiredState",
            "description",
            "externalId",
            "customProperties",
        ] {
            assert_eq!(full.get(f), body.get(f), "field `{f}` in {full}");
        }
        assert_eq!(
            api.get(&format!("/inference_services/{}", id(&full)))
                .await
                .ok(200),
            full
        );

        // Under the environment: servingEnvironmentId comes from the path.
        let minimal = api
            .post(
                &format!("/serving_environments/{eid}/inference_services"),
                &json!({"name": "minimal", "registeredModelId": mid}),
            )
            .await
            .ok(201);
        assert_entity_basics(&minimal);
        assert_eq!(minimal["servingEnvironmentId"], json!(eid));
        assert_eq!(minimal["registeredModelId"], json!(mid));
        assert_eq!(
            minimal["desiredState"], "DEPLOYED",
            "desiredState defaults to DEPLOYED: {minimal}"
        );
        assert_eq!(minimal["customProperties"], json!({}));
        assert_absent(
            &minimal,
            &["modelVersionId", "runtime", "description", "externalId"],
        );
        // The path id may be repeated in the body.
        let again = api
            .post(
                &format!("/serving_environments/{eid}/inference_services"),
                &json!({"name": "repeated", "registeredModelId": mid, "servingEnvironmentId": eid}),
            )
            .await
            .ok(201);
        assert_eq!(again["servingEnvironmentId"], json!(eid));

        let listed = api
            .list(
                &format!("/serving_environments/{eid}/inference_services"),
                &[],
            )
            .await;
        assert_eq!(items(&listed), vec![full, minimal, again]);
    }
}

#[tokio::test]
async fn inference_service_create_errors() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api
            .create_model(&uniq(&format!("isvce-{}", api.tag())))
            .await;
        let env = create_env(&api, &uniq("isvce-env")).await;
        let other_env = create_env(&api, &uniq("isvce-env2")).await;
        let (mid, eid) = (id(&m), id(&env));
        create_isvc(&api, &eid, &mid, "taken").await;

        // Names are unique within an environment only.
        api.post(
            "/inference_services",
            &json!({"name": "taken", "servingEnvironmentId": eid, "registeredModelId": mid}),
        )
        .await
        .err(409);
        api.post(
            &format!("/serving_environments/{eid}/inference_services"),
            &json!({"name": "taken", "registeredModelId": mid}),
        )
        .await
        .err(409);
        let elsewhere = create_isvc(&api, &id(&other_env), &mid, "taken").await;
        assert_eq!(elsewhere["servingEnvironmentId"], json!(id(&other_env)));

        // Missing required fields.
        let r = api
            .post(
                "/inference_services",
                &json!({"name": "no-model", "servingEnvironmentId": eid}),
            )
            .await;
        r.client_err();
        assert!(
            [400, 422].contains(&r.status),
            "missing registeredModelId: 422 or 400, got {}",
            r.status
        );
        let r = api
            .post(
                &format!("/serving_environments/{eid}/inference_services"),
                &json!({"name": "no-model"}),
            )
            .await;
        r.client_err();
        assert!([400, 422].contains(&r.status), "got {}", r.status);
        api.post(
            "/inference_services",
            &json!({"name": "no-env", "registeredModelId": mid}),
        )
        .await
        .err(422);

        // Unknown references.
        api.post(
            "/inference_services",
            &json!({"name": "x", "servingEnvironmentId": "999999", "registeredModelId": mid}),
        )
        .await
        .err(404);
        api.post(
            "/serving_environments/999999/inference_services",
            &json!({"name": "x", "registeredModelId": mid}),
        )
        .await
        .err(404);
        api.post(
            "/inference_services",
            &json!({"name": "x", "servingEnvironmentId": eid, "registeredModelId": "999999"}),
        )
        .await
        .err(404);
        api.post(
            "/inference_services",
            &json!({"name": "x", "servingEnvironmentId": eid, "registeredModelId": mid, "modelVersionId": "999999"}),
        )
        .await
        .err(404);

        // Malformed input.
        for bad in [
            json!({"name": "x", "servingEnvironmentId": eid, "registeredModelId": mid, "desiredState": "RUNNING"}),
            json!({"name": "x", "servingEnvironmentId": eid, "registeredModelId": mid, "bogus": 1}),
            json!({"name": "x", "servingEnvironmentId": eid, "registeredModelId": "abc"}),
            json!({"name": "x", "servingEnvironmentId": "abc", "registeredModelId": mid}),
            json!({"name": "x", "servingEnvironmentId": eid, "registeredModelId": mid, "modelVersionId": 7}),
        ] {
            api.post("/inference_services", &bad).await.err(400);
        }
        // Path and body disagree on the environment.
        api.post(
            &format!("/serving_environments/{eid}/inference_services"),
            &json!({"name": "x", "registeredModelId": mid, "servingEnvironmentId": id(&other_env)}),
        )
        .await
        .err(400);
        api.post(
            "/serving_environments/abc/inference_services",
            &json!({"name": "x", "registeredModelId": mid}),
        )
        .await
        .err(400);

        // Nothing above created anything.
        let l = api
            .list(
                &format!("/serving_environments/{eid}/inference_services"),
                &[],
            )
            .await;
        assert_eq!(names_of(&items(&l)), vec!["taken"], "{l}");

        api.get("/inference_services/999999").await.err(404);
        api.get("/inference_services/abc").await.err(400);
        api.get("/serving_environments/999999/inference_services")
            .await
            .err(404);
    }
}

#[tokio::test]
async fn inference_service_patch_rules() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (m, v, env, isvc) = deployment(&api, &format!("isvcp-{}", api.tag())).await;
        let path = format!("/inference_services/{}", id(&isvc));
        assert_eq!(isvc["desiredState"], "DEPLOYED");

        // What the KServe controller does: store the URL, then undeploy.
        tick().await;
        let p = api
            .patch(
                &path,
                &json!({"customProperties": {"url": cp_str("http://isvc.ns.svc")}, "runtime": "vllm"}),
            )
            .await
            .ok(200);
        assert_eq!(p["customProperties"]["url"], cp_str("http://isvc.ns.svc"));
        assert_eq!(p["runtime"], "vllm");
        assert!(
            num_str(&p, "lastUpdateTimeSinceEpoch") > num_str(&isvc, "lastUpdateTimeSinceEpoch")
        );
        let undeployed = api
            .patch(&path, &json!({"desiredState": "UNDEPLOYED"}))
            .await
            .ok(200);
        assert_eq!(undeployed["desiredState"], "UNDEPLOYED");
        assert_eq!(
            undeployed["runtime"], "vllm",
            "absent fields keep their value"
        );
        assert_eq!(undeployed["customProperties"], p["customProperties"]);
        assert_eq!(undeployed["registeredModelId"], json!(id(&m)));
        assert_eq!(undeployed["servingEnvironmentId"], json!(id(&env)));
        assert_eq!(api.get(&path).await.ok(200), undeployed);

        // Null keeps, like absent.
        let kept = api
            .patch(&path, &json!({"runtime": null, "desiredState": null}))
            .await
            .ok(200);
        assert_eq!(kept["runtime"], "vllm");
        assert_eq!(kept["desiredState"], "UNDEPLOYED");

        // Pin a version, then redeploy.
        let pinned = api
            .patch(
                &path,
                &json!({"modelVersionId": id(&v), "desiredState": "DEPLOYED"}),
            )
            .await
            .ok(200);
        assert_eq!(pinned["modelVersionId"], json!(id(&v)));
        assert_eq!(pinned["desiredState"], "DEPLOYED");

        // Parent ids, name and timestamps are not in the update schema; enums are checked.
        for bad in [
            json!({"registeredModelId": id(&m)}),
            json!({"servingEnvironmentId": id(&env)}),
            json!({"name": "renamed"}),
            json!({"id": id(&isvc)}),
            json!({"lastUpdateTimeSinceEpoch": "1"}),
            json!({"desiredState": "STOPPED"}),
            json!({"desiredState": "deployed"}),
            json!({"bogus": 1}),
        ] {
            api.patch(&path, &bad).await.err(400);
        }
        assert_eq!(
            api.get(&path).await.ok(200),
            pinned,
            "failed PATCHes change nothing"
        );
        api.patch("/inference_services/999999", &json!({"runtime": "x"}))
            .await
            .err(404);
        api.patch("/inference_services/abc", &json!({"runtime": "x"}))
            .await
            .err(400);
    }
}

#[tokio::test]
async fn find_inference_service() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api
            .create_model(&uniq(&format!("isvcf-{}", api.tag())))
            .await;
        let e1 = create_env(&api, &uniq("isvcf-e1")).await;
        let e2 = create_env(&api, &uniq("isvcf-e2")).await;
        let ext = uniq("isvcf-ext");
        let a = api
            .post(
                "/inference_services",
                &json!({"name": "shared", "servingEnvironmentId": id(&e1), "registeredModelId": id(&m), "externalId": ext}),
            )
            .await
            .ok(201);
        let b = create_isvc(&api, &id(&e2), &id(&m), "shared").await;
        let solo = create_isvc(&api, &id(&e2), &id(&m), "solo").await;

        let f = |name: &'static str, parent: String| {
            let api = api.clone();
            async move {
                api.get_q(
                    "/inference_service",
                    &[("name", name), ("parentResourceId", parent.as_str())],
                )
                .await
            }
        };
        assert_eq!(f("shared", id(&e1)).await.ok(200), a);
        assert_eq!(f("shared", id(&e2)).await.ok(200), b);
        assert_eq!(f("solo", id(&e2)).await.ok(200), solo);
        f("solo", id(&e1)).await.err(404);
        f("nope", id(&e1)).await.err(404);
        f("solo", "999999".into()).await.err(404);
        assert_eq!(
            api.get_q("/inference_service", &[("externalId", &ext)])
                .await
                .ok(200),
            a
        );
        api.get_q("/inference_service", &[("externalId", "no-such-ext")])
            .await
            .err(404);
        // A name matching in two environments, without a parent, is not one match.
        api.get_q("/inference_service", &[("name", "shared")])
            .await
            .client_err();
        api.get("/inference_service").await.err(400);
        api.get_q(
            "/inference_service",
            &[("name", "shared"), ("parentResourceId", "abc")],
        )
        .await
        .err(400);
    }
}

#[tokio::test]
async fn inference_service_model_and_version() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (m, v1, env, isvc) = deployment(&api, &format!("isvcmv-{}", api.tag())).await;
        let iid = id(&isvc);
        assert!(isvc.get("modelVersionId").is_none());

        let model = api
            .get(&format!("/inference_services/{iid}/model"))
            .await
            .ok(200);
        assert_eq!(model, m);
        let version = api
            .get(&format!("/inference_services/{iid}/version"))
            .await
            .ok(200);
        assert_eq!(version, v1, "the only version");

        // Without modelVersionId: the latest version of the model by creation time.
        tick().await;
        let v2 = api.create_version(&id(&m), "v2").await;
        let version = api
            .get(&format!("/inference_services/{iid}/version"))
            .await
            .ok(200);
        assert_eq!(version, v2, "latest by creation after adding v2");
        // Updating an older version does not make it the latest.
        tick().await;
        let v1_touched = api
            .patch(
                &format!("/model_versions/{}", id(&v1)),
                &json!({"description": "touched later"}),
            )
            .await
            .ok(200);
        assert_eq!(
            api.get(&format!("/inference_services/{iid}/version"))
                .await
                .ok(200),
            v2,
            "creation time, not update time"
        );
        // Versions of other models do not count.
        let other = api.create_model(&uniq("isvcmv-other")).await;
        api.create_version(&id(&other), "v9").await;
        assert_eq!(
            api.get(&format!("/inference_services/{iid}/version"))
                .await
                .ok(200),
            v2
        );

        // An explicit modelVersionId wins, even over newer versions.
        let pinned = api
            .post(
                "/inference_services",
                &json!({"name": "pinned", "servingEnvironmentId": id(&env), "registeredModelId": id(&m), "modelVersionId": id(&v1)}),
            )
            .await
            .ok(201);
        tick().await;
        let v3 = api.create_version(&id(&m), "v3").await;
        assert_eq!(
            api.get(&format!("/inference_services/{}/version", id(&pinned)))
                .await
                .ok(200),
            v1_touched
        );
        assert_eq!(
            api.get(&format!("/inference_services/{iid}/version"))
                .await
                .ok(200),
            v3,
            "unpinned follows the newest"
        );
        // Re-pinning through PATCH.
        api.patch(
            &format!("/inference_services/{}", id(&pinned)),
            &json!({"modelVersionId": id(&v2)}),
        )
        .await
        .ok(200);
        assert_eq!(
            api.get(&format!("/inference_services/{}/version", id(&pinned)))
                .await
                .ok(200),
            v2
        );
        assert_eq!(
            api.get(&format!("/inference_services/{}/model", id(&pinned)))
                .await
                .ok(200),
            m
        );

        // A model without versions: no version to serve.
        let bare = api.create_model(&uniq("isvcmv-bare")).await;
        let bare_isvc = create_isvc(&api, &id(&env), &id(&bare), "bare").await;
        api.get(&format!("/inference_services/{}/version", id(&bare_isvc)))
            .await
            .err(404);
        assert_eq!(
            api.get(&format!("/inference_services/{}/model", id(&bare_isvc)))
                .await
                .ok(200),
            bare
        );

        for sub in ["model", "version"] {
            api.get(&format!("/inference_services/999999/{sub}"))
                .await
                .err(404);
            api.get(&format!("/inference_services/abc/{sub}"))
                .await
                .err(400);
        }
    }
}

// ---------------------------------------------------------------- serve models

const EXECUTION_STATES: [&str; 7] = [
    "UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED",
];

#[tokio::test]
async fn serves_create_and_list() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (m, v1, env, isvc) = deployment(&api, &format!("serve-{}", api.tag())).await;
        let v2 = api.create_version(&id(&m), "v2").await;
        let other = create_isvc(&api, &id(&env), &id(&m), "other").await;
        let serves_path = format!("/inference_services/{}/serves", id(&isvc));

        // Minimal: a generated name, lastKnownState UNKNOWN.
        let first = api
            .post(&serves_path, &json!({"modelVersionId": id(&v1)}))
            .await
            .ok(201);
        assert_entity_basics(&first);
        assert_eq!(first["modelVersionId"], json!(id(&v1)));
        assert_eq!(
            first["lastKnownState"], "UNKNOWN",
            "lastKnownState defaults to UNKNOWN: {first}"
        );
        assert!(
            first["name"].as_str().is_some_and(|n| !n.is_empty()),
            "a serve model without a name gets one: {first}"
        );
        let mut mine = vec![first];
        // Every lastKnownState value.
        for (i, st) in EXECUTION_STATES.iter().enumerate() {
            tick().await;
            let vid = if i % 2 == 0 { id(&v1) } else { id(&v2) };
            let s = api
                .post(
                    &serves_path,
                    &json!({"name": format!("serve-{st}"), "modelVersionId": vid, "lastKnownState": st,
                            "description": format!("in state {st}"),
                            "customProperties": {"attempt": cp_int(i as i64)}}),
                )
                .await
                .ok(201);
            assert_entity_basics(&s);
            assert_eq!(s["lastKnownState"], *st);
            assert_eq!(s["modelVersionId"], json!(vid));
            assert_eq!(s["name"], format!("serve-{st}"));
            assert_eq!(s["customProperties"]["attempt"], cp_int(i as i64));
            mine.push(s);
        }
        // Another inference service's serves are not listed under this one.
        let theirs = api
            .post(
                &format!("/inference_services/{}/serves", id(&other)),
                &json!({"name": "serve-RUNNING", "modelVersionId": id(&v1), "lastKnownState": "RUNNING"}),
            )
            .await
            .ok(201);
        let l = api.list(&serves_path, &[]).await;
        assert_eq!(items(&l), mine, "serves of the isvc, ID ASC");
        let l2 = api
            .list(&format!("/inference_services/{}/serves", id(&other)), &[])
            .await;
        assert_eq!(items(&l2), vec![theirs]);

        // Paging over every order.
        check_paged_orders(&api, &serves_path, &[], &mine).await;
        // filterQuery on own fields and custom properties.
        assert_eq!(
            filtered_names(&api, &serves_path, "lastKnownState = 'RUNNING'").await,
            set(["serve-RUNNING"])
        );
        assert_eq!(
            filtered_names(
                &api,
                &serves_path,
                "lastKnownState IN ('FAILED', 'CANCELED') OR attempt = 0"
            )
            .await,
            set(["serve-FAILED", "serve-CANCELED", "serve-UNKNOWN"])
        );
        assert_eq!(
            filtered_names(&api, &serves_path, &format!("modelVersionId = {}", id(&v2))).await,
            set(["serve-NEW", "serve-COMPLETE", "serve-CACHED"])
        );

        // Errors.
        api.post(
            &serves_path,
            &json!({"name": "serve-RUNNING", "modelVersionId": id(&v1)}),
        )
        .await
        .err(409);
        api.post(&serves_path, &json!({"lastKnownState": "NEW"}))
            .await
            .err(422);
        api.post(
            &serves_path,
            &json!({"modelVersionId": id(&v1), "lastKnownState": "DONE"}),
        )
        .await
        .err(400);
        api.post(
            &serves_path,
            &json!({"modelVersionId": id(&v1), "bogus": 1}),
        )
        .await
        .err(400);
        api.post(&serves_path, &json!({"modelVersionId": "999999"}))
            .await
            .err(404);
        api.post(
            "/inference_services/999999/serves",
            &json!({"modelVersionId": id(&v1)}),
        )
        .await
        .err(404);
        api.get("/inference_services/999999/serves").await.err(404);
        api.get("/inference_services/abc/serves").await.err(400);
        assert_eq!(items(&api.list(&serves_path, &[]).await).len(), mine.len());
    }
}

// ---------------------------------------------------------------- lists of inference services

#[tokio::test]
async fn inference_services_ordering_paging_and_filters() {
    const N: usize = 7;
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let m1 = api.create_model("model-one").await;
        let m2 = api.create_model("model-two").await;
        let env = create_env(&api, "prod").await;
        let noise_env = create_env(&api, "staging").await;
        let noise_a = create_isvc(&api, &id(&noise_env), &id(&m1), "isvc-00").await;

        let mut mine = Vec::new();
        for i in 0..N {
            let model = if i % 3 == 0 { &m2 } else { &m1 };
            let body = json!({
                "name": perm_name("isvc", i, N),
                "servingEnvironmentId": id(&env),
                "registeredModelId": id(model),
                "runtime": if i % 2 == 0 { "kserve" } else { "vllm" },
                "customProperties": {"replicas": cp_int(i as i64)}
            });
            mine.push(api.post("/inference_services", &body).await.ok(201));
            tick().await;
        }
        for i in [5, 0, 3] {
            mine[i] = api
                .patch(
                    &format!("/inference_services/{}", id(&mine[i])),
                    &json!({"desiredState": "UNDEPLOYED"}),
                )
                .await
                .ok(200);
            tick().await;
        }
        let noise_b = create_isvc(&api, &id(&noise_env), &id(&m2), "isvc-01").await;

        let env_path = format!("/serving_environments/{}/inference_services", id(&env));
        check_paged_orders(&api, &env_path, &[], &mine).await;
        let mut all = mine.clone();
        all.push(noise_a.clone());
        all.push(noise_b);
        check_paged_orders(&api, "/inference_services", &[], &all).await;

        let undeployed: BTreeSet<String> =
            [5, 0, 3].iter().map(|&i| perm_name("isvc", i, N)).collect();
        let deployed: BTreeSet<String> = (0..N)
            .filter(|i| ![5, 0, 3].contains(i))
            .map(|i| perm_name("isvc", i, N))
            .collect();
        assert_eq!(
            filtered_names(&api, &env_path, "desiredState = 'UNDEPLOYED'").await,
            undeployed
        );
        assert_eq!(
            filtered_names(&api, &env_path, "desiredState = 'DEPLOYED'").await,
            deployed
        );
        assert_eq!(
            filtered_names(&api, &env_path, "desiredState != 'UNDEPLOYED'").await,
            deployed
        );
        assert_eq!(
            filtered_names(&api, &env_path, "runtime = 'vllm' AND replicas >= 3").await,
            set([3, 5].map(|i| perm_name("isvc", i, N)))
        );
        assert_eq!(
            filtered_names(&api, &env_path, &format!("registeredModelId = {}", id(&m2))).await,
            set([0, 3, 6].map(|i| perm_name("isvc", i, N)))
        );
        assert_eq!(
            filtered_names(&api, &env_path, "replicas.int_value < 2").await,
            set([0, 1].map(|i| perm_name("isvc", i, N)))
        );
        // Global list: the filter spans environments. Under `prod`, isvc-00 and isvc-01 serve
        // model-two; under `staging`, isvc-00 serves model-one and isvc-01 model-two.
        let global = api
            .list(
                "/inference_services",
                &[(
                    "filterQuery",
                    &format!(
                        "registeredModelId = '{}' AND name IN ('isvc-00', 'isvc-01')",
                        id(&m1)
                    ),
                )],
            )
            .await;
        assert_eq!(ids_of(&items(&global)), vec![id(&noise_a)], "{global}");
        let staging_only = api
            .list(
                "/inference_services",
                &[(
                    "filterQuery",
                    &format!("servingEnvironmentId = {}", id(&noise_env)),
                )],
            )
            .await;
        assert_eq!(name_set(&items(&staging_only)), set(["isvc-00", "isvc-01"]));
        // Filter and paging together.
        check_paged_orders(
            &api,
            &env_path,
            &[("filterQuery", "desiredState = 'DEPLOYED'")],
            &mine
                .iter()
                .filter(|i| i["desiredState"] == "DEPLOYED")
                .cloned()
                .collect::<Vec<_>>(),
        )
        .await;
        api.get_q(&env_path, &[("filterQuery", "desiredState = = 'x'")])
            .await
            .err(400);
        api.get_q(
            "/inference_services",
            &[("pageSize", "2"), ("nextPageToken", "garbage!")],
        )
        .await
        .err(400);
    }
}

// ---------------------------------------------------------------- ids

#[tokio::test]
async fn contexts_share_one_id_sequence_and_serves_have_their_own() {
    let srv = Server::start().await;
    let api = srv.api(V1);
    let m = api.create_model("seq-model").await;
    let env = create_env(&api, "seq-env").await;
    let v = api.create_version(&id(&m), "v1").await;
    let isvc = create_isvc(&api, &id(&env), &id(&m), "seq-isvc").await;
    let exp = api
        .post("/experiments", &json!({"name": "seq-exp"}))
        .await
        .ok(201);
    let run = api
        .post(
            "/experiment_runs",
            &json!({"name": "seq-run", "experimentId": id(&exp)}),
        )
        .await
        .ok(201);
    let env2 = create_env(&api, "seq-env2").await;
    let contexts = [&m, &env, &v, &isvc, &exp, &run, &env2];
    let ids: Vec<u64> = contexts.iter().map(|c| id_num(c)).collect();
    for w in ids.windows(2) {
        assert!(
            w[0] < w[1],
            "models, versions, environments, inference services, experiments and runs share one \
             increasing id sequence: {ids:?}"
        );
    }

    // An id belongs to one kind only.
    api.get(&format!("/registered_models/{}", id(&env)))
        .await
        .err(404);
    api.get(&format!("/serving_environments/{}", id(&m)))
        .await
        .err(404);
    api.get(&format!("/inference_services/{}", id(&v)))
        .await
        .err(404);
    api.get(&format!("/experiments/{}", id(&run)))
        .await
        .err(404);
    api.get(&format!("/experiment_runs/{}", id(&exp)))
        .await
        .err(404);

    // Serve models count on their own sequence, starting at 1 on an empty registry.
    let serves_path = format!("/inference_services/{}/serves", id(&isvc));
    let s1 = api
        .post(&serves_path, &json!({"modelVersionId": id(&v)}))
        .await
        .ok(201);
    let s2 = api
        .post(&serves_path, &json!({"modelVersionId": id(&v)}))
        .await
        .ok(201);
    assert_eq!(
        (id(&s1), id(&s2)),
        ("1".to_owned(), "2".to_owned()),
        "serve models have their own id sequence"
    );
    let after = create_env(&api, "seq-env3").await;
    assert!(id_num(&after) > id_num(&env2));

    // externalId is unique among all contexts, whatever their kind.
    let ext = uniq("seq-ext");
    api.patch(
        &format!("/serving_environments/{}", id(&env)),
        &json!({"externalId": ext}),
    )
    .await
    .ok(200);
    api.post(
        "/registered_models",
        &json!({"name": uniq("seq-x"), "externalId": ext}),
    )
    .await
    .err(409);
    api.post(
        "/experiments",
        &json!({"name": uniq("seq-x"), "externalId": ext}),
    )
    .await
    .err(409);

    // Both prefixes see the same entities.
    let a3 = srv.api(V1ALPHA3);
    assert_eq!(
        a3.get(&format!("/inference_services/{}", id(&isvc)))
            .await
            .ok(200),
        isvc
    );
    assert_eq!(items(&a3.list(&serves_path, &[]).await).len(), 2);
}
