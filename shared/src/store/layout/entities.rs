//! Entities, their name and externalId claims, their id counters, the link
//! items of artifacts attached to more than one version, and the queries of
//! lists and finds: every key and index of them is built here.
//!
//! - entity: `pk = <family code>` (`RM`, `MV`, `AR`, ...), `sk = id`
//!   (zero-padded), so a get by id is one consistent read. Local indexes
//!   (same partition, consistent) give the orders inside a scope (`S` =
//!   parent id or `-`): `L1 = S#id`, `L2 = S#created#id`, `L3 = S#updated#id`,
//!   `L4 = S#name`, `L5 = created#id` (global). Global indexes give the
//!   global orders that may lag on DynamoDB: `G1 = updated#id`, `G2 = name#id`.
//!   A fenced id (see `Claims`) holds a tombstone instead.
//! - link: `pk = AR`, `sk = L#<version>#<id>`, the index keys of the
//!   artifact as a child of that version, pointing at the artifact.
//! - claims: `pk = N#<family code>, sk = S#name` and `pk = X#<scope>,
//!   sk = externalId`, each holding `{id, at}`.
//! - counters: `pk = SEQ, sk = context|artifact|execution`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::entity::{Entity, Family, Kind};
use crate::domain::error::{Error, Result};
use crate::domain::paging::OrderBy;
use crate::store::port::{Cond, Cursor, Index, Item, LOCAL_INDEXES, Query, StoreError, Table};

const SEP: char = '\u{1}';
const TOMBSTONE: &str = "{\"tombstone\":true}";

/// Largest stored size of an entity item, as DynamoDB counts it: the JSON
/// body, the index keys and the attribute names, in UTF-8 bytes (see
/// `Item::stored_size`). An entity item is in all five local indexes, and
/// DynamoDB counts each local index entry (a full copy: they project ALL
/// attributes, plus 100 bytes) against the item's 400 KB, so an entity item
/// may take at most (409,600 - 5 × 100) / 6 = 68,183 bytes on DynamoDB.
/// 64 KiB stays under that with room for a metric's history record (below).
/// The embedded store takes the same: both backends accept the same entities.
pub const MAX_ENTITY_BYTES: usize = 64 * 1024;
/// A metric history record copies its metric (its fields and custom
/// properties) and is a few bytes larger (its kind's name, a stamped
/// timestamp): it may take this much more, so a metric that fits always
/// gets its record.
const DERIVED_RECORD_ALLOWANCE: usize = 1024;
const _: () = assert!(
    MAX_ENTITY_BYTES + DERIVED_RECORD_ALLOWANCE <= Item::max_stored_size(LOCAL_INDEXES),
    "an entity at the limit must fit DynamoDB's item size with its local index entries"
);

/// The partition of a family's entities (and the code in its claims' keys).
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

fn pad(id: u64) -> String {
    format!("{id:012}")
}
fn pad_ms(ms: u64) -> String {
    format!("{ms:013}")
}
fn scope_of(parent: Option<u64>) -> String {
    parent.map(pad).unwrap_or_else(|| "-".to_string())
}

/// Do lists and finds of the family without a parent read one scope (the
/// family has no parents: models, experiments, serving environments), or
/// every scope (versions of any model, artifacts of any version)?
fn rootless(family: Family) -> bool {
    !family.has_parent() && family != Family::Artifact
}

/// The item that stores an entity, with its index keys.
fn entity_item(e: &Entity, version: u64) -> Result<Item> {
    let pk = code(e.kind.family());
    let s = scope_of(e.parent);
    let (id, created, updated) = (pad(e.id), pad_ms(e.create_ms), pad_ms(e.update_ms));
    let body = serde_json::to_string(e).map_err(|err| Error::internal(err.to_string()))?;
    Ok(Item {
        pk: pk.to_string(),
        sk: id.clone(),
        version,
        body,
        local: [
            Some(format!("{s}#{id}")),
            Some(format!("{s}#{created}#{id}")),
            Some(format!("{s}#{updated}#{id}")),
            Some(format!("{s}#{}{SEP}", e.name)),
            Some(format!("{created}#{id}")),
        ],
        global: [
            Some((pk.to_string(), format!("{updated}#{id}"))),
            Some((pk.to_string(), format!("{}{SEP}{id}", e.name))),
        ],
    })
}

/// The item that lists artifact `e` under version `parent` it was attached to
/// (same index keys as a child of `parent`, body pointing at the artifact).
fn link_item(e: &Entity, parent: u64) -> Item {
    let s = pad(parent);
    let (id, created, updated) = (pad(e.id), pad_ms(e.create_ms), pad_ms(e.update_ms));
    let mut item = Item::plain(
        code(e.kind.family()),
        format!("L#{s}#{id}"),
        1,
        format!("{{\"link\":{}}}", e.id),
    );
    item.local = [
        Some(format!("{s}#{id}")),
        Some(format!("{s}#{created}#{id}")),
        Some(format!("{s}#{updated}#{id}")),
        Some(format!("{s}#{}{SEP}", e.name)),
        None,
    ];
    item
}

/// The artifact a link item points at.
fn link_target(item: &Item) -> Option<u64> {
    if !item.sk.starts_with("L#") {
        return None;
    }
    let v: Value = serde_json::from_str(&item.body).ok()?;
    v.get("link")?.as_u64()
}

fn decode_entity(item: &Item) -> Result<Option<Entity>> {
    if item.body == TOMBSTONE {
        return Ok(None);
    }
    serde_json::from_str(&item.body)
        .map(Some)
        .map_err(|e| Error::internal(format!("corrupt entity {}/{}: {e}", item.pk, item.sk)))
}

/// Refuse an entity whose item is too large (413) or whose keys are too long
/// (400).
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
    item.check_limits().map_err(Error::from)
}

/// An entity's item built and checked for [`Entities::replace`].
pub struct Prepared {
    item: Item,
    expected: u64,
    links: Vec<Item>,
}

/// What the item of an id holds.
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
                parent,
                name,
            } => (
                format!("N#{}", code(*family)),
                format!("{}#{name}", scope_of(*parent)),
            ),
            ClaimKey::ExternalId {
                family,
                external_id,
            } => (
                format!("X#{}", family.external_id_scope()),
                external_id.clone(),
            ),
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

/// One store page of a list. Its items are decoded one by one, on demand
/// (a page need not be decoded past the last item a caller wants).
pub struct EntityPage {
    entities: Entities,
    index: Index,
    items: Vec<Item>,
    /// Nothing after this page.
    pub exhausted: bool,
}

impl EntityPage {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of the page's bodies (to size the next page).
    pub fn bytes(&self) -> usize {
        self.items.iter().map(|i| i.body.len()).sum()
    }

    /// Bytes of item `i`'s body.
    pub fn item_bytes(&self, i: usize) -> usize {
        self.items[i].body.len()
    }

    /// The position of item `i` in the list (where a page after it resumes).
    pub fn cursor(&self, i: usize) -> Cursor {
        let item = &self.items[i];
        Cursor {
            index_key: item
                .index_sort_key(self.index)
                .unwrap_or_default()
                .to_string(),
            pk: item.pk.clone(),
            sk: item.sk.clone(),
        }
    }

    /// The entity item `i` stands for (`None`: a fenced id, or a link whose
    /// artifact is gone).
    pub async fn entity(&self, i: usize) -> Result<Option<Entity>> {
        self.entities.resolve(&self.items[i]).await
    }
}

/// The entities of the registry in the table: see the module's doc.
#[derive(Clone)]
pub struct Entities {
    table: Arc<dyn Table>,
    ids: Arc<IdBlocks>,
}

impl Entities {
    pub(super) fn new(table: Arc<dyn Table>, ids: Arc<IdBlocks>) -> Self {
        Entities { table, ids }
    }

    /// What the item of `id` holds (one consistent read).
    pub async fn slot(&self, family: Family, id: u64) -> Result<Slot> {
        Ok(match self.table.get(code(family), &pad(id)).await? {
            None => Slot::Empty,
            Some(item) => match decode_entity(&item)? {
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

    /// Refuse `e` if its item would be too large or have keys too long,
    /// before anything of its create or update is written.
    pub fn check(&self, e: &Entity) -> Result<()> {
        check_item(e, &entity_item(e, u64::MAX)?)
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
                partition: code(family).into(),
                prefix: format!("{}#", scope_of(Some(parent))),
                after: None,
                descending: true,
                limit: 1,
            })
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|item| item.sk.parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Write a new entity where nothing is: false when its id was fenced
    /// meanwhile. The write that makes it exist.
    pub async fn insert(&self, e: &Entity) -> Result<bool> {
        let item = entity_item(e, 1)?;
        check_item(e, &item)?;
        match self.table.put(item, Cond::Absent).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Build and check the item of `e` written over `version` (413 or 400
    /// before anything is written), for [`Entities::replace`].
    pub fn prepare(&self, e: &Entity, version: u64) -> Result<Prepared> {
        let item = entity_item(e, next_version(version)?)?;
        check_item(e, &item)?;
        Ok(Prepared {
            item,
            expected: version,
            links: e.links.iter().map(|&v| link_item(e, v)).collect(),
        })
    }

    /// Write a prepared entity over its item if that is still at the
    /// version it was prepared from: false when another writer got there
    /// first. Then refresh the link items of the versions it is attached to
    /// (best effort: they only keep the update-time order of those lists).
    pub async fn replace(&self, write: Prepared) -> Result<bool> {
        let links = write.links.clone();
        if !self.replace_alone(write).await? {
            return Ok(false);
        }
        for link in links {
            let _ = self.table.put_provisional(link, Cond::Always).await;
        }
        Ok(true)
    }

    /// [`Entities::replace`] without refreshing link items.
    pub async fn replace_alone(&self, write: Prepared) -> Result<bool> {
        match self
            .table
            .put(write.item, Cond::Version(write.expected))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Make sure the create that had `id` cannot finish (and a live entity
    /// there cannot be written over unseen): a tombstone where nothing is,
    /// a version bump over a live item. Losing a race to another fence or
    /// write is fine.
    pub async fn fence(&self, family: Family, id: u64, slot: &Slot) -> Result<()> {
        let fenced = match slot {
            Slot::Empty => {
                let t = Item::plain(code(family), pad(id), 1, TOMBSTONE.to_string());
                self.table.put_provisional(t, Cond::Absent).await
            }
            Slot::Fenced => Ok(()),
            Slot::Live(e, version) => {
                let bumped = entity_item(e, next_version(*version)?)?;
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

    /// List artifact `e` under version `version_id` too (its link item).
    pub async fn link(&self, e: &Entity, version_id: u64) -> Result<()> {
        Ok(self
            .table
            .put_provisional(link_item(e, version_id), Cond::Always)
            .await?)
    }

    /// Take back the link item of `e` under `version_id`.
    pub async fn unlink(&self, e: &Entity, version_id: u64) {
        let link = link_item(e, version_id);
        let _ = self.table.delete(&link.pk, &link.sk, Cond::Always).await;
    }

    /// Take `key` for `id` if nobody holds it: Ok(None) when taken (or
    /// already ours), Ok(Some(held)) when another id holds it.
    pub async fn try_claim(
        &self,
        key: &ClaimKey,
        id: u64,
        now_ms: u64,
    ) -> Result<Option<HeldClaim>> {
        let (pk, sk) = key.key();
        let body = claim_body(id, now_ms)?;
        loop {
            match self
                .table
                .put_provisional(
                    Item::plain(pk.as_str(), sk.as_str(), 1, body.clone()),
                    Cond::Absent,
                )
                .await
            {
                Ok(()) => return Ok(None),
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(current) = self.table.get(&pk, &sk).await? else {
                continue; // released meanwhile: try again
            };
            let claim = decode_claim(&current, &pk, &sk)?;
            if claim.id == id {
                return Ok(None);
            }
            return Ok(Some(HeldClaim {
                claim,
                version: current.version,
            }));
        }
    }

    /// Take over `held` (abandoned) for `id`: false when it changed meanwhile.
    pub async fn take_over(
        &self,
        key: &ClaimKey,
        held: &HeldClaim,
        id: u64,
        now_ms: u64,
    ) -> Result<bool> {
        let (pk, sk) = key.key();
        let taken = Item::plain(
            pk.as_str(),
            sk.as_str(),
            next_version(held.version)?,
            claim_body(id, now_ms)?,
        );
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
                    new_id = id,
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
    /// whole family: a few, by the global name index, which may lag).
    pub async fn named(
        &self,
        family: Family,
        parent: Option<u64>,
        name: &str,
    ) -> Result<Vec<Entity>> {
        let query = if parent.is_some() || rootless(family) {
            Query {
                index: Index::Local(3),
                partition: code(family).into(),
                prefix: format!("{}#{name}{SEP}", scope_of(parent)),
                after: None,
                descending: false,
                limit: 2,
            }
        } else {
            Query {
                index: Index::Global(1),
                partition: code(family).into(),
                prefix: format!("{name}{SEP}"),
                after: None,
                descending: false,
                limit: 50,
            }
        };
        let page = self.table.query(&query).await?;
        let mut found = Vec::new();
        for item in &page.items {
            if let Some(e) = self.resolve(item).await? {
                found.push(e);
            }
        }
        Ok(found)
    }

    /// Where a list starts: checks that a resume position belongs to it.
    pub fn list(&self, of: ListOf, after: Option<Cursor>) -> Result<EntityList> {
        let partition = code(of.family).to_string();
        let scoped = match of.parent {
            Some(p) => Some(scope_of(Some(p))),
            None if rootless(of.family) => Some(scope_of(None)),
            None => None,
        };
        let (index, prefix) = match (&scoped, of.order) {
            (Some(s), order) => {
                let i = match order {
                    OrderBy::Id => 0,
                    OrderBy::CreateTime => 1,
                    OrderBy::LastUpdateTime => 2,
                    OrderBy::Name => 3,
                };
                (Index::Local(i), format!("{s}#"))
            }
            (None, OrderBy::Id) => (Index::Base, String::new()),
            (None, OrderBy::CreateTime) => (Index::Local(4), String::new()),
            (None, OrderBy::LastUpdateTime) => (Index::Global(0), String::new()),
            (None, OrderBy::Name) => (Index::Global(1), String::new()),
        };
        if let Some(c) = &after
            && (!c.index_key.starts_with(&prefix) || c.pk != partition)
        {
            return Err(Error::BadRequest(
                "nextPageToken does not belong to this list".into(),
            ));
        }
        Ok(EntityList {
            entities: self.clone(),
            query: Query {
                index,
                partition,
                prefix,
                after,
                descending: of.descending,
                limit: 1,
            },
        })
    }

    /// The entity an index item stands for: itself, or the artifact a link
    /// points at.
    async fn resolve(&self, item: &Item) -> Result<Option<Entity>> {
        match link_target(item) {
            Some(target) => Ok(self.load(Family::Artifact, target).await?.map(|(e, _)| e)),
            None => decode_entity(item),
        }
    }
}

/// A list being read, one store page at a time, from a position the
/// reader moves ([`EntityList::seek`]) as it consumes items.
pub struct EntityList {
    entities: Entities,
    query: Query,
}

impl EntityList {
    /// The page of at most `limit` items after the current position.
    pub async fn next_page(&self, limit: usize) -> Result<EntityPage> {
        let mut query = self.query.clone();
        query.limit = limit.max(1);
        let page = self.entities.table.query(&query).await?;
        Ok(EntityPage {
            entities: self.entities.clone(),
            index: query.index,
            exhausted: page.exhausted || page.items.is_empty(),
            items: page.items,
        })
    }

    /// Continue after `cursor`.
    pub fn seek(&mut self, cursor: Cursor) {
        self.query.after = Some(cursor);
    }

    /// The current position (after the last item consumed).
    pub fn position(&self) -> Option<&Cursor> {
        self.query.after.as_ref()
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
            let item = entity_item(&e, u64::MAX).unwrap();
            assert_eq!(item.check_limits(), Ok(()), "{kind:?}");
            assert_eq!(link_item(&e, u64::MAX).check_limits(), Ok(()));
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
        let err = check_item(&e, &entity_item(&e, 1).unwrap()).unwrap_err();
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
        let base = entity_item(&e, 1).unwrap().stored_size();
        let filler = MAX_ENTITY_BYTES - base - r#","description":"""#.len();
        e.fields
            .insert("description".into(), json!("d".repeat(filler)));
        let item = entity_item(&e, 1).unwrap();
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
