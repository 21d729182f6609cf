//! `GET /api/registry_ext/v1/model_versions/{id}/lineage`: a version's
//! model, artifacts, the runs that produced them with their datasets, and
//! the inference services that serve it (by name, or by model while it is
//! the latest); what the caller may not read is left out and counted.

use serde_json::{Value, json};

use crate::auth::Secured;
use crate::common::{Api, V1, id, uniq};
use crate::harness::Server;

const EXT: &str = "/api/registry_ext/v1";

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(id)
        .collect()
}

/// A model with two versions; v1's model artifact was produced by a run
/// (of an experiment) that logged a dataset, a parameter and a metric;
/// three inference services: one pinned to v1, one naming only the model
/// (so serving the latest, v2), one pinned to v2.
struct World {
    v1: Value,
    v2: Value,
    run: Value,
    experiment: Value,
    weights: Value,
    dataset: Value,
    pinned: Value,
    by_model: Value,
}

async fn world(api: &Api) -> World {
    let tag = uniq("lin");
    let model = api.create_model(&format!("lineage-{tag}")).await;
    let experiment = api
        .post("/experiments", &json!({"name": format!("exp-{tag}")}))
        .await
        .ok(201);
    let run = api
        .post(
            "/experiment_runs",
            &json!({"name": "run-1", "experimentId": id(&experiment)}),
        )
        .await
        .ok(201);
    let run_artifacts = format!("/experiment_runs/{}/artifacts", id(&run));
    let dataset = api
        .post(
            &run_artifacts,
            &json!({"artifactType": "dataset-artifact", "name": "train", "uri": "s3://data/train.parquet"}),
        )
        .await
        .ok(201);
    for body in [
        json!({"artifactType": "parameter", "name": "lr", "value": "0.01", "parameterType": "number"}),
        json!({"artifactType": "metric", "name": "accuracy", "value": 0.93}),
    ] {
        api.post(&run_artifacts, &body).await.ok(201);
    }
    let v1 = api.create_version(&id(&model), "v1").await;
    let weights = api
        .upsert_new_artifact(
            &id(&v1),
            json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://models/v1",
                   "experimentId": id(&experiment), "experimentRunId": id(&run)}),
        )
        .await;
    let v2 = api.create_version(&id(&model), "v2").await;
    let env = api
        .post(
            "/serving_environments",
            &json!({"name": format!("prod-{tag}")}),
        )
        .await
        .ok(201);
    let isvc = |name: &str, version: Option<&Value>| {
        let mut body = json!({"name": name, "servingEnvironmentId": id(&env),
                              "registeredModelId": id(&model)});
        if let Some(v) = version {
            body["modelVersionId"] = json!(id(v));
        }
        body
    };
    let pinned = api
        .post("/inference_services", &isvc("pinned-v1", Some(&v1)))
        .await
        .ok(201);
    let by_model = api
        .post("/inference_services", &isvc("latest", None))
        .await
        .ok(201);
    api.post("/inference_services", &isvc("pinned-v2", Some(&v2)))
        .await
        .ok(201);
    World {
        v1,
        v2,
        run,
        experiment,
        weights,
        dataset,
        pinned,
        by_model,
    }
}

fn ext(server: &Server) -> Api {
    Api::new(server.client().clone(), server.base_url(), EXT)
}

#[tokio::test]
async fn lineage_links_runs_datasets_and_serving() {
    let srv = Server::start().await;
    let api = srv.api(V1);
    let w = world(&api).await;
    let ext = ext(&srv);

    let l = ext
        .get(&format!("/model_versions/{}/lineage", id(&w.v1)))
        .await
        .ok(200);
    assert_eq!(id(&l["modelVersion"]), id(&w.v1));
    assert_eq!(l["registeredModel"]["id"], w.v1["registeredModelId"]);
    assert_eq!(ids(&l["artifacts"]), vec![id(&w.weights)]);
    let runs = l["experimentRuns"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{l}");
    assert_eq!(id(&runs[0]["experimentRun"]), id(&w.run));
    assert_eq!(id(&runs[0]["experiment"]), id(&w.experiment));
    let kinds: Vec<&str> = runs[0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "dataset, parameter, metric: {kinds:?}");
    for k in ["dataset-artifact", "parameter", "metric"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert_eq!(ids(&l["datasets"]), vec![id(&w.dataset)]);
    // v1 is served by the service that names it, not by the one that
    // follows the model's latest version (v2), nor by the one pinned to v2.
    let services = l["inferenceServices"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{l}");
    assert_eq!(id(&services[0]["inferenceService"]), id(&w.pinned));
    assert_eq!(services[0]["pinned"], true);
    assert!(services[0]["servingEnvironment"]["name"].is_string());
    assert_eq!(l["hidden"], 0);
    assert_eq!(l["truncated"], false);

    // v2: no artifacts, no runs; served by the model-following service and
    // the one pinned to it.
    let l = ext
        .get(&format!("/model_versions/{}/lineage", id(&w.v2)))
        .await
        .ok(200);
    assert_eq!(ids(&l["artifacts"]), Vec::<String>::new());
    assert_eq!(l["experimentRuns"], json!([]));
    let services = l["inferenceServices"].as_array().unwrap();
    let by_model = services
        .iter()
        .find(|s| id(&s["inferenceService"]) == id(&w.by_model))
        .unwrap_or_else(|| panic!("the model's service follows its latest version: {l}"));
    assert_eq!(by_model["pinned"], false);
    assert_eq!(services.len(), 2, "{l}");
}

#[tokio::test]
async fn lineage_errors_have_the_api_shape() {
    let srv = Server::start().await;
    let ext = ext(&srv);
    ext.get("/model_versions/999999/lineage").await.err(404);
    ext.get("/model_versions/abc/lineage").await.err(400);
    ext.raw(reqwest::Method::POST, "/model_versions/1/lineage", "{}")
        .await
        .err(405);
}

/// A reader of the model only (no binding for experiments or serving
/// environments) sees the version's own artifacts and the services, while
/// the run, its experiment and the environment are left out and counted.
#[tokio::test]
async fn lineage_leaves_out_what_the_caller_may_not_read() {
    let policy = r#"
bindings:
  - role: admin
    users: [root]
  - role: reader
    users: [ana]
    models: ["lineage-*"]
"#;
    let s = Secured::start(Some(policy), &[]).await;
    let root = s.as_user(V1, "root", &[]);
    let w = world(&root).await;
    let token = s.issuer.token("ana", &[]);
    let ana = ext(&s.server).with_bearer(&token);
    let l = ana
        .get(&format!("/model_versions/{}/lineage", id(&w.v1)))
        .await
        .ok(200);
    assert_eq!(ids(&l["artifacts"]), vec![id(&w.weights)]);
    assert_eq!(l["experimentRuns"], json!([]), "{l}");
    assert_eq!(
        l["datasets"],
        json!([]),
        "a run's dataset goes with its run: {l}"
    );
    assert_eq!(l["hidden"], 2, "the run and the serving environment: {l}");
    let stranger = ext(&s.server).with_bearer(&s.issuer.token("eve", &[]));
    stranger
        .get(&format!("/model_versions/{}/lineage", id(&w.v1)))
        .await
        .err(403);
    ext(&s.server)
        .get(&format!("/model_versions/{}/lineage", id(&w.v1)))
        .await
        .err(401);
}

/// One answer reads at most 4 MiB of entities: a version whose artifacts
/// hold more is answered with what fits, marked `truncated`.
#[tokio::test]
async fn lineage_stops_at_its_byte_budget() {
    let srv = Server::start().await;
    let api = srv.api(V1);
    let model = api.create_model(&uniq("big-lineage")).await;
    let v = api.create_version(&id(&model), "v1").await;
    let filler = "d".repeat(60_000);
    for i in 0..75 {
        api.upsert_new_artifact(
            &id(&v),
            json!({"artifactType": "doc-artifact", "name": format!("doc-{i}"), "description": filler}),
        )
        .await;
    }
    let l = ext(&srv)
        .get(&format!("/model_versions/{}/lineage", id(&v)))
        .await
        .ok(200);
    let n = l["artifacts"].as_array().unwrap().len();
    let first = &l["artifacts"][0];
    assert!(
        (60..75).contains(&n),
        "{n} artifacts of 75 within 4 MiB; truncated {}, description {} bytes",
        l["truncated"],
        first["description"].as_str().map_or(0, str::len)
    );
    assert_eq!(l["truncated"], true);
}
