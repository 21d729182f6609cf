//! Size and range limits of input: an entity too large is 413, a name or
//! externalId too long (in characters or in UTF-8 bytes) and a number out of
//! range are 400, always before anything is written and the same on every
//! backend (this suite also runs with the registry on DynamoDB).

use serde_json::{Map, Value, json};

use crate::common::*;
use crate::harness::Server;

/// Far more than an entity may hold (64 KiB stored), and more than a
/// DynamoDB item (400 KB).
fn huge() -> String {
    "d".repeat(500_000)
}

#[tokio::test]
async fn oversize_description_is_413_and_writes_nothing() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("big-{}", api.tag()));
        let r = api
            .post(
                "/registered_models",
                &json!({"name": name, "description": huge(), "externalId": name}),
            )
            .await;
        r.err(413);
        let m = r.message();
        assert!(m.contains("registered model is too large"), "{m}");
        assert!(
            m.contains("at most 65536 (description 500000 bytes)"),
            "{m}"
        );
        // Not created, and its name and externalId are free.
        api.get_q("/registered_model", &[("name", &name)])
            .await
            .err(404);
        api.get_q("/registered_model", &[("externalId", &name)])
            .await
            .err(404);
        let model = api
            .create_model_body(json!({"name": name, "externalId": name, "description": "small"}))
            .await;
        let path = format!("/registered_models/{}", id(&model));

        // PATCH: 413 after merging, and the model is unchanged.
        let r = api.patch(&path, &json!({"description": huge()})).await;
        r.err(413);
        assert!(r.message().contains("(description 500000 bytes)"), "{r:?}");
        let r = api
            .patch(
                &path,
                &json!({"readme": "r".repeat(40_000), "description": "e".repeat(40_000)}),
            )
            .await;
        r.err(413);
        assert_eq!(api.get(&path).await.ok(200), model, "unchanged");

        // Well under the limit is fine.
        let fits = "f".repeat(60_000);
        let patched = api
            .patch(&path, &json!({"description": fits}))
            .await
            .ok(200);
        assert_eq!(patched["description"], json!(fits));
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("fits"), "description": fits}),
            )
            .await;
        r.check(201);

        // A version and an artifact of that version, likewise.
        let r = api
            .post(
                "/model_versions",
                &json!({"name": "v1", "registeredModelId": id(&model), "description": huge()}),
            )
            .await;
        r.err(413);
        assert!(r.message().contains("model version is too large"), "{r:?}");
        let version = api.create_version(&id(&model), "v1").await;
        let arts = format!("/model_versions/{}/artifacts", id(&version));
        let r = api
            .post(
                &arts,
                &json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/k", "description": huge()}),
            )
            .await;
        r.err(413);
        assert!(r.message().contains("artifact is too large"), "{r:?}");
        assert!(items(&api.list(&arts, &[]).await).is_empty());
        let art = api
            .upsert_new_artifact(
                &id(&version),
                json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/k"}),
            )
            .await;
        let r = api
            .post(
                &arts,
                &json!({"artifactType": "model-artifact", "id": id(&art), "description": huge()}),
            )
            .await;
        r.err(413);
        assert_eq!(
            api.get(&format!("/artifacts/{}", id(&art))).await.ok(200),
            art
        );
    }
}

#[tokio::test]
async fn oversize_custom_property_is_413() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("cp"), "customProperties": {"blob": cp_str(&huge())}}),
            )
            .await;
        r.err(413);
        assert!(r.message().contains("customProperties.blob"), "{r:?}");
        // Many medium properties: the message names the map and its largest key.
        let many: Map<String, Value> = (0..10)
            .map(|i| (format!("p{i}"), cp_str(&"c".repeat(10_000 + i))))
            .collect();
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("cp"), "customProperties": many}),
            )
            .await;
        r.err(413);
        assert!(
            r.message()
                .contains("customProperties (10 keys, largest 'p9'"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn names_are_bounded_in_bytes() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let t = api.tag(); // two ASCII characters
        // 255 characters of 4 bytes: 1,020 bytes, over the byte limit.
        let r = api
            .post("/registered_models", &json!({"name": "😀".repeat(255)}))
            .await;
        r.err(400);
        assert!(r.message().contains("at most 1000"), "{r:?}");
        // Exactly 1,000 bytes (253 characters): accepted, found by name.
        let name = format!("{t}{}{t}", "😀".repeat(249));
        assert_eq!(name.len(), 1000);
        let m = api.create_model(&name).await;
        assert_eq!(m["name"], json!(name));
        let found = api
            .get_q("/registered_model", &[("name", &name)])
            .await
            .ok(200);
        assert_eq!(id(&found), id(&m));
        // One byte more.
        let r = api
            .post("/registered_models", &json!({"name": format!("{name}x")}))
            .await;
        r.err(400);
        assert!(r.message().contains("1001 bytes"), "{r:?}");
        // A version name of 4-byte characters: same byte limit.
        let v = api.create_version(&id(&m), &"😀".repeat(250)).await;
        assert_eq!(v["name"], json!("😀".repeat(250)));
        api.post(
            "/model_versions",
            &json!({"name": "😀".repeat(251), "registeredModelId": id(&m)}),
        )
        .await
        .err(400);
        // Finding by a name longer than any stored one finds nothing (no 5xx).
        api.get_q("/registered_model", &[("name", &"n".repeat(5000))])
            .await
            .err(404);
        api.get_q(
            "/model_version",
            &[("name", &"n".repeat(5000)), ("parentResourceId", &id(&m))],
        )
        .await
        .err(404);
    }
}

#[tokio::test]
async fn version_names_count_the_parent_id_prefix() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api.create_model(&uniq(&format!("pfx-{}", api.tag()))).await;
        let mid = id(&m);
        // Upstream stores "<modelId>:<name>" in at most 255 characters.
        assert!(mid.len() <= 4, "a fresh server has small ids: {mid}");
        let v = api.create_version(&mid, &"v".repeat(250)).await;
        assert_eq!(v["name"].as_str().map(str::len), Some(250));
        let r = api
            .post(
                "/model_versions",
                &json!({"name": "w".repeat(255), "registeredModelId": mid}),
            )
            .await;
        r.err(400);
        // The exact bound: 255 - len("<id>:").
        let most = 254 - mid.len();
        assert!(r.message().contains(&format!("at most {most}")), "{r:?}");
        api.create_version(&mid, &"x".repeat(most)).await;
        api.post(
            "/model_versions",
            &json!({"name": "y".repeat(most + 1), "registeredModelId": mid}),
        )
        .await
        .err(400);
        // A model (no parent) may use all 255.
        api.create_model(&format!("{}{}", api.tag(), "m".repeat(253)))
            .await;
    }
}

#[tokio::test]
async fn external_ids_are_bounded_in_bytes() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let t = api.tag();
        // 1,024 bytes: the longest sort key DynamoDB takes.
        let xid = format!("{t}{}{t}", "😀".repeat(255));
        assert_eq!(xid.len(), 1024);
        let m = api
            .create_model_body(json!({"name": uniq("xid"), "externalId": xid}))
            .await;
        let found = api
            .get_q("/registered_model", &[("externalId", &xid)])
            .await
            .ok(200);
        assert_eq!(id(&found), id(&m));
        let over = format!("{xid}x");
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("xid"), "externalId": over}),
            )
            .await;
        r.err(400);
        assert!(r.message().contains("1025 bytes"), "{r:?}");
        api.patch(
            &format!("/registered_models/{}", id(&m)),
            &json!({"externalId": over}),
        )
        .await
        .err(400);
        // Finding by one finds nothing (no 5xx on any backend).
        api.get_q("/registered_model", &[("externalId", &over)])
            .await
            .err(404);
    }
}

#[tokio::test]
async fn custom_properties_are_bounded_in_number_and_key_length() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let props = |n: usize, key_len: usize| -> Map<String, Value> {
            (0..n)
                .map(|i| (format!("{i:0>key_len$}"), cp_bool(true)))
                .collect()
        };
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("cp"), "customProperties": props(1001, 4)}),
            )
            .await;
        r.err(400);
        assert!(r.message().contains("1001 keys, at most 1000"), "{r:?}");
        let m = api
            .create_model_body(json!({"name": uniq("cp"), "customProperties": props(1000, 4)}))
            .await;
        assert_eq!(m["customProperties"].as_object().map(Map::len), Some(1000));
        api.patch(
            &format!("/registered_models/{}", id(&m)),
            &json!({"customProperties": props(1001, 4)}),
        )
        .await
        .err(400);
        api.create_model_body(json!({"name": uniq("cp"), "customProperties": props(1, 255)}))
            .await;
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("cp"), "customProperties": props(1, 256)}),
            )
            .await;
        r.err(400);
        assert!(r.message().contains("256 bytes"), "{r:?}");
    }
}

#[tokio::test]
async fn numbers_out_of_range_are_400_never_500() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let e = api
            .post("/experiments", &json!({"name": uniq("nums")}))
            .await
            .ok(201);
        let eid = id(&e);
        let run = |extra: Value| {
            let mut body = json!({"name": uniq("run"), "experimentId": eid});
            if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(x.clone());
            }
            body
        };
        for bad in [
            json!({"startTimeSinceEpoch": "99999999999999999999"}),
            json!({"startTimeSinceEpoch": "-9223372036854775809"}),
            json!({"startTimeSinceEpoch": 1e30}),
            json!({"endTimeSinceEpoch": 18446744073709551615u64}),
        ] {
            let r = api.post("/experiment_runs", &run(bad.clone())).await;
            r.err(400);
            assert!(r.message().contains("out of range"), "{bad}: {r:?}");
        }
        // The extremes of the range are values like any other.
        let r = api
            .post(
                "/experiment_runs",
                &run(json!({"startTimeSinceEpoch": i64::MAX.to_string()})),
            )
            .await
            .ok(201);
        assert_eq!(r["startTimeSinceEpoch"], json!(i64::MAX.to_string()));
        let rid = id(&r);
        api.patch(
            &format!("/experiment_runs/{rid}"),
            &json!({"endTimeSinceEpoch": "99999999999999999999"}),
        )
        .await
        .err(400);

        // Metrics logged to the run: timestamp and step.
        let arts = format!("/experiment_runs/{rid}/artifacts");
        let metric = |extra: Value| {
            let mut body = json!({"artifactType": "metric", "name": "loss", "value": 0.5});
            if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(x.clone());
            }
            body
        };
        for bad in [
            json!({"timestamp": "99999999999999999999"}),
            json!({"timestamp": 1e25}),
            json!({"step": 1e20}),
            json!({"step": 9223372036854775808u64}),
            json!({"step": -1e19}),
        ] {
            let r = api.post(&arts, &metric(bad.clone())).await;
            r.err(400);
            assert!(r.message().contains("out of range"), "{bad}: {r:?}");
        }
        let logged = api
            .post(
                &arts,
                &metric(json!({"step": i64::MAX, "timestamp": i64::MIN.to_string()})),
            )
            .await
            .ok(201);
        assert_eq!(logged["step"], json!(i64::MAX));
        // Nothing of the refused ones was logged.
        let history = items(
            &api.list(&format!("/experiment_runs/{rid}/metric_history"), &[])
                .await,
        );
        assert_eq!(history.len(), 1, "{history:?}");

        // An int custom property out of range.
        let r = api
            .post(
                "/registered_models",
                &json!({"name": uniq("int"), "customProperties": {"n": {"metadataType": "MetadataIntValue", "int_value": "9223372036854775808"}}}),
            )
            .await;
        r.err(400);
        assert!(r.message().contains("out of range"), "{r:?}");
    }
}
