//! The object ledger: one state item per object of a version folder
//! holding what the bucket was last seen to hold there: present with size,
//! ETag and SHA-256, or absent. The items are kept by
//! [`ObjectItems`] (their keys and format); this module holds the rules.
//!
//! The bucket is the truth; an event is a hint. An event only says which
//! object to look at: [`ObjectLedger::record`] reads the item, HEADs the
//! object, and writes the item (a conditional write on the item's version)
//! only when the two disagree, with what the bucket holds, whatever the
//! event claimed. It then looks again, until the item and the bucket agree
//! (bounded rounds), so an observation that went stale before it was
//! written is corrected by its own writer. Nothing from an event body
//! (sequencer, time, size, ETag) is recorded as state: a forged removal of
//! a present object or a forged creation of an absent one changes nothing,
//! and an object that is absent and was never recorded registers nothing.
//! Event positions (the S3 `sequencer`, or the event time) decide nothing:
//! the item keeps the position of the event that recorded it when the
//! bucket bore that event out, as a label; duplicates and stale deliveries
//! find the item already agreeing with the bucket and write nothing.

use std::sync::Arc;

use super::convention::Location;
use super::events::{Change, MAX_SEQUENCER_LEN, StorageEvent};
use super::storage_error;
use crate::domain::error::{Error, Result};
use crate::domain::now_ms;
use crate::store::artifacts::{ArtifactRead, ObjectInfo};
use crate::store::layout::objects::{ObjectItems, ObjectState, Recorded};

/// Rounds of look-at-the-bucket-and-record on one object before giving up
/// (the object or its item keeps changing under this delivery: retry).
const RECORD_ROUNDS: usize = 16;

/// Does `state` describe what the bucket holds (`info`): the same object
/// (size, ETag, SHA-256), or both absent? Positions do not count.
fn describes(state: &ObjectState, info: Option<&ObjectInfo>) -> bool {
    match info {
        None => !state.present,
        Some(i) => {
            state.present
                && state.size == Some(i.size)
                && state.etag == i.etag
                && state.sha256 == i.sha256
        }
    }
}

/// Does what the bucket holds (`info`) bear `event` out: removed and
/// absent, or created and present with the size and ETag the event gives
/// (when it gives them)? An event that is not borne out is stale or forged;
/// either way the bucket's state is what gets recorded.
fn borne_out(event: &StorageEvent, info: Option<&ObjectInfo>) -> bool {
    match (event.change, info) {
        (Change::Removed, None) => true,
        (Change::Created, Some(i)) => {
            event.size.is_none_or(|s| s == i.size)
                && event
                    .etag
                    .as_deref()
                    .is_none_or(|e| i.etag.as_deref() == Some(e))
        }
        _ => false,
    }
}

/// Who asks for an object's state item to be brought to the bucket.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asker<'a> {
    /// A storage event (a hint: which object to look at).
    Event(&'a StorageEvent),
    /// The registry itself (the upload extension), with the object it just
    /// saw in the bucket, or `None` to look.
    Registry(Option<&'a ObjectInfo>),
}

/// What bringing one object's state item to the bucket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ItemChange {
    /// The item now says what the bucket holds, and this delivery wrote it.
    Written,
    /// The item already said what the bucket holds (a duplicate, a stale
    /// or a forged event): nothing written.
    Unchanged,
    /// The object is absent and was never recorded: nothing to register.
    Untracked,
}

/// What identifies a view of a folder: every item and its version.
pub(super) fn fingerprint(view: &[Recorded]) -> Vec<(&str, u64)> {
    view.iter().map(|r| (r.key.as_str(), r.version)).collect()
}

/// Where an event sits in the history of its key: the sequencer when there
/// is one (left-padded hex: AWS compares sequencers of one key that way),
/// otherwise the time in milliseconds. Events without a sequencer (and the
/// registry's own observations) sort before every event that has one. Only
/// a label on the state item now (the bucket decides the state): any input
/// gives a string of fixed width, without arithmetic.
pub(super) fn order_key(sequencer: Option<&str>, time_ms: u64) -> String {
    let sequencer = sequencer
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_SEQUENCER_LEN)
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
    match sequencer {
        Some(s) => format!(
            "{:0>width$}:{:020}",
            s.to_ascii_uppercase(),
            0,
            width = MAX_SEQUENCER_LEN
        ),
        None => format!("{}:{time_ms:020}", "0".repeat(MAX_SEQUENCER_LEN)),
    }
}

/// The state items of one bucket's objects, and the bucket they describe
/// (read only: HEAD, and reading an object without a checksum once, to
/// hash it).
#[derive(Clone)]
pub(super) struct ObjectLedger {
    items: ObjectItems,
    store: Arc<dyn ArtifactRead>,
}

impl ObjectLedger {
    /// The ledger of the bucket `items` and `store` are both of.
    pub(super) fn new(items: ObjectItems, store: Arc<dyn ArtifactRead>) -> Self {
        ObjectLedger { items, store }
    }

    /// Bring the object's state item to what the bucket holds at `key`:
    /// read the item, look at the bucket, write what the bucket holds if the
    /// item says otherwise (a conditional write on the item's version), and
    /// repeat until a look taken after the item was read agrees with it. So
    /// the last writer of an item always saw the bucket agree after its
    /// write: an observation that went stale before it was written (a
    /// concurrent delivery saw a later change and wrote first) is corrected
    /// by the delivery that wrote it. What the asker claims is never
    /// recorded; an event's position is kept as a label when the bucket
    /// bears the event out.
    pub(super) async fn record(
        &self,
        location: &Location,
        key: &str,
        asker: Asker<'_>,
    ) -> Result<ItemChange> {
        let folder = location.folder.as_str();
        // What the registry itself just saw stands for the first look.
        let mut seen_by_caller = match asker {
            Asker::Registry(Some(info)) => Some(Some(info.clone())),
            Asker::Registry(None) | Asker::Event(_) => None,
        };
        let mut wrote = false;
        for round in 0..RECORD_ROUNDS {
            let current = self.items.state(folder, key).await?;
            let recorded = current.as_ref().map(|(state, _)| state);
            let seen = match seen_by_caller.take() {
                Some(info) => info,
                None => self.look(key, recorded).await?,
            };
            let borne_out = match asker {
                Asker::Event(event) => borne_out(event, seen.as_ref()),
                Asker::Registry(_) => true,
            };
            if !borne_out && round == 0 {
                tracing::info!(
                    key,
                    present = seen.is_some(),
                    "storage event not borne out by the bucket (stale or forged): what the bucket holds counts"
                );
            }
            match recorded {
                Some(state) if describes(state, seen.as_ref()) => {
                    return Ok(if wrote {
                        ItemChange::Written
                    } else {
                        ItemChange::Unchanged
                    });
                }
                // Never seen, and not there: a stale or forged event of a
                // key that registers nothing.
                None if seen.is_none() => return Ok(ItemChange::Untracked),
                _ => {}
            }
            let order = match asker {
                Asker::Event(event) if borne_out => {
                    order_key(event.sequencer.as_deref(), event.time_ms.unwrap_or(0))
                }
                Asker::Event(_) | Asker::Registry(_) => order_key(None, now_ms()),
            };
            let state = ObjectState::of(order, seen.as_ref());
            let expected = current.as_ref().map(|(_, version)| *version);
            // Written or not, look again: the bucket may have changed since
            // this look (or another writer got there first).
            wrote |= self.items.write(folder, key, &state, expected).await?;
        }
        Err(Error::unavailable(format!(
            "object {key} keeps changing while it is being recorded, retry"
        )))
    }

    /// What the bucket holds at `key` now, with its SHA-256: from the object
    /// (metadata or checksum), from the item when the bucket still holds the
    /// object it describes (same ETag and size), or else by reading the
    /// object once. `None` when the object is absent.
    async fn look(&self, key: &str, recorded: Option<&ObjectState>) -> Result<Option<ObjectInfo>> {
        let Some(mut info) = self.store.head(key).await.map_err(storage_error)? else {
            return Ok(None);
        };
        if info.sha256.is_none()
            && let Some(r) = recorded
            && r.present
            && info.etag.is_some()
            && r.etag == info.etag
            && r.size == Some(info.size)
        {
            info.sha256.clone_from(&r.sha256);
        }
        if info.sha256.is_some() {
            return Ok(Some(info));
        }
        self.store
            .head_with_sha256(key)
            .await
            .map_err(storage_error)
    }

    /// Every state item of a folder (one consistent Query, paged).
    pub(super) async fn read_folder(&self, location: &Location) -> Result<Vec<Recorded>> {
        self.items.folder(&location.folder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequencers_order_by_padded_hex_and_beat_times() {
        let a = order_key(Some("0055AED6DCD90281E5"), 0);
        let b = order_key(Some("55AED6DCD90281E6"), 0);
        assert!(a < b, "padding makes lengths comparable");
        assert_eq!(
            order_key(Some("ff"), 5),
            order_key(Some("FF"), 9),
            "case and time do not matter"
        );
        let observed = order_key(None, u64::MAX);
        assert!(observed < order_key(Some("1"), 0));
        assert!(order_key(None, 1) < order_key(None, 2));
        assert_eq!(order_key(Some("not hex"), 7), order_key(None, 7));
        let longest = "F".repeat(MAX_SEQUENCER_LEN + 1);
        assert_eq!(order_key(Some(&longest), 7), order_key(None, 7));
        assert_eq!(order_key(None, u64::MAX).len(), order_key(None, 0).len());
    }
}
