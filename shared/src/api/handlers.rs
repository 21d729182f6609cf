//! Handlers of the API slices. Each is a thin mapping from HTTP (path,
//! query, JSON body) to one `Registry` call, after the caller's right to
//! make it was checked (see `guard`); the rules live in the domain.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::codec::{self, Wire, artifact_kind};
use super::error::{ApiError, ApiResult};
use super::guard::Identity;
use super::lists::{self, Visibility};
use super::{ApiState, Slice};
use crate::domain::access::Permission;
use crate::domain::entity::{Entity, Family, Kind, NewEntity, parse_id};
use crate::domain::error::Error;
use crate::domain::paging::{ListParams, RawListParams};
use crate::domain::registry::{Narrow, Scope};

pub(super) type Reply = ApiResult<Response>;

/// What every handler gets: the state of its prefix and who is calling.
pub(super) struct Ctx {
    pub(super) s: ApiState,
    pub(super) who: Identity,
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        Ok(Ctx {
            s: state.clone(),
            who: Identity::from_request_parts(parts, state).await?,
        })
    }
}

impl Ctx {
    /// An entity the caller may `p`, or the refusal.
    pub(super) async fn get_for(
        &self,
        p: Permission,
        family: Family,
        kind: Option<Kind>,
        id: u64,
    ) -> ApiResult<Entity> {
        let e = self.s.registry.get(family, kind, id).await?;
        self.who.check(&self.s.owners, p, &e).await?;
        Ok(e)
    }

    async fn create(&self, new: NewEntity) -> Reply {
        self.who
            .check_new(&self.s.owners, Permission::Write, &new)
            .await?;
        created(&self.s.registry.create(new).await?)
    }
}

/// Decoded query string (repeated keys: the last wins).
pub(super) struct QueryArgs(Vec<(String, String)>);

impl QueryArgs {
    pub(super) fn parse(raw: Option<String>) -> ApiResult<Self> {
        let raw = raw.unwrap_or_default();
        let args = serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
            .map_err(|e| Error::BadRequest(format!("invalid query string: {e}")))?;
        if let Some((k, _)) = args
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(Error::BadRequest(format!(
                "query parameter '{k}': NUL bytes are not allowed"
            ))
            .into());
        }
        Ok(QueryArgs(args))
    }
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn id(&self, key: &str) -> ApiResult<Option<u64>> {
        match self.get(key).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(parse_id(key, v)?)),
            None => Ok(None),
        }
    }
    fn list_params(&self, strict_order: bool) -> ApiResult<ListParams> {
        let raw = RawListParams {
            page_size: self.get("pageSize"),
            order_by: self.get("orderBy"),
            sort_order: self.get("sortOrder"),
            next_page_token: self.get("nextPageToken"),
            filter_query: self.get("filterQuery"),
        };
        Ok(ListParams::parse(&raw, strict_order)?)
    }
    fn narrow(&self, kind: Option<Kind>) -> ApiResult<Narrow> {
        let kind = match (kind, self.get("artifactType").filter(|t| !t.is_empty())) {
            (Some(k), _) => Some(k),
            (None, Some(t)) => Some(Kind::from_artifact_type(t)?),
            (None, None) => None,
        };
        Ok(Narrow {
            kind,
            name: self
                .get("name")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            external_id: self
                .get("externalId")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            steps: None,
        })
    }
}

pub(super) fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(
            Error::BadRequest("request body is empty: expected a JSON object".into()).into(),
        );
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")).into())
}

pub(super) fn path_id(raw: &str) -> ApiResult<u64> {
    Ok(parse_id("id", raw)?)
}

pub(super) fn ok(e: &Entity) -> Reply {
    Ok((StatusCode::OK, Json(Wire(e))).into_response())
}

fn created(e: &Entity) -> Reply {
    Ok((StatusCode::CREATED, Json(Wire(e))).into_response())
}

/// A list: everything visible to the caller (`Scope::All`), or the
/// children of a parent it was allowed to read.
async fn list(
    c: &Ctx,
    family: Family,
    scope: Scope,
    kind: Option<Kind>,
    q: Option<String>,
) -> ApiResult<Response> {
    let args = QueryArgs::parse(q)?;
    let params = args.list_params(c.s.strict_order)?;
    let narrow = args.narrow(kind)?;
    stream(c, family, scope, &narrow, params).await
}

async fn stream(
    c: &Ctx,
    family: Family,
    scope: Scope,
    narrow: &Narrow,
    params: ListParams,
) -> ApiResult<Response> {
    let scan = c.s.registry.scan(family, scope, narrow, &params)?;
    let visibility = match scope {
        Scope::Parent(_) => Visibility::All,
        Scope::All if c.who.reads_everything() => Visibility::All,
        Scope::All => Visibility::Checked(c.who.clone(), Box::new(c.s.owners.clone())),
    };
    lists::respond(scan, params, visibility, &c.s.list_slots).await
}

/// The children of parent `id` (of `parent` family) that the caller may read.
async fn children_of(
    c: &Ctx,
    parent: Family,
    id: &str,
    family: Family,
    q: Option<String>,
) -> ApiResult<Response> {
    let id = path_id(id)?;
    c.get_for(Permission::Read, parent, None, id).await?;
    if parent == Family::ModelVersion {
        c.s.registry.used_version(id);
    }
    list(c, family, Scope::Parent(id), None, q).await
}

async fn find(c: &Ctx, family: Family, kind: Option<Kind>, q: Option<String>) -> Reply {
    let args = QueryArgs::parse(q)?;
    let name = args.get("name").filter(|v| !v.is_empty());
    let xid = args.get("externalId").filter(|v| !v.is_empty());
    let parent = args.id("parentResourceId")?;
    let e = c.s.registry.find(family, kind, name, xid, parent).await?;
    c.who.check(&c.s.owners, Permission::Read, &e).await?;
    c.s.registry.used(&e);
    ok(&e)
}

async fn create(c: &Ctx, kind: Kind, body: &Value) -> Reply {
    c.create(codec::decode_new(kind, body)?).await
}

async fn get_one(c: &Ctx, family: Family, kind: Option<Kind>, id: &str) -> Reply {
    let e = c
        .get_for(Permission::Read, family, kind, path_id(id)?)
        .await?;
    c.s.registry.used(&e);
    ok(&e)
}

/// A PATCH of an entity of `kind`; `None`: an artifact whose body names
/// its `artifactType` (the update schema is a union keyed by it).
async fn patch(c: &Ctx, family: Family, kind: Option<Kind>, id: &str, body: &Bytes) -> Reply {
    let id = path_id(id)?;
    let body = body_json(body)?;
    let kind = match kind {
        Some(k) => k,
        None => artifact_kind(&body, None)?,
    };
    let patch = codec::decode_patch(kind, &body)?;
    if !c.who.access.allows_everywhere(Permission::Write) {
        let current = c.s.registry.get(family, None, id).await?;
        c.who
            .check(&c.s.owners, Permission::Write, &current)
            .await?;
    }
    ok(&c.s.registry.update(family, id, &patch).await?)
}

/// Create an artifact outside any version; `default` is the kind when `artifactType` is absent.
async fn create_artifact(c: &Ctx, default: Option<Kind>, body: &Bytes) -> Reply {
    let body = body_json(body)?;
    let kind = artifact_kind(&body, default)?;
    if default.is_some_and(|d| d != kind) {
        return Err(Error::BadRequest(
            "artifactType must be model-artifact on /model_artifacts".into(),
        )
        .into());
    }
    create(c, kind, &body).await
}

/// Create a child of `parent_id` (from the path): the parent id field, when
/// the kind has one, must match the path or is filled in from it.
async fn create_child(c: &Ctx, kind: Kind, parent_id: u64, b: &Bytes) -> Reply {
    let mut body = body_json(b)?;
    match (kind.parent_field(), body.as_object_mut()) {
        (Some(field), Some(obj)) => {
            match obj.get(field).and_then(Value::as_str) {
                Some(given) if given != parent_id.to_string() => {
                    return Err(Error::BadRequest(format!(
                        "{field} '{given}' does not match the path id {parent_id}"
                    ))
                    .into());
                }
                _ => {
                    obj.insert(field.into(), Value::from(parent_id.to_string()));
                }
            }
            create(c, kind, &body).await
        }
        _ => {
            let mut new = codec::decode_new(kind, &body)?;
            new.parent = Some(parent_id);
            c.create(new).await
        }
    }
}

/// Upsert an artifact into a version (`run`: false) or a run: the caller
/// must be allowed to change that parent.
async fn upsert_artifact(c: &Ctx, parent: Family, id: &str, b: &Bytes) -> Reply {
    let id = path_id(id)?;
    let upsert = codec::decode_artifact_upsert(&body_json(b)?)?;
    if !c.who.access.allows_everywhere(Permission::Write) {
        c.get_for(Permission::Write, parent, None, id).await?;
    }
    let (e, is_new) = match parent {
        Family::ExperimentRun => c.s.registry.upsert_run_artifact(id, upsert).await?,
        _ => c.s.registry.upsert_version_artifact(id, upsert).await?,
    };
    if is_new { created(&e) } else { ok(&e) }
}

/// `/{plural}` (list, create), `/{singular}` (find), `/{plural}/{id}` (get, patch).
fn resource(
    router: Router<ApiState>,
    plural: &str,
    singular: &str,
    kind: Kind,
) -> Router<ApiState> {
    let family = kind.family();
    router
        .route(
            &format!("/{plural}"),
            get(move |c: Ctx, RawQuery(q): RawQuery| async move {
                list(&c, family, Scope::All, None, q).await
            })
            .post(move |c: Ctx, b: Bytes| async move { create(&c, kind, &body_json(&b)?).await }),
        )
        .route(
            &format!("/{singular}"),
            get(
                move |c: Ctx, RawQuery(q): RawQuery| async move { find(&c, family, None, q).await },
            ),
        )
        .route(
            &format!("/{plural}/{{id}}"),
            get(move |c: Ctx, Path(id): Path<String>| async move {
                get_one(&c, family, None, &id).await
            })
            .patch(move |c: Ctx, Path(id): Path<String>, b: Bytes| async move {
                patch(&c, family, Some(kind), &id, &b).await
            }),
        )
}

/// `{path}` under a parent: list the children, create one.
fn children(router: Router<ApiState>, path: &str, parent: Family, kind: Kind) -> Router<ApiState> {
    router.route(
        path,
        get(
            move |c: Ctx, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                children_of(&c, parent, &id, kind.family(), q).await
            },
        )
        .post(move |c: Ctx, Path(id): Path<String>, b: Bytes| async move {
            create_child(&c, kind, path_id(&id)?, &b).await
        }),
    )
}

/// Metric history of one run (`Some`) or of all runs, with `name` and `stepIds` filters.
async fn metric_history(c: &Ctx, run: Option<u64>, q: Option<String>) -> ApiResult<Response> {
    let args = QueryArgs::parse(q)?;
    let params = args.list_params(c.s.strict_order)?;
    let mut narrow = args.narrow(Some(Kind::MetricHistory))?;
    if let Some(steps) = args.get("stepIds").filter(|v| !v.trim().is_empty()) {
        let parsed: Result<Vec<i64>, _> =
            steps.split(',').map(|x| x.trim().parse::<i64>()).collect();
        narrow.steps = Some(parsed.map_err(|_| {
            Error::BadRequest(format!(
                "stepIds: '{steps}' is not a comma-separated list of integers"
            ))
        })?);
    }
    let scope = match run {
        Some(id) => {
            c.get_for(Permission::Read, Family::ExperimentRun, None, id)
                .await?;
            Scope::Parent(id)
        }
        None => Scope::All,
    };
    stream(c, Family::MetricHistory, scope, &narrow, params).await
}

/// `GET` and `PATCH` of `/{path}/{id}` for artifacts, narrowed to `kind`.
fn artifact_by_id(router: Router<ApiState>, path: &str, kind: Option<Kind>) -> Router<ApiState> {
    use Family as F;
    router.route(
        path,
        get(move |c: Ctx, Path(id): Path<String>| async move {
            get_one(&c, F::Artifact, kind, &id).await
        })
        .patch(move |c: Ctx, Path(id): Path<String>, b: Bytes| async move {
            patch(&c, F::Artifact, kind, &id, &b).await
        }),
    )
}

/// The routes of one slice (relative to a prefix).
pub fn routes(slice: Slice) -> Router<ApiState> {
    use Family as F;
    match slice {
        // Served outside the API prefixes (see `storage_events`, `uploads`).
        Slice::StorageEvents | Slice::Uploads => Router::new(),
        Slice::RegisteredModels => {
            let r = resource(
                Router::new(),
                "registered_models",
                "registered_model",
                Kind::RegisteredModel,
            );
            children(
                r,
                "/registered_models/{id}/versions",
                F::RegisteredModel,
                Kind::ModelVersion,
            )
        }
        Slice::ModelVersions => resource(
            Router::new(),
            "model_versions",
            "model_version",
            Kind::ModelVersion,
        )
        .route(
            "/model_versions/{id}/artifacts",
            get(
                |c: Ctx, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                    children_of(&c, F::ModelVersion, &id, F::Artifact, q).await
                },
            )
            .post(|c: Ctx, Path(id): Path<String>, b: Bytes| async move {
                upsert_artifact(&c, F::ModelVersion, &id, &b).await
            }),
        ),
        Slice::Serving => {
            let r = resource(
                Router::new(),
                "serving_environments",
                "serving_environment",
                Kind::ServingEnvironment,
            );
            let r = resource(
                r,
                "inference_services",
                "inference_service",
                Kind::InferenceService,
            );
            let r = children(
                r,
                "/serving_environments/{id}/inference_services",
                F::ServingEnvironment,
                Kind::InferenceService,
            );
            children(
                r,
                "/inference_services/{id}/serves",
                F::InferenceService,
                Kind::ServeModel,
            )
            .route(
                "/inference_services/{id}/model",
                get(|c: Ctx, Path(id): Path<String>| async move {
                    let id = path_id(&id)?;
                    c.get_for(Permission::Read, F::InferenceService, None, id)
                        .await?;
                    ok(&c.s.registry.inference_service_model(id).await?)
                }),
            )
            .route(
                "/inference_services/{id}/version",
                get(|c: Ctx, Path(id): Path<String>| async move {
                    let id = path_id(&id)?;
                    c.get_for(Permission::Read, F::InferenceService, None, id)
                        .await?;
                    ok(&c.s.registry.inference_service_version(id).await?)
                }),
            )
        }
        Slice::Experiments => {
            let r = resource(Router::new(), "experiments", "experiment", Kind::Experiment);
            let r = resource(r, "experiment_runs", "experiment_run", Kind::ExperimentRun);
            children(r, "/experiments/{id}/experiment_runs", F::Experiment, Kind::ExperimentRun)
                .route(
                    "/experiment_runs/{id}/artifacts",
                    get(|c: Ctx, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                        children_of(&c, F::ExperimentRun, &id, F::Artifact, q).await
                    })
                    .post(|c: Ctx, Path(id): Path<String>, b: Bytes| async move {
                        upsert_artifact(&c, F::ExperimentRun, &id, &b).await
                    }),
                )
                .route(
                    "/experiment_runs/{id}/metric_history",
                    get(|c: Ctx, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                        metric_history(&c, Some(path_id(&id)?), q).await
                    }),
                )
                .route(
                    "/experiment_runs/metric_history",
                    get(|c: Ctx, RawQuery(q): RawQuery| async move { metric_history(&c, None, q).await }),
                )
        }
        Slice::Artifacts => {
            let r = Router::new()
                .route(
                    "/model_artifacts",
                    get(|c: Ctx, RawQuery(q): RawQuery| async move {
                        list(&c, F::Artifact, Scope::All, Some(Kind::ModelArtifact), q).await
                    })
                    .post(|c: Ctx, b: Bytes| async move {
                        create_artifact(&c, Some(Kind::ModelArtifact), &b).await
                    }),
                )
                .route(
                    "/model_artifact",
                    get(|c: Ctx, RawQuery(q): RawQuery| async move {
                        find(&c, F::Artifact, Some(Kind::ModelArtifact), q).await
                    }),
                )
                .route(
                    "/artifacts",
                    get(|c: Ctx, RawQuery(q): RawQuery| async move {
                        list(&c, F::Artifact, Scope::All, None, q).await
                    })
                    .post(|c: Ctx, b: Bytes| async move { create_artifact(&c, None, &b).await }),
                )
                .route(
                    "/artifact",
                    get(|c: Ctx, RawQuery(q): RawQuery| async move {
                        find(&c, F::Artifact, None, q).await
                    }),
                );
            let r = artifact_by_id(r, "/model_artifacts/{id}", Some(Kind::ModelArtifact));
            artifact_by_id(r, "/artifacts/{id}", None)
        }
    }
}
