//! The ledger of changes: every revision of every entity, who made it and
//! when, hash-chained per entity.
//!
//! - record: `pk = L#<code>#<id>`, `sk = <revision>` (zero-padded), the
//!   [`Record`] as JSON: the entity as the revision made it, the actor, the
//!   time, the action, what changed, and the hash of the entity's previous
//!   record. One partition per entity: its history is one consistent Query.
//! - the same record in two global indexes, for the audit of everything:
//!   `G2 = AUDIT#<id mod AUDIT_SHARDS>` and `G3 = BY#<actor digest>#<id mod
//!   ACTOR_SHARDS>`, both sorted by `<time>#<code>#<id>#<revision>`. A page
//!   of the audit reads every shard at once and merges them newest first
//!   (they may lag the table, as global indexes do).
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
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::merge_pages;
use crate::domain::entity::{Entity, Family};
use crate::domain::error::{Error, Result};
use crate::store::port::{Cond, Cursor, Index, Item, Query, StoreError, Table};

/// What a revision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// A new revision equal to an earlier one.
    Revert,
    /// An alias of a model set, moved or removed (the model's revision),
    /// or its label put on or taken off a version (the version's).
    Alias,
    /// An approval decision on a version, or its decisions voided by a
    /// change of its content.
    Approval,
    /// A model's approval policy set.
    Policy,
}

impl Action {
    /// The action's name on the wire.
    pub fn wire(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::Update => "UPDATE",
            Action::Revert => "REVERT",
            Action::Alias => "ALIAS",
            Action::Approval => "APPROVAL",
            Action::Policy => "POLICY",
        }
    }
}

/// One field a revision changed: its value before and after (null where
/// absent). A value longer than [`MAX_CHANGE_BYTES`] is kept as its size
/// (the whole entity is in the record, and the previous one's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Longest value a [`Change`] holds as it is.
pub const MAX_CHANGE_BYTES: usize = 512;

fn shown(v: Option<&Value>) -> Value {
    match v {
        None => Value::Null,
        Some(v) => {
            let len = serde_json::to_string(v).map_or(0, |s| s.len());
            if len > MAX_CHANGE_BYTES {
                Value::String(format!("({len} bytes)"))
            } else {
                v.clone()
            }
        }
    }
}

/// The fields `after` changed from `before`, by their names on the wire
/// where they have one (`description`, `customProperties.<key>`,
/// `aliases.<alias>`).
pub fn changes(before: &Entity, after: &Entity) -> Vec<Change> {
    let (Ok(Value::Object(b)), Ok(Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut diff =
        |prefix: &str, b: &serde_json::Map<String, Value>, a: &serde_json::Map<String, Value>| {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                if b.get(k) != a.get(k) {
                    out.push(Change {
                        field: format!("{prefix}{k}"),
                        before: shown(b.get(k)),
                        after: shown(a.get(k)),
                    });
                }
            }
        };
    let empty = serde_json::Map::new();
    let nested = |m: &serde_json::Map<String, Value>, k: &str| match m.get(k) {
        Some(Value::Object(o)) => o.clone(),
        _ => empty.clone(),
    };
    // The entity's own fields are at the top on the wire.
    let mut top_b = nested(&b, "fields");
    let mut top_a = nested(&a, "fields");
    for (k, wire) in [
        ("name", "name"),
        ("external_id", "externalId"),
        ("links", "links"),
    ] {
        if let Some(v) = b.get(k) {
            top_b.insert(wire.to_string(), v.clone());
        }
        if let Some(v) = a.get(k) {
            top_a.insert(wire.to_string(), v.clone());
        }
    }
    diff("", &top_b, &top_a);
    diff(
        "customProperties.",
        &nested(&b, "custom"),
        &nested(&a, "custom"),
    );
    // (Ids are strings on the wire.)
    let aliases =
        |m: &serde_json::Map<String, Value>| match m.get("gov").and_then(|g| g.get("aliases")) {
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                .collect(),
            _ => empty.clone(),
        };
    diff("aliases.", &aliases(&b), &aliases(&a));
    let governed = |m: &serde_json::Map<String, Value>| {
        let mut out = serde_json::Map::new();
        for (k, wire) in [("policy", "approvalPolicy"), ("votes", "approvals")] {
            if let Some(v) = m.get("gov").and_then(|g| g.get(k)) {
                out.insert(wire.to_string(), v.clone());
            }
        }
        out
    };
    diff("", &governed(&b), &governed(&a));
    out
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
    /// What this revision changed (empty for a create).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
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
    #[serde(skip_serializing_if = "<[Change]>::is_empty")]
    changes: &'a [Change],
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
        changes: Vec<Change>,
        prev_hash: String,
    ) -> Result<Record> {
        let mut r = Record {
            revision,
            at_ms,
            actor,
            action,
            entity,
            changes,
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
            changes: &self.changes,
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

/// Partitions of the audit index (by time): at 2,000 changes per second
/// each takes 125 records per second.
pub const AUDIT_SHARDS: u64 = 16;
/// Partitions of each actor's part of the audit index: one pipeline's
/// account may make most changes.
pub const ACTOR_SHARDS: u64 = 4;
/// The global index of the audit by time, and of the audit by actor.
const BY_TIME: Index = Index::Global(1);
const BY_ACTOR: Index = Index::Global(2);

/// A page of the audit: records newest first, each with whether its
/// change happened (false: a change that did not happen, see the module).
pub struct AuditPage {
    pub records: Vec<(Record, Cursor)>,
    /// No record is left after these.
    pub exhausted: bool,
}

/// Which records an audit page reads.
#[derive(Debug, Clone, Default)]
pub struct AuditScope {
    /// Only one entity's records (its partition, consistent).
    pub entity: Option<(Family, u64)>,
    /// Only this actor's (its part of the audit index).
    pub actor: Option<String>,
    /// Only records at or before this time.
    pub until_ms: Option<u64>,
}

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

/// The partition of an actor's shard of the audit index: a digest, since
/// an actor's name is as long as its identity provider makes it.
fn actor_pk(actor: &str, shard: u64) -> String {
    let digest = hex::encode(&Sha256::digest(actor.as_bytes())[..12]);
    format!("BY#{digest}#{shard}")
}

fn time_shards() -> Vec<String> {
    (0..AUDIT_SHARDS).map(|s| format!("AUDIT#{s}")).collect()
}

fn time_key(code: &str, record: &Record) -> String {
    format!(
        "{:013}#{code}#{}#{}",
        record.at_ms,
        pad(record.entity.id),
        pad(record.revision)
    )
}

impl LedgerItems {
    pub(super) fn new(table: Arc<dyn Table>, code: fn(Family) -> &'static str) -> LedgerItems {
        LedgerItems { table, code }
    }

    fn partition(&self, family: Family, id: u64) -> String {
        format!("L#{}#{}", (self.code)(family), pad(id))
    }

    /// The item of `record`, with its keys in the audit indexes.
    fn item(&self, family: Family, record: &Record, version: u64) -> Result<Item> {
        let body = serde_json::to_string(record).map_err(|e| Error::internal(e.to_string()))?;
        let id = record.entity.id;
        let mut item = Item::plain(
            self.partition(family, id),
            pad(record.revision),
            version,
            body,
        );
        let key = time_key((self.code)(family), record);
        item.global[1] = Some((format!("AUDIT#{}", id % AUDIT_SHARDS), key.clone()));
        item.global[2] = Some((actor_pk(&record.actor, id % ACTOR_SHARDS), key));
        Ok(item)
    }

    /// One page of `id`'s records after revision `after` (exclusive), in
    /// revision order: the records, and whether none is left.
    async fn page(
        &self,
        family: Family,
        id: u64,
        after: Option<u64>,
        descending: bool,
        limit: usize,
    ) -> Result<(Vec<Record>, bool)> {
        let partition = self.partition(family, id);
        let page = self
            .table
            .query(&Query {
                index: Index::Base,
                after: after.map(|r| Cursor {
                    index_key: pad(r),
                    pk: partition.clone(),
                    sk: pad(r),
                }),
                partition,
                prefix: String::new(),
                descending,
                limit,
            })
            .await?;
        let records = page.items.iter().map(decode).collect::<Result<Vec<_>>>()?;
        let exhausted = page.exhausted || records.is_empty();
        Ok((records, exhausted))
    }

    /// The newest record of `id` at or below `revision`, if any (one
    /// consistent Query).
    pub async fn at_or_below(
        &self,
        family: Family,
        id: u64,
        revision: u64,
    ) -> Result<Option<Record>> {
        let (mut records, _) = self
            .page(family, id, Some(revision.saturating_add(1)), true, 1)
            .await?;
        Ok(if records.is_empty() {
            None
        } else {
            Some(records.swap_remove(0))
        })
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
        let item = self.item(family, record, 1)?;
        let (pk, sk) = (item.pk.clone(), item.sk.clone());
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
        let replaced = self.item(family, record, there.version + 1)?;
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

    /// Up to `limit` records of `id`, newest first, below revision
    /// `before` (all when None); and whether none is left after them.
    pub async fn newest(
        &self,
        family: Family,
        id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool)> {
        self.page(family, id, before, true, limit).await
    }

    /// Check the chain of `home` (the entity as it is, at item version
    /// `applied`): every record's hash is its content's, each carries the
    /// hash of the one before, and the last one holds the entity as it is.
    /// Records above `applied` are changes that did not happen and are not
    /// part of the chain. Reads the records a store page at a time.
    pub async fn verify(&self, home: &Entity, applied: u64) -> Result<Verdict> {
        let family = home.kind.family();
        let mut verdict = Verdict {
            records: 0,
            broken_at: None,
            reason: None,
        };
        let mut prev: Option<Record> = None;
        let mut after = None;
        loop {
            let (records, exhausted) = self.page(family, home.id, after, false, 1000).await?;
            after = records.last().map(|r| r.revision);
            for r in records.into_iter().filter(|r| r.revision <= applied) {
                verdict.records += 1;
                let broken = if r.digest()? != r.hash {
                    Some("its hash is not that of its content")
                } else if prev.as_ref().is_some_and(|p| p.hash != r.prev_hash) {
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
            if exhausted || after.is_none_or(|a| a >= applied) {
                break;
            }
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

    /// One round of reading the audit, newest first, after `after`: one
    /// Query of the entity's partition, or one of each shard of the audit
    /// index (of everything, or of the actor's part), merged. At most
    /// about `limit` records.
    pub async fn audit_page(
        &self,
        scope: &AuditScope,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<AuditPage> {
        let start = after.or_else(|| {
            scope.until_ms.map(|until| Cursor {
                // Everything of `until`'s millisecond sorts below this.
                index_key: format!("{until:013}#~"),
                pk: "~".into(),
                sk: "~".into(),
            })
        });
        if let Some((family, id)) = scope.entity {
            let before = match &start {
                Some(c) if c.pk == self.partition(family, id) => c.sk.parse().ok(),
                _ => None,
            };
            let (records, exhausted) = self.page(family, id, before, true, limit).await?;
            let partition = self.partition(family, id);
            return Ok(AuditPage {
                records: records
                    .into_iter()
                    .filter(|r| scope.until_ms.is_none_or(|u| r.at_ms <= u))
                    .map(|r| {
                        let sk = pad(r.revision);
                        let cursor = Cursor {
                            index_key: sk.clone(),
                            pk: partition.clone(),
                            sk,
                        };
                        (r, cursor)
                    })
                    .collect(),
                exhausted,
            });
        }
        let (index, partitions): (Index, Vec<String>) = match &scope.actor {
            Some(actor) => (
                BY_ACTOR,
                (0..ACTOR_SHARDS).map(|s| actor_pk(actor, s)).collect(),
            ),
            None => (BY_TIME, time_shards()),
        };
        self.shards_page(index, partitions, start, true, limit)
            .await
    }

    /// Records after `after` (None: from the first), oldest first, from the
    /// audit index by time: what the change events are made of.
    pub async fn feed(&self, after: Option<Cursor>, limit: usize) -> Result<AuditPage> {
        self.shards_page(BY_TIME, time_shards(), after, false, limit)
            .await
    }

    /// One Query of each partition at once (about `limit` records in all),
    /// merged in time order.
    async fn shards_page(
        &self,
        index: Index,
        partitions: Vec<String>,
        after: Option<Cursor>,
        descending: bool,
        limit: usize,
    ) -> Result<AuditPage> {
        let share = limit.div_ceil(partitions.len()) + 1;
        let pages = futures_util::future::try_join_all(partitions.into_iter().map(|partition| {
            let q = Query {
                index,
                partition,
                prefix: String::new(),
                after: after.clone(),
                descending,
                limit: share,
            };
            let table = self.table.clone();
            async move { table.query(&q).await }
        }))
        .await?;
        let (items, exhausted) = merge_pages(pages, index, descending);
        let mut records = Vec::with_capacity(items.len());
        for item in &items {
            // (The actor index holds the actor's digest: the reader drops
            // names that share it.)
            let r = decode(item)?;
            let cursor = Cursor {
                index_key: item.index_sort_key(index).unwrap_or_default().to_string(),
                pk: item.pk.clone(),
                sk: item.sk.clone(),
            };
            records.push((r, cursor));
        }
        Ok(AuditPage { records, exhausted })
    }
}
