//! Artifacts: upsert into a version, /model_artifacts and /artifacts endpoints.

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;

fn model_artifact_body(name: &str) -> Value {
    json!({
        "artifactType": "model-artifact",
        "name": name,
        "description": "weights",
        "uri": "s3://bucket/models/m1?endpoint=http://minio:9000&defaultRegion=us-east-1",
        "modelFormatName": "onnx",
        "modelFormatVersion": "1",
        "storageKey": "aws-connection",
        "storagePath": "models/m1",
        "serviceAccountName": "sa",
        "modelSourceKind": "kfp",
        "modelSourceClass": "pipelinerun",
        "modelSourceGroup": "ns",
        "modelSourceId": "run-1",
        "modelSourceName": "my-pipeline/1",
        "state": "LIVE",
        "customProperties": {"k": cp_str("v")}
    })
}

#[track_caller]
fn assert_echo(got: &Value, sent: &Value) {
    let obj = sent.as_object().expect("object");
    for (k, v) in obj {
        if k == "customProperties" || k == "id" {
            continue;
        }
        if v.is_f64() {
            assert_f64(&got[k], v.as_f64().unwrap(), k);
        } else {
            assert_eq!(got.get(k), Some(v), "field `{k}` not echoed in {got}");
        }
    }
}

#[tokio::test]
async fn upsert_model_artifact_into_version() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (_, v) = api.model_and_version(&format!("up-{}", api.tag())).await;
        let vid = id(&v);
        let vpath = format!("/model_versions/{vid}/artifacts");

        let body = model_artifact_body("model");
        let created = api.post(&vpath, &body).await.ok(201);
        assert_entity_basics(&created);
        assert_echo(&created, &body);
        assert_eq!(created["customProperties"]["k"], cp_str("v"));
        let aid = id(&created);

        // Upsert with the id: update, 200, merge semantics.
        let upd = json!({
            "id": aid, "artifactType": "model-artifact",
            "uri": "s3://bucket/models/m2", "modelFormatVersion": "2"
        });
        let updated = api.post(&vpath, &upd).await.ok(200);
        assert_eq!(id(&updated), aid);
        assert_eq!(updated["uri"], "s3://bucket/models/m2");
        assert_eq!(updated["modelFormatVersion"], "2");
        assert_eq!(updated["modelFormatName"], "onnx", "absent fields kept");
        assert_eq!(updated["name"], "model", "name kept");
        assert!(
            num_str(&updated, "lastUpdateTimeSinceEpoch")
                > num_str(&created, "lastUpdateTimeSinceEpoch")
        );
        let via_artifacts = api.get(&format!("/artifacts/{aid}")).await.ok(200);
        assert_eq!(via_artifacts, updated);
        let via_model_artifacts = api.get(&format!("/model_artifacts/{aid}")).await.ok(200);
        assert_eq!(via_model_artifacts, updated);

        // Type change through upsert: 400.
        api.post(
            &vpath,
            &json!({"id": aid, "artifactType": "doc-artifact", "uri": "x"}),
        )
        .await
        .err(400);
        // Duplicate name in the same version without id: 409.
        api.post(&vpath, &model_artifact_body("model"))
            .await
            .err(409);
        // Unknown id: 404.
        api.post(
            &vpath,
            &json!({"id": "999999", "artifactType": "model-artifact", "uri": "x"}),
        )
        .await
        .err(404);
        // Missing version: 404.
        api.post(
            "/model_versions/999999/artifacts",
            &model_artifact_body("m"),
        )
        .await
        .err(404);
        api.post("/model_versions/abc/artifacts", &model_artifact_body("m"))
            .await
            .err(400);
        // Unknown type / unknown field.
        api.post(&vpath, &json!({"artifactType": "weird", "name": "w"}))
            .await
            .err(400);
        api.post(
            &vpath,
            &json!({"artifactType": "model-artifact", "name": "w", "bogus": 1}),
        )
        .await
        .err(400);
        api.post(
            &vpath,
            &json!({"artifactType": "model-artifact", "name": "w", "state": "ARCHIVED"}),
        )
        .await
        .err(400);

        // Same artifact name in another version is fine.
        let v2 = api
            .create_version(v["registeredModelId"].as_str().unwrap(), "v2")
            .await;
        let other = api
            .upsert_new_artifact(&id(&v2), model_artifact_body("model"))
            .await;
        assert_ne!(id(&other), aid);

        let listed = api.list(&vpath, &[]).await;
        assert_eq!(ids_of(&items(&listed)), vec![aid.clone()]);
    }
}

#[tokio::test]
async fn upsert_every_artifact_type_and_filter_by_type() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (_, v) = api.model_and_version(&format!("types-{}", api.tag())).await;
        let vpath = format!("/model_versions/{}/artifacts", id(&v));

        let ma = api
            .upsert_new_artifact(
                &id(&v),
                json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"}),
            )
            .await;
        assert_eq!(ma["artifactType"], "model-artifact");

        let doc_body = json!({"artifactType": "doc-artifact", "name": "readme", "uri": "https://example.com/README.md"});
        let doc = api.upsert_new_artifact(&id(&v), doc_body.clone()).await;
        assert_entity_basics(&doc);
        assert_echo(&doc, &doc_body);
        assert_eq!(
            doc["state"], "UNKNOWN",
            "artifact state defaults to UNKNOWN: {doc}"
        );

        let ds_body = json!({
            "artifactType": "dataset-artifact", "name": "train", "digest": "sha256:abc",
            "sourceType": "s3", "source": "s3://b/train", "schema": "{\"x\": \"int\"}",
            "profile": "rows=10", "uri": "s3://b/train.parquet", "state": "LIVE"
        });
        let ds = api.post(&vpath, &ds_body).await;
        let ds = ds.check_in(&[200, 201]).clone();
        assert_entity_basics(&ds);
        assert_echo(&ds, &ds_body);

        let metric_body = json!({
            "artifactType": "metric", "name": "accuracy", "value": 0.93,
            "timestamp": "1700000000000", "step": 3
        });
        let metric = api
            .post(&vpath, &metric_body)
            .await
            .check_in(&[200, 201])
            .clone();
        assert_entity_basics(&metric);
        assert_echo(&metric, &metric_body);

        // A metric without value is rejected.
        api.post(&vpath, &json!({"artifactType": "metric", "name": "loss"}))
            .await
            .err(400);

        let param_body = json!({
            "artifactType": "parameter", "name": "lr", "value": "0.01", "parameterType": "number"
        });
        let param = api
            .post(&vpath, &param_body)
            .await
            .check_in(&[200, 201])
            .clone();
        assert_entity_basics(&param);
        assert_echo(&param, &param_body);
        api.post(
            &vpath,
            &json!({"artifactType": "parameter", "name": "p2", "value": "1", "parameterType": "float"}),
        )
        .await
        .err(400);

        // Metrics upsert by name: same artifact, new value.
        let metric2 = api
            .post(
                &vpath,
                &json!({"artifactType": "metric", "name": "accuracy", "value": 0.97}),
            )
            .await
            .check_in(&[200, 201])
            .clone();
        assert_eq!(
            id(&metric2),
            id(&metric),
            "metric without id upserts by name"
        );
        assert_f64(&metric2["value"], 0.97, "updated metric value");

        let all = api.list(&vpath, &[]).await;
        assert_eq!(
            ids_of(&items(&all)),
            vec![id(&ma), id(&doc), id(&ds), id(&metric), id(&param)],
            "all artifacts of the version, ID order"
        );
        for (t, expected) in [
            ("model-artifact", &ma),
            ("doc-artifact", &doc),
            ("dataset-artifact", &ds),
            ("metric", &metric),
            ("parameter", &param),
        ] {
            let l = api.list(&vpath, &[("artifactType", t)]).await;
            let its = items(&l);
            assert_eq!(ids_of(&its), vec![id(expected)], "artifactType={t}: {l}");
            assert_eq!(its[0]["artifactType"], t);
        }
        api.get_q(&vpath, &[("artifactType", "bogus")])
            .await
            .err(400);
        api.get("/model_versions/999999/artifacts").await.err(404);
    }
}

#[tokio::test]
async fn artifact_can_belong_to_several_versions() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (m, v1) = api.model_and_version(&format!("multi-{}", api.tag())).await;
        let v2 = api.create_version(&id(&m), "v2").await;
        let a = api
            .upsert_new_artifact(
                &id(&v1),
                json!({"artifactType": "model-artifact", "name": "shared", "uri": "s3://b/s"}),
            )
            .await;
        let again = api
            .post(
                &format!("/model_versions/{}/artifacts", id(&v2)),
                &json!({"id": id(&a), "artifactType": "model-artifact", "description": "linked"}),
            )
            .await
            .ok(200);
        assert_eq!(id(&again), id(&a));
        assert_eq!(again["description"], "linked");
        for v in [&v1, &v2] {
            let l = api
                .list(&format!("/model_versions/{}/artifacts", id(v)), &[])
                .await;
            assert_eq!(
                ids_of(&items(&l)),
                vec![id(&a)],
                "{}: artifact {} upserted (with its id) into version {} must be listed by \
                 GET /model_versions/{}/artifacts",
                api.prefix,
                id(&a),
                id(v),
                id(v)
            );
        }
    }
}

#[tokio::test]
async fn model_artifacts_endpoints() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let t = api.tag();
        let ext = uniq("ma-ext");
        let body = json!({
            "artifactType": "model-artifact", "name": uniq(&format!("ma-{t}")), "externalId": ext,
            "uri": "oci://quay.io/x/y:1", "modelFormatName": "sklearn"
        });
        let ma = api.post("/model_artifacts", &body).await.ok(201);
        assert_entity_basics(&ma);
        assert_echo(&ma, &body);
        let aid = id(&ma);

        // artifactType may be omitted on this typed endpoint.
        let implicit = api
            .post(
                "/model_artifacts",
                &json!({"name": uniq("implicit"), "uri": "s3://x"}),
            )
            .await
            .ok(201);
        assert_eq!(implicit["artifactType"], "model-artifact");

        assert_eq!(
            api.get(&format!("/model_artifacts/{aid}")).await.ok(200),
            ma
        );
        api.get("/model_artifacts/999999").await.err(404);
        api.get("/model_artifacts/abc").await.err(400);

        // Duplicate externalId.
        api.post(
            "/model_artifacts",
            &json!({"name": uniq("x"), "externalId": ext}),
        )
        .await
        .err(409);
        // Only model artifacts are listed here.
        let doc = api
            .post(
                "/artifacts",
                &json!({"artifactType": "doc-artifact", "name": uniq("doc"), "uri": "u"}),
            )
            .await
            .ok(201);
        let l = api.list("/model_artifacts", &[]).await;
        let ids = ids_of(&items(&l));
        assert!(ids.contains(&aid) && ids.contains(&id(&implicit)), "{l}");
        assert!(
            !ids.contains(&id(&doc)),
            "doc artifact listed as model artifact: {l}"
        );
        for it in items(&l) {
            assert_eq!(it["artifactType"], "model-artifact");
        }
        api.get(&format!("/model_artifacts/{}", id(&doc)))
            .await
            .client_err();

        // Find.
        let f = api
            .get_q("/model_artifact", &[("externalId", &ext)])
            .await
            .ok(200);
        assert_eq!(f, ma);
        api.get_q("/model_artifact", &[("externalId", "none-such")])
            .await
            .err(404);
        api.get("/model_artifact").await.err(400);
        let (_, v) = api.model_and_version(&format!("maf-{t}")).await;
        let in_v = api
            .upsert_new_artifact(
                &id(&v),
                json!({"artifactType": "model-artifact", "name": "w", "uri": "s3://w"}),
            )
            .await;
        let fv = api
            .get_q(
                "/model_artifact",
                &[("name", "w"), ("parentResourceId", &id(&v))],
            )
            .await
            .ok(200);
        assert_eq!(fv, in_v);

        // PATCH.
        let path = format!("/model_artifacts/{aid}");
        let p = api
            .patch(
                &path,
                &json!({"artifactType": "model-artifact", "uri": "oci://quay.io/x/y:2", "state": "LIVE"}),
            )
            .await
            .ok(200);
        assert_eq!(p["uri"], "oci://quay.io/x/y:2");
        assert_eq!(p["state"], "LIVE");
        assert_eq!(p["modelFormatName"], "sklearn", "absent fields kept");
        assert_eq!(p["name"], ma["name"]);
        api.patch(&path, &json!({"artifactType": "doc-artifact"}))
            .await
            .err(400);
        api.patch(&path, &json!({"name": "renamed"})).await.err(400);
        api.patch(&path, &json!({"bogus": 1})).await.err(400);
        api.patch(&path, &json!({"state": "ARCHIVED"}))
            .await
            .err(400);
        api.patch(
            "/model_artifacts/999999",
            &json!({"artifactType": "model-artifact", "uri": "x"}),
        )
        .await
        .err(404);
        assert_eq!(api.get(&path).await.ok(200), p);
    }
}

#[tokio::test]
async fn artifacts_endpoints() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let t = api.tag();
        let mk = |ty: &str, extra: Value| {
            let mut b = json!({"artifactType": ty, "name": uniq(&format!("{ty}-{t}"))});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let bodies = [
            mk("model-artifact", json!({"uri": "s3://m"})),
            mk("doc-artifact", json!({"uri": "https://d"})),
            mk(
                "dataset-artifact",
                json!({"uri": "s3://d", "digest": "sha256:1"}),
            ),
            mk("metric", json!({"value": 1.5, "step": 1})),
            mk(
                "parameter",
                json!({"value": "true", "parameterType": "boolean"}),
            ),
        ];
        let mut created = Vec::new();
        for b in &bodies {
            let a = api.post("/artifacts", b).await.ok(201);
            assert_entity_basics(&a);
            assert_echo(&a, b);
            let got = api.get(&format!("/artifacts/{}", id(&a))).await.ok(200);
            assert_eq!(got, a);
            created.push(a);
        }
        api.post(
            "/artifacts",
            &json!({"artifactType": "metric", "name": uniq("nv")}),
        )
        .await
        .err(400);
        api.post(
            "/artifacts",
            &json!({"artifactType": "nonsense", "name": uniq("x")}),
        )
        .await
        .err(400);
        api.post(
            "/artifacts",
            &json!({"artifactType": "doc-artifact", "name": uniq("x"), "x": 1}),
        )
        .await
        .err(400);
        api.get("/artifacts/999999").await.err(404);
        api.get("/artifacts/abc").await.err(400);

        // Standalone artifacts without a name get distinct generated names.
        let n1 = api
            .post(
                "/artifacts",
                &json!({"artifactType": "doc-artifact", "uri": "u1"}),
            )
            .await
            .ok(201);
        let n2 = api
            .post(
                "/artifacts",
                &json!({"artifactType": "doc-artifact", "uri": "u2"}),
            )
            .await
            .ok(201);
        let (a, b) = (n1["name"].as_str(), n2["name"].as_str());
        assert!(
            a.is_some_and(|s| !s.is_empty()) && b.is_some_and(|s| !s.is_empty()) && a != b,
            "generated names must be present and unique: {n1} {n2}"
        );

        // Lists, with the artifactType filter.
        let all = api.list("/artifacts", &[]).await;
        let all_ids = ids_of(&items(&all));
        for a in &created {
            assert!(all_ids.contains(&id(a)), "{} not listed: {all}", id(a));
        }
        for (i, ty) in [
            "model-artifact",
            "doc-artifact",
            "dataset-artifact",
            "metric",
            "parameter",
        ]
        .iter()
        .enumerate()
        {
            let l = api.list("/artifacts", &[("artifactType", ty)]).await;
            let its = items(&l);
            assert!(
                ids_of(&its).contains(&id(&created[i])),
                "artifactType={ty}: {l}"
            );
            for it in &its {
                assert_eq!(it["artifactType"], *ty, "artifactType={ty}: {l}");
            }
        }
        api.get_q("/artifacts", &[("artifactType", "bogus")])
            .await
            .err(400);

        // Find by name + parent version, and by externalId.
        let (_, v) = api.model_and_version(&format!("af-{t}")).await;
        let ext = uniq("art-ext");
        let in_v = api
            .upsert_new_artifact(
                &id(&v),
                json!({"artifactType": "doc-artifact", "name": "notes", "uri": "u", "externalId": ext}),
            )
            .await;
        let f = api
            .get_q(
                "/artifact",
                &[("name", "notes"), ("parentResourceId", &id(&v))],
            )
            .await
            .ok(200);
        assert_eq!(f, in_v);
        let fe = api
            .get_q("/artifact", &[("externalId", &ext)])
            .await
            .ok(200);
        assert_eq!(fe, in_v);
        api.get_q(
            "/artifact",
            &[("name", "absent"), ("parentResourceId", &id(&v))],
        )
        .await
        .err(404);
        api.get("/artifact").await.err(400);
        // externalId is unique among artifacts.
        api.post(
            "/artifacts",
            &json!({"artifactType": "model-artifact", "name": uniq("e"), "externalId": ext}),
        )
        .await
        .err(409);

        // PATCH /artifacts/{id}: artifactType required and immutable.
        let doc = &created[1];
        let path = format!("/artifacts/{}", id(doc));
        let p = api
            .patch(
                &path,
                &json!({"artifactType": "doc-artifact", "uri": "https://d2", "description": "x"}),
            )
            .await
            .ok(200);
        assert_eq!(p["uri"], "https://d2");
        assert_eq!(p["description"], "x");
        assert_eq!(p["name"], doc["name"]);
        api.patch(
            &path,
            &json!({"artifactType": "model-artifact", "uri": "x"}),
        )
        .await
        .err(400);
        api.patch(&path, &json!({"artifactType": "doc-artifact", "name": "n"}))
            .await
            .err(400);
        api.patch(
            "/artifacts/999999",
            &json!({"artifactType": "doc-artifact", "uri": "x"}),
        )
        .await
        .err(404);
        assert_eq!(api.get(&path).await.ok(200), p);

        let metric = &created[3];
        let pm = api
            .patch(
                &format!("/artifacts/{}", id(metric)),
                &json!({"artifactType": "metric", "value": 0.25}),
            )
            .await
            .ok(200);
        assert_f64(&pm["value"], 0.25, "patched metric value");
        assert_eq!(pm["step"], json!(1), "absent fields kept: {pm}");
    }
}

#[tokio::test]
async fn patch_artifact_requires_its_artifact_type() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let a = api
            .post(
                "/artifacts",
                &json!({"artifactType": "doc-artifact", "name": uniq("pt"), "uri": "u"}),
            )
            .await
            .ok(201);
        let path = format!("/artifacts/{}", id(&a));
        for other in ["model-artifact", "dataset-artifact", "metric", "parameter"] {
            api.patch(&path, &json!({"artifactType": other, "uri": "x"}))
                .await
                .err(400);
        }
        // ArtifactUpdate is a union discriminated by artifactType: without it the body
        // cannot be decoded.
        api.patch(&path, &json!({"uri": "no-type"})).await.err(400);
        assert_eq!(
            api.get(&path).await.ok(200),
            a,
            "rejected PATCHes changed nothing"
        );
    }
}
