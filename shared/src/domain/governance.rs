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

use super::entity::{ApprovalPolicy, Decision, Entity, Family, Kind, Vote};
use super::error::{Error, Result, bad_request};
use super::filter::{FilterTarget, Scalar};
use super::paging::{ListParams, RawListParams};
use super::registry::{Action, Record, Registry, Revision, Verdict, not_found};
use super::registry::{Narrow, Scope};
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
            // Labels and approval state are governance's, as they are now.
            e.custom.retain(|k, _| !target.gov.owns(k));
            e.gov.show(e.kind, &mut e.custom);
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
        let m = self.get(Family::RegisteredModel, None, model).await?;
        if let Some(v) = to {
            let version = self.get(Family::ModelVersion, None, v).await?;
            if version.parent != Some(model) {
                return bad_request(format!(
                    "model version {v} is not a version of registered model {model}"
                ));
            }
            let protected = m
                .gov
                .policy
                .as_ref()
                .is_some_and(|p| p.protected_aliases.iter().any(|a| a == alias));
            if protected {
                let status = self.status(&m, &version).await?;
                if status.state != ApprovalState::Approved {
                    return Err(Error::Conflict(format!(
                        "alias '{alias}' of registered model {model} is protected: it may only point at an approved version, and model version {v} is not: {}",
                        status.why_not()
                    )));
                }
            }
        }
        // Labels an earlier move of this alias may have left behind.
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

/// Most approvals a policy may require.
pub const MAX_REQUIRED_APPROVALS: u32 = 10;
/// Most gates of one policy.
pub const MAX_GATES: usize = 20;
/// Longest comment on a decision, in characters.
pub const MAX_COMMENT: usize = 2000;
/// Most metrics of a version that gates see (its first ones by name).
pub const MAX_GATE_METRICS: usize = 100;

/// A version's approval state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalState {
    pub fn wire(self) -> &'static str {
        match self {
            ApprovalState::Pending => "PENDING",
            ApprovalState::Approved => "APPROVED",
            ApprovalState::Rejected => "REJECTED",
        }
    }
}

/// A version's approval, computed from its model's policy, its decisions
/// and its gates as they are now.
#[derive(Debug, Clone)]
pub struct ApprovalStatus {
    pub state: ApprovalState,
    pub required: u32,
    pub votes: Vec<Vote>,
    /// Each gate and whether the version passes it.
    pub gates: Vec<(String, bool)>,
    /// Who created the version (who may not approve it), if recorded.
    pub author: Option<String>,
    pub protected_aliases: Vec<String>,
}

impl ApprovalStatus {
    /// Why the version is not approved, for refusals.
    pub fn why_not(&self) -> String {
        let approvals = self
            .votes
            .iter()
            .filter(|v| v.decision == Decision::Approve)
            .count();
        let mut why = format!(
            "it is {} ({approvals} of {} approvals",
            self.state.wire(),
            self.required
        );
        if let Some(r) = self.votes.iter().find(|v| v.decision == Decision::Reject) {
            why.push_str(&format!(", rejected by {}", r.actor));
        }
        for (gate, passed) in &self.gates {
            if !passed {
                why.push_str(&format!(", gate '{gate}' fails"));
            }
        }
        why.push(')');
        why
    }
}

/// Refuse a policy out of bounds or with a gate that does not parse.
pub fn check_policy(p: &ApprovalPolicy) -> Result<()> {
    if !(1..=MAX_REQUIRED_APPROVALS).contains(&p.required_approvals) {
        return bad_request(format!(
            "requiredApprovals: {} is not between 1 and {MAX_REQUIRED_APPROVALS}",
            p.required_approvals
        ));
    }
    if p.gates.len() > MAX_GATES {
        return bad_request(format!("gates: at most {MAX_GATES}"));
    }
    for g in &p.gates {
        super::filter::parse(g).map_err(|e| Error::BadRequest(format!("gate '{g}': {e}")))?;
    }
    if p.protected_aliases.len() > MAX_ALIASES {
        return bad_request(format!("protectedAliases: at most {MAX_ALIASES}"));
    }
    for a in &p.protected_aliases {
        check_alias(a)?;
    }
    Ok(())
}

/// A version as its gates see it: its own fields and custom properties,
/// and its metrics by name (a custom property of the same name wins).
struct GateTarget<'a> {
    version: &'a Entity,
    metrics: BTreeMap<String, Scalar>,
}

impl FilterTarget for GateTarget<'_> {
    fn own_field(&self, name: &str) -> Option<Option<Scalar>> {
        self.version.own_field(name)
    }
    fn custom_property(&self, name: &str) -> Option<Scalar> {
        self.version
            .custom_property(name)
            .or_else(|| self.metrics.get(name).cloned())
    }
}

/// Own fields whose change leaves a version's approval as it is.
const NOT_APPROVED_CONTENT: [&str; 2] = ["description", "state"];

/// Did the approved content of a version change (custom properties but
/// governance's, own fields but its description and state)?
pub(super) fn content_changed(before: &Entity, after: &Entity) -> bool {
    fn props(e: &Entity) -> Vec<(&String, &MetadataValue)> {
        e.custom.iter().filter(|(k, _)| !e.gov.owns(k)).collect()
    }
    fn fields(e: &Entity) -> Vec<(&String, &serde_json::Value)> {
        e.fields
            .iter()
            .filter(|(k, _)| !NOT_APPROVED_CONTENT.contains(&k.as_str()))
            .collect()
    }
    props(before) != props(after) || fields(before) != fields(after)
}

/// Void a version's decisions (its content changed): back to PENDING.
pub(super) fn void_votes(v: &mut Entity) -> bool {
    if v.gov.votes.is_empty() {
        return false;
    }
    v.gov.votes.clear();
    v.gov.approval = Some(ApprovalState::Pending.wire().to_string());
    v.gov.show(v.kind, &mut v.custom);
    true
}

/// A model's approval policy; without one, a version needs one approval,
/// passes no gate and no alias is protected.
fn policy_of(model: &Entity) -> ApprovalPolicy {
    model.gov.policy.clone().unwrap_or(ApprovalPolicy {
        required_approvals: 1,
        ..ApprovalPolicy::default()
    })
}

/// The state `votes` and `gates` give under `policy`.
fn state_of(required: u32, votes: &[Vote], gates: &[(String, bool)]) -> ApprovalState {
    if votes.iter().any(|v| v.decision == Decision::Reject) {
        ApprovalState::Rejected
    } else if votes
        .iter()
        .filter(|v| v.decision == Decision::Approve)
        .count()
        >= required as usize
        && gates.iter().all(|(_, passed)| *passed)
    {
        ApprovalState::Approved
    } else {
        ApprovalState::Pending
    }
}

impl Registry {
    /// Set (None: remove) the approval policy of model `model`.
    pub async fn set_policy(&self, model: u64, policy: Option<ApprovalPolicy>) -> Result<Entity> {
        if let Some(p) = &policy {
            check_policy(p)?;
        }
        self.rewrite(Family::RegisteredModel, model, Action::Policy, false, |e| {
            if e.gov.policy == policy {
                return Ok(false);
            }
            e.gov.policy = policy.clone();
            Ok(true)
        })
        .await
    }

    /// Who created `version` (its first ledger record's actor).
    async fn author(&self, version: &Entity) -> Result<Option<String>> {
        Ok(self
            .entities
            .ledger()
            .at_or_below(Family::ModelVersion, version.id, 1)
            .await?
            .filter(|r| r.action == Action::Create)
            .map(|r| r.actor))
    }

    /// The version's metrics by name, for its gates (one page of its
    /// artifacts).
    async fn metrics(&self, version: u64) -> Result<BTreeMap<String, Scalar>> {
        let mut params = ListParams::parse(&RawListParams::default(), true)?;
        params.page_size = MAX_GATE_METRICS;
        params.order_by = OrderBy::Name;
        let narrow = Narrow {
            kind: Some(Kind::Metric),
            ..Narrow::default()
        };
        let page = self
            .list(Family::Artifact, Scope::Parent(version), &narrow, &params)
            .await?;
        Ok(page
            .items
            .iter()
            .filter_map(|m| {
                let v = m.fields.get("value")?.as_f64()?;
                Some((m.name.clone(), Scalar::Double(v)))
            })
            .collect())
    }

    /// `version`'s approval under `model`'s policy (the default policy, one
    /// approval and no gates, where it has none).
    async fn status(&self, model: &Entity, version: &Entity) -> Result<ApprovalStatus> {
        self.approval_from(model, version, None).await
    }

    /// [`Registry::approval`] from a model and version already read, and,
    /// when the caller read them too, all of the version's artifacts (its
    /// gates' metrics are then taken from them instead of a Query): what a
    /// page that shows the version's lineage needs.
    pub async fn approval_from(
        &self,
        model: &Entity,
        version: &Entity,
        artifacts: Option<&[Entity]>,
    ) -> Result<ApprovalStatus> {
        let policy = policy_of(model);
        let gates = match artifacts {
            Some(all) if !policy.gates.is_empty() => judge(&policy, version, metrics_in(all))?,
            _ => self.gates(&policy, version).await?,
        };
        Ok(ApprovalStatus {
            state: state_of(policy.required_approvals, &version.gov.votes, &gates),
            required: policy.required_approvals,
            votes: version.gov.votes.clone(),
            gates,
            author: self.author(version).await?,
            protected_aliases: policy.protected_aliases,
        })
    }

    async fn gates(
        &self,
        policy: &ApprovalPolicy,
        version: &Entity,
    ) -> Result<Vec<(String, bool)>> {
        if policy.gates.is_empty() {
            return Ok(Vec::new());
        }
        judge(policy, version, self.metrics(version.id).await?)
    }

    /// The approval of version `id`, computed now (consistent reads of the
    /// version and its model).
    pub async fn approval(&self, id: u64) -> Result<ApprovalStatus> {
        let version = self.get(Family::ModelVersion, None, id).await?;
        let model = self.model_of(&version).await?;
        self.status(&model, &version).await
    }

    async fn model_of(&self, version: &Entity) -> Result<Entity> {
        let m = version
            .parent
            .ok_or_else(|| Error::internal(format!("model version {} has no model", version.id)))?;
        self.get(Family::RegisteredModel, None, m).await
    }

    /// Record the current actor's decision on version `id` (replacing an
    /// earlier one of theirs). The version's author may not decide on it.
    pub async fn decide(
        &self,
        id: u64,
        decision: Decision,
        comment: &str,
    ) -> Result<ApprovalStatus> {
        if comment.chars().count() > MAX_COMMENT {
            return bad_request(format!("comment: at most {MAX_COMMENT} characters"));
        }
        super::value::check_text("comment", comment)?;
        let actor = crate::domain::actor::current();
        let version = self.get(Family::ModelVersion, None, id).await?;
        let author = self.author(&version).await?;
        if author.as_deref() == Some(actor.as_str()) {
            return Err(Error::Forbidden(format!(
                "{actor} created model version {id} and may not decide on its approval (four eyes)"
            )));
        }
        let model = self.model_of(&version).await?;
        let policy = policy_of(&model);
        let required = policy.required_approvals;
        // Gates read the version's metrics, which its decision does not change.
        let gates = self.gates(&policy, &version).await?;
        let vote = Vote {
            actor: actor.clone(),
            decision,
            comment: comment.to_string(),
            at_ms: crate::domain::now_ms(),
        };
        let written = self
            .rewrite(Family::ModelVersion, id, Action::Approval, false, |v| {
                v.gov.votes.retain(|x| x.actor != actor);
                v.gov.votes.push(vote.clone());
                let state = state_of(required, &v.gov.votes, &gates);
                v.gov.approval = Some(state.wire().to_string());
                v.gov.show(v.kind, &mut v.custom);
                Ok(true)
            })
            .await?;
        // The gates read above: a decision changes no metric or property
        // they see (and the state written was computed from them).
        Ok(ApprovalStatus {
            state: state_of(required, &written.gov.votes, &gates),
            required,
            votes: written.gov.votes.clone(),
            gates,
            author,
            protected_aliases: policy.protected_aliases,
        })
    }

    /// An artifact of a version changed: the version's decisions no longer
    /// hold (one read of each version it belongs to; a write where there
    /// were decisions).
    pub(super) async fn artifact_changed(&self, a: &Entity) -> Result<()> {
        let run = a
            .fields
            .get(super::entity::fields::EXPERIMENT_RUN_ID)
            .and_then(serde_json::Value::as_str)
            .and_then(|r| r.parse::<u64>().ok());
        for v in a.parent.into_iter().chain(a.links.iter().copied()) {
            if Some(v) == run {
                continue;
            }
            match self
                .rewrite(Family::ModelVersion, v, Action::Approval, false, |e| {
                    Ok(void_votes(e))
                })
                .await
            {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Each gate of `policy` and whether `version` with `metrics` passes it.
fn judge(
    policy: &ApprovalPolicy,
    version: &Entity,
    metrics: BTreeMap<String, Scalar>,
) -> Result<Vec<(String, bool)>> {
    let target = GateTarget { version, metrics };
    policy
        .gates
        .iter()
        .map(|g| {
            let expr = super::filter::parse(g)
                .map_err(|e| Error::internal(format!("stored gate '{g}': {e}")))?;
            Ok((g.clone(), expr.matches(&target)))
        })
        .collect()
}

/// The metrics gates see, from all of a version's artifacts: the same as
/// [`Registry::metrics`] reads (the first [`MAX_GATE_METRICS`] by name).
fn metrics_in(artifacts: &[Entity]) -> BTreeMap<String, Scalar> {
    let mut metrics: Vec<&Entity> = artifacts
        .iter()
        .filter(|a| a.kind == Kind::Metric)
        .collect();
    metrics.sort_by(|a, b| a.name.cmp(&b.name));
    metrics
        .into_iter()
        .take(MAX_GATE_METRICS)
        .filter_map(|m| {
            let v = m.fields.get("value")?.as_f64()?;
            Some((m.name.clone(), Scalar::Double(v)))
        })
        .collect()
}
