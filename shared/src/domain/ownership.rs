//! Which registered model an entity belongs to, for per-model access:
//! a model owns itself, its versions, their artifacts, the inference
//! services that serve it and their serve records. Experiments, runs,
//! serving environments and standalone artifacts belong to no model.
//!
//! These relations never change once an entity exists (names, parents and
//! an inference service's model are fixed at create), so they are cached
//! without expiry; the cache is bounded by clearing it when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::entity::{Entity, Family, NewEntity, fields, parse_id};
use super::error::{Error, Result};
use super::registry::Registry;

/// Most relations remembered.
const CAPACITY: usize = 100_000;

/// Finds the model of an entity, with a cache of immutable relations.
#[derive(Clone)]
pub struct Owners {
    registry: Registry,
    /// Model id → name.
    names: Arc<Mutex<HashMap<u64, Arc<str>>>>,
    /// (family, id) → owning model id, for versions, version-artifact
    /// parents and inference services.
    models: Arc<Mutex<HashMap<(Family, u64), u64>>>,
}

impl Owners {
    pub fn new(registry: Registry) -> Self {
        Owners {
            registry,
            names: Arc::default(),
            models: Arc::default(),
        }
    }

    /// The name of the model `e` belongs to (`None`: it belongs to none).
    pub async fn of(&self, e: &Entity) -> Result<Option<Arc<str>>> {
        let model = match e.kind.family() {
            Family::RegisteredModel => {
                remember(&self.names, e.id, Arc::from(e.name.as_str()));
                return Ok(Some(Arc::from(e.name.as_str())));
            }
            Family::ModelVersion => e.parent,
            Family::Artifact => match e.parent {
                Some(parent) => self.model_of_version(parent).await?,
                None => None,
            },
            Family::InferenceService => e.registered_model_id(),
            Family::ServeModel => match e.parent {
                Some(isvc) => self.model_of_inference_service(isvc).await?,
                None => None,
            },
            Family::ServingEnvironment
            | Family::Experiment
            | Family::ExperimentRun
            | Family::MetricHistory => None,
        };
        match model {
            Some(id) => self.name(id).await,
            None => Ok(None),
        }
    }

    /// The name of the model a new entity would belong to.
    pub async fn of_new(&self, new: &NewEntity) -> Result<Option<Arc<str>>> {
        let model = match new.kind.family() {
            Family::RegisteredModel => {
                return Ok(new.name.as_deref().map(Arc::from));
            }
            Family::ModelVersion => new.parent,
            Family::Artifact => match new.parent {
                Some(parent) => self.model_of_version(parent).await?,
                None => None,
            },
            Family::InferenceService => match new.fields.get(fields::REGISTERED_MODEL_ID) {
                Some(Value::String(id)) => Some(parse_id(fields::REGISTERED_MODEL_ID, id)?),
                _ => None,
            },
            Family::ServeModel => match new.parent {
                Some(isvc) => self.model_of_inference_service(isvc).await?,
                None => None,
            },
            _ => None,
        };
        match model {
            Some(id) => self.name(id).await,
            None => Ok(None),
        }
    }

    /// The model of the parent `id` of an artifact: a version's model, or
    /// none when the parent is a run (runs and versions share one id
    /// sequence, so an id is one or the other).
    pub async fn model_of_version(&self, id: u64) -> Result<Option<u64>> {
        let key = (Family::ModelVersion, id);
        if let Some(m) = lookup(&self.models, &key) {
            return Ok(Some(m));
        }
        match self.registry.get(Family::ModelVersion, None, id).await {
            Ok(v) => {
                if let Some(m) = v.parent {
                    remember(&self.models, key, m);
                }
                Ok(v.parent)
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn model_of_inference_service(&self, id: u64) -> Result<Option<u64>> {
        let key = (Family::InferenceService, id);
        if let Some(m) = lookup(&self.models, &key) {
            return Ok(Some(m));
        }
        match self.registry.get(Family::InferenceService, None, id).await {
            Ok(isvc) => {
                let model = isvc.registered_model_id();
                if let Some(m) = model {
                    remember(&self.models, key, m);
                }
                Ok(model)
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A model's name by id (`None` when there is no such model).
    pub async fn name(&self, id: u64) -> Result<Option<Arc<str>>> {
        if let Some(n) = lookup(&self.names, &id) {
            return Ok(Some(n));
        }
        match self.registry.get(Family::RegisteredModel, None, id).await {
            Ok(m) => {
                let name: Arc<str> = Arc::from(m.name.as_str());
                remember(&self.names, id, name.clone());
                Ok(Some(name))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn lookup<K: std::hash::Hash + Eq, V: Clone>(map: &Mutex<HashMap<K, V>>, key: &K) -> Option<V> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
}

fn remember<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, key: K, value: V) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= CAPACITY {
        map.clear();
    }
    map.insert(key, value);
}
