//! Writes `bench/report.md` from the run's `results.jsonl`, the run's
//! facts (`meta.env`: machine, versions, settings, phase times), the
//! capacity model's section and units per operation (for the cost
//! section), the profile summary and the hand-written analysis.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cost::{self, Capacity, usd};
use crate::results::{self, Record, Timing};
use crate::workload::{FILTER_PAGE, FIXTURE_VERSIONS, LIST_PAGE, Op};

pub struct ReportArgs {
    pub results: PathBuf,
    pub meta: PathBuf,
    pub out: PathBuf,
    pub notes: Option<PathBuf>,
    pub profile: Option<PathBuf>,
}

/// The systems of table 1, in column order: (key, heading).
const SYSTEMS: [(&str, &str); 3] = [
    ("embedded", "ours, embedded"),
    ("dynalite", "ours, dynalite + s3s-fs"),
    ("mlflow", "MLflow, SQLite"),
];

const READS: [Op; 4] = [
    Op::GetById,
    Op::FindByName,
    Op::ListPage,
    Op::FilteredSearch,
];
const CREATES: [Op; 2] = [Op::CreateModel, Op::CreateVersion];

/// The ops of table 4 (bench/loadgen/src/upload.rs) start with this.
const UPLOAD_OPS: &str = "upload to visible";

/// The systems of table 5 (bench/run.sh): the same binary on fresh embedded
/// stores, without authentication and with `MR_AUTH=jwt`.
const AUTH_NONE: &str = "auth-none";
const AUTH_JWT: &str = "auth-jwt";
const AUTH_OPS: [Op; 2] = [Op::GetById, Op::CreateVersion];
/// Table 5's target: with authentication, at most 5% fewer ops/s.
const AUTH_MIN_RATIO: f64 = 0.95;

/// Table 6's target: the health check answers within this while the worst
/// filters run.
const HEALTH_P99_MS: f64 = 100.0;

/// The capacity model's section, beside `results.jsonl`: bench/run.sh runs
/// the simulation of `shared/tests/capacity`, which writes it.
const CAPACITY_FILE: &str = "capacity.md";
/// The section's verdict line (written by `shared/tests/capacity/report.rs`)
/// when every key stayed within a partition's limits.
const CAPACITY_MET: &str = "**Within the limits.**";

/// The capacity model's units per operation, beside `results.jsonl`
/// (`shared/tests/capacity` writes it next to its section).
const CAPACITY_JSON: &str = "capacity.json";
/// The capacity model's operations, and the bench's that they are.
const CAPACITY_OPS: [(&str, Op); 6] = [
    ("get version by id", Op::GetById),
    ("find model by name", Op::FindByName),
    ("list a model's versions", Op::ListPage),
    ("filtered search", Op::FilteredSearch),
    ("create version", Op::CreateVersion),
    ("create model", Op::CreateModel),
];
/// The system whose p50 at concurrency 1 stands for a Lambda invocation's
/// duration: ours on a DynamoDB API.
const LAMBDA_STAND_IN: &str = "dynalite";
/// The monthly volumes of the always-on comparison, in millions of
/// operations.
const MONTHLY_MILLIONS: [f64; 3] = [1.0, 10.0, 100.0];

fn system_name(key: &str) -> &str {
    SYSTEMS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, n)| *n)
        .unwrap_or(key)
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn ratio(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}×")
    } else {
        format!("{v:.1}×")
    }
}

fn kb(v: u64) -> String {
    format!("{:.1} MB", v as f64 / 1024.0)
}

/// An object size: `256 KiB`, `4 MiB`, `1000 B`.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// KEY=VALUE lines.
fn read_meta(path: &PathBuf) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// The workload results: (system, op, concurrency) → timing.
type Workload = BTreeMap<(String, String, usize), Timing>;

struct Target {
    what: String,
    measured: String,
    met: bool,
    /// For a miss: by how much.
    gap: String,
}

/// What one run left behind, indexed the way the tables read it.
struct Run {
    records: Vec<Record>,
    /// `meta.env`: the machine, versions, settings and phase times.
    meta: BTreeMap<String, String>,
    /// Table 1 (and table 5); table 4's uploads are left in `records`.
    workload: Workload,
    /// The concurrencies of `workload`, ascending.
    concurrencies: Vec<usize>,
}

impl Run {
    /// Reads `results.jsonl` and `meta.env`.
    fn read(args: &ReportArgs) -> Result<Run, String> {
        let records = results::read_all(&args.results)?;
        let meta = read_meta(&args.meta)?;
        let mut workload: Workload = BTreeMap::new();
        let mut concurrencies: Vec<usize> = Vec::new();
        for r in &records {
            if let Record::Workload {
                system, op, timing, ..
            } = r
            {
                if op.starts_with(UPLOAD_OPS) {
                    continue;
                }
                if !concurrencies.contains(&timing.concurrency) {
                    concurrencies.push(timing.concurrency);
                }
                workload.insert(
                    (system.clone(), op.clone(), timing.concurrency),
                    timing.clone(),
                );
            }
        }
        concurrencies.sort_unstable();
        Ok(Run {
            records,
            meta,
            workload,
            concurrencies,
        })
    }

    /// A fact of `meta.env`, or `?` when the run did not record it.
    fn meta(&self, key: &str) -> String {
        self.meta.get(key).cloned().unwrap_or_else(|| "?".into())
    }

    /// The workload cell of `system`, `op` at concurrency `c`.
    fn get(&self, system: &str, op: Op, c: usize) -> Option<&Timing> {
        self.workload
            .get(&(system.to_string(), op.name().to_string(), c))
    }

    /// Whether `system` ran the workload.
    fn has(&self, system: &str) -> bool {
        self.workload.keys().any(|(k, _, _)| k == system)
    }
}

/// Writes the report, section by section in the order they appear (the
/// capacity section as the simulation wrote it), then the profile summary
/// and the analysis as they are.
pub fn write(args: ReportArgs) -> Result<(), String> {
    let run = Run::read(&args)?;
    // Each table adds its targets as it is written, so the targets summary
    // lists them in table order.
    let mut targets: Vec<Target> = Vec::new();
    let mut o = String::new();
    let w = &mut o;
    header(w, &run);
    machine(w, &run);
    method(w, &run);
    workload_tables(w, &run);
    memory_table(w, &run.records);
    workload_targets(&run, &mut targets);
    scale_table(w, &run, &mut targets);
    cold_start_table(w, &run, &mut targets);
    upload_table(w, &run.records);
    auth_overhead(w, &run.workload, &run.meta("counts_auth"), &mut targets);
    health_under_attack(w, &run.records, &mut targets);
    capacity_section(w, &args.results, &mut targets);
    cost_section(w, &run.workload, &args.results);
    targets_summary(w, &targets);
    for path in [&args.profile, &args.notes].into_iter().flatten() {
        if let Ok(text) = std::fs::read_to_string(path) {
            let _ = writeln!(w, "{}\n", text.trim_end());
        }
    }
    std::fs::write(&args.out, o).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!("report: {}", args.out.display());
    Ok(())
}

/// The title, and when, at which commit and how long the run took.
fn header(w: &mut String, run: &Run) {
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `make bench` (bench/run.sh) on {} at commit `{}`{}; the whole run took {}. \
         Numbers from one run on one machine: the client and every server share its cores, \
         so they compare systems under the same conditions rather than predict a deployment.\n",
        run.meta("date"),
        run.meta("commit"),
        if run.meta("quick") == "1" {
            " in QUICK mode (small counts: not for comparison)"
        } else {
            ""
        },
        run.meta("total_time"),
    );
}

/// "Machine": the hardware and the versions of everything measured.
fn machine(w: &mut String, run: &Run) {
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    for (k, label) in [
        ("cpu", "CPU"),
        ("cores", "cores"),
        ("ram", "RAM"),
        ("kernel", "kernel"),
        ("rustc", "rustc"),
        ("mlflow", "MLflow"),
        ("python", "Python"),
        ("node", "Node.js (dynalite)"),
        ("dynalite", "dynalite"),
        ("profile", "our build profile"),
    ] {
        let _ = writeln!(w, "| {label} | {} |", run.meta(k));
    }
}

/// "How it was measured": the client, the counts, the systems and the
/// operations of table 1, ours beside MLflow's.
fn method(w: &mut String, run: &Run) {
    let _ = writeln!(w, "\n## How it was measured\n");
    let _ = writeln!(
        w,
        "- Everything on 127.0.0.1. The load client is `registry-bench` (bench/loadgen: tokio + reqwest, \
         one keep-alive connection per concurrent worker, latencies in an HDR histogram). For each \
         system, concurrency and operation: an unrecorded warm-up of the same operation, then a fixed \
         number of requests; ops/s = requests ÷ wall time of the recorded part.\n\
         - Requests per operation and concurrency (reads / creates / warm-up): ours, embedded {}; \
         ours, dynalite {}; MLflow {}. MLflow gets fewer because it is about two orders of magnitude slower; \
         its counts still take several seconds per cell.\n\
         - **ours, embedded**: `registry-local` ({}) on the redb store (fsync per write). \
         **ours, dynalite + s3s-fs**: the same binary with `MR_STORE=dynamodb` on dynalite {} \
         (DynamoDB API on LevelDB, one Node.js process) and artifact bytes on s3s-fs. \
         **MLflow**: `mlflow server` {} with a SQLite backend: {}, `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`, \
         access log off, warmed up like the others.\n\
         - Fixture before any measurement: one model with {FIXTURE_VERSIONS} versions (every 5th tagged \
         `stage=prod`, the rest `dev`) and 20 more models. Operations, ours vs MLflow:\n\
         \x20 - create model: `POST /registered_models` with one custom property vs `registered-models/create` with one tag;\n\
         \x20 - create version: `POST /model_versions` (custom property `stage`) vs `model-versions/create` (tag `stage`), all under one model per concurrency;\n\
         \x20 - get by id: `GET /model_versions/{{id}}` vs `model-versions/get?name=&version=` (MLflow has no id);\n\
         \x20 - find by name: `GET /registered_model?name=` vs `registered-models/get?name=`;\n\
         \x20 - list page: `GET /registered_models/{{id}}/versions?pageSize={LIST_PAGE}` vs `model-versions/search?filter=name='…'&max_results={LIST_PAGE}`;\n\
         \x20 - filtered search: `GET /model_versions?filterQuery=stage='prod'&pageSize={FILTER_PAGE}` vs \
         `model-versions/search?filter=tags.stage='prod'&max_results={FILTER_PAGE}` (all versions of all models).",
        run.meta("counts_embedded"),
        run.meta("counts_dynalite"),
        run.meta("counts_mlflow"),
        run.meta("profile"),
        run.meta("dynalite"),
        run.meta("mlflow"),
        run.meta("mlflow_config"),
    );
}

/// Table 1's heading and one table per concurrency.
fn workload_tables(w: &mut String, run: &Run) {
    let _ = writeln!(w, "\n## 1. Registry workload\n");
    for &c in &run.concurrencies {
        workload_table(w, run, c);
    }
}

/// Table 1 at concurrency `c`: ops/s, p50 and p99 of every system, then
/// each of ours ÷ MLflow (when MLflow ran), then that concurrency's errors.
fn workload_table(w: &mut String, run: &Run, c: usize) {
    let _ = writeln!(w, "### Concurrency {c}\n");
    let systems: Vec<(&str, &str)> = SYSTEMS
        .iter()
        .copied()
        .filter(|(k, _)| run.has(k))
        .collect();
    // The columns of ours ÷ MLflow: none without MLflow.
    let ours: Vec<&str> = if run.has("mlflow") {
        systems
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != "mlflow")
            .collect()
    } else {
        Vec::new()
    };
    let mut head = String::from("| operation |");
    let mut rule = String::from("|---|");
    for (_, name) in &systems {
        let _ = write!(head, " {name} ops/s | p50 ms | p99 ms |");
        rule.push_str("---:|---:|---:|");
    }
    for s in &ours {
        let _ = write!(
            head,
            " {} ÷ MLflow |",
            system_name(s).trim_start_matches("ours, ")
        );
        rule.push_str("---:|");
    }
    let _ = writeln!(w, "{head}\n{rule}");
    for op in Op::ALL {
        let mut row = format!("| {} |", op.name());
        for (s, _) in &systems {
            match run.get(s, op, c) {
                Some(t) => {
                    let _ = write!(
                        row,
                        " {:.0} | {} | {} |",
                        t.ops_per_s,
                        ms(t.p50_ms),
                        ms(t.p99_ms)
                    );
                }
                None => row.push_str(" – | – | – |"),
            }
        }
        for s in &ours {
            match (run.get(s, op, c), run.get("mlflow", op, c)) {
                (Some(a), Some(b)) if b.ops_per_s > 0.0 => {
                    let _ = write!(row, " {} |", ratio(a.ops_per_s / b.ops_per_s));
                }
                _ => row.push_str(" – |"),
            }
        }
        let _ = writeln!(w, "{row}");
    }
    if c == 1 {
        mlflow_keepalive_note(w, run);
    }
    workload_errors(w, run, c);
    let _ = writeln!(w);
}

/// Under table 1 at concurrency 1: MLflow's get by id on kept-alive
/// connections, beside the fresh-connection figure in the table.
fn mlflow_keepalive_note(w: &mut String, run: &Run) {
    let (Some(ka), Some(fresh)) = (
        run.get("mlflow-keepalive", Op::GetById, 1),
        run.get("mlflow", Op::GetById, 1),
    ) else {
        return;
    };
    let _ = writeln!(
        w,
        "\nMLflow is measured with a new connection per request. On kept-alive connections \
         (what its Python client does) get by id at concurrency 1 took p50 {} ms ({:.0} ops/s) instead \
         of {} ms: with several uvicorn workers its sockets lack `TCP_NODELAY` and each response \
         waits for a delayed ACK.",
        ms(ka.p50_ms),
        ka.ops_per_s,
        ms(fresh.p50_ms),
    );
}

/// Under table 1 at concurrency `c`: the failed requests of every system
/// but table 5's.
fn workload_errors(w: &mut String, run: &Run, c: usize) {
    let errors: Vec<String> = run
        .workload
        .iter()
        .filter(|((s, _, cc), t)| {
            *cc == c && t.errors > 0 && ![AUTH_NONE, AUTH_JWT].contains(&s.as_str())
        })
        .map(|((s, op, _), t)| {
            format!(
                "{} / {op}: {} of {} failed (first: {})",
                system_name(s),
                t.errors,
                t.requests,
                t.first_error.as_deref().unwrap_or("?")
            )
        })
        .collect();
    error_list(w, &errors);
}

/// Under table 1: each server's resident memory, idle and after the workload.
fn memory_table(w: &mut String, records: &[Record]) {
    let memory: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Memory {
                system,
                idle_kb,
                post_load_kb,
            } => Some((system, idle_kb, post_load_kb)),
            _ => None,
        })
        .collect();
    if memory.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "Resident memory of the server (all its processes; dynalite's own not counted):\n"
    );
    let _ = writeln!(
        w,
        "| system | idle (after start) | after the workload |\n|---|---:|---:|"
    );
    for (s, idle, post) in memory {
        let _ = writeln!(w, "| {} | {} | {} |", system_name(s), kb(*idle), kb(*post));
    }
    let _ = writeln!(w);
}

/// The targets of table 1: ours against MLflow (when it ran), then the
/// embedded store's p99 latencies.
fn workload_targets(run: &Run, targets: &mut Vec<Target>) {
    if run.has("mlflow") {
        ratio_targets(run, targets, "embedded", &READS, 100.0, "embedded");
        ratio_targets(run, targets, "embedded", &CREATES, 20.0, "embedded");
        ratio_targets(run, targets, "dynalite", &Op::ALL, 10.0, "dynalite");
    }
    for op in [
        Op::GetById,
        Op::FindByName,
        Op::CreateModel,
        Op::CreateVersion,
    ] {
        let mut parts = Vec::new();
        let mut worst: f64 = 0.0;
        let mut worst_c = 0;
        for &c in &run.concurrencies {
            if let Some(t) = run.get("embedded", op, c) {
                if t.p99_ms > worst {
                    worst = t.p99_ms;
                    worst_c = c;
                }
                parts.push(format!("{} ms at c={c}", ms(t.p99_ms)));
            }
        }
        if !parts.is_empty() {
            targets.push(Target {
                what: format!("embedded: {} p99 < 5 ms", op.name()),
                measured: parts.join(", "),
                met: worst < 5.0,
                gap: format!(
                    "{} ms at c={worst_c}: {:.1}× the target",
                    ms(worst),
                    worst / 5.0
                ),
            });
        }
    }
}

/// A target per op of `ops`: `system` does at least `min` × MLflow's ops/s
/// at every concurrency.
fn ratio_targets(
    run: &Run,
    targets: &mut Vec<Target>,
    system: &str,
    ops: &[Op],
    min: f64,
    label: &str,
) {
    for &op in ops {
        let mut parts = Vec::new();
        let mut worst = f64::INFINITY;
        for &c in &run.concurrencies {
            if let (Some(a), Some(b)) = (run.get(system, op, c), run.get("mlflow", op, c)) {
                let r = a.ops_per_s / b.ops_per_s.max(1e-9);
                worst = worst.min(r);
                parts.push(format!("{} at c={c}", ratio(r)));
            }
        }
        if parts.is_empty() {
            continue;
        }
        targets.push(Target {
            what: format!("{label}: {} ≥ {min:.0}× MLflow ops/s", op.name()),
            measured: parts.join(", "),
            met: worst >= min,
            gap: format!(
                "worst {} of {min:.0}× (short by {:.2}×)",
                ratio(worst),
                min / worst
            ),
        });
    }
}

/// One list request of table 2: its timing, offset and page size.
type Page<'a> = (&'a Timing, u64, usize);

/// The `op` page (`first page`, `deep page`, `filtered page`) of `system`'s
/// model with `versions` versions.
fn scale_page<'a>(
    records: &'a [Record],
    system: &str,
    versions: u64,
    op: &str,
) -> Option<Page<'a>> {
    records.iter().find_map(|r| match r {
        Record::Scale {
            system: s,
            versions: v,
            op: o,
            timing,
            offset,
            page_size,
        } if s == system && *v == versions && o == op => Some((timing, *offset, *page_size)),
        _ => None,
    })
}

/// A seeding of table 2: system, versions, timing, seconds.
type Seed<'a> = (&'a str, u64, &'a Timing, f64);

/// Table 2: a model with many versions, seeded, then its first, deep and
/// filtered pages; a target per system of ours on the deep page.
fn scale_table(w: &mut String, run: &Run, targets: &mut Vec<Target>) {
    let _ = writeln!(w, "## 2. Scale: one model with many versions\n");
    let seeds: Vec<Seed> = run
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Seed {
                system,
                versions,
                timing,
                seconds,
            } => Some((system.as_str(), *versions, timing, *seconds)),
            _ => None,
        })
        .collect();
    let Some(&(first_system, first_versions, first_seed, _)) = seeds.first() else {
        let _ = writeln!(w, "Not run.\n");
        return;
    };
    let _ = writeln!(
        w,
        "Versions seeded through each API at concurrency {} (every 10th tagged `stage=prod`), then the \
         page tokens walked (untimed) down to the deep page; each page then requested {} times in a row at \
         concurrency 1 after a warm-up. Ours lists by id with keyset tokens; MLflow's `model-versions/search` \
         pages with an offset token.\n",
        first_seed.concurrency,
        run.meta("scale_requests"),
    );
    let _ = writeln!(
        w,
        "| system | versions | seeding | first page p50 / p99 ms | deep page p50 / p99 ms | deep ÷ first (p50) | filtered page p50 / p99 ms |\n|---|---:|---|---:|---:|---:|---:|"
    );
    for seed in &seeds {
        scale_row(w, &run.records, seed, targets);
    }
    let _ = writeln!(
        w,
        "\nPage size {}. The filtered page is the first page of `stage='prod'` within the model \
         (10% of the versions match, so a full page reads about 10× its size). Ours also times the web \
         interface's page of that model (`/ui/models/{{id}}`: the model and its newest 50 versions with \
         their metric columns, rendered on the server; its target is in the list of targets).\n",
        scale_page(&run.records, first_system, first_versions, "first page")
            .map(|t| t.2)
            .unwrap_or(0)
    );
}

/// A row of table 2, and for ours the deep-page target.
fn scale_row(w: &mut String, records: &[Record], seed: &Seed, targets: &mut Vec<Target>) {
    let &(system, versions, seed, seconds) = seed;
    let first = scale_page(records, system, versions, "first page");
    let deep = scale_page(records, system, versions, "deep page");
    let filtered = scale_page(records, system, versions, "filtered page");
    let cell = |t: &Option<Page>| match t {
        Some((t, _, _)) => format!("{} / {}", ms(t.p50_ms), ms(t.p99_ms)),
        None => "–".into(),
    };
    let deep_cell = match &deep {
        Some((t, offset, size)) => format!(
            "{} / {} (items {offset}–{})",
            ms(t.p50_ms),
            ms(t.p99_ms),
            offset + *size as u64 - 1
        ),
        None => "–".into(),
    };
    let deep_ratio = match (&first, &deep) {
        (Some((f, _, _)), Some((d, _, _))) => {
            let r = d.p50_ms / f.p50_ms.max(1e-9);
            if system != "mlflow" {
                targets.push(Target {
                    what: format!(
                        "{}, {versions} versions: deep page within 1.5× of page 1",
                        system_name(system)
                    ),
                    measured: format!("{r:.2}× (p50 {} vs {} ms)", ms(d.p50_ms), ms(f.p50_ms)),
                    met: r <= 1.5,
                    gap: format!("{r:.2}× instead of ≤ 1.5×"),
                });
            }
            format!("{r:.2}×")
        }
        _ => "–".into(),
    };
    if let Some((t, _, _)) = scale_page(records, system, versions, "web model page") {
        targets.push(Target {
            what: format!(
                "{}, {versions} versions: the web interface's model page under 100 ms (p99)",
                system_name(system)
            ),
            measured: format!("p50 {} ms, p99 {} ms", ms(t.p50_ms), ms(t.p99_ms)),
            met: t.p99_ms < 100.0,
            gap: format!("p99 {} ms instead of < 100 ms", ms(t.p99_ms)),
        });
    }
    let _ = writeln!(
        w,
        "| {} | {versions} | {:.1} s ({:.0}/s{}) | {} | {deep_cell} | {deep_ratio} | {} |",
        system_name(system),
        seconds,
        seed.ops_per_s,
        if seed.errors > 0 {
            format!(", {} failed", seed.errors)
        } else {
            String::new()
        },
        cell(&first),
        cell(&filtered),
    );
}

/// Table 3: start-up time, size and memory of every function binary, a
/// cold-start target each, and the binaries that did not build.
fn cold_start_table(w: &mut String, run: &Run, targets: &mut Vec<Target>) {
    let _ = writeln!(w, "## 3. Cold start and footprint per function binary\n");
    let colds: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| matches!(r, Record::ColdStart { .. }))
        .collect();
    if colds.is_empty() {
        let _ = writeln!(w, "Not run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "Each binary found under `functions/*` ({} profile), started {} times (after one untimed start) on \
         the embedded store with a seeded data directory: exec to the first 200 on `/readyz/health` \
         (polled every 0.2 ms over fresh connections). Idle RSS: 100 ms after that 200 (median of the starts). \
         Post-load RSS: after {} requests of each workload operation the binary serves, at concurrency 8.\n",
        run.meta("coldstart_profile"),
        run.meta("coldstart_starts"),
        run.meta("coldstart_load_requests"),
    );
    let _ = writeln!(
        w,
        "| binary | stripped size | median ms | p90 ms | min – max ms | idle RSS | post-load RSS | operations served |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in colds {
        cold_start_row(w, r, targets);
    }
    let unbuilt = run.meta("unbuilt");
    if !unbuilt.is_empty() && unbuilt != "?" {
        let _ = writeln!(
            w,
            "\nNot measured because they did not build at the time of the run: {unbuilt}."
        );
    }
    let _ = writeln!(w);
}

/// A row of table 3, and the binary's cold-start target when it started.
fn cold_start_row(w: &mut String, record: &Record, targets: &mut Vec<Target>) {
    let Record::ColdStart {
        binary,
        size_bytes,
        starts,
        failed_starts,
        median_ms,
        p90_ms,
        min_ms,
        max_ms,
        idle_rss_kb,
        post_load_rss_kb,
        load_ops,
        error,
    } = record
    else {
        return;
    };
    let _ = writeln!(
        w,
        "| {binary} | {:.1} MB | {} | {} | {} – {} | {} | {} | {}{} |",
        *size_bytes as f64 / 1_048_576.0,
        ms(*median_ms),
        ms(*p90_ms),
        ms(*min_ms),
        ms(*max_ms),
        kb(*idle_rss_kb),
        kb(*post_load_rss_kb),
        if load_ops.is_empty() {
            "–".to_string()
        } else {
            load_ops.join(", ")
        },
        match error {
            Some(e) => format!(" ({failed_starts} starts failed: {e})"),
            None => String::new(),
        }
    );
    if *starts > 0 {
        targets.push(Target {
            what: format!("{binary}: cold start < 15 ms"),
            measured: format!("median {} ms, p90 {} ms", ms(*median_ms), ms(*p90_ms)),
            met: *median_ms < 15.0,
            gap: format!("median {:.1}× the target", median_ms / 15.0),
        });
    }
}

/// Table 4: upload to visible, through a storage event and through the
/// upload extension, in the order measured.
fn upload_table(w: &mut String, records: &[Record]) {
    let _ = writeln!(w, "## 4. Storage event latency (upload to visible)\n");
    let uploads: Vec<(&str, &str, Option<u64>, &Timing)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Workload {
                system,
                op,
                timing,
                object_bytes,
            } if op.starts_with(UPLOAD_OPS) => {
                Some((system.as_str(), op.as_str(), *object_bytes, timing))
            }
            _ => None,
        })
        .collect();
    if uploads.is_empty() {
        let _ = writeln!(w, "Not measured in this run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "`registry-local` on dynalite + s3s-fs (`MR_ARTIFACT_BUCKET`), one upload at a time after an \
         untimed warm-up, each of a new version: an upload session is started (untimed), then the clock \
         runs from just before the `PUT` of the object to its presigned URL until the client sees the \
         model artifact `LIVE`. **storage event**: after the `PUT`, the S3 `ObjectCreated:Put` \
         notification is delivered to `/events/storage` the way Knative delivers it (a binary-mode \
         CloudEvent: `ce-*` headers, the S3 record as the body), then the artifact is polled through \
         the API every millisecond. **upload extension**: after the `PUT`, the session's completion \
         call (which verifies the object and registers it in-process) answers with the artifact `LIVE`. \
         A deployment adds S3's notification delay (S3 to EventBridge or Knative, usually under a \
         second), which is not measured here.\n"
    );
    let _ = writeln!(
        w,
        "| way | uploads | object size | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (system, op, bytes, t) in uploads {
        let way = op
            .strip_prefix(UPLOAD_OPS)
            .map(|w| w.trim().trim_start_matches('(').trim_end_matches(')'))
            .unwrap_or(op);
        let way = if system == "dynalite" {
            way.to_string()
        } else {
            format!("{way} ({})", system_name(system))
        };
        let _ = writeln!(
            w,
            "| {way} | {} | {} | {} | {} | {} | {} |",
            t.requests,
            bytes.map(size).unwrap_or_else(|| "?".into()),
            ms(t.p50_ms),
            ms(t.p90_ms),
            ms(t.p99_ms),
            ms(t.max_ms),
        );
    }
    let _ = writeln!(w);
}

/// "Capacity (DynamoDB partition model)": the section the capacity
/// simulation left beside the results, as it is (nothing when the run had
/// none), and its verdict as a target.
fn capacity_section(w: &mut String, results: &Path, targets: &mut Vec<Target>) {
    let Ok(text) = std::fs::read_to_string(results.with_file_name(CAPACITY_FILE)) else {
        return;
    };
    let _ = writeln!(w, "{}\n", text.trim_end());
    // `**Within the limits.**` or `**N limits exceeded.**`; none when the
    // simulation did not finish (bench/run.sh then writes why).
    let verdict = text.lines().find(|l| l.starts_with("**"));
    let met = verdict.is_some_and(|v| v.trim() == CAPACITY_MET);
    let measured = match verdict {
        Some(v) => v.replace("**", "").trim().trim_end_matches('.').to_string(),
        None => "did not finish (bench/out/capacity.log)".to_string(),
    };
    targets.push(Target {
        what: "Capacity: no partition key over 3,000 read or 1,000 write units in a second, no \
               item collection with local indexes over 1 GB at full size"
            .to_string(),
        measured,
        met,
        gap: "the keys and collections over the limits are listed under Capacity (DynamoDB \
              partition model)"
            .to_string(),
    });
}

/// What one operation of the benchmark costs on AWS, per million.
struct OperationCost {
    op: Op,
    read_units: f64,
    write_units: f64,
    dynamodb: f64,
    /// Billed ms, GB-s and the Lambda cost: none when the stand-in did not
    /// run the operation at concurrency 1.
    lambda: Option<(u64, f64, f64)>,
}

impl OperationCost {
    /// DynamoDB, Lambda and API Gateway per million operations (none
    /// without Lambda's duration).
    fn total(&self) -> Option<f64> {
        self.lambda
            .map(|(_, _, lambda)| self.dynamodb + lambda + cost::API_GATEWAY_HTTP.usd)
    }
}

/// "Cost per operation (AWS on-demand)": DynamoDB units (the capacity
/// model's `capacity.json`), Lambda GB-seconds (ours on dynalite, p50 at
/// concurrency 1) and API Gateway requests per operation at list prices;
/// then the benchmark's mix beside an always-on MLflow with the smallest
/// managed database, at 1, 10 and 100 million operations a month.
fn cost_section(w: &mut String, workload: &Workload, results: &Path) {
    let _ = writeln!(w, "## Cost per operation (AWS on-demand)\n");
    let capacity = match std::fs::read_to_string(results.with_file_name(CAPACITY_JSON)) {
        Ok(text) => match Capacity::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(
                    w,
                    "Not run: bench/out/{CAPACITY_JSON} could not be read ({e}).\n"
                );
                return;
            }
        },
        Err(_) => {
            let _ = writeln!(
                w,
                "Not run: the capacity model did not write bench/out/{CAPACITY_JSON}.\n"
            );
            return;
        }
    };
    let (memory_mb, from_template) = cost::lambda_memory_mb();
    let rows: Vec<(OperationCost, u64)> = Op::ALL
        .iter()
        .filter_map(|&op| {
            let name = CAPACITY_OPS.iter().find(|(_, o)| *o == op)?.0;
            let units = capacity.op(name)?;
            let lambda = workload
                .get(&(LAMBDA_STAND_IN.to_string(), op.name().to_string(), 1))
                .filter(|t| t.requests > t.errors)
                .map(|t| {
                    let billed = cost::billed_ms(t.p50_ms);
                    let gb_s = cost::gb_seconds(billed, memory_mb);
                    (billed, gb_s, cost::lambda_per_million(gb_s))
                });
            let row = OperationCost {
                op,
                read_units: units.read_units_per_op,
                write_units: units.write_units_per_op,
                dynamodb: cost::dynamodb_per_million(
                    units.read_units_per_op,
                    units.write_units_per_op,
                ),
                lambda,
            };
            Some((row, units.ops))
        })
        .collect();
    let _ = writeln!(
        w,
        "Price list: AWS us-east-1 on-demand list prices as of {}; check before budgeting \
         (free tiers, Savings Plans and volume tiers left out; the prices and their sources are \
         at the end of this section).\n",
        cost::PRICES_AS_OF
    );
    let _ = writeln!(
        w,
        "Ours as infra/lambda/template.yaml deploys it: API Gateway HTTP API → Lambda (x86_64, \
         {memory_mb} MB{}) → DynamoDB on-demand. Per operation:\n\n\
         - **DynamoDB**: read and write request units from the capacity model (the section \
         above: the registry's own code on this commit's storage layout, every table call \
         billed, averaged over its simulated seconds at {} models and {} versions).\n\
         - **Lambda**: the billed duration is ours on dynalite (table 1, concurrency 1, p50), \
         rounded up to the millisecond as Lambda bills it; × {memory_mb} MB = GB-seconds, at {} \
         per GB-s, plus {} per million requests. dynalite is a stand-in (one Node.js process on \
         this machine, over HTTP on 127.0.0.1); in-region DynamoDB usually answers faster, so \
         this overestimates the duration. Against that, a {memory_mb} MB function has a \
         fraction of a vCPU (Lambda allots CPU in proportion to memory: one vCPU at 1,769 MB), \
         so what an operation spends on CPU takes longer there than here. Cold starts' \
         initialisation is not counted.\n\
         - **API Gateway**: {} per million requests.\n",
        if from_template {
            ": its `MemorySize`"
        } else {
            ", assumed: no `MemorySize` in the template"
        },
        thousands_u64(capacity.size.models),
        thousands_u64(capacity.size.versions),
        cost::list_price(cost::LAMBDA_DURATION.usd),
        cost::list_price(cost::LAMBDA_REQUESTS.usd),
        usd(cost::API_GATEWAY_HTTP.usd),
    );
    let _ = writeln!(
        w,
        "| operation | read units/op | write units/op | DynamoDB per million | billed ms | GB-s/op | \
         Lambda per million | API Gateway per million | total per million |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (row, _) in &rows {
        let (billed, gb_s, lambda) = match row.lambda {
            Some((ms, gb_s, lambda)) => (ms.to_string(), format!("{gb_s:.5}"), usd(lambda)),
            None => ("–".into(), "–".into(), "–".into()),
        };
        let _ = writeln!(
            w,
            "| {} | {:.2} | {:.2} | {} | {billed} | {gb_s} | {lambda} | {} | {} |",
            row.op.name(),
            row.read_units,
            row.write_units,
            usd(row.dynamodb),
            usd(cost::API_GATEWAY_HTTP.usd),
            row.total().map_or_else(|| "–".to_string(), usd),
        );
    }
    let missing: Vec<&str> = Op::ALL
        .iter()
        .filter(|op| !rows.iter().any(|(r, _)| r.op == **op))
        .map(|op| op.name())
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(w, "\nNot in {CAPACITY_JSON}: {}.", missing.join(", "));
    }
    if rows.iter().any(|(r, _)| r.lambda.is_none()) {
        let _ = writeln!(
            w,
            "\n–: ours on dynalite did not run that operation at concurrency 1 in this run."
        );
    }
    let _ = writeln!(w);

    // The mix: the capacity model's operation counts (20,000 reads/s, a
    // quarter each, and 2,000 writes/s, half each).
    let ops: u64 = rows.iter().map(|(_, n)| n).sum();
    let mix: Option<f64> = if rows.len() == Op::ALL.len() && ops > 0 {
        rows.iter()
            .map(|(r, n)| r.total().map(|t| t * *n as f64 / ops as f64))
            .sum()
    } else {
        None
    };
    let _ = writeln!(w, "### Ours beside an always-on MLflow\n");
    let Some(mix) = mix else {
        let _ = writeln!(
            w,
            "Needs every operation's units and duration, which this run lacks (above).\n"
        );
        price_list(w);
        return;
    };
    let shares: Vec<String> = rows
        .iter()
        .map(|(r, n)| format!("{} {:.1}%", r.op.name(), *n as f64 * 100.0 / ops as f64))
        .collect();
    let (db, db_storage, server) = cost::mlflow_monthly();
    let mlflow = db + db_storage + server;
    let ec2 = cost::EC2_T4G_SMALL.usd * cost::HOURS_PER_MONTH;
    let _ = writeln!(
        w,
        "The benchmark mix, weighted as the capacity model ran it ({}): {} per million \
         operations.\n",
        shares.join(", "),
        usd(mix)
    );
    let _ = writeln!(
        w,
        "The always-on alternative, at its smallest: `mlflow server` on Fargate, {} vCPU / {} GB \
         (Linux/x86, {} a month; chosen over an EC2 t4g.small, {} a month before its EBS \
         volume, as the cheaper one and the one without an instance to patch), and RDS for \
         PostgreSQL db.t4g.micro, single-AZ ({} a month) with {:.0} GB of gp3 ({} a month): \
         **{} a month**, whatever the traffic. Not counted for either: data transfer, logs, \
         artifact bytes in S3; for MLflow, a load balancer or public IPv4 address in front of \
         the task; for ours, the free tiers.\n",
        cost::FARGATE_VCPUS,
        cost::FARGATE_GB,
        usd(server),
        usd(ec2),
        usd(db),
        cost::RDS_STORAGE_GB,
        usd(db_storage),
        usd(mlflow),
    );
    let _ = writeln!(
        w,
        "| operations a month | on average | ours per month | ours per million | always-on MLflow per month | MLflow per million |\n\
         |---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(w, "| 0 | 0/s | storage only | – | {} | – |", usd(mlflow));
    for millions in MONTHLY_MILLIONS {
        let per_second = millions * 1e6 / (cost::HOURS_PER_MONTH * 3600.0);
        let _ = writeln!(
            w,
            "| {} million | {per_second:.1}/s | {} | {} | {} | {} |",
            millions,
            usd(mix * millions),
            usd(mix),
            usd(mlflow),
            usd(mlflow / millions),
        );
    }
    let stored = capacity
        .size
        .stored_bytes
        .map(|b| {
            format!(
                " (the capacity model's table, {} models and {} versions with their index \
                 entries, held {:.2} GB)",
                thousands_u64(capacity.size.models),
                thousands_u64(capacity.size.versions),
                b as f64 / 1e9
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        w,
        "\nOurs scales to zero: functions, API and an on-demand table bill per request, so at 0 \
         requests ours costs nothing but storage: DynamoDB at {} per GB-month after the first \
         25 GB{stored}, and the artifact bytes in S3. It costs as much as the always-on MLflow \
         at about {:.0} million operations a month of this mix. Whether 0.25 vCPU and a \
         db.t4g.micro keep up with 100 million a month (and its peaks) is not measured here: a \
         larger task or database raises MLflow's line; ours stays per request.\n",
        usd(cost::DYNAMODB_STORAGE.usd),
        mlflow / mix,
    );
    price_list(w);
}

/// The price list under the cost section: every price, what it buys and
/// where it comes from.
fn price_list(w: &mut String) {
    let _ = writeln!(
        w,
        "Prices (us-east-1, on-demand, as of {}; aws.amazon.com could not be fetched where this \
         was written, so each was checked against copies of AWS's pages and price guides):\n",
        cost::PRICES_AS_OF
    );
    let _ = writeln!(w, "| item | price | source |\n|---|---:|---|");
    for p in cost::PRICES {
        let _ = writeln!(
            w,
            "| {} | {} {} | {} |",
            p.what,
            cost::list_price(p.usd),
            p.per,
            p.source
        );
    }
    let _ = writeln!(w);
}

/// 1,000,000.
fn thousands_u64(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "Targets": every target of the tables above, met or not, then by how
/// much each missed one was missed.
fn targets_summary(w: &mut String, targets: &[Target]) {
    let _ = writeln!(w, "## Targets\n");
    let _ = writeln!(
        w,
        "Reported, never asserted in tests. A ratio target must hold at every concurrency.\n"
    );
    let _ = writeln!(w, "| target | measured | |\n|---|---|---|");
    for t in targets {
        let _ = writeln!(w, "| {} | {} | {} |", t.what, t.measured, mark(t.met));
    }
    let missed: Vec<&Target> = targets.iter().filter(|t| !t.met).collect();
    let _ = writeln!(w);
    if missed.is_empty() {
        let _ = writeln!(w, "Every target was met in this run.\n");
    } else {
        let _ = writeln!(w, "Missed in this run, and by how much:\n");
        for t in missed {
            let _ = writeln!(w, "- {}: {}.", t.what, t.gap);
        }
        let _ = writeln!(w);
    }
}

/// Table 5: get by id and create version on the same binary without and
/// with `MR_AUTH=jwt`, measured back to back with the same counts.
fn auth_overhead(w: &mut String, workload: &Workload, counts: &str, targets: &mut Vec<Target>) {
    let _ = writeln!(w, "## 5. Authentication overhead (MR_AUTH=jwt vs none)\n");
    let get = |system: &str, op: Op, c: usize| {
        workload.get(&(system.to_string(), op.name().to_string(), c))
    };
    let mut concurrencies: Vec<usize> = workload
        .keys()
        .filter(|(s, _, _)| s == AUTH_NONE)
        .map(|(_, _, c)| *c)
        .collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    let mut rows = Vec::new();
    for op in AUTH_OPS {
        for &c in &concurrencies {
            if let (Some(none), Some(jwt)) = (get(AUTH_NONE, op, c), get(AUTH_JWT, op, c)) {
                rows.push((op, c, none, jwt));
            }
        }
    }
    if rows.is_empty() {
        let _ = writeln!(w, "Not run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "`registry-local` twice, each on a fresh embedded store: once without authentication, once with \
         `MR_AUTH=jwt` (keys from a JWKS file read at start-up, as a deployment with cached JWKS has; one RS256 \
         token from `test-issuer` sent as `Authorization: Bearer` on every request, so after the first request \
         the server finds it among its verified tokens and checks no signature). Both servers run side by side \
         and each cell is measured on one right after the other with the same counts (reads / creates / \
         warm-up: {counts}), alternating which goes first, so that the machine's drift falls on both. \
         Target: at most 5% fewer ops/s with authentication.\n"
    );
    let _ = writeln!(
        w,
        "| operation | clients | none ops/s | jwt ops/s | jwt ÷ none | none p99 ms | jwt p99 ms | ≤ 5% fewer ops/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---|"
    );
    for (op, c, none, jwt) in &rows {
        let r = jwt.ops_per_s / none.ops_per_s.max(1e-9);
        let _ = writeln!(
            w,
            "| {} | {c} | {:.0} | {:.0} | {r:.3} | {} | {} | {} |",
            op.name(),
            none.ops_per_s,
            jwt.ops_per_s,
            ms(none.p99_ms),
            ms(jwt.p99_ms),
            mark(r >= AUTH_MIN_RATIO),
        );
    }
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|(op, c, none, jwt)| [(AUTH_NONE, op, c, none), (AUTH_JWT, op, c, jwt)])
        .filter(|(_, _, _, t)| t.errors > 0)
        .map(|(s, op, c, t)| {
            format!(
                "{s} / {} at c={c}: {} of {} failed (first: {})",
                op.name(),
                t.errors,
                t.requests,
                t.first_error.as_deref().unwrap_or("?")
            )
        })
        .collect();
    error_list(w, &errors);
    let _ = writeln!(w);

    for op in AUTH_OPS {
        let cells: Vec<(usize, f64)> = rows
            .iter()
            .filter(|(o, ..)| *o == op)
            .map(|(_, c, none, jwt)| (*c, jwt.ops_per_s / none.ops_per_s.max(1e-9)))
            .collect();
        let Some(&(worst_c, worst)) = cells.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
            continue;
        };
        targets.push(Target {
            what: format!(
                "MR_AUTH=jwt: {} at most 5% fewer ops/s than none",
                op.name()
            ),
            measured: cells
                .iter()
                .map(|(c, r)| format!("{r:.3} at c={c}"))
                .collect::<Vec<_>>()
                .join(", "),
            met: worst >= AUTH_MIN_RATIO,
            gap: format!(
                "{:.1}% fewer at c={worst_c} (target ≤ 5%)",
                (1.0 - worst) * 100.0
            ),
        });
    }
}

/// Table 6: `/readyz/health` while clients send the worst `LIKE` filter.
fn health_under_attack(w: &mut String, records: &[Record], targets: &mut Vec<Target>) {
    let _ = writeln!(w, "## 6. Health check while the worst filters run\n");
    let runs: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::HealthUnderAttack { .. }))
        .collect();
    if runs.is_empty() {
        let _ = writeln!(w, "Not run.\n");
        return;
    }
    let mut notes = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Record::HealthUnderAttack {
            system,
            models,
            description_chars,
            description_chars_asked,
            pattern_chars,
            attack_clients,
            seconds,
            idle_health,
            health,
            attack,
        } = r
        else {
            continue;
        };
        if i == 0 {
            let refused = if description_chars < description_chars_asked {
                format!(
                    ", the longest the server stores ({description_chars_asked} were asked for; \
                     it refuses an entity that large with 413)"
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                w,
                "{models} registered models whose `description` is {description_chars} characters of \
                 `a`{refused}; then for {seconds:.0} s, {attack_clients} clients send, one after another, \
                 `GET /registered_models?filterQuery=description LIKE '%a_a_…a_ab%'`: the longest pattern \
                 the filter language takes ({pattern_chars} characters), one segment with a `_` every other \
                 character and a `b` no description holds, so every description is scanned to its end and \
                 nothing matches. Meanwhile one client probes `/readyz/health` every 20 ms on a new \
                 connection each time, as a kubelet does (a probe without a 2xx within 5 s has failed). \
                 Idle: 50 probes just before. Target: health p99 < 100 ms while the worst filters run.\n"
            );
            let _ = writeln!(
                w,
                "| system | filter queries | query p50 ms | idle health p50 / p99 ms | health probes | \
                 health p50 ms | p99 ms | max ms | health p99 < 100 ms |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---|"
            );
        }
        let ok = health.p99_ms < HEALTH_P99_MS && health.errors == 0;
        let failed = |t: &Timing| {
            if t.errors > 0 {
                format!(" ({} failed)", t.errors)
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            w,
            "| {} | {}{} ({:.1}/s) | {} | {} / {} | {}{} | {} | {} | {} | {} |",
            system_name(system),
            attack.requests,
            failed(attack),
            attack.ops_per_s,
            ms(attack.p50_ms),
            ms(idle_health.p50_ms),
            ms(idle_health.p99_ms),
            health.requests,
            failed(health),
            ms(health.p50_ms),
            ms(health.p99_ms),
            ms(health.max_ms),
            mark(ok),
        );
        for (what, t) in [("filter queries", attack), ("health probes", health)] {
            if let Some(e) = &t.first_error {
                notes.push(format!(
                    "{} / {what}: first failure: {e}",
                    system_name(system)
                ));
            }
        }
        targets.push(Target {
            what: format!(
                "{}: health p99 < 100 ms while the worst filters run",
                system_name(system)
            ),
            measured: format!(
                "p99 {} ms (p50 {}, max {}; {} probes{})",
                ms(health.p99_ms),
                ms(health.p50_ms),
                ms(health.max_ms),
                health.requests,
                failed(health)
            ),
            met: ok,
            gap: if health.errors > 0 {
                format!("{} of {} probes failed", health.errors, health.requests)
            } else {
                format!(
                    "p99 {} ms: {:.1}× the target",
                    ms(health.p99_ms),
                    health.p99_ms / HEALTH_P99_MS
                )
            },
        });
    }
    if !notes.is_empty() {
        let _ = writeln!(w);
        for n in notes {
            let _ = writeln!(w, "- {n}");
        }
    }
    let _ = writeln!(w);
}

/// The "Errors:" list under a table, when anything failed.
fn error_list(w: &mut String, errors: &[String]) {
    if !errors.is_empty() {
        let _ = writeln!(w, "\nErrors:\n");
        for e in errors {
            let _ = writeln!(w, "- {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capacity section as the simulation left it, and its target.
    fn capacity(text: Option<&str>) -> (String, Vec<Target>) {
        let dir = std::env::temp_dir().join(format!("capacity-report-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(text) = text {
            std::fs::write(dir.join(CAPACITY_FILE), text).unwrap();
        }
        let (mut w, mut targets) = (String::new(), Vec::new());
        capacity_section(&mut w, &dir.join("results.jsonl"), &mut targets);
        std::fs::remove_dir_all(&dir).unwrap();
        (w, targets)
    }

    fn unique_suffix() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}", std::process::id())
    }

    /// The cost section over `capacity` (capacity.json's text, if any)
    /// and a workload where ours on dynalite took `p50_ms` for every
    /// operation at concurrency 1.
    fn cost(capacity: Option<&str>, p50_ms: Option<f64>) -> String {
        let dir = std::env::temp_dir().join(format!("cost-report-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(text) = capacity {
            std::fs::write(dir.join(CAPACITY_JSON), text).unwrap();
        }
        let mut workload = Workload::new();
        for op in Op::ALL {
            if let Some(p50_ms) = p50_ms {
                let timing = Timing {
                    requests: 100,
                    errors: 0,
                    concurrency: 1,
                    ops_per_s: 100.0,
                    p50_ms,
                    p90_ms: p50_ms,
                    p99_ms: p50_ms,
                    max_ms: p50_ms,
                    first_error: None,
                };
                workload.insert(("dynalite".into(), op.name().into(), 1), timing);
            }
        }
        let mut w = String::new();
        cost_section(&mut w, &workload, &dir.join("results.jsonl"));
        std::fs::remove_dir_all(&dir).unwrap();
        w
    }

    /// capacity.json as `shared/tests/capacity` writes it: reads of one
    /// read unit, writes of nine write units, 10 reads to each write.
    fn capacity_json() -> String {
        let ops: Vec<String> = CAPACITY_OPS
            .iter()
            .map(|(name, op)| {
                let (ops, read, write) = if op.is_create() {
                    (100, 0.0, 9.0)
                } else {
                    (500, 1.0, 0.0)
                };
                format!(
                    r#"{{"op":"{name}","ops":{ops},"calls_per_op":1.0,"read_units_per_op":{read},"write_units_per_op":{write}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"operations":[{}],"size":{{"models":1000,"versions":10000,"seconds":2,"stored_bytes":30000000}}}}"#,
            ops.join(",")
        )
    }

    #[test]
    fn the_cost_section_prices_every_operation_and_the_mix() {
        let w = cost(Some(&capacity_json()), Some(11.2));
        assert!(
            w.starts_with("## Cost per operation (AWS on-demand)"),
            "{w}"
        );
        assert!(
            w.contains("Price list: AWS us-east-1 on-demand list prices as of"),
            "{w}"
        );
        assert!(w.contains("check before budgeting"), "{w}");
        // 1 read unit: $0.125; 12 billed ms at 256 MB: 0.003 GB-s, $0.05 +
        // $0.20; API Gateway $1.00.
        assert!(
            w.contains(
                "| get by id | 1.00 | 0.00 | $0.125 | 12 | 0.00300 | $0.25 | $1.00 | $1.375 |"
            ),
            "{w}"
        );
        // 9 write units: $5.625.
        assert!(
            w.contains(
                "| create version | 0.00 | 9.00 | $5.625 | 12 | 0.00300 | $0.25 | $1.00 | $6.875 |"
            ),
            "{w}"
        );
        // The mix: 2,000 reads at $1.375 and 200 creates at $6.875.
        let mix = (2000.0 * 1.375 + 200.0 * 6.875) / 2200.0;
        assert!(w.contains(&format!("{} per million", usd(mix))), "{w}");
        assert!(w.contains("| 100 million | 38.1/s |"), "{w}");
        assert!(
            w.contains(&format!(
                "| 0 | 0/s | storage only | – | {} | – |",
                usd(22.990_025)
            )),
            "{w}"
        );
        assert!(
            w.contains(&format!("| 10 million | 3.8/s | {} |", usd(mix * 10.0))),
            "{w}"
        );
        assert!(w.contains("held 0.03 GB"), "{w}");
        assert!(
            w.contains("| Lambda requests | $0.20 per million requests |"),
            "{w}"
        );
    }

    #[test]
    fn the_cost_section_says_what_it_lacks() {
        let w = cost(None, Some(5.0));
        assert!(
            w.contains("Not run: the capacity model did not write bench/out/capacity.json."),
            "{w}"
        );
        assert!(!w.contains("| get by id |"), "{w}");

        let w = cost(Some("{not json"), Some(5.0));
        assert!(w.contains("could not be read"), "{w}");

        // Units without durations: the rows, but no totals and no comparison.
        let w = cost(Some(&capacity_json()), None);
        assert!(
            w.contains("| get by id | 1.00 | 0.00 | $0.125 | – | – | – | $1.00 | – |"),
            "{w}"
        );
        assert!(
            w.contains("Needs every operation's units and duration"),
            "{w}"
        );
        assert!(!w.contains("| 1 million |"), "{w}");
    }

    #[test]
    fn the_capacity_section_is_included_with_its_verdict_as_a_target() {
        let missed =
            "## Capacity (DynamoDB partition model)\n\n**9 limits exceeded.**\n\n- `MV` ...\n";
        let (w, targets) = capacity(Some(missed));
        assert!(
            w.starts_with("## Capacity (DynamoDB partition model)"),
            "{w}"
        );
        assert_eq!(targets.len(), 1);
        assert!(!targets[0].met);
        assert_eq!(targets[0].measured, "9 limits exceeded");

        let met = "## Capacity (DynamoDB partition model)\n\n**Within the limits.**\n";
        let (_, targets) = capacity(Some(met));
        assert!(targets[0].met);

        let unfinished =
            "## Capacity (DynamoDB partition model)\n\nThe simulation did not finish.\n";
        let (_, targets) = capacity(Some(unfinished));
        assert!(!targets[0].met, "no verdict is no pass");

        let (w, targets) = capacity(None);
        assert!(
            w.is_empty() && targets.is_empty(),
            "no section without a run"
        );
    }
}
