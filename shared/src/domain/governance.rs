//! Governance over the ledger (`store::layout::ledger`): the history of an
//! entity and its past states, revert, aliases of a model's versions, the
//! audit of every change and the check of every chain.
//!
//! Every change here is an entity revision like any other, recorded with
//! its action and caller before it becomes visible:
//! - a revert writes a new revision whose content (own fields, custom
//!   properties, externalId) is an earlier one's; governance state (aliases,
//!   labels) stays as it is;
//! - an alias is part of its model (`Entity::gov.aliases`): setting, moving
//!   or removing it is one conditional write of the model, so concurrent
//!   moves are serialized and each is one record. The version an alias
//!   points at carries it as a label (a custom property with an empty
//!   string value, what the Kubeflow UI shows as a label), put on after
//!   the move and taken off the previous version; labels a crash or a
//!   concurrent move left behind are taken off by the alias's next write
//!   (`gov.moved_from`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::entity::{Entity, Family};
use super::error::{Error, Result, bad_request};
use super::registry::{Action, Record, Registry, Revision, Verdict, not_found};
use super::value::MetadataValue;
use crate::domain::paging::OrderBy;
use crate::store::layout::ListOf;
use crate::store::layout::ledger::AuditScope;
use crate::store::port::Cursor;

/// Most aliases one model may have.
pub const MAX_ALIASES: usize = 100;
/// Longest alias, in characters.
pub const MAX_ALIAS: usize = 63;
/// Most records one audit request reads (its answer may then be short,
/// with a token to go on).
pub const MAX_AUDIT_SCAN: usize = 5_000;
/// Most entities one verification request checks, and how long it may take.
pub const MAX_VERIFY_ENTITIES: usize = 500;
pub const MAX_VERIFY_TIME: Duration = Duration::from_secs(10);

/// Version names that start with `@` are reserved: `@<alias>` finds the
/// version the alias points at (`model-registry://<model>/@<alias>`).
pub fn check_version_name(family: Family, name: &str) -> Result<()> {
    if family == Family::ModelVersion && name.starts_with('@') {
        return bad_request(format!(
            "model version name '{name}': names starting with '@' are reserved for aliases \
             ('<model>/@<alias>' finds the version an alias points at)"
        ));
    }
    Ok(())
}

/// An alias: 1 to [`MAX_ALIAS`] letters, digits, `-`, `_` or `.`, starting
/// with a letter or digit.
pub fn check_alias(alias: &str) -> Result<()> {
    let ok = !alias.is_empty()
        && alias.chars().count() <= MAX_ALIAS
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && alias.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        bad_request(format!(
            "alias '{alias}': 1 to {MAX_ALIAS} letters, digits, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

/// A request of the audit.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only one entity's records.
    pub entity: Option<(Family, u64)>,
    /// Only records of entities of this family.
    pub family: Option<Family>,
    pub actor: Option<String>,
    /// Only records at or after / at or before (epoch ms).
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub page_size: usize,
    /// Resume after this position (a previous answer's `next`).
    pub after: Option<Cursor>,
}

/// A page of the audit, newest first.
#[derive(Debug, Clone)]
pub struct AuditAnswer {
    pub items: Vec<Revision>,
    /// Where the next page starts, if anything may be left.
    pub next: Option<Cursor>,
}

/// What a verification request checked.
#[derive(Debug, Clone, Default)]
pub struct ChainReport {
    pub entities: usize,
    pub records: usize,
    /// The chains that do not hold: entity and what was found.
    pub broken: Vec<(Family, u64, Verdict)>,
    /// Where the next request goes on; None when every entity was checked.
    pub next: Option<String>,
}

impl Registry {
    /// Up to `limit` revisions of an entity, newest first, below revision
    /// `before` (all when None), and the revision the next page goes
    /// below. A record above the entity's current revision is a change
    /// that did not happen (its writer lost a race or died), marked so.
    pub async fn history(
        &self,
        family: Family,
        id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Revision>, Option<u64>)> {
        let Some((_, version)) = self.load(family, id).await? else {
            return Err(not_found(family, id));
        };
        let (records, exhausted) = self
            .entities
            .ledger()
            .newest(family, id, before, limit.max(1))
            .await?;
        let next = if exhausted {
            None
        } else {
            records.last().map(|r| r.revision)
        };
        Ok((
            records
                .into_iter()
                .map(|record| Revision {
                    applied: record.revision <= version,
                    record,
                })
                .collect(),
            next,
        ))
    }

    /// The entity as it was at `ms` (epoch milliseconds): its newest
    /// revision made at or before then. Revisions' times grow with their
    /// numbers, so this is a binary search (a Query per step).
    pub async fn as_of(&self, family: Family, id: u64, ms: u64) -> Result<Entity> {
        let Some((_, version)) = self.load(family, id).await? else {
            return Err(not_found(family, id));
        };
        let ledger = self.entities.ledger();
        let (mut lo, mut hi, mut best) = (1u64, version, None::<Record>);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            match ledger.at_or_below(family, id, mid).await? {
                Some(r) if r.at_ms <= ms => {
                    lo = mid + 1;
                    best = Some(r);
                }
                Some(r) if r.revision > 0 => hi = r.revision - 1,
                Some(_) => break,
                None => lo = mid + 1,
            }
        }
        best.map(|r| r.entity).ok_or_else(|| {
            Error::NotFound(format!(
                "{} {id} has no recorded revision at or before {ms}",
                family.label()
            ))
        })
    }

    /// Check the ledger's chain of one entity (see `store::layout::ledger`).
    pub async fn verify(&self, family: Family, id: u64) -> Result<Verdict> {
        let Some((e, version)) = self.load(family, id).await? else {
            return Err(not_found(family, id));
        };
        self.entities.ledger().verify(&e, version).await
    }

    /// Write a new revision of an entity whose content (own fields, custom
    /// properties, externalId) is that of its revision `revision`.
    pub async fn revert(&self, family: Family, id: u64, revision: u64) -> Result<Entity> {
        let Some((_, version)) = self.load(family, id).await? else {
            return Err(not_found(family, id));
        };
        let missing = || {
            Error::NotFound(format!(
                "{} {id} has no revision {revision} to revert to",
                family.label()
            ))
        };
        if revision == 0 || revision > version {
            return Err(missing());
        }
        let target = self
            .entities
            .ledger()
            .at_or_below(family, id, revision)
            .await?
            .filter(|r| r.revision == revision)
            .ok_or_else(missing)?
            .entity;
        self.rewrite(family, id, Action::Revert, true, |e| {
            let before = e.clone();
            e.fields = target.fields.clone();
            e.custom = target.custom.clone();
            e.external_id = target.external_id.clone();
            // Labels belong to the aliases as they are now.
            for alias in &before.gov.labels {
                e.custom
                    .insert(alias.clone(), MetadataValue::String(String::new()));
            }
            Ok(*e != before)
        })
        .await
    }

    /// The aliases of model `model`: alias → version id (consistent).
    pub async fn aliases(&self, model: u64) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .get(Family::RegisteredModel, None, model)
            .await?
            .gov
            .aliases)
    }

    /// The version alias `alias` of model `model` points at (consistent:
    /// the model, then the version).
    pub async fn alias(&self, model: u64, alias: &str) -> Result<Entity> {
        let m = self.get(Family::RegisteredModel, None, model).await?;
        let Some(version) = m.gov.aliases.get(alias) else {
            return Err(Error::NotFound(format!(
                "registered model {model} has no alias '{alias}'"
            )));
        };
        self.get(Family::ModelVersion, None, *version).await
    }

    /// Point alias `alias` of model `model` at version `to` (None: remove
    /// it). One audited write of the model, then the labels: the new
    /// version gets the alias's label, the previous one loses it. Answers
    /// the model as written and the version the alias pointed at before.
    pub async fn set_alias(
        &self,
        model: u64,
        alias: &str,
        to: Option<u64>,
    ) -> Result<(Entity, Option<u64>)> {
        check_alias(alias)?;
        if let Some(v) = to {
            let version = self.get(Family::ModelVersion, None, v).await?;
            if version.parent != Some(model) {
                return bad_request(format!(
                    "model version {v} is not a version of registered model {model}"
                ));
            }
        }
        // Labels an earlier move of this alias may have left behind.
        let m = self.get(Family::RegisteredModel, None, model).await?;
        let (current, stale) = (
            m.gov.aliases.get(alias).copied(),
            m.gov.moved_from.get(alias).copied(),
        );
        if let Some(old) = stale.filter(|o| Some(*o) != current && Some(*o) != to) {
            self.label(old, alias, false).await?;
        }
        let mut previous = None;
        let written = self
            .rewrite(Family::RegisteredModel, model, Action::Alias, false, |e| {
                let gov = &mut e.gov;
                previous = gov.aliases.get(alias).copied();
                if previous == to {
                    return Ok(false);
                }
                match to {
                    Some(v) => {
                        if previous.is_none() && gov.aliases.len() >= MAX_ALIASES {
                            return bad_request(format!(
                                "registered model {model} has {MAX_ALIASES} aliases, the most it may have"
                            ));
                        }
                        gov.aliases.insert(alias.to_string(), v);
                    }
                    None => {
                        gov.aliases.remove(alias);
                    }
                }
                match previous {
                    Some(p) => gov.moved_from.insert(alias.to_string(), p),
                    None => gov.moved_from.remove(alias),
                };
                Ok(true)
            })
            .await?;
        if let Some(v) = to {
            self.label(v, alias, true).await?;
        }
        if let Some(p) = previous.filter(|p| Some(*p) != to) {
            self.label(p, alias, false).await?;
        }
        // A concurrent move may have taken the alias on after this one
        // (and its label off before this one put it on).
        if let Some(v) = to {
            let now = self.get(Family::RegisteredModel, None, model).await?;
            if now.gov.aliases.get(alias) != Some(&v) {
                self.label(v, alias, false).await?;
            }
        }
        Ok((written, previous))
    }

    /// Put alias `alias`'s label on version `id`, or take it off.
    async fn label(&self, id: u64, alias: &str, on: bool) -> Result<()> {
        self.rewrite(Family::ModelVersion, id, Action::Alias, false, |e| {
            let before = e.clone();
            let label = MetadataValue::String(String::new());
            if on {
                e.gov.labels.insert(alias.to_string());
                e.custom.insert(alias.to_string(), label);
            } else {
                e.gov.labels.remove(alias);
                if e.custom.get(alias) == Some(&label) {
                    e.custom.remove(alias);
                }
            }
            Ok(*e != before)
        })
        .await?;
        Ok(())
    }

    /// A page of the audit: records of every change newest first, with
    /// whether each change happened. Reads at most [`MAX_AUDIT_SCAN`]
    /// records (the answer may be short, with a position to go on).
    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditAnswer> {
        let ledger = self.entities.ledger();
        let scope = AuditScope {
            entity: q.entity,
            actor: q.actor.clone(),
            until_ms: q.until_ms,
        };
        let page_size = q.page_size.max(1);
        let mut after = q.after.clone();
        let mut found: Vec<Record> = Vec::new();
        let mut scanned = 0usize;
        let mut next = None;
        'read: loop {
            let want = (page_size - found.len()).clamp(16, 1000);
            let page = ledger.audit_page(&scope, after.clone(), want).await?;
            let read = page.records.len();
            for (i, (r, cursor)) in page.records.into_iter().enumerate() {
                scanned += 1;
                if q.since_ms.is_some_and(|s| r.at_ms < s) {
                    break 'read;
                }
                after = Some(cursor);
                let wanted = q.actor.as_ref().is_none_or(|a| *a == r.actor)
                    && q.family.is_none_or(|f| f == r.entity.kind.family())
                    && q.until_ms.is_none_or(|u| r.at_ms <= u);
                if wanted {
                    found.push(r);
                }
                if found.len() == page_size {
                    if i + 1 < read || !page.exhausted {
                        next = after.clone();
                    }
                    break 'read;
                }
            }
            if page.exhausted || read == 0 {
                break;
            }
            if scanned >= MAX_AUDIT_SCAN {
                next = after.clone();
                break;
            }
        }
        let refs: Vec<(Family, u64)> = found
            .iter()
            .map(|r| (r.entity.kind.family(), r.entity.id))
            .collect();
        let versions = self.entities.versions(&refs).await?;
        Ok(AuditAnswer {
            items: found
                .into_iter()
                .zip(versions)
                .map(|(record, v)| Revision {
                    applied: v.is_some_and(|v| record.revision <= v),
                    record,
                })
                .collect(),
            next,
        })
    }

    /// Check the chains of the registry's entities, family by family in id
    /// order, from `token` (a previous report's `next`; None: from the
    /// start): at most [`MAX_VERIFY_ENTITIES`] entities or
    /// [`MAX_VERIFY_TIME`] per call. Entities are listed from the global
    /// indexes (the newest may not be listed yet) and read consistently.
    pub async fn verify_all(&self, token: Option<&str>) -> Result<ChainReport> {
        let families = crate::store::layout::FAMILY_ORDER;
        let (mut at, mut after) = match token {
            None => (0, None),
            Some(t) => decode_verify_token(t, families.len())?,
        };
        let started = Instant::now();
        let mut report = ChainReport::default();
        while at < families.len() {
            let family = families[at];
            let list = self.entities.list(
                ListOf {
                    family,
                    parent: None,
                    order: OrderBy::Id,
                    descending: false,
                },
                after.clone(),
            )?;
            let page = list.next_page(100).await?;
            for i in 0..page.len() {
                if report.entities >= MAX_VERIFY_ENTITIES || started.elapsed() >= MAX_VERIFY_TIME {
                    report.next = Some(encode_verify_token(at, after.as_ref()));
                    return Ok(report);
                }
                let cursor = page.cursor(i);
                if let Some(listed) = page.entity(i).await?
                    && let Some((e, version)) = self.load(family, listed.id).await?
                {
                    let verdict = self.entities.ledger().verify(&e, version).await?;
                    report.entities += 1;
                    report.records += verdict.records;
                    if verdict.broken_at.is_some() {
                        report.broken.push((family, e.id, verdict));
                    }
                }
                after = Some(cursor);
            }
            if page.exhausted {
                at += 1;
                after = None;
            }
        }
        Ok(report)
    }
}

fn encode_verify_token(family: usize, c: Option<&Cursor>) -> String {
    let v = serde_json::json!([family, c.map(|c| [&c.index_key, &c.pk, &c.sk])]);
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_verify_token(token: &str, families: usize) -> Result<(usize, Option<Cursor>)> {
    let invalid = || Error::BadRequest(format!("nextPageToken '{token}' is not a valid token"));
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let (family, cursor): (usize, Option<(String, String, String)>) =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if family >= families {
        return Err(invalid());
    }
    Ok((
        family,
        cursor.map(|(index_key, pk, sk)| Cursor { index_key, pk, sk }),
    ))
}
