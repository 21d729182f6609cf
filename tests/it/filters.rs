//! filterQuery on own fields and custom properties, syntax errors, filter + paging.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;

struct Models {
    by_name: Vec<(String, Value)>,
}

impl Models {
    fn get(&self, name: &str) -> &Value {
        &self
            .by_name
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("fixture {name}"))
            .1
    }
}

async fn fixture(api: &Api) -> Models {
    let bodies = [
        json!({"name": "m-alpha", "owner": "alice", "externalId": "ext-alpha", "customProperties": {
            "framework": cp_str("pytorch"), "epochs": cp_int(10), "accuracy": cp_double(0.91),
            "prod": cp_bool(true), "team-name": cp_str("core"), "mlflow.source.type": cp_str("notebook"),
            "grp": cp_str("yes")}}),
        json!({"name": "m-beta", "owner": "bob", "state": "ARCHIVED", "customProperties": {
            "framework": cp_str("tensorflow"), "epochs": cp_int(20), "accuracy": cp_double(0.85),
            "prod": cp_bool(false), "team-name": cp_str("edge"), "mlflow.source.type": cp_str("job"),
            "grp": cp_str("no")}}),
        json!({"name": "m-gamma", "owner": "alice", "customProperties": {
            "framework": cp_str("pytorch-lightning"), "epochs": cp_int(5), "accuracy": cp_double(0.97),
            "prod": cp_bool(true), "team-name": cp_str("core"), "grp": cp_str("yes")}}),
        json!({"name": "M-DELTA", "owner": "carol", "customProperties": {
            "framework": cp_str("PyTorch"), "epochs": cp_int(30), "accuracy": cp_double(0.5),
            "prod": cp_bool(false), "grp": cp_str("yes")}}),
        json!({"name": "m-eps", "customProperties": {"grp": cp_str("yes")}}),
        json!({"name": "m-zeta", "customProperties": {"grp": cp_str("no")}}),
        json!({"name": "m-eta", "customProperties": {"grp": cp_str("yes")}}),
    ];
    let mut by_name = Vec::new();
    for b in bodies {
        let name = b["name"].as_str().unwrap().to_owned();
        let m = api.create_model_body(b).await;
        by_name.push((name, m));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    Models { by_name }
}

async fn filter_names(api: &Api, path: &str, q: &str) -> BTreeSet<String> {
    let l = api.list(path, &[("filterQuery", q)]).await;
    name_set(&items(&l))
}

#[tokio::test]
async fn filter_registered_models() {
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let fx = fixture(&api).await;
        let alpha = fx.get("m-alpha");
        let alpha_id = id(alpha);
        let alpha_created = num_str(alpha, "createTimeSinceEpoch");
        let created_after_alpha: BTreeSet<String> = fx
            .by_name
            .iter()
            .filter(|(_, m)| num_str(m, "createTimeSinceEpoch") > alpha_created)
            .map(|(n, _)| n.clone())
            .collect();
        assert!(created_after_alpha.len() >= 5, "fixture timing");

        let id_q = format!("id = {alpha_id}");
        let ct_q = format!("createTimeSinceEpoch > {alpha_created}");
        let cases: Vec<(&str, BTreeSet<String>)> = vec![
            // Own fields.
            ("name = 'm-alpha'", set(["m-alpha"])),
            ("name = \"m-alpha\"", set(["m-alpha"])),
            ("name='m-alpha'", set(["m-alpha"])),
            ("name LIKE '%alp%'", set(["m-alpha"])),
            ("name like 'm-_eta'", set(["m-beta", "m-zeta"])),
            ("name ILIKE 'm-delta'", set(["M-DELTA"])),
            ("name ILIKE '%DEL%'", set(["M-DELTA"])),
            (
                "name IN ('m-alpha', 'm-gamma', 'nope')",
                set(["m-alpha", "m-gamma"]),
            ),
            ("state = 'ARCHIVED'", set(["m-beta"])),
            ("state != 'LIVE'", set(["m-beta"])),
            ("state <> 'LIVE'", set(["m-beta"])),
            ("externalId = 'ext-alpha'", set(["m-alpha"])),
            ("owner = 'alice'", set(["m-alpha", "m-gamma"])),
            (&id_q, set(["m-alpha"])),
            (&ct_q, created_after_alpha),
            // String custom properties.
            ("framework = 'pytorch'", set(["m-alpha"])),
            ("framework LIKE 'pytorch%'", set(["m-alpha", "m-gamma"])),
            ("framework ILIKE 'pytorch'", set(["m-alpha", "M-DELTA"])),
            ("framework.string_value = 'tensorflow'", set(["m-beta"])),
            (
                "framework IN ('tensorflow', 'PyTorch')",
                set(["m-beta", "M-DELTA"]),
            ),
            // Int custom properties.
            ("epochs < 15", set(["m-alpha", "m-gamma"])),
            ("epochs >= 20", set(["m-beta", "M-DELTA"])),
            ("epochs <= 10", set(["m-alpha", "m-gamma"])),
            ("epochs.int_value = 10", set(["m-alpha"])),
            ("epochs.int_value > 10", set(["m-beta", "M-DELTA"])),
            // Double custom properties (float and integer literals).
            ("accuracy > 0.9", set(["m-alpha", "m-gamma"])),
            ("accuracy.double_value > 0.9", set(["m-alpha", "m-gamma"])),
            ("accuracy <= 0.85", set(["m-beta", "M-DELTA"])),
            (
                "accuracy < 1",
                set(["m-alpha", "m-beta", "m-gamma", "M-DELTA"]),
            ),
            // Bool custom properties.
            ("prod = true", set(["m-alpha", "m-gamma"])),
            ("prod = TRUE", set(["m-alpha", "m-gamma"])),
            ("prod.bool_value = false", set(["m-beta", "M-DELTA"])),
            // Backquoted names.
            ("`team-name` = 'core'", set(["m-alpha", "m-gamma"])),
            ("`mlflow.source.type` = 'notebook'", set(["m-alpha"])),
            ("`team-name`.string_value = 'edge'", set(["m-beta"])),
            // Boolean logic.
            ("framework LIKE 'pytorch%' AND epochs > 6", set(["m-alpha"])),
            (
                "name = 'm-alpha' OR name = 'm-beta'",
                set(["m-alpha", "m-beta"]),
            ),
            (
                "name = 'm-alpha' or name = 'm-beta'",
                set(["m-alpha", "m-beta"]),
            ),
            (
                "(name = 'm-alpha' OR name = 'm-beta') AND state = 'LIVE'",
                set(["m-alpha"]),
            ),
            (
                "name = 'm-beta' OR name = 'm-alpha' AND state = 'ARCHIVED'",
                set(["m-beta"]),
            ),
            (
                "(prod = true AND epochs < 8) OR (prod = false AND `team-name` = 'edge')",
                set(["m-gamma", "m-beta"]),
            ),
            ("name = 'nothing-matches'", BTreeSet::new()),
        ];
        for (q, expected) in cases {
            let got = filter_names(&api, "/registered_models", q).await;
            assert_eq!(got, expected, "{prefix} filterQuery={q:?}");
        }
    }
}

#[tokio::test]
async fn bad_filters_are_400_with_a_useful_message() {
    let srv = Server::start().await;
    for api in srv.apis() {
        api.create_model(&uniq("bf")).await;
        for q in [
            "name = ",
            "name = 'unterminated",
            "(name = 'a'",
            "name = 'a')",
            "name === 'a'",
            "name = 'a' AND",
            "AND name = 'a'",
            "name LIKE",
            "= 'a'",
            "name 'a'",
            "name = 'h\u{e9}llo'",
        ] {
            let r = api.get_q("/registered_models", &[("filterQuery", q)]).await;
            r.err(400);
            let msg = r.message().to_lowercase();
            let hints = [
                "filter",
                "query",
                "syntax",
                "parse",
                "unexpected",
                "expected",
                "invalid",
                "unterminated",
                "token",
                "operator",
                "value",
                "end of",
                "character",
                "ascii",
                "position",
            ];
            assert!(
                hints.iter().any(|h| msg.contains(h)),
                "{} filterQuery={q:?}: message should say what is wrong with the filter: {msg:?}",
                api.prefix
            );
        }
    }
}

#[tokio::test]
async fn filter_with_paging() {
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let fx = fixture(&api).await;
        let mut expected: Vec<Value> = fx
            .by_name
            .iter()
            .filter(|(_, m)| m["customProperties"]["grp"]["string_value"] == "yes")
            .map(|(_, m)| m.clone())
            .collect();
        expected.sort_by_key(id_num);
        assert_eq!(expected.len(), 5);

        for (so, rev) in [("ASC", false), ("DESC", true)] {
            let mut want = ids_of(&expected);
            if rev {
                want.reverse();
            }
            let q = [("filterQuery", "grp = 'yes'"), ("sortOrder", so)];
            let pages = api.pages("/registered_models", &q, 2).await;
            for page in &pages {
                let again = api.page("/registered_models", &q, 2, &page.token).await;
                assert_eq!(
                    page.body, again,
                    "{prefix} {q:?} token {:?}: deterministic",
                    page.token
                );
            }
            let got: Vec<String> = pages.iter().flat_map(|p| ids_of(&p.items())).collect();
            let sizes: Vec<usize> = pages.iter().map(|p| p.items().len()).collect();
            assert_eq!(got, want, "{prefix} filtered paging sortOrder={so}");
            assert_eq!(sizes, vec![2, 2, 1], "{prefix} page sizes sortOrder={so}");
        }
    }
}

#[tokio::test]
async fn filter_versions_and_artifacts() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq(&format!("fv-{}", api.tag()))).await;
        let m2 = api.create_model(&uniq(&format!("fv2-{}", api.tag()))).await;
        let mid = id(&m);
        let vs = [
            json!({"name": "v1", "registeredModelId": mid, "author": "alice"}),
            json!({"name": "v2", "registeredModelId": mid, "author": "bob", "state": "ARCHIVED"}),
            json!({"name": "v3", "registeredModelId": mid, "author": "alice",
                   "customProperties": {"stage": cp_str("prod")}}),
        ];
        let mut created = Vec::new();
        for b in &vs {
            created.push(api.post("/model_versions", b).await.ok(201));
        }
        let other_v1 = api.create_version(&id(&m2), "v1").await;
        let path = format!("/registered_models/{mid}/versions");
        for (q, expected) in [
            ("name = 'v1'", set(["v1"])),
            ("author = 'alice'", set(["v1", "v3"])),
            ("state = 'ARCHIVED'", set(["v2"])),
            ("stage = 'prod'", set(["v3"])),
            ("name LIKE 'v%' AND author = 'bob'", set(["v2"])),
        ] {
            assert_eq!(
                filter_names(&api, &path, q).await,
                expected,
                "{} {path} filterQuery={q:?}",
                api.prefix
            );
        }
        // `name` on versions is the name within the model.
        let l = api
            .list(
                "/model_versions",
                &[(
                    "filterQuery",
                    &format!("name = 'v1' AND registeredModelId IN ({mid}, {})", id(&m2)),
                )],
            )
            .await;
        let got: BTreeSet<String> = ids_of(&items(&l)).into_iter().collect();
        assert_eq!(got, set([id(&created[0]), id(&other_v1)]), "{l}");
        let l = api
            .list(
                "/model_versions",
                &[("filterQuery", &format!("registeredModelId = {}", id(&m2)))],
            )
            .await;
        assert_eq!(ids_of(&items(&l)), vec![id(&other_v1)]);

        // Artifacts of a version.
        let vid = id(&created[0]);
        let apath = format!("/model_versions/{vid}/artifacts");
        for b in [
            json!({"artifactType": "model-artifact", "name": "a-s3", "uri": "s3://bucket/a"}),
            json!({"artifactType": "model-artifact", "name": "a-oci", "uri": "oci://quay.io/a"}),
            json!({"artifactType": "doc-artifact", "name": "d-s3", "uri": "s3://bucket/d",
                   "customProperties": {"kind": cp_str("card")}}),
        ] {
            api.upsert_new_artifact(&vid, b).await;
        }
        assert_eq!(
            filter_names(&api, &apath, "uri LIKE 's3://%'").await,
            set(["a-s3", "d-s3"])
        );
        assert_eq!(
            filter_names(&api, &apath, "kind = 'card'").await,
            set(["d-s3"])
        );
        let l = api
            .list(
                &apath,
                &[
                    ("filterQuery", "uri LIKE 's3://%'"),
                    ("artifactType", "model-artifact"),
                ],
            )
            .await;
        assert_eq!(name_set(&items(&l)), set(["a-s3"]));
        let l = api
            .list(
                "/artifacts",
                &[
                    ("filterQuery", "name = 'a-oci'"),
                    ("artifactType", "model-artifact"),
                ],
            )
            .await;
        assert_eq!(name_set(&items(&l)), set(["a-oci"]));
        api.get_q(&apath, &[("filterQuery", "uri LIKE")])
            .await
            .err(400);
        api.get_q("/model_versions", &[("filterQuery", "(((")])
            .await
            .err(400);
    }
}
