//! Where the delivery of change events stands: `pk = DISPATCH#<name>`,
//! `sk = -`, body [`DispatchState`]: the position in the audit index by
//! time after the last record delivered, and the lease of the dispatcher
//! delivering now (one at a time, so events leave in order).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::error::{Error, Result};
use crate::store::port::{Cond, Cursor, Item, StoreError, Table};

/// The state of one stream of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchState {
    /// After this record (index key, pk, sk): None before the first.
    pub after: Option<(String, String, String)>,
    /// Events delivered so far.
    pub delivered: u64,
    /// The dispatcher holding the lease, and until when (epoch ms).
    pub owner: String,
    pub lease_until_ms: u64,
}

impl DispatchState {
    pub fn cursor(&self) -> Option<Cursor> {
        self.after
            .clone()
            .map(|(index_key, pk, sk)| Cursor { index_key, pk, sk })
    }
    pub fn set_cursor(&mut self, c: &Cursor) {
        self.after = Some((c.index_key.clone(), c.pk.clone(), c.sk.clone()));
    }
}

/// The dispatch state items.
#[derive(Clone)]
pub struct DispatchItems {
    table: Arc<dyn Table>,
    pk: String,
}

impl DispatchItems {
    pub(super) fn new(table: Arc<dyn Table>, name: &str) -> DispatchItems {
        DispatchItems {
            table,
            pk: format!("DISPATCH#{name}"),
        }
    }

    /// The state and its item's version (0: never written).
    pub async fn load(&self) -> Result<(DispatchState, u64)> {
        match self.table.get(&self.pk, "-").await? {
            None => Ok((DispatchState::default(), 0)),
            Some(item) => Ok((
                serde_json::from_str(&item.body).map_err(|e| {
                    Error::internal(format!("corrupt dispatch state {}: {e}", self.pk))
                })?,
                item.version,
            )),
        }
    }

    /// Write `state` over version `version` (0: where nothing is): false
    /// when another dispatcher wrote it meanwhile.
    pub async fn save(&self, state: &DispatchState, version: u64) -> Result<bool> {
        let body = serde_json::to_string(state).map_err(|e| Error::internal(e.to_string()))?;
        let item = Item::plain(self.pk.as_str(), "-", version + 1, body);
        let cond = if version == 0 {
            Cond::Absent
        } else {
            Cond::Version(version)
        };
        match self.table.put(item, cond).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
