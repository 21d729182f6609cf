//! List envelope, ordering and keyset paging for models, versions of a model and artifacts
//! of a version.

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;
use crate::listing::{check_paged_orders, tick};

const N: usize = 25;
const PAGE: usize = 4;
/// Indexes (in creation order) of the items updated after creation, in update order, so that
/// LAST_UPDATE_TIME order differs from ID order.
const UPDATED: [usize; 8] = [17, 3, 22, 0, 9, 12, 5, 24];

/// Name of the i-th created item: a permutation, so NAME order differs from ID order.
fn item_name(i: usize) -> String {
    format!("item-{:02}", (i * 7) % N)
}

/// Checks every orderBy x sortOrder on `path` whose full content is `expected` (latest state
/// of every item), in pages of [`PAGE`] and of 1, and the list parameters.
async fn check_orders_and_paging(api: &Api, path: &str, expected: &[Value]) {
    let id_asc = check_paged_orders(api, path, &[], expected, PAGE).await;
    let lut_asc = ids_of(&items(
        &api.list(
            path,
            &[("orderBy", "LAST_UPDATE_TIME"), ("sortOrder", "ASC")],
        )
        .await,
    ));
    assert_ne!(
        id_asc, lut_asc,
        "test setup: LAST_UPDATE_TIME order should differ from ID order"
    );

    // pageSize=1 walks every boundary.
    let one = api.pages(path, &[], 1).await;
    assert_full_pages(&one, 1, path);
    let one: Vec<Value> = one.iter().flat_map(Page::items).collect();
    assert_eq!(ids_of(&one), id_asc, "pageSize=1, default order ID ASC");
    // A page larger than everything.
    let big = api.list(path, &[("pageSize", "100")]).await;
    assert_eq!(big["pageSize"], json!(100));
    assert_eq!(big["nextPageToken"], "");
    assert_eq!(ids_of(&items(&big)), id_asc);
    // Default order is ID ascending.
    let default = api.list(path, &[]).await;
    assert_eq!(ids_of(&items(&default)), id_asc, "default order is ID ASC");
    assert_eq!(default["pageSize"], json!(0));
    let zero = api.list(path, &[("pageSize", "0")]).await;
    assert_eq!(ids_of(&items(&zero)), id_asc, "pageSize=0 means no limit");
    assert_eq!(zero["pageSize"], json!(0));
    assert_eq!(zero["nextPageToken"], "");

    check_list_param_errors(api, path, &id_asc).await;
}

async fn check_list_param_errors(api: &Api, path: &str, id_asc: &[String]) {
    // An empty token means the first page.
    let first = api.list(path, &[("pageSize", "4")]).await;
    let first_empty_token = api
        .list(path, &[("pageSize", "4"), ("nextPageToken", "")])
        .await;
    assert_eq!(first, first_empty_token, "empty nextPageToken = first page");

    for bad in [
        "not-a-token!!",
        "Zm9vYmFy",
        "%%%",
        "MTIzNDU2Nzg5MDpnYXJiYWdl!",
    ] {
        api.get_q(path, &[("pageSize", "4"), ("nextPageToken", bad)])
            .await
            .err(400);
    }
    for bad in ["abc", "-1", "1.5", "4x"] {
        api.get_q(path, &[("pageSize", bad)]).await.err(400);
    }
    api.get_q(path, &[("sortOrder", "SIDEWAYS")]).await.err(400);

    let unknown_order = api.get_q(path, &[("orderBy", "BOGUS")]).await;
    if api.prefix == V1 {
        unknown_order.err(400);
    } else {
        // v1alpha3 silently falls back to ID.
        let body = unknown_order.ok(200);
        assert_eq!(
            ids_of(&items(&body)),
            id_asc,
            "v1alpha3: unknown orderBy falls back to ID"
        );
    }
}

// ---------------------------------------------------------------- fixtures

async fn fill_models(api: &Api) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..N {
        out.push(api.create_model(&item_name(i)).await);
        tick().await;
    }
    for &i in &UPDATED {
        out[i] = api
            .patch(
                &format!("/registered_models/{}", id(&out[i])),
                &json!({"description": format!("updated {i}")}),
            )
            .await
            .ok(200);
        tick().await;
    }
    out
}

async fn fill_versions(api: &Api, model_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..N {
        out.push(
            api.post(
                &format!("/registered_models/{model_id}/versions"),
                &json!({"name": item_name(i), "registeredModelId": model_id}),
            )
            .await
            .ok(201),
        );
        tick().await;
    }
    for &i in &UPDATED {
        out[i] = api
            .patch(
                &format!("/model_versions/{}", id(&out[i])),
                &json!({"author": format!("author {i}")}),
            )
            .await
            .ok(200);
        tick().await;
    }
    out
}

async fn fill_artifacts(api: &Api, version_id: &str) -> Vec<Value> {
    let ty = |i: usize| {
        if i.is_multiple_of(2) {
            "model-artifact"
        } else {
            "doc-artifact"
        }
    };
    let mut out = Vec::new();
    for i in 0..N {
        out.push(
            api.upsert_new_artifact(
                version_id,
                json!({"artifactType": ty(i), "name": item_name(i), "uri": format!("s3://b/{i}")}),
            )
            .await,
        );
        tick().await;
    }
    for &i in &UPDATED {
        out[i] = api
            .patch(
                &format!("/artifacts/{}", id(&out[i])),
                &json!({"artifactType": ty(i), "description": format!("updated {i}")}),
            )
            .await
            .ok(200);
        tick().await;
    }
    out
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn empty_lists_have_the_full_envelope() {
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        for path in [
            "/registered_models",
            "/model_versions",
            "/model_artifacts",
            "/artifacts",
        ] {
            let resp = api.get(path).await;
            let v = resp.check(200);
            assert_eq!(
                v,
                &json!({"items": [], "nextPageToken": "", "pageSize": 0, "size": 0}),
                "{} {path}",
                api.prefix
            );
            assert!(
                resp.content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("application/json")),
                "{resp:?}"
            );
            let paged = api.list(path, &[("pageSize", "5")]).await;
            assert_eq!(
                paged,
                json!({"items": [], "nextPageToken": "", "pageSize": 5, "size": 0})
            );
        }
        let (m, v) = api.model_and_version("empty").await;
        let l = api
            .list(&format!("/model_versions/{}/artifacts", id(&v)), &[])
            .await;
        assert_eq!(items(&l).len(), 0);
        let l = api
            .list(&format!("/registered_models/{}/versions", id(&m)), &[])
            .await;
        assert_eq!(items(&l).len(), 1);
    }
}

#[tokio::test]
async fn registered_models_ordering_and_paging() {
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let models = fill_models(&api).await;
        check_orders_and_paging(&api, "/registered_models", &models).await;
    }
}

#[tokio::test]
async fn versions_of_one_model_ordering_and_paging() {
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let m = api.create_model("paged-model").await;
        // Noise under another model, interleaved in id space.
        let other = api.create_model("other-model").await;
        api.create_version(&id(&other), "item-00").await;
        let versions = fill_versions(&api, &id(&m)).await;
        api.create_version(&id(&other), "item-01").await;
        check_orders_and_paging(
            &api,
            &format!("/registered_models/{}/versions", id(&m)),
            &versions,
        )
        .await;
    }
}

#[tokio::test]
async fn artifacts_of_one_version_ordering_and_paging() {
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let (m, v) = api.model_and_version("art-model").await;
        let noise_v = api.create_version(&id(&m), "v-noise").await;
        api.upsert_new_artifact(
            &id(&noise_v),
            json!({"artifactType": "model-artifact", "name": "item-00", "uri": "s3://n"}),
        )
        .await;
        let arts = fill_artifacts(&api, &id(&v)).await;
        api.upsert_new_artifact(
            &id(&noise_v),
            json!({"artifactType": "doc-artifact", "name": "item-01", "uri": "s3://n"}),
        )
        .await;
        check_orders_and_paging(
            &api,
            &format!("/model_versions/{}/artifacts", id(&v)),
            &arts,
        )
        .await;
    }
}
