//! The storage-event ledger's items: one state item per object of a version
//! folder, `pk = OBJ#<bucket>#<folder>`, `sk = <object key>`, its body the
//! [`ObjectState`] the bucket was last seen to hold at that key, written
//! with optimistic versions. A folder is one partition, so its items are
//! read together with one consistent Query. What a state means, and when one
//! is written, is the ledger's (`crate::registration`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::error::{Error, Result};
use crate::store::artifacts::ObjectInfo;
use crate::store::port::{Cond, Item, StoreError, Table, read_partition};

/// What the bucket was last seen to hold at one key (the state item's body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    /// Who recorded it: the position of the event whose delivery wrote it,
    /// when the bucket bore that event out, else the time of the
    /// observation. A label: it decides nothing.
    pub order: String,
    pub present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl ObjectState {
    /// The state of an object the bucket holds as `info` (`None`: absent),
    /// labelled `order`.
    pub fn of(order: String, info: Option<&ObjectInfo>) -> Self {
        ObjectState {
            order,
            present: info.is_some(),
            size: info.map(|i| i.size),
            etag: info.and_then(|i| i.etag.clone()),
            sha256: info.and_then(|i| i.sha256.clone()),
        }
    }
}

/// One state item of a folder, as read.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The object's key.
    pub key: String,
    /// The version of its item (changes with every write).
    pub version: u64,
    pub state: ObjectState,
}

/// The object states of one bucket: see the module's doc.
#[derive(Clone)]
pub struct ObjectItems {
    table: Arc<dyn Table>,
    bucket: String,
}

impl ObjectItems {
    pub(super) fn new(table: Arc<dyn Table>, bucket: &str) -> Self {
        ObjectItems {
            table,
            bucket: bucket.to_string(),
        }
    }

    /// The partition of the state items of version folder `folder`.
    fn partition(&self, folder: &str) -> String {
        format!("OBJ#{}#{folder}", self.bucket)
    }

    /// The state of object `key` of version folder `folder`, with the
    /// version of its item, if it was ever recorded (one consistent read).
    pub async fn state(&self, folder: &str, key: &str) -> Result<Option<(ObjectState, u64)>> {
        match self.table.get(&self.partition(folder), key).await? {
            Some(item) => Ok(Some((decode_state(&item)?, item.version))),
            None => Ok(None),
        }
    }

    /// Write `state` as the state of object `key` of version folder
    /// `folder`: over its item at version `expected`, or, with `None`,
    /// where there is none. False when that condition failed (another
    /// writer got there first).
    pub async fn write(
        &self,
        folder: &str,
        key: &str,
        state: &ObjectState,
        expected: Option<u64>,
    ) -> Result<bool> {
        let body = serde_json::to_string(state).map_err(|e| Error::internal(e.to_string()))?;
        let (version, cond) = match expected {
            Some(v) => (v.saturating_add(1), Cond::Version(v)),
            None => (1, Cond::Absent),
        };
        let item = Item::plain(self.partition(folder), key, version, body);
        match self.table.put(item, cond).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every state item of version folder `folder`, in key order (one
    /// consistent Query, paged).
    pub async fn folder(&self, folder: &str) -> Result<Vec<Recorded>> {
        read_partition(self.table.as_ref(), &self.partition(folder), folder)
            .await?
            .iter()
            .map(|item| {
                Ok(Recorded {
                    key: item.sk.clone(),
                    version: item.version,
                    state: decode_state(item)?,
                })
            })
            .collect()
    }
}

fn decode_state(item: &Item) -> Result<ObjectState> {
    serde_json::from_str(&item.body)
        .map_err(|e| Error::internal(format!("corrupt object state {}/{}: {e}", item.pk, item.sk)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedTable;

    const FOLDER: &str = "models/m/1/";

    /// Items written before the layout moved here must read the same, and
    /// new ones must be written the same way.
    #[tokio::test]
    async fn state_items_keep_their_keys_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let table: Arc<dyn Table> = Arc::new(EmbeddedTable::open(dir.path()).unwrap());
        let items = ObjectItems::new(table.clone(), "bucket");
        let key = "models/m/1/w.bin";
        let info = ObjectInfo {
            key: key.into(),
            size: 3,
            etag: Some("e".into()),
            sha256: Some("s".into()),
            last_modified_ms: Some(1),
        };
        let present = ObjectState::of("o".into(), Some(&info));
        assert!(items.write(FOLDER, key, &present, None).await.unwrap());
        let raw = table
            .get("OBJ#bucket#models/m/1/", key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(raw.version, 1);
        assert_eq!(
            raw.body,
            r#"{"order":"o","present":true,"size":3,"etag":"e","sha256":"s"}"#
        );

        let old = Item::plain(
            "OBJ#bucket#models/m/1/",
            "models/m/1/a.bin",
            7,
            r#"{"order":"x","present":false}"#.into(),
        );
        table.put(old, Cond::Absent).await.unwrap();
        let absent = ObjectState::of("x".into(), None);
        assert_eq!(
            items.state(FOLDER, "models/m/1/a.bin").await.unwrap(),
            Some((absent.clone(), 7))
        );
        let folder = items.folder(FOLDER).await.unwrap();
        let read: Vec<_> = folder
            .iter()
            .map(|r| (r.key.as_str(), r.version, &r.state))
            .collect();
        assert_eq!(read, [("models/m/1/a.bin", 7, &absent), (key, 1, &present)]);
        assert!(items.folder("models/m/2/").await.unwrap().is_empty());
        assert!(
            ObjectItems::new(table, "other")
                .folder(FOLDER)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_write_holds_only_over_the_version_read() {
        let dir = tempfile::tempdir().unwrap();
        let table: Arc<dyn Table> = Arc::new(EmbeddedTable::open(dir.path()).unwrap());
        let items = ObjectItems::new(table, "bucket");
        let key = "models/m/1/w.bin";
        let state = ObjectState::of("o".into(), None);
        assert!(items.write(FOLDER, key, &state, None).await.unwrap());
        assert!(!items.write(FOLDER, key, &state, None).await.unwrap());
        assert!(!items.write(FOLDER, key, &state, Some(2)).await.unwrap());
        assert!(items.write(FOLDER, key, &state, Some(1)).await.unwrap());
        assert_eq!(items.state(FOLDER, key).await.unwrap(), Some((state, 2)));
    }
}
