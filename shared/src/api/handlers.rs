//! Handlers of the three slices. Each is a thin mapping from HTTP (path,
//! query, JSON body) to one `Registry` call; the rules live in the domain.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::{ApiState, Slice};
use crate::domain::entity::{Entity, Family, Kind, NewEntity, artifact_kind, parse_id};
use crate::domain::error::Error;
use crate::domain::paging::{ListParams, RawListParams};
use crate::domain::registry::{ListPage, Narrow, Scope};

type Reply = ApiResult<(StatusCode, Json<Value>)>;

/// Decoded query string (repeated keys: the last wins).
struct QueryArgs(Vec<(String, String)>);

impl QueryArgs {
    fn parse(raw: Option<String>) -> ApiResult<Self> {
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
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn id(&self, key: &str) -> ApiResult<Option<u64>> {
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

fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(
            Error::BadRequest("request body is empty: expected a JSON object".into()).into(),
        );
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")).into())
}

fn path_id(raw: &str) -> ApiResult<u64> {
    Ok(parse_id("id", raw)?)
}

fn ok(e: &Entity) -> Reply {
    Ok((StatusCode::OK, Json(e.to_wire())))
}

fn created(e: &Entity) -> Reply {
    Ok((StatusCode::CREATED, Json(e.to_wire())))
}

fn page(p: ListPage) -> Reply {
    let items: Vec<Value> = p.items.iter().map(Entity::to_wire).collect();
    let size = items.len();
    Ok((
        StatusCode::OK,
        Json(json!({
            "items": items,
            "nextPageToken": p.next_page_token,
            "pageSize": p.page_size,
            "size": size,
        })),
    ))
}

async fn list(
    s: &ApiState,
    family: Family,
    scope: Scope,
    kind: Option<Kind>,
    q: Option<String>,
) -> Reply {
    let args = QueryArgs::parse(q)?;
    let params = args.list_params(s.strict_order)?;
    let narrow = args.narrow(kind)?;
    page(s.registry.list(family, scope, &narrow, &params).await?)
}

async fn find(s: &ApiState, family: Family, kind: Option<Kind>, q: Option<String>) -> Reply {
    let args = QueryArgs::parse(q)?;
    let name = args.get("name").filter(|v| !v.is_empty());
    let xid = args.get("externalId").filter(|v| !v.is_empty());
    let parent = args.id("parentResourceId")?;
    ok(&s.registry.find(family, kind, name, xid, parent).await?)
}

async fn create(s: &ApiState, kind: Kind, body: &Value) -> Reply {
    created(&s.registry.create(NewEntity::from_wire(kind, body)?).await?)
}

async fn get_one(s: &ApiState, family: Family, kind: Option<Kind>, id: &str) -> Reply {
    ok(&s.registry.get(family, kind, path_id(id)?).await?)
}

async fn patch(s: &ApiState, family: Family, kind: Option<Kind>, id: &str, body: &Bytes) -> Reply {
    let id = path_id(id)?;
    let body = body_json(body)?;
    ok(&s.registry.update(family, kind, id, &body).await?)
}

/// Create an artifact outside any version; `default` is the kind when `artifactType` is absent.
async fn create_artifact(s: &ApiState, default: Option<Kind>, body: &Bytes) -> Reply {
    let body = body_json(body)?;
    let kind = artifact_kind(&body, default)?;
    if default.is_some_and(|d| d != kind) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "artifactType must be model-artifact on /model_artifacts".into(),
        ));
    }
    create(s, kind, &body).await
}

/// Create a child of `parent_id` (from the path): the parent id field, when
/// the kind has one, must match the path or is filled in from it.
async fn create_child(s: &ApiState, kind: Kind, parent_id: u64, b: &Bytes) -> Reply {
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
            create(s, kind, &body).await
        }
        _ => {
            let mut new = NewEntity::from_wire(kind, &body)?;
            new.parent = Some(parent_id);
            created(&s.registry.create(new).await?)
        }
    }
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
            get(
                move |State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                    list(&s, family, Scope::All, None, q).await
                },
            )
            .post(move |State(s): State<ApiState>, b: Bytes| async move {
                create(&s, kind, &body_json(&b)?).await
            }),
        )
        .route(
            &format!("/{singular}"),
            get(
                move |State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                    find(&s, family, None, q).await
                },
            ),
        )
        .route(
            &format!("/{plural}/{{id}}"),
            get(
                move |State(s): State<ApiState>, Path(id): Path<String>| async move {
                    get_one(&s, family, None, &id).await
                },
            )
            .patch(
                move |State(s): State<ApiState>, Path(id): Path<String>, b: Bytes| async move {
                    patch(&s, family, None, &id, &b).await
                },
            ),
        )
}

/// `{path}` under a parent: list the children, create one.
fn children(router: Router<ApiState>, path: &str, parent: Family, kind: Kind) -> Router<ApiState> {
    router.route(
        path,
        get(move |State(s): State<ApiState>, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
            let id = path_id(&id)?;
            s.registry.get(parent, None, id).await?;
            list(&s, kind.family(), Scope::Parent(id), None, q).await
        })
        .post(move |State(s): State<ApiState>, Path(id): Path<String>, b: Bytes| async move {
            create_child(&s, kind, path_id(&id)?, &b).await
        }),
    )
}

/// Metric history of one run (`Some`) or of all runs, with `name` and `stepIds` filters.
async fn metric_history(s: &ApiState, run: Option<u64>, q: Option<String>) -> Reply {
    let args = QueryArgs::parse(q)?;
    let params = args.list_params(s.strict_order)?;
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
            s.registry.get(Family::ExperimentRun, None, id).await?;
            Scope::Parent(id)
        }
        None => Scope::All,
    };
    page(
        s.registry
            .list(Family::MetricHistory, scope, &narrow, &params)
            .await?,
    )
}

/// The routes of one slice (relative to a prefix).
pub fn routes(slice: Slice) -> Router<ApiState> {
    use Family as F;
    match slice {
        // Served outside the API prefixes (see `storage_events`, `uploads`).
        Slice::StorageEvents | Slice::Uploads => Router::new(),
        Slice::RegisteredModels => {
            let r = resource(Router::new(), "registered_models", "registered_model", Kind::RegisteredModel);
            children(r, "/registered_models/{id}/versions", F::RegisteredModel, Kind::ModelVersion)
        }
        Slice::ModelVersions => resource(Router::new(), "model_versions", "model_version", Kind::ModelVersion)
            .route(
                "/model_versions/{id}/artifacts",
                get(|State(s): State<ApiState>, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                    let id = path_id(&id)?;
                    s.registry.get(F::ModelVersion, None, id).await?;
                    list(&s, F::Artifact, Scope::Parent(id), None, q).await
                })
                .post(|State(s): State<ApiState>, Path(id): Path<String>, b: Bytes| async move {
                    let id = path_id(&id)?;
                    let (e, is_new) = s.registry.upsert_version_artifact(id, &body_json(&b)?).await?;
                    if is_new { created(&e) } else { ok(&e) }
                }),
            ),
        Slice::Serving => {
            let r = resource(Router::new(), "serving_environments", "serving_environment", Kind::ServingEnvironment);
            let r = resource(r, "inference_services", "inference_service", Kind::InferenceService);
            let r = children(
                r,
                "/serving_environments/{id}/inference_services",
                F::ServingEnvironment,
                Kind::InferenceService,
            );
            children(r, "/inference_services/{id}/serves", F::InferenceService, Kind::ServeModel)
                .route(
                    "/inference_services/{id}/model",
                    get(|State(s): State<ApiState>, Path(id): Path<String>| async move {
                        ok(&s.registry.inference_service_model(path_id(&id)?).await?)
                    }),
                )
                .route(
                    "/inference_services/{id}/version",
                    get(|State(s): State<ApiState>, Path(id): Path<String>| async move {
                        ok(&s.registry.inference_service_version(path_id(&id)?).await?)
                    }),
                )
        }
        Slice::Experiments => {
            let r = resource(Router::new(), "experiments", "experiment", Kind::Experiment);
            let r = resource(r, "experiment_runs", "experiment_run", Kind::ExperimentRun);
            children(r, "/experiments/{id}/experiment_runs", F::Experiment, Kind::ExperimentRun)
                .route(
                    "/experiment_runs/{id}/artifacts",
                    get(|State(s): State<ApiState>, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                        let id = path_id(&id)?;
                        s.registry.get(F::ExperimentRun, None, id).await?;
                        list(&s, F::Artifact, Scope::Parent(id), None, q).await
                    })
                    .post(|State(s): State<ApiState>, Path(id): Path<String>, b: Bytes| async move {
                        let (e, is_new) = s.registry.upsert_run_artifact(path_id(&id)?, &body_json(&b)?).await?;
                        if is_new { created(&e) } else { ok(&e) }
                    }),
                )
                .route(
                    "/experiment_runs/{id}/metric_history",
                    get(|State(s): State<ApiState>, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                        metric_history(&s, Some(path_id(&id)?), q).await
                    }),
                )
                .route(
                    "/experiment_runs/metric_history",
                    get(|State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                        metric_history(&s, None, q).await
                    }),
                )
        }
        Slice::Artifacts => Router::new()
            .route(
                "/model_artifacts",
                get(|State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                    list(&s, F::Artifact, Scope::All, Some(Kind::ModelArtifact), q).await
                })
                .post(|State(s): State<ApiState>, b: Bytes| async move {
                    create_artifact(&s, Some(Kind::ModelArtifact), &b).await
                }),
            )
            .route(
                "/model_artifact",
                get(|State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                    find(&s, F::Artifact, Some(Kind::ModelArtifact), q).await
                }),
            )
            .route(
                "/model_artifacts/{id}",
                get(|State(s): State<ApiState>, Path(id): Path<String>| async move {
                    get_one(&s, F::Artifact, Some(Kind::ModelArtifact), &id).await
                })
                .patch(|State(s): State<ApiState>, Path(id): Path<String>, b: Bytes| async move {
                    patch(&s, F::Artifact, Some(Kind::ModelArtifact), &id, &b).await
                }),
            )
            .route(
                "/artifacts",
                get(|State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                    list(&s, F::Artifact, Scope::All, None, q).await
                })
                .post(|State(s): State<ApiState>, b: Bytes| async move {
                    create_artifact(&s, None, &b).await
                }),
            )
            .route(
                "/artifact",
                get(|State(s): State<ApiState>, RawQuery(q): RawQuery| async move {
                    find(&s, F::Artifact, None, q).await
                }),
            )
            .route(
                "/artifacts/{id}",
                get(|State(s): State<ApiState>, Path(id): Path<String>| async move {
                    get_one(&s, F::Artifact, None, &id).await
                })
                .patch(|State(s): State<ApiState>, Path(id): Path<String>, b: Bytes| async move {
                    // The update schema is a union keyed by artifactType: it must be sent.
                    artifact_kind(&body_json(&b)?, None)?;
                    patch(&s, F::Artifact, None, &id, &b).await
                }),
            ),
    }
}
