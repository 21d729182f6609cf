//! The registry's own extension routes served by the API slices under
//! `/api/registry_ext/v1` (the upload routes are `uploads`'): a version's
//! lineage, and governance over the ledger (`domain::governance`): history
//! and past states of entities, revert, aliases, the audit and the check
//! of its chains. Each route is served by the function of the family it
//! reads or changes; the audit by the registered models' function.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Value, json};

use super::codec;
use super::handlers::{Ctx, QueryArgs, Reply, body_json, ok, path_id};
use super::{ApiState, Slice};
use crate::domain::access::Permission;
use crate::domain::entity::{ApprovalPolicy, Decision, Entity, Family, parse_id};
use crate::domain::error::Error;
use crate::domain::governance::{ApprovalStatus, AuditQuery, check_alias};
use crate::domain::paging::{OrderBy, decode_token, encode_token};
use crate::domain::registry::Revision;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /model_versions/{id}/lineage`: where the version comes from and
    /// where it runs (see `domain::lineage`). The runs, experiments and
    /// serving environments the caller may not read are left out and
    /// counted in `hidden`.
    Lineage,
    /// `GET .../{id}/history`: revisions newest first, paged.
    History(Family),
    /// `GET .../{id}?asOf=<epoch ms>`: the entity as it was then (without
    /// `asOf`: as it is).
    AsOf(Family),
    /// `POST .../{id}/revert` `{"revision": N}`: a new revision equal to N.
    Revert(Family),
    /// `GET /registered_models/{id}/aliases`.
    Aliases,
    /// `GET /registered_models/{id}/aliases/{alias}`: the version.
    GetAlias,
    /// `PUT /registered_models/{id}/aliases/{alias}` `{"modelVersionId": "…"}`.
    SetAlias,
    /// `DELETE /registered_models/{id}/aliases/{alias}`.
    DeleteAlias,
    /// `GET|PUT|DELETE /registered_models/{id}/approval_policy`
    /// `{"requiredApprovals": 2, "gates": ["…"], "protectedAliases": ["production"]}`.
    GetPolicy,
    SetPolicy,
    DeletePolicy,
    /// `POST /model_versions/{id}/approvals` `{"decision": "APPROVE"|"REJECT", "comment": "…"}`.
    Decide,
    /// `GET /model_versions/{id}/approval`: the version's approval now.
    Approval,
    /// `GET /model_versions/{id}/usage`: who read the version, per day.
    VersionUsage,
    /// `GET /usage?actor=`: what a caller read, per version and day.
    Usage,
    /// `GET /audit?entityType=&entityId=&actor=&since=&until=&pageSize=&nextPageToken=`.
    Audit,
    /// `GET /audit/verify[?nextPageToken=]` (admin): checks the chains.
    AuditVerify,
}

/// One extension route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub op: Op,
}

const fn r(method: &'static str, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// Every extension route of the API slices.
pub const ROUTES: [Route; 23] = [
    r("get", "/model_versions/{id}/lineage", Op::Lineage),
    r(
        "get",
        "/registered_models/{id}/history",
        Op::History(Family::RegisteredModel),
    ),
    r(
        "get",
        "/registered_models/{id}",
        Op::AsOf(Family::RegisteredModel),
    ),
    r(
        "post",
        "/registered_models/{id}/revert",
        Op::Revert(Family::RegisteredModel),
    ),
    r(
        "get",
        "/model_versions/{id}/history",
        Op::History(Family::ModelVersion),
    ),
    r(
        "get",
        "/model_versions/{id}",
        Op::AsOf(Family::ModelVersion),
    ),
    r(
        "post",
        "/model_versions/{id}/revert",
        Op::Revert(Family::ModelVersion),
    ),
    r(
        "get",
        "/artifacts/{id}/history",
        Op::History(Family::Artifact),
    ),
    r("get", "/artifacts/{id}", Op::AsOf(Family::Artifact)),
    r(
        "post",
        "/artifacts/{id}/revert",
        Op::Revert(Family::Artifact),
    ),
    r("get", "/registered_models/{id}/aliases", Op::Aliases),
    r(
        "get",
        "/registered_models/{id}/aliases/{alias}",
        Op::GetAlias,
    ),
    r(
        "put",
        "/registered_models/{id}/aliases/{alias}",
        Op::SetAlias,
    ),
    r(
        "delete",
        "/registered_models/{id}/aliases/{alias}",
        Op::DeleteAlias,
    ),
    r(
        "get",
        "/registered_models/{id}/approval_policy",
        Op::GetPolicy,
    ),
    r(
        "put",
        "/registered_models/{id}/approval_policy",
        Op::SetPolicy,
    ),
    r(
        "delete",
        "/registered_models/{id}/approval_policy",
        Op::DeletePolicy,
    ),
    r("post", "/model_versions/{id}/approvals", Op::Decide),
    r("get", "/model_versions/{id}/approval", Op::Approval),
    r("get", "/model_versions/{id}/usage", Op::VersionUsage),
    r("get", "/usage", Op::Usage),
    r("get", "/audit", Op::Audit),
    r("get", "/audit/verify", Op::AuditVerify),
];

impl Op {
    /// The slice (function) that serves the route.
    pub fn slice(self) -> Slice {
        match self {
            Op::Lineage => Slice::ModelVersions,
            Op::History(f) | Op::AsOf(f) | Op::Revert(f) => match f {
                Family::RegisteredModel => Slice::RegisteredModels,
                Family::ModelVersion => Slice::ModelVersions,
                _ => Slice::Artifacts,
            },
            Op::Aliases | Op::GetAlias | Op::SetAlias | Op::DeleteAlias => Slice::RegisteredModels,
            Op::GetPolicy | Op::SetPolicy | Op::DeletePolicy => Slice::RegisteredModels,
            Op::Decide | Op::Approval | Op::VersionUsage => Slice::ModelVersions,
            Op::Usage => Slice::RegisteredModels,
            Op::Audit | Op::AuditVerify => Slice::RegisteredModels,
        }
    }

    fn handler(self) -> MethodRouter<ApiState> {
        type Id = Path<String>;
        type IdAlias = Path<(String, String)>;
        match self {
            Op::Lineage => get(|c: Ctx, Path(id): Id| async move { lineage(&c, &id).await }),
            Op::History(f) => get(
                move |c: Ctx, Path(id): Id, RawQuery(q): RawQuery| async move {
                    history(&c, f, &id, q).await
                },
            ),
            Op::AsOf(f) => get(
                move |c: Ctx, Path(id): Id, RawQuery(q): RawQuery| async move {
                    as_of(&c, f, &id, q).await
                },
            ),
            Op::Revert(f) => {
                post(
                    move |c: Ctx, Path(id): Id, b: Bytes| async move { revert(&c, f, &id, &b).await },
                )
            }
            Op::Aliases => get(|c: Ctx, Path(id): Id| async move { aliases(&c, &id).await }),
            Op::GetAlias => {
                get(
                    |c: Ctx, Path((id, alias)): IdAlias| async move { get_alias(&c, &id, &alias).await },
                )
            }
            Op::SetAlias => put(|c: Ctx, Path((id, alias)): IdAlias, b: Bytes| async move {
                set_alias(&c, &id, &alias, Some(&b)).await
            }),
            Op::DeleteAlias => delete(|c: Ctx, Path((id, alias)): IdAlias| async move {
                set_alias(&c, &id, &alias, None).await
            }),
            Op::GetPolicy => get(|c: Ctx, Path(id): Id| async move { policy(&c, &id, None).await }),
            Op::SetPolicy => put(|c: Ctx, Path(id): Id, b: Bytes| async move {
                policy(&c, &id, Some(Some(&b))).await
            }),
            Op::DeletePolicy => {
                delete(|c: Ctx, Path(id): Id| async move { policy(&c, &id, Some(None)).await })
            }
            Op::Decide => {
                post(|c: Ctx, Path(id): Id, b: Bytes| async move { decide(&c, &id, &b).await })
            }
            Op::Approval => get(|c: Ctx, Path(id): Id| async move { approval(&c, &id).await }),
            Op::VersionUsage => get(|c: Ctx, Path(id): Id, RawQuery(q): RawQuery| async move {
                usage(&c, Some(&id), q).await
            }),
            Op::Usage => {
                get(|c: Ctx, RawQuery(q): RawQuery| async move { usage(&c, None, q).await })
            }
            Op::Audit => get(|c: Ctx, RawQuery(q): RawQuery| async move { audit(&c, q).await }),
            Op::AuditVerify => {
                get(|c: Ctx, RawQuery(q): RawQuery| async move { audit_verify(&c, q).await })
            }
        }
    }
}

/// The extension's routes a slice serves under `/api/registry_ext/v1`.
pub fn routes(slice: Slice) -> Router<ApiState> {
    let mut router = Router::new();
    for route in ROUTES.iter().filter(|r| r.op.slice() == slice) {
        router = router.route(route.path, route.op.handler());
    }
    router
}

/// A family's name in the audit (`entityType`).
pub fn entity_type(f: Family) -> &'static str {
    match f {
        Family::RegisteredModel => "RegisteredModel",
        Family::ModelVersion => "ModelVersion",
        Family::Artifact => "Artifact",
        Family::ServingEnvironment => "ServingEnvironment",
        Family::InferenceService => "InferenceService",
        Family::ServeModel => "ServeModel",
        Family::Experiment => "Experiment",
        Family::ExperimentRun => "ExperimentRun",
        Family::MetricHistory => "MetricHistory",
    }
}

fn parse_entity_type(s: &str) -> Result<Family, Error> {
    crate::store::layout::FAMILY_ORDER
        .into_iter()
        .find(|f| entity_type(*f).eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "entityType '{s}': expected one of {}",
                crate::store::layout::FAMILY_ORDER
                    .map(entity_type)
                    .join(", ")
            ))
        })
}

/// A record as the history and the audit show it.
fn record_json(h: &Revision) -> Value {
    let r = &h.record;
    let family = r.entity.kind.family();
    json!({
        "id": format!("{}/{}/{}", entity_type(family), r.entity.id, r.revision),
        "time": r.at_ms.to_string(),
        "actor": r.actor,
        "action": r.action.wire(),
        "entityType": entity_type(family),
        "entityId": r.entity.id.to_string(),
        "revision": r.revision.to_string(),
        "changes": r.changes,
        "applied": h.applied,
        "hash": r.hash,
        "prevHash": r.prev_hash,
        "entity": codec::to_value(&r.entity),
    })
}

/// 200 with `v`, whose unset (null) top-level fields are left out, as the
/// API leaves out unset fields of entities.
fn json_ok(mut v: Value) -> Reply {
    if let Value::Object(o) = &mut v {
        o.retain(|_, x| !x.is_null());
    }
    Ok((StatusCode::OK, Json(v)).into_response())
}

/// A page size: 1 to 1,000, 100 when not given.
fn page_size(args: &QueryArgs) -> Result<usize, Error> {
    match args.get("pageSize").filter(|v| !v.is_empty()) {
        None => Ok(100),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(1000)),
            _ => Err(Error::BadRequest(format!(
                "pageSize: '{v}' is not a positive integer"
            ))),
        },
    }
}

/// Epoch milliseconds of a query parameter.
fn millis(args: &QueryArgs, key: &str) -> Result<Option<u64>, Error> {
    match args.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Error::BadRequest(format!(
                "{key} '{v}': expected milliseconds since the epoch"
            ))
        }),
    }
}

async fn history(c: &Ctx, family: Family, id: &str, q: Option<String>) -> Reply {
    let id = path_id(id)?;
    c.get_for(Permission::Read, family, None, id).await?;
    let args = QueryArgs::parse(q)?;
    let size = page_size(&args)?;
    let before =
        match args.get("nextPageToken").filter(|v| !v.is_empty()) {
            None => None,
            Some(t) => Some(t.parse::<u64>().map_err(|_| {
                Error::BadRequest(format!("nextPageToken '{t}' is not a valid token"))
            })?),
        };
    let (items, next) = c.s.registry.history(family, id, before, size).await?;
    let items: Vec<Value> = items.iter().map(record_json).collect();
    json_ok(json!({
        "items": items,
        "size": items.len(),
        "pageSize": size,
        "nextPageToken": next.map(|n| n.to_string()).unwrap_or_default(),
    }))
}

async fn as_of(c: &Ctx, family: Family, id: &str, q: Option<String>) -> Reply {
    let id = path_id(id)?;
    let current = c.get_for(Permission::Read, family, None, id).await?;
    let args = QueryArgs::parse(q)?;
    match millis(&args, "asOf")? {
        None => ok(&current),
        Some(ms) => ok(&c.s.registry.as_of(family, id, ms).await?),
    }
}

/// An id given as a JSON string (the API's way) or number.
fn id_field(body: &Value, key: &str) -> Result<u64, Error> {
    match body.get(key) {
        Some(Value::String(s)) => parse_id(key, s),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::BadRequest(format!("{key}: {n} is not a valid id"))),
        Some(other) => Err(Error::BadRequest(format!(
            "{key}: expected an id as a string, got {other}"
        ))),
        None => Err(Error::BadRequest(format!("{key} is required"))),
    }
}

async fn revert(c: &Ctx, family: Family, id: &str, body: &Bytes) -> Reply {
    let id = path_id(id)?;
    let body = body_json(body)?;
    let revision = id_field(&body, "revision")?;
    c.get_for(Permission::Write, family, None, id).await?;
    ok(&c.s.registry.revert(family, id, revision).await?)
}

async fn aliases(c: &Ctx, id: &str) -> Reply {
    let id = path_id(id)?;
    let model = c
        .get_for(Permission::Read, Family::RegisteredModel, None, id)
        .await?;
    let items: Vec<Value> = model
        .gov
        .aliases
        .iter()
        .map(|(alias, v)| json!({"alias": alias, "modelVersionId": v.to_string()}))
        .collect();
    json_ok(json!({"items": items, "size": items.len(), "registeredModelId": id.to_string()}))
}

async fn get_alias(c: &Ctx, id: &str, alias: &str) -> Reply {
    let id = path_id(id)?;
    check_alias(alias)?;
    c.get_for(Permission::Read, Family::RegisteredModel, None, id)
        .await?;
    ok(&c.s.registry.alias(id, alias).await?)
}

async fn set_alias(c: &Ctx, id: &str, alias: &str, body: Option<&Bytes>) -> Reply {
    let id = path_id(id)?;
    check_alias(alias)?;
    let to = match body {
        Some(b) => Some(id_field(&body_json(b)?, "modelVersionId")?),
        None => None,
    };
    c.get_for(Permission::Write, Family::RegisteredModel, None, id)
        .await?;
    let (_, previous) = c.s.registry.set_alias(id, alias, to).await?;
    if to.is_none() && previous.is_none() {
        return Err(
            Error::NotFound(format!("registered model {id} has no alias '{alias}'")).into(),
        );
    }
    json_ok(json!({
        "alias": alias,
        "registeredModelId": id.to_string(),
        "modelVersionId": to.map(|v| v.to_string()),
        "previousModelVersionId": previous.map(|v| v.to_string()),
    }))
}

fn policy_json(model: u64, p: Option<&ApprovalPolicy>) -> Value {
    match p {
        Some(p) => json!({
            "registeredModelId": model.to_string(),
            "requiredApprovals": p.required_approvals,
            "gates": p.gates,
            "protectedAliases": p.protected_aliases,
        }),
        None => {
            json!({"registeredModelId": model.to_string(), "requiredApprovals": 1, "gates": [], "protectedAliases": []})
        }
    }
}

/// Read (`change` None), set (`Some(Some(body))`) or remove (`Some(None)`)
/// a model's approval policy. Without one, a version needs one approval
/// and no alias is protected.
async fn policy(c: &Ctx, id: &str, change: Option<Option<&Bytes>>) -> Reply {
    let id = path_id(id)?;
    let Some(change) = change else {
        let m = c
            .get_for(Permission::Read, Family::RegisteredModel, None, id)
            .await?;
        return json_ok(policy_json(id, m.gov.policy.as_ref()));
    };
    let policy = match change {
        Some(b) => Some(
            serde_json::from_value::<ApprovalPolicy>(body_json(b)?)
                .map_err(|e| Error::BadRequest(format!("approval policy: {e}")))?,
        ),
        None => None,
    };
    c.get_for(Permission::Write, Family::RegisteredModel, None, id)
        .await?;
    let m = c.s.registry.set_policy(id, policy).await?;
    json_ok(policy_json(id, m.gov.policy.as_ref()))
}

fn approval_json(id: u64, a: &ApprovalStatus) -> Value {
    json!({
        "modelVersionId": id.to_string(),
        "state": a.state.wire(),
        "requiredApprovals": a.required,
        "approvals": a.votes.iter().map(|v| json!({
            "actor": v.actor,
            "decision": v.decision,
            "comment": v.comment,
            "time": v.at_ms.to_string(),
        })).collect::<Vec<_>>(),
        "gates": a.gates.iter().map(|(expression, passed)| json!({
            "expression": expression,
            "passed": passed,
        })).collect::<Vec<_>>(),
        "author": a.author,
        "protectedAliases": a.protected_aliases,
    })
}

async fn approval(c: &Ctx, id: &str) -> Reply {
    let id = path_id(id)?;
    c.get_for(Permission::Read, Family::ModelVersion, None, id)
        .await?;
    json_ok(approval_json(id, &c.s.registry.approval(id).await?))
}

async fn decide(c: &Ctx, id: &str, body: &Bytes) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        decision: Decision,
        #[serde(default)]
        comment: String,
    }
    let id = path_id(id)?;
    let body: Body = serde_json::from_value(body_json(body)?).map_err(|e| {
        Error::BadRequest(format!(
            "approval: {e} (expected {{\"decision\": \"APPROVE\" or \"REJECT\", \"comment\": \"…\"}})"
        ))
    })?;
    c.get_for(Permission::Approve, Family::ModelVersion, None, id)
        .await?;
    let status =
        c.s.registry
            .decide(id, body.decision, &body.comment)
            .await?;
    json_ok(approval_json(id, &status))
}

/// Who read a version (`version`), or what a caller read (`?actor=`; the
/// caller's own usage, or anyone's for a caller who reads everything).
async fn usage(c: &Ctx, version: Option<&str>, q: Option<String>) -> Reply {
    let args = QueryArgs::parse(q)?;
    let size = page_size(&args)?;
    let after = match args.get("nextPageToken").filter(|v| !v.is_empty()) {
        None => None,
        Some(t) => Some(decode_token(t, OrderBy::CreateTime, true)?),
    };
    let (version, actor) = match version {
        Some(id) => {
            let id = path_id(id)?;
            c.get_for(Permission::Read, Family::ModelVersion, None, id)
                .await?;
            (Some(id), None)
        }
        None => {
            let Some(actor) = args.get("actor").filter(|v| !v.is_empty()) else {
                return Err(Error::BadRequest("actor is required".into()).into());
            };
            if actor != c.who.caller.user && !c.who.reads_everything() {
                return Err(c
                    .who
                    .denied(Permission::Read, &format!("the usage of {actor}")));
            }
            (None, Some(actor.to_string()))
        }
    };
    let page =
        c.s.registry
            .usage(version, actor.as_deref(), after, size)
            .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            json!({
                "modelVersionId": r.version.to_string(),
                "actor": r.actor,
                "day": crate::domain::civil_date(r.day),
                "firstTime": r.first_ms.to_string(),
                "lastTime": r.last_ms.to_string(),
                "count": r.count.to_string(),
            })
        })
        .collect();
    json_ok(json!({
        "items": items,
        "size": items.len(),
        "pageSize": size,
        "nextPageToken": page
            .next
            .map(|n| encode_token(&n, OrderBy::CreateTime, true))
            .unwrap_or_default(),
    }))
}

async fn audit(c: &Ctx, q: Option<String>) -> Reply {
    let args = QueryArgs::parse(q)?;
    let family = args
        .get("entityType")
        .filter(|v| !v.is_empty())
        .map(parse_entity_type)
        .transpose()?;
    let entity = match (family, args.id("entityId")?) {
        (Some(f), Some(id)) => Some((f, id)),
        (None, Some(_)) => {
            return Err(Error::BadRequest("entityId needs entityType".into()).into());
        }
        _ => None,
    };
    // Reading one entity's records needs reading the entity; the rest are
    // left out record by record where the caller may not read them.
    let mut checked: Option<Entity> = None;
    if let Some((f, id)) = entity {
        checked = Some(c.get_for(Permission::Read, f, None, id).await?);
    }
    let after = match args.get("nextPageToken").filter(|v| !v.is_empty()) {
        None => None,
        Some(t) => Some(decode_token(t, OrderBy::CreateTime, true)?),
    };
    let query = AuditQuery {
        entity,
        family,
        actor: args
            .get("actor")
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        since_ms: millis(&args, "since")?,
        until_ms: millis(&args, "until")?,
        page_size: page_size(&args)?,
        after,
    };
    let answer = c.s.registry.audit(&query).await?;
    let mut items = Vec::with_capacity(answer.items.len());
    let mut hidden = 0usize;
    for h in &answer.items {
        if checked.is_some() || c.who.may_read(&c.s.owners, &h.record.entity).await? {
            items.push(record_json(h));
        } else {
            hidden += 1;
        }
    }
    json_ok(json!({
        "items": items,
        "size": items.len(),
        "pageSize": query.page_size,
        "hidden": hidden,
        "nextPageToken": answer
            .next
            .map(|n| encode_token(&n, OrderBy::CreateTime, true))
            .unwrap_or_default(),
    }))
}

async fn audit_verify(c: &Ctx, q: Option<String>) -> Reply {
    if !c.who.access.allows_everywhere(Permission::Admin) {
        return Err(c.who.denied(Permission::Admin, "the ledger"));
    }
    let args = QueryArgs::parse(q)?;
    let token = args.get("nextPageToken").filter(|v| !v.is_empty());
    let report = c.s.registry.verify_all(token).await?;
    let broken: Vec<Value> = report
        .broken
        .iter()
        .map(|(f, id, v)| {
            json!({
                "entityType": entity_type(*f),
                "entityId": id.to_string(),
                "records": v.records,
                "brokenAtRevision": v.broken_at.map(|r| r.to_string()),
                "reason": v.reason,
            })
        })
        .collect();
    json_ok(json!({
        "entities": report.entities,
        "records": report.records,
        "ok": broken.is_empty(),
        "broken": broken,
        "complete": report.next.is_none(),
        "nextPageToken": report.next.unwrap_or_default(),
    }))
}

async fn lineage(c: &Ctx, id: &str) -> Reply {
    let id = path_id(id)?;
    c.get_for(Permission::Read, Family::ModelVersion, None, id)
        .await?;
    let l = c.s.registry.lineage(id).await?;
    // Everything under the version belongs to its model, which the caller
    // may read; runs, experiments and serving environments are checked.
    let mut hidden = 0usize;
    let mut visible = Vec::new();
    for r in &l.runs {
        if c.who
            .check(&c.s.owners, Permission::Read, &r.run)
            .await
            .is_err()
        {
            hidden += 1;
            continue;
        }
        let experiment = shown(c, r.experiment.as_ref(), &mut hidden).await;
        visible.push(serde_json::json!({
            "experimentRun": codec::to_value(&r.run),
            "experiment": experiment,
            "artifacts": r.artifacts.iter().map(codec::to_value).collect::<Vec<_>>(),
        }));
    }
    let mut services = Vec::new();
    for s in &l.serving {
        let environment = shown(c, s.serving_environment.as_ref(), &mut hidden).await;
        services.push(serde_json::json!({
            "inferenceService": codec::to_value(&s.inference_service),
            "servingEnvironment": environment,
            "pinned": s.pinned,
        }));
    }
    let datasets: Vec<Value> = l
        .datasets()
        .into_iter()
        .filter(|d| {
            // A run's dataset is shown only with its run.
            d.belongs_to(l.version.id)
                || visible.iter().any(|r| {
                    r["experimentRun"]["id"].as_str() == d.parent.map(|p| p.to_string()).as_deref()
                })
        })
        .map(codec::to_value)
        .collect();
    Ok(Json(serde_json::json!({
        "modelVersion": codec::to_value(&l.version),
        "registeredModel": codec::to_value(&l.model),
        "artifacts": l.artifacts.iter().map(codec::to_value).collect::<Vec<_>>(),
        "datasets": datasets,
        "experimentRuns": visible,
        "inferenceServices": services,
        "hidden": hidden,
        "truncated": l.truncated,
    }))
    .into_response())
}

/// `e` as the caller may see it: its wire form, or null (counted in
/// `hidden` when it exists but may not be read).
async fn shown(c: &Ctx, e: Option<&Entity>, hidden: &mut usize) -> Value {
    match e {
        Some(e) if c.who.check(&c.s.owners, Permission::Read, e).await.is_ok() => {
            codec::to_value(e)
        }
        Some(_) => {
            *hidden += 1;
            Value::Null
        }
        None => Value::Null,
    }
}
