//! The layout of the registry in its one table: every key, index and item
//! shape, behind typed repositories. The domain asks for entities, claims,
//! lists, object states and upload sessions; it never builds a key, so the
//! layout can change here without touching a rule.
//!
//! | module | items |
//! |---|---|
//! | [`entities`] | entities, their name and externalId claims, id counters, link items, list and find queries |
//! | [`objects`] | the storage-event ledger: the last known state of each object of a version folder |
//! | [`uploads`] | upload sessions and the path claims of their version folders |
//! | [`ledger`] | every revision of every entity, who made it, hash-chained |
//! | [`usage`] | who read which model version, per day |
//! | [`dispatch`] | where the delivery of change events stands |
//! | [`migrate`] | the layout's version in the table; the copy from the first layout |

pub mod dispatch;
pub mod entities;
pub mod ledger;
pub mod migrate;
pub mod objects;
pub mod uploads;
pub mod usage;

use std::sync::Arc;

use crate::store::port::Table;

pub use entities::FAMILIES as FAMILY_ORDER;
pub use entities::{
    Claim, ClaimKey, Entities, EntityList, EntityPage, HeldClaim, ListOf, MAX_ENTITY_BYTES,
    Prepared, Slot,
};

/// The registry's table, seen through its layout.
#[derive(Clone)]
pub struct Layout {
    table: Arc<dyn Table>,
    /// Where usage records are written (the table; on a reading function,
    /// the table that admits only them).
    usage_table: Arc<dyn Table>,
    ids: Arc<entities::IdBlocks>,
    pages: Arc<entities::PageCache>,
    sizes: Arc<entities::Sizes>,
    orphan_age: std::time::Duration,
}

impl Layout {
    /// The layout of `table`; this process's blocks of ids are handed out
    /// for at most `id_block_age` each (see [`entities::IdBlocks`]).
    pub fn new(table: Arc<dyn Table>, id_block_age: std::time::Duration) -> Layout {
        Layout {
            usage_table: table.clone(),
            table,
            ids: Arc::new(entities::IdBlocks::new(id_block_age)),
            pages: Arc::new(entities::PageCache::new(std::time::Duration::ZERO)),
            sizes: Arc::default(),
            orphan_age: std::time::Duration::from_secs(10),
        }
    }

    /// Write usage records through `table` (see `store::port::WritesUnder`).
    pub fn with_usage_table(mut self, table: Arc<dyn Table>) -> Layout {
        self.usage_table = table;
        self
    }

    /// Ledger records of changes that never happened may be replaced once
    /// they are `age` old (the claim lease).
    pub fn with_orphan_age(mut self, age: std::time::Duration) -> Layout {
        self.orphan_age = age;
        self
    }

    /// Keep pages of global lists for `ttl` (see [`entities::PageCache`]).
    pub fn with_list_cache(mut self, ttl: std::time::Duration) -> Layout {
        self.pages = Arc::new(entities::PageCache::new(ttl));
        self
    }

    /// The table under the layout (for the migration's verbatim copies).
    pub(crate) fn table(&self) -> &Arc<dyn Table> {
        &self.table
    }

    /// Entities, claims, counters and lists.
    pub fn entities(&self) -> Entities {
        Entities::new(
            self.table.clone(),
            self.ids.clone(),
            self.pages.clone(),
            self.sizes.clone(),
            u64::try_from(self.orphan_age.as_millis()).unwrap_or(u64::MAX),
        )
    }

    /// The object states of one bucket (the storage-event ledger).
    pub fn objects(&self, bucket: &str) -> objects::ObjectItems {
        objects::ObjectItems::new(self.table.clone(), bucket)
    }

    /// Where the delivery of the change events named `name` stands.
    pub fn dispatch(&self, name: &str) -> dispatch::DispatchItems {
        dispatch::DispatchItems::new(self.table.clone(), name)
    }

    /// Who read which version, per day.
    pub fn usage(&self) -> usage::UsageItems {
        usage::UsageItems::new(self.usage_table.clone())
    }

    /// Upload sessions and path claims.
    pub fn uploads(&self) -> uploads::UploadItems {
        uploads::UploadItems::new(self.table.clone())
    }
}

/// Pages of several partitions of one index (the shards of a global
/// list), merged in index order up to the first position a partition with
/// more items did not reach (nothing past it is certain yet); and whether
/// every partition is exhausted.
pub(super) fn merge_pages(
    pages: Vec<crate::store::port::QueryPage>,
    index: crate::store::port::Index,
    descending: bool,
) -> (Vec<crate::store::port::Item>, bool) {
    use crate::store::port::Item;
    let key = |item: &Item| item.index_sort_key(index).unwrap_or_default().to_string();
    let bound = pages
        .iter()
        .filter(|p| !p.exhausted && !p.items.is_empty())
        .filter_map(|p| p.items.last().map(key))
        .reduce(|a, b| if descending { a.max(b) } else { a.min(b) });
    let mut items: Vec<Item> = pages
        .into_iter()
        .flat_map(|p| p.items)
        .filter(|item| {
            bound.as_ref().is_none_or(|b| {
                let k = key(item);
                if descending { k >= *b } else { k <= *b }
            })
        })
        .collect();
    items.sort_by_key(key);
    if descending {
        items.reverse();
    }
    (items, bound.is_none())
}
