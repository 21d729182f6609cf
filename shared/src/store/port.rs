//! The storage port: a DynamoDB-shaped table of items.
//!
//! The port only offers what DynamoDB and ScyllaDB Alternator can do without
//! transactions: read one item by key, write or delete one item under a
//! condition, query one partition in sort order (on the base key or on an
//! index), and bump an atomic counter. Every rule above that (ids, name
//! claims, crash recovery, paging) lives in the domain, so each backend is a
//! thin adapter and behaves the same.

use async_trait::async_trait;

/// Number of local secondary indexes (same partition key as the base table).
pub const LOCAL_INDEXES: usize = 5;
/// Number of global secondary indexes (own partition key; may lag on DynamoDB).
pub const GLOBAL_INDEXES: usize = 2;

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
    /// At most this many items (at least 1).
    pub limit: usize,
}

/// What a query returned.
#[derive(Debug, Clone, Default)]
pub struct QueryPage {
    pub items: Vec<Item>,
    /// True when the partition has no more matching items after these.
    pub exhausted: bool,
}

/// Failures of the store, already classified for the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// A write's condition did not hold.
    #[error("condition failed")]
    ConditionFailed,
    /// The store cannot be reached or timed out: retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something we cannot use.
    #[error("store error: {0}")]
    Internal(String),
}

/// The metadata table.
#[async_trait]
pub trait Table: Send + Sync + 'static {
    /// Strongly consistent read of one item.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError>;
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
    /// Atomically add one to the counter item and return the new value (first
    /// call: 1). Provisional like `put_provisional`: after a crash a value may
    /// be handed out again, but only if no durable write used it.
    async fn increment(&self, pk: &str, sk: &str) -> Result<u64, StoreError>;
}
