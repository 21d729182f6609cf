//! Per-model authorization (`MR_POLICY`) over real HTTP: a reader, a
//! writer scoped to some models, a team by group, an admin, and anonymous
//! callers, over create, get, list, find and patch of models, versions and
//! artifacts; lists hide other teams' models with paging intact.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::auth::Secured;
use crate::common::{PREFIXES, id, uniq};

const POLICY: &str = r#"
bindings:
  - role: admin
    users: [root]
  - role: reader
    users: [bob]
  - role: writer
    users: [ada]
    models: ["churn-*"]
  - role: writer
    groups: [fraud-team]
    models: ["fraud-*"]
  - role: reader
    users: [anonymous]
    models: ["public-*"]
"#;

fn names(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn roles_and_model_scopes_on_every_operation() {
    let s = Secured::start(Some(POLICY), &[]).await;
    for prefix in PREFIXES {
        let root = s.as_user(prefix, "root", &[]);
        let bob = s.as_user(prefix, "bob", &[]);
        let ada = s.as_user(prefix, "ada", &[]);
        let fraud = s.as_user(prefix, "eve", &["fraud-team"]);
        let nobody = s.as_user(prefix, "mallory", &[]);
        let anon = s.server.api(prefix);
        let tag = uniq("m");
        let (churn, fraud_name, public) = (
            format!("churn-{tag}"),
            format!("fraud-{tag}"),
            format!("public-{tag}"),
        );

        // Create: each within its scope only.
        let c = ada.create_model(&churn).await;
        ada.post("/registered_models", &json!({"name": fraud_name}))
            .await
            .err(403);
        let f = fraud.create_model(&fraud_name).await;
        fraud
            .post(
                "/registered_models",
                &json!({"name": format!("churn-x-{tag}")}),
            )
            .await
            .err(403);
        bob.post(
            "/registered_models",
            &json!({"name": format!("churn-y-{tag}")}),
        )
        .await
        .err(403);
        anon.post(
            "/registered_models",
            &json!({"name": format!("public-z-{tag}")}),
        )
        .await
        .err(401);
        nobody.get("/registered_models").await.err(403);
        let p = root.create_model(&public).await;

        // Get and find.
        ada.get(&format!("/registered_models/{}", id(&c)))
            .await
            .check(200);
        ada.get(&format!("/registered_models/{}", id(&f)))
            .await
            .err(403);
        bob.get(&format!("/registered_models/{}", id(&f)))
            .await
            .check(200);
        ada.get_q("/registered_model", &[("name", &fraud_name)])
            .await
            .err(403);
        ada.get_q("/registered_model", &[("name", &churn)])
            .await
            .check(200);
        anon.get(&format!("/registered_models/{}", id(&p)))
            .await
            .check(200);
        anon.get(&format!("/registered_models/{}", id(&c)))
            .await
            .err(401);

        // Patch.
        ada.patch(
            &format!("/registered_models/{}", id(&c)),
            &json!({"description": "mine"}),
        )
        .await
        .check(200);
        ada.patch(
            &format!("/registered_models/{}", id(&f)),
            &json!({"description": "theirs"}),
        )
        .await
        .err(403);
        bob.patch(
            &format!("/registered_models/{}", id(&c)),
            &json!({"description": "reader"}),
        )
        .await
        .err(403);

        // Versions and artifacts follow their model.
        let cv = ada.create_version(&id(&c), "v1").await;
        ada.post(
            "/model_versions",
            &json!({"name": "v1", "registeredModelId": id(&f)}),
        )
        .await
        .err(403);
        ada.post(
            &format!("/registered_models/{}/versions", id(&f)),
            &json!({"name": "v2"}),
        )
        .await
        .err(403);
        let fv = fraud.create_version(&id(&f), "v1").await;
        let art = json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/k"});
        ada.upsert_new_artifact(&id(&cv), art.clone()).await;
        ada.post(&format!("/model_versions/{}/artifacts", id(&fv)), &art)
            .await
            .err(403);
        let fa = fraud.upsert_new_artifact(&id(&fv), art.clone()).await;
        ada.get(&format!("/model_versions/{}", id(&fv)))
            .await
            .err(403);
        ada.get(&format!("/artifacts/{}", id(&fa))).await.err(403);
        ada.get(&format!("/model_versions/{}/artifacts", id(&fv)))
            .await
            .err(403);
        ada.patch(
            &format!("/model_versions/{}", id(&fv)),
            &json!({"state": "ARCHIVED"}),
        )
        .await
        .err(403);
        ada.patch(
            &format!("/artifacts/{}", id(&fa)),
            &json!({"artifactType": "model-artifact", "uri": "s3://evil/k"}),
        )
        .await
        .err(403);
        bob.get(&format!("/model_versions/{}/artifacts", id(&fv)))
            .await
            .check(200);

        // Outside any model: only unscoped roles.
        ada.post("/experiments", &json!({"name": uniq("exp")}))
            .await
            .err(403);
        ada.post("/serving_environments", &json!({"name": uniq("env")}))
            .await
            .err(403);
        root.post("/experiments", &json!({"name": uniq("exp")}))
            .await
            .check(201);
        bob.get("/experiments").await.check(200);
    }
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_read_with_paging_intact() {
    let s = Secured::start(Some(POLICY), &[]).await;
    let root = s.as_user(PREFIXES[1], "root", &[]);
    let tag = uniq("p");
    let mut churn = BTreeSet::new();
    let mut churn_versions = BTreeSet::new();
    // Interleaved so that every page of the unfiltered list mixes both.
    for i in 0..7 {
        for family in ["churn", "fraud", "other"] {
            let name = format!("{family}-{tag}-{i}");
            let m = root.create_model(&name).await;
            let v = root.create_version(&id(&m), &format!("v{i}")).await;
            if family == "churn" {
                churn.insert(name);
                churn_versions.insert(v["name"].as_str().unwrap().to_string());
            }
        }
    }
    for prefix in PREFIXES {
        let ada = s.as_user(prefix, "ada", &[]);
        for page in [1, 2, 5, 100] {
            let models = ada.walk("/registered_models", &[], page).await;
            assert_eq!(names(&models), churn, "pageSize {page}");
            assert_eq!(
                models.len(),
                churn.len(),
                "no duplicates at pageSize {page}"
            );
            let versions = ada.walk("/model_versions", &[], page).await;
            assert_eq!(versions.len(), churn.len(), "versions at pageSize {page}");
            assert_eq!(names(&versions), churn_versions);
            for v in &versions {
                let model = ada
                    .get(&format!(
                        "/registered_models/{}",
                        v["registeredModelId"].as_str().unwrap()
                    ))
                    .await
                    .ok(200);
                assert!(model["name"].as_str().unwrap().starts_with("churn-"));
            }
        }
        // Unpaged and filtered lists hide them too.
        let all = ada.list("/registered_models", &[]).await;
        assert_eq!(names(all["items"].as_array().unwrap()), churn);
        let filtered = ada
            .list(
                "/registered_models",
                &[("filterQuery", "name LIKE '%-3'"), ("pageSize", "1")],
            )
            .await;
        assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
        assert!(
            filtered["items"][0]["name"]
                .as_str()
                .unwrap()
                .starts_with("churn-")
        );
        // A reader of everything sees everything.
        let bob = s.as_user(prefix, "bob", &[]);
        assert_eq!(bob.walk("/registered_models", &[], 4).await.len(), 21);
        // Anonymous callers see the public models only (none here).
        let anon = s.server.api(prefix);
        assert_eq!(anon.list("/registered_models", &[]).await["size"], 0);
    }
}
