//! A `Table` that bills every call as DynamoDB on-demand bills it, to the
//! partition key that serves it and the simulated second it happens in.
//!
//! - GetItem: `ceil(item bytes / 4 KiB)` read units, at least 1 (also for a
//!   miss); strongly consistent, as the port's get is.
//! - Query: `ceil(bytes of the items returned / 4 KiB)`, at least 1; the
//!   base table and local indexes read consistently (full units) and are
//!   charged to the table's partition key, a global index reads eventually
//!   consistently (half units) and is charged to its own key space
//!   (`G1:<pk>`, `G2:<pk>`).
//! - PutItem, DeleteItem, UpdateItem (`put`, `put_provisional`, `delete`,
//!   `increment`): `ceil(bytes / 1 KiB)` write units for the base item, the
//!   larger of its old and new image, at least 1. A failed condition is
//!   charged too, by the size of the item that is there (at least 1), and
//!   writes no index. A write that changes the item writes every index the
//!   item is in, before or after: an entry projects ALL attributes, so it
//!   is the item plus 100 bytes and costs `ceil(entry / 1 KiB)`; an entry
//!   whose index key changes is deleted and put again (two charges). Local
//!   index entries are charged to the table's partition key, global ones to
//!   the index's partition key.
//! - Item collections: per table partition key, the bytes of its base items
//!   and of their local index entries, kept as writes happen (what
//!   DynamoDB's 10 GB limit applies to when a table has local indexes).
//!
//! The old image of a write is read from the inner table first (unbilled),
//! under a lock of the item's key, so the bill and the collection sizes are
//! exact however many writers there are.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::ops::AddAssign;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use registry::store::port::{
    Cond, GLOBAL_INDEXES, Index, Item, LOCAL_INDEX_ENTRY_OVERHEAD, LOCAL_INDEXES, Query, QueryPage,
    StoreError, Table,
};

/// Bytes per read unit (strongly consistent; eventually consistent: half).
pub const READ_UNIT_BYTES: usize = 4 * 1024;
/// Bytes per write unit.
pub const WRITE_UNIT_BYTES: usize = 1024;
/// What one index entry adds to the item it copies (DynamoDB's documented
/// per-entry overhead; every index here projects ALL attributes).
pub const INDEX_ENTRY_OVERHEAD: usize = LOCAL_INDEX_ENTRY_OVERHEAD;

tokio::task_local! {
    /// The operation (of the workload) the current task is running.
    static OPERATION: &'static str;
}

/// Read and write units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

impl Units {
    pub fn read(read: f64) -> Units {
        Units { read, write: 0.0 }
    }
    pub fn write(write: f64) -> Units {
        Units { read: 0.0, write }
    }
}

impl AddAssign for Units {
    fn add_assign(&mut self, other: Units) {
        self.read += other.read;
        self.write += other.write;
    }
}

/// Read units of reading `bytes`, consistently or eventually.
pub fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// Write units of writing `bytes`.
pub fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as f64
}

/// The key a query of `index` on `partition` is served by: the table's
/// partition for the base table and its local indexes, the index's own
/// partition for a global index.
pub fn query_key(index: Index, partition: &str) -> String {
    match index {
        Index::Base | Index::Local(_) => partition.to_string(),
        Index::Global(i) => global_key(i, partition),
    }
}

fn global_key(i: usize, partition: &str) -> String {
    format!("G{}:{partition}", i + 1)
}

/// What one read costs, by key.
pub fn read_charge(key: String, bytes: usize, consistent: bool) -> Vec<(String, Units)> {
    vec![(key, Units::read(read_units(bytes, consistent)))]
}

/// What one write of the item at (`pk`, ..) costs, by key: `old` is the
/// item before, `new` the item written (`None`: deleted), `applied` false
/// when the condition failed (nothing was written).
pub fn write_charges(
    pk: &str,
    old: Option<&Item>,
    new: Option<&Item>,
    applied: bool,
) -> Vec<(String, Units)> {
    let old_size = old.map_or(0, Item::stored_size);
    if !applied {
        // DynamoDB charges a failed condition by the item that is there.
        return vec![(pk.to_string(), Units::write(write_units(old_size)))];
    }
    let new_size = new.map_or(0, Item::stored_size);
    let mut charges = vec![(
        pk.to_string(),
        Units::write(write_units(old_size.max(new_size))),
    )];
    let (old_entry, new_entry) = (
        old_size + INDEX_ENTRY_OVERHEAD,
        new_size + INDEX_ENTRY_OVERHEAD,
    );
    // One index: the entry's (key it is charged to, index sort key) before and after.
    let mut index =
        |before: Option<(String, &str)>, after: Option<(String, &str)>| match (before, after) {
            (None, None) => {}
            (None, Some((key, _))) => charges.push((key, Units::write(write_units(new_entry)))),
            (Some((key, _)), None) => charges.push((key, Units::write(write_units(old_entry)))),
            (Some((k0, s0)), Some((k1, s1))) if k0 == k1 && s0 == s1 => {
                let units = write_units(old_entry.max(new_entry));
                charges.push((k1, Units::write(units)));
            }
            (Some((k0, _)), Some((k1, _))) => {
                charges.push((k0, Units::write(write_units(old_entry))));
                charges.push((k1, Units::write(write_units(new_entry))));
            }
        };
    for i in 0..LOCAL_INDEXES {
        index(local_entry(pk, old, i), local_entry(pk, new, i));
    }
    for i in 0..GLOBAL_INDEXES {
        index(global_entry(old, i), global_entry(new, i));
    }
    charges
}

/// The key local index `i`'s entry of `item` is charged to, and its sort key.
fn local_entry<'a>(pk: &str, item: Option<&'a Item>, i: usize) -> Option<(String, &'a str)> {
    let sort = item?.index_sort_key(Index::Local(i))?;
    Some((pk.to_string(), sort))
}

/// The key global index `i`'s entry of `item` is charged to, and its sort key.
fn global_entry(item: Option<&Item>, i: usize) -> Option<(String, &str)> {
    let (partition, sort) = item?.global[i].as_ref()?;
    Some((global_key(i, partition), sort.as_str()))
}

/// A counter item's size: its key and its number (no body).
fn counter_size(pk: &str, sk: &str, value: u64) -> usize {
    // `stored_size` counts the body attribute `b` (1 byte of name) too.
    Item::plain(pk, sk, value, String::new()).stored_size() - 1
}

/// When calls happen: while seeding (not held to the limits), or in a
/// simulated second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Seed,
    Second(u32),
}

/// Operations of one kind: how many, their calls and units.
#[derive(Debug, Clone, Copy, Default)]
pub struct Operations {
    pub ops: u64,
    pub calls: u64,
    pub units: Units,
}

/// One item collection: a table partition key's base items and their
/// local index entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collection {
    pub bytes: i64,
    pub items: i64,
    pub local_entries: i64,
}

impl Collection {
    fn of(item: &Item) -> Collection {
        Collection {
            bytes: item.charged_size() as i64,
            items: 1,
            local_entries: item.local.iter().flatten().count() as i64,
        }
    }

    fn add(&mut self, c: Collection, sign: i64) {
        self.bytes += sign * c.bytes;
        self.items += sign * c.items;
        self.local_entries += sign * c.local_entries;
    }
}

/// Everything billed so far.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub period: Period,
    /// Units per key in each simulated second.
    pub seconds: BTreeMap<u32, HashMap<String, Units>>,
    /// Per operation kind, over the simulated seconds.
    pub operations: BTreeMap<&'static str, Operations>,
    /// Everything billed while seeding.
    pub seed: Operations,
    /// Per table partition key.
    pub collections: HashMap<String, Collection>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            period: Period::Seed,
            seconds: BTreeMap::new(),
            operations: BTreeMap::new(),
            seed: Operations::default(),
            collections: HashMap::new(),
        }
    }
}

/// Locks of item keys, so that a write and the read of its old image are
/// one step for the bill.
const KEY_LOCKS: usize = 1024;

/// The billing table: see the module's doc.
pub struct Billing {
    inner: Arc<dyn Table>,
    ledger: Mutex<Ledger>,
    key_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Billing {
    pub fn new(inner: Arc<dyn Table>) -> Arc<Billing> {
        Arc::new(Billing {
            inner,
            ledger: Mutex::default(),
            key_locks: (0..KEY_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, bill to `period`.
    pub fn set_period(&self, period: Period) {
        self.ledger().period = period;
    }

    /// Run one operation of kind `label`: counted, and every call it makes
    /// billed to it.
    pub async fn operation<F: Future>(&self, label: &'static str, op: F) -> F::Output {
        {
            let mut l = self.ledger();
            match l.period {
                Period::Seed => l.seed.ops += 1,
                Period::Second(_) => l.operations.entry(label).or_default().ops += 1,
            }
        }
        OPERATION.scope(label, op).await
    }

    /// A copy of everything billed so far.
    pub fn ledger_snapshot(&self) -> Ledger {
        self.ledger().clone()
    }

    fn charge(&self, charges: Vec<(String, Units)>) {
        let label = OPERATION
            .try_with(|l| *l)
            .unwrap_or("(outside any operation)");
        let mut total = Units::default();
        for (_, u) in &charges {
            total += *u;
        }
        let mut l = self.ledger();
        match l.period {
            Period::Seed => {
                l.seed.calls += 1;
                l.seed.units += total;
            }
            Period::Second(s) => {
                let second = l.seconds.entry(s).or_default();
                for (key, units) in charges {
                    *second.entry(key).or_default() += units;
                }
                let op = l.operations.entry(label).or_default();
                op.calls += 1;
                op.units += total;
            }
        }
    }

    fn collect(&self, pk: &str, old: Option<Collection>, new: Option<Collection>) {
        if old.is_none() && new.is_none() {
            return;
        }
        let mut l = self.ledger();
        let c = l.collections.entry(pk.to_string()).or_default();
        if let Some(old) = old {
            c.add(old, -1);
        }
        if let Some(new) = new {
            c.add(new, 1);
        }
    }

    fn key_lock(&self, pk: &str, sk: &str) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        (pk, sk).hash(&mut h);
        &self.key_locks[(h.finish() % KEY_LOCKS as u64) as usize]
    }

    /// The item as it is, for the bill (not billed itself).
    async fn old_image(&self, pk: &str, sk: &str) -> Option<Item> {
        self.inner.get(pk, sk).await.ok().flatten()
    }

    async fn write(&self, item: Item, cond: Cond, provisional: bool) -> Result<(), StoreError> {
        let _key = self.key_lock(&item.pk, &item.sk).lock().await;
        let old = self.old_image(&item.pk, &item.sk).await;
        let result = if provisional {
            self.inner.put_provisional(item.clone(), cond).await
        } else {
            self.inner.put(item.clone(), cond).await
        };
        self.bill_write(&item.pk, old.as_ref(), Some(&item), &result);
        result
    }

    fn bill_write(
        &self,
        pk: &str,
        old: Option<&Item>,
        new: Option<&Item>,
        result: &Result<(), StoreError>,
    ) {
        match result {
            Ok(()) => {
                self.charge(write_charges(pk, old, new, true));
                self.collect(pk, old.map(Collection::of), new.map(Collection::of));
            }
            Err(StoreError::ConditionFailed) => self.charge(write_charges(pk, old, None, false)),
            // Refused before DynamoDB would see it, or not served: not billed.
            Err(_) => {}
        }
    }
}

#[async_trait]
impl Table for Billing {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let result = self.inner.get(pk, sk).await;
        if let Ok(found) = &result {
            let bytes = found.as_ref().map_or(0, Item::stored_size);
            self.charge(read_charge(pk.to_string(), bytes, true));
        }
        result
    }

    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        let result = self.inner.get_many(keys).await;
        if let Ok(found) = &result {
            // One call; each item is billed as its own consistent read.
            let charges = keys
                .iter()
                .zip(found)
                .flat_map(|((pk, _), item)| {
                    let bytes = item.as_ref().map_or(0, Item::stored_size);
                    read_charge(pk.clone(), bytes, true)
                })
                .collect();
            self.charge(charges);
        }
        result
    }

    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.write(item, cond, false).await
    }

    async fn put_provisional(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.write(item, cond, true).await
    }

    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        let _key = self.key_lock(pk, sk).lock().await;
        let old = self.old_image(pk, sk).await;
        let result = self.inner.delete(pk, sk, cond).await;
        self.bill_write(pk, old.as_ref(), None, &result);
        result
    }

    async fn query(&self, q: &Query) -> Result<QueryPage, StoreError> {
        let result = self.inner.query(q).await;
        if let Ok(page) = &result {
            let bytes = page.items.iter().map(Item::stored_size).sum();
            let consistent = !matches!(q.index, Index::Global(_));
            self.charge(read_charge(
                query_key(q.index, &q.partition),
                bytes,
                consistent,
            ));
        }
        result
    }

    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError> {
        let result = self.inner.increment(pk, sk, by).await;
        if let Ok(value) = &result {
            // An UpdateItem of the counter: its value before is known.
            let before = value.saturating_sub(by.max(1));
            let old = (before > 0).then(|| counter_size(pk, sk, before));
            let new = counter_size(pk, sk, *value);
            let bytes = old.unwrap_or(0).max(new);
            self.charge(vec![(pk.to_string(), Units::write(write_units(bytes)))]);
            let counter = |bytes: usize| Collection {
                bytes: bytes as i64,
                items: 1,
                local_entries: 0,
            };
            self.collect(pk, old.map(counter), Some(counter(new)));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use registry::store::embedded::EmbeddedTable;

    use super::*;

    const KIB: usize = 1024;

    /// An item of exactly `size` stored bytes, in every local index and
    /// (optionally) in global index 1.
    fn item_of(size: usize, locals: usize, global: bool) -> Item {
        let mut item = Item::plain("P", "s", 1, String::new());
        for i in 0..locals {
            item.local[i] = Some(format!("k{i}"));
        }
        if global {
            item.global[0] = Some(("GP".to_string(), "gs".to_string()));
        }
        let overhead = item.stored_size();
        item.body = "x".repeat(size - overhead);
        assert_eq!(item.stored_size(), size);
        item
    }

    fn total(charges: &[(String, Units)]) -> Units {
        let mut t = Units::default();
        for (_, u) in charges {
            t += *u;
        }
        t
    }

    fn keys(charges: &[(String, Units)]) -> Vec<&str> {
        charges.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_5_kib_get_is_2_read_units_and_a_miss_is_1() {
        assert_eq!(read_units(5 * KIB, true), 2.0);
        assert_eq!(read_units(4 * KIB, true), 1.0);
        assert_eq!(read_units(4 * KIB + 1, true), 2.0);
        assert_eq!(read_units(0, true), 1.0, "a miss");
    }

    #[test]
    fn eventually_consistent_reads_cost_half() {
        assert_eq!(read_units(5 * KIB, false), 1.0);
        assert_eq!(read_units(100, false), 0.5);
    }

    #[test]
    fn a_global_index_query_is_charged_to_its_own_key() {
        assert_eq!(query_key(Index::Global(0), "MV"), "G1:MV");
        assert_eq!(query_key(Index::Global(1), "MV"), "G2:MV");
        assert_eq!(query_key(Index::Local(3), "MV"), "MV");
        assert_eq!(query_key(Index::Base, "MV"), "MV");
    }

    #[test]
    fn a_1_5_kib_put_with_3_local_indexes_is_2_plus_3_times_2_write_units() {
        let new = item_of(1536, 3, false);
        let charges = write_charges("P", None, Some(&new), true);
        assert_eq!(total(&charges), Units::write(2.0 + 3.0 * 2.0));
        assert!(keys(&charges).iter().all(|k| *k == "P"), "{charges:?}");
        assert_eq!(charges.len(), 4);
        // An entry is the item plus 100 bytes: the entries of a 950-byte
        // item take 2 units each, those of a 900-byte item 1.
        let item = item_of(950, 3, false);
        let charges = write_charges("P", None, Some(&item), true);
        assert_eq!(total(&charges), Units::write(1.0 + 3.0 * 2.0));
        let item = item_of(900, 3, false);
        let charges = write_charges("P", None, Some(&item), true);
        assert_eq!(total(&charges), Units::write(1.0 + 3.0));
    }

    #[test]
    fn a_changed_index_key_is_a_delete_and_a_put() {
        let old = item_of(500, 1, false);
        let mut same = old.clone();
        same.version = 2;
        let charges = write_charges("P", Some(&old), Some(&same), true);
        assert_eq!(
            total(&charges),
            Units::write(2.0),
            "base + one index update"
        );
        let mut moved = old.clone();
        moved.local[0] = Some("other".to_string());
        let charges = write_charges("P", Some(&old), Some(&moved), true);
        assert_eq!(total(&charges), Units::write(3.0), "base + delete + put");
        // Leaving an index is a delete; a delete of the item deletes its entries.
        let mut left = old.clone();
        left.local[0] = None;
        assert_eq!(
            total(&write_charges("P", Some(&old), Some(&left), true)),
            Units::write(2.0)
        );
        assert_eq!(
            total(&write_charges("P", Some(&old), None, true)),
            Units::write(2.0)
        );
        // The base is charged by the larger image.
        let big = item_of(3000, 0, false);
        let shrunk = item_of(100, 0, false);
        assert_eq!(
            total(&write_charges("P", Some(&big), Some(&shrunk), true)),
            Units::write(3.0)
        );
    }

    #[test]
    fn a_failed_condition_is_still_charged_by_the_item_there() {
        let there = item_of(2500, 3, true);
        let charges = write_charges("P", Some(&there), None, false);
        assert_eq!(charges, vec![("P".to_string(), Units::write(3.0))]);
        let charges = write_charges("P", None, None, false);
        assert_eq!(charges, vec![("P".to_string(), Units::write(1.0))]);
    }

    #[test]
    fn global_index_writes_are_charged_to_the_index_key() {
        let new = item_of(1536, 0, true);
        let charges = write_charges("P", None, Some(&new), true);
        assert_eq!(keys(&charges), ["P", "G1:GP"]);
        assert_eq!(total(&charges), Units::write(4.0));
        // A moved global key: delete on the old partition, put on the new one.
        let mut moved = new.clone();
        moved.global[0] = Some(("GQ".to_string(), "gs".to_string()));
        let charges = write_charges("P", Some(&new), Some(&moved), true);
        assert_eq!(keys(&charges), ["P", "G1:GP", "G1:GQ"]);
    }

    /// The wrapper over a real table: every call billed to its key and
    /// second, failed conditions too, and collections kept exactly.
    #[tokio::test]
    async fn the_wrapper_bills_calls_to_keys_and_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let billing = Billing::new(Arc::new(EmbeddedTable::open(dir.path()).unwrap()));
        billing.set_period(Period::Second(0));
        let item = item_of(1536, 3, true);
        billing
            .operation("put", billing.put(item.clone(), Cond::Absent))
            .await
            .unwrap();
        let failed = billing.put(item.clone(), Cond::Absent).await;
        assert_eq!(failed, Err(StoreError::ConditionFailed));
        billing.set_period(Period::Second(1));
        let got = billing
            .operation("get", billing.get("P", "s"))
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(&item));
        let q = Query {
            index: Index::Global(0),
            partition: "GP".into(),
            prefix: String::new(),
            after: None,
            descending: false,
            limit: 10,
        };
        billing.operation("query", billing.query(&q)).await.unwrap();
        billing.increment("SEQ", "c", 1).await.unwrap();

        let l = billing.ledger_snapshot();
        let s0 = &l.seconds[&0];
        // 2 + 3 × 2 on P for the put, 2 on G1:GP, then 2 for the failed
        // condition (the 1.5 KiB item there).
        assert_eq!(s0["P"], Units::write(8.0 + 2.0));
        assert_eq!(s0["G1:GP"], Units::write(2.0));
        let s1 = &l.seconds[&1];
        assert_eq!(s1["P"], Units::read(1.0));
        assert_eq!(s1["G1:GP"], Units::read(0.5));
        assert_eq!(s1["SEQ"], Units::write(1.0));
        assert_eq!(l.operations["put"].ops, 1);
        assert_eq!(l.operations["put"].calls, 1);
        assert_eq!(l.operations["(outside any operation)"].calls, 2);
        let p = l.collections["P"];
        assert_eq!(
            p,
            Collection {
                bytes: item.charged_size() as i64,
                items: 1,
                local_entries: 3
            }
        );
        assert_eq!(p.bytes, 1536 + 3 * (1536 + 100));
        billing.delete("P", "s", Cond::Always).await.unwrap();
        let l = billing.ledger_snapshot();
        assert_eq!(l.collections["P"], Collection::default());
        assert_eq!(
            l.seconds[&1]["P"],
            Units {
                read: 1.0,
                write: 8.0
            }
        );
    }
}
