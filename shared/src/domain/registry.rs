//! The registry service: the rules of ids, uniqueness, updates and lists,
//! written once over the storage port.
//!
//! ## Layout in the table (single-table design)
//! - entity: `pk = family` (`RM`, `MV`, `AR`), `sk = id` (zero-padded), so a
//!   get by id is one consistent read. Local indexes (same partition,
//!   consistent) give the orders inside a scope (`S` = parent id or `-`):
//!   `L1 = S#id`, `L2 = S#created#id`, `L3 = S#updated#id`, `L4 = S#name`,
//!   `L5 = created#id` (global). Global indexes give the global orders that
//!   may lag on DynamoDB: `G1 = updated#id`, `G2 = name#id`.
//! - claims: `pk = N#family, sk = S#name` and `pk = X#scope, sk = externalId`,
//!   each holding `{id, at}`; written with "absent" before the entity.
//! - counters: `pk = SEQ, sk = context|artifact`, atomically incremented.
//!
//! ## Crash safety without transactions
//! A create writes: counter, name claim, (externalId claim), entity. A crash
//! after a claim leaves a claim whose entity is missing. Such a claim is
//! honoured while its lease runs (the writer may still be working); after
//! that the next creator *fences* the dead id (writes a tombstone where the
//! entity would go, so a late writer fails its conditional put) and takes the
//! claim over with a conditional write. A half-entity is never visible: the
//! entity item is the single write that makes the entity exist.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entity::{
    ArtifactUpsert, Entity, Family, Kind, NewEntity, Patch, check_name, check_owned_name, fields,
    parse_id,
};
use super::error::{Error, Result, bad_request};
use super::filter::Expr;
use super::paging::{ListParams, OrderBy, encode_token};
use crate::domain::now_ms;
use crate::store::port::{
    Cond, Cursor, Index, Item, LOCAL_INDEXES, MAX_PAGE_BYTES, Query, StoreError, Table,
};

const SEP: char = '\u{1}';
const TOMBSTONE: &str = "{\"tombstone\":true}";
/// Optimistic-concurrency retries of one update.
const UPDATE_RETRIES: usize = 64;

/// Jittered pause before retrying an optimistic write that lost a race, so a
/// burst of writers on one entity spreads out instead of colliding again.
async fn backoff(attempt: usize) {
    let cap_ms = 1u64 << attempt.min(5); // 1, 2, 4 ... 32 ms
    let jitter = (uuid::Uuid::new_v4().as_u128() % (cap_ms as u128 * 1000)) as u64;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
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

/// The update time of an entity written again: now, and always later than
/// the previous one (a PATCH in the same millisecond still moves it).
fn next_update_ms(previous: u64) -> Result<u64> {
    previous
        .checked_add(1)
        .map(|next| now_ms().max(next))
        .ok_or_else(|| Error::internal(format!("update time {previous} cannot increase")))
}

/// The version attribute of an item written over `version`.
fn next_version(version: u64) -> Result<u64> {
    version
        .checked_add(1)
        .ok_or_else(|| Error::internal(format!("item version {version} cannot increase")))
}

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

/// Refuse an entity whose item is too large (413) or whose keys are too long
/// (400) before anything is written.
fn check_entity_item(e: &Entity, item: &Item) -> Result<()> {
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

/// The item that stores an entity, with its index keys.
pub fn entity_item(e: &Entity, version: u64) -> Result<Item> {
    let pk = e.kind.family().partition();
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
        e.kind.family().partition(),
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

#[derive(Serialize, Deserialize)]
struct Claim {
    id: u64,
    at: u64,
}

/// Which entities a list or find covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every entity of the family.
    All,
    /// Children of one parent (versions of a model, artifacts of a version).
    Parent(u64),
}

/// Narrowing of a list beyond `filterQuery`.
#[derive(Debug, Clone, Default)]
pub struct Narrow {
    pub kind: Option<Kind>,
    pub name: Option<String>,
    pub external_id: Option<String>,
    /// Metric history: only these steps.
    pub steps: Option<Vec<i64>>,
}

impl Narrow {
    fn admits(&self, e: &Entity) -> bool {
        let step = e.step();
        self.kind.is_none_or(|k| k == e.kind)
            && self
                .steps
                .as_ref()
                .is_none_or(|steps| step.is_some_and(|st| steps.contains(&st)))
            && self.name.as_ref().is_none_or(|n| *n == e.name)
            && self
                .external_id
                .as_ref()
                .is_none_or(|x| Some(x) == e.external_id.as_ref())
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Entity>,
    /// `""` on the last page.
    pub next_page_token: String,
    pub page_size: usize,
}

/// An entity of a list with its position in the list's index.
#[derive(Debug, Clone)]
pub struct Found {
    pub entity: Entity,
    /// Where a page that ends with this entity resumes.
    pub cursor: Cursor,
}

/// CPU work (bytes of text × filter cost per byte) above which a batch's
/// filter runs on the blocking pool instead of an async worker, so health
/// checks and other requests keep answering while an expensive filter runs.
const BLOCKING_FILTER_WORK: usize = 1 << 20;

/// Filters evaluated on the blocking pool at once: one per core, so the
/// expensive ones queue instead of crowding out everything else.
fn filter_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// A list being read: see [`Registry::scan`].
pub struct Scan {
    registry: Registry,
    index: Index,
    partition: String,
    prefix: String,
    after: Option<Cursor>,
    descending: bool,
    narrow: Narrow,
    filter: Option<Arc<Expr>>,
    /// Items may not match (a filter or narrowing): read ahead.
    filtered: bool,
    done: bool,
    /// Items and body bytes read so far (sets the size of the next page).
    items_read: usize,
    bytes_read: usize,
}

impl Scan {
    /// True once the end of the list was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The position after the last item read, matching or not (a page cut
    /// short resumes there).
    pub fn position(&self) -> Option<&Cursor> {
        self.after.as_ref()
    }

    /// The matching entities of the next store page (at most `wanted`, and
    /// possibly none while the list goes on). One page holds at most
    /// `MAX_PAGE_BYTES` of items, so a batch stays small whatever the items.
    pub async fn next_batch(&mut self, wanted: usize) -> Result<Vec<Found>> {
        if self.done {
            return Ok(Vec::new());
        }
        // With a filter, read ahead: asking for exactly what is missing
        // would cost one round trip per few matches.
        let mut limit = if self.filtered {
            wanted.max(100)
        } else {
            wanted
        }
        .clamp(1, 1000);
        // Big items: ask for about MAX_PAGE_BYTES worth (the embedded store
        // stops there by itself; DynamoDB would fill 1 MB).
        if let Some(avg) = self
            .bytes_read
            .checked_div(self.items_read)
            .filter(|a| *a > 0)
        {
            limit = limit.min((MAX_PAGE_BYTES / avg).max(1));
        }
        let page = self
            .registry
            .table
            .query(&Query {
                index: self.index,
                partition: self.partition.clone(),
                prefix: self.prefix.clone(),
                after: self.after.clone(),
                descending: self.descending,
                limit,
            })
            .await?;
        if page.exhausted || page.items.is_empty() {
            self.done = true;
        }
        // A cheap filter (or none) is checked item by item, and decoding
        // stops at the last match wanted; an expensive one (long LIKE
        // patterns over much text) runs over the decoded page on the
        // blocking pool.
        let text_bytes: usize = page.items.iter().map(|i| i.body.len()).sum();
        let blocking = self
            .filter
            .as_ref()
            .is_some_and(|f| text_bytes.saturating_mul(f.cost_per_byte()) >= BLOCKING_FILTER_WORK);
        let mut found: Vec<Found> = Vec::new();
        for item in &page.items {
            let cursor = Cursor {
                index_key: item
                    .index_sort_key(self.index)
                    .unwrap_or_default()
                    .to_string(),
                pk: item.pk.clone(),
                sk: item.sk.clone(),
            };
            self.items_read = self.items_read.saturating_add(1);
            self.bytes_read = self.bytes_read.saturating_add(item.body.len());
            let Some(entity) = self.registry.resolve(item).await? else {
                self.after = Some(cursor);
                continue;
            };
            let admitted = self.narrow.admits(&entity)
                && (blocking || self.filter.as_ref().is_none_or(|f| f.matches(&entity)));
            self.after = Some(cursor.clone());
            if admitted {
                found.push(Found { entity, cursor });
                if !blocking && found.len() == wanted {
                    // Resume right after it.
                    self.done = false;
                    return Ok(found);
                }
            }
        }
        drop(page);
        let (Some(filter), true) = (&self.filter, blocking) else {
            return Ok(found);
        };
        let _slot = filter_slots()
            .acquire()
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let filter = filter.clone();
        let mut matched = tokio::task::spawn_blocking(move || {
            found.retain(|f| filter.matches(&f.entity));
            found
        })
        .await
        .map_err(|e| Error::internal(format!("filter evaluation: {e}")))?;
        if matched.len() > wanted {
            // Resume right after the last one handed out.
            matched.truncate(wanted);
            if let Some(last) = matched.last() {
                self.after = Some(last.cursor.clone());
                self.done = false;
            }
        }
        Ok(matched)
    }
}

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How long a claim whose entity is missing is honoured before it may be taken over.
    pub claim_lease: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            claim_lease: Duration::from_secs(10),
        }
    }
}

/// The registry over one metadata table.
#[derive(Clone)]
pub struct Registry {
    table: Arc<dyn Table>,
    config: RegistryConfig,
}

/// Which key a claim protects, to check whether its holder really has it.
enum ClaimKey<'a> {
    Name { name: &'a str, parent: Option<u64> },
    ExternalId(&'a str),
}

impl ClaimKey<'_> {
    fn held_by(&self, e: &Entity) -> bool {
        match self {
            ClaimKey::Name { name, parent } => {
                e.name == *name
                    && (e.parent == *parent || parent.is_some_and(|p| e.links.contains(&p)))
            }
            ClaimKey::ExternalId(x) => e.external_id.as_deref() == Some(*x),
        }
    }
}

fn name_claim_key(family: Family, parent: Option<u64>, name: &str) -> (String, String) {
    (
        format!("N#{}", family.partition()),
        format!("{}#{name}", scope_of(parent)),
    )
}

fn external_id_claim_key(family: Family, x: &str) -> (String, String) {
    (format!("X#{}", family.external_id_scope()), x.to_string())
}

impl Registry {
    pub fn new(table: Arc<dyn Table>, config: RegistryConfig) -> Self {
        Registry { table, config }
    }

    /// The underlying table (for adapters and tests).
    pub fn table(&self) -> &Arc<dyn Table> {
        &self.table
    }

    async fn load(&self, family: Family, id: u64) -> Result<Option<(Entity, u64)>> {
        let item = self.table.get(family.partition(), &pad(id)).await?;
        Ok(match item {
            Some(item) => decode_entity(&item)?.map(|e| (e, item.version)),
            None => None,
        })
    }

    /// The entity an index item stands for: itself, or the artifact a link points at.
    async fn resolve(&self, item: &Item) -> Result<Option<Entity>> {
        match item
            .sk
            .starts_with("L#")
            .then(|| link_target(item))
            .flatten()
        {
            Some(target) => Ok(self.load(Family::Artifact, target).await?.map(|(e, _)| e)),
            None => decode_entity(item),
        }
    }

    /// One entity by id; `kind` narrows (a metric is not found as a model artifact).
    pub async fn get(&self, family: Family, kind: Option<Kind>, id: u64) -> Result<Entity> {
        match self.load(family, id).await? {
            Some((e, _)) if kind.is_none_or(|k| k == e.kind) => Ok(e),
            _ => Err(not_found(family, id)),
        }
    }

    /// Take `(pk, sk)` for `id`, recovering claims abandoned by a crash.
    async fn claim(
        &self,
        family: Family,
        pk: &str,
        sk: &str,
        id: u64,
        key: ClaimKey<'_>,
        what: &str,
    ) -> Result<()> {
        for _ in 0..8 {
            let now = now_ms();
            let body = serde_json::to_string(&Claim { id, at: now })
                .map_err(|e| Error::internal(e.to_string()))?;
            match self
                .table
                .put_provisional(Item::plain(pk, sk, 1, body.clone()), Cond::Absent)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(current) = self.table.get(pk, sk).await? else {
                continue; // released meanwhile: try again
            };
            let claim: Claim = serde_json::from_str(&current.body)
                .map_err(|e| Error::internal(format!("corrupt claim {pk}/{sk}: {e}")))?;
            if claim.id == id {
                return Ok(());
            }
            let holder = self.table.get(family.partition(), &pad(claim.id)).await?;
            let holder_entity = match &holder {
                Some(item) => decode_entity(item)?,
                None => None,
            };
            if holder_entity.as_ref().is_some_and(|e| key.held_by(e)) {
                return Err(Error::Conflict(format!("{what} already exists")));
            }
            let lease = u64::try_from(self.config.claim_lease.as_millis()).unwrap_or(u64::MAX);
            if now < claim.at.saturating_add(lease) {
                return Err(Error::Conflict(format!(
                    "{what} already exists (being created)"
                )));
            }
            // The holder crashed or moved on: fence its id, then take the claim over.
            let fenced = match (&holder, holder_entity) {
                (None, _) => {
                    let t =
                        Item::plain(family.partition(), pad(claim.id), 1, TOMBSTONE.to_string());
                    self.table.put_provisional(t, Cond::Absent).await
                }
                (Some(_), None) => Ok(()), // already a tombstone
                (Some(item), Some(_)) => {
                    let mut bumped = item.clone();
                    bumped.version = next_version(item.version)?;
                    self.table
                        .put_provisional(bumped, Cond::Version(item.version))
                        .await
                }
            };
            match fenced {
                Ok(()) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            let taken = Item::plain(pk, sk, next_version(current.version)?, body);
            match self
                .table
                .put_provisional(taken, Cond::Version(current.version))
                .await
            {
                Ok(()) => {
                    tracing::warn!(
                        pk,
                        sk,
                        stale_id = claim.id,
                        new_id = id,
                        "took over an abandoned claim"
                    );
                    return Ok(());
                }
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::unavailable(format!(
            "too much contention on {what}, retry"
        )))
    }

    /// Best-effort release of a claim we hold.
    async fn release(&self, pk: &str, sk: &str, id: u64) {
        if let Ok(Some(item)) = self.table.get(pk, sk).await
            && serde_json::from_str::<Claim>(&item.body).is_ok_and(|c| c.id == id)
        {
            let _ = self.table.delete(pk, sk, Cond::Version(item.version)).await;
        }
    }

    /// Create an entity (the parent, if any, must exist).
    pub async fn create(&self, new: NewEntity) -> Result<Entity> {
        let family = new.kind.family();
        if let (Some(p), Some(parent_family)) = (new.parent, new.kind.parent_family()) {
            self.get(parent_family, None, p).await?;
        }
        self.check_references(new.kind, &new.fields).await?;
        let name = new
            .name
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // Also for entities the registry creates itself (from storage events).
        check_name(&name)?;
        check_owned_name(&name, new.parent)?;
        // Everything the item holds is known but its id: count it with the
        // widest id there is, so that an entity too large (or with keys too
        // long) is refused before anything, even the counter, is written.
        let (parent, external_id) = (new.parent, new.external_id.clone());
        let mut entity = Entity::create(new, u64::MAX, name.clone(), now_ms());
        check_entity_item(&entity, &entity_item(&entity, 1)?)?;
        let id = self.table.increment("SEQ", family.sequence()).await?;
        let (npk, nsk) = name_claim_key(family, parent, &name);
        let what = match parent {
            Some(p) => format!("{} named '{name}' in parent {p}", family.label()),
            None => format!("{} named '{name}'", family.label()),
        };
        if family.unique_names() {
            let key = ClaimKey::Name {
                name: &name,
                parent,
            };
            self.claim(family, &npk, &nsk, id, key, &what).await?;
        }
        if let Some(x) = external_id {
            let (xpk, xsk) = external_id_claim_key(family, &x);
            let what = format!("{} with externalId '{x}'", family.label());
            if let Err(e) = self
                .claim(family, &xpk, &xsk, id, ClaimKey::ExternalId(&x), &what)
                .await
            {
                self.release(&npk, &nsk, id).await;
                return Err(e);
            }
        }
        let now = now_ms();
        (entity.id, entity.create_ms, entity.update_ms) = (id, now, now);
        match self.table.put(entity_item(&entity, 1)?, Cond::Absent).await {
            Ok(()) => Ok(entity),
            Err(StoreError::ConditionFailed) => Err(Error::Conflict(format!(
                "{what} was taken over while being created, retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Apply a PATCH; concurrent updates are serialized by the item version.
    pub async fn update(&self, family: Family, id: u64, patch: &Patch) -> Result<Entity> {
        for attempt in 0..UPDATE_RETRIES {
            let Some((mut e, version)) = self.load(family, id).await? else {
                return Err(not_found(family, id));
            };
            if e.kind != patch.kind {
                if family == Family::Artifact && patch.typed {
                    return bad_request(format!(
                        "artifactType cannot change from '{}' to '{}'",
                        e.kind.artifact_type().unwrap_or_default(),
                        patch.kind.artifact_type().unwrap_or_default()
                    ));
                }
                return Err(not_found(family, id));
            }
            let p = patch;
            let old_xid = e.external_id.clone();
            p.apply(&mut e);
            if p.fields.contains_key(fields::MODEL_VERSION_ID) {
                self.check_references(e.kind, &e.fields).await?;
            }
            e.update_ms = next_update_ms(e.update_ms)?;
            // The merged entity must fit before anything (a claim) is written.
            let item = entity_item(&e, next_version(version)?)?;
            check_entity_item(&e, &item)?;
            let new_xid = e
                .external_id
                .clone()
                .filter(|x| Some(x) != old_xid.as_ref());
            if let Some(x) = &new_xid {
                let (xpk, xsk) = external_id_claim_key(family, x);
                let what = format!("{} with externalId '{x}'", family.label());
                self.claim(family, &xpk, &xsk, id, ClaimKey::ExternalId(x), &what)
                    .await?;
            }
            if self.write_update(&e, item, version).await? {
                if let (Some(_), Some(old)) = (&new_xid, &old_xid) {
                    let (xpk, xsk) = external_id_claim_key(family, old);
                    self.release(&xpk, &xsk, id).await;
                }
                return Ok(e);
            }
            backoff(attempt).await;
        }
        Err(busy(family, id))
    }

    /// Read-modify-write of one entity for rules that merge into its current
    /// state (the `customProperties` of a PATCH replace the whole map; this
    /// can add keys). `change` edits the entity and says whether it changed
    /// anything: an unchanged entity is not written, so its update time
    /// stays. Retried (calling `change` again) on concurrent updates. It
    /// must not change the name, parent or externalId.
    pub async fn modify(
        &self,
        family: Family,
        id: u64,
        mut change: impl FnMut(&mut Entity) -> Result<bool>,
    ) -> Result<Entity> {
        for attempt in 0..UPDATE_RETRIES {
            let Some((mut e, version)) = self.load(family, id).await? else {
                return Err(not_found(family, id));
            };
            let (name, parent, external_id) = (e.name.clone(), e.parent, e.external_id.clone());
            if !change(&mut e)? {
                return Ok(e);
            }
            if e.name != name || e.parent != parent || e.external_id != external_id {
                return Err(Error::internal(format!(
                    "{} {id}: modify may not change its name, parent or externalId",
                    family.label()
                )));
            }
            e.update_ms = next_update_ms(e.update_ms)?;
            let item = entity_item(&e, next_version(version)?)?;
            check_entity_item(&e, &item)?;
            if self.write_update(&e, item, version).await? {
                return Ok(e);
            }
            backoff(attempt).await;
        }
        Err(busy(family, id))
    }

    /// Write an updated entity (its checked `item`) over the stored
    /// `version`: false when another writer got there first (the caller
    /// reloads and retries). After the write, the link items of the versions
    /// it is attached to are refreshed (best effort: they only keep the
    /// update-time order of those lists).
    async fn write_update(&self, e: &Entity, item: Item, version: u64) -> Result<bool> {
        match self.table.put(item, Cond::Version(version)).await {
            Ok(()) => {
                for &v in &e.links {
                    let _ = self
                        .table
                        .put_provisional(link_item(e, v), Cond::Always)
                        .await;
                }
                Ok(true)
            }
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The one entity matching a name (within `parent`) and/or an externalId.
    pub async fn find(
        &self,
        family: Family,
        kind: Option<Kind>,
        name: Option<&str>,
        external_id: Option<&str>,
        parent: Option<u64>,
    ) -> Result<Entity> {
        let missing = || Error::NotFound(format!("no {} matches", family.label()));
        let admits = |e: &Entity| {
            kind.is_none_or(|k| k == e.kind)
                && name.is_none_or(|n| n == e.name)
                && external_id.is_none_or(|x| Some(x) == e.external_id.as_deref())
                && parent.is_none_or(|p| e.belongs_to(p))
        };
        if let Some(x) = external_id {
            let (xpk, xsk) = external_id_claim_key(family, x);
            let Some(item) = self.table.get(&xpk, &xsk).await? else {
                return Err(missing());
            };
            let claim: Claim = serde_json::from_str(&item.body)
                .map_err(|e| Error::internal(format!("corrupt claim: {e}")))?;
            return match self.load(family, claim.id).await? {
                Some((e, _)) if admits(&e) => Ok(e),
                _ => Err(missing()),
            };
        }
        let Some(name) = name else {
            return bad_request("give name (with parentResourceId where it applies) or externalId");
        };
        let scoped = parent.is_some() || !family.has_parent() && family != Family::Artifact;
        let query = if scoped {
            Query {
                index: Index::Local(3),
                partition: family.partition().into(),
                prefix: format!("{}#{name}{SEP}", scope_of(parent)),
                after: None,
                descending: false,
                limit: 2,
            }
        } else {
            Query {
                index: Index::Global(1),
                partition: family.partition().into(),
                prefix: format!("{name}{SEP}"),
                after: None,
                descending: false,
                limit: 50,
            }
        };
        let page = self.table.query(&query).await?;
        let mut found = Vec::new();
        for item in &page.items {
            if let Some(e) = self.resolve(item).await?
                && admits(&e)
            {
                found.push(e);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            _ => Err(missing()),
        }
    }

    /// One page of a list, in the requested order, resuming after the token.
    pub async fn list(
        &self,
        family: Family,
        scope: Scope,
        narrow: &Narrow,
        params: &ListParams,
    ) -> Result<ListPage> {
        let want = if params.page_size == 0 {
            usize::MAX
        } else {
            params.page_size + 1
        };
        let mut scan = self.scan(family, scope, narrow, params)?;
        let mut found: Vec<Found> = Vec::new();
        while found.len() < want && !scan.is_done() {
            let batch = scan.next_batch(want - found.len()).await?;
            found.extend(batch);
        }
        found.truncate(want);
        let mut next = String::new();
        if params.page_size > 0 && found.len() > params.page_size {
            found.truncate(params.page_size);
            if let Some(f) = found.last() {
                next = encode_token(&f.cursor, params.order_by, params.descending);
            }
        }
        Ok(ListPage {
            items: found.into_iter().map(|f| f.entity).collect(),
            next_page_token: next,
            page_size: params.page_size,
        })
    }

    /// A scan of a list in the requested order, resuming after the token:
    /// the caller reads it batch by batch (one store page each), so a list
    /// of any length is served in bounded memory.
    pub fn scan(
        &self,
        family: Family,
        scope: Scope,
        narrow: &Narrow,
        params: &ListParams,
    ) -> Result<Scan> {
        let partition = family.partition().to_string();
        let scoped = match scope {
            Scope::Parent(p) => Some(scope_of(Some(p))),
            Scope::All if !family.has_parent() && family != Family::Artifact => {
                Some(scope_of(None))
            }
            Scope::All => None,
        };
        let (index, prefix) = match (&scoped, params.order_by) {
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
        if let Some(c) = &params.after
            && (!c.index_key.starts_with(&prefix) || c.pk != partition)
        {
            return bad_request("nextPageToken does not belong to this list");
        }
        let filtered = params.filter.is_some()
            || narrow.kind.is_some()
            || narrow.name.is_some()
            || narrow.external_id.is_some()
            || narrow.steps.is_some();
        Ok(Scan {
            registry: self.clone(),
            index,
            partition,
            prefix,
            after: params.after.clone(),
            descending: params.descending,
            narrow: narrow.clone(),
            filter: params.filter.clone().map(Arc::new),
            filtered,
            done: false,
            items_read: 0,
            bytes_read: 0,
        })
    }

    /// `POST /model_versions/{id}/artifacts`: create (true) or update (false) an
    /// artifact of a version. Metrics and parameters without id upsert by name.
    pub async fn upsert_version_artifact(
        &self,
        version_id: u64,
        upsert: ArtifactUpsert,
    ) -> Result<(Entity, bool)> {
        self.get(Family::ModelVersion, None, version_id).await?;
        self.upsert_child_artifact(version_id, upsert, &[]).await
    }

    /// `POST /experiment_runs/{id}/artifacts`: like a version's upsert, and the
    /// artifact records its experiment and run; every metric value logged is
    /// also kept in the run's metric history.
    pub async fn upsert_run_artifact(
        &self,
        run_id: u64,
        mut upsert: ArtifactUpsert,
    ) -> Result<(Entity, bool)> {
        let run = self.get(Family::ExperimentRun, None, run_id).await?;
        let experiment = run.parent.unwrap_or_default().to_string();
        let stamp = [
            (fields::EXPERIMENT_ID, experiment),
            (fields::EXPERIMENT_RUN_ID, run_id.to_string()),
        ];
        // A value logged without a time is stamped with its log time.
        let logged_at = Value::from(now_ms().to_string());
        let is_metric = upsert.kind == Kind::Metric;
        for fields in [
            upsert.new.as_mut().ok().map(|n| &mut n.fields),
            upsert.patch.as_mut().ok().map(|p| &mut p.fields),
        ]
        .into_iter()
        .flatten()
        {
            for (k, v) in &stamp {
                match fields.remove(*k) {
                    Some(Value::String(given)) if given != *v => {
                        return bad_request(format!("{k} '{given}' does not match run {run_id}"));
                    }
                    _ => {}
                }
            }
            if is_metric && fields.get(fields::TIMESTAMP).is_none_or(Value::is_null) {
                fields.insert(fields::TIMESTAMP.into(), logged_at.clone());
            }
        }
        let (artifact, created) = self.upsert_child_artifact(run_id, upsert, &stamp).await?;
        if artifact.kind == Kind::Metric {
            self.log_metric(&artifact, run_id).await?;
        }
        Ok((artifact, created))
    }

    /// Keep one logged value of a run's metric.
    async fn log_metric(&self, metric: &Entity, run_id: u64) -> Result<()> {
        let mut fields = metric.fields.clone();
        fields
            .entry(fields::TIMESTAMP)
            .or_insert_with(|| Value::from(metric.update_ms.to_string()));
        let record = NewEntity {
            kind: Kind::MetricHistory,
            name: Some(metric.name.clone()),
            external_id: None,
            parent: Some(run_id),
            fields,
            custom: metric.custom.clone(),
        };
        self.create(record).await.map(|_| ())
    }

    /// Create or update an artifact of a parent (version or run) that exists.
    /// `stamp`: fields set on a new artifact (the run that produced it).
    async fn upsert_child_artifact(
        &self,
        parent: u64,
        upsert: ArtifactUpsert,
        stamp: &[(&str, String)],
    ) -> Result<(Entity, bool)> {
        let kind = upsert.kind;
        let existing = match (upsert.id, upsert.name.as_deref()) {
            (Some(id), _) => {
                let current = self.get(Family::Artifact, None, id).await?;
                if current.kind != kind {
                    return bad_request(format!(
                        "artifactType cannot change from '{}' to '{}'",
                        current.kind.artifact_type().unwrap_or_default(),
                        kind.artifact_type().unwrap_or_default()
                    ));
                }
                Some(current)
            }
            (None, Some(name)) if matches!(kind, Kind::Metric | Kind::Parameter) => {
                match self
                    .find(Family::Artifact, Some(kind), Some(name), None, Some(parent))
                    .await
                {
                    Ok(e) => Some(e),
                    Err(Error::NotFound(_)) => None,
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        match existing {
            Some(current) => {
                if upsert.name.as_ref().is_some_and(|n| *n != current.name) {
                    return bad_request("name of an existing artifact cannot change");
                }
                let mut patch = upsert.patch?;
                patch.typed = true;
                let e = self.update(Family::Artifact, current.id, &patch).await?;
                if e.belongs_to(parent) {
                    return Ok((e, false));
                }
                Ok((self.attach(e, parent).await?, false))
            }
            None => {
                let mut new = upsert.new?;
                new.parent = Some(parent);
                for (k, v) in stamp {
                    new.fields.insert(k.to_string(), Value::from(v.as_str()));
                }
                Ok((self.create(new).await?, true))
            }
        }
    }
}

impl Registry {
    /// Ids an entity refers to (besides its parent) must exist.
    /// (An inference service's version must also be a version of its model.)
    async fn check_references(
        &self,
        kind: Kind,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<()> {
        let mut model = None;
        for (field, family) in [
            (fields::REGISTERED_MODEL_ID, Family::RegisteredModel),
            (fields::MODEL_VERSION_ID, Family::ModelVersion),
        ] {
            if !kind.fields().any(|f| f.name == field) {
                continue;
            }
            if let Some(id) = fields.get(field).and_then(Value::as_str) {
                let id = parse_id(field, id)?;
                let target = self.get(family, None, id).await?;
                match family {
                    Family::RegisteredModel => model = Some(id),
                    _ if model.is_some_and(|m| target.parent != Some(m)) => {
                        return bad_request(format!(
                            "modelVersionId {id} is not a version of registered model {}",
                            model.unwrap_or_default()
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The model an inference service serves.
    pub async fn inference_service_model(&self, id: u64) -> Result<Entity> {
        let isvc = self.get(Family::InferenceService, None, id).await?;
        let model = reference(&isvc, fields::REGISTERED_MODEL_ID)?;
        self.get(Family::RegisteredModel, None, model).await
    }

    /// The version an inference service serves: its `modelVersionId`, or else
    /// the latest version of its model by creation time.
    pub async fn inference_service_version(&self, id: u64) -> Result<Entity> {
        let isvc = self.get(Family::InferenceService, None, id).await?;
        if let Some(v) = isvc.model_version_id() {
            return self.get(Family::ModelVersion, None, v).await;
        }
        let model = reference(&isvc, fields::REGISTERED_MODEL_ID)?;
        let params = ListParams {
            page_size: 1,
            order_by: OrderBy::CreateTime,
            descending: true,
            after: None,
            filter: None,
        };
        let page = self
            .list(
                Family::ModelVersion,
                Scope::Parent(model),
                &Narrow::default(),
                &params,
            )
            .await?;
        page.items
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("registered model {model} has no versions")))
    }

    /// List artifact `e` under another version too: claim its name in that
    /// version, write the link item, then record the link on the artifact.
    async fn attach(&self, e: Entity, version_id: u64) -> Result<Entity> {
        let family = Family::Artifact;
        // One more link must still fit, checked before the claim and the
        // link item are written (counted with the widest version number).
        let mut grown = e.clone();
        grown.links.push(version_id);
        check_entity_item(&grown, &entity_item(&grown, u64::MAX)?)?;
        drop(grown);
        let (npk, nsk) = name_claim_key(family, Some(version_id), &e.name);
        let what = format!("artifact named '{}' in model version {version_id}", e.name);
        let key = ClaimKey::Name {
            name: &e.name,
            parent: Some(version_id),
        };
        self.claim(family, &npk, &nsk, e.id, key, &what).await?;
        self.table
            .put_provisional(link_item(&e, version_id), Cond::Always)
            .await?;
        for attempt in 0..UPDATE_RETRIES {
            let Some((mut cur, version)) = self.load(family, e.id).await? else {
                return Err(not_found(family, e.id));
            };
            if cur.belongs_to(version_id) {
                return Ok(cur);
            }
            cur.links.push(version_id);
            let item = entity_item(&cur, next_version(version)?)?;
            if let Err(err) = check_entity_item(&cur, &item) {
                // It grew meanwhile: take back the claim and the link item.
                let link = link_item(&e, version_id);
                let _ = self.table.delete(&link.pk, &link.sk, Cond::Always).await;
                self.release(&npk, &nsk, e.id).await;
                return Err(err);
            }
            match self.table.put(item, Cond::Version(version)).await {
                Ok(()) => return Ok(cur),
                Err(StoreError::ConditionFailed) => {
                    backoff(attempt).await;
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(Error::unavailable(format!(
            "artifact {} is being updated concurrently, retry",
            e.id
        )))
    }
}

fn reference(e: &Entity, field: &str) -> Result<u64> {
    match e.fields.get(field).and_then(Value::as_str) {
        Some(id) => parse_id(field, id),
        None => Err(Error::NotFound(format!(
            "{} {} has no {field}",
            e.kind.family().label(),
            e.id
        ))),
    }
}

/// Every retry of an optimistic update lost to a concurrent writer.
fn busy(family: Family, id: u64) -> Error {
    Error::unavailable(format!(
        "{} {id} is being updated concurrently, retry",
        family.label()
    ))
}

fn not_found(family: Family, id: u64) -> Error {
    Error::NotFound(format!("{} {id} not found", family.label()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entity::{MAX_EXTERNAL_ID_BYTES, MAX_NAME_BYTES};
    use crate::store::port::key_fits;
    use serde_json::json;

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
                let (pk, sk) = name_claim_key(family, parent, &e.name);
                assert!(key_fits(&pk, &sk), "name claim {sk}");
            }
            let (pk, sk) = external_id_claim_key(family, e.external_id.as_deref().unwrap());
            assert!(key_fits(&pk, &sk), "externalId claim");
        }
    }

    #[test]
    fn entities_over_the_limit_are_too_large_and_say_why() {
        let mut e = widest(Kind::RegisteredModel);
        e.fields
            .insert("description".into(), json!("d".repeat(MAX_ENTITY_BYTES)));
        let err = check_entity_item(&e, &entity_item(&e, 1).unwrap()).unwrap_err();
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
        assert_eq!(check_entity_item(&e, &item), Ok(()));
        assert_eq!(item.check_limits(), Ok(()));
    }

    #[test]
    fn update_times_and_versions_never_wrap() {
        assert!(next_update_ms(u64::MAX).is_err());
        assert!(next_version(u64::MAX).is_err());
        assert_eq!(next_version(1), Ok(2));
        assert!(next_update_ms(5).unwrap() > 5);
    }
}
