//! One contract suite for the storage port and the registry rules built on
//! it, run against every backend: embedded (redb) and DynamoDB (a real
//! dynalite server started by `make test`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use registry::api::codec::{decode_new, decode_patch};
use registry::domain::actor;
use registry::domain::entity::{Family, Kind, NewEntity, Patch};
use registry::domain::error::Error;
use registry::domain::paging::{ListParams, RawListParams};
use registry::domain::registry::{
    Action, MAX_ENTITY_BYTES, Narrow, Registry, RegistryConfig, Scope,
};
use registry::store::dynamodb::DynamoTable;
use registry::store::embedded::EmbeddedTable;
use registry::store::layout::entities::SHARDS;
use registry::store::port::{
    Cond, Cursor, Index, Item, MAX_ITEM_BYTES, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES, Query,
    QueryPage, StoreError, Table,
};
use registry_test_support::server_env;
use serde_json::{Value, json};

/// A backend under test; keeps its temp dir alive.
struct Backend {
    table: Arc<dyn Table>,
    _dir: Option<tempfile::TempDir>,
    calls: Option<CallLog>,
}

fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = EmbeddedTable::open(dir.path()).expect("open redb");
    Backend {
        table: Arc::new(table),
        _dir: Some(dir),
        calls: None,
    }
}

/// Every DynamoDB operation the SDK sent, by name.
#[derive(Debug, Clone, Default)]
struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }
    fn read_before_transmit(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        // DynamoDB names the operation in `X-Amz-Target: DynamoDB_20120810.<Operation>`.
        let target = ctx.request().headers().get("x-amz-target").unwrap_or("?");
        let op = target.rsplit('.').next().unwrap_or(target).to_string();
        self.0.lock().unwrap().push(op);
        Ok(())
    }
}

async fn dynamodb() -> Backend {
    let endpoint = server_env("MR_TEST_DYNAMODB_ENDPOINT");
    let calls = CallLog::default();
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .interceptor(calls.clone())
        .build();
    let name = format!("t-{}", uuid::Uuid::new_v4());
    let table = DynamoTable::new(aws_sdk_dynamodb::Client::from_conf(conf), name);
    table.create_table_if_missing().await.expect("create table");
    calls.take();
    Backend {
        table: Arc::new(table),
        _dir: None,
        calls: Some(calls),
    }
}

fn item(pk: &str, sk: &str, v: u64, local0: Option<&str>) -> Item {
    let mut i = Item::plain(pk, sk, v, format!("{{\"sk\":\"{sk}\",\"v\":{v}}}"));
    i.local[0] = local0.map(str::to_string);
    i
}

fn query(index: Index, partition: &str, prefix: &str, descending: bool, limit: usize) -> Query {
    Query {
        index,
        partition: partition.into(),
        prefix: prefix.into(),
        after: None,
        descending,
        limit,
    }
}

fn sks(page: &QueryPage) -> Vec<String> {
    page.items.iter().map(|i| i.sk.clone()).collect()
}

fn registry(b: &Backend, lease_ms: u64) -> Registry {
    Registry::new(
        b.table.clone(),
        RegistryConfig {
            claim_lease: Duration::from_millis(lease_ms),
            ..RegistryConfig::default()
        },
    )
}

fn model(name: &str) -> NewEntity {
    decode_new(Kind::RegisteredModel, &json!({ "name": name })).unwrap()
}

/// A PATCH of a registered model, as the API decodes it.
fn model_patch(body: Value) -> Patch {
    decode_patch(Kind::RegisteredModel, &body).unwrap()
}

fn all_params(page_size: usize) -> ListParams {
    let mut p = ListParams::parse(&RawListParams::default(), true).unwrap();
    p.page_size = page_size;
    p
}

// ---- the port ----

async fn conditional_writes(b: Backend) {
    let t = &b.table;
    t.put(item("P", "a", 1, None), Cond::Absent).await.unwrap();
    assert_eq!(
        t.put(item("P", "a", 1, None), Cond::Absent).await,
        Err(StoreError::ConditionFailed)
    );
    assert_eq!(
        t.put(item("P", "a", 2, None), Cond::Version(7)).await,
        Err(StoreError::ConditionFailed)
    );
    t.put(item("P", "a", 2, None), Cond::Version(1))
        .await
        .unwrap();
    assert_eq!(t.get("P", "a").await.unwrap().unwrap().version, 2);
    assert_eq!(
        t.delete("P", "a", Cond::Version(1)).await,
        Err(StoreError::ConditionFailed)
    );
    t.delete("P", "a", Cond::Version(2)).await.unwrap();
    assert_eq!(t.get("P", "a").await.unwrap(), None);
    assert_eq!(
        t.put(item("P", "b", 2, None), Cond::Version(1)).await,
        Err(StoreError::ConditionFailed),
        "a version condition on a missing item fails"
    );
}

async fn ordered_queries_and_cursors(b: Backend) {
    let t = &b.table;
    for (sk, l) in [
        ("1", "x#c"),
        ("2", "x#a"),
        ("3", "y#b"),
        ("4", "x#b"),
        ("5", "x#d"),
    ] {
        t.put(item("Q", sk, 1, Some(l)), Cond::Absent)
            .await
            .unwrap();
    }
    t.put(item("Q", "6", 1, None), Cond::Absent).await.unwrap(); // not in L1 (sparse)
    t.put(item("OTHER", "1", 1, Some("x#a")), Cond::Absent)
        .await
        .unwrap();

    let all = t
        .query(&query(Index::Base, "Q", "", false, 10))
        .await
        .unwrap();
    assert_eq!(sks(&all), ["1", "2", "3", "4", "5", "6"]);
    assert!(all.exhausted);
    let desc = t
        .query(&query(Index::Base, "Q", "", true, 2))
        .await
        .unwrap();
    assert_eq!(sks(&desc), ["6", "5"]);

    // Local index, prefix, paging with a cursor in both directions.
    let mut seen = Vec::new();
    let mut q = query(Index::Local(0), "Q", "x#", false, 2);
    loop {
        let page = t.query(&q).await.unwrap();
        seen.extend(sks(&page));
        let Some(last) = page.items.last() else { break };
        q.after = Some(Cursor {
            index_key: last.local[0].clone().unwrap(),
            pk: last.pk.clone(),
            sk: last.sk.clone(),
        });
        if page.exhausted {
            break;
        }
    }
    assert_eq!(seen, ["2", "4", "1", "5"]);
    let desc = t
        .query(&query(Index::Local(0), "Q", "x#", true, 10))
        .await
        .unwrap();
    assert_eq!(sks(&desc), ["5", "1", "4", "2"]);

    // Rewriting an item moves it in the index.
    t.put(item("Q", "2", 2, Some("x#z")), Cond::Version(1))
        .await
        .unwrap();
    let moved = t
        .query(&query(Index::Local(0), "Q", "x#", false, 10))
        .await
        .unwrap();
    assert_eq!(sks(&moved), ["4", "1", "5", "2"]);
}

async fn global_index(b: Backend) {
    let t = &b.table;
    for (sk, g) in [("1", "b"), ("2", "a"), ("3", "c")] {
        let mut i = item("R", sk, 1, None);
        i.global[1] = Some(("GP".into(), g.into()));
        t.put(i, Cond::Absent).await.unwrap();
    }
    // Global indexes may lag on DynamoDB: poll briefly.
    let mut got = Vec::new();
    for _ in 0..50 {
        got = sks(&t
            .query(&query(Index::Global(1), "GP", "", false, 10))
            .await
            .unwrap());
        if got.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got, ["2", "1", "3"]);
}

async fn counters_are_atomic(b: Backend) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let t = b.table.clone();
        tasks.push(tokio::spawn(async move {
            t.increment("SEQ", "c", 1).await.unwrap()
        }));
    }
    let mut got: Vec<u64> = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (1..=20).collect::<Vec<u64>>());
}

/// Reserving ranges (an id block per process): concurrent increments by
/// different amounts get disjoint ranges that cover every value once.
async fn counter_ranges_are_disjoint(b: Backend) {
    let mut tasks = Vec::new();
    for by in 1..=10u64 {
        let t = b.table.clone();
        tasks.push(tokio::spawn(async move {
            let end = t.increment("SEQ", "r", by).await.unwrap();
            (end + 1 - by)..=end
        }));
    }
    let mut got: Vec<u64> = Vec::new();
    for task in tasks {
        got.extend(task.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (1..=55).collect::<Vec<u64>>());
}

/// Many writers at once (on the embedded store they share group commits): a
/// failed condition fails only its own write, never a neighbour's.
async fn concurrent_conditions_fail_alone(b: Backend) {
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let t = b.table.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{:02}", i % 12);
            let put = t.put(item("CC", &key, 1, Some(&key)), Cond::Absent).await;
            let counted = t.increment("CC", "n", 1).await.unwrap();
            (key, put, counted)
        }));
    }
    let (mut won, mut lost, mut counts) = (Vec::new(), 0, Vec::new());
    for task in tasks {
        let (key, put, counted) = task.await.unwrap();
        counts.push(counted);
        match put {
            Ok(()) => won.push(key),
            Err(StoreError::ConditionFailed) => lost += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    won.sort();
    let expected: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    assert_eq!((won, lost), (expected.clone(), 48), "one winner per key");
    counts.sort();
    assert_eq!(counts, (1..=60).collect::<Vec<u64>>());
    let page = b
        .table
        .query(&query(Index::Local(0), "CC", "k", false, 100))
        .await
        .unwrap();
    assert_eq!(sks(&page), expected, "every won write is indexed once");
}

/// `item` with its body grown so that DynamoDB counts `stored` bytes for it.
fn sized(mut item: Item, stored: usize) -> Item {
    item.body.clear();
    let empty = item.stored_size();
    item.body = "x".repeat(stored - empty);
    assert_eq!(item.stored_size(), stored);
    item
}

/// Items are at most 400 KB as DynamoDB counts them, with a copy in each
/// local index they are in; every backend refuses the same ones, and a
/// refused write writes nothing.
async fn item_size_limit_is_dynamodbs(b: Backend) {
    let t = &b.table;
    let at_limit = sized(Item::plain("BIG", "at", 1, String::new()), MAX_ITEM_BYTES);
    t.put(at_limit.clone(), Cond::Absent).await.unwrap();
    assert_eq!(t.get("BIG", "at").await.unwrap().as_ref(), Some(&at_limit));

    let over = sized(
        Item::plain("BIG", "over", 1, String::new()),
        MAX_ITEM_BYTES + 1,
    );
    for provisional in [false, true] {
        let put = if provisional {
            t.put_provisional(over.clone(), Cond::Absent).await
        } else {
            t.put(over.clone(), Cond::Absent).await
        };
        assert!(matches!(put, Err(StoreError::TooLarge(_))), "{put:?}");
    }
    assert_eq!(t.get("BIG", "over").await.unwrap(), None);
    // Over an existing item: refused, the item stays as it was.
    let grown = sized(
        Item::plain("BIG", "at", 2, String::new()),
        MAX_ITEM_BYTES + 1,
    );
    let put = t.put(grown, Cond::Version(1)).await;
    assert!(matches!(put, Err(StoreError::TooLarge(_))), "{put:?}");
    assert_eq!(t.get("BIG", "at").await.unwrap().as_ref(), Some(&at_limit));

    // In one local index the item counts twice (plus the entry's overhead).
    let mut indexed = Item::plain("BIG", "lsi", 1, String::new());
    indexed.local[0] = Some("k".into());
    let at_limit = sized(indexed.clone(), Item::max_stored_size(1));
    assert_eq!(at_limit.charged_size(), MAX_ITEM_BYTES);
    t.put(at_limit.clone(), Cond::Absent).await.unwrap();
    assert_eq!(t.get("BIG", "lsi").await.unwrap().as_ref(), Some(&at_limit));
    let over = sized(indexed, Item::max_stored_size(1) + 1);
    let put = t.put(over, Cond::Version(1)).await;
    assert!(matches!(put, Err(StoreError::TooLarge(_))), "{put:?}");
    let page = t
        .query(&query(Index::Local(0), "BIG", "k", false, 10))
        .await
        .unwrap();
    assert_eq!(page.items, [at_limit], "the index still has the old item");
}

/// Keys are at most 2,048 (partition) and 1,024 (sort) bytes of UTF-8, in
/// the table and in every index. A longer one is refused on write; a read of
/// one finds nothing, as such an item cannot exist.
async fn key_length_limits_are_dynamodbs(b: Backend) {
    let t = &b.table;
    let long_sk = "😀".repeat(MAX_SORT_KEY_BYTES / 4); // 1,024 bytes, 256 characters
    let long_pk = "p".repeat(MAX_PARTITION_KEY_BYTES);
    let at_limit = item(&long_pk, &long_sk, 1, Some(&long_sk));
    t.put(at_limit.clone(), Cond::Absent).await.unwrap();
    assert_eq!(
        t.get(&long_pk, &long_sk).await.unwrap().as_ref(),
        Some(&at_limit)
    );

    let over_sk = format!("a{long_sk}");
    let over_pk = format!("{long_pk}p");
    let over_local = item("K", "local", 1, Some(&over_sk));
    let mut over_global_sk = item("K", "gsk", 1, None);
    over_global_sk.global[1] = Some(("G".into(), over_sk.clone()));
    let mut over_global_pk = item("K", "gpk", 1, None);
    over_global_pk.global[0] = Some((over_pk.clone(), "s".into()));
    for bad in [
        item("K", &over_sk, 1, None),
        item(&over_pk, "s", 1, None),
        over_local,
        over_global_sk,
        over_global_pk,
    ] {
        let key = (bad.pk.clone(), bad.sk.clone());
        let put = t.put(bad, Cond::Always).await;
        assert!(matches!(put, Err(StoreError::KeyTooLong(_))), "{put:?}");
        assert_eq!(t.get(&key.0, &key.1).await.unwrap(), None);
    }
    // Reads of keys that cannot exist find nothing (and are no errors).
    assert_eq!(t.get("K", &over_sk).await.unwrap(), None);
    assert_eq!(t.get(&over_pk, "s").await.unwrap(), None);
    t.delete("K", &over_sk, Cond::Always).await.unwrap();
    assert_eq!(
        t.delete("K", &over_sk, Cond::Version(1)).await,
        Err(StoreError::ConditionFailed)
    );
    let page = t
        .query(&query(Index::Local(0), "K", &over_sk, false, 10))
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.exhausted);
    let page = t
        .query(&query(Index::Base, &over_pk, "", false, 10))
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.exhausted);
    // A cursor holding such a key is refused, as DynamoDB refuses the start key.
    let mut q = query(Index::Local(0), &long_pk, "", false, 10);
    q.after = Some(Cursor {
        index_key: over_sk.clone(),
        pk: long_pk.clone(),
        sk: long_sk.clone(),
    });
    let page = t.query(&q).await;
    assert!(matches!(page, Err(StoreError::KeyTooLong(_))), "{page:?}");
}

// ---- the registry rules on the port ----

/// Calls to the table port, per operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Calls {
    get: usize,
    get_many: usize,
    put: usize,
    put_provisional: usize,
    delete: usize,
    query: usize,
    increment: usize,
}

impl Calls {
    fn writes(&self) -> usize {
        self.put + self.put_provisional + self.delete + self.increment
    }
}

/// A table that counts the calls it is asked for, per operation, and
/// passes them on.
struct Counting {
    inner: Arc<dyn Table>,
    calls: Mutex<Calls>,
}

impl Counting {
    fn new(inner: Arc<dyn Table>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            calls: Mutex::default(),
        })
    }

    fn count(&self, op: impl FnOnce(&mut Calls) -> &mut usize) {
        *op(&mut self.calls.lock().unwrap()) += 1;
    }

    /// The calls since the last `take`.
    fn take(&self) -> Calls {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl Table for Counting {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.count(|c| &mut c.get);
        self.inner.get(pk, sk).await
    }
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        self.count(|c| &mut c.get_many);
        self.inner.get_many(keys).await
    }
    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.count(|c| &mut c.put);
        self.inner.put(item, cond).await
    }
    async fn put_provisional(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.count(|c| &mut c.put_provisional);
        self.inner.put_provisional(item, cond).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        self.count(|c| &mut c.delete);
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(&self, q: &Query) -> Result<QueryPage, StoreError> {
        self.count(|c| &mut c.query);
        self.inner.query(q).await
    }
    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError> {
        self.count(|c| &mut c.increment);
        self.inner.increment(pk, sk, by).await
    }
}

/// An entity over the size limit, or a name over its limits, is refused
/// before anything (counter, claim, entity) is written, on create and on
/// update; the name stays free and the entity unchanged.
async fn oversize_entities_write_nothing(b: Backend) {
    let counting = Counting::new(b.table.clone());
    let r = Registry::new(counting.clone(), RegistryConfig::default());
    let huge = "d".repeat(500_000);
    let mut new = model("hefty");
    new.fields.insert("description".into(), json!(huge));
    new.external_id = Some("hefty-x".into());
    let err = r.create(new).await.unwrap_err();
    let Error::TooLarge(m) = &err else {
        panic!("{err:?}")
    };
    assert!(
        m.contains(&format!(
            "at most {MAX_ENTITY_BYTES} (description 500000 bytes)"
        )),
        "{m}"
    );
    assert_eq!(counting.take().writes(), 0, "nothing written");

    let mut fits = model("hefty");
    fits.external_id = Some("hefty-x".into());
    let m = r.create(fits).await.expect("the name is free");
    counting.take();
    let err = r
        .update(
            Family::RegisteredModel,
            m.id,
            &model_patch(json!({"description": huge, "externalId": "other-x"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    let err = r
        .modify(Family::RegisteredModel, m.id, |e| {
            e.fields.insert("readme".into(), json!(huge));
            Ok(true)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert_eq!(counting.take().writes(), 0, "nothing written");
    assert_eq!(r.get(Family::RegisteredModel, None, m.id).await.unwrap(), m);
    let taken = r
        .find(Family::RegisteredModel, None, None, Some("other-x"), None)
        .await;
    assert!(
        matches!(taken, Err(Error::NotFound(_))),
        "externalId not claimed"
    );

    // A version name counts its model's id (upstream stores "<id>:<name>").
    let digits = m.id.to_string().len();
    let version = |name: String| {
        decode_new(
            Kind::ModelVersion,
            &json!({"name": name, "registeredModelId": m.id.to_string()}),
        )
        .unwrap()
    };
    let err = r
        .create(version("v".repeat(255 - digits)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(counting.take().writes(), 0, "nothing written");
    r.create(version("v".repeat(254 - digits))).await.unwrap();
}

async fn same_name_race_has_one_winner(b: Backend) {
    let r = registry(&b, 10_000);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let r = r.clone();
        tasks.push(tokio::spawn(
            async move { r.create(model("contested")).await },
        ));
    }
    let (mut won, mut lost) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict(_)) => lost += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, lost), (1, 49));
    let page = r
        .list(
            Family::RegisteredModel,
            Scope::All,
            &Narrow::default(),
            &all_params(0),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

/// A table that "crashes" (fails without writing) on the next put that
/// `hits`, while armed; it counts the puts that hit in `seen`.
struct Crashing {
    inner: Arc<dyn Table>,
    hits: fn(&Item) -> bool,
    armed: AtomicUsize,
    seen: AtomicUsize,
}

impl Crashing {
    fn new(inner: Arc<dyn Table>, hits: fn(&Item) -> bool, armed: bool) -> Arc<Crashing> {
        Arc::new(Crashing {
            inner,
            hits,
            armed: AtomicUsize::new(usize::from(armed)),
            seen: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Table for Crashing {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.inner.get(pk, sk).await
    }
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        if (self.hits)(&item) {
            self.seen.fetch_add(1, Ordering::SeqCst);
            if self.armed.swap(0, Ordering::SeqCst) == 1 {
                return Err(StoreError::unavailable("injected crash"));
            }
        }
        self.inner.put(item, cond).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(&self, q: &Query) -> Result<QueryPage, StoreError> {
        self.inner.query(q).await
    }
    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError> {
        self.inner.increment(pk, sk, by).await
    }
}

async fn crash_between_writes_is_recoverable(b: Backend) {
    // The first write of a model's home fails.
    let crashing: Arc<dyn Table> =
        Crashing::new(b.table.clone(), |item| item.pk.starts_with("RM#"), true);
    let lease = Duration::from_millis(300);
    let r = Registry::new(
        crashing,
        RegistryConfig {
            claim_lease: lease,
            ..RegistryConfig::default()
        },
    );
    let mut new = model("phoenix");
    new.external_id = Some("ext-phoenix".into());
    // The create dies after claiming the name and externalId, before the entity.
    let err = r.create(new.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    // Nothing is visible: no half-entity.
    let page = r
        .list(
            Family::RegisteredModel,
            Scope::All,
            &Narrow::default(),
            &all_params(0),
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert!(matches!(
        r.find(Family::RegisteredModel, None, Some("phoenix"), None, None)
            .await,
        Err(Error::NotFound(_))
    ));
    // While the lease runs the name is held (the writer might still be alive)...
    assert!(matches!(
        r.create(new.clone()).await,
        Err(Error::Conflict(_))
    ));
    // ...and after it the next attempt recovers the name and the externalId.
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    let e = r.create(new.clone()).await.expect("recovered");
    assert_eq!(e.name, "phoenix");
    // The abandoned id is fenced: a late writer of it cannot appear.
    let dead_id = 1;
    assert!(e.id > dead_id);
    let stale = b
        .table
        .get(&format!("RM#{dead_id:012}"), "E")
        .await
        .unwrap();
    assert!(stale.is_some(), "tombstone written");
    assert!(matches!(
        r.get(Family::RegisteredModel, None, dead_id).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        r.find(
            Family::RegisteredModel,
            None,
            None,
            Some("ext-phoenix"),
            None
        )
        .await
        .unwrap()
        .id,
        e.id
    );
}

async fn concurrent_patches_lose_nothing(b: Backend) {
    let r = registry(&b, 10_000);
    let m = r.create(model("patched")).await.unwrap();
    let fields = [
        "description",
        "owner",
        "readme",
        "maturity",
        "provider",
        "logo",
        "license",
        "licenseLink",
        "libraryName",
    ];
    let mut tasks = Vec::new();
    for f in fields {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            r.update(
                Family::RegisteredModel,
                m.id,
                &model_patch(json!({ f: format!("v-{f}") })),
            )
            .await
            .unwrap()
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.unwrap().update_ms);
    }
    times.sort();
    times.dedup();
    assert_eq!(
        times.len(),
        fields.len(),
        "every update has its own lastUpdateTime"
    );
    let e = r.get(Family::RegisteredModel, None, m.id).await.unwrap();
    for f in fields {
        assert_eq!(e.fields[f], json!(format!("v-{f}")), "{f} was lost");
    }
}

async fn keyset_pages_cover_everything_once(b: Backend) {
    let r = registry(&b, 10_000);
    let parent = r.create(model("pager")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..9 {
        let v = decode_new(
            Kind::ModelVersion,
            &json!({"name": format!("v{}", 9 - i), "registeredModelId": parent.id.to_string()}),
        )
        .unwrap();
        ids.push(r.create(v).await.unwrap().id);
    }
    for (order, desc) in [
        ("ID", false),
        ("NAME", false),
        ("CREATE_TIME", true),
        ("LAST_UPDATE_TIME", true),
    ] {
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let raw = RawListParams {
                page_size: Some("4"),
                order_by: Some(order),
                sort_order: Some(if desc { "DESC" } else { "ASC" }),
                next_page_token: Some(&token),
                filter_query: None,
            };
            let params = ListParams::parse(&raw, true).unwrap();
            let page = r
                .list(
                    Family::ModelVersion,
                    Scope::Parent(parent.id),
                    &Narrow::default(),
                    &params,
                )
                .await
                .unwrap();
            seen.extend(page.items.iter().map(|e| e.id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut expected = ids.clone();
        if order == "NAME" {
            expected.reverse();
        }
        if desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order}");
    }
}

fn version(model: u64, name: &str) -> NewEntity {
    decode_new(
        Kind::ModelVersion,
        &json!({"name": name, "registeredModelId": model.to_string()}),
    )
    .unwrap()
}

/// Several processes, each with its own blocks of ids, creating versions of
/// one model in turn: every version's id is above the ones created before
/// it (clients take the highest id as the latest version), although the
/// processes' blocks interleave. Across models, ids still increase.
async fn ids_follow_creation_order_across_processes(b: Backend) {
    let process = || {
        Registry::new(
            b.table.clone(),
            RegistryConfig {
                // Blocks that never age out: the worst case for ordering.
                id_block_age: Duration::from_secs(600),
                ..RegistryConfig::default()
            },
        )
    };
    let (p1, p2, p3) = (process(), process(), process());
    let m = p1.create(model("ordered")).await.unwrap();
    // Warm each process's block with models of its own.
    for (i, p) in [&p1, &p2, &p3, &p2, &p3].iter().enumerate() {
        p.create(model(&format!("warm-{i}"))).await.unwrap();
    }
    let mut last = 0;
    for i in 0..12 {
        let p = [&p1, &p2, &p3][i % 3];
        let v = p.create(version(m.id, &format!("v{i}"))).await.unwrap();
        assert!(v.id > last, "version {i}: id {} after {last}", v.id);
        last = v.id;
    }
}

/// Ids have at most 9 digits (the upstream contract's pattern): the last
/// ones are handed out, then a create fails with a server error and writes
/// nothing, rather than answering an id clients cannot take.
async fn ids_stop_at_nine_digits(b: Backend) {
    let r = registry(&b, 10_000);
    // Skip the counter to just below the limit.
    b.table
        .increment("SEQ", "context", 999_999_997)
        .await
        .unwrap();
    let a = r.create(model("last-but-one")).await.unwrap();
    let z = r.create(model("last")).await.unwrap();
    assert_eq!((a.id, z.id), (999_999_998, 999_999_999));
    let err = r.create(model("one-too-many")).await.unwrap_err();
    assert!(err.to_string().contains("used up"), "{err}");
    assert!(
        r.find(
            Family::RegisteredModel,
            None,
            Some("one-too-many"),
            None,
            None
        )
        .await
        .is_err()
    );
}

/// What each operation costs in calls to the store, pinned (README "DynamoDB
/// calls per operation"). The registry makes the same calls to the table
/// port on every backend, so both are held to the same numbers; on DynamoDB
/// each port call is also exactly one request, as the SDK sent it.
async fn call_counts_are_pinned(b: Backend) {
    let counting = Counting::new(b.table.clone());
    let r = Registry::new(
        counting.clone(),
        RegistryConfig {
            claim_lease: Duration::from_millis(10_000),
            // Blocks of ids stay usable through the test, however slow the
            // machine: the counts below follow the block sizes (1, 2, 4 ...).
            id_block_age: Duration::from_secs(600),
            ..RegistryConfig::default()
        },
    );
    // Port calls, and on DynamoDB the requests they became, in order.
    let take = || (counting.take(), b.calls.as_ref().map(CallLog::take));
    let pinned =
        |what: &str, (port, wire): (Calls, Option<Vec<String>>), want: Calls, requests: &[&str]| {
            assert_eq!(port, want, "{what}: calls to the table");
            if let Some(wire) = wire {
                assert_eq!(wire, requests, "{what}: DynamoDB requests");
            }
        };
    take();

    let m = r.create(model("counted")).await.unwrap();
    pinned(
        "create a model (a block of 1 id from the counter, name claim, ledger record, entity)",
        take(),
        Calls {
            increment: 1,
            put_provisional: 2,
            put: 1,
            ..Calls::default()
        },
        &["UpdateItem", "PutItem", "PutItem", "PutItem"],
    );
    let mut with_xid = model("counted-x");
    with_xid.external_id = Some("counted-ext".into());
    r.create(with_xid).await.unwrap();
    pinned(
        "create a model with an externalId (+1 claim; the next block: 2 ids)",
        take(),
        Calls {
            increment: 1,
            put_provisional: 3,
            put: 1,
            ..Calls::default()
        },
        &["UpdateItem", "PutItem", "PutItem", "PutItem", "PutItem"],
    );
    let v1 = r.create(version(m.id, "v1")).await.unwrap();
    pinned(
        "create a version (reads its model and its latest version; its id from the block)",
        take(),
        Calls {
            get: 1,
            query: 1,
            put_provisional: 2,
            put: 1,
            ..Calls::default()
        },
        &["GetItem", "Query", "PutItem", "PutItem", "PutItem"],
    );
    r.get(Family::RegisteredModel, None, m.id).await.unwrap();
    pinned(
        "get by id",
        take(),
        Calls {
            get: 1,
            ..Calls::default()
        },
        &["GetItem"],
    );
    let found = r
        .find(Family::RegisteredModel, None, Some("counted"), None, None)
        .await
        .unwrap();
    assert_eq!(found.id, m.id);
    pinned(
        "find by name (its claim, the entity)",
        take(),
        Calls {
            get: 2,
            ..Calls::default()
        },
        &["GetItem", "GetItem"],
    );
    let found = r
        .find(Family::ModelVersion, None, Some("v1"), None, Some(m.id))
        .await
        .unwrap();
    assert_eq!(found.name, "v1");
    pinned(
        "find a version by name in its model (its claim, the entity)",
        take(),
        Calls {
            get: 2,
            ..Calls::default()
        },
        &["GetItem", "GetItem"],
    );
    let found = r
        .find(
            Family::RegisteredModel,
            None,
            None,
            Some("counted-ext"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(found.name, "counted-x");
    pinned(
        "find by externalId (claim, entity)",
        take(),
        Calls {
            get: 2,
            ..Calls::default()
        },
        &["GetItem", "GetItem"],
    );
    let page = r
        .list(
            Family::ModelVersion,
            Scope::Parent(m.id),
            &Narrow::default(),
            &all_params(10),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    pinned(
        "one page of a model's versions (the entries, their entities)",
        take(),
        Calls {
            query: 1,
            get_many: 1,
            ..Calls::default()
        },
        &["Query", "BatchGetItem"],
    );
    let page = r
        .list(
            Family::RegisteredModel,
            Scope::All,
            &Narrow::default(),
            &all_params(10),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    pinned(
        "one page of a global list (one Query per shard, at once)",
        take(),
        Calls {
            query: SHARDS as usize,
            ..Calls::default()
        },
        &["Query"; SHARDS as usize],
    );
    let patch = decode_patch(Kind::ModelVersion, &json!({"description": "counted"})).unwrap();
    r.update(Family::ModelVersion, v1.id, &patch).await.unwrap();
    pinned(
        "update a version (the entity read; the previous ledger record's hash \
         read, the new record written; the entity written; its entry in the \
         model's update-time order read and moved)",
        take(),
        Calls {
            get: 2,
            query: 1,
            put: 1,
            put_provisional: 2,
            ..Calls::default()
        },
        &[
            "GetItem", "Query", "PutItem", "PutItem", "GetItem", "PutItem",
        ],
    );
}

/// Every change of an entity has its record in the ledger, with its actor,
/// chained by hashes; its history and its state at a time come from them,
/// and an edited or removed record is found.
async fn the_ledger_records_every_change_in_a_chain(b: Backend) {
    let r = registry(&b, 10_000);
    let m = actor::acting("alice", r.create(model("audited")))
        .await
        .unwrap();
    let mut states = vec![m.clone()];
    for i in 0..5 {
        let patch = model_patch(json!({"description": format!("take {i}")}));
        let e = actor::acting("bob", r.update(Family::RegisteredModel, m.id, &patch))
            .await
            .unwrap();
        states.push(e);
    }
    let history = r
        .history(Family::RegisteredModel, m.id, None, 1000)
        .await
        .unwrap()
        .0;
    let revisions: Vec<u64> = history.iter().map(|h| h.record.revision).collect();
    assert_eq!(revisions, [6, 5, 4, 3, 2, 1], "newest first");
    assert!(history.iter().all(|h| h.applied));
    assert_eq!(history[5].record.actor, "alice");
    assert_eq!(history[5].record.action, Action::Create);
    assert!(
        history[..5]
            .iter()
            .all(|h| h.record.actor == "bob" && h.record.action == Action::Update)
    );
    for (h, state) in history.iter().rev().zip(&states) {
        assert_eq!(&h.record.entity, state);
    }
    // The entity as it was at each revision's time.
    for state in &states {
        let then = r
            .as_of(Family::RegisteredModel, m.id, state.update_ms)
            .await
            .unwrap();
        assert_eq!(&then, state);
    }
    assert!(matches!(
        r.as_of(Family::RegisteredModel, m.id, m.create_ms - 1)
            .await,
        Err(Error::NotFound(_))
    ));
    // Outside any request, changes are the system's.
    let e = r
        .update(
            Family::RegisteredModel,
            m.id,
            &model_patch(json!({"description": "sys"})),
        )
        .await
        .unwrap();
    let history = r
        .history(Family::RegisteredModel, m.id, None, 1000)
        .await
        .unwrap()
        .0;
    assert_eq!(history[0].record.actor, actor::SYSTEM);
    assert_eq!(history[0].record.entity, e);
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!(
        (verdict.records, verdict.broken_at),
        (7, None),
        "{verdict:?}"
    );

    // An edited record breaks the chain at that record.
    let pk = format!("L#RM#{:012}", m.id);
    let key = |rev: u64| format!("{rev:012}");
    let stored = b.table.get(&pk, &key(3)).await.unwrap().unwrap();
    let forged = Item::plain(
        pk.as_str(),
        key(3),
        stored.version + 1,
        stored.body.replace("\"bob\"", "\"mallory\""),
    );
    b.table.put(forged, Cond::Always).await.unwrap();
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!(verdict.broken_at, Some(3), "{verdict:?}");
    b.table.put(stored, Cond::Always).await.unwrap();
    assert_eq!(
        r.verify(Family::RegisteredModel, m.id)
            .await
            .unwrap()
            .broken_at,
        None
    );
    // So does a removed one, in the middle or at the end.
    let third = b.table.get(&pk, &key(3)).await.unwrap().unwrap();
    b.table.delete(&pk, &key(3), Cond::Always).await.unwrap();
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!(verdict.broken_at, Some(4), "{verdict:?}");
    b.table.put(third, Cond::Always).await.unwrap();
    b.table.delete(&pk, &key(7), Cond::Always).await.unwrap();
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!(verdict.broken_at, Some(7), "{verdict:?}");
}

/// A process that dies between a change's record and its write leaves a
/// record of a change that never happened: the history marks it, nothing
/// changed, and once it is older than the lease the next change takes its
/// place.
async fn a_change_that_died_after_its_record_is_marked(b: Backend) {
    let crashing = Crashing::new(b.table.clone(), |item| item.sk == "E", false);
    let lease = Duration::from_millis(300);
    let r = Registry::new(
        crashing.clone(),
        RegistryConfig {
            claim_lease: lease,
            ..RegistryConfig::default()
        },
    );
    let m = r.create(model("interrupted")).await.unwrap();
    crashing.armed.store(1, Ordering::SeqCst);
    let patch = model_patch(json!({"description": "never"}));
    let err = r
        .update(Family::RegisteredModel, m.id, &patch)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(r.get(Family::RegisteredModel, None, m.id).await.unwrap(), m);
    let history = r
        .history(Family::RegisteredModel, m.id, None, 1000)
        .await
        .unwrap()
        .0;
    assert_eq!(history.len(), 2);
    assert!(
        !history[0].applied,
        "the record of the change that never happened"
    );
    assert_eq!(history[0].record.revision, 2);
    assert!(history[1].applied);
    assert_eq!(
        r.verify(Family::RegisteredModel, m.id)
            .await
            .unwrap()
            .broken_at,
        None
    );
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    let patch = model_patch(json!({"description": "after"}));
    let e = r
        .update(Family::RegisteredModel, m.id, &patch)
        .await
        .unwrap();
    let history = r
        .history(Family::RegisteredModel, m.id, None, 1000)
        .await
        .unwrap()
        .0;
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|h| h.applied));
    assert_eq!(history[0].record.entity, e);
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!((verdict.records, verdict.broken_at), (2, None));
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod embedded_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::embedded()).await })*
        }
        mod dynamodb_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::dynamodb().await).await })*
        }
    };
}

#[path = "contract/governance.rs"]
mod governance;
#[path = "contract/web.rs"]
mod web;

suite!(
    conditional_writes,
    ordered_queries_and_cursors,
    global_index,
    counters_are_atomic,
    counter_ranges_are_disjoint,
    concurrent_conditions_fail_alone,
    item_size_limit_is_dynamodbs,
    key_length_limits_are_dynamodbs,
    same_name_race_has_one_winner,
    crash_between_writes_is_recoverable,
    concurrent_patches_lose_nothing,
    keyset_pages_cover_everything_once,
    call_counts_are_pinned,
    ids_follow_creation_order_across_processes,
    ids_stop_at_nine_digits,
    oversize_entities_write_nothing,
    the_ledger_records_every_change_in_a_chain,
    a_change_that_died_after_its_record_is_marked,
);
