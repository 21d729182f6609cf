//! Our own OpenAPI 3 document, generated from the same schema table the
//! domain validates with (`Kind::fields`) and from the operation table
//! below, so the document cannot drift from what the server accepts.
//! Served at `<prefix>/openapi.json` and, the same document as YAML text, at
//! `<prefix>/openapi.yaml`.

use serde_json::{Map, Value, json};

use crate::domain::entity::{FieldType, Kind, MAX_NAME};

/// One operation of the API, relative to a prefix.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    /// Request body schema name.
    body: Option<&'static str>,
    /// Success response schema name.
    response: &'static str,
    status: &'static str,
    /// Query parameter names (see `parameter`).
    query: &'static [&'static str],
}

const LIST: &[&str] = &[
    "filterQuery",
    "pageSize",
    "orderBy",
    "sortOrder",
    "nextPageToken",
];
const CHILD_LIST: &[&str] = &[
    "name",
    "externalId",
    "filterQuery",
    "pageSize",
    "orderBy",
    "sortOrder",
    "nextPageToken",
];
const ARTIFACT_LIST: &[&str] = &[
    "filterQuery",
    "artifactType",
    "pageSize",
    "orderBy",
    "sortOrder",
    "nextPageToken",
];
const CHILD_ARTIFACT_LIST: &[&str] = &[
    "name",
    "externalId",
    "filterQuery",
    "artifactType",
    "pageSize",
    "orderBy",
    "sortOrder",
    "nextPageToken",
];
const HISTORY: &[&str] = &[
    "name",
    "stepIds",
    "filterQuery",
    "pageSize",
    "orderBy",
    "sortOrder",
    "nextPageToken",
];
const FIND: &[&str] = &["name", "externalId", "parentResourceId"];
const NONE: &[&str] = &[];

macro_rules! op {
    ($m:literal $p:literal $id:literal, $body:expr, $resp:literal $st:literal, $q:expr) => {
        Op {
            method: $m,
            path: $p,
            id: $id,
            body: $body,
            response: $resp,
            status: $st,
            query: $q,
        }
    };
}

const OPS: &[Op] = &[
    op!("get" "/artifact" "findArtifact", None, "Artifact" "200", FIND),
    op!("get" "/artifacts" "getArtifacts", None, "ArtifactList" "200", ARTIFACT_LIST),
    op!("post" "/artifacts" "createArtifact", Some("ArtifactCreate"), "Artifact" "201", NONE),
    op!("get" "/artifacts/{id}" "getArtifact", None, "Artifact" "200", NONE),
    op!("patch" "/artifacts/{id}" "updateArtifact", Some("ArtifactUpdate"), "Artifact" "200", NONE),
    op!("get" "/model_artifact" "findModelArtifact", None, "ModelArtifact" "200", FIND),
    op!("get" "/model_artifacts" "getModelArtifacts", None, "ModelArtifactList" "200", LIST),
    op!("post" "/model_artifacts" "createModelArtifact", Some("ModelArtifactCreate"), "ModelArtifact" "201", NONE),
    op!("get" "/model_artifacts/{id}" "getModelArtifact", None, "ModelArtifact" "200", NONE),
    op!("patch" "/model_artifacts/{id}" "updateModelArtifact", Some("ModelArtifactUpdate"), "ModelArtifact" "200", NONE),
    op!("get" "/registered_model" "findRegisteredModel", None, "RegisteredModel" "200", FIND),
    op!("get" "/registered_models" "getRegisteredModels", None, "RegisteredModelList" "200", LIST),
    op!("post" "/registered_models" "createRegisteredModel", Some("RegisteredModelCreate"), "RegisteredModel" "201", NONE),
    op!("get" "/registered_models/{id}" "getRegisteredModel", None, "RegisteredModel" "200", NONE),
    op!("patch" "/registered_models/{id}" "updateRegisteredModel", Some("RegisteredModelUpdate"), "RegisteredModel" "200", NONE),
    op!("get" "/registered_models/{id}/versions" "getRegisteredModelVersions", None, "ModelVersionList" "200", CHILD_LIST),
    op!("post" "/registered_models/{id}/versions" "createRegisteredModelVersion", Some("ModelVersionCreate"), "ModelVersion" "201", NONE),
    op!("get" "/model_version" "findModelVersion", None, "ModelVersion" "200", FIND),
    op!("get" "/model_versions" "getModelVersions", None, "ModelVersionList" "200", LIST),
    op!("post" "/model_versions" "createModelVersion", Some("ModelVersionCreate"), "ModelVersion" "201", NONE),
    op!("get" "/model_versions/{id}" "getModelVersion", None, "ModelVersion" "200", NONE),
    op!("patch" "/model_versions/{id}" "updateModelVersion", Some("ModelVersionUpdate"), "ModelVersion" "200", NONE),
    op!("get" "/model_versions/{id}/artifacts" "getModelVersionArtifacts", None, "ArtifactList" "200", CHILD_ARTIFACT_LIST),
    op!("post" "/model_versions/{id}/artifacts" "upsertModelVersionArtifact", Some("Artifact"), "Artifact" "201", NONE),
    op!("get" "/serving_environment" "findServingEnvironment", None, "ServingEnvironment" "200", FIND),
    op!("get" "/serving_environments" "getServingEnvironments", None, "ServingEnvironmentList" "200", LIST),
    op!("post" "/serving_environments" "createServingEnvironment", Some("ServingEnvironmentCreate"), "ServingEnvironment" "201", NONE),
    op!("get" "/serving_environments/{id}" "getServingEnvironment", None, "ServingEnvironment" "200", NONE),
    op!("patch" "/serving_environments/{id}" "updateServingEnvironment", Some("ServingEnvironmentUpdate"), "ServingEnvironment" "200", NONE),
    op!("get" "/serving_environments/{id}/inference_services" "getEnvironmentInferenceServices", None, "InferenceServiceList" "200", CHILD_LIST),
    op!("post" "/serving_environments/{id}/inference_services" "createEnvironmentInferenceService", Some("InferenceServiceCreate"), "InferenceService" "201", NONE),
    op!("get" "/inference_service" "findInferenceService", None, "InferenceService" "200", FIND),
    op!("get" "/inference_services" "getInferenceServices", None, "InferenceServiceList" "200", LIST),
    op!("post" "/inference_services" "createInferenceService", Some("InferenceServiceCreate"), "InferenceService" "201", NONE),
    op!("get" "/inference_services/{id}" "getInferenceService", None, "InferenceService" "200", NONE),
    op!("patch" "/inference_services/{id}" "updateInferenceService", Some("InferenceServiceUpdate"), "InferenceService" "200", NONE),
    op!("get" "/inference_services/{id}/model" "getInferenceServiceModel", None, "RegisteredModel" "200", NONE),
    op!("get" "/inference_services/{id}/version" "getInferenceServiceVersion", None, "ModelVersion" "200", NONE),
    op!("get" "/inference_services/{id}/serves" "getInferenceServiceServes", None, "ServeModelList" "200", CHILD_LIST),
    op!("post" "/inference_services/{id}/serves" "createInferenceServiceServe", Some("ServeModelCreate"), "ServeModel" "201", NONE),
    op!("get" "/experiment" "findExperiment", None, "Experiment" "200", FIND),
    op!("get" "/experiments" "getExperiments", None, "ExperimentList" "200", LIST),
    op!("post" "/experiments" "createExperiment", Some("ExperimentCreate"), "Experiment" "201", NONE),
    op!("get" "/experiments/{id}" "getExperiment", None, "Experiment" "200", NONE),
    op!("patch" "/experiments/{id}" "updateExperiment", Some("ExperimentUpdate"), "Experiment" "200", NONE),
    op!("get" "/experiments/{id}/experiment_runs" "getExperimentExperimentRuns", None, "ExperimentRunList" "200", CHILD_LIST),
    op!("post" "/experiments/{id}/experiment_runs" "createExperimentExperimentRun", Some("ExperimentRunCreate"), "ExperimentRun" "201", NONE),
    op!("get" "/experiment_run" "findExperimentRun", None, "ExperimentRun" "200", FIND),
    op!("get" "/experiment_runs" "getExperimentRuns", None, "ExperimentRunList" "200", LIST),
    op!("post" "/experiment_runs" "createExperimentRun", Some("ExperimentRunCreate"), "ExperimentRun" "201", NONE),
    op!("get" "/experiment_runs/metric_history" "getExperimentRunsMetricHistory", None, "MetricList" "200", HISTORY),
    op!("get" "/experiment_runs/{id}" "getExperimentRun", None, "ExperimentRun" "200", NONE),
    op!("patch" "/experiment_runs/{id}" "updateExperimentRun", Some("ExperimentRunUpdate"), "ExperimentRun" "200", NONE),
    op!("get" "/experiment_runs/{id}/artifacts" "getExperimentRunArtifacts", None, "ArtifactList" "200", CHILD_ARTIFACT_LIST),
    op!("post" "/experiment_runs/{id}/artifacts" "upsertExperimentRunArtifact", Some("Artifact"), "Artifact" "201", NONE),
    op!("get" "/experiment_runs/{id}/metric_history" "getExperimentRunMetricHistory", None, "MetricList" "200", HISTORY),
];

/// Every operation of the API as (method, path relative to a prefix): the
/// route table that tests walk (every route answers 401 without a token).
pub fn operations() -> impl Iterator<Item = (&'static str, &'static str)> {
    OPS.iter().map(|op| (op.method, op.path))
}

/// Kinds with their schema names, in document order.
const KINDS: &[(Kind, &str)] = &[
    (Kind::RegisteredModel, "RegisteredModel"),
    (Kind::ModelVersion, "ModelVersion"),
    (Kind::ModelArtifact, "ModelArtifact"),
    (Kind::DocArtifact, "DocArtifact"),
    (Kind::DataSet, "DataSet"),
    (Kind::Metric, "Metric"),
    (Kind::Parameter, "Parameter"),
    (Kind::ServingEnvironment, "ServingEnvironment"),
    (Kind::InferenceService, "InferenceService"),
    (Kind::ServeModel, "ServeModel"),
    (Kind::Experiment, "Experiment"),
    (Kind::ExperimentRun, "ExperimentRun"),
];

const ID_PATTERN: &str = "^[1-9][0-9]{0,8}$";

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn field_schema(ty: FieldType) -> Value {
    match ty {
        FieldType::Str => json!({"type": "string"}),
        FieldType::StrList => json!({"type": "array", "items": {"type": "string"}}),
        FieldType::Enum(values) => json!({"type": "string", "enum": values}),
        FieldType::Double => json!({"type": "number", "format": "double"}),
        FieldType::Int64Str => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"})
        }
        FieldType::Int => json!({"type": "integer", "format": "int64"}),
        FieldType::Id => json!({"type": "string", "format": "int64", "pattern": ID_PATTERN}),
    }
}

fn name_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"})
}

fn text_fields() -> Value {
    json!({
        "externalId": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[^\\u0000]+$"},
        "customProperties": {
            "type": "object",
            "additionalProperties": schema_ref("MetadataValue")
        }
    })
}

/// Response, create and update schemas of one kind.
fn kind_schemas(kind: Kind, name: &str, out: &mut Map<String, Value>) {
    let artifact_type = kind
        .artifact_type()
        .map(|t| json!({"type": "string", "enum": [t]}));
    // Response.
    let mut props = Map::new();
    props.insert(
        "id".into(),
        json!({"type": "string", "format": "int64", "pattern": ID_PATTERN}),
    );
    props.insert("name".into(), json!({"type": "string"}));
    props.insert("externalId".into(), json!({"type": "string"}));
    props.insert(
        "customProperties".into(),
        text_fields()["customProperties"].clone(),
    );
    props.insert(
        "createTimeSinceEpoch".into(),
        json!({"type": "string", "format": "int64", "readOnly": true}),
    );
    props.insert(
        "lastUpdateTimeSinceEpoch".into(),
        json!({"type": "string", "format": "int64", "readOnly": true}),
    );
    if let Some(p) = kind.parent_field() {
        props.insert(p.into(), field_schema(FieldType::Id));
    }
    for f in kind.fields() {
        props.insert(f.name.into(), field_schema(f.ty));
    }
    if let Some(t) = &artifact_type {
        props.insert("artifactType".into(), t.clone());
    }
    out.insert(
        name.into(),
        json!({
            "type": "object",
            "properties": props,
            "required": ["id", "name", "customProperties", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch"],
        }),
    );
    // Create.
    let mut create = Map::new();
    create.insert("name".into(), name_schema());
    let text = text_fields();
    for k in ["externalId", "customProperties"] {
        create.insert(k.into(), text[k].clone());
    }
    if let Some(p) = kind.parent_field() {
        create.insert(p.into(), field_schema(FieldType::Id));
    }
    for f in kind.fields() {
        create.insert(f.name.into(), field_schema(f.ty));
    }
    if let Some(t) = &artifact_type {
        create.insert("artifactType".into(), t.clone());
    }
    let mut required: Vec<&str> = Vec::new();
    if kind.name_required() {
        required.push("name");
    }
    required.extend(kind.parent_field());
    required.extend(kind.required());
    if kind.artifact_type().is_some() {
        required.push("artifactType");
    }
    let mut create_schema =
        json!({"type": "object", "properties": create, "additionalProperties": false});
    if !required.is_empty() {
        create_schema["required"] = json!(required);
    }
    out.insert(format!("{name}Create"), create_schema);
    // Update: no name, no parent, no create-only fields.
    let mut update = Map::new();
    for k in ["externalId", "customProperties"] {
        update.insert(k.into(), text[k].clone());
    }
    for f in kind
        .fields()
        .filter(|f| !kind.create_only().contains(&f.name))
    {
        update.insert(f.name.into(), field_schema(f.ty));
    }
    let mut update_schema =
        json!({"type": "object", "properties": update, "additionalProperties": false});
    if let Some(t) = &artifact_type {
        update_schema["properties"]["artifactType"] = t.clone();
        update_schema["required"] = json!(["artifactType"]);
    }
    out.insert(format!("{name}Update"), update_schema);
    out.insert(format!("{name}List"), list_schema(schema_ref(name)));
}

fn list_schema(items: Value) -> Value {
    json!({
        "type": "object",
        "required": ["items", "nextPageToken", "pageSize", "size"],
        "properties": {
            "items": {"type": "array", "items": items},
            "nextPageToken": {"type": "string", "description": "Empty on the last page."},
            "pageSize": {"type": "integer", "format": "int32"},
            "size": {"type": "integer", "format": "int32"}
        }
    })
}

fn union(suffix: &str) -> Value {
    let arts = [
        ("model-artifact", "ModelArtifact"),
        ("doc-artifact", "DocArtifact"),
        ("dataset-artifact", "DataSet"),
        ("metric", "Metric"),
        ("parameter", "Parameter"),
    ];
    let one_of: Vec<Value> = arts
        .iter()
        .map(|(_, n)| schema_ref(&format!("{n}{suffix}")))
        .collect();
    let mapping: Map<String, Value> = arts
        .iter()
        .map(|(t, n)| {
            (
                t.to_string(),
                Value::from(format!("#/components/schemas/{n}{suffix}")),
            )
        })
        .collect();
    json!({"oneOf": one_of, "discriminator": {"propertyName": "artifactType", "mapping": mapping}})
}

fn metadata_schemas(out: &mut Map<String, Value>) {
    let variants = [
        (
            "MetadataStringValue",
            "string_value",
            json!({"type": "string"}),
        ),
        (
            "MetadataIntValue",
            "int_value",
            json!({"type": "string", "format": "int64", "pattern": "^-?([1-9][0-9]{0,8}|0)$"}),
        ),
        (
            "MetadataDoubleValue",
            "double_value",
            json!({"type": "number", "format": "double"}),
        ),
        (
            "MetadataBoolValue",
            "bool_value",
            json!({"type": "boolean"}),
        ),
        (
            "MetadataStructValue",
            "struct_value",
            json!({"type": "string", "format": "byte", "description": "base64 of a JSON object"}),
        ),
    ];
    let mut mapping = Map::new();
    let mut one_of = Vec::new();
    for (name, field, schema) in variants {
        out.insert(
            name.into(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["metadataType", field],
                "properties": {
                    field: schema,
                    "metadataType": {"type": "string", "enum": [name]}
                }
            }),
        );
        mapping.insert(
            name.into(),
            Value::from(format!("#/components/schemas/{name}")),
        );
        one_of.push(schema_ref(name));
    }
    out.insert(
        "MetadataValue".into(),
        json!({"oneOf": one_of, "discriminator": {"propertyName": "metadataType", "mapping": mapping}}),
    );
}

fn parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "pageSize" => (
            json!({"type": "string", "pattern": "^[0-9]{1,9}$"}),
            "Items per page; absent or 0 returns every item.",
        ),
        "orderBy" => (
            json!({"type": "string", "enum": ["CREATE_TIME", "LAST_UPDATE_TIME", "ID", "NAME"]}),
            "Sort field (NAME is our extension).",
        ),
        "sortOrder" => (
            json!({"type": "string", "enum": ["ASC", "DESC"]}),
            "Sort direction.",
        ),
        "nextPageToken" => (
            json!({"type": "string"}),
            "Token of the next page, from the previous response.",
        ),
        "filterQuery" => (
            json!({"type": "string"}),
            "SQL-like filter: `prop op value` joined by AND/OR, with parentheses.",
        ),
        "artifactType" => (
            json!({"type": "string", "enum": ["model-artifact", "doc-artifact", "dataset-artifact", "metric", "parameter"]}),
            "Only artifacts of this type.",
        ),
        "parentResourceId" => (
            field_schema(FieldType::Id),
            "Id of the parent the name is unique in.",
        ),
        "stepIds" => (
            json!({"type": "string", "pattern": "^-?[0-9]{1,18}(,-?[0-9]{1,18})*$"}),
            "Comma-separated steps.",
        ),
        "externalId" => (json!({"type": "string"}), "External id."),
        _ => (json!({"type": "string"}), "Name."),
    };
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("Error")}}
    })
}

/// The OpenAPI document for the API under `prefix`.
pub fn document(prefix: &str) -> Value {
    let mut schemas = Map::new();
    for (kind, name) in KINDS {
        kind_schemas(*kind, name, &mut schemas);
    }
    metadata_schemas(&mut schemas);
    schemas.insert("Artifact".into(), union(""));
    schemas.insert("ArtifactCreate".into(), union("Create"));
    schemas.insert("ArtifactUpdate".into(), union("Update"));
    schemas.insert("ArtifactList".into(), list_schema(schema_ref("Artifact")));
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
        }),
    );

    let mut paths = Map::new();
    for op in OPS {
        let mut parameters: Vec<Value> = op.query.iter().map(|q| parameter(q)).collect();
        if op.path.contains("{id}") {
            parameters.insert(
                0,
                json!({"name": "id", "in": "path", "required": true, "schema": field_schema(FieldType::Id)}),
            );
        }
        let mut responses = Map::new();
        responses.insert(
            op.status.into(),
            json!({
                "description": "OK",
                "content": {"application/json": {"schema": schema_ref(op.response)}}
            }),
        );
        if op.id.starts_with("upsert") {
            responses.insert(
                "200".into(),
                json!({"description": "Updated", "content": {"application/json": {"schema": schema_ref(op.response)}}}),
            );
        }
        responses.insert(
            "400".into(),
            error_response("Bad request: malformed input, filter or page token"),
        );
        responses.insert("404".into(), error_response("Not found"));
        if op.body.is_some() {
            responses.insert(
                "409".into(),
                error_response("Name or externalId already taken"),
            );
            responses.insert(
                "422".into(),
                error_response("A required field is missing or empty"),
            );
        }
        responses.insert("500".into(), error_response("Internal error"));
        responses.insert(
            "503".into(),
            error_response("The store is unavailable; retry"),
        );
        let mut operation = json!({
            "operationId": op.id,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(body) = op.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema_ref(body)}}
            });
        }
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Model Registry REST API",
            "version": "v1alpha3",
            "description": "Kubeflow Model Registry REST API as served by this registry (generated from its schema table). Extensions: orderBy=NAME."
        },
        "servers": [{"url": prefix}],
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The OpenAPI document for the API under `prefix`, as YAML text.
pub fn document_yaml(prefix: &str) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&document(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeSet;
    use std::io::Write;

    /// Every operation of the upstream contract (v1alpha3, from kubeflow/model-registry
    /// `api/openapi/model-registry.yaml`) as (method, path, operationId, request body
    /// schema). Upstream names path ids per resource (`{registeredmodelId}`); ours are
    /// all `{id}`. `upstream_table_matches_reference` checks it against the index in
    /// `../shared/reference` when that is present.
    #[rustfmt::skip]
    const UPSTREAM_V1ALPHA3: &[(&str, &str, &str, Option<&str>)] = &[
        ("GET",   "/artifact",                                                       "findArtifact",                      None),
        ("GET",   "/artifacts",                                                      "getArtifacts",                      None),
        ("POST",  "/artifacts",                                                      "createArtifact",                    Some("ArtifactCreate")),
        ("GET",   "/artifacts/{id}",                                                 "getArtifact",                       None),
        ("PATCH", "/artifacts/{id}",                                                 "updateArtifact",                    Some("ArtifactUpdate")),
        ("GET",   "/experiment",                                                     "findExperiment",                    None),
        ("GET",   "/experiment_run",                                                 "findExperimentRun",                 None),
        ("GET",   "/experiment_runs",                                                "getExperimentRuns",                 None),
        ("POST",  "/experiment_runs",                                                "createExperimentRun",               Some("ExperimentRunCreate")),
        ("GET",   "/experiment_runs/metric_history",                                 "getExperimentRunsMetricHistory",    None),
        ("GET",   "/experiment_runs/{experimentrunId}",                              "getExperimentRun",                  None),
        ("PATCH", "/experiment_runs/{experimentrunId}",                              "updateExperimentRun",               Some("ExperimentRunUpdate")),
        ("GET",   "/experiment_runs/{experimentrunId}/artifacts",                    "getExperimentRunArtifacts",         None),
        ("POST",  "/experiment_runs/{experimentrunId}/artifacts",                    "upsertExperimentRunArtifact",       Some("Artifact")),
        ("GET",   "/experiment_runs/{experimentrunId}/metric_history",               "getExperimentRunMetricHistory",     None),
        ("GET",   "/experiments",                                                    "getExperiments",                    None),
        ("POST",  "/experiments",                                                    "createExperiment",                  Some("ExperimentCreate")),
        ("GET",   "/experiments/{experimentId}",                                     "getExperiment",                     None),
        ("PATCH", "/experiments/{experimentId}",                                     "updateExperiment",                  Some("ExperimentUpdate")),
        ("GET",   "/experiments/{experimentId}/experiment_runs",                     "getExperimentExperimentRuns",       None),
        ("POST",  "/experiments/{experimentId}/experiment_runs",                     "createExperimentExperimentRun",     Some("ExperimentRun")),
        ("GET",   "/inference_service",                                              "findInferenceService",              None),
        ("GET",   "/inference_services",                                             "getInferenceServices",              None),
        ("POST",  "/inference_services",                                             "createInferenceService",            Some("InferenceServiceCreate")),
        ("GET",   "/inference_services/{inferenceserviceId}",                        "getInferenceService",               None),
        ("PATCH", "/inference_services/{inferenceserviceId}",                        "updateInferenceService",            Some("InferenceServiceUpdate")),
        ("GET",   "/inference_services/{inferenceserviceId}/model",                  "getInferenceServiceModel",          None),
        ("GET",   "/inference_services/{inferenceserviceId}/serves",                 "getInferenceServiceServes",         None),
        ("POST",  "/inference_services/{inferenceserviceId}/serves",                 "createInferenceServiceServe",       Some("ServeModelCreate")),
        ("GET",   "/inference_services/{inferenceserviceId}/version",                "getInferenceServiceVersion",        None),
        ("GET",   "/model_artifact",                                                 "findModelArtifact",                 None),
        ("GET",   "/model_artifacts",                                                "getModelArtifacts",                 None),
        ("POST",  "/model_artifacts",                                                "createModelArtifact",               Some("ModelArtifactCreate")),
        ("GET",   "/model_artifacts/{modelartifactId}",                              "getModelArtifact",                  None),
        ("PATCH", "/model_artifacts/{modelartifactId}",                              "updateModelArtifact",               Some("ModelArtifactUpdate")),
        ("GET",   "/model_version",                                                  "findModelVersion",                  None),
        ("GET",   "/model_versions",                                                 "getModelVersions",                  None),
        ("POST",  "/model_versions",                                                 "createModelVersion",                Some("ModelVersionCreate")),
        ("GET",   "/model_versions/{modelversionId}",                                "getModelVersion",                   None),
        ("PATCH", "/model_versions/{modelversionId}",                                "updateModelVersion",                Some("ModelVersionUpdate")),
        ("GET",   "/model_versions/{modelversionId}/artifacts",                      "getModelVersionArtifacts",          None),
        ("POST",  "/model_versions/{modelversionId}/artifacts",                      "upsertModelVersionArtifact",        Some("Artifact")),
        ("GET",   "/registered_model",                                               "findRegisteredModel",               None),
        ("GET",   "/registered_models",                                              "getRegisteredModels",               None),
        ("POST",  "/registered_models",                                              "createRegisteredModel",             Some("RegisteredModelCreate")),
        ("GET",   "/registered_models/{registeredmodelId}",                          "getRegisteredModel",                None),
        ("PATCH", "/registered_models/{registeredmodelId}",                          "updateRegisteredModel",             Some("RegisteredModelUpdate")),
        ("GET",   "/registered_models/{registeredmodelId}/versions",                 "getRegisteredModelVersions",        None),
        ("POST",  "/registered_models/{registeredmodelId}/versions",                 "createRegisteredModelVersion",      Some("ModelVersion")),
        ("GET",   "/serving_environment",                                            "findServingEnvironment",            None),
        ("GET",   "/serving_environments",                                           "getServingEnvironments",            None),
        ("POST",  "/serving_environments",                                           "createServingEnvironment",          Some("ServingEnvironmentCreate")),
        ("GET",   "/serving_environments/{servingenvironmentId}",                    "getServingEnvironment",             None),
        ("PATCH", "/serving_environments/{servingenvironmentId}",                    "updateServingEnvironment",          Some("ServingEnvironmentUpdate")),
        ("GET",   "/serving_environments/{servingenvironmentId}/inference_services", "getEnvironmentInferenceServices",   None),
        ("POST",  "/serving_environments/{servingenvironmentId}/inference_services", "createEnvironmentInferenceService", Some("InferenceServiceCreate")),
    ];

    /// `path` with every path parameter written `{id}`, as our document does.
    fn our_path(path: &str) -> String {
        path.split('/')
            .map(|seg| if seg.starts_with('{') { "{id}" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Every operation of the upstream contract is in our document with the
    /// same operationId and request body schema, and there is no other.
    #[test]
    fn covers_every_upstream_operation() {
        let doc = document("/api/model_registry/v1alpha3");
        let mut upstream = BTreeSet::new();
        for &(method, path, op_id, body) in UPSTREAM_V1ALPHA3 {
            let (method, path) = (method.to_ascii_lowercase(), our_path(path));
            assert!(
                upstream.insert((method.clone(), path.clone())),
                "{method} {path} twice in the table"
            );
            let op = &doc["paths"][&path][&method];
            assert!(op.is_object(), "{method} {path} ({op_id}) missing");
            assert_eq!(op["operationId"], op_id, "{method} {path}");
            let ours = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next());
            match (body, ours) {
                (None, None) => {}
                // Upstream uses the entity schema for child creates; ours the Create schema.
                (Some(body), Some(ours)) => {
                    assert!(
                        ours == body || ours == format!("{body}Create"),
                        "{method} {path}: body {ours} vs upstream {body}"
                    );
                    assert!(
                        doc["components"]["schemas"][ours].is_object(),
                        "{ours} missing"
                    );
                }
                (body, ours) => panic!("{method} {path}: body {ours:?} vs upstream {body:?}"),
            }
        }
        let mut extra = Vec::new();
        for (path, methods) in doc["paths"].as_object().into_iter().flatten() {
            for method in methods.as_object().into_iter().flatten().map(|(m, _)| m) {
                if !upstream.contains(&(method.clone(), path.clone())) {
                    extra.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            extra.is_empty(),
            "we document exactly the upstream operations; not upstream: {extra:?}"
        );
    }

    /// The table above is the upstream index in `../shared/reference`, row for
    /// row, when that folder is present (CI has it; a clone may not).
    #[test]
    fn upstream_table_matches_reference() {
        let index = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/endpoints-v1alpha3.txt"
        );
        let Ok(text) = std::fs::read_to_string(index) else {
            // Straight to stderr: libtest hides `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "not checked: UPSTREAM_V1ALPHA3 against the upstream index ({index} absent)"
            );
            return;
        };
        let mut reference = BTreeSet::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let head: Vec<&str> = cols[0].split_whitespace().collect();
            assert!(
                cols.len() >= 3 && head.len() == 3,
                "unexpected line: {line}"
            );
            let body = Some(cols[2]).filter(|b| *b != "-");
            reference.insert((head[0], head[1], head[2], body));
        }
        let table: BTreeSet<_> = UPSTREAM_V1ALPHA3.iter().copied().collect();
        let missing: Vec<_> = reference.difference(&table).collect();
        let stale: Vec<_> = table.difference(&reference).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "UPSTREAM_V1ALPHA3 differs from {index}: not in the table {missing:?}; \
             not upstream {stale:?}"
        );
    }

    /// `openapi.yaml` is YAML text (not the JSON text) of the same document.
    #[test]
    fn yaml_is_the_same_document() {
        let prefix = "/api/model_registry/v1";
        let yaml = document_yaml(prefix).expect("YAML");
        // A top-level key on a line of its own: block YAML, not the JSON text.
        let head = yaml.get(..200).unwrap_or(&yaml);
        assert!(yaml.lines().any(|l| l == "openapi: 3.0.3"), "{head}");
        let parsed: Value = serde_norway::from_str(&yaml).expect("parses back");
        assert_eq!(parsed, document(prefix));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document("/x");
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling $ref {name}"
            );
        }
    }
}
