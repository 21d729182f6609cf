//! Entities, their name and externalId claims, their id counters and the
//! queries of lists and finds: every key and index of them is built here.
//! No partition key holds a growing share of the registry: each entity has
//! its own partition, each parent one partition for its children, and the
//! global orders are spread over [`SHARDS`] partitions of each global index.
//!
//! - home: `pk = <code>#<id>` (`RM#000000000042`; the code is the family's:
//!   `RM`, `MV`, `AR`, ...), `sk = E`, the entity as JSON. A get by id is one
//!   consistent GetItem. The home is in no local index; it is in the four
//!   global indexes, under the partition `<code>#<id mod SHARDS>`, with the
//!   sort keys `G1 = id`, `G2 = created#id`, `G3 = updated#id`,
//!   `G4 = name␁id`: the global lists (all models, all versions), which may
//!   lag on DynamoDB. A fenced id (see `Registry::claim`) holds a tombstone.
//! - member: the entry of an entity in its parent's partition
//!   `<code>@<parent>`, `sk = N#<name>` (`N#<name>␁<id>` where names repeat:
//!   metric history), body `{id, at}`. For families with unique names it is
//!   also the name claim: taking the name writes the entry. Local indexes
//!   give the other orders of the children (consistent): `L1 = id`,
//!   `L2 = created#id`, `L3 = updated#id`; the base order is by name. An
//!   artifact attached to another version has a member entry there too. A
//!   list page is one Query of the member entries and one BatchGetItem of
//!   their homes; an entry whose home is missing (a create that crashed
//!   after its claim) is skipped. Item collections with local index entries
//!   are one parent's children, never the registry's.
//! - claims of names without a parent: `pk = N#<code>#<name>`, `sk = -`; of
//!   externalIds: `pk = X#<scope>#<externalId>`, `sk = -`; each `{id, at}`,
//!   one partition each.
//! - counters: `pk = SEQ, sk = context|artifact|execution` (blocks of ids).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ledger::{Action, LedgerItems, Record, changes};
use super::merge_pages;
use crate::domain::entity::{Entity, Family, Kind};
use crate::domain::error::{Error, Result};
use crate::domain::now_ms;
use crate::domain::paging::OrderBy;
use crate::store::port::{
    Cond, Cursor, Index, Item, MAX_BATCH_GET, Query, QueryPage, StoreError, Table,
};

const SEP: char = '\u{1}';
pub(super) const TOMBSTONE: &str = "{\"tombstone\":true}";
/// Sort key of every home item.
const HOME: &str = "E";
/// Sort key of the claims that are alone in their partition.
const ALONE: &str = "-";
/// Prefix of member entries' sort keys (the name order).
const MEMBER: &str = "N#";

/// Partitions each global index spreads a family's homes over (by id). A
/// global list reads all of them at once and merges; a create writes one.
/// At 1,000 creates per second of one family each takes 250 write units
/// per second of each global index, a quarter of what a partition serves.
pub const SHARDS: u64 = 4;

/// Largest stored size of an entity item, as DynamoDB counts it: the JSON
/// body, the index keys and the attribute names, in UTF-8 bytes (see
/// `Item::stored_size`). The home item is in no local index, so DynamoDB
/// would take far more (400 KB); 64 KiB keeps every entity, its list pages
/// and its history cheap, and the embedded store takes the same: both
/// backends accept the same entities.
pub const MAX_ENTITY_BYTES: usize = 64 * 1024;
/// A metric history record copies its metric (its fields and custom
/// properties) and is a few bytes larger (its kind's name, a stamped
/// timestamp): it may take this much more, so a metric that fits always
/// gets its record.
const DERIVED_RECORD_ALLOWANCE: usize = 1024;
const _: () = assert!(
    MAX_ENTITY_BYTES + DERIVED_RECORD_ALLOWANCE <= Item::max_stored_size(0),
    "an entity at the limit must fit DynamoDB's item size"
);

/// The code of a family in its keys.
fn code(family: Family) -> &'static str {
    match family {
        Family::RegisteredModel => "RM",
        Family::ModelVersion => "MV",
        Family::Artifact => "AR",
        Family::ServingEnvironment => "SE",
        Family::InferenceService => "IS",
        Family::ServeModel => "SM",
        Family::Experiment => "EX",
        Family::ExperimentRun => "ER",
        Family::MetricHistory => "MH",
    }
}

/// Every family, for the migration.
pub const FAMILIES: [Family; 9] = [
    Family::RegisteredModel,
    Family::ModelVersion,
    Family::Artifact,
    Family::ServingEnvironment,
    Family::InferenceService,
    Family::ServeModel,
    Family::Experiment,
    Family::ExperimentRun,
    Family::MetricHistory,
];

/// The family whose code is `code`.
pub(super) fn family_of(code_: &str) -> Option<Family> {
    FAMILIES.into_iter().find(|f| code(*f) == code_)
}

fn pad(id: u64) -> String {
    format!("{id:012}")
}
fn pad_ms(ms: u64) -> String {
    format!("{ms:013}")
}

fn home_pk(family: Family, id: u64) -> String {
    format!("{}#{}", code(family), pad(id))
}
/// The partition of the children of `parent` in `family`.
fn scope_pk(family: Family, parent: u64) -> String {
    format!("{}@{}", code(family), pad(parent))
}
/// The partition of global index entries of shard `shard` of `family`.
fn shard_pk(family: Family, shard: u64) -> String {
    format!("{}#{shard}", code(family))
}
/// The id of a home item's key.
fn home_id(family: Family, pk: &str) -> Option<u64> {
    pk.strip_prefix(code(family))?
        .strip_prefix('#')?
        .parse()
        .ok()
}

/// Do lists and finds of the family without a parent read one scope (the
/// family has no parents: models, experiments, serving environments)?
fn rootless(family: Family) -> bool {
    !family.has_parent() && family != Family::Artifact
}

/// The sort key of `e`'s member entry in a parent's partition.
fn member_sk(e: &Entity) -> String {
    if e.kind.family().unique_names() {
        format!("{MEMBER}{}", e.name)
    } else {
        format!("{MEMBER}{}{SEP}{}", e.name, pad(e.id))
    }
}

/// The item that stores an entity, with its global index keys.
fn home_item(e: &Entity, version: u64) -> Result<Item> {
    let family = e.kind.family();
    let shard = shard_pk(family, e.id % SHARDS);
    let (id, created, updated) = (pad(e.id), pad_ms(e.create_ms), pad_ms(e.update_ms));
    let body = serde_json::to_string(e).map_err(|err| Error::internal(err.to_string()))?;
    let mut item = Item::plain(home_pk(family, e.id), HOME, version, body);
    item.global = [
        Some((shard.clone(), id.clone())),
        Some((shard.clone(), format!("{created}#{id}"))),
        Some((shard.clone(), format!("{updated}#{id}"))),
        Some((shard, format!("{}{SEP}{id}", e.name))),
    ];
    Ok(item)
}

/// The member entry of `e` in the partition of `parent` (its own parent or
/// a version it is attached to), claimed at `at`.
fn member_item(e: &Entity, parent: u64, at: u64, version: u64) -> Result<Item> {
    let (id, created, updated) = (pad(e.id), pad_ms(e.create_ms), pad_ms(e.update_ms));
    let mut item = Item::plain(
        scope_pk(e.kind.family(), parent),
        member_sk(e),
        version,
        claim_body(e.id, at)?,
    );
    item.local = [
        Some(id.clone()),
        Some(format!("{created}#{id}")),
        Some(format!("{updated}#{id}")),
    ];
    Ok(item)
}

fn decode_entity(pk: &str, body: &str) -> Result<Option<Entity>> {
    if body == TOMBSTONE {
        return Ok(None);
    }
    serde_json::from_str(body)
        .map(Some)
        .map_err(|e| Error::internal(format!("corrupt entity {pk}: {e}")))
}

/// Refuse an entity whose item is too large (413) or whose keys are too long
/// (400), in its home or in a member entry.
fn check_item(e: &Entity, item: &Item) -> Result<()> {
    let max = match e.kind {
        Kind::MetricHistory => MAX_ENTITY_BYTES + DERIVED_RECORD_ALLOWANCE,
        _ => MAX_ENTITY_BYTES,
    };
    let size = item.stored_size();
    if size > max {
        let (part, bytes) = e.largest_part();
        return Err(Error::TooLarge(format!(
            "{} is too large: {size} bytes stored, at most {max} ({part} {bytes} bytes)",
            e.kind.family().label()
        )));
    }
    item.check_limits().map_err(Error::from)?;
    if let Some(parent) = e.parent {
        member_item(e, parent, u64::MAX, u64::MAX)?
            .check_limits()
            .map_err(Error::from)?;
    }
    Ok(())
}

/// An entity's item built and checked for [`Entities::replace`].
pub struct Prepared {
    entity: Entity,
    item: Item,
    expected: u64,
    action: Action,
}

impl Prepared {
    /// Record the write in the ledger as `action` (an update by default).
    pub fn as_action(mut self, action: Action) -> Prepared {
        self.action = action;
        self
    }
}

/// What the item of an id holds.
// A slot is short-lived (read, matched, dropped): boxing the entity buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Slot {
    /// Nothing was ever written there.
    Empty,
    /// Fenced: a create that took over its claims wrote a tombstone, so the
    /// create that had the id cannot finish.
    Fenced,
    /// The entity, at this version of its item.
    Live(Entity, u64),
}

/// A name or externalId claim: which key it protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimKey {
    /// A name within its scope (a parent, or the whole family).
    Name {
        family: Family,
        parent: Option<u64>,
        name: String,
    },
    /// An externalId within its family's scope.
    ExternalId { family: Family, external_id: String },
}

impl ClaimKey {
    fn key(&self) -> (String, String) {
        match self {
            ClaimKey::Name {
                family,
                parent: Some(p),
                name,
            } => (scope_pk(*family, *p), format!("{MEMBER}{name}")),
            ClaimKey::Name {
                family,
                parent: None,
                name,
            } => (format!("N#{}#{name}", code(*family)), ALONE.to_string()),
            ClaimKey::ExternalId {
                family,
                external_id,
            } => (
                format!("X#{}#{external_id}", family.external_id_scope()),
                ALONE.to_string(),
            ),
        }
    }

    /// The claim item of `e` for this key, taken at `at`: a member entry
    /// when the name is claimed in a parent.
    fn item(&self, e: &Entity, at: u64, version: u64) -> Result<Item> {
        match self {
            ClaimKey::Name {
                parent: Some(p), ..
            } => member_item(e, *p, at, version),
            _ => {
                let (pk, sk) = self.key();
                Ok(Item::plain(pk, sk, version, claim_body(e.id, at)?))
            }
        }
    }

    /// Does entity `e` hold this key?
    pub fn held_by(&self, e: &Entity) -> bool {
        match self {
            ClaimKey::Name { parent, name, .. } => {
                e.name == *name
                    && (e.parent == *parent || parent.is_some_and(|p| e.links.contains(&p)))
            }
            ClaimKey::ExternalId { external_id, .. } => {
                e.external_id.as_deref() == Some(external_id)
            }
        }
    }
}

/// A claim as stored: the id it is for and when it was taken (ms).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Claim {
    pub id: u64,
    pub at: u64,
}

/// A claim read back, with the version of its item (to take it over).
#[derive(Debug, Clone, Copy)]
pub struct HeldClaim {
    pub claim: Claim,
    version: u64,
}

/// Which entities a list reads, in which order.
#[derive(Debug, Clone, Copy)]
pub struct ListOf {
    pub family: Family,
    /// Children of this parent, or (None) the whole family.
    pub parent: Option<u64>,
    pub order: OrderBy,
    pub descending: bool,
}

/// An item of a list page: where it is in the list, and the body of its
/// entity (`None`: a claim whose entity was never written).
struct Entry {
    cursor: Cursor,
    body: Option<String>,
}

/// One store page of a list. Its items are decoded one by one, on demand
/// (a page need not be decoded past the last item a caller wants).
pub struct EntityPage {
    entries: Vec<Entry>,
    /// Children of this parent: an entity that no longer is one is skipped.
    parent: Option<u64>,
    /// Nothing after this page.
    pub exhausted: bool,
}

impl EntityPage {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the page's entities (to size the next page).
    pub fn bytes(&self) -> usize {
        (0..self.len()).map(|i| self.item_bytes(i)).sum()
    }

    /// Bytes of item `i`'s entity.
    pub fn item_bytes(&self, i: usize) -> usize {
        self.entries[i].body.as_ref().map_or(0, String::len)
    }

    /// The position of item `i` in the list (where a page after it resumes).
    pub fn cursor(&self, i: usize) -> Cursor {
        self.entries[i].cursor.clone()
    }

    /// The entity item `i` stands for (`None`: a fenced id, a claim without
    /// its entity, or an entry left behind).
    pub async fn entity(&self, i: usize) -> Result<Option<Entity>> {
        let entry = &self.entries[i];
        let Some(body) = &entry.body else {
            return Ok(None);
        };
        let e = decode_entity(&entry.cursor.pk, body)?;
        Ok(e.filter(|e| self.parent.is_none_or(|p| e.belongs_to(p))))
    }
}

/// The entities of the registry in the table: see the module's doc.
#[derive(Clone)]
pub struct Entities {
    table: Arc<dyn Table>,
    ids: Arc<IdBlocks>,
    pages: Arc<PageCache>,
    sizes: Arc<Sizes>,
    ledger: LedgerItems,
    /// A ledger record of a change that never happened may be replaced
    /// once it is this old (the claim lease: its writer is gone).
    orphan_age_ms: u64,
}

/// The usual size of each family's entities in this process (a moving
/// average of what it wrote and read), so that a list asks for about
/// `MAX_PAGE_BYTES` of them from its first page on: a page of 1,000
/// entities of 60 KB would be 60 MB (and DynamoDB stops at 1 MB per
/// Query, which is 4 MB for a global page over its shards).
#[derive(Default)]
pub(super) struct Sizes([std::sync::atomic::AtomicUsize; FAMILIES.len()]);

impl Sizes {
    fn slot(&self, family: Family) -> &std::sync::atomic::AtomicUsize {
        let i = FAMILIES.iter().position(|f| *f == family).unwrap_or(0);
        &self.0[i]
    }

    fn record(&self, family: Family, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let slot = self.slot(family);
        let old = slot.load(Relaxed);
        let new = if old == 0 {
            bytes
        } else {
            (old * 7 + bytes) / 8
        };
        slot.store(new.max(1), Relaxed);
    }

    /// `limit`, or fewer items if they would pass `bytes`.
    fn limit(&self, family: Family, limit: usize, bytes: usize) -> usize {
        let avg = self.slot(family).load(std::sync::atomic::Ordering::Relaxed);
        match bytes.checked_div(avg) {
            Some(fit) => limit.min(fit.max(1)),
            None => limit,
        }
        .max(1)
    }
}

impl Entities {
    pub(super) fn new(
        table: Arc<dyn Table>,
        ids: Arc<IdBlocks>,
        pages: Arc<PageCache>,
        sizes: Arc<Sizes>,
        orphan_age_ms: u64,
    ) -> Self {
        Entities {
            ledger: LedgerItems::new(table.clone(), code),
            table,
            ids,
            pages,
            sizes,
            orphan_age_ms,
        }
    }

    /// The ledger of changes (see [`super::ledger`]).
    pub fn ledger(&self) -> &LedgerItems {
        &self.ledger
    }

    /// Record `e` at `revision` in the ledger, before the write that makes
    /// it visible: false when a record of that revision is another
    /// writer's.
    async fn record(&self, e: &Entity, revision: u64, action: Action) -> Result<bool> {
        let family = e.kind.family();
        let prev = match action {
            Action::Create => None,
            _ => self.ledger.at_or_below(family, e.id, revision - 1).await?,
        };
        let at = if action == Action::Create {
            e.create_ms
        } else {
            e.update_ms
        };
        let record = Record::new(
            revision,
            at,
            crate::domain::actor::current(),
            action,
            e.clone(),
            prev.as_ref()
                .map(|p| changes(&p.entity, e))
                .unwrap_or_default(),
            prev.map(|p| p.hash).unwrap_or_default(),
        )?;
        self.ledger
            .append(family, &record, now_ms(), self.orphan_age_ms)
            .await
    }

    /// What the item of `id` holds (one consistent read).
    pub async fn slot(&self, family: Family, id: u64) -> Result<Slot> {
        let pk = home_pk(family, id);
        Ok(match self.table.get(&pk, HOME).await? {
            None => Slot::Empty,
            Some(item) => match decode_entity(&pk, &item.body)? {
                None => Slot::Fenced,
                Some(e) => Slot::Live(e, item.version),
            },
        })
    }

    /// The entity `id` and the version of its item, if there is one.
    pub async fn load(&self, family: Family, id: u64) -> Result<Option<(Entity, u64)>> {
        Ok(match self.slot(family, id).await? {
            Slot::Live(e, v) => Some((e, v)),
            Slot::Empty | Slot::Fenced => None,
        })
    }

    /// The bodies of the homes of `ids` (consistent), in their order: one
    /// BatchGetItem per [`MAX_BATCH_GET`] ids, stopping once `max_bytes`
    /// were read (the rest are left out of the answer).
    async fn homes(
        &self,
        family: Family,
        ids: &[u64],
        max_bytes: usize,
    ) -> Result<Vec<Option<String>>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut bytes = 0;
        for chunk in ids.chunks(MAX_BATCH_GET) {
            if bytes >= max_bytes {
                break;
            }
            let keys: Vec<(String, String)> = chunk
                .iter()
                .map(|id| (home_pk(family, *id), HOME.to_string()))
                .collect();
            for item in self.table.get_many(&keys).await? {
                let body = item.map(|i| i.body);
                bytes += body.as_ref().map_or(0, String::len);
                out.push(body);
            }
        }
        Ok(out)
    }

    /// The item versions of the homes of `refs`, in their order (None
    /// where no entity lives): consistent, one BatchGetItem per
    /// [`MAX_BATCH_GET`] entities, each asked once.
    pub async fn versions(&self, refs: &[(Family, u64)]) -> Result<Vec<Option<u64>>> {
        let mut keys: Vec<(String, String)> = refs
            .iter()
            .map(|(f, id)| (home_pk(*f, *id), HOME.to_string()))
            .collect();
        keys.sort();
        keys.dedup();
        let mut found = std::collections::HashMap::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            for (key, item) in chunk.iter().zip(self.table.get_many(chunk).await?) {
                if let Some(item) = item.filter(|i| i.body != TOMBSTONE) {
                    found.insert(key.0.clone(), item.version);
                }
            }
        }
        Ok(refs
            .iter()
            .map(|(f, id)| found.get(&home_pk(*f, *id)).copied())
            .collect())
    }

    /// The entities `ids` of `family`, in their order (None where none
    /// lives): consistent, one BatchGetItem per [`MAX_BATCH_GET`].
    pub async fn get_many(&self, family: Family, ids: &[u64]) -> Result<Vec<Option<Entity>>> {
        let mut out = Vec::with_capacity(ids.len());
        for (id, body) in ids.iter().zip(self.homes(family, ids, usize::MAX).await?) {
            out.push(match body {
                Some(b) => decode_entity(&home_pk(family, *id), &b)?,
                None => None,
            });
        }
        Ok(out)
    }

    /// Refuse `e` if its item would be too large or have keys too long,
    /// before anything of its create or update is written.
    pub fn check(&self, e: &Entity) -> Result<()> {
        check_item(e, &home_item(e, u64::MAX)?)
    }

    /// A new id of the family's sequence, greater than `above`: from this
    /// process's block of ids (see [`IdBlocks`]), so that creates do not all
    /// write one counter item.
    pub async fn next_id(&self, family: Family, above: u64) -> Result<u64> {
        self.ids
            .next(self.table.as_ref(), family.sequence(), above)
            .await
    }

    /// The highest id among the children of `parent` (0 when none): one
    /// consistent query, newest first.
    pub async fn last_child_id(&self, family: Family, parent: u64) -> Result<u64> {
        let page = self
            .table
            .query(&Query {
                index: Index::Local(0),
                partition: scope_pk(family, parent),
                prefix: String::new(),
                after: None,
                descending: true,
                limit: 1,
            })
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|item| item.local[0].as_deref()?.parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Write a new entity where nothing is: false when its id was fenced
    /// meanwhile. The home write makes it exist; a child whose name is not
    /// a claim (metric history) gets its member entry first.
    pub async fn insert(&self, e: &Entity) -> Result<bool> {
        let item = home_item(e, 1)?;
        check_item(e, &item)?;
        self.pages.changed();
        self.sizes.record(e.kind.family(), item.body.len());
        if let Some(parent) = e.parent
            && !e.kind.family().unique_names()
        {
            let member = member_item(e, parent, e.create_ms, 1)?;
            self.table.put_provisional(member, Cond::Always).await?;
        }
        if !self.record(e, 1, Action::Create).await? {
            return Ok(false);
        }
        match self.table.put(item, Cond::Absent).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Build and check the item of `e` written over `version` (413 or 400
    /// before anything is written), for [`Entities::replace`].
    pub fn prepare(&self, e: &Entity, version: u64) -> Result<Prepared> {
        let item = home_item(e, next_version(version)?)?;
        check_item(e, &item)?;
        self.sizes.record(e.kind.family(), item.body.len());
        Ok(Prepared {
            entity: e.clone(),
            item,
            expected: version,
            action: Action::Update,
        })
    }

    /// Write a prepared entity over its item if that is still at the
    /// version it was prepared from: false when another writer got there
    /// first. Then move its member entries to its new update time (best
    /// effort: they only keep the update-time order of its parents' lists).
    pub async fn replace(&self, write: Prepared) -> Result<bool> {
        let e = write.entity.clone();
        if !self.replace_alone(write).await? {
            return Ok(false);
        }
        for parent in e.parent.into_iter().chain(e.links.iter().copied()) {
            if let Err(err) = self.refresh_member(&e, parent).await {
                tracing::warn!(id = e.id, parent, error = %err, "member entry not refreshed");
            }
        }
        Ok(true)
    }

    /// [`Entities::replace`] without refreshing member entries.
    pub async fn replace_alone(&self, write: Prepared) -> Result<bool> {
        self.pages.changed();
        let revision = write.item.version;
        if !self.record(&write.entity, revision, write.action).await? {
            return Ok(false);
        }
        match self
            .table
            .put(write.item, Cond::Version(write.expected))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => {
                // Another change got there first: this record is of a
                // change that did not happen.
                self.ledger.withdraw(&write.entity, revision).await;
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Give `e`'s member entry in `parent` its update time, unless a later
    /// update already did (or the entry is another entity's now).
    async fn refresh_member(&self, e: &Entity, parent: u64) -> Result<()> {
        let (pk, sk) = (scope_pk(e.kind.family(), parent), member_sk(e));
        for _ in 0..4 {
            let Some(current) = self.table.get(&pk, &sk).await? else {
                return Ok(());
            };
            let claim = decode_claim(&current, &pk, &sk)?;
            let newer = current.local[2]
                .as_deref()
                .is_some_and(|k| k >= format!("{}#", pad_ms(e.update_ms)).as_str());
            if claim.id != e.id || newer {
                return Ok(());
            }
            let item = member_item(e, parent, claim.at, next_version(current.version)?)?;
            match self
                .table
                .put_provisional(item, Cond::Version(current.version))
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// Make sure the create that had `id` cannot finish (and a live entity
    /// there cannot be written over unseen): a tombstone where nothing is,
    /// a version bump over a live item. Losing a race to another fence or
    /// write is fine.
    pub async fn fence(&self, family: Family, id: u64, slot: &Slot) -> Result<()> {
        let fenced = match slot {
            Slot::Empty => {
                let t = Item::plain(home_pk(family, id), HOME, 1, TOMBSTONE.to_string());
                self.table.put_provisional(t, Cond::Absent).await
            }
            Slot::Fenced => Ok(()),
            Slot::Live(e, version) => {
                let bumped = home_item(e, next_version(*version)?)?;
                self.table
                    .put_provisional(bumped, Cond::Version(*version))
                    .await
            }
        };
        match fenced {
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Take `key` for entity `e` if nobody holds it: Ok(None) when taken (or
    /// already its), Ok(Some(held)) when another id holds it. A name claimed
    /// in a parent is `e`'s entry in that parent's lists.
    pub async fn try_claim(
        &self,
        key: &ClaimKey,
        e: &Entity,
        now_ms: u64,
    ) -> Result<Option<HeldClaim>> {
        let (pk, sk) = key.key();
        let item = key.item(e, now_ms, 1)?;
        loop {
            match self.table.put_provisional(item.clone(), Cond::Absent).await {
                Ok(()) => return Ok(None),
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(current) = self.table.get(&pk, &sk).await? else {
                continue; // released meanwhile: try again
            };
            let claim = decode_claim(&current, &pk, &sk)?;
            if claim.id == e.id {
                return Ok(None);
            }
            return Ok(Some(HeldClaim {
                claim,
                version: current.version,
            }));
        }
    }

    /// Take over `held` (abandoned) for `e`: false when it changed meanwhile.
    pub async fn take_over(
        &self,
        key: &ClaimKey,
        held: &HeldClaim,
        e: &Entity,
        now_ms: u64,
    ) -> Result<bool> {
        let taken = key.item(e, now_ms, next_version(held.version)?)?;
        let (pk, sk) = (taken.pk.clone(), taken.sk.clone());
        match self
            .table
            .put_provisional(taken, Cond::Version(held.version))
            .await
        {
            Ok(()) => {
                tracing::warn!(
                    pk,
                    sk,
                    stale_id = held.claim.id,
                    new_id = e.id,
                    "took over an abandoned claim"
                );
                Ok(true)
            }
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The id that holds `key`, if any.
    pub async fn claimant(&self, key: &ClaimKey) -> Result<Option<u64>> {
        let (pk, sk) = key.key();
        match self.table.get(&pk, &sk).await? {
            Some(item) => Ok(Some(decode_claim(&item, &pk, &sk)?.id)),
            None => Ok(None),
        }
    }

    /// Best-effort release of a claim `id` holds.
    pub async fn release(&self, key: &ClaimKey, id: u64) {
        let (pk, sk) = key.key();
        if let Ok(Some(item)) = self.table.get(&pk, &sk).await
            && serde_json::from_str::<Claim>(&item.body).is_ok_and(|c| c.id == id)
        {
            let _ = self
                .table
                .delete(&pk, &sk, Cond::Version(item.version))
                .await;
        }
    }

    /// The entities named `name` in `parent` (or, without a parent, in the
    /// whole family: for models, experiments and serving environments their
    /// claim; for versions and artifacts of any parent a few, by the global
    /// name index, which may lag).
    pub async fn named(
        &self,
        family: Family,
        parent: Option<u64>,
        name: &str,
    ) -> Result<Vec<Entity>> {
        if family.unique_names() && (parent.is_some() || rootless(family)) {
            let key = ClaimKey::Name {
                family,
                parent,
                name: name.to_string(),
            };
            let Some(id) = self.claimant(&key).await? else {
                return Ok(Vec::new());
            };
            return Ok(self
                .load(family, id)
                .await?
                .map(|(e, _)| e)
                .into_iter()
                .collect());
        }
        let list = match parent {
            Some(p) => EntityList {
                entities: self.clone(),
                family,
                source: Source::Scope(p),
                index: Index::Base,
                prefix: format!("{MEMBER}{name}{SEP}"),
                after: None,
                descending: false,
            },
            None => EntityList {
                entities: self.clone(),
                family,
                source: Source::Shards,
                index: Index::Global(3),
                prefix: format!("{name}{SEP}"),
                after: None,
                descending: false,
            },
        };
        let page = list.next_page(50).await?;
        let mut found = Vec::new();
        for i in 0..page.len() {
            if let Some(e) = page.entity(i).await? {
                found.push(e);
            }
        }
        Ok(found)
    }

    /// Where a list starts: checks that a resume position belongs to it.
    pub fn list(&self, of: ListOf, after: Option<Cursor>) -> Result<EntityList> {
        let family = of.family;
        let (source, index, prefix) = match of.parent {
            Some(p) => {
                let (index, prefix) = match of.order {
                    OrderBy::Id => (Index::Local(0), ""),
                    OrderBy::CreateTime => (Index::Local(1), ""),
                    OrderBy::LastUpdateTime => (Index::Local(2), ""),
                    OrderBy::Name => (Index::Base, MEMBER),
                };
                (Source::Scope(p), index, prefix)
            }
            None => {
                let index = match of.order {
                    OrderBy::Id => 0,
                    OrderBy::CreateTime => 1,
                    OrderBy::LastUpdateTime => 2,
                    OrderBy::Name => 3,
                };
                (Source::Shards, Index::Global(index), "")
            }
        };
        if let Some(c) = &after {
            let belongs = match source {
                Source::Scope(p) => c.pk == scope_pk(family, p),
                Source::Shards => home_id(family, &c.pk).is_some() && c.sk == HOME,
            };
            if !belongs || !c.index_key.starts_with(prefix) {
                return Err(Error::BadRequest(
                    "nextPageToken does not belong to this list".into(),
                ));
            }
        }
        Ok(EntityList {
            entities: self.clone(),
            family,
            source,
            index,
            prefix: prefix.to_string(),
            after,
            descending: of.descending,
        })
    }

    /// Write `e` as the migration copies it: its home, its member entries
    /// (its name claims in its parent and in the versions it is attached
    /// to), its name claim without a parent and its externalId claim; every
    /// write unconditional, so a copy that stopped can run again.
    pub async fn restore(&self, e: &Entity, version: u64) -> Result<()> {
        self.pages.changed();
        let family = e.kind.family();
        let mut items = vec![home_item(e, version.max(1))?];
        for parent in e.parent.into_iter().chain(e.links.iter().copied()) {
            items.push(member_item(e, parent, e.create_ms, 1)?);
        }
        if e.parent.is_none() && family.unique_names() {
            let key = ClaimKey::Name {
                family,
                parent: None,
                name: e.name.clone(),
            };
            items.push(key.item(e, e.create_ms, 1)?);
        }
        if let Some(x) = &e.external_id {
            let key = ClaimKey::ExternalId {
                family,
                external_id: x.clone(),
            };
            items.push(key.item(e, e.create_ms, 1)?);
        }
        for item in items {
            self.table.put(item, Cond::Always).await?;
        }
        Ok(())
    }
}

/// Where a list's entries are.
#[derive(Clone, Copy)]
enum Source {
    /// The member entries of one parent's partition.
    Scope(u64),
    /// The homes of the whole family, over the shards of a global index.
    Shards,
}

/// A list being read, one store page at a time, from a position the
/// reader moves ([`EntityList::seek`]) as it consumes items.
pub struct EntityList {
    entities: Entities,
    family: Family,
    source: Source,
    index: Index,
    prefix: String,
    after: Option<Cursor>,
    descending: bool,
}

/// The position of `item` in `index`.
fn cursor_of(item: &Item, index: Index) -> Cursor {
    Cursor {
        index_key: item.index_sort_key(index).unwrap_or_default().to_string(),
        pk: item.pk.clone(),
        sk: item.sk.clone(),
    }
}

impl EntityList {
    fn query(&self, partition: String, limit: usize) -> Query {
        Query {
            index: self.index,
            partition,
            prefix: self.prefix.clone(),
            after: self.after.clone(),
            descending: self.descending,
            limit: limit.max(1),
        }
    }

    /// The page of at most `limit` items after the current position (fewer
    /// where this family's entities are large).
    pub async fn next_page(&self, limit: usize) -> Result<EntityPage> {
        let sizes = &self.entities.sizes;
        let bytes = crate::store::port::MAX_PAGE_BYTES;
        let page = match self.source {
            Source::Scope(parent) => {
                let limit = sizes.limit(self.family, limit, bytes);
                self.scope_page(parent, limit).await?
            }
            Source::Shards => {
                // Ids go round the shards, so each holds about a quarter of
                // any stretch of the list: ask each for its share (and one
                // more), and at most half a store page of bytes, so a
                // merged page holds about what was asked for.
                let share = limit.div_ceil(SHARDS as usize) + 1;
                let limit = sizes.limit(self.family, share.min(limit), bytes / 2);
                self.merged_page(limit).await?
            }
        };
        if !page.is_empty() {
            sizes.record(self.family, page.bytes() / page.len());
        }
        Ok(page)
    }

    /// One Query of the member entries, one BatchGetItem of their homes
    /// (more for a page of more than 100, up to `MAX_PAGE_BYTES` of them).
    async fn scope_page(&self, parent: u64, limit: usize) -> Result<EntityPage> {
        let query = self.query(scope_pk(self.family, parent), limit);
        let page = self.entities.table.query(&query).await?;
        let mut ids = Vec::with_capacity(page.items.len());
        for item in &page.items {
            ids.push(decode_claim(item, &item.pk, &item.sk)?.id);
        }
        let bodies = self
            .entities
            .homes(self.family, &ids, crate::store::port::MAX_PAGE_BYTES)
            .await?;
        let cut = bodies.len() < page.items.len();
        let entries = page
            .items
            .iter()
            .zip(bodies)
            .map(|(item, body)| Entry {
                cursor: cursor_of(item, self.index),
                body,
            })
            .collect::<Vec<_>>();
        Ok(EntityPage {
            exhausted: !cut && (page.exhausted || entries.is_empty()),
            entries,
            parent: Some(parent),
        })
    }

    /// One Query of each shard at once (`limit` items each), merged in index
    /// order up to the first position a shard with more items did not reach.
    async fn merged_page(&self, limit: usize) -> Result<EntityPage> {
        let cache = &self.entities.pages;
        let key = cache.key(&self.query(code(self.family).to_string(), limit));
        let pages = match cache.get(&key) {
            Some(pages) => pages,
            None => {
                let generation = cache.generation();
                let pages = Arc::new(
                    futures_util::future::try_join_all((0..SHARDS).map(|s| {
                        let q = self.query(shard_pk(self.family, s), limit);
                        let table = self.entities.table.clone();
                        async move { table.query(&q).await }
                    }))
                    .await?,
                );
                cache.put(key, generation, &pages);
                pages
            }
        };
        let (items, exhausted) = merge_pages(pages.as_ref().clone(), self.index, self.descending);
        let index = self.index;
        Ok(EntityPage {
            exhausted,
            entries: items
                .into_iter()
                .map(|item| Entry {
                    cursor: cursor_of(&item, index),
                    body: Some(item.body),
                })
                .collect(),
            parent: None,
        })
    }

    /// Continue after `cursor`.
    pub fn seek(&mut self, cursor: Cursor) {
        self.after = Some(cursor);
    }

    /// The current position (after the last item consumed).
    pub fn position(&self) -> Option<&Cursor> {
        self.after.as_ref()
    }
}

/// Pages of global lists kept for a short while (`MR_LIST_CACHE_MS`), for
/// processes that serve many identical global list requests (the reading
/// functions): global lists come from global indexes, which may lag the
/// table anyway, and their first pages are what everyone asks for (a
/// filtered search of all versions reads the same head of the list every
/// time). Any write of an entity through this process empties the cache,
/// so a process still reads its own writes. Off (a time of 0) by default.
pub struct PageCache {
    ttl: std::time::Duration,
    state: std::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Bumped by every write: a page read across a write is not kept.
    generation: u64,
    pages: std::collections::HashMap<String, (std::time::Instant, Arc<Vec<QueryPage>>)>,
    bytes: usize,
}

impl PageCache {
    /// At most this many bytes of bodies are kept (then the cache starts over).
    const MAX_BYTES: usize = 16 << 20;

    pub fn new(ttl: std::time::Duration) -> PageCache {
        PageCache {
            ttl,
            state: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, q: &Query) -> String {
        format!("{q:?}")
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn changed(&self) {
        if self.ttl.is_zero() {
            return;
        }
        let mut state = self.lock();
        state.generation += 1;
        state.pages.clear();
        state.bytes = 0;
    }

    fn get(&self, key: &str) -> Option<Arc<Vec<QueryPage>>> {
        if self.ttl.is_zero() {
            return None;
        }
        let state = self.lock();
        let (at, pages) = state.pages.get(key)?;
        (at.elapsed() < self.ttl).then(|| pages.clone())
    }

    fn put(&self, key: String, generation: u64, pages: &Arc<Vec<QueryPage>>) {
        if self.ttl.is_zero() {
            return;
        }
        let bytes: usize = pages
            .iter()
            .flat_map(|p| &p.items)
            .map(|i| i.body.len())
            .sum();
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.bytes + bytes > Self::MAX_BYTES {
            state.pages.clear();
            state.bytes = 0;
        }
        state.bytes += bytes;
        if let Some((_, old)) = state
            .pages
            .insert(key, (std::time::Instant::now(), pages.clone()))
        {
            let old: usize = old
                .iter()
                .flat_map(|p| &p.items)
                .map(|i| i.body.len())
                .sum();
            state.bytes = state.bytes.saturating_sub(old);
        }
    }
}

/// The largest id: the API's ids are at most 9 digits (`^[1-9][0-9]{0,8}$`
/// in the upstream contract).
pub const MAX_ID: u64 = 999_999_999;

/// Blocks of ids reserved by this process, one per sequence.
///
/// Every create used to add one to its sequence's counter item: one item
/// written by every create of the registry. Now a process reserves a block
/// of ids with one `increment` and hands them out itself. A block is used
/// for at most its maximum age (a second by default), so ids still increase over time
/// across processes (two processes' ids are out of creation order by at
/// most that much; where order matters, the caller asks for an id above
/// the last one it must follow, and a stale block is dropped). Block sizes
/// follow the create rate: a block used up while young doubles the next
/// (up to [`IdBlocks::MAX_BLOCK`]); one that aged out is followed by one
/// the size of what it handed out, so a quiet process takes one id at a
/// time and wastes none. Ids a crash or an expiry leaves unused are gaps,
/// never reused.
pub struct IdBlocks {
    max_age: std::time::Duration,
    blocks: tokio::sync::Mutex<std::collections::HashMap<&'static str, Block>>,
}

struct Block {
    start: u64,
    next: u64,
    end: u64,
    taken: std::time::Instant,
}

impl IdBlocks {
    /// Largest block reserved at once.
    pub const MAX_BLOCK: u64 = 256;
    /// Blocks whose ids are handed out for at most `max_age` each.
    pub fn new(max_age: std::time::Duration) -> IdBlocks {
        IdBlocks {
            max_age,
            blocks: Default::default(),
        }
    }

    async fn next(&self, table: &dyn Table, sequence: &'static str, above: u64) -> Result<u64> {
        let mut blocks = self.blocks.lock().await;
        let size = match blocks.get_mut(sequence) {
            Some(b) => {
                let young = b.taken.elapsed() < self.max_age;
                if young && b.next <= b.end && b.next > above {
                    let id = b.next;
                    b.next += 1;
                    return Ok(id);
                }
                let size = b.end + 1 - b.start;
                if young && b.next > b.end {
                    (size * 2).min(Self::MAX_BLOCK)
                } else {
                    (b.next - b.start).clamp(1, Self::MAX_BLOCK)
                }
            }
            None => 1,
        };
        let end = table.increment("SEQ", sequence, size).await?;
        let start = end + 1 - size;
        if start > MAX_ID {
            return Err(Error::internal(format!(
                "the ids of sequence {sequence} are used up: the API's ids have at most 9 \
                 digits ({MAX_ID})"
            )));
        }
        // A block that crosses the limit is cut there.
        let end = end.min(MAX_ID);
        if start <= above {
            // The counter only grows and `above` came from it: unreachable
            // unless the table was edited by hand.
            return Err(Error::internal(format!(
                "id counter {sequence} ({end}) is behind id {above}"
            )));
        }
        blocks.insert(
            sequence,
            Block {
                start,
                next: start + 1,
                end,
                taken: std::time::Instant::now(),
            },
        );
        Ok(start)
    }
}

fn claim_body(id: u64, at: u64) -> Result<String> {
    serde_json::to_string(&Claim { id, at }).map_err(|e| Error::internal(e.to_string()))
}

fn decode_claim(item: &Item, pk: &str, sk: &str) -> Result<Claim> {
    serde_json::from_str(&item.body)
        .map_err(|e| Error::internal(format!("corrupt claim {pk}/{sk}: {e}")))
}

/// The version attribute of an item written over `version`.
fn next_version(version: u64) -> Result<u64> {
    version
        .checked_add(1)
        .ok_or_else(|| Error::internal(format!("item version {version} cannot increase")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::entity::{MAX_EXTERNAL_ID_BYTES, MAX_NAME_BYTES, NewEntity};
    use crate::store::port::key_fits;

    /// The longest name there may be, in the widest scope, with the widest ids.
    fn widest(kind: Kind) -> Entity {
        let new = NewEntity {
            kind,
            name: None,
            external_id: None,
            parent: None,
            fields: Default::default(),
            custom: Default::default(),
        };
        let mut e = Entity::create(new, u64::MAX, "😀".repeat(MAX_NAME_BYTES / 4), u64::MAX);
        assert_eq!(e.name.len(), MAX_NAME_BYTES);
        e.parent = Some(u64::MAX);
        e.external_id = Some("x".repeat(MAX_EXTERNAL_ID_BYTES));
        e
    }

    #[test]
    fn every_key_built_from_a_valid_name_fits_dynamodb() {
        for kind in [
            Kind::RegisteredModel,
            Kind::ModelVersion,
            Kind::ModelArtifact,
        ] {
            let e = widest(kind);
            let item = home_item(&e, u64::MAX).unwrap();
            assert_eq!(item.check_limits(), Ok(()), "{kind:?}");
            assert_eq!(
                member_item(&e, u64::MAX, u64::MAX, u64::MAX)
                    .unwrap()
                    .check_limits(),
                Ok(())
            );
            let family = kind.family();
            for parent in [None, Some(u64::MAX)] {
                let key = ClaimKey::Name {
                    family,
                    parent,
                    name: e.name.clone(),
                };
                let (pk, sk) = key.key();
                assert!(key_fits(&pk, &sk), "name claim {sk}");
            }
            let key = ClaimKey::ExternalId {
                family,
                external_id: e.external_id.clone().unwrap(),
            };
            let (pk, sk) = key.key();
            assert!(key_fits(&pk, &sk), "externalId claim");
        }
    }

    #[test]
    fn entities_over_the_limit_are_too_large_and_say_why() {
        let mut e = widest(Kind::RegisteredModel);
        e.fields
            .insert("description".into(), json!("d".repeat(MAX_ENTITY_BYTES)));
        let err = check_item(&e, &home_item(&e, 1).unwrap()).unwrap_err();
        let Error::TooLarge(m) = err else {
            panic!("{err:?}")
        };
        assert!(m.starts_with("registered model is too large: "), "{m}");
        assert!(
            m.contains(&format!(
                "at most {MAX_ENTITY_BYTES} (description {MAX_ENTITY_BYTES} bytes)"
            )),
            "{m}"
        );
        // Just under the limit is fine, and DynamoDB takes it too.
        let mut e = widest(Kind::RegisteredModel);
        let base = home_item(&e, 1).unwrap().stored_size();
        let filler = MAX_ENTITY_BYTES - base - r#","description":"""#.len();
        e.fields
            .insert("description".into(), json!("d".repeat(filler)));
        let item = home_item(&e, 1).unwrap();
        assert_eq!(item.stored_size(), MAX_ENTITY_BYTES);
        assert_eq!(check_item(&e, &item), Ok(()));
        assert_eq!(item.check_limits(), Ok(()));
    }

    #[test]
    fn item_versions_never_wrap() {
        assert!(next_version(u64::MAX).is_err());
        assert_eq!(next_version(1), Ok(2));
    }
}
