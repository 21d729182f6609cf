//! ModelVersion creation (both routes), per-model name uniqueness, find, list, PATCH.

use serde_json::json;

use crate::common::*;
use crate::harness::Server;

#[tokio::test]
async fn create_via_both_routes() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq(&format!("mv-{}", api.tag()))).await;
        let mid = id(&m);
        let ext = uniq("mv-ext");

        // POST /model_versions with every field.
        let body = json!({
            "name": "v1",
            "registeredModelId": mid,
            "description": "first",
            "externalId": ext,
            "author": "alice",
            "state": "LIVE",
            "customProperties": {"stage": cp_str("dev"), "n": cp_int(3)}
        });
        let v1 = api.post("/model_versions", &body).await.ok(201);
        assert_entity_basics(&v1);
        for f in [
            "name",
            "registeredModelId",
            "description",
            "externalId",
            "author",
            "state",
        ] {
            assert_eq!(v1.get(f), body.get(f), "field `{f}` in {v1}");
        }
        assert_eq!(v1["customProperties"]["stage"], cp_str("dev"));
        assert_eq!(v1["customProperties"]["n"]["int_value"], "3");
        let got = api
            .get(&format!("/model_versions/{}", id(&v1)))
            .await
            .ok(200);
        assert_eq!(got, v1);

        // POST /registered_models/{id}/versions, minimal.
        let v2 = api
            .post(
                &format!("/registered_models/{mid}/versions"),
                &json!({"name": "v2", "registeredModelId": mid}),
            )
            .await
            .ok(201);
        assert_entity_basics(&v2);
        assert_eq!(v2["registeredModelId"], json!(mid));
        assert_eq!(v2["name"], "v2");
        assert_eq!(v2["state"], "LIVE", "state defaults to LIVE: {v2}");
        assert_eq!(v2["customProperties"], json!({}));
        assert_absent(&v2, &["description", "externalId", "author"]);
        assert!(id_num(&v2) > id_num(&v1), "version ids increase");
        let got2 = api
            .get(&format!("/model_versions/{}", id(&v2)))
            .await
            .ok(200);
        assert_eq!(got2, v2);
    }
}

#[tokio::test]
async fn create_errors() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq(&format!("mve-{}", api.tag()))).await;
        let mid = id(&m);
        // Unknown parent model.
        api.post(
            "/model_versions",
            &json!({"name": "v", "registeredModelId": "999999"}),
        )
        .await
        .err(404);
        api.post(
            "/registered_models/999999/versions",
            &json!({"name": "v", "registeredModelId": "999999"}),
        )
        .await
        .err(404);
        api.post(
            "/registered_models/abc/versions",
            &json!({"name": "v", "registeredModelId": mid}),
        )
        .await
        .err(400);
        // Required fields.
        api.post("/model_versions", &json!({"name": "v"}))
            .await
            .err(422);
        api.post("/model_versions", &json!({"registeredModelId": mid}))
            .await
            .err(422);
        api.post(
            "/model_versions",
            &json!({"name": "", "registeredModelId": mid}),
        )
        .await
        .err(422);
        // Strict decoding / enums.
        api.post(
            "/model_versions",
            &json!({"name": "v", "registeredModelId": mid, "bogus": 1}),
        )
        .await
        .err(400);
        api.post(
            "/model_versions",
            &json!({"name": "v", "registeredModelId": mid, "state": "DELETED"}),
        )
        .await
        .err(400);
        api.post(
            "/model_versions",
            &json!({"name": "v\u{0}x", "registeredModelId": mid}),
        )
        .await
        .err(400);
        api.post(
            "/model_versions",
            &json!({"name": "v".repeat(300), "registeredModelId": mid}),
        )
        .await
        .client_err();
        // None of these created anything.
        let list = api
            .list(&format!("/registered_models/{mid}/versions"), &[])
            .await;
        assert_eq!(items(&list).len(), 0, "{list}");
        // GET errors.
        api.get("/model_versions/999999").await.err(404);
        api.get("/model_versions/abc").await.err(400);
    }
}

#[tokio::test]
async fn name_unique_within_model_only() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m1 = api.create_model(&uniq(&format!("u1-{}", api.tag()))).await;
        let m2 = api.create_model(&uniq(&format!("u2-{}", api.tag()))).await;
        let (id1, id2) = (id(&m1), id(&m2));
        let a = api.create_version(&id1, "shared").await;
        let b = api.create_version(&id2, "shared").await;
        assert_ne!(id(&a), id(&b));
        assert_eq!(
            b["name"], "shared",
            "names are not prefixed on the wire: {b}"
        );

        api.post(
            "/model_versions",
            &json!({"name": "shared", "registeredModelId": id1}),
        )
        .await
        .err(409);
        api.post(
            &format!("/registered_models/{id1}/versions"),
            &json!({"name": "shared", "registeredModelId": id1}),
        )
        .await
        .err(409);

        // externalId is unique among versions.
        let ext = uniq("vext");
        api.post(
            "/model_versions",
            &json!({"name": "e1", "registeredModelId": id1, "externalId": ext}),
        )
        .await
        .ok(201);
        api.post(
            "/model_versions",
            &json!({"name": "e2", "registeredModelId": id2, "externalId": ext}),
        )
        .await
        .err(409);
    }
}

#[tokio::test]
async fn find_version() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m1 = api.create_model(&uniq(&format!("f1-{}", api.tag()))).await;
        let m2 = api.create_model(&uniq(&format!("f2-{}", api.tag()))).await;
        let (id1, id2) = (id(&m1), id(&m2));
        let ext = uniq("fv-ext");
        let a = api
            .post(
                "/model_versions",
                &json!({"name": "1.0", "registeredModelId": id1, "externalId": ext}),
            )
            .await
            .ok(201);
        let b = api.create_version(&id2, "1.0").await;

        let fa = api
            .get_q(
                "/model_version",
                &[("name", "1.0"), ("parentResourceId", &id1)],
            )
            .await
            .ok(200);
        assert_eq!(fa, a);
        let fb = api
            .get_q(
                "/model_version",
                &[("name", "1.0"), ("parentResourceId", &id2)],
            )
            .await
            .ok(200);
        assert_eq!(fb, b);
        let fe = api
            .get_q("/model_version", &[("externalId", &ext)])
            .await
            .ok(200);
        assert_eq!(fe, a);

        api.get_q(
            "/model_version",
            &[("name", "2.0"), ("parentResourceId", &id1)],
        )
        .await
        .err(404);
        api.get_q(
            "/model_version",
            &[("name", "1.0"), ("parentResourceId", "999999")],
        )
        .await
        .err(404);
        api.get_q("/model_version", &[("externalId", "nope-nope")])
            .await
            .err(404);
        api.get("/model_version").await.err(400);
        api.get_q(
            "/model_version",
            &[("name", "1.0"), ("parentResourceId", "abc")],
        )
        .await
        .err(400);
    }
}

#[tokio::test]
async fn list_versions() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m1 = api.create_model(&uniq(&format!("l1-{}", api.tag()))).await;
        let m2 = api.create_model(&uniq(&format!("l2-{}", api.tag()))).await;
        let (id1, id2) = (id(&m1), id(&m2));
        let mut mine = Vec::new();
        for i in 0..3 {
            mine.push(api.create_version(&id1, &format!("v{i}")).await);
        }
        let other = api.create_version(&id2, "v0").await;

        let l1 = api
            .list(&format!("/registered_models/{id1}/versions"), &[])
            .await;
        assert_eq!(
            items(&l1),
            mine,
            "versions of one model, default order ID ASC"
        );
        assert_eq!(l1["nextPageToken"], "");

        let l2 = api
            .list(&format!("/registered_models/{id2}/versions"), &[])
            .await;
        assert_eq!(items(&l2), vec![other.clone()]);

        // KServe's "latest version" query.
        let latest = api
            .list(
                &format!("/registered_models/{id1}/versions"),
                &[("sortOrder", "DESC")],
            )
            .await;
        assert_eq!(ids_of(&items(&latest))[0], id(&mine[2]));

        let all = api.list("/model_versions", &[]).await;
        let all_ids = ids_of(&items(&all));
        for v in mine.iter().chain([&other]) {
            assert!(all_ids.contains(&id(v)), "{} missing from {all}", id(v));
        }
        let mut sorted = all_ids.clone();
        sorted.sort_by_key(|s| s.parse::<u64>().unwrap());
        assert_eq!(all_ids, sorted, "default order is ID ascending");

        api.get("/registered_models/999999/versions").await.err(404);
    }
}

#[tokio::test]
async fn patch_version() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq(&format!("pv-{}", api.tag()))).await;
        let other = api.create_model(&uniq("pv-other")).await;
        let v = api
            .post(
                "/model_versions",
                &json!({"name": "v1", "registeredModelId": id(&m), "description": "d",
                        "customProperties": {"k": cp_str("v")}}),
            )
            .await
            .ok(201);
        let path = format!("/model_versions/{}", id(&v));
        let p = api
            .patch(&path, &json!({"state": "ARCHIVED", "author": "bob"}))
            .await
            .ok(200);
        assert_entity_basics(&p);
        assert_eq!(p["state"], "ARCHIVED");
        assert_eq!(p["author"], "bob");
        assert_eq!(p["name"], "v1");
        assert_eq!(p["description"], "d");
        assert_eq!(p["registeredModelId"], json!(id(&m)));
        assert_eq!(p["customProperties"], v["customProperties"]);
        assert!(num_str(&p, "lastUpdateTimeSinceEpoch") > num_str(&v, "lastUpdateTimeSinceEpoch"));

        for bad in [
            json!({"registeredModelId": id(&other)}),
            json!({"registeredModelId": id(&m)}),
            json!({"name": "v2"}),
            json!({"id": id(&v)}),
            json!({"state": "BOGUS"}),
            json!({"nope": 1}),
        ] {
            api.patch(&path, &bad).await.err(400);
        }
        api.patch("/model_versions/999999", &json!({"author": "x"}))
            .await
            .err(404);

        let got = api.get(&path).await.ok(200);
        assert_eq!(got, p, "rejected PATCHes changed nothing");
        // Still listed under its model, not under the other.
        let l = api
            .list(&format!("/registered_models/{}/versions", id(&m)), &[])
            .await;
        assert_eq!(ids_of(&items(&l)), vec![id(&v)]);
        let lo = api
            .list(&format!("/registered_models/{}/versions", id(&other)), &[])
            .await;
        assert!(items(&lo).is_empty());
    }
}
