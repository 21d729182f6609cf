//! Concurrent creates: uniqueness must hold under races, ids stay unique.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::common::*;
use crate::harness::Server;

const CONCURRENCY: usize = 50;

/// Fires `bodies.len()` POSTs at `path` at (nearly) the same instant.
async fn concurrent_posts(api: &Api, path: &str, bodies: Vec<Value>) -> Vec<Resp> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let mut tasks = Vec::new();
    for body in bodies {
        let api = api.clone();
        let path = path.to_owned();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            api.post(&path, &body).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task panicked"));
    }
    out
}

#[track_caller]
fn assert_one_winner(resps: &[Resp], what: &str) -> Value {
    let winners: Vec<&Resp> = resps.iter().filter(|r| r.status == 201).collect();
    let conflicts = resps.iter().filter(|r| r.status == 409).count();
    let others: Vec<String> = resps
        .iter()
        .filter(|r| r.status != 201 && r.status != 409)
        .map(|r| format!("{} {}", r.status, truncate(&r.text, 200)))
        .collect();
    assert!(
        winners.len() == 1 && conflicts == resps.len() - 1,
        "{what}: expected exactly 1 x 201 and {} x 409, got {} x 201, {conflicts} x 409, others: {others:?}",
        resps.len() - 1,
        winners.len()
    );
    for r in resps.iter().filter(|r| r.status == 409) {
        r.err(409);
    }
    winners[0].body.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_same_name_models_one_wins() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let name = uniq(&format!("race-{}", api.tag()));
        let bodies = (0..CONCURRENCY)
            .map(|i| json!({"name": name, "description": format!("writer {i}")}))
            .collect();
        let resps = concurrent_posts(&api, "/registered_models", bodies).await;
        let winner = assert_one_winner(&resps, "50 x POST /registered_models same name");

        let found = api
            .get_q("/registered_model", &[("name", &name)])
            .await
            .ok(200);
        assert_eq!(found, winner, "find by name returns the winner");
        let l = api
            .list(
                "/registered_models",
                &[("filterQuery", &format!("name = '{name}'"))],
            )
            .await;
        assert_eq!(ids_of(&items(&l)), vec![id(&winner)], "{l}");
        let all = api.list("/registered_models", &[]).await;
        let same: Vec<Value> = items(&all)
            .into_iter()
            .filter(|m| m["name"] == json!(name))
            .collect();
        assert_eq!(same.len(), 1, "exactly one model named {name} listed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_same_name_versions_one_wins() {
    let srv = Server::start().await;
    for api in srv.apis() {
        let m = api
            .create_model(&uniq(&format!("racev-{}", api.tag())))
            .await;
        let mid = id(&m);
        let bodies: Vec<Value> = (0..CONCURRENCY)
            .map(|i| json!({"name": "1.0.0", "registeredModelId": mid, "author": format!("w{i}")}))
            .collect();
        // Half through each creation route.
        let mut flat = Vec::new();
        let mut nested_bodies = Vec::new();
        for (i, b) in bodies.into_iter().enumerate() {
            if i.is_multiple_of(2) {
                flat.push(b);
            } else {
                nested_bodies.push(b);
            }
        }
        let api2 = api.clone();
        let nested = format!("/registered_models/{mid}/versions");
        let (ra, rb) = tokio::join!(
            concurrent_posts(&api, "/model_versions", flat),
            concurrent_posts(&api2, &nested, nested_bodies),
        );
        let resps: Vec<Resp> = ra.into_iter().chain(rb).collect();
        let winner = assert_one_winner(&resps, "50 x create version with the same name");

        let l = api
            .list(&format!("/registered_models/{mid}/versions"), &[])
            .await;
        assert_eq!(ids_of(&items(&l)), vec![id(&winner)], "{l}");
        let f = api
            .get_q(
                "/model_version",
                &[("name", "1.0.0"), ("parentResourceId", &mid)],
            )
            .await
            .ok(200);
        assert_eq!(f, winner);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_distinct_creates_get_distinct_ids() {
    let srv = Server::start().await;
    let api = srv.api(V1);
    let base = uniq("distinct");
    let bodies = (0..CONCURRENCY)
        .map(|i| json!({"name": format!("{base}-{i}")}))
        .collect();
    let resps = concurrent_posts(&api, "/registered_models", bodies).await;
    let mut ids = BTreeSet::new();
    for r in &resps {
        let v = r.check(201);
        assert!(ids.insert(id(v)), "duplicate id {} handed out", id(v));
    }
    let l = api.list("/registered_models", &[]).await;
    let listed: BTreeSet<String> = ids_of(&items(&l)).into_iter().collect();
    assert!(ids.is_subset(&listed), "all created models are listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_patches_all_apply_with_distinct_update_times() {
    let srv = Server::start().await;
    let api = srv.api(V1ALPHA3);
    let m = api.create_model(&uniq("cpatch")).await;
    let path = format!("/registered_models/{}", id(&m));
    let barrier = Arc::new(Barrier::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..CONCURRENCY {
        let api = api.clone();
        let path = path.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            api.patch(&path, &json!({"description": format!("d{i}")}))
                .await
        }));
    }
    let mut times = BTreeSet::new();
    let mut last: Option<Value> = None;
    for t in tasks {
        let r = t.await.unwrap();
        let v = r.check(200).clone();
        let u = num_str(&v, "lastUpdateTimeSinceEpoch");
        assert!(
            times.insert(u),
            "two updates got the same lastUpdateTimeSinceEpoch {u}"
        );
        if last
            .as_ref()
            .is_none_or(|l| num_str(l, "lastUpdateTimeSinceEpoch") < u)
        {
            last = Some(v);
        }
    }
    let last = last.unwrap();
    let got = api.get(&path).await.ok(200);
    assert_eq!(
        got, last,
        "final state is the update with the highest lastUpdateTimeSinceEpoch"
    );
}
