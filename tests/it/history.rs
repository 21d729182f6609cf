//! The ledger over HTTP: `GET /api/registry_ext/v1/{registered_models|
//! model_versions|artifacts}/{id}/history` (every revision, newest first,
//! with the caller that made it) and `.../{id}?asOf=<ms>` (the entity as it
//! was then).

use serde_json::{Value, json};

use crate::auth::Secured;
use crate::common::{Api, V1, id, uniq};

const EXT: &str = "/api/registry_ext/v1";

fn ext(s: &Secured, user: &str) -> Api {
    Api::new(s.server.client().clone(), s.server.base_url(), EXT)
        .with_bearer(&s.issuer.token(user, &[]))
}

fn revisions(h: &Value) -> Vec<(String, String, String)> {
    h["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {h}"))
        .iter()
        .map(|r| {
            (
                r["revision"].as_str().unwrap_or_default().to_string(),
                r["actor"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn history_names_every_caller_and_as_of_answers_the_past() {
    let policy = r#"
bindings:
  - role: writer
    users: [ada, bob]
  - role: reader
    users: [eve]
    models: ["nothing-*"]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let ada = s.as_user(V1, "ada", &[]);
    let bob = s.as_user(V1, "bob", &[]);
    let model = ada.create_model(&uniq("hist")).await;
    let m = id(&model);
    let version = ada.create_version(&m, "v1").await;
    let mut states = vec![model.clone()];
    for i in 0..3 {
        let e = bob
            .patch(
                &format!("/registered_models/{m}"),
                &json!({"description": format!("take {i}")}),
            )
            .await
            .ok(200);
        states.push(e);
    }
    let h = ext(&s, "ada")
        .get(&format!("/registered_models/{m}/history"))
        .await
        .ok(200);
    assert_eq!(
        revisions(&h),
        [
            ("4", "bob", "UPDATE"),
            ("3", "bob", "UPDATE"),
            ("2", "bob", "UPDATE"),
            ("1", "ada", "CREATE"),
        ]
        .map(|(r, a, k)| (r.to_string(), a.to_string(), k.to_string()))
        .to_vec(),
        "{h}"
    );
    assert_eq!(h["size"], 4);
    let items = h["items"].as_array().unwrap();
    assert!(items.iter().all(|r| r["applied"] == true), "{h}");
    for pair in items.windows(2) {
        assert_eq!(pair[0]["prevHash"], pair[1]["hash"], "chained: {h}");
    }
    assert_eq!(items[3]["prevHash"], "", "{h}");
    assert_eq!(
        items[0]["entity"], states[3],
        "the entity as the API shows it"
    );
    // The model as it was after each revision.
    for state in &states {
        let at = state["lastUpdateTimeSinceEpoch"].as_str().unwrap();
        let then = ext(&s, "ada")
            .get(&format!("/registered_models/{m}?asOf={at}"))
            .await
            .ok(200);
        assert_eq!(&then, state);
    }
    let now = ext(&s, "ada")
        .get(&format!("/registered_models/{m}"))
        .await
        .ok(200);
    assert_eq!(now, states[3]);
    ext(&s, "ada")
        .get(&format!("/registered_models/{m}?asOf=yesterday"))
        .await
        .err(400);
    ext(&s, "ada")
        .get(&format!("/registered_models/{m}?asOf=1"))
        .await
        .err(404);
    // Versions and artifacts have theirs too.
    let v = ext(&s, "ada")
        .get(&format!("/model_versions/{}/history", id(&version)))
        .await
        .ok(200);
    assert_eq!(revisions(&v)[0].1, "ada");
    let artifact = ada
        .upsert_new_artifact(
            &id(&version),
            json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"}),
        )
        .await;
    let a = ext(&s, "bob")
        .get(&format!("/artifacts/{}/history", id(&artifact)))
        .await
        .ok(200);
    assert_eq!(revisions(&a), [("1".into(), "ada".into(), "CREATE".into())]);
    // Only callers who may read the entity see its history.
    ext(&s, "eve")
        .get(&format!("/registered_models/{m}/history"))
        .await
        .err(403);
    Api::new(s.server.client().clone(), s.server.base_url(), EXT)
        .get(&format!("/registered_models/{m}/history"))
        .await
        .err(401);
    ext(&s, "ada")
        .get("/registered_models/999999/history")
        .await
        .err(404);
}
