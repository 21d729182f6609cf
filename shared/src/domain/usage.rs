//! Who read a model version: reads of a version, of its artifacts and of
//! their URIs (what a deployment's storage initializer does) are recorded
//! per caller, version and day (`store::layout::usage`), whatever the read
//! rate, with at most one store write per caller, version and day in each
//! process: the first read starts a window (`MR_USAGE_WINDOW_MS`, default
//! 10 s) in which the process counts the caller's reads of the version;
//! then one write adds them (first and last time, count) to the day's
//! record. Later reads that day in the same process are not written: the
//! record's count is a lower bound, its first time exact, its last time
//! that of the last window written. The write never delays the read, and a
//! failed write is logged, not retried (usage is evidence, not state).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::entity::{Entity, Family, fields};
use super::error::Result;
use super::registry::Registry;
use crate::domain::actor;
use crate::domain::now_ms;
use crate::store::layout::usage::UsageItems;
pub use crate::store::layout::usage::UsageRecord;
use crate::store::port::Cursor;

/// Keys (caller, version) one process keeps for the day; beyond this,
/// reads of new keys are written at once, one write each.
const MAX_KEYS: usize = 100_000;
const DAY_MS: u64 = 86_400_000;

struct Tally {
    day: u64,
    first: u64,
    last: u64,
    count: u64,
    /// Its window has started (its write is pending or done).
    scheduled: bool,
}

/// The usage recorder of one process.
pub struct UsageRecorder {
    items: UsageItems,
    window: Duration,
    tallies: Mutex<HashMap<(String, u64), Tally>>,
}

impl UsageRecorder {
    pub fn new(items: UsageItems, window: Duration) -> Arc<UsageRecorder> {
        Arc::new(UsageRecorder {
            items,
            window,
            tallies: Mutex::new(HashMap::new()),
        })
    }

    /// The current actor read `version` now.
    pub fn saw(self: &Arc<Self>, version: u64) {
        let actor = actor::current();
        let now = now_ms();
        let day = now / DAY_MS;
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        if tallies.len() >= MAX_KEYS {
            tallies.retain(|_, t| t.day == day && !t.scheduled);
        }
        let key = (actor, version);
        if tallies.len() >= MAX_KEYS && !tallies.contains_key(&key) {
            drop(tallies);
            let record = UsageRecord {
                version,
                actor: key.0,
                day,
                first_ms: now,
                last_ms: now,
                count: 1,
            };
            let items = self.items.clone();
            tokio::spawn(async move { write(&items, &record).await });
            return;
        }
        let t = tallies.entry(key.clone()).or_insert(Tally {
            day,
            first: now,
            last: now,
            count: 0,
            scheduled: false,
        });
        if t.day != day {
            *t = Tally {
                day,
                first: now,
                last: now,
                count: 0,
                scheduled: false,
            };
        }
        t.count += 1;
        t.last = now;
        if t.scheduled {
            return;
        }
        t.scheduled = true;
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.window).await;
            let record = {
                let tallies = me.tallies.lock().unwrap_or_else(|e| e.into_inner());
                match tallies.get(&key) {
                    Some(t) if t.day == day => UsageRecord {
                        version: key.1,
                        actor: key.0.clone(),
                        day,
                        first_ms: t.first,
                        last_ms: t.last,
                        count: t.count,
                    },
                    _ => return,
                }
            };
            write(&me.items, &record).await;
        });
    }
}

async fn write(items: &UsageItems, record: &UsageRecord) {
    if let Err(e) = items.add(record).await {
        tracing::warn!(version = record.version, actor = %record.actor, error = %e, "usage not recorded");
    }
}

/// A page of usage records, newest day first.
#[derive(Debug, Clone)]
pub struct UsagePage {
    pub items: Vec<UsageRecord>,
    pub next: Option<Cursor>,
}

impl Registry {
    /// The current caller read `e`: a model version, or an artifact of one
    /// (not one of a run).
    pub fn used(&self, e: &Entity) {
        let version = match e.kind.family() {
            Family::ModelVersion => Some(e.id),
            Family::Artifact => {
                let run = e
                    .fields
                    .get(fields::EXPERIMENT_RUN_ID)
                    .and_then(serde_json::Value::as_str)
                    .and_then(|r| r.parse::<u64>().ok());
                e.parent.filter(|p| Some(*p) != run)
            }
            _ => None,
        };
        if let Some(v) = version {
            self.usage.saw(v);
        }
    }

    /// The current caller read version `id`'s artifacts.
    pub fn used_version(&self, id: u64) {
        self.usage.saw(id);
    }

    /// Who read version `version` (consistent), or what `actor` read (from
    /// a global index, which may lag), a page at a time.
    pub async fn usage(
        &self,
        version: Option<u64>,
        actor: Option<&str>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<UsagePage> {
        let (page, exhausted) = self
            .layout()
            .usage()
            .page(version, actor, after, limit)
            .await?;
        let next = if exhausted {
            None
        } else {
            page.last().map(|(_, c)| c.clone())
        };
        Ok(UsagePage {
            items: page
                .into_iter()
                .map(|(r, _)| r)
                .filter(|r| actor.is_none_or(|a| a == r.actor))
                .collect(),
            next,
        })
    }
}
