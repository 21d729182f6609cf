//! Experiments, experiment runs, run artifacts (metrics, parameters, datasets) and metric
//! history, including the "pick the best run" use case. (What experiments and runs share
//! with the other resources: resources.rs.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::Server;
use crate::listing::{check_paged_orders, filtered_names, tick};

// ---------------------------------------------------------------- fixtures

async fn create_experiment(api: &Api, name: &str) -> Value {
    api.post("/experiments", &json!({ "name": name }))
        .await
        .ok(201)
}

async fn create_run(api: &Api, experiment_id: &str, name: &str) -> Value {
    api.post(
        "/experiment_runs",
        &json!({"name": name, "experimentId": experiment_id}),
    )
    .await
    .ok(201)
}

/// An experiment with one run: (experiment, run).
async fn experiment_and_run(api: &Api, label: &str) -> (Value, Value) {
    let e = create_experiment(api, &uniq(label)).await;
    let r = create_run(api, &id(&e), "run-1").await;
    (e, r)
}

fn metric(name: &str, value: f64, step: i64) -> Value {
    json!({"artifactType": "metric", "name": name, "value": value, "step": step})
}

/// POST a run artifact; returns (status, body).
async fn log(api: &Api, run_id: &str, body: &Value) -> (u16, Value) {
    let r = api
        .post(&format!("/experiment_runs/{run_id}/artifacts"), body)
        .await;
    r.check_in(&[200, 201]);
    (r.status, r.body)
}

fn perm_name(label: &str, i: usize, n: usize) -> String {
    format!("{label}-{:02}", (i * 5) % n)
}

fn step_of(v: &Value) -> i64 {
    v["step"]
        .as_i64()
        .unwrap_or_else(|| panic!("`step` must be a JSON integer: {v}"))
}

/// Metric history records sorted by (experimentRunId, name, step).
fn by_run_name_step(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|r| {
        (
            r["experimentRunId"].as_str().unwrap_or_default().to_owned(),
            r["name"].as_str().unwrap_or_default().to_owned(),
            step_of(r),
        )
    });
    v
}

// ---------------------------------------------------------------- experiments

#[tokio::test]
async fn experiments_ordering_paging_and_filters() {
    const N: usize = 7;
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let mut exps = Vec::new();
        for i in 0..N {
            exps.push(
                api.post(
                    "/experiments",
                    &json!({"name": perm_name("exp", i, N), "owner": if i % 2 == 0 { "ada" } else { "bob" },
                            "customProperties": {"priority": cp_int(i as i64)}}),
                )
                .await
                .ok(201),
            );
            tick().await;
        }
        for i in [3, 6, 1] {
            exps[i] = api
                .patch(
                    &format!("/experiments/{}", id(&exps[i])),
                    &json!({"state": "ARCHIVED"}),
                )
                .await
                .ok(200);
            tick().await;
        }
        check_paged_orders(&api, "/experiments", &[], &exps, 2).await;
        let names = |is: &[usize]| -> BTreeSet<String> {
            is.iter().map(|&i| perm_name("exp", i, N)).collect()
        };
        assert_eq!(
            filtered_names(&api, "/experiments", "state = 'ARCHIVED'").await,
            names(&[1, 3, 6])
        );
        assert_eq!(
            filtered_names(&api, "/experiments", "owner = 'ada' AND priority >= 2").await,
            names(&[2, 4, 6])
        );
        assert_eq!(
            filtered_names(&api, "/experiments", "priority.int_value IN (0, 5)").await,
            names(&[0, 5])
        );
        check_paged_orders(
            &api,
            "/experiments",
            &[("filterQuery", "state = 'LIVE'")],
            &exps
                .iter()
                .filter(|e| e["state"] == "LIVE")
                .cloned()
                .collect::<Vec<_>>(),
            2,
        )
        .await;
    }
}

// ---------------------------------------------------------------- experiment runs

#[tokio::test]
async fn experiment_run_patch_rules() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let e = create_experiment(&api, &uniq(&format!("runp-{}", api.tag()))).await;
        let r = api
            .post(
                "/experiment_runs",
                &json!({"name": "r", "experimentId": id(&e), "status": "RUNNING", "startTimeSinceEpoch": "1700000000000"}),
            )
            .await
            .ok(201);
        let path = format!("/experiment_runs/{}", id(&r));
        tick().await;
        let done = api
            .patch(
                &path,
                &json!({"status": "FINISHED", "endTimeSinceEpoch": "1700000360000", "customProperties": {"acc": cp_double(0.9)}}),
            )
            .await
            .ok(200);
        assert_eq!(done["status"], "FINISHED");
        assert_eq!(done["endTimeSinceEpoch"], "1700000360000");
        assert_eq!(done["startTimeSinceEpoch"], "1700000000000");
        assert_eq!(done["experimentId"], json!(id(&e)));
        assert!(
            num_str(&done, "lastUpdateTimeSinceEpoch") > num_str(&r, "lastUpdateTimeSinceEpoch")
        );
        let archived = api
            .patch(&path, &json!({"state": "ARCHIVED", "owner": "bob"}))
            .await
            .ok(200);
        assert_eq!(archived["state"], "ARCHIVED");
        assert_eq!(archived["status"], "FINISHED", "absent keeps");
        for st in ["RUNNING", "SCHEDULED", "FAILED", "KILLED", "FINISHED"] {
            let p = api.patch(&path, &json!({ "status": st })).await.ok(200);
            assert_eq!(p["status"], st);
        }
        // (What may not be patched: resources.rs.)
        let now = api.get(&path).await.ok(200);
        assert_eq!(now["status"], "FINISHED");
        assert_eq!(now["experimentId"], json!(id(&e)));
    }
}

#[tokio::test]
async fn experiment_runs_ordering_paging_and_filters() {
    const N: usize = 7;
    for prefix in PREFIXES {
        let srv = Server::start().await;
        let api = srv.api(prefix);
        let e = create_experiment(&api, "exp-main").await;
        let noise = create_experiment(&api, "exp-noise").await;
        let noise_a = create_run(&api, &id(&noise), "run-00").await;
        let mut runs = Vec::new();
        for i in 0..N {
            runs.push(
                api.post(
                    &format!("/experiments/{}/experiment_runs", id(&e)),
                    &json!({"name": perm_name("run", i, N), "status": "RUNNING",
                            "startTimeSinceEpoch": (1_700_000_000_000u64 + i as u64 * 1000).to_string(),
                            "customProperties": {"lr": cp_double(0.1 / (i + 1) as f64), "team": cp_str(if i < 3 { "a" } else { "b" })}}),
                )
                .await
                .ok(201),
            );
            tick().await;
        }
        for (i, st) in [(4, "FINISHED"), (0, "FAILED"), (2, "FINISHED")] {
            runs[i] = api
                .patch(
                    &format!("/experiment_runs/{}", id(&runs[i])),
                    &json!({ "status": st }),
                )
                .await
                .ok(200);
            tick().await;
        }
        let noise_b = create_run(&api, &id(&noise), "run-01").await;

        let exp_path = format!("/experiments/{}/experiment_runs", id(&e));
        check_paged_orders(&api, &exp_path, &[], &runs, 2).await;
        let mut all = runs.clone();
        all.push(noise_a);
        all.push(noise_b);
        check_paged_orders(&api, "/experiment_runs", &[], &all, 2).await;

        let names = |is: &[usize]| -> BTreeSet<String> {
            is.iter().map(|&i| perm_name("run", i, N)).collect()
        };
        assert_eq!(
            filtered_names(&api, &exp_path, "status = 'FINISHED'").await,
            names(&[2, 4])
        );
        assert_eq!(
            filtered_names(
                &api,
                &exp_path,
                "status IN ('FINISHED', 'FAILED') AND team = 'a'"
            )
            .await,
            names(&[0, 2])
        );
        assert_eq!(
            filtered_names(&api, &exp_path, "lr.double_value > 0.03").await,
            names(&[0, 1, 2])
        );
        assert_eq!(
            filtered_names(&api, &exp_path, "startTimeSinceEpoch >= 1700000005000").await,
            names(&[5, 6])
        );
        // Global list, filtered by parent.
        let noise_runs = api
            .list(
                "/experiment_runs",
                &[("filterQuery", &format!("experimentId = {}", id(&noise)))],
            )
            .await;
        assert_eq!(name_set(&items(&noise_runs)), set(["run-00", "run-01"]));
        check_paged_orders(
            &api,
            "/experiment_runs",
            &[("filterQuery", "status = 'RUNNING'")],
            &runs
                .iter()
                .filter(|r| r["status"] == "RUNNING")
                .cloned()
                .collect::<Vec<_>>(),
            2,
        )
        .await;
    }
}

// ---------------------------------------------------------------- metrics and history

#[tokio::test]
async fn metric_logged_over_steps_keeps_history() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (e, r) = experiment_and_run(&api, &format!("mh-{}", api.tag())).await;
        let (eid, rid) = (id(&e), id(&r));
        let losses = [0.9, 0.7, 0.5, 0.4, 0.35];
        let t0 = now_ms();

        // loss at steps 1..5, no id, no timestamp: upsert by name.
        let mut loss_id = None;
        for (i, v) in losses.iter().enumerate() {
            tick().await;
            let step = i as i64 + 1;
            let (status, m) = log(&api, &rid, &metric("loss", *v, step)).await;
            assert_eq!(
                status,
                if step == 1 { 201 } else { 200 },
                "first log creates, next ones update: {m}"
            );
            assert_entity_basics(&m);
            assert_eq!(m["artifactType"], "metric");
            assert_f64(&m["value"], *v, "logged value");
            assert_eq!(m["step"], json!(step));
            assert_eq!(m["experimentId"], json!(eid));
            assert_eq!(m["experimentRunId"], json!(rid));
            match &loss_id {
                None => loss_id = Some(id(&m)),
                Some(x) => assert_eq!(&id(&m), x, "same metric artifact"),
            }
        }
        // acc at steps 1..5 with explicit timestamps.
        let ts = |step: i64| (1_700_000_000_000i64 + step * 60_000).to_string();
        for step in 1..=5i64 {
            let mut body = metric("acc", 0.5 + step as f64 / 10.0, step);
            body["timestamp"] = json!(ts(step));
            log(&api, &rid, &body).await;
        }
        let t1 = now_ms();
        let loss_id = loss_id.unwrap();

        // The run's metric artifacts show the latest value.
        let arts = items(
            &api.list(&format!("/experiment_runs/{rid}/artifacts"), &[])
                .await,
        );
        assert_eq!(
            name_set(&arts),
            set(["loss", "acc"]),
            "one artifact per metric name: {arts:?}"
        );
        let loss = arts.iter().find(|a| a["name"] == "loss").unwrap();
        assert_eq!(id(loss), loss_id);
        assert_f64(&loss["value"], 0.35, "loss shows step 5");
        assert_eq!(loss["step"], json!(5));
        let acc = arts.iter().find(|a| a["name"] == "acc").unwrap();
        assert_f64(&acc["value"], 1.0, "acc shows step 5");
        assert_eq!(acc["timestamp"], json!(ts(5)));
        assert_eq!(
            &api.get(&format!("/artifacts/{loss_id}")).await.ok(200),
            loss
        );
        let by_name = api
            .list(
                &format!("/experiment_runs/{rid}/artifacts"),
                &[("name", "loss")],
            )
            .await;
        assert_eq!(ids_of(&items(&by_name)), vec![loss_id.clone()]);

        // The history keeps every logged value with its step and timestamp.
        let hist_path = format!("/experiment_runs/{rid}/metric_history");
        let all = items(&api.list(&hist_path, &[]).await);
        assert_eq!(all.len(), 10, "5 loss + 5 acc records: {all:?}");
        let loss_hist = by_run_name_step(items(&api.list(&hist_path, &[("name", "loss")]).await));
        assert_eq!(loss_hist.len(), 5, "{loss_hist:?}");
        let mut last_ts = 0;
        for (i, rec) in loss_hist.iter().enumerate() {
            assert_entity_basics(rec);
            assert_eq!(rec["artifactType"], "metric", "{rec}");
            assert_eq!(rec["name"], "loss");
            assert_eq!(step_of(rec), i as i64 + 1);
            assert_f64(&rec["value"], losses[i], "history value");
            assert_eq!(rec["experimentId"], json!(eid));
            assert_eq!(rec["experimentRunId"], json!(rid));
            let t = num_str(rec, "timestamp");
            assert!(
                (t0..=t1).contains(&t),
                "a value logged without timestamp is stamped when logged ({t0}..={t1}): {rec}"
            );
            assert!(
                t >= last_ts,
                "timestamps follow the logging order: {loss_hist:?}"
            );
            last_ts = t;
        }
        let acc_hist = by_run_name_step(items(&api.list(&hist_path, &[("name", "acc")]).await));
        let acc_ts: Vec<Value> = acc_hist.iter().map(|r| r["timestamp"].clone()).collect();
        assert_eq!(
            acc_ts,
            (1..=5).map(|s| json!(ts(s))).collect::<Vec<_>>(),
            "explicit timestamps are kept"
        );

        // stepIds and name filters.
        let steps = |q: Vec<(&'static str, &'static str)>| {
            let api = api.clone();
            let hist_path = hist_path.clone();
            async move {
                by_run_name_step(items(&api.list(&hist_path, &q).await))
                    .iter()
                    .map(|r| (r["name"].as_str().unwrap().to_owned(), step_of(r)))
                    .collect::<Vec<_>>()
            }
        };
        let pairs = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        };
        assert_eq!(
            steps(vec![("stepIds", "2,4")]).await,
            pairs(&[("acc", 2), ("acc", 4), ("loss", 2), ("loss", 4)])
        );
        assert_eq!(
            steps(vec![("name", "loss"), ("stepIds", "2,4")]).await,
            pairs(&[("loss", 2), ("loss", 4)])
        );
        let two_four = items(
            &api.list(&hist_path, &[("name", "loss"), ("stepIds", "2,4")])
                .await,
        );
        let mut vals: Vec<f64> = two_four
            .iter()
            .map(|r| r["value"].as_f64().unwrap())
            .collect();
        vals.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(vals, vec![0.7, 0.4]);
        assert_eq!(
            steps(vec![("stepIds", "5")]).await,
            pairs(&[("acc", 5), ("loss", 5)])
        );
        assert!(steps(vec![("stepIds", "99")]).await.is_empty());
        assert!(steps(vec![("name", "f1")]).await.is_empty());
        for bad in ["x", "1;2", "one,two"] {
            api.get_q(&hist_path, &[("stepIds", bad)]).await.err(400);
        }

        // Paging over the history in every order, plain and filtered.
        check_paged_orders(&api, &hist_path, &[("name", "loss")], &loss_hist, 2).await;
        check_paged_orders(&api, &hist_path, &[], &all, 2).await;
        let low: Vec<Value> = all
            .iter()
            .filter(|r| r["value"].as_f64().unwrap() < 0.55)
            .cloned()
            .collect();
        assert_eq!(low.len(), 3, "loss 0.5, 0.4 and 0.35 (acc starts at 0.6)");
        check_paged_orders(
            &api,
            &hist_path,
            &[("filterQuery", "value < 0.55")],
            &low,
            2,
        )
        .await;

        // Parameters and datasets do not enter the metric history.
        log(
            &api,
            &rid,
            &json!({"artifactType": "parameter", "name": "lr", "value": "0.1", "parameterType": "number"}),
        )
        .await;
        assert_eq!(items(&api.list(&hist_path, &[]).await).len(), 10);

        // Unknown runs.
        api.get("/experiment_runs/999999/metric_history")
            .await
            .err(404);
        api.get("/experiment_runs/999999/artifacts").await.err(404);
        api.post("/experiment_runs/999999/artifacts", &metric("loss", 1.0, 1))
            .await
            .err(404);
        api.get("/experiment_runs/abc/metric_history")
            .await
            .err(400);
    }
}

#[tokio::test]
async fn metric_logged_without_timestamp_is_stamped_at_its_own_log_time() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (_e, r) = experiment_and_run(&api, &format!("mts-{}", api.tag())).await;
        let rid = id(&r);
        // Step 1 carries an old, explicit timestamp; step 2 carries none.
        let mut first = metric("loss", 0.9, 1);
        first["timestamp"] = json!("1700000000000");
        log(&api, &rid, &first).await;
        tick().await;
        let before = now_ms();
        let (_, second) = log(&api, &rid, &metric("loss", 0.8, 2)).await;
        let after = now_ms();
        let hist = by_run_name_step(items(
            &api.list(&format!("/experiment_runs/{rid}/metric_history"), &[])
                .await,
        ));
        assert_eq!(hist.len(), 2, "{hist:?}");
        assert_eq!(
            hist[0]["timestamp"], "1700000000000",
            "explicit timestamp kept"
        );
        let t2 = num_str(&hist[1], "timestamp");
        assert!(
            (before..=after).contains(&t2),
            "step 2 was logged without a timestamp between {before} and {after}; its history \
             record must not inherit step 1's timestamp: {}\n(metric artifact after the log: {second})",
            hist[1]
        );
    }
}

#[tokio::test]
async fn metric_history_across_runs() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let e1 = create_experiment(&api, &uniq(&format!("xr-{}", api.tag()))).await;
        let e2 = create_experiment(&api, &uniq("xr-2")).await;
        let r1 = create_run(&api, &id(&e1), "r1").await;
        let r2 = create_run(&api, &id(&e1), "r2").await;
        let r3 = create_run(&api, &id(&e2), "r3").await;
        let (id1, id2, id3) = (id(&r1), id(&r2), id(&r3));
        for s in 1..=3 {
            log(&api, &id1, &metric("loss", 1.0 / s as f64, s)).await;
        }
        for s in 1..=2 {
            log(&api, &id2, &metric("loss", 2.0 / s as f64, s)).await;
        }
        log(&api, &id3, &metric("loss", 0.1, 1)).await;
        log(&api, &id1, &metric("acc", 0.7, 1)).await;

        // The cross-run history holds every record of every run (other tests on other
        // servers do not share this store, but be robust anyway: keep ours).
        let ours: BTreeSet<String> = [&id1, &id2, &id3].iter().map(|s| s.to_string()).collect();
        let mine = |v: Vec<Value>| -> Vec<Value> {
            v.into_iter()
                .filter(|r| ours.contains(r["experimentRunId"].as_str().unwrap_or_default()))
                .collect()
        };
        let all = mine(items(
            &api.list("/experiment_runs/metric_history", &[]).await,
        ));
        assert_eq!(all.len(), 7, "{all:?}");
        let loss = mine(items(
            &api.list("/experiment_runs/metric_history", &[("name", "loss")])
                .await,
        ));
        assert_eq!(loss.len(), 6);
        assert!(loss.iter().all(|r| r["name"] == "loss"));
        let step1 = by_run_name_step(mine(items(
            &api.list(
                "/experiment_runs/metric_history",
                &[("name", "loss"), ("stepIds", "1")],
            )
            .await,
        )));
        let runs_at_step1: Vec<String> = step1
            .iter()
            .map(|r| r["experimentRunId"].as_str().unwrap().to_owned())
            .collect();
        let mut expected_runs = vec![id1.clone(), id2.clone(), id3.clone()];
        expected_runs.sort();
        assert_eq!(runs_at_step1, expected_runs, "one step-1 loss per run");
        let by_run: BTreeMap<String, f64> = step1
            .iter()
            .map(|r| {
                (
                    r["experimentRunId"].as_str().unwrap().to_owned(),
                    r["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(by_run[&id1], 1.0);
        assert_eq!(by_run[&id2], 2.0);
        assert_eq!(by_run[&id3], 0.1);
        assert_eq!(
            mine(items(
                &api.list("/experiment_runs/metric_history", &[("stepIds", "2,3")])
                    .await
            ))
            .len(),
            3,
            "r1 steps 2,3 and r2 step 2"
        );
        // filterQuery on the run and experiment ids.
        let of_r2 = items(
            &api.list(
                "/experiment_runs/metric_history",
                &[("filterQuery", &format!("experimentRunId = {id2}"))],
            )
            .await,
        );
        assert_eq!(of_r2.len(), 2, "{of_r2:?}");
        assert!(of_r2.iter().all(|r| r["experimentRunId"] == json!(id2)));
        let of_e2 = items(
            &api.list(
                "/experiment_runs/metric_history",
                &[("filterQuery", &format!("experimentId = '{}'", id(&e2)))],
            )
            .await,
        );
        assert_eq!(ids_of(&of_e2).len(), 1);
        assert_eq!(of_e2[0]["experimentRunId"], json!(id3));

        // Paging across runs.
        let filter = format!("experimentRunId IN ({id1}, {id2}, {id3}) AND name = 'loss'");
        check_paged_orders(
            &api,
            "/experiment_runs/metric_history",
            &[("filterQuery", &filter)],
            &loss,
            2,
        )
        .await;
        api.get_q("/experiment_runs/metric_history", &[("stepIds", "a,b")])
            .await
            .err(400);
    }
}

// ---------------------------------------------------------------- parameters and datasets

#[tokio::test]
async fn parameters_upsert_by_name() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (e, r) = experiment_and_run(&api, &format!("param-{}", api.tag())).await;
        let r2 = create_run(&api, &id(&e), "run-2").await;
        let rid = id(&r);
        let param = |name: &str, value: &str, ty: &str| json!({"artifactType": "parameter", "name": name, "value": value, "parameterType": ty});
        let (s, lr) = log(&api, &rid, &param("lr", "0.1", "number")).await;
        assert_eq!(s, 201);
        assert_entity_basics(&lr);
        assert_eq!(lr["artifactType"], "parameter");
        assert_eq!(lr["value"], "0.1");
        assert_eq!(lr["parameterType"], "number");
        assert_eq!(lr["experimentId"], json!(id(&e)));
        assert_eq!(lr["experimentRunId"], json!(rid));
        tick().await;
        let (s, lr2) = log(
            &api,
            &rid,
            &json!({"artifactType": "parameter", "name": "lr", "value": "0.01", "description": "lowered"}),
        )
        .await;
        assert_eq!(s, 200, "a parameter without id upserts by name: {lr2}");
        assert_eq!(id(&lr2), id(&lr));
        assert_eq!(lr2["value"], "0.01");
        assert_eq!(lr2["parameterType"], "number", "absent keeps");
        assert_eq!(lr2["description"], "lowered");
        assert!(
            num_str(&lr2, "lastUpdateTimeSinceEpoch") > num_str(&lr, "lastUpdateTimeSinceEpoch")
        );
        // Upsert with its id also updates in place.
        let (s, lr3) = log(
            &api,
            &rid,
            &json!({"artifactType": "parameter", "id": id(&lr), "value": "0.001"}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(id(&lr3), id(&lr));
        assert_eq!(lr3["value"], "0.001");
        assert_eq!(lr3["name"], "lr");

        let mut latest: BTreeMap<String, Value> = BTreeMap::new();
        latest.insert(id(&lr3), lr3.clone());
        for (n, v, t) in [
            ("optimizer", "adam", "string"),
            ("epochs", "10", "number"),
            ("augment", "true", "boolean"),
            ("layers", "{\"units\": [64, 32]}", "object"),
        ] {
            tick().await;
            let (s, p) = log(&api, &rid, &param(n, v, t)).await;
            assert_eq!(s, 201);
            assert_eq!(p["value"], v);
            assert_eq!(p["parameterType"], t);
            latest.insert(id(&p), p);
        }
        // Also a metric, so the run's artifacts mix types.
        let (_, m) = log(&api, &rid, &metric("loss", 0.3, 1)).await;
        latest.insert(id(&m), m);

        // The same name in another run is another parameter.
        let (s, other) = log(&api, &id(&r2), &param("lr", "0.5", "number")).await;
        assert_eq!(s, 201);
        assert_ne!(id(&other), id(&lr));
        assert_eq!(other["experimentRunId"], json!(id(&r2)));
        assert_eq!(
            api.get(&format!("/artifacts/{}", id(&lr))).await.ok(200)["value"],
            "0.001",
            "the other run's lr did not touch this one"
        );

        // Listing the run's artifacts: each once, latest state, every order, pages of 2.
        let expected: Vec<Value> = latest.values().cloned().collect();
        let art_path = format!("/experiment_runs/{rid}/artifacts");
        check_paged_orders(&api, &art_path, &[], &expected, 2).await;
        let params = api.list(&art_path, &[("artifactType", "parameter")]).await;
        assert_eq!(
            name_set(&items(&params)),
            set(["lr", "optimizer", "epochs", "augment", "layers"])
        );
        assert_eq!(
            filtered_names(&api, &art_path, "parameterType = 'number'").await,
            set(["lr", "epochs"])
        );
        assert_eq!(
            filtered_names(&api, &art_path, "artifactType = 'metric'").await,
            set(["loss"])
        );

        // Malformed parameters.
        for bad in [
            json!({"artifactType": "parameter", "name": "x", "value": "1", "parameterType": "float"}),
            json!({"artifactType": "parameter", "name": "x", "value": 1.5, "parameterType": "number"}),
            json!({"artifactType": "parameter", "name": "x", "value": "1", "bogus": 1}),
            json!({"artifactType": "parameter", "name": "lr", "id": id(&lr), "step": 3}),
        ] {
            api.post(&art_path, &bad).await.err(400);
        }
        // Changing the type of an existing artifact.
        api.post(
            &art_path,
            &json!({"artifactType": "metric", "id": id(&lr), "value": 1.0}),
        )
        .await
        .err(400);
        api.post(&art_path, &json!({"name": "no-type", "value": "1"}))
            .await
            .err(400);
        assert_eq!(items(&api.list(&art_path, &[]).await).len(), expected.len());
    }
}

#[tokio::test]
async fn dataset_artifacts_linked_to_runs() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let (e, r1) = experiment_and_run(&api, &format!("ds-{}", api.tag())).await;
        let r2 = create_run(&api, &id(&e), "run-2").await;
        let (eid, rid1, rid2) = (id(&e), id(&r1), id(&r2));
        let body = json!({
            "artifactType": "dataset-artifact",
            "name": "train",
            "uri": "s3://data/mnist/train.parquet",
            "digest": "sha256:abc",
            "sourceType": "s3",
            "source": "s3://data/mnist",
            "schema": "{\"x\": \"image\", \"y\": \"int\"}",
            "profile": "{\"rows\": 60000}",
            "description": "training split",
            "customProperties": {"rows": cp_int(60000)}
        });
        let (s, ds) = log(&api, &rid1, &body).await;
        assert_eq!(s, 201);
        assert_entity_basics(&ds);
        for f in [
            "artifactType",
            "name",
            "uri",
            "digest",
            "sourceType",
            "source",
            "schema",
            "profile",
            "description",
            "customProperties",
        ] {
            assert_eq!(ds.get(f), body.get(f), "field `{f}` in {ds}");
        }
        assert_eq!(ds["experimentId"], json!(eid));
        assert_eq!(ds["experimentRunId"], json!(rid1));
        assert_eq!(
            api.get(&format!("/artifacts/{}", id(&ds))).await.ok(200),
            ds
        );

        // Names are unique within the run; the same dataset name in another run is its own.
        api.post(&format!("/experiment_runs/{rid1}/artifacts"), &body)
            .await
            .err(409);
        let (s, ds2) = log(&api, &rid2, &body).await;
        assert_eq!(s, 201);
        assert_ne!(id(&ds2), id(&ds));
        assert_eq!(ds2["experimentRunId"], json!(rid2));

        // Upsert by id updates in place.
        let (s, upd) = log(
            &api,
            &rid1,
            &json!({"artifactType": "dataset-artifact", "id": id(&ds), "digest": "sha256:def"}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(id(&upd), id(&ds));
        assert_eq!(upd["digest"], "sha256:def");
        assert_eq!(upd["uri"], ds["uri"], "absent keeps");

        // Finding the runs' datasets.
        let of_r1 = api
            .list(
                &format!("/experiment_runs/{rid1}/artifacts"),
                &[("artifactType", "dataset-artifact")],
            )
            .await;
        assert_eq!(items(&of_r1), vec![upd.clone()]);
        let all_ds = api
            .list("/artifacts", &[("artifactType", "dataset-artifact")])
            .await;
        let all_ids: BTreeSet<String> = ids_of(&items(&all_ds)).into_iter().collect();
        assert!(
            all_ids.contains(&id(&ds)) && all_ids.contains(&id(&ds2)),
            "{all_ds}"
        );
        let filtered = api
            .list(
                "/artifacts",
                &[(
                    "filterQuery",
                    &format!("experimentRunId = {rid2} AND artifactType = 'dataset-artifact'"),
                )],
            )
            .await;
        assert_eq!(ids_of(&items(&filtered)), vec![id(&ds2)]);
        let by_rows = api
            .list(
                &format!("/experiment_runs/{rid1}/artifacts"),
                &[("filterQuery", "rows >= 50000")],
            )
            .await;
        assert_eq!(ids_of(&items(&by_rows)), vec![id(&ds)]);

        // The run's ids cannot be overridden by the body.
        let mut wrong_run = body.clone();
        wrong_run["name"] = json!("test");
        wrong_run["experimentRunId"] = json!(rid2);
        api.post(&format!("/experiment_runs/{rid1}/artifacts"), &wrong_run)
            .await
            .err(400);
        let mut wrong_exp = body.clone();
        wrong_exp["name"] = json!("test");
        wrong_exp["experimentId"] = json!(rid1);
        api.post(&format!("/experiment_runs/{rid1}/artifacts"), &wrong_exp)
            .await
            .err(400);
        // Repeating the right ids is fine.
        let mut same = body.clone();
        same["name"] = json!("test");
        same["experimentRunId"] = json!(rid1);
        same["experimentId"] = json!(eid);
        let (s, test_ds) = log(&api, &rid1, &same).await;
        assert_eq!(s, 201);
        assert_eq!(test_ds["experimentRunId"], json!(rid1));
        // A metric without a value is malformed.
        api.post(
            &format!("/experiment_runs/{rid1}/artifacts"),
            &json!({"artifactType": "metric", "name": "acc"}),
        )
        .await
        .err(400);
    }
}

// ---------------------------------------------------------------- pick the best run

#[tokio::test]
async fn compare_runs_and_pick_the_best() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let e = create_experiment(&api, &uniq(&format!("best-{}", api.tag()))).await;
        let eid = id(&e);
        // Final accuracies per run (the best is run index 1); each run logs 3 steps.
        let finals = [0.81, 0.93, 0.88, 0.90];
        let lrs = ["0.1", "0.01", "0.001", "0.05"];
        let mut runs = Vec::new();
        for (i, fin) in finals.iter().enumerate() {
            let r = create_run(&api, &eid, &format!("trial-{i}")).await;
            let rid = id(&r);
            log(
                &api,
                &rid,
                &json!({"artifactType": "parameter", "name": "lr", "value": lrs[i], "parameterType": "number"}),
            )
            .await;
            for step in 1..=3i64 {
                // Accuracy climbs towards its final value; step 2 of trial-2 peaks above all.
                let v = if i == 2 && step == 2 {
                    0.95
                } else {
                    fin - (3 - step) as f64 * 0.05
                };
                log(&api, &rid, &metric("accuracy", v, step)).await;
                log(&api, &rid, &metric("loss", 1.0 - v, step)).await;
            }
            api.patch(
                &format!("/experiment_runs/{rid}"),
                &json!({"status": "FINISHED", "endTimeSinceEpoch": now_ms().to_string()}),
            )
            .await
            .ok(200);
            runs.push(r);
        }
        let run_ids: Vec<String> = runs.iter().map(id).collect();

        // 1. For each run of the experiment, its latest accuracy.
        let listed = items(
            &api.list(
                &format!("/experiments/{eid}/experiment_runs"),
                &[("filterQuery", "status = 'FINISHED'")],
            )
            .await,
        );
        assert_eq!(ids_of(&listed), run_ids);
        let mut latest_acc: BTreeMap<String, f64> = BTreeMap::new();
        for r in &listed {
            let a = items(
                &api.list(
                    &format!("/experiment_runs/{}/artifacts", id(r)),
                    &[("artifactType", "metric"), ("name", "accuracy")],
                )
                .await,
            );
            assert_eq!(a.len(), 1, "{a:?}");
            assert_eq!(a[0]["step"], json!(3));
            latest_acc.insert(id(r), a[0]["value"].as_f64().unwrap());
        }
        let best = latest_acc
            .iter()
            .max_by(|a, b| a.1.partial_cmp(b.1).unwrap())
            .map(|(k, _)| k.clone())
            .unwrap();
        assert_eq!(best, run_ids[1], "best final accuracy: {latest_acc:?}");

        // 2. The same answer from one global artifact query.
        let top = items(
            &api.list(
                "/artifacts",
                &[
                    ("artifactType", "metric"),
                    (
                        "filterQuery",
                        &format!("experimentId = {eid} AND name = 'accuracy' AND value > 0.92"),
                    ),
                ],
            )
            .await,
        );
        assert_eq!(top.len(), 1, "{top:?}");
        assert_eq!(top[0]["experimentRunId"], json!(run_ids[1]));

        // 3. From the cross-run history: final step per run, and the best at any step.
        let final_step = items(
            &api.list(
                "/experiment_runs/metric_history",
                &[
                    ("name", "accuracy"),
                    ("stepIds", "3"),
                    ("filterQuery", &format!("experimentId = {eid}")),
                ],
            )
            .await,
        );
        assert_eq!(final_step.len(), 4);
        let best_final = final_step
            .iter()
            .max_by(|a, b| {
                a["value"]
                    .as_f64()
                    .unwrap()
                    .partial_cmp(&b["value"].as_f64().unwrap())
                    .unwrap()
            })
            .unwrap();
        assert_eq!(best_final["experimentRunId"], json!(run_ids[1]));
        let all_acc = items(
            &api.list(
                "/experiment_runs/metric_history",
                &[
                    ("name", "accuracy"),
                    ("filterQuery", &format!("experimentId = {eid}")),
                ],
            )
            .await,
        );
        assert_eq!(all_acc.len(), 12);
        let peak = all_acc
            .iter()
            .max_by(|a, b| {
                a["value"]
                    .as_f64()
                    .unwrap()
                    .partial_cmp(&b["value"].as_f64().unwrap())
                    .unwrap()
            })
            .unwrap();
        assert_eq!(peak["experimentRunId"], json!(run_ids[2]));
        assert_eq!(peak["step"], json!(2));
        // The lowest final loss agrees with the highest final accuracy.
        let low_loss = items(
            &api.list(
                "/experiment_runs/metric_history",
                &[
                    ("name", "loss"),
                    ("stepIds", "3"),
                    (
                        "filterQuery",
                        &format!("experimentId = {eid} AND value < 0.08"),
                    ),
                ],
            )
            .await,
        );
        assert_eq!(ids_of(&low_loss).len(), 1, "{low_loss:?}");
        assert_eq!(low_loss[0]["experimentRunId"], json!(run_ids[1]));

        // 4. Read the winner's parameters and tag it.
        let lr = items(
            &api.list(
                &format!("/experiment_runs/{best}/artifacts"),
                &[("artifactType", "parameter"), ("name", "lr")],
            )
            .await,
        );
        assert_eq!(lr.len(), 1);
        assert_eq!(lr[0]["value"], lrs[1]);
        api.patch(
            &format!("/experiment_runs/{best}"),
            &json!({"customProperties": {"best": cp_bool(true)}}),
        )
        .await
        .ok(200);
        let tagged = api
            .list(
                &format!("/experiments/{eid}/experiment_runs"),
                &[("filterQuery", "best = true")],
            )
            .await;
        assert_eq!(ids_of(&items(&tagged)), vec![best.clone()]);
        let tagged_global = api
            .list(
                "/experiment_runs",
                &[(
                    "filterQuery",
                    &format!("best.bool_value = true AND experimentId = {eid}"),
                )],
            )
            .await;
        assert_eq!(ids_of(&items(&tagged_global)), vec![best]);
    }
}
