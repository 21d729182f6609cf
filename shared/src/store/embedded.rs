//! The embedded backend of the metadata table, on redb: a single file under
//! `MR_DATA_DIR`, no server. Each port call is one redb write transaction
//! committed with `Durability::Immediate` (fsync before the call returns), so
//! every acknowledged write survives `kill -9`. Provisional writes (claims,
//! counters) commit without fsync; the durable entity write that follows them
//! persists them too, so a create costs one fsync instead of three. Secondary indexes are kept in
//! a second redb table inside the same transaction, so here they are always
//! consistent (stricter than DynamoDB, which is allowed).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::port::{
    Cond, GLOBAL_INDEXES, Index, Item, LOCAL_INDEXES, Query, QueryPage, StoreError, Table,
};

/// (pk, sk) → stored record.
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
/// (index partition, index sort key, pk, sk) → nothing.
const INDEX: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("index");
/// Highest char, used as an open upper bound of prefixes.
const TOP: char = char::MAX;

#[derive(Serialize, Deserialize)]
struct Record {
    v: u64,
    b: String,
    l: [Option<String>; LOCAL_INDEXES],
    g: [Option<(String, String)>; GLOBAL_INDEXES],
}

/// The metadata table in one redb file.
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl EmbeddedTable {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let db = Database::create(dir.join("registry.redb"))
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", dir.display())))?;
        let tx = db.begin_write().map_err(internal)?;
        tx.open_table(ITEMS).map_err(internal)?;
        tx.open_table(INDEX).map_err(internal)?;
        tx.commit().map_err(internal)?;
        Ok(EmbeddedTable { db: Arc::new(db) })
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

fn decode(pk: &str, sk: &str, bytes: &[u8]) -> Result<Item, StoreError> {
    let r: Record = serde_json::from_slice(bytes).map_err(internal)?;
    Ok(Item {
        pk: pk.to_string(),
        sk: sk.to_string(),
        version: r.v,
        body: r.b,
        local: r.l,
        global: r.g,
    })
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
            let rec = Record {
                v: item.version,
                b: item.body.clone(),
                l: item.local.clone(),
                g: item.global.clone(),
            };
            let bytes = serde_json::to_vec(&rec).map_err(internal)?;
            items.insert((pk, sk), bytes.as_slice()).map_err(internal)?;
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
                if out.len() == limit {
                    exhausted = false;
                    break;
                }
                let (pk, sk) = k.value();
                out.push(decode(pk, sk, v.value())?);
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
                if out.len() == limit {
                    exhausted = false;
                    break;
                }
                let (_, _, pk, sk) = k.value();
                if let Some(v) = items.get((pk, sk)).map_err(internal)? {
                    out.push(decode(pk, sk, v.value())?);
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
        let (pk, sk) = (pk.to_string(), sk.to_string());
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let items = tx.open_table(ITEMS).map_err(internal)?;
            match items.get((pk.as_str(), sk.as_str())).map_err(internal)? {
                Some(v) => Ok(Some(decode(&pk, &sk, v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(internal)?;
            write(&tx, &item.pk, &item.sk, cond, Some(&item))?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn put_provisional(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let mut tx = db.begin_write().map_err(internal)?;
            tx.set_durability(Durability::None);
            write(&tx, &item.pk, &item.sk, cond, Some(&item))?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        let (pk, sk) = (pk.to_string(), sk.to_string());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(internal)?;
            write(&tx, &pk, &sk, cond, None)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn query(&self, query: &Query) -> Result<QueryPage, StoreError> {
        let q = query.clone();
        self.blocking(move |db| run_query(db, &q)).await
    }

    async fn increment(&self, pk: &str, sk: &str) -> Result<u64, StoreError> {
        let (pk, sk) = (pk.to_string(), sk.to_string());
        self.blocking(move |db| {
            // Provisional (see `Table::increment`): a lost increment means no
            // durable write used the id, so handing it out again is harmless.
            let mut tx = db.begin_write().map_err(internal)?;
            tx.set_durability(Durability::None);
            let next = {
                let items = tx.open_table(ITEMS).map_err(internal)?;
                let current = match items.get((pk.as_str(), sk.as_str())).map_err(internal)? {
                    Some(v) => decode(&pk, &sk, v.value())?
                        .body
                        .parse::<u64>()
                        .map_err(internal)?,
                    None => 0,
                };
                current + 1
            };
            let item = Item::plain(pk.as_str(), sk.as_str(), next, next.to_string());
            write(&tx, &pk, &sk, Cond::Always, Some(&item))?;
            tx.commit().map_err(internal)?;
            Ok(next)
        })
        .await
    }
}
