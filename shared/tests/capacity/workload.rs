//! The simulated registry and its traffic: models and versions seeded
//! through `Registry::create`, then the benchmark's operation mix, second
//! by simulated second, with Zipf-distributed model popularity. A simulated
//! second is a count of operations (run by many tasks at once), not wall
//! time: every call an operation makes is billed to its second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use registry::api::codec::decode_new;
use registry::domain::entity::{Family, Kind, NewEntity};
use registry::domain::error::Result;
use registry::domain::paging::{ListParams, RawListParams};
use registry::domain::registry::{Narrow, Registry, Scope};
use serde_json::json;

use crate::billing::{Billing, Collection, Period};

/// The size the capacity model is about (issue 13).
pub const FULL_MODELS: usize = 100_000;
pub const FULL_VERSIONS: usize = 1_000_000;
/// Zipf exponent of model popularity.
pub const ZIPF_S: f64 = 1.1;
/// Page sizes of the benchmark's list and filtered search.
const LIST_PAGE: &str = "20";
const FILTER_PAGE: &str = "10";
/// The filtered search: a custom property every fifth seeded version has.
const FILTER: &str = "stage='prod'";

/// How big a simulation is.
#[derive(Debug, Clone)]
pub struct Size {
    pub models: usize,
    pub versions: usize,
    pub seconds: u32,
    pub reads_per_second: usize,
    pub writes_per_second: usize,
    /// Operations (and seeding creates) running at once.
    pub tasks: usize,
}

impl Size {
    /// The rates for one simulated second, on 1/100 of the
    /// registry (`make test` size).
    pub fn small() -> Size {
        Size {
            models: 1_000,
            versions: 10_000,
            seconds: 1,
            reads_per_second: 20_000,
            writes_per_second: 2_000,
            tasks: 64,
        }
    }

    /// The size (`make bench`).
    pub fn full() -> Size {
        Size {
            models: FULL_MODELS,
            versions: FULL_VERSIONS,
            seconds: 3,
            ..Size::small()
        }
    }

    /// The plumbing check: every operation a few times.
    pub fn tiny() -> Size {
        Size {
            models: 30,
            versions: 150,
            seconds: 2,
            reads_per_second: 200,
            writes_per_second: 20,
            tasks: 16,
        }
    }

    /// `small`, or `full` with `CAPACITY_FULL=1`; `CAPACITY_MODELS`,
    /// `CAPACITY_VERSIONS` and `CAPACITY_SECONDS` override either.
    pub fn from_env() -> Size {
        let mut size = match std::env::var("CAPACITY_FULL").as_deref() {
            Ok("1") => Size::full(),
            _ => Size::small(),
        };
        let var = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{name}={v}: expected a number"))
            })
        };
        if let Some(n) = var("CAPACITY_MODELS") {
            size.models = n.max(1);
        }
        if let Some(n) = var("CAPACITY_VERSIONS") {
            size.versions = n.max(size.models);
        }
        if let Some(n) = var("CAPACITY_SECONDS") {
            size.seconds = u32::try_from(n.max(1)).expect("CAPACITY_SECONDS");
        }
        size
    }

    /// What collection sizes are multiplied by to stand for the full size
    /// (the larger of the two ratios; 1 at full size or above).
    pub fn extrapolation(&self) -> f64 {
        let models = FULL_MODELS as f64 / self.models as f64;
        let versions = FULL_VERSIONS as f64 / self.versions as f64;
        models.max(versions).max(1.0)
    }
}

/// SplitMix64: a small, seeded, good-enough generator (no crate needed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Zipf over ranks `0..n` (rank r has weight `(r + 1)^-s`), sampled by
/// inverting its cumulative distribution (a table and a binary search).
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += (k as f64).powf(-s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// The operations of the mix (the benchmark's six, bench/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    GetVersion,
    FindModel,
    ListVersions,
    FilteredSearch,
    CreateVersion,
    CreateModel,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::GetVersion,
        Op::FindModel,
        Op::ListVersions,
        Op::FilteredSearch,
        Op::CreateVersion,
        Op::CreateModel,
    ];
    const READS: [Op; 4] = [
        Op::GetVersion,
        Op::FindModel,
        Op::ListVersions,
        Op::FilteredSearch,
    ];
    const WRITES: [Op; 2] = [Op::CreateVersion, Op::CreateModel];

    pub fn label(self) -> &'static str {
        match self {
            Op::GetVersion => "get version by id",
            Op::FindModel => "find model by name",
            Op::ListVersions => "list a model's versions",
            Op::FilteredSearch => "filtered search",
            Op::CreateVersion => "create version",
            Op::CreateModel => "create model",
        }
    }
}

/// One operation of a simulated second, its targets drawn in advance.
#[derive(Debug, Clone, Copy)]
struct Planned {
    op: Op,
    /// Index of the model (Zipf-popular).
    model: usize,
    /// Picks the version among the model's.
    pick: u64,
    /// Numbers the entity a create makes.
    seq: usize,
}

struct Model {
    id: u64,
    name: String,
}

/// The seeded registry: its models and the ids of each one's versions.
struct Catalog {
    models: Vec<Model>,
    versions: Vec<Mutex<Vec<u64>>>,
    /// Model index of each popularity rank.
    by_rank: Vec<usize>,
    zipf: Zipf,
}

/// What a simulation did.
pub struct Outcome {
    /// The item collections as seeding left them.
    pub seeded: HashMap<String, Collection>,
    pub seed_secs: f64,
    pub run_secs: f64,
    /// Failed operations per kind.
    pub errors: Vec<(&'static str, u64)>,
}

fn string_property(value: &str) -> serde_json::Value {
    json!({"metadataType": "MetadataStringValue", "string_value": value})
}

/// The benchmark's create model body.
fn new_model(name: &str) -> NewEntity {
    decode_new(
        Kind::RegisteredModel,
        &json!({"name": name, "customProperties": {"team": string_property("bench")}}),
    )
    .expect("model body")
}

/// The benchmark's create version body.
fn new_version(model: u64, name: &str, stage: &str) -> NewEntity {
    decode_new(
        Kind::ModelVersion,
        &json!({
            "name": name,
            "registeredModelId": model.to_string(),
            "customProperties": {"stage": string_property(stage)},
        }),
    )
    .expect("version body")
}

fn list_params(page_size: &str, filter: Option<&str>) -> ListParams {
    let raw = RawListParams {
        page_size: Some(page_size),
        filter_query: filter,
        ..RawListParams::default()
    };
    ListParams::parse(&raw, true).expect("list parameters")
}

/// Run `work(i)` for every `i` in `0..n` on `tasks` tasks at once.
async fn for_each<F, Fut>(n: usize, tasks: usize, work: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..tasks.max(1) {
        let (next, work) = (next.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                work(i).await;
            }
        }));
    }
    for h in handles {
        h.await.expect("a simulation task panicked");
    }
}

/// Seed `size` through the registry (billed to [`Period::Seed`]).
async fn seed(registry: &Registry, billing: &Arc<Billing>, size: &Size, rng: &mut Rng) -> Catalog {
    billing.set_period(Period::Seed);
    let seed_tasks = size.tasks * 2;
    let ids: Arc<Vec<AtomicU64>> = Arc::new((0..size.models).map(|_| AtomicU64::new(0)).collect());
    {
        let (r, b, ids) = (registry.clone(), billing.clone(), ids.clone());
        for_each(size.models, seed_tasks, move |i| {
            let (r, b, ids) = (r.clone(), b.clone(), ids.clone());
            async move {
                let m = b
                    .operation("seed", r.create(new_model(&format!("model-{i}"))))
                    .await
                    .unwrap_or_else(|e| panic!("seeding model {i}: {e}"));
                ids[i].store(m.id, Ordering::Relaxed);
            }
        })
        .await;
    }
    let models: Vec<Model> = (0..size.models)
        .map(|i| Model {
            id: ids[i].load(Ordering::Relaxed),
            name: format!("model-{i}"),
        })
        .collect();
    let mut by_rank: Vec<usize> = (0..size.models).collect();
    rng.shuffle(&mut by_rank);
    let zipf = Zipf::new(size.models, ZIPF_S);
    // One version per model, the rest to Zipf-popular models.
    let parents: Vec<usize> = (0..size.versions)
        .map(|j| {
            if j < size.models {
                j
            } else {
                by_rank[zipf.sample(rng)]
            }
        })
        .collect();
    let model_ids: Arc<Vec<u64>> = Arc::new(models.iter().map(|m| m.id).collect());
    let versions: Arc<Vec<Mutex<Vec<u64>>>> =
        Arc::new((0..size.models).map(|_| Mutex::default()).collect());
    {
        let (r, b, parents, model_ids, versions) = (
            registry.clone(),
            billing.clone(),
            Arc::new(parents),
            model_ids.clone(),
            versions.clone(),
        );
        for_each(size.versions, seed_tasks, move |j| {
            let (r, b, parents, model_ids, versions) = (
                r.clone(),
                b.clone(),
                parents.clone(),
                model_ids.clone(),
                versions.clone(),
            );
            async move {
                let parent = parents[j];
                let stage = if j % 5 == 0 { "prod" } else { "dev" };
                let new = new_version(model_ids[parent], &format!("v{j}"), stage);
                let v = b
                    .operation("seed", r.create(new))
                    .await
                    .unwrap_or_else(|e| panic!("seeding version {j}: {e}"));
                versions[parent].lock().unwrap().push(v.id);
            }
        })
        .await;
    }
    let versions = Arc::try_unwrap(versions)
        .unwrap_or_else(|_| panic!("seeding tasks still hold the versions"));
    Catalog {
        models,
        versions,
        by_rank,
        zipf,
    }
}

/// The operations of one simulated second, shuffled: reads and writes at
/// their rates, each kind an equal share of its side.
fn plan(size: &Size, catalog: &Catalog, rng: &mut Rng) -> Vec<Planned> {
    let mut ops = Vec::with_capacity(size.reads_per_second + size.writes_per_second);
    let mut add = |kinds: &[Op], n: usize, rng: &mut Rng| {
        for i in 0..n {
            ops.push(Planned {
                op: kinds[i % kinds.len()],
                model: catalog.by_rank[catalog.zipf.sample(rng)],
                pick: rng.next_u64(),
                seq: i,
            });
        }
    };
    add(&Op::READS, size.reads_per_second, rng);
    add(&Op::WRITES, size.writes_per_second, rng);
    rng.shuffle(&mut ops);
    ops
}

/// The registry as infra/ deploys it: reads served by reading functions
/// (a read-only table, pages of global lists kept for a second), writes by
/// writing functions.
#[derive(Clone)]
pub struct Registries {
    pub reads: Registry,
    pub writes: Registry,
}

/// Run one planned operation through the registry, as its HTTP handler would.
async fn run_op(rs: &Registries, catalog: &Catalog, second: u32, p: Planned) -> Result<()> {
    let model = &catalog.models[p.model];
    let r = if Op::WRITES.contains(&p.op) {
        &rs.writes
    } else {
        &rs.reads
    };
    match p.op {
        Op::GetVersion => {
            let id = {
                let versions = catalog.versions[p.model].lock().unwrap();
                versions[(p.pick % versions.len() as u64) as usize]
            };
            r.get(Family::ModelVersion, None, id).await?;
        }
        Op::FindModel => {
            r.find(Family::RegisteredModel, None, Some(&model.name), None, None)
                .await?;
        }
        Op::ListVersions => {
            // GET /registered_models/{id}/versions: the model, then the page.
            r.get(Family::RegisteredModel, None, model.id).await?;
            let params = list_params(LIST_PAGE, None);
            r.list(
                Family::ModelVersion,
                Scope::Parent(model.id),
                &Narrow::default(),
                &params,
            )
            .await?;
        }
        Op::FilteredSearch => {
            let params = list_params(FILTER_PAGE, Some(FILTER));
            r.list(
                Family::ModelVersion,
                Scope::All,
                &Narrow::default(),
                &params,
            )
            .await?;
        }
        Op::CreateVersion => {
            let name = format!("run-{second}-{}", p.seq);
            let v = r.create(new_version(model.id, &name, "dev")).await?;
            catalog.versions[p.model].lock().unwrap().push(v.id);
        }
        Op::CreateModel => {
            r.create(new_model(&format!("run-{second}-{}", p.seq)))
                .await?;
        }
    }
    Ok(())
}

/// Seed, then run the simulated seconds; the bill is in `billing`.
pub async fn simulate(registry: Registries, billing: Arc<Billing>, size: &Size) -> Outcome {
    let mut rng = Rng::new(13);
    let started = Instant::now();
    let catalog = Arc::new(seed(&registry.writes, &billing, size, &mut rng).await);
    let seed_secs = started.elapsed().as_secs_f64();
    let seeded = billing.ledger_snapshot().collections;
    let errors: Arc<Vec<AtomicU64>> = Arc::new(Op::ALL.iter().map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    for second in 0..size.seconds {
        let ops = Arc::new(plan(size, &catalog, &mut rng));
        billing.set_period(Period::Second(second));
        let (r, b, c, e) = (
            registry.clone(),
            billing.clone(),
            catalog.clone(),
            errors.clone(),
        );
        for_each(ops.len(), size.tasks, move |i| {
            let (r, b, c, e, p) = (r.clone(), b.clone(), c.clone(), e.clone(), ops[i]);
            async move {
                let done = b.operation(p.op.label(), run_op(&r, &c, second, p)).await;
                if let Err(err) = done {
                    let k = Op::ALL.iter().position(|o| *o == p.op).unwrap_or(0);
                    if e[k].fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("capacity: {} failed: {err}", p.op.label());
                    }
                }
            }
        })
        .await;
    }
    billing.set_period(Period::Seed);
    Outcome {
        seeded,
        seed_secs,
        run_secs: started.elapsed().as_secs_f64(),
        errors: Op::ALL
            .iter()
            .zip(errors.iter())
            .map(|(op, n)| (op.label(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_the_first_ranks_as_its_weights_say() {
        let zipf = Zipf::new(1000, ZIPF_S);
        let mut rng = Rng::new(1);
        let mut counts = vec![0usize; 1000];
        let n = 200_000;
        for _ in 0..n {
            counts[zipf.sample(&mut rng)] += 1;
        }
        let h: f64 = (1..=1000).map(|k| (k as f64).powf(-ZIPF_S)).sum();
        for rank in [0usize, 1, 9] {
            let want = n as f64 * ((rank + 1) as f64).powf(-ZIPF_S) / h;
            let got = counts[rank] as f64;
            assert!(
                (got - want).abs() < want * 0.05,
                "rank {rank}: {got} vs {want}"
            );
        }
        assert!(counts[999] < counts[0] / 100);
    }

    #[test]
    fn a_second_plans_its_rates_in_equal_shares() {
        let size = Size::tiny();
        let catalog = Catalog {
            models: Vec::new(),
            versions: Vec::new(),
            by_rank: (0..10).collect(),
            zipf: Zipf::new(10, ZIPF_S),
        };
        let ops = plan(&size, &catalog, &mut Rng::new(2));
        assert_eq!(ops.len(), size.reads_per_second + size.writes_per_second);
        for op in Op::READS {
            let n = ops.iter().filter(|p| p.op == op).count();
            assert_eq!(n, size.reads_per_second / 4, "{op:?}");
        }
        for op in Op::WRITES {
            let n = ops.iter().filter(|p| p.op == op).count();
            assert_eq!(n, size.writes_per_second / 2, "{op:?}");
        }
    }
}
