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

pub mod entities;
pub mod objects;
pub mod uploads;

use std::sync::Arc;

use crate::store::port::Table;

pub use entities::{
    Claim, ClaimKey, Entities, EntityList, EntityPage, HeldClaim, ListOf, MAX_ENTITY_BYTES,
    Prepared, Slot,
};

/// The registry's table, seen through its layout.
#[derive(Clone)]
pub struct Layout {
    table: Arc<dyn Table>,
    ids: Arc<entities::IdBlocks>,
}

impl Layout {
    /// The layout of `table`; this process's blocks of ids are handed out
    /// for at most `id_block_age` each (see [`entities::IdBlocks`]).
    pub fn new(table: Arc<dyn Table>, id_block_age: std::time::Duration) -> Layout {
        Layout {
            table,
            ids: Arc::new(entities::IdBlocks::new(id_block_age)),
        }
    }

    /// Entities, claims, counters and lists.
    pub fn entities(&self) -> Entities {
        Entities::new(self.table.clone(), self.ids.clone())
    }

    /// The object states of one bucket (the storage-event ledger).
    pub fn objects(&self, bucket: &str) -> objects::ObjectItems {
        objects::ObjectItems::new(self.table.clone(), bucket)
    }

    /// Upload sessions and path claims.
    pub fn uploads(&self) -> uploads::UploadItems {
        uploads::UploadItems::new(self.table.clone())
    }
}
