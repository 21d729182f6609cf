//! Serving: serving environments, inference services (with `/model`, `/version`, `/serves`)
//! and serve models. (What environments and inference services share with the other
//! resources: resources.rs.)

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;
use crate::listing::{check_paged_orders, filtered_names, tick};

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
        check_paged_orders(&api, "/serving_environments", &[], &envs, 2).await;

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

        // (What may not be patched: resources.rs.)
        assert_eq!(api.get(&path).await.ok(200), pinned);
    }
}

/// `modelVersionId` pins the version on create; it must be a version that
/// exists (the other fields: resources.rs).
#[tokio::test]
async fn inference_service_pins_an_existing_model_version_on_create() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (m, v) = api.model_and_version(&format!("isvcv-{}", api.tag())).await;
        let env = create_env(&api, &uniq("isvcv-env")).await;
        let body = |version: &str| {
            json!({"name": uniq("pinned"), "servingEnvironmentId": id(&env),
                   "registeredModelId": id(&m), "modelVersionId": version})
        };
        let pinned = api
            .post("/inference_services", &body(&id(&v)))
            .await
            .ok(201);
        assert_eq!(pinned["modelVersionId"], json!(id(&v)), "{pinned}");
        assert_eq!(
            api.get(&format!("/inference_services/{}", id(&pinned)))
                .await
                .ok(200),
            pinned
        );
        api.post("/inference_services", &body("999999"))
            .await
            .err(404);
        let l = api
            .list(
                &format!("/serving_environments/{}/inference_services", id(&env)),
                &[],
            )
            .await;
        assert_eq!(ids_of(&items(&l)), vec![id(&pinned)], "{l}");
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
        check_paged_orders(&api, &serves_path, &[], &mine, 2).await;
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
        check_paged_orders(&api, &env_path, &[], &mine, 2).await;
        let mut all = mine.clone();
        all.push(noise_a.clone());
        all.push(noise_b);
        check_paged_orders(&api, "/inference_services", &[], &all, 2).await;

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
            2,
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
