//! Where a model version comes from and where it runs: its model, its
//! artifacts, the experiment runs that produced them (with their datasets,
//! parameters and metrics) and the inference services that serve it.
//!
//! Everything is read through the registry's scans, one store page at a
//! time, within one budget per answer: at most [`MAX_BYTES`] of entities
//! (as stored) and [`MAX_SCAN`] of scanning; a version with more artifacts,
//! runs or inference services than that, or than the counts below, is
//! answered with what fits and `truncated`.

use std::collections::BTreeSet;

use super::entity::{Entity, Family, Kind, fields};
use super::error::Result;
use super::filter;
use super::paging::{ListParams, OrderBy};
use super::registry::{Narrow, Registry, Scope};

/// At most this many artifacts of the version, and of each run.
pub const MAX_ARTIFACTS: usize = 1_000;
/// At most this many bytes of entities (as stored) in one lineage.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// At most this long scanning for one lineage (finding the inference
/// services of a model reads the family's list with a filter).
pub const MAX_SCAN: std::time::Duration = std::time::Duration::from_secs(5);
/// At most this many runs (distinct `experimentRunId`s of the version's artifacts).
pub const MAX_RUNS: usize = 20;
/// At most this many inference services of the version's model are looked at.
pub const MAX_INFERENCE_SERVICES: usize = 1_000;

/// A run that produced artifacts of the version.
#[derive(Debug, Clone)]
pub struct RunLineage {
    pub run: Entity,
    pub experiment: Option<Entity>,
    /// The run's artifacts (datasets, parameters, metrics, models).
    pub artifacts: Vec<Entity>,
}

/// An inference service that serves the version.
#[derive(Debug, Clone)]
pub struct Serving {
    pub inference_service: Entity,
    pub serving_environment: Option<Entity>,
    /// True when the service names the version; false when it names only
    /// the model and the version is that model's latest.
    pub pinned: bool,
}

/// The lineage of one model version.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub version: Entity,
    pub model: Entity,
    pub artifacts: Vec<Entity>,
    pub runs: Vec<RunLineage>,
    pub serving: Vec<Serving>,
    /// Some list was longer than its limit.
    pub truncated: bool,
    /// The version's own artifacts were (`artifacts` is not all of them).
    pub artifacts_cut: bool,
}

impl Lineage {
    /// Every dataset of the version and of its runs, once each.
    pub fn datasets(&self) -> Vec<&Entity> {
        let mut seen = BTreeSet::new();
        self.artifacts
            .iter()
            .chain(self.runs.iter().flat_map(|r| r.artifacts.iter()))
            .filter(|a| a.kind == Kind::DataSet && seen.insert(a.id))
            .collect()
    }
}

fn first(n: usize) -> ListParams {
    ListParams {
        page_size: n + 1,
        order_by: OrderBy::Id,
        descending: false,
        after: None,
        filter: None,
    }
}

impl Registry {
    /// The lineage of version `id` (see the module's doc).
    pub async fn lineage(&self, id: u64) -> Result<Lineage> {
        let version = self.get(Family::ModelVersion, None, id).await?;
        self.lineage_of(version).await
    }

    /// The lineage of a version already read.
    pub async fn lineage_of(&self, version: Entity) -> Result<Lineage> {
        let id = version.id;
        let model_id = version.parent.unwrap_or_default();
        let model = self.get(Family::RegisteredModel, None, model_id).await?;
        let mut truncated = false;
        let mut budget = Budget::new();
        let (artifacts, artifacts_cut) = self.artifacts_of(id, &mut budget).await?;
        truncated |= artifacts_cut;

        let mut run_ids: Vec<u64> = Vec::new();
        for a in &artifacts {
            if let Some(run) = a.reference(fields::EXPERIMENT_RUN_ID)
                && !run_ids.contains(&run)
            {
                run_ids.push(run);
            }
        }
        truncated |= cut(&mut run_ids, MAX_RUNS);
        let mut runs = Vec::new();
        for run_id in run_ids {
            let Ok(run) = self.get(Family::ExperimentRun, None, run_id).await else {
                continue; // a link to a run that is not (or no longer) there
            };
            let experiment = match run.parent {
                Some(e) => self.get(Family::Experiment, None, e).await.ok(),
                None => None,
            };
            let (of_run, cut_run) = self.artifacts_of(run_id, &mut budget).await?;
            truncated |= cut_run;
            runs.push(RunLineage {
                run,
                experiment,
                artifacts: of_run,
            });
        }

        let (serving, cut_services) = self.serving(&version, model_id, &mut budget).await?;
        truncated |= cut_services;
        Ok(Lineage {
            version,
            model,
            artifacts,
            runs,
            serving,
            truncated,
            artifacts_cut,
        })
    }

    /// The first [`MAX_ARTIFACTS`] artifacts of a version or run, and
    /// whether there were more (or the budget ran out).
    async fn artifacts_of(&self, parent: u64, budget: &mut Budget) -> Result<(Vec<Entity>, bool)> {
        self.collect(
            Family::Artifact,
            Scope::Parent(parent),
            None,
            MAX_ARTIFACTS,
            budget,
        )
        .await
    }

    /// Up to `max` entities of a list, read one store page at a time while
    /// `budget` lasts: the entities and whether anything was left unread.
    async fn collect(
        &self,
        family: Family,
        scope: Scope,
        filter: Option<filter::Expr>,
        max: usize,
        budget: &mut Budget,
    ) -> Result<(Vec<Entity>, bool)> {
        let mut params = first(max);
        params.filter = filter;
        let mut scan = self.scan(family, scope, &Narrow::default(), &params)?;
        let mut items = Vec::new();
        while !scan.is_done() {
            if items.len() >= max || !budget.left() {
                return Ok((items, true));
            }
            for found in scan.next_batch((max - items.len()).min(100)).await? {
                if !budget.left() {
                    return Ok((items, true));
                }
                budget.spend(&found.entity);
                items.push(found.entity);
            }
        }
        Ok((items, false))
    }

    /// The inference services of the version's model that serve it: those
    /// that name it, and those that name only the model while it is the
    /// model's latest version by creation time (what they deploy).
    async fn serving(
        &self,
        version: &Entity,
        model_id: u64,
        budget: &mut Budget,
    ) -> Result<(Vec<Serving>, bool)> {
        let of_model = filter::parse(&format!("registeredModelId = '{model_id}'"))
            .map_err(|e| super::error::Error::internal(e.to_string()))?;
        let (services, truncated) = self
            .collect(
                Family::InferenceService,
                Scope::All,
                Some(of_model),
                MAX_INFERENCE_SERVICES,
                budget,
            )
            .await?;
        let mut latest: Option<bool> = None;
        let mut serving = Vec::new();
        for isvc in services {
            let pinned = match isvc.model_version_id() {
                Some(v) if v == version.id => true,
                Some(_) => continue,
                None => {
                    if latest.is_none() {
                        let newest = self
                            .list(
                                Family::ModelVersion,
                                Scope::Parent(model_id),
                                &Narrow::default(),
                                &ListParams {
                                    page_size: 1,
                                    order_by: OrderBy::CreateTime,
                                    descending: true,
                                    after: None,
                                    filter: None,
                                },
                            )
                            .await?;
                        latest = Some(newest.items.first().is_some_and(|v| v.id == version.id));
                    }
                    if latest != Some(true) {
                        continue;
                    }
                    false
                }
            };
            let serving_environment = match isvc.parent {
                Some(env) => self.get(Family::ServingEnvironment, None, env).await.ok(),
                None => None,
            };
            serving.push(Serving {
                inference_service: isvc,
                serving_environment,
                pinned,
            });
        }
        Ok((serving, truncated))
    }
}

/// What one lineage may still read: bytes of entities and time.
struct Budget {
    bytes: usize,
    until: std::time::Instant,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            bytes: MAX_BYTES,
            until: std::time::Instant::now() + MAX_SCAN,
        }
    }

    fn left(&self) -> bool {
        self.bytes > 0 && std::time::Instant::now() < self.until
    }

    fn spend(&mut self, e: &Entity) {
        let size = serde_json::to_vec(e).map_or(usize::MAX, |b| b.len());
        self.bytes = self.bytes.saturating_sub(size);
    }
}

/// Keep the first `max`; true when there were more.
fn cut<T>(items: &mut Vec<T>, max: usize) -> bool {
    let more = items.len() > max;
    items.truncate(max);
    more
}
