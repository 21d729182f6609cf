//! Acknowledged writes survive SIGKILL; ids keep increasing after restart.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::{Server, ServerOpts};

const N: usize = 200;

async fn assert_all_present(api: &Api, expected: &BTreeMap<String, Value>, ctx: &str) {
    let l = api.list("/registered_models", &[]).await;
    let listed: BTreeMap<String, Value> = items(&l).into_iter().map(|m| (id(&m), m)).collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "{ctx}: list has {} models, expected {}",
        listed.len(),
        expected.len()
    );
    for (mid, want) in expected {
        let got = listed
            .get(mid)
            .unwrap_or_else(|| panic!("{ctx}: model {mid} ({}) lost", want["name"]));
        assert_eq!(got, want, "{ctx}: listed model {mid} differs");
        let by_id = api.get(&format!("/registered_models/{mid}")).await.ok(200);
        assert_eq!(&by_id, want, "{ctx}: GET model {mid} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_sigkill() {
    let mut srv = Server::start().await;
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    let mut max_id = 0;
    {
        let api = srv.api(V1);
        for i in 0..N {
            let m = api
                .create_model_body(json!({
                    "name": format!("durable-{i:03}"),
                    "customProperties": {"i": cp_int(i as i64)}
                }))
                .await;
            max_id = max_id.max(id_num(&m));
            expected.insert(id(&m), m);
        }
        // An acknowledged update must survive too.
        let first = expected.keys().next().unwrap().clone();
        let p = api
            .patch(
                &format!("/registered_models/{first}"),
                &json!({"description": "updated before crash", "state": "ARCHIVED"}),
            )
            .await
            .ok(200);
        expected.insert(first, p);
    }

    let dir_before = srv.data_dir().to_path_buf();
    srv.kill9().await;
    srv.restart().await;
    assert_eq!(srv.data_dir(), dir_before, "restart reuses the data dir");

    let api = srv.api(V1);
    assert_all_present(&api, &expected, "after first SIGKILL").await;
    let api_a3 = srv.api(V1ALPHA3);
    let paged_total = api_a3.walk("/registered_models", &[], 64).await.len();
    assert_eq!(paged_total, N, "paging after restart sees every model");

    // Ids keep increasing, names stay taken.
    let fresh = api.create_model("after-restart").await;
    assert!(
        id_num(&fresh) > max_id,
        "new id {} must be greater than every id before the crash ({max_id})",
        id(&fresh)
    );
    api.post("/registered_models", &json!({"name": "durable-000"}))
        .await
        .err(409);
    max_id = id_num(&fresh);
    expected.insert(id(&fresh), fresh);

    // Second crash right after more acknowledged writes.
    let m = api.create_model("after-restart-2").await;
    let v = api.create_version(&id(&m), "v1").await;
    let a = api
        .upsert_new_artifact(
            &id(&v),
            json!({"artifactType": "model-artifact", "name": "w", "uri": "s3://b/w"}),
        )
        .await;
    expected.insert(id(&m), m.clone());
    srv.kill9().await;
    srv.restart().await;

    let api = srv.api(V1);
    assert_all_present(&api, &expected, "after second SIGKILL").await;
    assert_eq!(
        api.get(&format!("/model_versions/{}", id(&v)))
            .await
            .ok(200),
        v
    );
    assert_eq!(api.get(&format!("/artifacts/{}", id(&a))).await.ok(200), a);
    let arts = api
        .list(&format!("/model_versions/{}/artifacts", id(&v)), &[])
        .await;
    assert_eq!(ids_of(&items(&arts)), vec![id(&a)]);
    let last = api.create_model("after-restart-3").await;
    assert!(id_num(&last) > max_id.max(id_num(&m)));
}

#[tokio::test]
async fn caller_provided_data_dir_outlives_the_server() {
    let dir = tempfile::Builder::new()
        .prefix("mr-it-own-")
        .tempdir()
        .expect("tempdir");
    let opts = ServerOpts {
        data_dir: Some(dir.path().to_path_buf()),
        env: vec![],
    };
    let m = {
        let srv = Server::start_with(opts.clone()).await;
        assert_eq!(srv.data_dir(), dir.path());
        assert!(srv.unique().starts_with("mr-it-own-"), "{}", srv.unique());
        srv.api(V1).create_model("kept").await
        // Dropping the server SIGKILLs it.
    };
    let srv = Server::start_with(opts).await;
    let api = srv.api(V1ALPHA3);
    let got = api
        .get_q("/registered_model", &[("name", "kept")])
        .await
        .ok(200);
    assert_eq!(got, m);
}
