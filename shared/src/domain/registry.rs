//! The registry service: the rules of ids, uniqueness, updates and lists,
//! written once over the storage port.
//!
//! Where and how entities, claims and lists are kept in the table is the
//! store's business (`store::layout::entities`); the rules here speak of
//! entities, claims, fences and lists.
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

use serde_json::Value;

use super::entity::{
    ArtifactUpsert, Entity, Family, Kind, NewEntity, Patch, check_name, check_owned_name, fields,
    parse_id,
};
use super::error::{Error, Result, bad_request};
use super::filter::Expr;
use super::governance;
use super::paging::{ListParams, OrderBy, encode_token};
use super::usage::UsageRecorder;
use crate::domain::now_ms;
pub use crate::store::layout::MAX_ENTITY_BYTES;
pub use crate::store::layout::ledger::{Action, Record, Verdict};
use crate::store::layout::{ClaimKey, Entities, EntityList, Layout, ListOf, Slot};
use crate::store::port::{Cursor, MAX_PAGE_BYTES, Table};

/// Optimistic-concurrency retries of one update.
const UPDATE_RETRIES: usize = 64;

/// Jittered pause before retrying an optimistic write that lost a race, so a
/// burst of writers on one entity spreads out instead of colliding again.
async fn backoff(attempt: usize) {
    let cap_ms = 1u64 << attempt.min(5); // 1, 2, 4 ... 32 ms
    let jitter = (uuid::Uuid::new_v4().as_u128() % (cap_ms as u128 * 1000)) as u64;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// The update time of an entity written again: now, and always later than
/// the previous one (a PATCH in the same millisecond still moves it).
fn next_update_ms(previous: u64) -> Result<u64> {
    previous
        .checked_add(1)
        .map(|next| now_ms().max(next))
        .ok_or_else(|| Error::internal(format!("update time {previous} cannot increase")))
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

/// One revision of an entity, as [`Registry::history`] answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub record: Record,
    /// False for a record of a change that did not happen.
    pub applied: bool,
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
    list: EntityList,
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
        self.list.position()
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
        let page = self.list.next_page(limit).await?;
        if page.exhausted {
            self.done = true;
        }
        // A cheap filter (or none) is checked item by item, and decoding
        // stops at the last match wanted; an expensive one (long LIKE
        // patterns over much text) runs over the decoded page on the
        // blocking pool.
        let text_bytes = page.bytes();
        let blocking = self
            .filter
            .as_ref()
            .is_some_and(|f| text_bytes.saturating_mul(f.cost_per_byte()) >= BLOCKING_FILTER_WORK);
        let mut found: Vec<Found> = Vec::new();
        for i in 0..page.len() {
            let cursor = page.cursor(i);
            self.items_read = self.items_read.saturating_add(1);
            self.bytes_read = self.bytes_read.saturating_add(page.item_bytes(i));
            let Some(entity) = page.entity(i).await? else {
                self.list.seek(cursor);
                continue;
            };
            let admitted = self.narrow.admits(&entity)
                && (blocking || self.filter.as_ref().is_none_or(|f| f.matches(&entity)));
            self.list.seek(cursor.clone());
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
                self.list.seek(last.cursor.clone());
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
    /// How long a block of reserved ids is handed out (see
    /// `store::layout::entities::IdBlocks`): ids of different processes are
    /// out of creation order by at most this much.
    pub id_block_age: Duration,
    /// How long a page of a global list is kept and served again by this
    /// process (`MR_LIST_CACHE_MS`; see `store::layout::entities::PageCache`);
    /// zero: never.
    pub list_cache: Duration,
    /// How long a process counts a caller's reads of a version before it
    /// writes them (`MR_USAGE_WINDOW_MS`; see `domain::usage`).
    pub usage_window: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            claim_lease: Duration::from_secs(10),
            id_block_age: Duration::from_secs(1),
            list_cache: Duration::ZERO,
            usage_window: Duration::from_secs(10),
        }
    }
}

/// The registry over one metadata table.
#[derive(Clone)]
pub struct Registry {
    layout: Layout,
    pub(super) entities: Entities,
    config: RegistryConfig,
    pub(super) usage: Arc<UsageRecorder>,
}

impl Registry {
    pub fn new(table: Arc<dyn Table>, config: RegistryConfig) -> Self {
        let layout = Layout::new(table, config.id_block_age)
            .with_list_cache(config.list_cache)
            .with_orphan_age(config.claim_lease);
        Registry {
            entities: layout.entities(),
            usage: UsageRecorder::new(layout.usage(), config.usage_window),
            layout,
            config,
        }
    }

    /// Write usage records through `table` (a reading function's table
    /// refuses every write; see `store::port::WritesUnder`).
    pub fn with_usage_table(mut self, table: Arc<dyn Table>) -> Self {
        self.layout = self.layout.with_usage_table(table);
        self.usage = UsageRecorder::new(self.layout.usage(), self.config.usage_window);
        self
    }

    /// How long a claim (or a ledger record) whose write is missing is
    /// honoured: a change older than this that did not land never will.
    pub fn claim_lease(&self) -> Duration {
        self.config.claim_lease
    }

    /// The table's layout: the repositories of the registry's items, for
    /// the storage-event registrar and the upload extension.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(super) async fn load(&self, family: Family, id: u64) -> Result<Option<(Entity, u64)>> {
        self.entities.load(family, id).await
    }

    /// One entity by id; `kind` narrows (a metric is not found as a model artifact).
    pub async fn get(&self, family: Family, kind: Option<Kind>, id: u64) -> Result<Entity> {
        match self.load(family, id).await? {
            Some((e, _)) if kind.is_none_or(|k| k == e.kind) => Ok(e),
            _ => Err(not_found(family, id)),
        }
    }

    /// Take `key` for entity `e`, recovering claims abandoned by a crash.
    async fn claim(&self, key: &ClaimKey, e: &Entity, what: &str) -> Result<()> {
        let family = match key {
            ClaimKey::Name { family, .. } | ClaimKey::ExternalId { family, .. } => *family,
        };
        for _ in 0..8 {
            let now = now_ms();
            let Some(held) = self.entities.try_claim(key, e, now).await? else {
                return Ok(());
            };
            let holder = self.entities.slot(family, held.claim.id).await?;
            if let Slot::Live(holder, _) = &holder
                && key.held_by(holder)
            {
                return Err(Error::Conflict(format!("{what} already exists")));
            }
            let lease = u64::try_from(self.config.claim_lease.as_millis()).unwrap_or(u64::MAX);
            if now < held.claim.at.saturating_add(lease) {
                return Err(Error::Conflict(format!(
                    "{what} already exists (being created)"
                )));
            }
            // The holder crashed or moved on: fence its id, then take the claim over.
            self.entities.fence(family, held.claim.id, &holder).await?;
            if self.entities.take_over(key, &held, e, now).await? {
                return Ok(());
            }
        }
        Err(Error::unavailable(format!(
            "too much contention on {what}, retry"
        )))
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
        super::governance::check_version_name(family, &name)?;
        // Everything the item holds is known but its id: count it with the
        // widest id there is, so that an entity too large (or with keys too
        // long) is refused before anything, even the counter, is written.
        let (parent, external_id) = (new.parent, new.external_id.clone());
        let mut entity = Entity::create(new, u64::MAX, name.clone(), now_ms());
        // What governance shows (a version's approval state) is not the client's to set.
        entity.gov.show(entity.kind, &mut entity.custom);
        self.entities.check(&entity)?;
        // Clients take a parent's highest child id as its latest child
        // (KServe: a model's latest version): it must follow every child
        // created before, whichever process made them.
        let above = match parent {
            Some(p) if family.ordered_children() => self.entities.last_child_id(family, p).await?,
            _ => 0,
        };
        let id = self.entities.next_id(family, above).await?;
        // The claims carry the entity's id and times (a name claimed in a
        // parent is the entity's entry in that parent's lists).
        let now = now_ms();
        (entity.id, entity.create_ms, entity.update_ms) = (id, now, now);
        let name_key = ClaimKey::Name {
            family,
            parent,
            name: name.clone(),
        };
        let what = match parent {
            Some(p) => format!("{} named '{name}' in parent {p}", family.label()),
            None => format!("{} named '{name}'", family.label()),
        };
        if family.unique_names() {
            self.claim(&name_key, &entity, &what).await?;
        }
        if let Some(external_id) = external_id {
            let what = format!("{} with externalId '{external_id}'", family.label());
            let key = ClaimKey::ExternalId {
                family,
                external_id,
            };
            if let Err(e) = self.claim(&key, &entity, &what).await {
                self.entities.release(&name_key, id).await;
                return Err(e);
            }
        }
        if self.entities.insert(&entity).await? {
            Ok(entity)
        } else {
            Err(Error::Conflict(format!(
                "{what} was taken over while being created, retry"
            )))
        }
    }

    /// Apply a PATCH; concurrent updates are serialized by the item version.
    pub async fn update(&self, family: Family, id: u64, patch: &Patch) -> Result<Entity> {
        let references = patch.fields.contains_key(fields::MODEL_VERSION_ID);
        let updated = self
            .rewrite(family, id, Action::Update, references, |e| {
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
                patch.apply(e);
                Ok(true)
            })
            .await?;
        if family == Family::Artifact {
            self.artifact_changed(&updated).await?;
        }
        Ok(updated)
    }

    /// Read-modify-write of one entity, recorded in the ledger as `action`:
    /// `change` edits the entity as it is and says whether it changed
    /// anything (an unchanged entity is not written, so its update time
    /// stays); retried, calling `change` again, on concurrent updates. A
    /// new externalId is claimed (and the old one released);
    /// `references`: check that the ids it refers to exist.
    pub(crate) async fn rewrite(
        &self,
        family: Family,
        id: u64,
        action: Action,
        references: bool,
        mut change: impl FnMut(&mut Entity) -> Result<bool>,
    ) -> Result<Entity> {
        for attempt in 0..UPDATE_RETRIES {
            let Some((mut e, version)) = self.load(family, id).await? else {
                return Err(not_found(family, id));
            };
            let (name, parent, old_xid) = (e.name.clone(), e.parent, e.external_id.clone());
            // A version's approval decisions are about its content.
            let decided = (e.kind == Kind::ModelVersion
                && !e.gov.votes.is_empty()
                && matches!(action, Action::Update | Action::Revert))
            .then(|| e.clone());
            if !change(&mut e)? {
                return Ok(e);
            }
            if let Some(before) = &decided
                && governance::content_changed(before, &e)
            {
                governance::void_votes(&mut e);
            }
            if e.name != name || e.parent != parent {
                return Err(Error::internal(format!(
                    "{} {id}: a change may not move or rename it",
                    family.label()
                )));
            }
            if references {
                self.check_references(e.kind, &e.fields).await?;
            }
            e.update_ms = next_update_ms(e.update_ms)?;
            // The merged entity must fit before anything (a claim) is written.
            let write = self.entities.prepare(&e, version)?.as_action(action);
            let new_xid = e
                .external_id
                .clone()
                .filter(|x| Some(x) != old_xid.as_ref());
            if let Some(x) = &new_xid {
                let what = format!("{} with externalId '{x}'", family.label());
                let key = ClaimKey::ExternalId {
                    family,
                    external_id: x.clone(),
                };
                self.claim(&key, &e, &what).await?;
            }
            if self.entities.replace(write).await? {
                if let (Some(_), Some(old)) = (&new_xid, old_xid) {
                    let key = ClaimKey::ExternalId {
                        family,
                        external_id: old,
                    };
                    self.entities.release(&key, id).await;
                }
                return Ok(e);
            }
            backoff(attempt).await;
        }
        Err(busy(family, id))
    }

    /// Read-modify-write of one entity for rules that merge into its current
    /// state (the `customProperties` of a PATCH replace the whole map; this
    /// can add keys): [`Registry::rewrite`] of an update that keeps the
    /// entity's externalId.
    pub async fn modify(
        &self,
        family: Family,
        id: u64,
        mut change: impl FnMut(&mut Entity) -> Result<bool>,
    ) -> Result<Entity> {
        self.rewrite(family, id, Action::Update, false, |e| {
            let external_id = e.external_id.clone();
            let changed = change(e)?;
            if e.external_id != external_id {
                return Err(Error::internal(format!(
                    "{} {id}: modify may not change its externalId",
                    family.label()
                )));
            }
            Ok(changed)
        })
        .await
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
            let key = ClaimKey::ExternalId {
                family,
                external_id: x.to_string(),
            };
            let Some(id) = self.entities.claimant(&key).await? else {
                return Err(missing());
            };
            return match self.load(family, id).await? {
                Some((e, _)) if admits(&e) => Ok(e),
                _ => Err(missing()),
            };
        }
        let Some(name) = name else {
            return bad_request("give name (with parentResourceId where it applies) or externalId");
        };
        // `@<alias>` names the version an alias of the model points at.
        if let (Family::ModelVersion, Some(alias), Some(model)) =
            (family, name.strip_prefix('@'), parent)
        {
            return match self.alias(model, alias).await {
                Ok(v) if kind.is_none_or(|k| k == v.kind) => Ok(v),
                Ok(_) | Err(Error::NotFound(_)) => Err(missing()),
                Err(e) => Err(e),
            };
        }
        let mut found: Vec<Entity> = self
            .entities
            .named(family, parent, name)
            .await?
            .into_iter()
            .filter(|e| admits(e))
            .collect();
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
        let of = ListOf {
            family,
            parent: match scope {
                Scope::Parent(p) => Some(p),
                Scope::All => None,
            },
            order: params.order_by,
            descending: params.descending,
        };
        let list = self.entities.list(of, params.after.clone())?;
        let filtered = params.filter.is_some()
            || narrow.kind.is_some()
            || narrow.name.is_some()
            || narrow.external_id.is_some()
            || narrow.steps.is_some();
        Ok(Scan {
            list,
            narrow: narrow.clone(),
            filter: params.filter.clone().map(Arc::new),
            filtered,
            done: false,
            items_read: 0,
            bytes_read: 0,
        })
    }

    /// Entities of `family` by id, in their order (None where there is
    /// none): one BatchGetItem per 100.
    pub async fn get_many(&self, family: Family, ids: &[u64]) -> Result<Vec<Option<Entity>>> {
        self.entities.get_many(family, ids).await
    }

    /// The latest version (highest id) of each of `models`: one Query per
    /// model, at once, and one BatchGetItem.
    pub async fn latest_versions(&self, models: &[u64]) -> Result<Vec<Option<Entity>>> {
        let ids = futures_util::future::try_join_all(
            models
                .iter()
                .map(|m| self.entities.last_child_id(Family::ModelVersion, *m)),
        )
        .await?;
        let found: Vec<u64> = ids.iter().copied().filter(|id| *id > 0).collect();
        let mut versions = self
            .get_many(Family::ModelVersion, &found)
            .await?
            .into_iter();
        Ok(ids
            .iter()
            .map(|id| {
                if *id > 0 {
                    versions.next().flatten()
                } else {
                    None
                }
            })
            .collect())
    }

    /// `POST /model_versions/{id}/artifacts`: create (true) or update (false) an
    /// artifact of a version. Metrics and parameters without id upsert by name.
    pub async fn upsert_version_artifact(
        &self,
        version_id: u64,
        upsert: ArtifactUpsert,
    ) -> Result<(Entity, bool)> {
        self.get(Family::ModelVersion, None, version_id).await?;
        let (artifact, created) = self.upsert_child_artifact(version_id, upsert, &[]).await?;
        // (An update has voided the version's decisions already.)
        if created {
            self.artifact_changed(&artifact).await?;
        }
        Ok((artifact, created))
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
    /// version (its entry in the version's lists), then record the link on
    /// the artifact.
    async fn attach(&self, e: Entity, version_id: u64) -> Result<Entity> {
        let family = Family::Artifact;
        // One more link must still fit, checked before the claim and the
        // link item are written (counted with the widest version number).
        let mut grown = e.clone();
        grown.links.push(version_id);
        self.entities.check(&grown)?;
        drop(grown);
        let key = ClaimKey::Name {
            family,
            parent: Some(version_id),
            name: e.name.clone(),
        };
        let what = format!("artifact named '{}' in model version {version_id}", e.name);
        self.claim(&key, &e, &what).await?;
        for attempt in 0..UPDATE_RETRIES {
            let Some((mut cur, version)) = self.load(family, e.id).await? else {
                return Err(not_found(family, e.id));
            };
            if cur.belongs_to(version_id) {
                return Ok(cur);
            }
            cur.links.push(version_id);
            let write = match self.entities.prepare(&cur, version) {
                Ok(w) => w,
                Err(err) => {
                    // It grew meanwhile: take back the claim.
                    self.entities.release(&key, e.id).await;
                    return Err(err);
                }
            };
            if self.entities.replace_alone(write).await? {
                return Ok(cur);
            }
            backoff(attempt).await;
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

pub(super) fn not_found(family: Family, id: u64) -> Error {
    Error::NotFound(format!("{} {id} not found", family.label()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_times_never_wrap() {
        assert!(next_update_ms(u64::MAX).is_err());
        assert!(next_update_ms(5).unwrap() > 5);
    }
}
