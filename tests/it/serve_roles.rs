//! `MR_SERVE`: a resource family deployed as a reading function (GET, on a
//! read-only table handle) and a writing one (every other method). Each
//! answers the other half with a 405 in the API's error shape; health and
//! the OpenAPI documents answer in both. With the suite on DynamoDB, a
//! reader and a writer share one table: what one writes, the other reads.

use std::time::Duration;

use registry_test_support::{Launch, server_bin};
use reqwest::Method;
use serde_json::json;

use crate::common::*;
use crate::harness::{Server, ServerOpts};

fn role(serve: &str) -> ServerOpts {
    ServerOpts {
        env: vec![("MR_SERVE".into(), serve.into())],
        ..ServerOpts::default()
    }
}

fn on_dynamodb() -> bool {
    std::env::var("MR_TEST_ENV").is_ok_and(|e| e.contains("MR_STORE=dynamodb"))
}

/// A writing and a reading server on one new table (DynamoDB: the writer
/// creates it), or, on the embedded store (one process per data
/// directory), a reader alone.
async fn writer_and_reader() -> (Option<Server>, Server) {
    if !on_dynamodb() {
        return (None, Server::start_with(role("reads")).await);
    }
    let table = format!("it-roles-{}", uniq("t").replace(['_', ':'], "-"));
    let mut writer = role("writes");
    writer.env.push(("MR_TABLE".into(), table.clone()));
    let writer = Server::start_with(writer).await;
    let mut reader = role("reads");
    reader.env.push(("MR_TABLE".into(), table));
    reader.env.push(("MR_CREATE_TABLE".into(), "false".into()));
    (Some(writer), Server::start_with(reader).await)
}

async fn health_and_documents_answer(srv: &Server) {
    let health = srv
        .client()
        .get(srv.url("/readyz/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    for api in srv.apis() {
        api.get("/openapi.json").await.check(200);
        api.get("/openapi.yaml").await.check(200);
    }
}

#[tokio::test]
async fn a_reading_function_answers_gets_and_refuses_every_write() {
    let (_writer, srv) = writer_and_reader().await;
    health_and_documents_answer(&srv).await;
    for api in srv.apis() {
        api.get("/registered_models").await.check(200);
        api.get("/model_versions").await.check(200);
        api.get("/registered_models/1").await.err(404);
        for (method, path, body) in [
            (Method::POST, "/registered_models", json!({"name": "m"})),
            (
                Method::PATCH,
                "/registered_models/1",
                json!({"description": "d"}),
            ),
            (
                Method::POST,
                "/model_versions/1/artifacts",
                json!({"artifactType": "model-artifact", "name": "a"}),
            ),
            (Method::POST, "/experiments", json!({"name": "e"})),
        ] {
            let r = api.raw(method.clone(), path, &body.to_string()).await;
            r.err(405);
            let message = r.message();
            assert!(
                message.contains("serves reads") && message.contains("MR_SERVE"),
                "{method} {path}: {message}"
            );
        }
    }
    // The upload extension only writes: a reading function does not mount it.
    let r = srv
        .client()
        .post(srv.url("/api/registry_ext/v1/uploads"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "uploads on a reading function");
    // The web interface's pages read; its forms that write say where to go.
    let page = srv.client().get(srv.url("/ui/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    for form in ["/ui/versions/1/decision", "/ui/models/1/aliases"] {
        let r = srv
            .client()
            .post(srv.url(form))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("csrf=x&decision=APPROVE")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{form}");
        let body = r.text().await.unwrap();
        assert!(body.contains("MR_SERVE=reads"), "{form}: {body}");
    }
}

#[tokio::test]
async fn a_writing_function_answers_writes_and_refuses_gets() {
    let srv = Server::start_with(role("writes")).await;
    health_and_documents_answer(&srv).await;
    for api in srv.apis() {
        let m = api
            .post("/registered_models", &json!({"name": uniq("writer")}))
            .await
            .ok(201);
        api.patch(
            &format!("/registered_models/{}", id(&m)),
            &json!({"description": "written"}),
        )
        .await
        .check(200);
        for path in [
            "/registered_models",
            &format!("/registered_models/{}", id(&m)),
        ] {
            let r = api.get(path).await;
            r.err(405);
            assert!(r.message().contains("serves writes"), "{}", r.message());
        }
    }
}

#[tokio::test]
async fn bad_roles_stop_the_start_with_a_message() {
    for (env, expected) in [
        (
            vec![("MR_SERVE", "everything")],
            "MR_SERVE: 'everything' is not all, reads or writes",
        ),
        (
            vec![("MR_SERVE", "reads"), ("MR_CREATE_TABLE", "true")],
            "a reading function never writes",
        ),
    ] {
        let mut launch = Launch::program(server_bin());
        for (k, v) in &env {
            launch = launch.env(*k, *v);
        }
        let mut process = launch.spawn();
        let status = process
            .wait_exit(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{env:?}: still running"));
        assert_eq!(status.code(), Some(1), "{env:?}");
        assert!(
            process.log().contains(expected),
            "{env:?}: {}",
            process.log()
        );
    }
}

/// A reader and a writer on one DynamoDB table: every read the reader
/// serves after the writer acknowledged a write sees it (strongly
/// consistent gets and queries), and the reader never writes.
#[tokio::test]
async fn a_reader_sees_what_the_writer_wrote_on_one_table() {
    let (Some(writer), reader) = writer_and_reader().await else {
        eprintln!(
            "not checked: a reader and a writer sharing a table (needs the suite on DynamoDB: \
             MR_TEST_ENV with MR_STORE=dynamodb, as tests/run.sh's second pass)"
        );
        return;
    };
    for (w, r) in writer.apis().into_iter().zip(reader.apis()) {
        let name = uniq("shared");
        let m = w
            .post("/registered_models", &json!({"name": name}))
            .await
            .ok(201);
        let v = w
            .post(
                "/model_versions",
                &json!({"name": "v1", "registeredModelId": id(&m)}),
            )
            .await
            .ok(201);
        let a = w
            .post(
                &format!("/model_versions/{}/artifacts", id(&v)),
                &json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/k"}),
            )
            .await
            .ok(201);
        assert_eq!(
            id(&r
                .get(&format!("/registered_models/{}", id(&m)))
                .await
                .ok(200)),
            id(&m)
        );
        let found = r
            .get_q("/registered_model", &[("name", &name)])
            .await
            .ok(200);
        assert_eq!(id(&found), id(&m));
        let versions = r
            .list(&format!("/registered_models/{}/versions", id(&m)), &[])
            .await;
        assert_eq!(ids_of(&items(&versions)), vec![id(&v)]);
        let artifacts = r
            .list(&format!("/model_versions/{}/artifacts", id(&v)), &[])
            .await;
        assert_eq!(ids_of(&items(&artifacts)), vec![id(&a)]);
        w.patch(
            &format!("/model_versions/{}", id(&v)),
            &json!({"state": "ARCHIVED"}),
        )
        .await
        .check(200);
        let read = r.get(&format!("/model_versions/{}", id(&v))).await.ok(200);
        assert_eq!(
            read["state"], "ARCHIVED",
            "read-your-writes across functions"
        );
    }
    assert!(
        !reader.output().contains("read-only handle"),
        "the reader tried to write:\n{}",
        reader.output()
    );
}
