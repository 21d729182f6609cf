//! Governance over the ledger, on every backend: revert, aliases (with
//! their labels, under concurrency and after a crash), the audit of every
//! change and the check of every chain.

use super::*;
use registry::api::codec::decode_artifact_upsert;
use registry::domain::entity::{APPROVAL_PROPERTY, ApprovalPolicy, Decision};
use registry::domain::governance::{ApprovalState, ApprovalStatus, AuditQuery};
use registry::domain::value::MetadataValue;

fn label() -> MetadataValue {
    MetadataValue::String(String::new())
}

async fn versions_of(r: &Registry, m: u64, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(r.create(version(m, &format!("v{i}"))).await.unwrap().id);
    }
    ids
}

/// Versions of `ids` that carry the label `alias`.
async fn labelled(r: &Registry, ids: &[u64], alias: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for id in ids {
        let v = r.get(Family::ModelVersion, None, *id).await.unwrap();
        assert_eq!(
            v.custom.get(alias) == Some(&label()),
            v.gov.labels.contains(alias),
            "label and governance state agree on {id}"
        );
        if v.gov.labels.contains(alias) {
            out.push(*id);
        }
    }
    out
}

/// A revert writes a new revision with an earlier one's content, audited.
pub(super) async fn revert_writes_an_earlier_revision_again(b: Backend) {
    let r = registry(&b, 10_000);
    let m = actor::acting("alice", r.create(model("reverted")))
        .await
        .unwrap();
    let mut states = vec![m.clone()];
    for i in 0..5 {
        let patch = model_patch(json!({
            "description": format!("take {i}"),
            "customProperties": {"k": {"metadataType": "MetadataIntValue", "int_value": i.to_string()}},
        }));
        states.push(
            actor::acting("bob", r.update(Family::RegisteredModel, m.id, &patch))
                .await
                .unwrap(),
        );
    }
    let back = actor::acting("carol", r.revert(Family::RegisteredModel, m.id, 2))
        .await
        .unwrap();
    assert_eq!(back.fields, states[1].fields);
    assert_eq!(back.custom, states[1].custom);
    assert!(back.update_ms > states[5].update_ms);
    let (history, next) = r
        .history(Family::RegisteredModel, m.id, None, 1000)
        .await
        .unwrap();
    assert_eq!(next, None);
    let newest = &history[0].record;
    assert_eq!(
        (newest.revision, newest.actor.as_str(), newest.action),
        (7, "carol", Action::Revert)
    );
    let changed: Vec<&str> = newest.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(changed, ["description", "customProperties.k"], "{newest:?}");
    assert_eq!(newest.changes[0].before, json!("take 4"));
    assert_eq!(newest.changes[0].after, json!("take 0"));
    // Paging the history: two at a time, newest first, each once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let (page, next) = r
            .history(Family::RegisteredModel, m.id, before, 2)
            .await
            .unwrap();
        seen.extend(page.iter().map(|h| h.record.revision));
        match next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, [7, 6, 5, 4, 3, 2, 1]);
    // The past is still there, and the chain holds.
    let at = states[3].update_ms;
    assert_eq!(
        r.as_of(Family::RegisteredModel, m.id, at).await.unwrap(),
        states[3]
    );
    assert_eq!(
        r.as_of(Family::RegisteredModel, m.id, back.update_ms)
            .await
            .unwrap(),
        back
    );
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!((verdict.records, verdict.broken_at), (7, None));
    for missing in [0, 8, 99] {
        assert!(
            matches!(
                r.revert(Family::RegisteredModel, m.id, missing).await,
                Err(Error::NotFound(_))
            ),
            "revision {missing}"
        );
    }
    // Reverting to what it is writes nothing.
    let again = r.revert(Family::RegisteredModel, m.id, 2).await.unwrap();
    assert_eq!(again, back);
}

/// An alias points at one version of its model, which carries it as a
/// label; moving it moves the label; `@<alias>` finds the version.
pub(super) async fn aliases_point_at_one_version_and_label_it(b: Backend) {
    let r = registry(&b, 10_000);
    let m = r.create(model("aliased")).await.unwrap();
    let other = r.create(model("other")).await.unwrap();
    let v = versions_of(&r, m.id, 3).await;
    let foreign = r.create(version(other.id, "x")).await.unwrap();

    let (_, before) = actor::acting("ops", r.set_alias(m.id, "production", Some(v[0])))
        .await
        .unwrap();
    assert_eq!(before, None);
    assert_eq!(r.alias(m.id, "production").await.unwrap().id, v[0]);
    assert_eq!(labelled(&r, &v, "production").await, [v[0]]);
    let (_, before) = r.set_alias(m.id, "production", Some(v[1])).await.unwrap();
    assert_eq!(before, Some(v[0]));
    assert_eq!(labelled(&r, &v, "production").await, [v[1]]);
    r.set_alias(m.id, "staging", Some(v[1])).await.unwrap();
    let aliases = r.aliases(m.id).await.unwrap();
    assert_eq!(
        aliases.into_iter().collect::<Vec<_>>(),
        [
            ("production".to_string(), v[1]),
            ("staging".to_string(), v[1])
        ]
    );
    // KServe's storage initializer finds `<model>/@production` by name.
    let found = r
        .find(
            Family::ModelVersion,
            None,
            Some("@production"),
            None,
            Some(m.id),
        )
        .await
        .unwrap();
    assert_eq!(found.id, v[1]);
    assert!(matches!(
        r.find(
            Family::ModelVersion,
            None,
            Some("@nothing"),
            None,
            Some(m.id)
        )
        .await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        r.create(version(m.id, "@production")).await,
        Err(Error::BadRequest(_))
    ));
    // A PATCH of the version's properties keeps the alias's label.
    let patch = decode_patch(
        Kind::ModelVersion,
        &json!({"customProperties": {"note": {"metadataType": "MetadataStringValue", "string_value": "n"}}}),
    )
    .unwrap();
    let patched = r.update(Family::ModelVersion, v[1], &patch).await.unwrap();
    assert_eq!(patched.custom.get("production"), Some(&label()));
    assert_eq!(patched.custom.get("staging"), Some(&label()));
    // Refused: another model's version, a bad alias.
    assert!(matches!(
        r.set_alias(m.id, "production", Some(foreign.id)).await,
        Err(Error::BadRequest(_))
    ));
    for bad in ["", "-x", "a b", "x/y", &"a".repeat(64)] {
        assert!(
            matches!(
                r.set_alias(m.id, bad, Some(v[0])).await,
                Err(Error::BadRequest(_))
            ),
            "{bad:?}"
        );
    }
    // Removing it takes the label off.
    let (_, before) = r.set_alias(m.id, "production", None).await.unwrap();
    assert_eq!(before, Some(v[1]));
    assert!(matches!(
        r.alias(m.id, "production").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(labelled(&r, &v, "production").await, Vec::<u64>::new());
    assert_eq!(labelled(&r, &v, "staging").await, [v[1]]);
    // Every move is a revision of the model, with its actor and change.
    let (history, _) = r
        .history(Family::RegisteredModel, m.id, None, 100)
        .await
        .unwrap();
    let moves: Vec<(&str, String)> = history
        .iter()
        .rev()
        .filter(|h| h.record.action == Action::Alias)
        .map(|h| {
            let c = &h.record.changes[0];
            (
                h.record.actor.as_str(),
                format!(
                    "{} {} -> {}",
                    c.field,
                    c.before.as_str().unwrap_or("null"),
                    c.after.as_str().unwrap_or("null")
                ),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("ops", format!("aliases.production null -> {}", v[0])),
            (
                actor::SYSTEM,
                format!("aliases.production {} -> {}", v[0], v[1])
            ),
            (actor::SYSTEM, format!("aliases.staging null -> {}", v[1])),
            (
                actor::SYSTEM,
                format!("aliases.production {} -> null", v[1])
            ),
        ]
    );
}

/// A move that dies after the model's write leaves the previous version's
/// label behind; the alias's next write takes it off.
pub(super) async fn a_label_left_by_a_crash_is_taken_off_by_the_next_move(b: Backend) {
    // The write that takes a label off (a version's home without labels).
    let crashing = Crashing::new(
        b.table.clone(),
        |item| item.pk.starts_with("MV#") && item.sk == "E" && !item.body.contains("labels"),
        false,
    );
    let lease = Duration::from_millis(300);
    let r = Registry::new(
        crashing.clone(),
        RegistryConfig {
            claim_lease: lease,
            ..RegistryConfig::default()
        },
    );
    let m = r.create(model("crashy")).await.unwrap();
    let v = versions_of(&r, m.id, 3).await;
    r.set_alias(m.id, "production", Some(v[0])).await.unwrap();
    crashing.armed.store(1, Ordering::SeqCst);
    assert!(r.set_alias(m.id, "production", Some(v[1])).await.is_err());
    assert_eq!(r.alias(m.id, "production").await.unwrap().id, v[1]);
    assert_eq!(labelled(&r, &v, "production").await, [v[0], v[1]]);
    // The dead write's ledger record holds its revision for the lease.
    tokio::time::sleep(lease * 2).await;
    r.set_alias(m.id, "production", Some(v[2])).await.unwrap();
    assert_eq!(labelled(&r, &v, "production").await, [v[2]]);
}

/// Twenty writers move one alias at once: it ends on one of them, the
/// model's ledger has the twenty moves in order, one version is labelled.
pub(super) async fn concurrent_alias_moves_are_each_recorded(b: Backend) {
    let r = registry(&b, 10_000);
    let m = r.create(model("contended")).await.unwrap();
    let v = versions_of(&r, m.id, 20).await;
    let tasks: Vec<_> = v
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (r, id) = (r.clone(), *id);
            tokio::spawn(actor::acting(format!("w{i}"), async move {
                r.set_alias(m.id, "champion", Some(id)).await
            }))
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let end = r.alias(m.id, "champion").await.unwrap().id;
    assert!(v.contains(&end));
    let (history, _) = r
        .history(Family::RegisteredModel, m.id, None, 100)
        .await
        .unwrap();
    let moves: Vec<_> = history
        .iter()
        .rev()
        .filter(|h| h.record.action == Action::Alias)
        .collect();
    assert_eq!(moves.len(), 20);
    let mut actors: Vec<&str> = moves.iter().map(|h| h.record.actor.as_str()).collect();
    // Each move starts where the one before it ended.
    let mut at = serde_json::Value::Null;
    for h in &moves {
        assert_eq!(h.record.changes[0].before, at, "{:?}", h.record.changes);
        at = h.record.changes[0].after.clone();
    }
    assert_eq!(at, json!(end.to_string()));
    actors.sort();
    actors.dedup();
    assert_eq!(actors.len(), 20);
    assert_eq!(labelled(&r, &v, "champion").await, [end]);
    let verdict = r.verify(Family::RegisteredModel, m.id).await.unwrap();
    assert_eq!(verdict.broken_at, None);
}

async fn audit_all(r: &Registry, q: AuditQuery) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    let mut q = q;
    loop {
        let page = r.audit(&q).await.unwrap();
        assert!(page.items.len() <= q.page_size);
        out.extend(page.items.iter().map(|h| {
            assert!(h.applied);
            (
                h.record.actor.clone(),
                format!("{}:{}", h.record.entity.name, h.record.revision),
                h.record.at_ms,
            )
        }));
        match page.next {
            Some(n) => q.after = Some(n),
            None => return out,
        }
    }
}

/// The audit lists every change newest first, by actor, entity and time,
/// a page at a time, each record once.
pub(super) async fn the_audit_lists_every_change_newest_first(b: Backend) {
    let r = registry(&b, 10_000);
    let mut models = Vec::new();
    for i in 0..6 {
        let who = if i % 2 == 0 { "ann" } else { "ben" };
        let m = actor::acting(who, r.create(model(&format!("audit-{i}"))))
            .await
            .unwrap();
        models.push(m);
    }
    let middle = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for m in &models[..3] {
        let patch = model_patch(json!({"description": "later"}));
        actor::acting("cat", r.update(Family::RegisteredModel, m.id, &patch))
            .await
            .unwrap();
    }
    let everything = audit_all(
        &r,
        AuditQuery {
            page_size: 2,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(everything.len(), 9, "{everything:?}");
    assert!(
        everything.windows(2).all(|w| w[0].2 >= w[1].2),
        "newest first: {everything:?}"
    );
    let mut unique: Vec<&String> = everything.iter().map(|e| &e.1).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 9, "each once");
    assert_eq!(&everything[0].0, "cat");
    let by = |who: &str| AuditQuery {
        actor: Some(who.to_string()),
        page_size: 1,
        ..AuditQuery::default()
    };
    assert_eq!(audit_all(&r, by("ann")).await.len(), 3);
    assert_eq!(audit_all(&r, by("cat")).await.len(), 3);
    assert_eq!(audit_all(&r, by("nobody")).await.len(), 0);
    let since = audit_all(
        &r,
        AuditQuery {
            since_ms: Some(middle),
            page_size: 10,
            ..AuditQuery::default()
        },
    )
    .await;
    assert!(since.iter().all(|e| e.0 == "cat"), "{since:?}");
    assert_eq!(since.len(), 3);
    let until = audit_all(
        &r,
        AuditQuery {
            until_ms: Some(middle),
            page_size: 4,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(until.len(), 6);
    assert!(until.iter().all(|e| e.0 != "cat"));
    let one = audit_all(
        &r,
        AuditQuery {
            entity: Some((Family::RegisteredModel, models[0].id)),
            page_size: 1,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(
        one.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["audit-0:2", "audit-0:1"]
    );
    let versions = audit_all(
        &r,
        AuditQuery {
            family: Some(Family::ModelVersion),
            page_size: 5,
            ..AuditQuery::default()
        },
    )
    .await;
    assert!(versions.is_empty());
}

/// Every chain is checked; an altered record is named.
pub(super) async fn verification_names_an_altered_record(b: Backend) {
    let r = registry(&b, 10_000);
    let m = r.create(model("checked")).await.unwrap();
    let v = versions_of(&r, m.id, 2).await;
    r.update(
        Family::RegisteredModel,
        m.id,
        &model_patch(json!({"description": "d"})),
    )
    .await
    .unwrap();
    let report = r.verify_all(None).await.unwrap();
    assert_eq!((report.entities, report.records), (3, 4), "{report:?}");
    assert!(report.broken.is_empty() && report.next.is_none());
    let pk = format!("L#MV#{:012}", v[1]);
    let stored = b
        .table
        .get(&pk, &format!("{:012}", 1))
        .await
        .unwrap()
        .unwrap();
    let mut forged = stored.clone();
    forged.body = stored.body.replace("\"v1\"", "\"v1-forged\"");
    forged.version += 1;
    b.table.put(forged, Cond::Always).await.unwrap();
    let report = r.verify_all(None).await.unwrap();
    assert_eq!(report.broken.len(), 1, "{report:?}");
    let (family, id, verdict) = &report.broken[0];
    assert_eq!(
        (*family, *id, verdict.broken_at),
        (Family::ModelVersion, v[1], Some(1))
    );
    assert!(matches!(
        r.verify_all(Some("not-a-token")).await,
        Err(Error::BadRequest(_))
    ));
}

fn prop(v: Value) -> Patch {
    decode_patch(Kind::ModelVersion, &json!({ "customProperties": v })).unwrap()
}

fn policy(required: u32, gates: &[&str], protected: &[&str]) -> ApprovalPolicy {
    ApprovalPolicy {
        required_approvals: required,
        gates: gates.iter().map(|g| g.to_string()).collect(),
        protected_aliases: protected.iter().map(|a| a.to_string()).collect(),
    }
}

async fn decide_as(r: &Registry, who: &str, v: u64, d: Decision) -> Result<ApprovalStatus, Error> {
    actor::acting(who, r.decide(v, d, "looked at it")).await
}

/// Four eyes, one vote per approver, gates over properties and metrics,
/// protected aliases, and decisions voided by a change of the content.
pub(super) async fn approvals_follow_the_policy(b: Backend) {
    let r = registry(&b, 10_000);
    let m = actor::acting("alice", r.create(model("governed")))
        .await
        .unwrap();
    let v = actor::acting("alice", versions_of(&r, m.id, 3)).await;
    let good = json!({
        "accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.95},
        "bias_audit": {"metadataType": "MetadataStringValue", "string_value": "passed"},
    });
    r.update(Family::ModelVersion, v[0], &prop(good.clone()))
        .await
        .unwrap();
    r.update(
        Family::ModelVersion,
        v[1],
        &prop(json!({"accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.5},
                     "bias_audit": {"metadataType": "MetadataStringValue", "string_value": "passed"}})),
    )
    .await
    .unwrap();
    let gates = ["accuracy.double_value >= 0.9", "bias_audit = 'passed'"];
    assert!(matches!(
        r.set_policy(m.id, Some(policy(0, &[], &[]))).await,
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        r.set_policy(m.id, Some(policy(1, &["accuracy >>> 2"], &[])))
            .await,
        Err(Error::BadRequest(_))
    ));
    r.set_policy(m.id, Some(policy(2, &gates, &["production"])))
        .await
        .unwrap();

    // The author may not decide; a vote is counted once per approver.
    assert!(matches!(
        decide_as(&r, "alice", v[0], Decision::Approve).await,
        Err(Error::Forbidden(_))
    ));
    let s = decide_as(&r, "bob", v[0], Decision::Approve).await.unwrap();
    assert_eq!((s.state, s.votes.len()), (ApprovalState::Pending, 1));
    assert_eq!(s.author.as_deref(), Some("alice"));
    let s = decide_as(&r, "bob", v[0], Decision::Approve).await.unwrap();
    assert_eq!((s.state, s.votes.len()), (ApprovalState::Pending, 1));
    // Protected: only an approved version may take `production`.
    let refused = r.set_alias(m.id, "production", Some(v[0])).await;
    assert!(
        matches!(&refused, Err(Error::Conflict(msg)) if msg.contains("1 of 2")),
        "{refused:?}"
    );
    let s = decide_as(&r, "carol", v[0], Decision::Approve)
        .await
        .unwrap();
    assert_eq!(s.state, ApprovalState::Approved);
    assert!(s.gates.iter().all(|(_, passed)| *passed), "{:?}", s.gates);
    let shown = r.get(Family::ModelVersion, None, v[0]).await.unwrap();
    assert_eq!(
        shown.custom.get(APPROVAL_PROPERTY),
        Some(&MetadataValue::String("APPROVED".into()))
    );
    r.set_alias(m.id, "production", Some(v[0])).await.unwrap();
    // Unprotected aliases need nothing.
    r.set_alias(m.id, "staging", Some(v[2])).await.unwrap();

    // A failing gate keeps a version pending whatever the votes.
    decide_as(&r, "bob", v[1], Decision::Approve).await.unwrap();
    let s = decide_as(&r, "carol", v[1], Decision::Approve)
        .await
        .unwrap();
    assert_eq!(s.state, ApprovalState::Pending);
    assert_eq!(
        s.gates,
        [(gates[0].to_string(), false), (gates[1].to_string(), true)]
    );
    // A metric of the version counts for a gate as a property does.
    let metric = decode_artifact_upsert(&json!({
        "artifactType": "metric", "name": "accuracy", "value": 0.97
    }))
    .unwrap();
    r.upsert_version_artifact(v[2], metric).await.unwrap();
    r.update(
        Family::ModelVersion,
        v[2],
        &prop(json!({"bias_audit": {"metadataType": "MetadataStringValue", "string_value": "passed"}})),
    )
    .await
    .unwrap();
    decide_as(&r, "bob", v[2], Decision::Approve).await.unwrap();
    let s = decide_as(&r, "dan", v[2], Decision::Approve).await.unwrap();
    assert_eq!(s.state, ApprovalState::Approved, "{:?}", s.gates);
    // A rejection wins.
    let s = decide_as(&r, "erin", v[2], Decision::Reject).await.unwrap();
    assert_eq!(s.state, ApprovalState::Rejected);

    // A change of the approved content voids the decisions; the alias stays.
    let desc = decode_patch(Kind::ModelVersion, &json!({"description": "notes"})).unwrap();
    r.update(Family::ModelVersion, v[0], &desc).await.unwrap();
    assert_eq!(
        r.approval(v[0]).await.unwrap().state,
        ApprovalState::Approved
    );
    let mut changed = good.clone();
    changed["accuracy"]["double_value"] = json!(0.96);
    let e = r
        .update(Family::ModelVersion, v[0], &prop(changed))
        .await
        .unwrap();
    assert_eq!(
        e.custom.get(APPROVAL_PROPERTY),
        Some(&MetadataValue::String("PENDING".into()))
    );
    let s = r.approval(v[0]).await.unwrap();
    assert_eq!((s.state, s.votes.len()), (ApprovalState::Pending, 0));
    assert_eq!(r.alias(m.id, "production").await.unwrap().id, v[0]);
    // So does a change of one of its artifacts.
    decide_as(&r, "bob", v[0], Decision::Approve).await.unwrap();
    decide_as(&r, "carol", v[0], Decision::Approve)
        .await
        .unwrap();
    assert_eq!(
        r.approval(v[0]).await.unwrap().state,
        ApprovalState::Approved
    );
    let weights = decode_artifact_upsert(&json!({
        "artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"
    }))
    .unwrap();
    let (a, _) = r.upsert_version_artifact(v[0], weights).await.unwrap();
    assert_eq!(
        r.approval(v[0]).await.unwrap().state,
        ApprovalState::Pending
    );
    decide_as(&r, "bob", v[0], Decision::Approve).await.unwrap();
    decide_as(&r, "carol", v[0], Decision::Approve)
        .await
        .unwrap();
    let repoint = decode_patch(Kind::ModelArtifact, &json!({"uri": "s3://b/w2"})).unwrap();
    r.update(Family::Artifact, a.id, &repoint).await.unwrap();
    assert_eq!(
        r.approval(v[0]).await.unwrap().state,
        ApprovalState::Pending
    );
    // Every decision is in the version's ledger.
    let (history, _) = r
        .history(Family::ModelVersion, v[0], None, 100)
        .await
        .unwrap();
    let decisions = history
        .iter()
        .filter(|h| h.record.action == Action::Approval)
        .count();
    assert!(decisions >= 8, "{decisions}");
}

/// Approvers deciding at once are each counted.
pub(super) async fn concurrent_approvals_are_each_counted(b: Backend) {
    let r = registry(&b, 10_000);
    let m = r.create(model("busy-approvers")).await.unwrap();
    r.set_policy(m.id, Some(policy(8, &[], &[]))).await.unwrap();
    let v = actor::acting("author", versions_of(&r, m.id, 1)).await[0];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { decide_as(&r, &format!("a{i}"), v, Decision::Approve).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = r.approval(v).await.unwrap();
    assert_eq!((s.state, s.votes.len()), (ApprovalState::Approved, 8));
}

/// 1,000 reads by one caller of one version make one record with one
/// write; two callers, two records; a process's later reads that day are
/// not written again.
pub(super) async fn usage_costs_one_write_per_caller_version_and_day(b: Backend) {
    // Counts the usage records written (and crashes nothing).
    let counting = Crashing::new(b.table.clone(), |item| item.pk.starts_with("U#"), false);
    let window = Duration::from_millis(300);
    let r = Registry::new(
        counting.clone(),
        RegistryConfig {
            usage_window: window,
            ..RegistryConfig::default()
        },
    );
    let m = r.create(model("used")).await.unwrap();
    let v = r.create(version(m.id, "v1")).await.unwrap();
    let artifact = decode_artifact_upsert(&json!({
        "artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"
    }))
    .unwrap();
    let (a, _) = r.upsert_version_artifact(v.id, artifact).await.unwrap();
    actor::acting("kserve", async {
        for i in 0..1000 {
            if i % 2 == 0 {
                r.used(&v);
            } else {
                r.used(&a);
            }
        }
    })
    .await;
    actor::acting("analyst", async { r.used_version(v.id) }).await;
    tokio::time::sleep(window * 3).await;
    let page = r.usage(Some(v.id), None, None, 10).await.unwrap();
    let mut seen: Vec<(String, u64)> = page
        .items
        .iter()
        .map(|u| (u.actor.clone(), u.count))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("analyst".to_string(), 1), ("kserve".to_string(), 1000)]
    );
    assert_eq!(counting.seen.load(Ordering::SeqCst), 2);
    let by_actor = r.usage(None, Some("kserve"), None, 10).await.unwrap();
    assert_eq!(by_actor.items.len(), 1);
    assert_eq!(by_actor.items[0].version, v.id);
    // Later reads the same day: counted in memory, not written again.
    actor::acting("kserve", async {
        for _ in 0..100 {
            r.used(&v);
        }
    })
    .await;
    tokio::time::sleep(window * 3).await;
    assert_eq!(counting.seen.load(Ordering::SeqCst), 2);
    // A run's artifact is not a use of a model.
    let first = &page.items[0];
    assert!(first.first_ms <= first.last_ms);
}

fn now_ms() -> u64 {
    registry::domain::now_ms()
}

suite!(
    revert_writes_an_earlier_revision_again,
    aliases_point_at_one_version_and_label_it,
    a_label_left_by_a_crash_is_taken_off_by_the_next_move,
    concurrent_alias_moves_are_each_recorded,
    the_audit_lists_every_change_newest_first,
    verification_names_an_altered_record,
    approvals_follow_the_policy,
    concurrent_approvals_are_each_counted,
    usage_costs_one_write_per_caller_version_and_day,
);
