//! Who read which model version, per day.
//!
//! - record: `pk = U#<version>`, `sk = <day>#<actor>` (the day as days
//!   since the epoch, zero-padded; an actor longer than 200 bytes by its
//!   digest), body `{version, actor, day, firstMs, lastMs, count}`. One
//!   partition per version: its usage, newest day first, is one consistent
//!   Query.
//! - the same record in the global index `G3` under `USE#<actor digest>`,
//!   sorted by `<day>#<version>`: one caller's usage, newest first.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::error::{Error, Result};
use crate::store::port::{Cond, Cursor, Index, Item, Query, StoreError, Table};

/// The index of usage by actor.
const BY_ACTOR: Index = Index::Global(2);
/// Prefix of every usage partition (the only items readers may write).
pub const USAGE_PREFIX: &str = "U#";

/// One caller's reads of one version on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    pub version: u64,
    pub actor: String,
    /// Days since the epoch (UTC).
    pub day: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub count: u64,
}

impl UsageRecord {
    /// This record with `other`'s reads added (same version, actor, day).
    fn merged(&self, other: &UsageRecord) -> UsageRecord {
        UsageRecord {
            first_ms: self.first_ms.min(other.first_ms),
            last_ms: self.last_ms.max(other.last_ms),
            count: self.count.saturating_add(other.count),
            ..self.clone()
        }
    }
}

/// The usage records of the table.
#[derive(Clone)]
pub struct UsageItems {
    table: Arc<dyn Table>,
}

fn digest(actor: &str) -> String {
    hex::encode(&Sha256::digest(actor.as_bytes())[..12])
}

fn partition(version: u64) -> String {
    format!("{USAGE_PREFIX}{version:012}")
}

fn sort_key(day: u64, actor: &str) -> String {
    if actor.len() <= 200 {
        format!("{day:06}#{actor}")
    } else {
        format!("{day:06}#~{}", digest(actor))
    }
}

fn decode(item: &Item) -> Result<UsageRecord> {
    serde_json::from_str(&item.body)
        .map_err(|e| Error::internal(format!("corrupt usage record {}/{}: {e}", item.pk, item.sk)))
}

fn item(r: &UsageRecord, version: u64) -> Result<Item> {
    let body = serde_json::to_string(r).map_err(|e| Error::internal(e.to_string()))?;
    let mut item = Item::plain(
        partition(r.version),
        sort_key(r.day, &r.actor),
        version,
        body,
    );
    item.global[2] = Some((
        format!("USE#{}", digest(&r.actor)),
        format!("{:06}#{:012}", r.day, r.version),
    ));
    Ok(item)
}

impl UsageItems {
    pub(super) fn new(table: Arc<dyn Table>) -> UsageItems {
        UsageItems { table }
    }

    /// Add `r`'s reads to its record (created where there is none).
    pub async fn add(&self, r: &UsageRecord) -> Result<()> {
        let (pk, sk) = (partition(r.version), sort_key(r.day, &r.actor));
        for _ in 0..8 {
            let (next, cond) = match self.table.get(&pk, &sk).await? {
                None => (item(r, 1)?, Cond::Absent),
                Some(there) => (
                    item(&decode(&there)?.merged(r), there.version + 1)?,
                    Cond::Version(there.version),
                ),
            };
            match self.table.put(next, cond).await {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::unavailable(format!(
            "usage of model version {} is being recorded concurrently",
            r.version
        )))
    }

    /// Up to `limit` records of `version` (newest day first), or of
    /// `actor` (with `version` None; from the index, which may lag), after
    /// `after`; and where the next page starts.
    pub async fn page(
        &self,
        version: Option<u64>,
        actor: Option<&str>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<(UsageRecord, Cursor)>, bool)> {
        let (index, partition) = match (version, actor) {
            (Some(v), _) => (Index::Base, partition(v)),
            (None, Some(a)) => (BY_ACTOR, format!("USE#{}", digest(a))),
            (None, None) => return Err(Error::BadRequest("give a version or an actor".into())),
        };
        let page = self
            .table
            .query(&Query {
                index,
                partition,
                prefix: String::new(),
                after,
                descending: true,
                limit: limit.max(1),
            })
            .await?;
        let mut out = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let r = decode(item)?;
            let cursor = Cursor {
                index_key: item.index_sort_key(index).unwrap_or_default().to_string(),
                pk: item.pk.clone(),
                sk: item.sk.clone(),
            };
            out.push((r, cursor));
        }
        let exhausted = page.exhausted || out.is_empty();
        Ok((out, exhausted))
    }
}
