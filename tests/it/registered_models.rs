//! RegisteredModel CRUD, find, uniqueness, PATCH semantics and validation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;

const OPTIONAL_MODEL_FIELDS: &[&str] = &[
    "description",
    "externalId",
    "owner",
    "readme",
    "maturity",
    "language",
    "tasks",
    "provider",
    "logo",
    "license",
    "licenseLink",
    "libraryName",
];

fn full_model_body(name: &str, external_id: &str) -> Value {
    json!({
        "name": name,
        "description": "A model with every field set",
        "externalId": external_id,
        "owner": "alice",
        "state": "ARCHIVED",
        "readme": "# Title\n\nSome *markdown*.",
        "maturity": "Generally Available",
        "language": ["en", "es", "cz"],
        "tasks": ["text-generation", "summarization"],
        "provider": "IBM",
        "logo": "data:image/png;base64,iVBORw0KGgo=",
        "license": "apache-2.0",
        "licenseLink": "https://www.apache.org/licenses/LICENSE-2.0",
        "libraryName": "transformers",
        "customProperties": {
            "framework": cp_str("pytorch"),
            "label": cp_str(""),
            "epochs": cp_int(10),
            "negative": cp_int(-7),
            "accuracy": cp_double(0.95),
            "prod": cp_bool(true),
            "config": cp_struct(&json!({"layers": 12, "act": "gelu", "nested": {"a": [1, 2]}})),
        }
    })
}

#[track_caller]
fn assert_full_model(got: &Value, sent: &Value) {
    assert_entity_basics(got);
    for f in [
        "name",
        "description",
        "externalId",
        "owner",
        "state",
        "readme",
        "maturity",
        "language",
        "tasks",
        "provider",
        "logo",
        "license",
        "licenseLink",
        "libraryName",
    ] {
        assert_eq!(got.get(f), sent.get(f), "field `{f}` not echoed in {got}");
    }
    let cp = &got["customProperties"];
    assert_eq!(cp["framework"], cp_str("pytorch"), "string property: {cp}");
    assert_eq!(cp["label"], cp_str(""), "empty string property: {cp}");
    assert_eq!(
        cp["epochs"],
        json!({"metadataType": "MetadataIntValue", "int_value": "10"}),
        "int_value must be the STRING \"10\": {cp}"
    );
    assert_eq!(cp["negative"]["int_value"], json!("-7"), "{cp}");
    assert_eq!(
        cp["accuracy"]["metadataType"], "MetadataDoubleValue",
        "{cp}"
    );
    assert_f64(&cp["accuracy"]["double_value"], 0.95, "double_value");
    assert_eq!(cp["prod"], cp_bool(true), "bool property: {cp}");
    assert_eq!(cp["config"]["metadataType"], "MetadataStructValue", "{cp}");
    let s = cp["config"]["struct_value"]
        .as_str()
        .unwrap_or_else(|| panic!("struct_value must be a base64 string: {cp}"));
    assert_eq!(
        decode_struct(s),
        json!({"layers": 12, "act": "gelu", "nested": {"a": [1, 2]}}),
        "struct_value must round-trip"
    );
    assert_eq!(
        cp.as_object().map(|o| o.len()),
        Some(7),
        "exactly the sent custom properties: {cp}"
    );
}

#[tokio::test]
async fn create_with_every_field_and_get_back() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("full-{}", api.tag()));
        let ext = uniq("ext");
        let body = full_model_body(&name, &ext);
        let created = api.post("/registered_models", &body).await.ok(201);
        assert_full_model(&created, &body);
        let (c, u) = assert_timestamps(&created);
        assert_eq!(
            c, u,
            "a new entity has lastUpdate == create time: {created}"
        );

        let got = api
            .get(&format!("/registered_models/{}", id(&created)))
            .await
            .ok(200);
        assert_full_model(&got, &body);
        assert_eq!(got, created, "GET must return what POST returned");
    }
}

#[tokio::test]
async fn minimal_create_defaults_and_omits_unset_fields() {
    let srv = Server::start().await;
    let before = now_ms();
    for api in srv.apis() {
        let name = uniq(&format!("min-{}", api.tag()));
        let m = api.create_model(&name).await;
        assert_entity_basics(&m);
        assert_eq!(m["name"], json!(name));
        assert_eq!(m["state"], "LIVE", "state defaults to LIVE: {m}");
        assert_eq!(
            m["customProperties"],
            json!({}),
            "customProperties is {{}} when empty: {m}"
        );
        assert_absent(&m, OPTIONAL_MODEL_FIELDS);
        let (c, _) = assert_timestamps(&m);
        assert!(
            c + 5_000 >= before,
            "createTimeSinceEpoch {c} is not now-ish ({before})"
        );
        let got = api
            .get(&format!("/registered_models/{}", id(&m)))
            .await
            .ok(200);
        assert_absent(&got, OPTIONAL_MODEL_FIELDS);
        assert_eq!(got["customProperties"], json!({}));
    }
}

#[tokio::test]
async fn ids_are_decimal_strings_and_increase() {
    let srv = Server::start().await;
    let api = srv.api(V1);
    let mut last = 0;
    for i in 0..5 {
        let m = api.create_model(&uniq(&format!("inc{i}"))).await;
        assert_id_format(&m);
        let n = id_num(&m);
        assert!(n > last, "ids must increase over time: {n} after {last}");
        last = n;
    }
}

#[tokio::test]
async fn get_unknown_or_malformed_id() {
    let srv = Server::start().await;
    for api in srv.apis() {
        api.get("/registered_models/999999").await.err(404);
        api.get("/registered_models/abc").await.err(400);
        api.get("/registered_models/12abc").await.err(400);
        api.get("/registered_models/99999999999999999999")
            .await
            .client_err();
        api.patch("/registered_models/999999", &json!({"description": "x"}))
            .await
            .err(404);
        api.patch("/registered_models/abc", &json!({"description": "x"}))
            .await
            .err(400);
    }
}

#[tokio::test]
async fn find_by_name_and_external_id() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("find-{}", api.tag()));
        let ext = uniq("find-ext");
        let m = api
            .create_model_body(json!({"name": name, "externalId": ext}))
            .await;
        // A decoy, so "first model" is not accidentally right.
        api.create_model(&uniq("decoy")).await;

        let by_name = api
            .get_q("/registered_model", &[("name", &name)])
            .await
            .ok(200);
        assert_eq!(by_name, m, "find by name");
        let by_ext = api
            .get_q("/registered_model", &[("externalId", &ext)])
            .await
            .ok(200);
        assert_eq!(by_ext, m, "find by externalId");
        let both = api
            .get_q(
                "/registered_model",
                &[("name", &name), ("externalId", &ext)],
            )
            .await
            .ok(200);
        assert_eq!(id(&both), id(&m), "find by name and externalId");

        api.get_q("/registered_model", &[("name", "no-such-model-xyz")])
            .await
            .err(404);
        api.get_q("/registered_model", &[("externalId", "no-such-ext-xyz")])
            .await
            .err(404);
        api.get("/registered_model").await.err(400);
    }
}

#[tokio::test]
async fn duplicate_name_or_external_id_conflicts() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("dup-{}", api.tag()));
        let ext = uniq("dup-ext");
        let m = api
            .create_model_body(json!({"name": name, "externalId": ext, "owner": "first"}))
            .await;
        api.post(
            "/registered_models",
            &json!({"name": name, "owner": "second"}),
        )
        .await
        .err(409);
        api.post(
            "/registered_models",
            &json!({"name": uniq("other"), "externalId": ext}),
        )
        .await
        .err(409);
        // The original is untouched and still the only match.
        let found = api
            .get_q("/registered_model", &[("name", &name)])
            .await
            .ok(200);
        assert_eq!(found, m);

        // Taking another model's externalId through PATCH is a conflict too.
        let other = api.create_model(&uniq("other2")).await;
        api.patch(
            &format!("/registered_models/{}", id(&other)),
            &json!({"externalId": ext}),
        )
        .await
        .err(409);
        let other_now = api
            .get(&format!("/registered_models/{}", id(&other)))
            .await
            .ok(200);
        assert!(other_now.get("externalId").is_none(), "{other_now}");
    }
}

#[tokio::test]
async fn patch_merge_semantics() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("patch-{}", api.tag()));
        let m = api
            .create_model_body(json!({
                "name": name,
                "description": "old",
                "owner": "alice",
                "language": ["en"],
                "customProperties": {"a": cp_str("1"), "b": cp_int(2)}
            }))
            .await;
        let path = format!("/registered_models/{}", id(&m));
        let (created, mut last_update) = assert_timestamps(&m);

        // Present fields overwrite, absent keep.
        let p1 = api
            .patch(&path, &json!({"description": "new", "provider": "acme"}))
            .await
            .ok(200);
        assert_entity_basics(&p1);
        assert_eq!(p1["description"], "new");
        assert_eq!(p1["provider"], "acme");
        assert_eq!(p1["owner"], "alice", "absent field kept: {p1}");
        assert_eq!(p1["language"], json!(["en"]), "absent field kept: {p1}");
        assert_eq!(p1["name"], json!(name), "name kept: {p1}");
        assert_eq!(p1["state"], "LIVE");
        assert_eq!(p1["id"], m["id"]);
        assert_eq!(
            p1["customProperties"], m["customProperties"],
            "absent customProperties kept"
        );
        let (c1, u1) = assert_timestamps(&p1);
        assert_eq!(c1, created, "createTimeSinceEpoch never changes");
        assert!(
            u1 > last_update,
            "lastUpdate must increase: {u1} <= {last_update}"
        );
        last_update = u1;

        // null keeps the value too.
        let p2 = api.patch(&path, &json!({"owner": null})).await.ok(200);
        assert_eq!(p2["owner"], "alice", "null keeps the value: {p2}");

        // customProperties replaces the whole map.
        let p3 = api
            .patch(&path, &json!({"customProperties": {"c": cp_bool(false)}}))
            .await
            .ok(200);
        assert_eq!(
            p3["customProperties"],
            json!({"c": cp_bool(false)}),
            "customProperties must be replaced, not merged"
        );
        assert_eq!(p3["description"], "new");
        let (_, u3) = assert_timestamps(&p3);
        assert!(u3 > last_update);
        last_update = u3;

        // {} clears it.
        let p4 = api
            .patch(&path, &json!({"customProperties": {}}))
            .await
            .ok(200);
        assert_eq!(p4["customProperties"], json!({}), "{{}} clears: {p4}");

        // Archive.
        let p5 = api
            .patch(&path, &json!({"state": "ARCHIVED"}))
            .await
            .ok(200);
        assert_eq!(p5["state"], "ARCHIVED");
        let (_, u5) = assert_timestamps(&p5);
        assert!(u5 > last_update);

        // GET shows the final state.
        let got = api.get(&path).await.ok(200);
        assert_eq!(got, p5, "GET after PATCH must equal the PATCH response");
        assert_eq!(got["description"], "new");
        assert_eq!(got["owner"], "alice");
        assert_eq!(got["provider"], "acme");
        assert_eq!(got["customProperties"], json!({}));
    }
}

#[tokio::test]
async fn patch_rejects_read_only_unknown_and_invalid_fields() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api
            .create_model_body(json!({"name": uniq(&format!("ro-{}", api.tag())), "owner": "o"}))
            .await;
        let path = format!("/registered_models/{}", id(&m));
        for bad in [
            json!({"name": "renamed"}),
            json!({"id": "1"}),
            json!({"id": id(&m)}),
            json!({"bogusField": 1}),
            json!({"createTimeSinceEpoch": "1"}),
            json!({"lastUpdateTimeSinceEpoch": "1"}),
            json!({"state": "DELETED"}),
            json!({"state": "live"}),
            json!({"description": "ok", "unknown": true}),
            json!({"customProperties": {"p": {"metadataType": "MetadataProtoValue", "type": "t", "proto_value": "AA=="}}}),
        ] {
            api.patch(&path, &bad).await.err(400);
        }
        api.raw(Method::PATCH, &path, "{\"description\": ")
            .await
            .err(400);
        // Nothing was applied by the rejected requests.
        let got = api.get(&path).await.ok(200);
        assert_eq!(got, m, "rejected PATCHes must not change the model");
    }
}

#[tokio::test]
async fn create_validation_errors() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let t = api.tag();
        // Required field missing or empty: 422.
        api.post("/registered_models", &json!({"description": "no name"}))
            .await
            .err(422);
        api.post("/registered_models", &json!({"name": ""}))
            .await
            .err(422);

        // Strict decoding: 400.
        let unknown = uniq(&format!("unknown-{t}"));
        api.post(
            "/registered_models",
            &json!({"name": unknown, "notAField": "x"}),
        )
        .await
        .err(400);
        api.get_q("/registered_model", &[("name", &unknown)])
            .await
            .err(404);
        api.post(
            "/registered_models",
            &json!({"name": uniq("s"), "state": "BOGUS"}),
        )
        .await
        .err(400);
        api.post("/registered_models", &json!({"name": 42}))
            .await
            .err(400);
        api.post(
            "/registered_models",
            &json!({"name": uniq("s"), "language": "en"}),
        )
        .await
        .err(400);
        api.post("/registered_models", &json!({"name": uniq("s"), "id": "5"}))
            .await
            .err(400);

        // Custom property values.
        let proto =
            json!({"metadataType": "MetadataProtoValue", "type": "x", "proto_value": "AAEC"});
        for bad_cp in [
            proto,
            json!({"metadataType": "MetadataIntValue", "int_value": "abc"}),
            json!({"metadataType": "MetadataIntValue", "int_value": "1.5"}),
            json!({"metadataType": "MetadataBogusValue", "string_value": "x"}),
            json!({"string_value": "no metadataType"}),
            json!({"metadataType": "MetadataStringValue", "string_value": "x", "extra": 1}),
        ] {
            api.post(
                "/registered_models",
                &json!({"name": uniq("cp"), "customProperties": {"k": bad_cp}}),
            )
            .await
            .err(400);
        }

        // Malformed JSON.
        api.raw(Method::POST, "/registered_models", "{\"name\": \"x\",")
            .await
            .err(400);
        api.raw(Method::POST, "/registered_models", "not json")
            .await
            .err(400);
        api.raw(Method::POST, "/registered_models", "[]")
            .await
            .client_err();

        // Name length: 255 is the limit.
        let ok_name = format!("{}-{}", t, "n".repeat(252));
        assert_eq!(ok_name.len(), 255);
        let m = api.create_model(&ok_name).await;
        assert_eq!(m["name"], json!(ok_name));
        api.post(
            "/registered_models",
            &json!({"name": format!("{t}{}", "x".repeat(254))}),
        )
        .await
        .client_err();
        api.post(
            "/registered_models",
            &json!({"name": format!("{t}{}", "y".repeat(10_000))}),
        )
        .await
        .client_err();
    }
}

#[tokio::test]
async fn last_update_time_strictly_increases_on_rapid_patches() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api
            .create_model(&uniq(&format!("rapid-{}", api.tag())))
            .await;
        let path = format!("/registered_models/{}", id(&m));
        let (created, mut last) = assert_timestamps(&m);
        for i in 0..6 {
            let p = api
                .patch(&path, &json!({"description": format!("d{i}")}))
                .await
                .ok(200);
            let (c, u) = assert_timestamps(&p);
            assert_eq!(c, created);
            assert!(
                u > last,
                "PATCH #{i}: lastUpdateTimeSinceEpoch must strictly increase ({u} <= {last})"
            );
            last = u;
        }
        let got = api.get(&path).await.ok(200);
        assert_eq!(num_str(&got, "lastUpdateTimeSinceEpoch"), last);
    }
}
