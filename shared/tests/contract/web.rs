//! The web interface's pages read a pinned number of items, whatever the
//! number of rows: no store call per row (but the models page's latest
//! versions, one Query per model shown, at once).

use super::*;
use lambda_http::tower::ServiceExt;
use registry::api::codec::decode_artifact_upsert;
use registry::api::guard::Identity;
use registry::domain::access::{Caller, Policy};

/// GET `path` from the pages as an anonymous caller who may read
/// everything: the status.
async fn get_page(r: &Registry, path: &str) -> u16 {
    let caller = Caller::anonymous();
    let identity = Identity {
        access: Arc::new(Policy::allow_all().access(&caller)),
        caller: Arc::new(caller),
    };
    let mut request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    request.extensions_mut().insert(identity);
    let response = registry::web::routes(r.clone(), None, registry::api::Serve::All)
        .oneshot(request)
        .await
        .unwrap();
    response.status().as_u16()
}

pub(super) async fn web_pages_read_a_pinned_number_of_items(b: Backend) {
    let counting = Counting::new(b.table.clone());
    let r = Registry::new(counting.clone(), RegistryConfig::default());
    let big = r.create(model("many-versions")).await.unwrap();
    let small = r.create(model("few-versions")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..120 {
        let mut new = version(big.id, &format!("v{i}"));
        new.custom.insert(
            "accuracy".into(),
            registry::domain::value::MetadataValue::Double(0.5),
        );
        ids.push(r.create(new).await.unwrap().id);
    }
    r.create(version(small.id, "only")).await.unwrap();
    counting.take();

    assert_eq!(get_page(&r, &format!("/ui/models/{}", big.id)).await, 200);
    assert_eq!(
        counting.take(),
        Calls {
            get: 1,
            query: 1,
            get_many: 1,
            ..Calls::default()
        },
        "a model's page: the model, one page of its versions (Query + BatchGetItem)"
    );
    assert_eq!(
        get_page(&r, &format!("/ui/models/{}?pageSize=200", big.id)).await,
        200
    );
    let calls = counting.take();
    assert_eq!(
        (calls.get, calls.get_many),
        (1, 2),
        "{calls:?}: 120 versions, BatchGetItem takes 100"
    );
    assert!(calls.query <= 2, "{calls:?}");

    assert_eq!(get_page(&r, "/ui/").await, 200);
    assert_eq!(
        counting.take(),
        Calls {
            query: SHARDS as usize + 2,
            get_many: 1,
            ..Calls::default()
        },
        "the models page: a global page (a Query per shard), each model's latest version id, one BatchGetItem"
    );

    let pick = format!("/ui/compare?versions={},{},{}", ids[0], ids[1], ids[2]);
    assert_eq!(get_page(&r, &pick).await, 200);
    assert_eq!(
        counting.take(),
        Calls {
            get_many: 2,
            query: 3,
            ..Calls::default()
        },
        "compare: the versions and their models, a BatchGetItem each; each version's artifacts (the runs that made them)"
    );
}

/// A version's page reads what it shows once: its model, its artifacts
/// (which also give its gates' metrics: no second Query for them), its
/// usage, history and first ledger record (its author), the same calls for
/// 3 artifacts as for 60.
pub(super) async fn a_version_page_reads_its_artifacts_once(b: Backend) {
    let counting = Counting::new(b.table.clone());
    let r = Registry::new(counting.clone(), RegistryConfig::default());
    let m = r.create(model("gated")).await.unwrap();
    r.set_policy(
        m.id,
        Some(registry::domain::entity::ApprovalPolicy {
            required_approvals: 1,
            gates: vec!["accuracy > 0.9".into()],
            protected_aliases: Vec::new(),
        }),
    )
    .await
    .unwrap();
    let mut calls = Vec::new();
    for (name, artifacts) in [("few", 3), ("many", 60)] {
        let v = r.create(version(m.id, name)).await.unwrap();
        for i in 0..artifacts {
            let a = if i == 0 {
                json!({"artifactType": "metric", "name": "accuracy", "value": 0.95})
            } else {
                json!({"artifactType": "model-artifact", "name": format!("file-{i}"), "uri": "s3://b/k"})
            };
            r.upsert_version_artifact(v.id, decode_artifact_upsert(&a).unwrap())
                .await
                .unwrap();
        }
        assert_eq!(
            r.approval(v.id).await.unwrap().gates,
            [("accuracy > 0.9".to_string(), true)],
            "the metric passes the gate"
        );
        counting.take();
        assert_eq!(get_page(&r, &format!("/ui/versions/{}", v.id)).await, 200);
        calls.push(counting.take());
    }
    assert_eq!(calls[0], calls[1], "3 artifacts and 60: the same calls");
    assert_eq!(
        calls[0],
        Calls {
            get: 3,
            get_many: 1,
            query: 8,
            ..Calls::default()
        },
        "the version, its model (twice: the caller's rights, the lineage), its artifacts \
         and serving, usage, history, author (was 6 GetItem, 2 BatchGetItem, 9 Query)"
    );
}

suite!(
    web_pages_read_a_pinned_number_of_items,
    a_version_page_reads_its_artifacts_once
);
