//! Data of the first storage layout, written by the code of that layout
//! (tests/fixtures/layout1/: `registry.redb` and the answers the old server
//! gave, `expected.json`; generate.sh says how they were made), read by
//! this release:
//! - an embedded data directory is migrated when `registry-local` starts;
//! - a DynamoDB table is refused (503, a log line naming `migrate-table`)
//!   until `registry-local migrate-table` copied it into a new table.
//!
//! Either way every recorded answer is given again, identical apart from
//! lists' `nextPageToken` (it encodes keys of the layout: only whether there
//! is one must match, and following it must give the recorded pages), ids go
//! on after the migrated ones in every family, and names stay taken.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use registry::store::dynamodb::DynamoTable;
use registry::store::embedded::EmbeddedTable;
use registry::store::port::{Cond, Item, Table};
use registry_test_support::bin;

use crate::common::*;
use crate::harness::{Server, ServerOpts, suite_env};

/// The `MR_PUBLIC_URL` of the old server: upload sessions name it.
const PUBLIC_URL: &str = "http://registry.fixture";

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/layout1")
        .join(file)
}

/// One answer of the old server: a GET, its body, and for a paged list the
/// pages its `nextPageToken`s led to.
struct Recorded {
    path: String,
    body: Value,
    pages: Vec<Value>,
}

/// The recorded answers, those the first layout got wrong corrected (see
/// [`LISTED_TWICE`]).
fn recorded() -> Vec<Recorded> {
    let file = fixture("expected.json");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let entries: Vec<Value> = serde_json::from_str(&text).expect("expected.json is a JSON list");
    let mut recorded: Vec<Recorded> = entries
        .into_iter()
        .map(|e| Recorded {
            path: e["path"].as_str().expect("path").to_string(),
            body: e["body"].clone(),
            pages: e["pages"].as_array().cloned().unwrap_or_default(),
        })
        .collect();
    for r in &mut recorded {
        let Some(list) = LISTED_TWICE
            .iter()
            .find(|l| r.path == format!("{V1ALPHA3}{l}"))
        else {
            continue;
        };
        let listed = items(&r.body);
        let mut seen = std::collections::BTreeSet::new();
        let once: Vec<Value> = listed
            .iter()
            .filter(|e| seen.insert(id(e)))
            .cloned()
            .collect();
        assert!(
            once.len() < listed.len(),
            "the old server's GET {list} listed an artifact twice; expected.json no longer \
             shows it: drop it from LISTED_TWICE"
        );
        eprintln!(
            "note: the first layout listed an artifact of two versions twice in GET {list} \
             (ids {:?}); the migrated registry must list it once",
            ids_of(&listed)
        );
        r.body["size"] = json!(once.len());
        r.body["items"] = Value::Array(once);
    }
    recorded
}

/// Lists the first layout answered wrongly: it read the global ID order of
/// artifacts from their partition in key order, where the link item of an
/// artifact attached to a second version (`sk = L#<version>#<id>`) sorts
/// after every artifact, so that artifact was listed again at the end.
/// Upstream lists an artifact once, as this release does; the migrated
/// registry must too, so the recorded answer is taken without the repeat.
const LISTED_TWICE: [&str; 2] = ["/model_artifacts", "/artifacts"];

/// The fixture's store copied into `dir` (opening a redb file writes to
/// it: the committed file is never opened).
fn copy_fixture(dir: &Path) -> PathBuf {
    let to = dir.join(EmbeddedTable::FILE);
    std::fs::copy(fixture("registry.redb"), &to).expect("copy the fixture");
    to
}

/// Where `old` and `new` first differ (a JSON pointer and both values).
fn first_difference(at: &str, old: &Value, new: &Value) -> Option<String> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => first_difference(&format!("{at}/{k}"), x, y),
                (x, y) => Some(format!("{at}/{k}: old {x:?}, new {y:?}")),
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{at}/{i}"), x, y)),
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(|e| e.get("id").is_some()) => {
            Some(format!(
                "{at}: old ids {}, new ids {}",
                json!(a.iter().map(|e| &e["id"]).collect::<Vec<_>>()),
                json!(b.iter().map(|e| &e["id"]).collect::<Vec<_>>())
            ))
        }
        _ if old == new => None,
        _ => Some(format!("{at}: old {old}, new {new}")),
    }
}

/// A list's `nextPageToken` taken out (`Some(token)`), or `None` for an entity.
fn take_token(body: &mut Value) -> Option<String> {
    body.as_object_mut()
        .filter(|o| o.contains_key("items"))
        .and_then(|o| o.remove("nextPageToken"))
        .map(|t| t.as_str().unwrap_or_default().to_string())
}

/// GET `path` (with `nextPageToken` when given): the status and the body.
async fn fetch(srv: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = srv.client().get(srv.url(path));
    if let Some(t) = token {
        request = request.query(&[("nextPageToken", t)]);
    }
    let resp = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every recorded GET asked of `srv`; panics listing each answer that is
/// not the recorded one.
async fn replay(srv: &Server, recorded: &[Recorded]) {
    let mut differences = Vec::new();
    for r in recorded {
        let pages = std::iter::once(&r.body).chain(&r.pages);
        let mut token: Option<String> = None;
        for (n, old) in pages.enumerate() {
            let what = format!("GET {} (page {})", r.path, n + 1);
            let (status, mut new) = fetch(srv, &r.path, token.as_deref()).await;
            if status != 200 {
                differences.push(format!("{what}: HTTP {status}: {new}"));
                break;
            }
            let mut old = old.clone();
            let old_token = take_token(&mut old);
            token = take_token(&mut new);
            if let Some(d) = first_difference("", &old, &new) {
                differences.push(format!(
                    "{what}: {d}\n  old: {}\n  new: {}",
                    truncate(&old.to_string(), 1500),
                    truncate(&new.to_string(), 1500)
                ));
                break;
            }
            let more = |t: &Option<String>| t.as_ref().is_some_and(|t| !t.is_empty());
            if more(&old_token) != more(&token) {
                differences.push(format!(
                    "{what}: nextPageToken old {old_token:?}, new {token:?} (one says there is more)"
                ));
                break;
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} recorded answers differ after the migration:\n{}",
        differences.len(),
        recorded.len(),
        differences.join("\n")
    );
}

/// The highest migrated id of each id family: (models, versions, experiments,
/// runs, environments, inference services; artifacts; serve models).
fn highest_ids(recorded: &[Recorded]) -> (u64, u64, u64) {
    let (mut contexts, mut artifacts, mut serves) = (0, 0, 0);
    for r in recorded {
        for body in std::iter::once(&r.body).chain(&r.pages) {
            let entities = match body.get("items") {
                Some(items) => items.as_array().cloned().unwrap_or_default(),
                None => vec![body.clone()],
            };
            for e in entities {
                // Upload sessions have uuids.
                let Some(n) = e["id"].as_str().and_then(|s| s.parse::<u64>().ok()) else {
                    continue;
                };
                let family = if r.path.contains("/serves") {
                    &mut serves
                } else if e.get("artifactType").is_some() {
                    &mut artifacts
                } else {
                    &mut contexts
                };
                *family = (*family).max(n);
            }
        }
    }
    assert!(
        contexts > 0 && artifacts > 0 && serves > 0,
        "expected.json holds entities of every id family"
    );
    (contexts, artifacts, serves)
}

/// After the replay: new entities get ids above the migrated ones (the
/// counters were copied) and the migrated names and externalIds are taken.
async fn ids_go_on_and_names_stay_taken(srv: &Server, recorded: &[Recorded]) {
    let (contexts, artifacts, serves) = highest_ids(recorded);
    let api = srv.api(V1ALPHA3);
    let model = api
        .get_q("/registered_model", &[("name", "fixture-rich")])
        .await
        .ok(200);
    let version = api.create_version(&id(&model), "v6").await;
    assert!(
        id_num(&version) > contexts,
        "a new version's id {} must be above every migrated id (up to {contexts})",
        id(&version)
    );
    let versions = api
        .list(&format!("/registered_models/{}/versions", id(&model)), &[])
        .await;
    assert_eq!(
        ids_of(&items(&versions)).last(),
        Some(&id(&version)),
        "the new version is listed after the migrated ones: {versions}"
    );
    let artifact = api
        .upsert_new_artifact(
            &id(&version),
            json!({"artifactType": "model-artifact", "name": "weights", "uri": "s3://bucket/rich/v6"}),
        )
        .await;
    assert!(
        id_num(&artifact) > artifacts,
        "a new artifact's id {} must be above every migrated artifact id (up to {artifacts})",
        id(&artifact)
    );
    let isvc = api
        .get_q("/inference_service", &[("name", "fixture-isvc")])
        .await
        .ok(200);
    let serve = api
        .post(
            &format!("/inference_services/{}/serves", id(&isvc)),
            &json!({"modelVersionId": id(&version)}),
        )
        .await
        .ok(201);
    assert!(
        id_num(&serve) > serves,
        "a new serve model's id {} must be above every migrated one (up to {serves})",
        id(&serve)
    );

    for (path, body) in [
        ("/registered_models", json!({"name": "fixture-rich"})),
        (
            "/registered_models",
            json!({"name": "fixture-other", "externalId": "ext-model-1"}),
        ),
        (
            "/model_versions",
            json!({"name": "v3", "registeredModelId": id(&model)}),
        ),
        ("/experiments", json!({"name": "fixture-experiment"})),
        ("/serving_environments", json!({"name": "fixture-env"})),
    ] {
        api.post(path, &body).await.err(409);
    }
}

/// Whether the suite runs on DynamoDB (tests/run.sh's second pass): its
/// `MR_TEST_ENV`, with the endpoint, when it does.
fn dynamodb_env() -> Option<Vec<(String, String)>> {
    let env = suite_env("migration", Path::new("."));
    let on = env.iter().any(|(k, v)| k == "MR_STORE" && v == "dynamodb")
        && env.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL_DYNAMODB");
    on.then_some(env)
}

#[tokio::test]
async fn an_embedded_data_directory_of_the_first_layout_is_migrated_on_start() {
    if dynamodb_env().is_some() {
        eprintln!(
            "note: MR_TEST_ENV selects DynamoDB; this test is about the data directory, \
             so its server runs with MR_STORE=embedded"
        );
    }
    let recorded = recorded();
    let dir = tempfile::Builder::new()
        .prefix("mr-it-layout1-")
        .tempdir()
        .expect("data tempdir");
    copy_fixture(dir.path());
    let opts = ServerOpts {
        data_dir: Some(dir.path().to_path_buf()),
        env: vec![
            ("MR_STORE".into(), "embedded".into()),
            ("MR_PUBLIC_URL".into(), PUBLIC_URL.into()),
        ],
    };
    let mut srv = Server::start_with(opts).await;
    let log = srv.output();
    let migrated = log
        .lines()
        .find(|l| l.contains("migrated to storage layout"))
        .unwrap_or_else(|| panic!("the start logs the migration:\n{log}"));
    assert!(
        migrated.contains("unknown: 0"),
        "no item of the old file is of an unknown kind: {migrated}"
    );
    eprintln!("{migrated}");
    assert!(
        dir.path().join("registry.layout1.redb").is_file(),
        "the old file is kept beside the new one as registry.layout1.redb"
    );
    replay(&srv, &recorded).await;

    // Migrated once: the next start opens the new file as it is (with the
    // backup present, a second migration would refuse to start).
    srv.restart().await;
    assert!(
        !srv.output().contains("migrating"),
        "a migrated data directory is not migrated again:\n{}",
        srv.output()
    );
    replay(&srv, &recorded).await;
    ids_go_on_and_names_stay_taken(&srv, &recorded).await;
}

/// A DynamoDB client on the suite's endpoint, with its credentials.
fn dynamodb_client(env: &[(String, String)]) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let var = |key: &str, default: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map_or(default.to_string(), |(_, v)| v.clone())
    };
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(var("AWS_REGION", "us-east-1")))
        .endpoint_url(var("AWS_ENDPOINT_URL_DYNAMODB", ""))
        .credentials_provider(Credentials::new(
            var("AWS_ACCESS_KEY_ID", "test"),
            var("AWS_SECRET_ACCESS_KEY", "test"),
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// Every item of the fixture, as it is, into a new table `name`: a DynamoDB
/// table of the first layout. (Items of both backends are the same key,
/// version and body; the old index attributes are left out, the migration
/// derives every index key again from the bodies.) Returns how many.
async fn load_fixture(client: &aws_sdk_dynamodb::Client, name: &str, dir: &Path) -> usize {
    let old = EmbeddedTable::open_file(&copy_fixture(dir)).expect("open the fixture");
    let table = DynamoTable::new(client.clone(), name);
    table.create_table_if_missing().await.expect("create table");
    let mut after: Option<(String, String)> = None;
    let mut loaded = 0;
    loop {
        let page = old
            .dump(after.as_ref().map(|(p, s)| (p.as_str(), s.as_str())), 200)
            .expect("read the fixture");
        let Some(last) = page.last() else { break };
        after = Some((last.pk.clone(), last.sk.clone()));
        for item in page {
            let plain = Item::plain(item.pk, item.sk, item.version, item.body);
            table.put(plain, Cond::Always).await.expect("load an item");
            loaded += 1;
        }
    }
    loaded
}

/// How many items table `name` holds.
async fn count_items(client: &aws_sdk_dynamodb::Client, name: &str) -> usize {
    let table = DynamoTable::new(client.clone(), name);
    let (mut count, mut after) = (0, None);
    loop {
        let (items, next) = table
            .scan_page(0, 1, after.as_ref())
            .await
            .expect("scan the table");
        count += items.len();
        after = next;
        if after.is_none() {
            return count;
        }
    }
}

/// `registry-local migrate-table --from --to --checkpoint` with the suite's
/// environment; its output.
async fn migrate_table(env: &[(String, String)], from: &str, to: &str, cp: &Path) -> Output {
    let mut command = tokio::process::Command::new(bin("registry-local"));
    command
        .args(["migrate-table", "--from", from, "--to", to, "--checkpoint"])
        .arg(cp)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("migrate-table finished within 2 minutes")
        .expect("run registry-local migrate-table")
}

/// The summary line of a successful `migrate-table`, without its checkpoint
/// path; panics with its output if it failed.
fn summary(out: &Output, from: &str, to: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "migrate-table {from} -> {to}: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("copied {from} into {to}: ")))
        .unwrap_or_else(|| panic!("no summary line in: {stdout}\nstderr: {stderr}"));
    assert!(
        line.contains(" 0 unknown items left out"),
        "no item of the old table is of an unknown kind: {line}"
    );
    line.split(" (checkpoint")
        .next()
        .unwrap_or(line)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_table_of_the_first_layout_is_refused_then_copied_by_migrate_table() {
    let Some(env) = dynamodb_env() else {
        eprintln!(
            "skipped: the DynamoDB migration needs the suite on DynamoDB (MR_TEST_ENV with \
             MR_STORE=dynamodb and AWS_ENDPOINT_URL_DYNAMODB, as tests/run.sh's second pass); \
             this run is on the embedded store"
        );
        return;
    };
    let recorded = recorded();
    let client = dynamodb_client(&env);
    let scratch = tempfile::tempdir().expect("tempdir");
    let unique = uniq("layout1");
    let (old, new) = (format!("old-{unique}"), format!("new-{unique}"));
    let loaded = load_fixture(&client, &old, scratch.path()).await;

    // (a) A server on the old table refuses, naming the command.
    let on = |table: &str| ServerOpts {
        env: vec![
            ("MR_TABLE".into(), table.into()),
            ("MR_PUBLIC_URL".into(), PUBLIC_URL.into()),
        ],
        ..ServerOpts::default()
    };
    let refusing = Server::start_with(on(&old)).await;
    let model = recorded
        .iter()
        .map(|r| &r.path)
        .find(|p| p.contains("/registered_models/"))
        .expect("expected.json has a GET of a model");
    let (status, body) = fetch(&refusing, model, None).await;
    assert_eq!(
        status, 503,
        "GET {model} on a table of the first layout: {body}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refusing.output().contains("migrate-table") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refusing.output().contains(&format!("--from {old}")),
        "the log names the command that copies the table:\n{}",
        refusing.output()
    );
    drop(refusing);

    // (b) The copy, then the same command again: it resumes from its
    // checkpoint, which says it is done, and adds nothing.
    let checkpoint = scratch.path().join("cp.json");
    let first = summary(
        &migrate_table(&env, &old, &new, &checkpoint).await,
        &old,
        &new,
    );
    assert!(
        first.contains(&format!(": {loaded} items read,")),
        "every loaded item is read once: {first}"
    );
    eprintln!("{first}");
    let copied = count_items(&client, &new).await;
    let again = summary(
        &migrate_table(&env, &old, &new, &checkpoint).await,
        &old,
        &new,
    );
    assert_eq!(
        again, first,
        "the second run resumes from a finished checkpoint"
    );
    assert_eq!(
        count_items(&client, &new).await,
        copied,
        "running the copy again adds no item"
    );

    // (c) A server on the new table answers as the old one did.
    let srv = Server::start_with(on(&new)).await;
    replay(&srv, &recorded).await;
    ids_go_on_and_names_stay_taken(&srv, &recorded).await;
}
