//! Which layout a table holds, and the copy of a table of the first layout
//! (one partition per family, five local and two global indexes) into the
//! current one.
//!
//! A table of the current layout holds the item `META/layout` (written by
//! the first writer that finds the table empty). A table without it that
//! holds id counters was written by the first layout:
//! - an embedded data directory is migrated when it is opened: its file is
//!   renamed to `registry.layout1.redb` (the backup, kept), and every item is
//!   copied from it into a new `registry.redb`;
//! - a DynamoDB table is refused on first use, with the command that copies
//!   it into a new, empty table: `registry-local migrate-table --from OLD
//!   --to NEW` (its scan segments in parallel; resumable: it records where
//!   each segment got to in a checkpoint file, and every write is
//!   idempotent). A table being copied into holds counters but no layout
//!   mark until the copy ends, so functions refuse it until then.
//!
//! The copy rebuilds what the layout derives: entities are written again
//! through [`Entities::restore`] (home, member entries, claims), so old
//! claims, link items and tombstones are not copied; counters, the
//! storage-event ledger and upload path claims are copied as they are;
//! upload sessions move to their own partitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Layout;
use super::entities::family_of;
use crate::domain::entity::Entity;
use crate::domain::error::{Error, Result};
use crate::store::dynamodb::DynamoTable;
use crate::store::embedded::EmbeddedTable;
use crate::store::port::{Cond, Item, StoreError, Table};

/// The layout this code reads and writes.
pub const LAYOUT: u64 = 2;
const META: (&str, &str) = ("META", "layout");
/// The id counters, present in every table that ever had an entity.
const COUNTERS: [&str; 3] = ["context", "artifact", "execution"];

/// What a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The current layout.
    Current,
    /// Nothing yet.
    Empty,
    /// Items of the first layout.
    First,
}

/// Which layout `table` holds (at most four consistent reads).
pub async fn inspect(table: &dyn Table) -> std::result::Result<Found, StoreError> {
    if let Some(item) = table.get(META.0, META.1).await? {
        let layout: u64 = item.body.trim().parse().unwrap_or(0);
        if layout != LAYOUT {
            return Err(StoreError::internal(format!(
                "the table holds layout {} and this release reads layout {LAYOUT}: \
                 run the release that wrote it, or migrate it",
                item.body.trim()
            )));
        }
        return Ok(Found::Current);
    }
    for counter in COUNTERS {
        if table.get("SEQ", counter).await?.is_some() {
            return Ok(Found::First);
        }
    }
    Ok(Found::Empty)
}

/// Mark `table` as holding the current layout (a no-op if it is marked).
pub async fn stamp(table: &dyn Table) -> std::result::Result<(), StoreError> {
    let item = Item::plain(META.0, META.1, 1, LAYOUT.to_string());
    match table.put(item, Cond::Absent).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A DynamoDB table checked on its first use, not at start (a function
/// starts without a network call): the first call of the process reads
/// which layout the table holds, marks an empty one (unless `read_only`),
/// and refuses every call, with the command that migrates it, if it holds
/// the first layout. A failed check (the table unreachable) is tried again
/// by the next call.
pub struct Guarded {
    inner: Arc<dyn Table>,
    name: String,
    read_only: bool,
    state: tokio::sync::OnceCell<std::result::Result<(), String>>,
}

impl Guarded {
    pub fn new(inner: Arc<dyn Table>, name: &str, read_only: bool) -> Guarded {
        Guarded {
            inner,
            name: name.to_string(),
            read_only,
            state: tokio::sync::OnceCell::new(),
        }
    }

    async fn ready(&self) -> std::result::Result<(), StoreError> {
        let checked = self
            .state
            .get_or_try_init(|| async {
                Ok::<_, StoreError>(match inspect(self.inner.as_ref()).await? {
                    Found::Current => Ok(()),
                    Found::Empty if self.read_only => Ok(()),
                    Found::Empty => stamp(self.inner.as_ref()).await.map(|()| Ok(()))?,
                    Found::First => {
                        let message = first_layout_message(&self.name);
                        tracing::error!("{message}");
                        Err(message)
                    }
                })
            })
            .await?;
        checked.clone().map_err(StoreError::unavailable)
    }
}

/// What a function says about a DynamoDB table of the first layout.
pub fn first_layout_message(table: &str) -> String {
    format!(
        "table {table} holds the first storage layout (or a copy into it has not \
         finished): copy it into a new table with \
         `registry-local migrate-table --from {table} --to NEW_TABLE` and set \
         MR_TABLE=NEW_TABLE (infra/README.md: Migrating a table of the first layout)"
    )
}

#[async_trait::async_trait]
impl Table for Guarded {
    async fn get(&self, pk: &str, sk: &str) -> std::result::Result<Option<Item>, StoreError> {
        self.ready().await?;
        self.inner.get(pk, sk).await
    }
    async fn get_many(
        &self,
        keys: &[(String, String)],
    ) -> std::result::Result<Vec<Option<Item>>, StoreError> {
        self.ready().await?;
        self.inner.get_many(keys).await
    }
    async fn put(&self, item: Item, cond: Cond) -> std::result::Result<(), StoreError> {
        self.ready().await?;
        self.inner.put(item, cond).await
    }
    async fn put_provisional(&self, item: Item, cond: Cond) -> std::result::Result<(), StoreError> {
        self.ready().await?;
        self.inner.put_provisional(item, cond).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> std::result::Result<(), StoreError> {
        self.ready().await?;
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(
        &self,
        query: &crate::store::port::Query,
    ) -> std::result::Result<crate::store::port::QueryPage, StoreError> {
        self.ready().await?;
        self.inner.query(query).await
    }
    async fn increment(&self, pk: &str, sk: &str, by: u64) -> std::result::Result<u64, StoreError> {
        self.ready().await?;
        self.inner.increment(pk, sk, by).await
    }
}

/// What a copy did.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Copied {
    /// Items read from the old table.
    pub read: u64,
    /// Entities written again.
    pub entities: u64,
    /// Items copied as they are (counters, object states, path claims) or moved (sessions).
    pub copied: u64,
    /// Items the new layout derives again (claims, link items, tombstones).
    pub rebuilt: u64,
    /// Items of no known kind (left out, and logged).
    pub unknown: u64,
}

impl Copied {
    fn add(&mut self, other: &Copied) {
        self.read += other.read;
        self.entities += other.entities;
        self.copied += other.copied;
        self.rebuilt += other.rebuilt;
        self.unknown += other.unknown;
    }
}

/// Copy one item of the first layout into `target`.
pub async fn copy_item(target: &Layout, item: &Item, copied: &mut Copied) -> Result<()> {
    copied.read += 1;
    let pk = item.pk.as_str();
    if let Some(family) = family_of(pk) {
        if item.sk.starts_with("L#") || item.body == super::entities::TOMBSTONE {
            copied.rebuilt += 1;
            return Ok(());
        }
        let e: Entity = serde_json::from_str(&item.body).map_err(|err| {
            Error::internal(format!(
                "corrupt entity {pk}/{} in the old table: {err}",
                item.sk
            ))
        })?;
        if e.kind.family() != family {
            return Err(Error::internal(format!(
                "entity {pk}/{} of the old table is a {}",
                item.sk,
                e.kind.family().label()
            )));
        }
        target.entities().restore(&e, item.version).await?;
        copied.entities += 1;
        return Ok(());
    }
    let moved = if pk == "SEQ" {
        // Counters: their value is the version (DynamoDB's `ADD v`), and the
        // embedded store also keeps it as the body.
        Item::plain(pk, item.sk.as_str(), item.version, item.version.to_string())
    } else if pk == "UPLOAD" {
        Item::plain(
            format!("UPLOAD@{}", item.sk),
            "-",
            item.version,
            item.body.clone(),
        )
    } else if pk.starts_with("OBJ#") || pk.starts_with("UPLOAD#PATH#") {
        Item::plain(pk, item.sk.as_str(), item.version, item.body.clone())
    } else if pk.starts_with("N#") || pk.starts_with("X#") {
        copied.rebuilt += 1;
        return Ok(());
    } else {
        tracing::warn!(pk, sk = item.sk, "left out an item of no known kind");
        copied.unknown += 1;
        return Ok(());
    };
    target.table().put(moved, Cond::Always).await?;
    copied.copied += 1;
    Ok(())
}

/// The embedded store of `dir`, migrated from the first layout if that is
/// what it holds (see the module's doc), and marked with the current one
/// unless `read_only`.
pub async fn open_embedded(dir: &Path, read_only: bool) -> Result<EmbeddedTable> {
    let table = EmbeddedTable::open(dir)?;
    match inspect(&table).await? {
        Found::Current => return Ok(table),
        Found::Empty if read_only => return Ok(table),
        Found::Empty => {
            stamp(&table).await?;
            return Ok(table);
        }
        Found::First if read_only => {
            return Err(Error::unavailable(format!(
                "{} holds the first storage layout: start a writer once to migrate it",
                dir.display()
            )));
        }
        Found::First => {}
    }
    drop(table);
    let file = dir.join(EmbeddedTable::FILE);
    let backup = dir.join("registry.layout1.redb");
    if backup.exists() {
        return Err(Error::internal(format!(
            "{} holds the first storage layout and {} exists (a migration that stopped?): \
             move the backup away, or put it back as {}, and start again",
            dir.display(),
            backup.display(),
            file.display()
        )));
    }
    std::fs::rename(&file, &backup)
        .map_err(|e| Error::internal(format!("cannot move {} aside: {e}", file.display())))?;
    tracing::warn!(
        backup = %backup.display(),
        "the data directory holds the first storage layout: migrating (the old file is kept)"
    );
    let old = EmbeddedTable::open_file(&backup)?;
    let new = EmbeddedTable::open(dir)?;
    let target = Layout::new(Arc::new(new.clone()), std::time::Duration::from_secs(1));
    let mut copied = Copied::default();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = old.dump(after.as_ref().map(|(p, s)| (p.as_str(), s.as_str())), 500)?;
        let Some(last) = page.last() else { break };
        after = Some((last.pk.clone(), last.sk.clone()));
        for item in &page {
            copy_item(&target, item, &mut copied).await?;
        }
    }
    stamp(&new).await?;
    tracing::warn!(?copied, backup = %backup.display(), "migrated to storage layout {LAYOUT}");
    Ok(new)
}

/// Where a table copy got to: per scan segment, the key to resume after
/// (absent: not started; `done`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    from: String,
    to: String,
    /// Scan segments of the copy (fixed by its first run).
    total: i32,
    segments: BTreeMap<i32, Progress>,
    copied: Copied,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Progress {
    After { pk: String, sk: String },
    Done,
}

/// `registry-local migrate-table --from OLD --to NEW [--checkpoint FILE]
/// [--segments N]`: copy a DynamoDB table of the first layout into a new
/// table of the current one (created from `infra/dynamodb/table.json` if
/// missing), resumable from the checkpoint file. Returns the summary.
pub async fn migrate_table(
    client: aws_sdk_dynamodb::Client,
    from: &str,
    to: &str,
    checkpoint: &Path,
    segments: i32,
) -> Result<Copied> {
    if from == to {
        return Err(Error::BadRequest("--from and --to must differ".into()));
    }
    let old = DynamoTable::new(client.clone(), from);
    let new = DynamoTable::new(client, to);
    new.create_table_if_missing().await?;
    match inspect(&old).await? {
        Found::First => {}
        Found::Current => {
            return Err(Error::BadRequest(format!(
                "{from} already holds layout {LAYOUT}"
            )));
        }
        Found::Empty => return Err(Error::BadRequest(format!("{from} holds nothing to copy"))),
    }
    let state: Checkpoint = match std::fs::read_to_string(checkpoint) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| Error::BadRequest(format!("checkpoint {}: {e}", checkpoint.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint {
            from: from.to_string(),
            to: to.to_string(),
            total: segments.clamp(1, 64),
            ..Checkpoint::default()
        },
        Err(e) => return Err(Error::internal(format!("{}: {e}", checkpoint.display()))),
    };
    if state.from != from || state.to != to {
        return Err(Error::BadRequest(format!(
            "checkpoint {} is of a copy from {} to {}",
            checkpoint.display(),
            state.from,
            state.to
        )));
    }
    if state.segments.is_empty() && inspect(&new).await? != Found::Empty {
        return Err(Error::BadRequest(format!(
            "{to} is not empty: copy into a new table that nothing uses (ids and \
             entities written there meanwhile would be overwritten)"
        )));
    }
    let total = state.total;
    let target = Layout::new(Arc::new(new.clone()), std::time::Duration::from_secs(1));
    let state = tokio::sync::Mutex::new(state);
    futures_util::future::try_join_all(
        (0..total).map(|segment| copy_segment(&old, &target, segment, &state, checkpoint)),
    )
    .await?;
    stamp(&new).await?;
    Ok(state.into_inner().copied)
}

/// Copy scan segment `segment` page by page, recording after each page
/// where it got to.
async fn copy_segment(
    old: &DynamoTable,
    target: &Layout,
    segment: i32,
    state: &tokio::sync::Mutex<Checkpoint>,
    checkpoint: &Path,
) -> Result<()> {
    let (total, mut after) = {
        let state = state.lock().await;
        let after = match state.segments.get(&segment) {
            Some(Progress::Done) => return Ok(()),
            Some(Progress::After { pk, sk }) => Some((pk.clone(), sk.clone())),
            None => None,
        };
        (state.total, after)
    };
    loop {
        let (items, next) = old.scan_page(segment, total, after.as_ref()).await?;
        let mut copied = Copied::default();
        for item in &items {
            copy_item(target, item, &mut copied).await?;
        }
        after = next;
        let mut state = state.lock().await;
        state.copied.add(&copied);
        let progress = match &after {
            Some((pk, sk)) => Progress::After {
                pk: pk.clone(),
                sk: sk.clone(),
            },
            None => Progress::Done,
        };
        state.segments.insert(segment, progress);
        save(checkpoint, &state)?;
        if after.is_none() {
            return Ok(());
        }
    }
}

fn save(path: &Path, state: &Checkpoint) -> Result<()> {
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::internal(e.to_string()))?;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::internal(format!("checkpoint {}: {e}", path.display())))
}
