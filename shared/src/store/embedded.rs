//! The embedded backend of the metadata table, on redb: a single file under
//! `MR_DATA_DIR`, no server.
//!
//! Writes use group commit. redb has one writer at a time, so instead of one
//! write transaction per port call, concurrent writes queue up and whoever
//! finds no commit running becomes the leader: it applies every queued write
//! in arrival order inside one redb transaction, commits it once, and then
//! answers each caller with its own result (a failed condition fails only
//! that write: conditions are checked before anything is changed). While a
//! batch commits, the next one gathers. The commit is `Durability::Immediate`
//! (fsync before anyone is answered) when any write in the batch is durable,
//! so every acknowledged write survives `kill -9`; a batch of provisional
//! writes alone (claims, counters) commits without fsync, and the durable
//! entity write that follows them persists them too. (Committing a batch's
//! provisional writes apart, ahead of its fsync, measured no faster.) One
//! client alone still gets one transaction per write; 32 clients share one
//! fsync among up to 32 writes.
//!
//! Secondary indexes are kept in a second redb table inside the same
//! transaction, so here they are always consistent (stricter than DynamoDB,
//! which is allowed). Point reads and short queries run inline on the async
//! worker (a redb read takes microseconds); long queries go to the blocking pool.

use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::port::{
    Cond, GLOBAL_INDEXES, Index, Item, LOCAL_INDEXES, MAX_PAGE_BYTES, Query, QueryPage, StoreError,
    Table, key_fits,
};

/// (pk, sk) → stored record.
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
/// (index partition, index sort key, pk, sk) → nothing.
const INDEX: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("index");
/// Highest char, used as an open upper bound of prefixes.
const TOP: char = char::MAX;

/// How items were stored before the binary record (still read, never
/// written). Its index keys belong to the first layout (five local, two
/// global indexes): they are read and dropped, as the migration rebuilds
/// every index key from the bodies.
#[derive(Serialize, Deserialize)]
struct JsonRecord {
    v: u64,
    b: String,
}

/// Queries up to this many items run inline on the async worker.
const INLINE_QUERY_LIMIT: usize = 64;
/// At most this many writes share one transaction.
const MAX_BATCH: usize = 256;

/// The metadata table in one redb file.
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
    writes: Arc<Mutex<Queue>>,
}

/// Writes waiting for the next group commit.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A leader is applying batches; it will take newly queued jobs too.
    leading: bool,
}

/// One write port call.
enum Op {
    Put {
        item: Box<Item>,
        cond: Cond,
        durable: bool,
    },
    Delete {
        pk: String,
        sk: String,
        cond: Cond,
    },
    Increment {
        by: u64,
        pk: String,
        sk: String,
    },
}

impl Op {
    fn durable(&self) -> bool {
        match self {
            Op::Put { durable, .. } => *durable,
            Op::Delete { .. } => true,
            // Provisional (see `Table::increment`): a lost increment means no
            // durable write used the id, so handing it out again is harmless.
            Op::Increment { .. } => false,
        }
    }

    /// Apply inside `tx`. Returns the counter's new value for increments.
    /// A failed condition changes nothing.
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
        match self {
            Op::Put { item, cond, .. } => {
                write(tx, &item.pk, &item.sk, *cond, Some(item)).map(|()| 0)
            }
            Op::Delete { pk, sk, cond } => write(tx, pk, sk, *cond, None).map(|()| 0),
            Op::Increment { pk, sk, by } => {
                let next = {
                    let items = tx.open_table(ITEMS).map_err(internal)?;
                    let current = match items.get((pk.as_str(), sk.as_str())).map_err(internal)? {
                        Some(v) => decode(pk, sk, v.value())?
                            .body
                            .parse::<u64>()
                            .map_err(internal)?,
                        None => 0,
                    };
                    current.checked_add((*by).max(1)).ok_or_else(|| {
                        StoreError::internal(format!("counter ({pk}, {sk}) is exhausted"))
                    })?
                };
                let item = Item::plain(pk.as_str(), sk.as_str(), next, next.to_string());
                write(tx, pk, sk, Cond::Always, Some(&item))?;
                Ok(next)
            }
        }
    }
}

struct Job {
    op: Op,
    reply: tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
}

/// Apply `jobs` in one transaction and answer each after the commit. If a
/// write fails for any reason other than its condition (it may have changed
/// part of the transaction), the batch is dropped and each job runs alone.
fn commit_batch(db: &Database, jobs: Vec<Job>) {
    let together = (|| {
        let mut tx = db.begin_write().map_err(internal)?;
        if !jobs.iter().any(|j| j.op.durable()) {
            tx.set_durability(Durability::None);
        }
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            match job.op.apply(&tx) {
                Err(StoreError::ConditionFailed) => results.push(Err(StoreError::ConditionFailed)),
                Err(e) => return Err(e),
                Ok(v) => results.push(Ok(v)),
            }
        }
        tx.commit().map_err(internal)?;
        Ok(results)
    })();
    match together {
        Ok(results) => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(_) if jobs.len() > 1 => {
            for job in jobs {
                commit_batch(db, vec![job]);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// A redb or I/O failure, kept as the cause.
fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::internal_by("the embedded store failed", e)
}

impl EmbeddedTable {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::unavailable_by(format!("cannot create data dir {}", dir.display()), e)
        })?;
        Self::open_file(&dir.join(Self::FILE))
    }

    /// The file of the store in its data directory.
    pub const FILE: &str = "registry.redb";

    /// The store in the redb file `file` (created if missing).
    pub fn open_file(file: &Path) -> Result<Self, StoreError> {
        let db = Database::create(file).map_err(|e| {
            StoreError::unavailable_by(format!("cannot open {}", file.display()), e)
        })?;
        let tx = db.begin_write().map_err(internal)?;
        tx.open_table(ITEMS).map_err(internal)?;
        tx.open_table(INDEX).map_err(internal)?;
        tx.commit().map_err(internal)?;
        Ok(EmbeddedTable {
            db: Arc::new(db),
            writes: Arc::default(),
        })
    }

    /// Up to `limit` items in key order after `after` (every partition):
    /// what the migration reads; never on a request path.
    pub fn dump(&self, after: Option<(&str, &str)>, limit: usize) -> Result<Vec<Item>, StoreError> {
        let tx = self.db.begin_read().map_err(internal)?;
        let items = tx.open_table(ITEMS).map_err(internal)?;
        let lo = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in items
            .range::<(&str, &str)>((lo, Bound::Unbounded))
            .map_err(internal)?
            .take(limit)
        {
            let (k, v) = entry.map_err(internal)?;
            let (pk, sk) = k.value();
            out.push(decode(pk, sk, v.value())?);
        }
        Ok(out)
    }

    /// Queue one write for the next group commit and wait for its result.
    async fn submit(&self, op: Op) -> Result<u64, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut q = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            q.jobs.push(Job { op, reply });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            let (db, writes) = (self.db.clone(), self.writes.clone());
            tokio::task::spawn_blocking(move || lead_batches(&db, &writes));
        }
        answer
            .await
            .map_err(|_| StoreError::internal("the write was not applied (writer panicked)"))?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(internal)?
    }
}

/// Commit queued batches until the queue is empty, then step down.
fn lead_batches(db: &Database, writes: &Mutex<Queue>) {
    loop {
        let batch = {
            let mut q = writes.lock().unwrap_or_else(|p| p.into_inner());
            if q.jobs.is_empty() {
                q.leading = false;
                return;
            }
            let n = q.jobs.len().min(MAX_BATCH);
            q.jobs.drain(..n).collect::<Vec<_>>()
        };
        // A panic drops the batch's reply senders (its callers get an
        // error); the leader goes on with the next batch.
        let _ = catch_unwind(AssertUnwindSafe(|| commit_batch(db, batch)));
    }
}

/// First byte of a stored record of the first layout (five local and two
/// global index keys); read by the migration, never written.
const BINARY_RECORD_V1: u8 = 1;
/// First byte of a stored record in the binary format (a JSON record starts with `{`).
const BINARY_RECORD: u8 = 2;

/// The stored record of an item: `BINARY_RECORD`, the version (u64 LE), the
/// body, the number of local index keys (u8) and each of them, the number
/// of global index keys (u8) and each pair, every string as u32 LE length +
/// UTF-8 and every optional key behind a 0/1 byte.
/// Unlike JSON, the body (itself JSON) is copied as is: no escaping on write,
/// no unescaping on read, which is most of what a list page costs.
fn encode(item: &Item) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, s: &str) {
        // Fits: every string of a written item is at most `MAX_ITEM_BYTES`
        // (`Item::check_limits` runs before a write is queued).
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::with_capacity(item.body.len() + 64);
    out.push(BINARY_RECORD);
    out.extend_from_slice(&item.version.to_le_bytes());
    put(&mut out, &item.body);
    out.push(LOCAL_INDEXES as u8);
    for key in &item.local {
        out.push(key.is_some() as u8);
        if let Some(k) = key {
            put(&mut out, k);
        }
    }
    out.push(GLOBAL_INDEXES as u8);
    for key in &item.global {
        out.push(key.is_some() as u8);
        if let Some((p, s)) = key {
            put(&mut out, p);
            put(&mut out, s);
        }
    }
    out
}

/// Reads a binary record; `None` when it is cut short or not UTF-8.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = u32::from_le_bytes(self.bytes(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
    fn flag(&mut self) -> Option<bool> {
        Some(self.bytes(1)?[0] == 1)
    }
    fn count(&mut self) -> Option<usize> {
        Some(self.bytes(1)?[0] as usize)
    }
    /// A record; `v1`: of the first layout, whose index keys are dropped.
    fn item(&mut self, pk: &str, sk: &str, v1: bool) -> Option<Item> {
        let mut item = Item::plain(pk, sk, self.u64()?, self.string()?);
        let locals = if v1 { 5 } else { self.count()? };
        for i in 0..locals {
            if self.flag()? {
                let key = self.string()?;
                if !v1 && let Some(slot) = item.local.get_mut(i) {
                    *slot = Some(key);
                }
            }
        }
        let globals = if v1 { 2 } else { self.count()? };
        for i in 0..globals {
            if self.flag()? {
                let key = (self.string()?, self.string()?);
                if !v1 && let Some(slot) = item.global.get_mut(i) {
                    *slot = Some(key);
                }
            }
        }
        Some(item)
    }
}

fn decode(pk: &str, sk: &str, bytes: &[u8]) -> Result<Item, StoreError> {
    if let Some((&tag @ (BINARY_RECORD | BINARY_RECORD_V1), rest)) = bytes.split_first() {
        return Reader(rest)
            .item(pk, sk, tag == BINARY_RECORD_V1)
            .ok_or_else(|| StoreError::internal(format!("corrupt record at ({pk}, {sk})")));
    }
    let r: JsonRecord = serde_json::from_slice(bytes).map_err(internal)?;
    Ok(Item::plain(pk, sk, r.v, r.b))
}

fn index_entries(item: &Item) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, key) in item.local.iter().enumerate() {
        if let Some(k) = key {
            out.push((index_partition(Index::Local(i), &item.pk), k.clone()));
        }
    }
    for (i, key) in item.global.iter().enumerate() {
        if let Some((p, s)) = key {
            out.push((index_partition(Index::Global(i), p), s.clone()));
        }
    }
    out
}

fn index_partition(index: Index, partition: &str) -> String {
    format!("{}\u{0}{}", index.name(), partition)
}

fn check(current: Option<u64>, cond: Cond) -> Result<(), StoreError> {
    match (cond, current) {
        (Cond::Always, _) => Ok(()),
        (Cond::Absent, None) => Ok(()),
        (Cond::Version(v), Some(c)) if v == c => Ok(()),
        _ => Err(StoreError::ConditionFailed),
    }
}

/// Replace (or remove, when `new` is None) the item at (pk, sk) with its index entries.
fn write(
    tx: &redb::WriteTransaction,
    pk: &str,
    sk: &str,
    cond: Cond,
    new: Option<&Item>,
) -> Result<(), StoreError> {
    let mut items = tx.open_table(ITEMS).map_err(internal)?;
    let mut index = tx.open_table(INDEX).map_err(internal)?;
    let old = match items.get((pk, sk)).map_err(internal)? {
        Some(v) => Some(decode(pk, sk, v.value())?),
        None => None,
    };
    check(old.as_ref().map(|o| o.version), cond)?;
    if let Some(old) = &old {
        for (p, s) in index_entries(old) {
            index
                .remove((p.as_str(), s.as_str(), pk, sk))
                .map_err(internal)?;
        }
    }
    match new {
        Some(item) => {
            items
                .insert((pk, sk), encode(item).as_slice())
                .map_err(internal)?;
            for (p, s) in index_entries(item) {
                index
                    .insert((p.as_str(), s.as_str(), pk, sk), ())
                    .map_err(internal)?;
            }
        }
        None => {
            items.remove((pk, sk)).map_err(internal)?;
        }
    }
    Ok(())
}

fn upper(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.push(TOP);
    s
}

fn run_query(db: &Database, q: &Query) -> Result<QueryPage, StoreError> {
    let tx = db.begin_read().map_err(internal)?;
    let items = tx.open_table(ITEMS).map_err(internal)?;
    let limit = q.limit.max(1);
    let hi = upper(&q.prefix);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut exhausted = true;
    match q.index {
        Index::Base => {
            let p = q.partition.as_str();
            let (mut lo, mut up) = (
                Bound::Included((p, q.prefix.as_str())),
                Bound::Excluded((p, hi.as_str())),
            );
            if let Some(c) = &q.after {
                if q.descending {
                    up = Bound::Excluded((p, c.sk.as_str()));
                } else {
                    lo = Bound::Excluded((p, c.sk.as_str()));
                }
            }
            let range = items.range::<(&str, &str)>((lo, up)).map_err(internal)?;
            let iter: Box<dyn Iterator<Item = _>> = if q.descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for entry in iter {
                let (k, v) = entry.map_err(internal)?;
                if out.len() == limit || bytes >= MAX_PAGE_BYTES {
                    exhausted = false;
                    break;
                }
                let (pk, sk) = k.value();
                let item = decode(pk, sk, v.value())?;
                bytes += item.body.len();
                out.push(item);
            }
        }
        index => {
            let index_table = tx.open_table(INDEX).map_err(internal)?;
            let part = index_partition(index, &q.partition);
            let p = part.as_str();
            let (mut lo, mut up) = (
                Bound::Included((p, q.prefix.as_str(), "", "")),
                Bound::Excluded((p, hi.as_str(), "", "")),
            );
            if let Some(c) = &q.after {
                let at = (p, c.index_key.as_str(), c.pk.as_str(), c.sk.as_str());
                if q.descending {
                    up = Bound::Excluded(at);
                } else {
                    lo = Bound::Excluded(at);
                }
            }
            let range = index_table
                .range::<(&str, &str, &str, &str)>((lo, up))
                .map_err(internal)?;
            let iter: Box<dyn Iterator<Item = _>> = if q.descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for entry in iter {
                let (k, _) = entry.map_err(internal)?;
                if out.len() == limit || bytes >= MAX_PAGE_BYTES {
                    exhausted = false;
                    break;
                }
                let (_, _, pk, sk) = k.value();
                if let Some(v) = items.get((pk, sk)).map_err(internal)? {
                    let item = decode(pk, sk, v.value())?;
                    bytes += item.body.len();
                    out.push(item);
                }
            }
        }
    }
    Ok(QueryPage {
        items: out,
        exhausted,
    })
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        if !key_fits(pk, sk) {
            return Ok(None); // as on DynamoDB: such an item cannot exist
        }
        let tx = self.db.begin_read().map_err(internal)?;
        let items = tx.open_table(ITEMS).map_err(internal)?;
        match items.get((pk, sk)).map_err(internal)? {
            Some(v) => Ok(Some(decode(pk, sk, v.value())?)),
            None => Ok(None),
        }
    }

    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        let tx = self.db.begin_read().map_err(internal)?;
        let items = tx.open_table(ITEMS).map_err(internal)?;
        keys.iter()
            .map(|(pk, sk)| {
                if !key_fits(pk, sk) {
                    return Ok(None);
                }
                match items.get((pk.as_str(), sk.as_str())).map_err(internal)? {
                    Some(v) => Ok(Some(decode(pk, sk, v.value())?)),
                    None => Ok(None),
                }
            })
            .collect()
    }

    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        // Refuse exactly what DynamoDB refuses, so both backends agree.
        item.check_limits()?;
        self.submit(Op::Put {
            item: Box::new(item),
            cond,
            durable: true,
        })
        .await
        .map(drop)
    }

    async fn put_provisional(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        item.check_limits()?;
        self.submit(Op::Put {
            item: Box::new(item),
            cond,
            durable: false,
        })
        .await
        .map(drop)
    }

    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        if !key_fits(pk, sk) {
            // No such item: what DynamoDB answers for a missing one.
            return match cond {
                Cond::Version(_) => Err(StoreError::ConditionFailed),
                Cond::Always | Cond::Absent => Ok(()),
            };
        }
        self.submit(Op::Delete {
            pk: pk.to_string(),
            sk: sk.to_string(),
            cond,
        })
        .await
        .map(drop)
    }

    async fn query(&self, query: &Query) -> Result<QueryPage, StoreError> {
        if !query.check_limits()? {
            return Ok(QueryPage {
                items: Vec::new(),
                exhausted: true,
            });
        }
        if query.limit <= INLINE_QUERY_LIMIT {
            return run_query(&self.db, query);
        }
        let q = query.clone();
        self.blocking(move |db| run_query(db, &q)).await
    }

    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError> {
        self.submit(Op::Increment {
            by,
            pk: pk.to_string(),
            sk: sk.to_string(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Item {
        let mut item = Item::plain("P", "s", 7, r#"{"name":"m \"q\" é"}"#.to_string());
        item.local[1] = Some("L2".to_string());
        item.local[2] = Some(String::new());
        item.global[0] = Some(("G".to_string(), "gs".to_string()));
        item.global[3] = Some(("G4".to_string(), String::new()));
        item
    }

    #[test]
    fn records_round_trip() {
        let item = sample();
        assert_eq!(decode("P", "s", &encode(&item)).unwrap(), item);
    }

    #[test]
    fn records_of_the_first_layout_read_without_their_index_keys() {
        let item = sample();
        let plain = Item::plain("P", "s", item.version, item.body.clone());
        let json = serde_json::json!({
            "v": item.version,
            "b": item.body,
            "l": [null, "L2", null, null, ""],
            "g": [["G", "gs"], null],
        });
        let old = serde_json::to_vec(&json).unwrap();
        assert_eq!(decode("P", "s", &old).unwrap(), plain);
        // The first binary record: five local keys, two global pairs.
        let mut v1 = vec![BINARY_RECORD_V1];
        v1.extend_from_slice(&item.version.to_le_bytes());
        let put = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        put(&mut v1, &item.body);
        for key in [None, Some("L2"), None, None, Some("")] {
            v1.push(key.is_some() as u8);
            if let Some(k) = key {
                put(&mut v1, k);
            }
        }
        v1.push(1);
        put(&mut v1, "G");
        put(&mut v1, "gs");
        v1.push(0);
        assert_eq!(decode("P", "s", &v1).unwrap(), plain);
    }

    #[test]
    fn cut_records_are_errors_not_panics() {
        let bytes = encode(&sample());
        for n in 1..bytes.len() {
            assert!(decode("P", "s", &bytes[..n]).is_err(), "cut at {n}");
        }
    }
}

#[cfg(test)]
mod read_only_tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::port::{Cond, Index, Query, ReadOnly, StoreError, Table};

    #[tokio::test]
    async fn a_read_only_handle_reads_and_refuses_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let table: Arc<dyn Table> = Arc::new(EmbeddedTable::open(dir.path()).unwrap());
        table
            .put(Item::plain("P", "a", 1, "{}".into()), Cond::Absent)
            .await
            .unwrap();
        let reader = ReadOnly(table.clone());
        assert!(reader.get("P", "a").await.unwrap().is_some());
        let page = reader
            .query(&Query {
                index: Index::Base,
                partition: "P".into(),
                prefix: String::new(),
                after: None,
                descending: false,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let refused = |r: Result<(), StoreError>| matches!(r, Err(StoreError::ReadOnly(_)));
        assert!(refused(
            reader
                .put(Item::plain("P", "b", 1, "{}".into()), Cond::Always)
                .await
        ));
        assert!(refused(
            reader
                .put_provisional(Item::plain("P", "b", 1, "{}".into()), Cond::Always)
                .await
        ));
        assert!(refused(reader.delete("P", "a", Cond::Always).await));
        assert!(matches!(
            reader.increment("SEQ", "c", 1).await,
            Err(StoreError::ReadOnly(_))
        ));
        // Nothing reached the table.
        assert!(table.get("P", "b").await.unwrap().is_none());
        assert!(table.get("P", "a").await.unwrap().is_some());
    }
}
