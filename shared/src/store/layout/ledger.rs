//! The ledger of changes: every revision of every entity, who made it and
//! when, hash-chained per entity.
//!
//! - record: `pk = L#<code>#<id>`, `sk = <revision>` (zero-padded), the
//!   [`Record`] as JSON: the entity as the revision made it, the actor, the
//!   time, the action, and the hash of the entity's previous record. One
//!   partition per entity: its history is one consistent Query.
//!
//! A record is written (conditionally, where nothing is) before the home
//! write that makes its revision visible, whose item version is the
//! record's revision: no change is visible without its record. A record
//! whose revision is above the home's version is a change that did not
//! happen (its writer lost a race or died): readers mark it, and a writer
//! may take its place once it is older than the claim lease. The hash of a
//! record is SHA-256 over its canonical form (the record's JSON without
//! `hash`, fields in a fixed order); each record carries the previous
//! record's hash, so an edited or removed record breaks the chain.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::entity::{Entity, Family};
use crate::domain::error::{Error, Result};
use crate::store::port::{Cond, Cursor, Index, Item, Query, StoreError, Table};

/// What a revision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
}

/// One revision of an entity, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub revision: u64,
    pub at_ms: u64,
    pub actor: String,
    pub action: Action,
    /// The entity as this revision made it.
    pub entity: Entity,
    /// The hash of the entity's previous record (empty for its first one,
    /// or the first one after data older than the ledger).
    pub prev_hash: String,
    pub hash: String,
}

/// The record's fields that its hash covers, in their fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    revision: u64,
    at_ms: u64,
    actor: &'a str,
    action: Action,
    entity: &'a Entity,
    prev_hash: &'a str,
}

impl Record {
    /// A record of `entity` at `revision`, chained to `prev_hash`, hashed.
    pub fn new(
        revision: u64,
        at_ms: u64,
        actor: String,
        action: Action,
        entity: Entity,
        prev_hash: String,
    ) -> Result<Record> {
        let mut r = Record {
            revision,
            at_ms,
            actor,
            action,
            entity,
            prev_hash,
            hash: String::new(),
        };
        r.hash = r.digest()?;
        Ok(r)
    }

    /// SHA-256 of the canonical form, hex.
    pub fn digest(&self) -> Result<String> {
        let canonical = serde_json::to_string(&Canonical {
            revision: self.revision,
            at_ms: self.at_ms,
            actor: &self.actor,
            action: self.action,
            entity: &self.entity,
            prev_hash: &self.prev_hash,
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// What checking one entity's chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Records checked.
    pub records: usize,
    /// The first revision whose record does not hold (its hash is not its
    /// content's, or it does not carry the previous record's hash), if any.
    pub broken_at: Option<u64>,
    pub reason: Option<String>,
}

/// At most this many records of one entity are read at once.
const MAX_RECORDS: usize = 1000;

/// The ledger's records.
#[derive(Clone)]
pub struct LedgerItems {
    table: Arc<dyn Table>,
    code: fn(Family) -> &'static str,
}

fn pad(n: u64) -> String {
    format!("{n:012}")
}

fn decode(item: &Item) -> Result<Record> {
    serde_json::from_str(&item.body).map_err(|e| {
        Error::internal(format!(
            "corrupt ledger record {}/{}: {e}",
            item.pk, item.sk
        ))
    })
}

impl LedgerItems {
    pub(super) fn new(table: Arc<dyn Table>, code: fn(Family) -> &'static str) -> LedgerItems {
        LedgerItems { table, code }
    }

    fn partition(&self, family: Family, id: u64) -> String {
        format!("L#{}#{}", (self.code)(family), pad(id))
    }

    /// The newest record of `id` at or below `revision`, if any (one
    /// consistent Query).
    pub async fn at_or_below(
        &self,
        family: Family,
        id: u64,
        revision: u64,
    ) -> Result<Option<Record>> {
        let partition = self.partition(family, id);
        let above = pad(revision.saturating_add(1));
        let page = self
            .table
            .query(&Query {
                index: Index::Base,
                partition: partition.clone(),
                prefix: String::new(),
                after: Some(Cursor {
                    index_key: above.clone(),
                    pk: partition,
                    sk: above,
                }),
                descending: true,
                limit: 1,
            })
            .await?;
        page.items.first().map(decode).transpose()
    }

    /// Write `record` where no record of its revision is. False when one
    /// is there and is not older than `orphan_age_ms` (another writer's,
    /// maybe still running); an older one (a change that never happened)
    /// is replaced.
    pub async fn append(
        &self,
        family: Family,
        record: &Record,
        now_ms: u64,
        orphan_age_ms: u64,
    ) -> Result<bool> {
        let (pk, sk) = (
            self.partition(family, record.entity.id),
            pad(record.revision),
        );
        let body = serde_json::to_string(record).map_err(|e| Error::internal(e.to_string()))?;
        let item = Item::plain(pk.as_str(), sk.as_str(), 1, body.clone());
        match self.table.put_provisional(item, Cond::Absent).await {
            Ok(()) => return Ok(true),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(there) = self.table.get(&pk, &sk).await? else {
            return Ok(false);
        };
        let old = decode(&there)?;
        if now_ms < old.at_ms.saturating_add(orphan_age_ms) {
            return Ok(false);
        }
        let replaced = Item::plain(pk.as_str(), sk.as_str(), there.version + 1, body);
        match self
            .table
            .put_provisional(replaced, Cond::Version(there.version))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Take back the record of `e` at `revision` after its change lost a
    /// race (best effort: a record left behind is marked by readers).
    pub async fn withdraw(&self, e: &Entity, revision: u64) {
        let (pk, sk) = (self.partition(e.kind.family(), e.id), pad(revision));
        if let Ok(Some(item)) = self.table.get(&pk, &sk).await
            && decode(&item).is_ok_and(|r| r.entity == *e)
        {
            let _ = self
                .table
                .delete(&pk, &sk, Cond::Version(item.version))
                .await;
        }
    }

    /// Every record of `id`, oldest first (at most 1,000).
    pub async fn all(&self, family: Family, id: u64) -> Result<Vec<Record>> {
        let page = self
            .table
            .query(&Query {
                index: Index::Base,
                partition: self.partition(family, id),
                prefix: String::new(),
                after: None,
                descending: false,
                limit: MAX_RECORDS,
            })
            .await?;
        page.items.iter().map(decode).collect()
    }

    /// Check the chain of `home` (the entity as it is, at item version
    /// `applied`): every record's hash is its content's, each carries the
    /// hash of the one before, and the last one holds the entity as it is.
    /// Records above `applied` are changes that did not happen and are not
    /// part of the chain.
    pub async fn verify(&self, home: &Entity, applied: u64) -> Result<Verdict> {
        let family = home.kind.family();
        let records = self.all(family, home.id).await?;
        let mut verdict = Verdict {
            records: 0,
            broken_at: None,
            reason: None,
        };
        let mut prev: Option<&Record> = None;
        for r in records.iter().filter(|r| r.revision <= applied) {
            verdict.records += 1;
            let broken = if r.digest()? != r.hash {
                Some("its hash is not that of its content")
            } else if prev.is_some_and(|p| p.hash != r.prev_hash) {
                Some("it does not carry the hash of the record before it")
            } else if prev.is_none() && !r.prev_hash.is_empty() {
                Some("the record before it is missing")
            } else {
                None
            };
            if let Some(why) = broken {
                verdict.broken_at = Some(r.revision);
                verdict.reason = Some(why.to_string());
                return Ok(verdict);
            }
            prev = Some(r);
        }
        if let Some(last) = prev
            && last.entity != *home
        {
            verdict.broken_at = Some(last.revision + 1);
            verdict.reason = Some(
                "the entity is not as its last record left it: a record after it is missing"
                    .to_string(),
            );
        }
        Ok(verdict)
    }
}
