//! Table 1: the registry workload. The same six operations against each
//! system, at each client concurrency, with a fixed request count and a
//! warm-up per operation.

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::Client;

use crate::apis::{Api, ModelRef, VersionRef};
use crate::load::{self, Connections, MakeCall};
use crate::results::{self, Record, Timing};

/// The operations of the workload, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateModel,
    CreateVersion,
    GetById,
    FindByName,
    ListPage,
    FilteredSearch,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::CreateModel,
        Op::CreateVersion,
        Op::GetById,
        Op::FindByName,
        Op::ListPage,
        Op::FilteredSearch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::CreateModel => "create model",
            Op::CreateVersion => "create version",
            Op::GetById => "get by id",
            Op::FindByName => "find by name",
            Op::ListPage => "list page",
            Op::FilteredSearch => "filtered search",
        }
    }

    pub fn parse(name: &str) -> Result<Op, String> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == name.trim())
            .ok_or_else(|| format!("no operation '{name}'"))
    }

    pub fn is_create(self) -> bool {
        matches!(self, Op::CreateModel | Op::CreateVersion)
    }
}

/// Versions of the fixture model; every 5th has `stage=prod`, the rest `dev`.
pub const FIXTURE_VERSIONS: usize = 100;
/// Models that `find by name` cycles through.
pub const FIND_MODELS: usize = 20;
/// Page size of `list page`.
pub const LIST_PAGE: usize = 20;
/// Page size of `filtered search` (the fixture has 20 matches).
pub const FILTER_PAGE: usize = 10;

/// What the read operations read, created before any measurement.
pub struct Fixture {
    pub base: ModelRef,
    pub versions: Vec<VersionRef>,
    pub find_names: Vec<String>,
}

/// Create the fixture: models `{prefix}-base` (with its versions) and `{prefix}-find-K`.
pub async fn setup(api: &Api, client: &Client, prefix: &str) -> Result<Fixture, String> {
    let base = api.create_model(client, &format!("{prefix}-base")).await?;
    let mut versions = Vec::with_capacity(FIXTURE_VERSIONS);
    for i in 0..FIXTURE_VERSIONS {
        let stage = if i.is_multiple_of(5) { "prod" } else { "dev" };
        versions.push(
            api.create_version(client, &base, &format!("v{i}"), stage)
                .await?,
        );
    }
    let mut find_names = Vec::with_capacity(FIND_MODELS);
    for k in 0..FIND_MODELS {
        let name = format!("{prefix}-find-{k}");
        api.create_model(client, &name).await?;
        find_names.push(name);
    }
    Ok(Fixture {
        base,
        versions,
        find_names,
    })
}

/// The request maker of `op`. Creates name their entities `{tag}-{seq}`;
/// versions are created under `version_parent`.
pub fn make_call(
    api: &Api,
    fixture: &Fixture,
    op: Op,
    version_parent: &ModelRef,
    tag: &str,
) -> MakeCall {
    let api = api.clone();
    let tag = tag.to_string();
    match op {
        Op::CreateModel => Arc::new(move |seq| api.create_model_call(&format!("{tag}-{seq}"))),
        Op::CreateVersion => {
            let parent = version_parent.clone();
            Arc::new(move |seq| api.create_version_call(&parent, &format!("{tag}-{seq}"), "dev"))
        }
        Op::GetById => {
            let versions = fixture.versions.clone();
            Arc::new(move |seq| api.get_version_call(&versions[seq as usize % versions.len()]))
        }
        Op::FindByName => {
            let names = fixture.find_names.clone();
            Arc::new(move |seq| api.find_model_call(&names[seq as usize % names.len()]))
        }
        Op::ListPage => {
            let call = api.list_versions_call(&fixture.base, LIST_PAGE, None, None);
            Arc::new(move |_| call.clone())
        }
        Op::FilteredSearch => {
            let call = api.search_versions_call("prod", FILTER_PAGE);
            Arc::new(move |_| call.clone())
        }
    }
}

pub struct WorkloadArgs {
    pub api: Api,
    /// The system's label in the report.
    pub system: String,
    pub concurrencies: Vec<usize>,
    /// Requests per read operation and concurrency.
    pub reads: u64,
    /// Requests per create operation and concurrency.
    pub creates: u64,
    /// Unrecorded requests before each measurement.
    pub warmup: u64,
    pub out: PathBuf,
    /// Names of everything created start with it (`wl`), so reruns on one server do not collide.
    pub prefix: String,
    /// Only these operations (all when empty).
    pub ops: Vec<Op>,
    pub connections: Connections,
    /// Shell commands run just before and just after each recorded
    /// measurement, with `BENCH_OP` set (for profilers: zero, then dump).
    pub before_measure: Option<String>,
    pub after_measure: Option<String>,
    /// The server's pid, for its resident memory before and after.
    pub pid: Option<u32>,
}

pub async fn run(args: WorkloadArgs) -> Result<(), String> {
    let idle_kb = args.pid.map(results::tree_rss_kb).unwrap_or(0);
    let p = &args.prefix;
    let fixture = setup(&args.api, &load::client(1), p).await?;
    for &c in &args.concurrencies {
        let client = load::client_with(c, args.connections);
        let parent = args
            .api
            .create_model(&client, &format!("{p}-versions-c{c}"))
            .await?;
        for op in Op::ALL {
            if !args.ops.is_empty() && !args.ops.contains(&op) {
                continue;
            }
            let n = if op.is_create() {
                args.creates
            } else {
                args.reads
            };
            let make = make_call(&args.api, &fixture, op, &parent, &format!("{p}-c{c}"));
            if args.warmup > 0 {
                load::run(&client, &make, 0, args.warmup, c).await;
            }
            hook(args.before_measure.as_deref(), op)?;
            let outcome = load::run(&client, &make, args.warmup, n, c).await;
            hook(args.after_measure.as_deref(), op)?;
            let timing = Timing::of(&outcome, c);
            eprintln!(
                "  {:<16} {:<15} c={c:<2} {:>9.0} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms{}",
                args.system,
                op.name(),
                timing.ops_per_s,
                timing.p50_ms,
                timing.p99_ms,
                timing.error_note()
            );
            results::append(
                &args.out,
                &Record::Workload {
                    system: args.system.clone(),
                    op: op.name().to_string(),
                    timing,
                    object_bytes: None,
                },
            )?;
        }
    }
    if let Some(pid) = args.pid {
        results::append(
            &args.out,
            &Record::Memory {
                system: args.system.clone(),
                idle_kb,
                post_load_kb: results::tree_rss_kb(pid),
            },
        )?;
    }
    Ok(())
}

/// Run a profiler hook (`sh -c`), with the operation's name in `BENCH_OP`.
fn hook(command: Option<&str>, op: Op) -> Result<(), String> {
    let Some(command) = command else {
        return Ok(());
    };
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .env("BENCH_OP", op.name().replace(' ', "-"))
        .status()
        .map_err(|e| format!("{command}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command}: {status}"))
    }
}
