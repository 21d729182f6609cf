//! Health, routing, error format, NUL bytes, shared store behind both prefixes.

use reqwest::Method;
use serde_json::json;

use crate::common::*;
use crate::harness::Server;

#[tokio::test]
async fn root_leads_to_the_web_interface_and_health_is_200() {
    let srv = Server::start().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = no_redirects.get(srv.url("/")).send().await.unwrap();
    assert_eq!(
        root.status().as_u16(),
        303,
        "GET / leads to the web interface"
    );
    assert_eq!(
        root.headers().get("location").and_then(|l| l.to_str().ok()),
        Some("/ui/")
    );
    let elsewhere = srv
        .client()
        .get(srv.url("/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status().as_u16(), 404, "an unknown path is 404");
    let health = srv
        .client()
        .get(srv.url("/readyz/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "GET /readyz/health");
    for url in [
        srv.url_v1alpha3("/registered_models"),
        srv.url_v1("/registered_models"),
    ] {
        let r = srv.client().get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET {url}");
    }
}

#[tokio::test]
async fn readyz_is_dirty_answers() {
    let srv = Server::start().await;
    let r = srv
        .client()
        .get(srv.url("/readyz/isDirty"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET /readyz/isDirty");
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let srv = Server::start().await;
    for api in srv.apis() {
        for p in [
            "/not_a_resource",
            "/registered_models/1/nothing",
            "/registered_modelz",
        ] {
            api.get(p).await.err(404);
        }
    }
    // Outside the API prefixes.
    let api = srv.api(V1);
    let other = Api::new(
        srv.client().clone(),
        srv.base_url(),
        "/api/model_registry/v2",
    );
    other.get("/registered_models").await.err(404);
    let nowhere = Api::new(srv.client().clone(), srv.base_url(), "");
    nowhere.get("/no/such/path").await.err(404);
    // Sanity: the real path works on the same server.
    api.list("/registered_models", &[]).await;
}

#[tokio::test]
async fn wrong_method_is_405_or_404_never_5xx() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq(&format!("wm-{}", api.tag()))).await;
        let mp = format!("/registered_models/{}", id(&m));
        for (method, path) in [
            (Method::DELETE, mp.as_str()),
            (Method::PUT, mp.as_str()),
            (Method::DELETE, "/registered_models"),
            (Method::PUT, "/registered_models"),
            (Method::PATCH, "/registered_models"),
            (Method::POST, mp.as_str()),
            (Method::POST, "/registered_model"),
            (Method::DELETE, "/model_versions"),
            (Method::PUT, "/artifacts"),
        ] {
            let r = api.raw(method.clone(), path, "{}").await;
            r.check_in(&[404, 405]);
        }
        for path in [mp.as_str(), "/registered_models"] {
            api.call(Method::DELETE, path).await.check_in(&[404, 405]);
        }
        // Nothing was deleted.
        api.get(&mp).await.ok(200);
    }
}

#[tokio::test]
async fn error_codes_carry_http_status_text() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("ec-{}", api.tag()));
        api.create_model(&name).await;
        let r = api.get("/registered_models/abc").await;
        r.err(400);
        assert_eq!(r.body["code"], "Bad Request");
        let r = api.get("/registered_models/999999").await;
        r.err(404);
        assert_eq!(r.body["code"], "Not Found");
        let r = api
            .post("/registered_models", &json!({ "name": name }))
            .await;
        r.err(409);
        assert_eq!(r.body["code"], "Conflict");
        let r = api.post("/registered_models", &json!({})).await;
        r.err(422);
        assert_eq!(r.body["code"], "Unprocessable Entity");
    }
}

#[tokio::test]
async fn nul_bytes_are_rejected() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let t = api.tag();
        api.post(
            "/registered_models",
            &json!({"name": format!("nul\u{0}{t}")}),
        )
        .await
        .err(400);
        api.post(
            "/registered_models",
            &json!({"name": uniq("nul-desc"), "description": "a\u{0}b"}),
        )
        .await
        .err(400);
        api.post(
            "/registered_models",
            &json!({"name": uniq("nul-cp"), "customProperties": {"k\u{0}": cp_str("v")}}),
        )
        .await
        .err(400);
        // Also escaped as \u0000 in raw JSON.
        api.raw(
            Method::POST,
            "/registered_models",
            &format!("{{\"name\": \"raw\\u0000{t}\"}}"),
        )
        .await
        .err(400);
        let m = api.create_model(&uniq("np")).await;
        api.patch(
            &format!("/registered_models/{}", id(&m)),
            &json!({"description": "x\u{0}y"}),
        )
        .await
        .err(400);
        let l = api
            .list("/registered_models", &[("filterQuery", "name LIKE 'nul%'")])
            .await;
        assert_eq!(items(&l).len(), 0, "nothing with a NUL was stored: {l}");
        // Query parameters are printable ASCII only.
        api.get_q("/registered_model", &[("name", "a\u{0}b")])
            .await
            .err(400);
    }
}

#[tokio::test]
async fn both_prefixes_serve_the_same_data() {
    let srv = Server::start().await;
    let a3 = srv.api(V1ALPHA3);
    let v1 = srv.api(V1);
    let name = uniq("shared");
    let m = a3.create_model(&name).await;
    let via_v1 = v1
        .get(&format!("/registered_models/{}", id(&m)))
        .await
        .ok(200);
    assert_eq!(via_v1, m);
    let v = v1.create_version(&id(&m), "1").await;
    let via_a3 = a3
        .get_q(
            "/model_version",
            &[("name", "1"), ("parentResourceId", &id(&m))],
        )
        .await
        .ok(200);
    assert_eq!(via_a3, v);
    // Same error contract on both.
    v1.post("/registered_models", &json!({ "name": name }))
        .await
        .err(409);
}

#[tokio::test]
async fn json_content_type_on_success() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq("ct")).await;
        for r in [
            api.get(&format!("/registered_models/{}", id(&m))).await,
            api.get("/registered_models").await,
        ] {
            r.check(200);
            assert!(
                r.content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("application/json")),
                "{r:?}"
            );
        }
    }
}
