//! The same registry operations spoken to each system's REST API: this
//! registry (Kubeflow Model Registry API) and MLflow's model registry
//! (`/api/2.0/mlflow`). Each operation is mapped to the closest request the
//! other system offers; see `bench/README.md` for the mapping.

use reqwest::header::HeaderValue;
use reqwest::{Client, Url};
use serde_json::{Value, json};

use crate::load::{Call, send};

/// Which REST API a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// This registry: `/api/model_registry/v1`.
    Ours,
    /// MLflow's model registry: `/api/2.0/mlflow`.
    Mlflow,
}

impl Flavor {
    pub fn parse(s: &str) -> Result<Flavor, String> {
        match s {
            "ours" => Ok(Flavor::Ours),
            "mlflow" => Ok(Flavor::Mlflow),
            other => Err(format!("--api: '{other}' is not ours or mlflow")),
        }
    }
}

/// A registered model: our id, or for MLflow (which keys models by name) its name.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub id: String,
    pub name: String,
}

/// A model version: our id, or MLflow's (model name, version number).
#[derive(Debug, Clone)]
pub struct VersionRef {
    pub id: String,
    pub model_name: String,
    pub version: String,
}

/// A server and the API it speaks.
#[derive(Debug, Clone)]
pub struct Api {
    pub flavor: Flavor,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Sent as `Authorization` with every request (`Bearer <token>`), for a
    /// registry with `MR_AUTH=jwt`.
    pub authorization: Option<HeaderValue>,
}

fn string_property(value: &str) -> Value {
    json!({"metadataType": "MetadataStringValue", "string_value": value})
}

impl Api {
    /// The `Authorization` value of `--bearer TOKEN`; only `ours` takes one
    /// (the MLflow server of the bench runs without authentication).
    pub fn bearer(flavor: Flavor, token: Option<&str>) -> Result<Option<HeaderValue>, String> {
        let Some(token) = token else {
            return Ok(None);
        };
        if flavor != Flavor::Ours {
            return Err("--bearer is only for --api ours".into());
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| "--bearer: the token is not a valid header value")?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    fn get(&self, url: String) -> Call {
        Call::get(url).authorized(self.authorization.as_ref())
    }

    /// The web interface's page of `model` (ours only: its first page of
    /// 50 versions with their metric columns, as a browser asks for it).
    pub fn model_page_call(&self, model: &ModelRef) -> Option<Call> {
        match self.flavor {
            Flavor::Ours => Some(self.get(format!("{}/ui/models/{}", self.base, model.id))),
            Flavor::Mlflow => None,
        }
    }

    fn post(&self, url: String, body: String) -> Call {
        Call::post(url, body).authorized(self.authorization.as_ref())
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let prefix = match self.flavor {
            Flavor::Ours => "/api/model_registry/v1",
            Flavor::Mlflow => "/api/2.0/mlflow",
        };
        let mut url =
            Url::parse(&format!("{}{prefix}{path}", self.base)).expect("a valid base URL");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url.into()
    }

    /// Create a model named `name` with one tag / custom property `team`.
    pub fn create_model_call(&self, name: &str) -> Call {
        match self.flavor {
            Flavor::Ours => self.post(
                self.url("/registered_models", &[]),
                json!({"name": name, "customProperties": {"team": string_property("bench")}})
                    .to_string(),
            ),
            Flavor::Mlflow => self.post(
                self.url("/registered-models/create", &[]),
                json!({"name": name, "tags": [{"key": "team", "value": "bench"}]}).to_string(),
            ),
        }
    }

    /// Create a model named `name` with a description (for the filter
    /// attack of `health-under-attack`).
    pub fn create_described_model_call(&self, name: &str, description: &str) -> Call {
        match self.flavor {
            Flavor::Ours => self.post(
                self.url("/registered_models", &[]),
                json!({"name": name, "description": description}).to_string(),
            ),
            Flavor::Mlflow => self.post(
                self.url("/registered-models/create", &[]),
                json!({"name": name, "description": description}).to_string(),
            ),
        }
    }

    /// The first page of the registered models that match `filter`, in the
    /// system's own filter language (MLflow's takes only names and tags).
    pub fn filter_models_call(&self, filter: &str) -> Call {
        match self.flavor {
            Flavor::Ours => self.get(self.url("/registered_models", &[("filterQuery", filter)])),
            Flavor::Mlflow => {
                self.get(self.url("/registered-models/search", &[("filter", filter)]))
            }
        }
    }

    /// Create a version of `model` with the tag / custom property `stage`.
    /// MLflow numbers versions itself; `name` becomes the source URI there.
    pub fn create_version_call(&self, model: &ModelRef, name: &str, stage: &str) -> Call {
        match self.flavor {
            Flavor::Ours => self.post(
                self.url("/model_versions", &[]),
                json!({
                    "name": name,
                    "registeredModelId": model.id,
                    "customProperties": {"stage": string_property(stage)},
                })
                .to_string(),
            ),
            Flavor::Mlflow => self.post(
                self.url("/model-versions/create", &[]),
                json!({
                    "name": model.name,
                    "source": format!("s3://bench/{}/{name}", model.name),
                    "tags": [{"key": "stage", "value": stage}],
                })
                .to_string(),
            ),
        }
    }

    /// Get one version by its identity: our id; MLflow's name + version.
    pub fn get_version_call(&self, v: &VersionRef) -> Call {
        match self.flavor {
            Flavor::Ours => self.get(self.url(&format!("/model_versions/{}", v.id), &[])),
            Flavor::Mlflow => self.get(self.url(
                "/model-versions/get",
                &[("name", &v.model_name), ("version", &v.version)],
            )),
        }
    }

    /// Find a model by name.
    pub fn find_model_call(&self, name: &str) -> Call {
        match self.flavor {
            Flavor::Ours => self.get(self.url("/registered_model", &[("name", name)])),
            Flavor::Mlflow => self.get(self.url("/registered-models/get", &[("name", name)])),
        }
    }

    /// One page of `model`'s versions, optionally only those whose `stage`
    /// tag / custom property equals `stage`, optionally after `token`.
    pub fn list_versions_call(
        &self,
        model: &ModelRef,
        page_size: usize,
        stage: Option<&str>,
        token: Option<&str>,
    ) -> Call {
        let size = page_size.to_string();
        match self.flavor {
            Flavor::Ours => {
                let filter = stage.map(|s| format!("stage='{s}'"));
                let mut q = vec![("pageSize", size.as_str())];
                if let Some(f) = &filter {
                    q.push(("filterQuery", f));
                }
                if let Some(t) = token {
                    q.push(("nextPageToken", t));
                }
                self.get(self.url(&format!("/registered_models/{}/versions", model.id), &q))
            }
            Flavor::Mlflow => {
                let filter = match stage {
                    Some(s) => format!("name='{}' AND tags.stage='{s}'", model.name),
                    None => format!("name='{}'", model.name),
                };
                let mut q = vec![("filter", filter.as_str()), ("max_results", size.as_str())];
                if let Some(t) = token {
                    q.push(("page_token", t));
                }
                self.get(self.url("/model-versions/search", &q))
            }
        }
    }

    /// The first page of all versions (of any model) whose `stage` is `stage`.
    pub fn search_versions_call(&self, stage: &str, page_size: usize) -> Call {
        let size = page_size.to_string();
        match self.flavor {
            Flavor::Ours => {
                let filter = format!("stage='{stage}'");
                self.get(self.url(
                    "/model_versions",
                    &[("filterQuery", &filter), ("pageSize", &size)],
                ))
            }
            Flavor::Mlflow => {
                let filter = format!("tags.stage='{stage}'");
                self.get(self.url(
                    "/model-versions/search",
                    &[("filter", &filter), ("max_results", &size)],
                ))
            }
        }
    }

    /// The token of the next page in a list answer (None on the last page).
    pub fn next_token(&self, body: &str) -> Option<String> {
        let v: Value = serde_json::from_str(body).ok()?;
        let key = match self.flavor {
            Flavor::Ours => "nextPageToken",
            Flavor::Mlflow => "next_page_token",
        };
        v.get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    }

    /// How many items a list answer holds.
    pub fn page_len(&self, body: &str) -> usize {
        let key = match self.flavor {
            Flavor::Ours => "items",
            Flavor::Mlflow => "model_versions",
        };
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get(key).and_then(Value::as_array).map(Vec::len))
            .unwrap_or(0)
    }

    pub async fn create_model(&self, client: &Client, name: &str) -> Result<ModelRef, String> {
        let body = send(client, &self.create_model_call(name)).await?;
        let id = match self.flavor {
            Flavor::Ours => field(&body, &["id"])?,
            Flavor::Mlflow => name.to_string(),
        };
        Ok(ModelRef {
            id,
            name: name.to_string(),
        })
    }

    pub async fn create_version(
        &self,
        client: &Client,
        model: &ModelRef,
        name: &str,
        stage: &str,
    ) -> Result<VersionRef, String> {
        let body = send(client, &self.create_version_call(model, name, stage)).await?;
        Ok(match self.flavor {
            Flavor::Ours => VersionRef {
                id: field(&body, &["id"])?,
                model_name: model.name.clone(),
                version: name.to_string(),
            },
            Flavor::Mlflow => {
                let version = field(&body, &["model_version", "version"])?;
                VersionRef {
                    id: version.clone(),
                    model_name: model.name.clone(),
                    version,
                }
            }
        })
    }
}

fn field(body: &str, path: &[&str]) -> Result<String, String> {
    let mut v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    for key in path {
        v = v
            .get(*key)
            .cloned()
            .ok_or_else(|| format!("no '{key}' in {body}"))?;
    }
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("'{}' is not a string in {body}", path.join(".")))
}
