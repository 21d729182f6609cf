//! List envelope, ordering and keyset paging for models, versions of a model and artifacts
//! of a version.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;

const N: usize = 25;
const PAGE: usize = 4;
const ORDER_BYS: [&str; 4] = ["ID", "CREATE_TIME", "LAST_UPDATE_TIME", "NAME"];
const SORT_ORDERS: [&str; 2] = ["ASC", "DESC"];
/// Indexes (in creation order) of the items updated after creation, in update order, so that
/// LAST_UPDATE_TIME order differs from ID order.
const UPDATED: [usize; 8] = [17, 3, 22, 0, 9, 12, 5, 24];

/// Name of the i-th created item: a permutation, so NAME order differs from ID order.
fn item_name(i: usize) -> String {
    format!("item-{:02}", (i * 7) % N)
}

async fn tick() {
    // Distinct milliseconds make CREATE_TIME / LAST_UPDATE_TIME orders meaningful.
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

/// Pages through `path` with `pageSize=page_size`, checking every page, and returns the
/// concatenation of all pages.
async fn page_through(
    api: &Api,
    path: &str,
    base: &[(&str, &str)],
    page_size: usize,
) -> Vec<Value> {
    let ps = page_size.to_string();
    let mut token = String::new();
    let mut out: Vec<Value> = Vec::new();
    let mut seen_tokens = BTreeSet::new();
    for page_no in 0.. {
        assert!(
            page_no <= N * 2 + 5,
            "{path} {base:?}: pager does not terminate"
        );
        let mut q: Vec<(&str, &str)> = base.to_vec();
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

        // Deterministic: the same request gives the same page and the same token.
        let again = api.list(path, &q).await;
        assert_eq!(
            again["nextPageToken"], page["nextPageToken"],
            "{path} {q:?}: same position must yield the same token"
        );
        assert_eq!(
            ids_of(&items(&again)),
            ids_of(&its),
            "{path} {q:?}: same request, same page"
        );

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

/// Checks every orderBy x sortOrder on `path` whose full content is `expected` (latest state
/// of every item).
async fn check_orders_and_paging(api: &Api, path: &str, expected: &[Value]) {
    let by_id: BTreeMap<String, &Value> = expected.iter().map(|v| (id(v), v)).collect();
    let expected_ids: BTreeSet<String> = by_id.keys().cloned().collect();
    let mut id_asc: Vec<String> = Vec::new();
    let mut lut_asc: Vec<String> = Vec::new();

    for ob in ORDER_BYS {
        for so in SORT_ORDERS {
            let base = [("orderBy", ob), ("sortOrder", so)];
            let ctx = format!("{} {path} orderBy={ob} sortOrder={so}", api.prefix);

            // Unpaged.
            let full = api.list(path, &base).await;
            assert_eq!(full["pageSize"], json!(0), "{ctx}: no pageSize = 0: {full}");
            assert_eq!(full["nextPageToken"], "", "{ctx}: unpaged list is complete");
            let full_items = items(&full);
            let full_ids = ids_of(&full_items);
            assert_eq!(
                full_ids.iter().cloned().collect::<BTreeSet<_>>(),
                expected_ids,
                "{ctx}: exactly the expected items"
            );
            assert_eq!(full_ids.len(), expected.len(), "{ctx}: duplicates: {full}");
            for it in &full_items {
                assert_eq!(
                    it,
                    by_id[&id(it)],
                    "{ctx}: listed item differs from its latest state"
                );
            }
            // Sorted by the key in the requested direction (ties in any order).
            for w in full_items.windows(2) {
                let (a, b) = (sort_key(&w[0], ob), sort_key(&w[1], ob));
                let ok = if so == "ASC" { a <= b } else { a >= b };
                assert!(ok, "{ctx}: {} then {} out of order", w[0], w[1]);
                if ob == "ID" {
                    assert_ne!(a, b);
                }
            }

            // Paged with pageSize=4 gives the same sequence.
            let paged = page_through(api, path, &base, PAGE).await;
            assert_eq!(
                ids_of(&paged),
                full_ids,
                "{ctx}: pages concatenated must equal the unpaged order"
            );

            if ob == "ID" && so == "ASC" {
                id_asc = full_ids.clone();
            }
            if ob == "LAST_UPDATE_TIME" && so == "ASC" {
                lut_asc = full_ids.clone();
            }
        }
    }
    assert_ne!(
        id_asc, lut_asc,
        "test setup: LAST_UPDATE_TIME order should differ from ID order"
    );

    // pageSize=1 walks every boundary.
    let one = page_through(api, path, &[], 1).await;
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
