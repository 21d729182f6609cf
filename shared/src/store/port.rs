//! The storage port: a DynamoDB-shaped table of items.
//!
//! The port only offers what DynamoDB and ScyllaDB Alternator can do without
//! transactions: read one item by key, write or delete one item under a
//! condition, query one partition in sort order (on the base key or on an
//! index), and bump an atomic counter. Every rule above that (ids, name
//! claims, crash recovery, paging) lives in the domain, so each backend is a
//! thin adapter and behaves the same.

use async_trait::async_trait;

use crate::domain::error::Cause;

/// Number of local secondary indexes (same partition key as the base table).
pub const LOCAL_INDEXES: usize = 3;
/// Number of global secondary indexes (own partition key; may lag on DynamoDB).
pub const GLOBAL_INDEXES: usize = 4;
/// Most keys one [`Table::get_many`] call reads (DynamoDB's BatchGetItem takes 100).
pub const MAX_BATCH_GET: usize = 100;
/// A query page stops once its items' bodies reach this many bytes (the
/// item that crosses it is included), as DynamoDB stops at 1 MB: the memory
/// of one page is bounded whatever its `limit`. (DynamoDB's own pages are
/// kept near this size by the lister, which sets `limit` from the sizes of
/// the items it has seen.)
pub const MAX_PAGE_BYTES: usize = 256 * 1024;

/// One item: its key, an optimistic-concurrency version, an opaque JSON body
/// and the sort keys it has in each index (an index without a key does not
/// contain the item: indexes are sparse).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// Incremented by the writer on every update; conditions compare it.
    pub version: u64,
    pub body: String,
    /// Sort key in each local index `L1..L5`.
    pub local: [Option<String>; LOCAL_INDEXES],
    /// (partition, sort) key in each global index `G1..G2`.
    pub global: [Option<(String, String)>; GLOBAL_INDEXES],
}

impl Item {
    /// An item that is in no secondary index.
    pub fn plain(pk: impl Into<String>, sk: impl Into<String>, version: u64, body: String) -> Self {
        Item {
            pk: pk.into(),
            sk: sk.into(),
            version,
            body,
            local: Default::default(),
            global: Default::default(),
        }
    }

    /// The sort key this item has in `index` (the base sort key for `Index::Base`).
    pub fn index_sort_key(&self, index: Index) -> Option<&str> {
        match index {
            Index::Base => Some(&self.sk),
            Index::Local(i) => self.local.get(i).and_then(|k| k.as_deref()),
            Index::Global(i) => self
                .global
                .get(i)
                .and_then(|k| k.as_ref().map(|(_, s)| s.as_str())),
        }
    }
}

/// Which ordering of a partition a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// The base table: sort key order, strongly consistent.
    Base,
    /// Local secondary index `L{n+1}`: strongly consistent reads.
    Local(usize),
    /// Global secondary index `G{n+1}`: eventually consistent on DynamoDB.
    Global(usize),
}

impl Index {
    /// The index's name in the table definition (`infra/dynamodb/table.json`).
    pub fn name(self) -> String {
        match self {
            Index::Base => "base".to_string(),
            Index::Local(i) => format!("lsi{}", i + 1),
            Index::Global(i) => format!("gsi{}", i + 1),
        }
    }
}

/// Condition of a single-item write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Unconditional.
    Always,
    /// Only when no item has this key.
    Absent,
    /// Only when the stored item has this version.
    Version(u64),
}

/// Where a query resumes: the last item's key in the queried index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub index_key: String,
    pub pk: String,
    pub sk: String,
}

/// One page of one partition, in index order.
#[derive(Debug, Clone)]
pub struct Query {
    pub index: Index,
    /// Partition key (of the base table, or of the global index).
    pub partition: String,
    /// Only index sort keys that start with this.
    pub prefix: String,
    /// Resume strictly after this position.
    pub after: Option<Cursor>,
    pub descending: bool,
    /// At most this many items (at least 1), and at most
    /// [`MAX_PAGE_BYTES`] of bodies (plus one item).
    pub limit: usize,
}

/// What a query returned.
#[derive(Debug, Clone, Default)]
pub struct QueryPage {
    pub items: Vec<Item>,
    /// True when the partition has no more matching items after these.
    pub exhausted: bool,
}

/// Failures of the store, already classified for the caller; the backend's
/// own error (SDK, redb, I/O) is kept as the cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// A write's condition did not hold.
    #[error("condition failed")]
    ConditionFailed,
    /// The store cannot be reached or timed out: retryable.
    #[error("store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The store answered with something we cannot use.
    #[error("store error: {message}")]
    Internal {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The item is larger than DynamoDB takes (see [`Item::check_limits`]);
    /// nothing was written. Every backend refuses the same items.
    #[error("item too large: {0}")]
    TooLarge(String),
    /// A key (of the table or of an index) is longer than DynamoDB takes;
    /// nothing was written or read.
    #[error("key too long: {0}")]
    KeyTooLong(String),
    /// A write through a read-only handle ([`ReadOnly`]): a bug of the
    /// function that tried it, which its IAM policy would refuse anyway.
    #[error("{0} through a read-only handle of the table")]
    ReadOnly(&'static str),
}

impl StoreError {
    /// Retryable, for `message`.
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            message: message.into(),
            cause: None,
        }
    }

    /// Retryable, because of `cause`.
    pub fn unavailable_by(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Unavailable {
            message: message.into(),
            cause: Some(Cause::new(cause)),
        }
    }

    /// Unusable, for `message`.
    pub fn internal(message: impl Into<String>) -> StoreError {
        StoreError::Internal {
            message: message.into(),
            cause: None,
        }
    }

    /// Unusable, because of `cause`.
    pub fn internal_by(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Internal {
            message: message.into(),
            cause: Some(Cause::new(cause)),
        }
    }
}

/// Every item of `partition` whose sort key starts with `prefix`, in sort
/// order, reading page after page (consistent reads of the base table).
/// For small partitions only (a folder's objects, a folder's path claims):
/// the whole answer is held in memory.
pub async fn read_partition(
    table: &dyn Table,
    partition: &str,
    prefix: &str,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page = table
            .query(&Query {
                index: Index::Base,
                partition: partition.to_string(),
                prefix: prefix.to_string(),
                after,
                descending: false,
                limit: 1000,
            })
            .await?;
        after = page.items.last().map(|item| Cursor {
            index_key: item.sk.clone(),
            pk: item.pk.clone(),
            sk: item.sk.clone(),
        });
        let done = page.exhausted || page.items.is_empty();
        items.extend(page.items);
        if done {
            return Ok(items);
        }
    }
}

// ---- DynamoDB's limits, which every backend enforces alike ----
//
// A write DynamoDB would refuse is refused by every adapter, before it is
// sent, with the same error: what fails on one backend fails on the other,
// and never as an unclassified error. The domain checks its own, stricter
// limits first; these are the safety net under them.

/// DynamoDB's item size limit (400 KB; DynamoDB's KB is 1,024 bytes).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Longest partition key (of the table or of a global index), in UTF-8 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// Longest sort key (of the table or of any index), in UTF-8 bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// What one local index entry costs besides the item's attributes (the
/// per-entry overhead DynamoDB documents for local indexes), counted so the
/// limit errs on the safe side.
pub const LOCAL_INDEX_ENTRY_OVERHEAD: usize = 100;

/// Size of a DynamoDB number: one byte per two significant digits, plus one
/// (leading and trailing zeroes do not count).
fn number_size(n: u64) -> usize {
    let digits = n.to_string();
    let significant = digits.trim_end_matches('0').len();
    1 + significant.div_ceil(2)
}

/// Size of a string attribute: its name and its value in UTF-8 bytes.
fn attribute_size(name_len: usize, value: &str) -> usize {
    name_len + value.len()
}

fn too_long(what: &str, key: &str, max: usize) -> Result<(), StoreError> {
    if key.len() > max {
        return Err(StoreError::KeyTooLong(format!(
            "{what} is {} bytes, at most {max}",
            key.len()
        )));
    }
    Ok(())
}

/// Can an item with this key exist? (A longer key cannot be written, so a
/// read of it finds nothing, on every backend.)
pub fn key_fits(pk: &str, sk: &str) -> bool {
    pk.len() <= MAX_PARTITION_KEY_BYTES && sk.len() <= MAX_SORT_KEY_BYTES
}

impl Item {
    /// The item's size as DynamoDB counts it, as the DynamoDB adapter writes
    /// it: every attribute's name plus its value, in UTF-8 bytes (`pk`, `sk`,
    /// `b`, the index keys `l1`..`l3`, `g1p`/`g1s` .. `g4p`/`g4s`) and the
    /// number `v`.
    pub fn stored_size(&self) -> usize {
        let mut size = attribute_size(2, &self.pk)
            + attribute_size(2, &self.sk)
            + 1
            + number_size(self.version)
            + attribute_size(1, &self.body);
        for key in self.local.iter().flatten() {
            size += attribute_size(2, key); // l1 .. l3
        }
        for (p, s) in self.global.iter().flatten() {
            size += attribute_size(3, p) + attribute_size(3, s); // gNp, gNs
        }
        size
    }

    /// What DynamoDB's 400 KB limit applies to: the item plus its entry in
    /// every local index it is in. Local indexes project ALL attributes
    /// (`infra/dynamodb/table.json`), so each entry is a copy of the item.
    pub fn charged_size(&self) -> usize {
        let size = self.stored_size();
        let copies = self.local.iter().flatten().count();
        size + copies * (size + LOCAL_INDEX_ENTRY_OVERHEAD)
    }

    /// The largest [`Item::stored_size`] an item in `local_indexes` local
    /// indexes may have.
    pub const fn max_stored_size(local_indexes: usize) -> usize {
        let overhead = local_indexes.saturating_mul(LOCAL_INDEX_ENTRY_OVERHEAD);
        MAX_ITEM_BYTES.saturating_sub(overhead) / local_indexes.saturating_add(1)
    }

    /// Refuse what DynamoDB would refuse: a key longer than its limit, or an
    /// item over 400 KB with its local index entries.
    pub fn check_limits(&self) -> Result<(), StoreError> {
        too_long("partition key", &self.pk, MAX_PARTITION_KEY_BYTES)?;
        too_long("sort key", &self.sk, MAX_SORT_KEY_BYTES)?;
        for (i, key) in self.local.iter().enumerate() {
            if let Some(k) = key {
                let what = format!("sort key of {}", Index::Local(i).name());
                too_long(&what, k, MAX_SORT_KEY_BYTES)?;
            }
        }
        for (i, key) in self.global.iter().enumerate() {
            if let Some((p, s)) = key {
                let name = Index::Global(i).name();
                too_long(
                    &format!("partition key of {name}"),
                    p,
                    MAX_PARTITION_KEY_BYTES,
                )?;
                too_long(&format!("sort key of {name}"), s, MAX_SORT_KEY_BYTES)?;
            }
        }
        let charged = self.charged_size();
        if charged > MAX_ITEM_BYTES {
            let copies = self.local.iter().flatten().count();
            return Err(StoreError::TooLarge(format!(
                "({}, {}) is {} bytes, {charged} with its {copies} local index entries, at most {MAX_ITEM_BYTES}",
                self.pk,
                self.sk,
                self.stored_size()
            )));
        }
        Ok(())
    }
}

impl Query {
    /// Can anything match? False when the partition or the prefix is longer
    /// than any key can be; an error when the cursor holds a key that
    /// cannot exist (DynamoDB refuses such a start key).
    pub fn check_limits(&self) -> Result<bool, StoreError> {
        if let Some(c) = &self.after {
            too_long("cursor partition key", &c.pk, MAX_PARTITION_KEY_BYTES)?;
            too_long("cursor sort key", &c.sk, MAX_SORT_KEY_BYTES)?;
            too_long("cursor index key", &c.index_key, MAX_SORT_KEY_BYTES)?;
        }
        Ok(self.partition.len() <= MAX_PARTITION_KEY_BYTES
            && self.prefix.len() <= MAX_SORT_KEY_BYTES)
    }
}

/// The metadata table.
#[async_trait]
pub trait Table: Send + Sync + 'static {
    /// Strongly consistent read of one item.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError>;
    /// Strongly consistent reads of up to [`MAX_BATCH_GET`] items, answered
    /// in the order of `keys` (one BatchGetItem on DynamoDB).
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError>;
    /// Write one item if `cond` holds; durable when the call returns.
    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError>;
    /// Write one item that only matters if a later durable `put` of the same
    /// operation succeeds (a name claim before its entity). A backend may
    /// let the later write carry its durability: after a crash it is either
    /// there together with that write, or gone with it. Reads see it at once.
    async fn put_provisional(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.put(item, cond).await
    }
    /// Delete one item if `cond` holds (deleting a missing item with `Always` is fine).
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError>;
    /// Read one page of a partition in index order (consistent for base and local indexes).
    async fn query(&self, query: &Query) -> Result<QueryPage, StoreError>;
    /// Atomically add `by` (at least 1) to the counter item and return the
    /// new value: the caller owns the values `new - by + 1 ..= new` (first
    /// call with 1: 1). Provisional like `put_provisional`: after a crash a
    /// value may be handed out again, but only if no durable write used it.
    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError>;
}

/// The table as the reading functions see it (`MR_SERVE=reads`): gets and
/// queries pass through; every write is refused with
/// [`StoreError::ReadOnly`] before it reaches the store. Their IAM policy
/// grants only `GetItem` and `Query` too, so the read path cannot write
/// even through a bug in this process.
pub struct ReadOnly(pub std::sync::Arc<dyn Table>);

#[async_trait]
impl Table for ReadOnly {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.0.get(pk, sk).await
    }
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        self.0.get_many(keys).await
    }
    async fn put(&self, _: Item, _: Cond) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly("put"))
    }
    async fn delete(&self, _: &str, _: &str, _: Cond) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly("delete"))
    }
    async fn query(&self, query: &Query) -> Result<QueryPage, StoreError> {
        self.0.query(query).await
    }
    async fn increment(&self, _: &str, _: &str, _: u64) -> Result<u64, StoreError> {
        Err(StoreError::ReadOnly("increment"))
    }
}

/// The table for a function that reads everything but may write one kind
/// of item only: those whose partition key starts with `prefix` (a
/// reader's usage records, `U#`; the events function's cursor,
/// `DISPATCH#`). Its IAM policy allows no other write either
/// (`dynamodb:LeadingKeys`).
pub struct WritesUnder(pub std::sync::Arc<dyn Table>, pub &'static str);

#[async_trait]
impl Table for WritesUnder {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.0.get(pk, sk).await
    }
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        self.0.get_many(keys).await
    }
    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        if item.pk.starts_with(self.1) {
            self.0.put(item, cond).await
        } else {
            Err(StoreError::ReadOnly("a write outside its own items"))
        }
    }
    async fn delete(&self, _: &str, _: &str, _: Cond) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly("a delete"))
    }
    async fn query(&self, q: &Query) -> Result<QueryPage, StoreError> {
        self.0.query(q).await
    }
    async fn increment(&self, _: &str, _: &str, _: u64) -> Result<u64, StoreError> {
        Err(StoreError::ReadOnly("a counter"))
    }
}
