//! The capacity model of issue 13: the registry's own code on the embedded
//! store, every table call billed as DynamoDB on-demand bills it
//! ([`billing`]), under a skewed workload at the benchmark's mix
//! ([`workload`]); the test asserts that no partition key takes more than
//! one partition serves and no item collection with local indexes outgrows
//! its limit ([`report`]).
//!
//! ```text
//! cargo test -p registry --test capacity                    # the billing rules, and the simulation:
//!                                                           # 1,000 models, 10,000 versions, one second
//! CAPACITY_FULL=1 cargo test --release -p registry --test capacity -- --nocapture
//!                                                           # 100,000 models, 1,000,000 versions
//! ```
//!
//! `CAPACITY_REPORT=PATH` also writes the report (a Markdown section) to
//! PATH (relative to `shared/`, where cargo runs the test), and the units
//! per operation as JSON beside it (PATH with the extension `.json`: the
//! bench report's cost section reads it);
//! `CAPACITY_MODELS`, `CAPACITY_VERSIONS`, `CAPACITY_SECONDS` override the
//! size.

mod billing;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry::domain::registry::{Registry, RegistryConfig};
use registry::store::embedded::EmbeddedTable;

use billing::Billing;
use registry::store::port::ReadOnly;
use report::{Report, Setting};
use workload::{FULL_MODELS, FULL_VERSIONS, Op, Registries, Size, ZIPF_S};

/// What infra/ sets on the reading functions (`MR_LIST_CACHE_MS=1000`).
const LIST_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// Run a simulation of `size` on a fresh embedded store and read the bill.
async fn run(size: &Size) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = EmbeddedTable::open(dir.path()).expect("open the embedded store");
    let billing = Billing::new(Arc::new(table));
    let registry = Registries {
        reads: Registry::new(
            Arc::new(ReadOnly(billing.clone())),
            RegistryConfig {
                list_cache: LIST_CACHE,
                ..RegistryConfig::default()
            },
        ),
        writes: Registry::new(billing.clone(), RegistryConfig::default()),
    };
    let outcome = workload::simulate(registry, billing.clone(), size).await;
    let setting = Setting {
        models: size.models,
        versions: size.versions,
        seconds: size.seconds,
        reads_per_second: size.reads_per_second,
        writes_per_second: size.writes_per_second,
        zipf_s: ZIPF_S,
        tasks: size.tasks,
        extrapolation: size.extrapolation(),
        full_models: FULL_MODELS,
        full_versions: FULL_VERSIONS,
        seed_secs: outcome.seed_secs,
        run_secs: outcome.run_secs,
        errors: outcome.errors.clone(),
        op_order: Op::ALL.iter().map(|op| op.label()).collect(),
    };
    Report::new(&billing.ledger_snapshot(), &outcome.seeded, setting)
}

/// Print the report, and write it where `CAPACITY_REPORT` says.
fn publish(report: &Report) -> String {
    let text = report.markdown();
    println!("{text}");
    if let Ok(path) = std::env::var("CAPACITY_REPORT")
        && !path.is_empty()
    {
        let json = write_files(report, Path::new(&path));
        eprintln!("capacity report: {path}, {}", json.display());
    }
    text
}

/// Write the Markdown section to `markdown` and the units per operation as
/// JSON beside it (the same path with the extension `.json`); returns the
/// JSON's path.
fn write_files(report: &Report, markdown: &Path) -> PathBuf {
    let write = |path: &Path, text: String| {
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("CAPACITY_REPORT: {}: {e}", path.display()));
    };
    write(markdown, report.markdown());
    let json = markdown.with_extension("json");
    let text = serde_json::to_string_pretty(&report.json()).expect("the report as JSON");
    write(&json, text + "\n");
    json
}

/// Issue 13: at 20,000 reads/s and 2,000 writes/s of the benchmark's mix,
/// Zipf-skewed, no partition key takes more than one partition serves, and
/// no item collection with local index entries would pass 1 GB at 100,000
/// models and 1,000,000 versions.
#[tokio::test(flavor = "multi_thread")]
async fn no_key_exceeds_a_partition_under_the_benchmark_mix() {
    let report = run(&Size::from_env()).await;
    publish(&report);
    assert!(
        report.setting.errors.is_empty(),
        "operations failed: {:?}",
        report.setting.errors
    );
    let violations: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(
        violations.is_empty(),
        "{} limits exceeded, for example:\n{}",
        violations.len(),
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The billing runs end to end on a tiny simulation: every operation kind
/// ran without error and was billed, every simulated second has a busiest
/// key, the entities' collections are counted, and the report renders.
#[tokio::test(flavor = "multi_thread")]
async fn every_operation_is_billed_end_to_end() {
    let size = Size::tiny();
    let report = run(&size).await;
    let text = report.markdown();
    assert!(
        report.setting.errors.is_empty(),
        "operations failed: {:?}",
        report.setting.errors
    );
    for kind in Op::ALL {
        let (op, o) = report
            .operations
            .iter()
            .find(|(op, _)| *op == kind.label())
            .unwrap_or_else(|| panic!("{kind:?} missing from {:?}", report.operations));
        assert!(o.ops > 0, "{op}: {o:?}");
        assert!(
            kind == Op::FilteredSearch || o.calls >= o.ops,
            "{op}: {o:?}"
        );
        if matches!(kind, Op::CreateModel | Op::CreateVersion) {
            // The entity and its name claim at least.
            assert!(o.units.write >= 2.0 * o.ops as f64, "{op}: {o:?}");
        } else if kind == Op::FilteredSearch {
            // Pages of the global list are kept for a second by the readers.
            assert!(o.calls >= 1 && o.units.read > 0.0, "{op}: {o:?}");
            assert_eq!(o.units.write, 0.0, "{op} writes nothing: {o:?}");
        } else {
            assert!(o.units.read >= o.ops as f64, "{op}: {o:?}");
            assert_eq!(o.units.write, 0.0, "{op} writes nothing: {o:?}");
        }
    }
    let seeded = (size.models + size.versions) as u64;
    assert_eq!(report.seed.ops, seeded);
    assert!(
        report.seed.units.write >= 2.0 * seeded as f64,
        "{:?}",
        report.seed
    );
    assert_eq!(report.seconds.len(), size.seconds as usize);
    for m in &report.seconds {
        assert!(m.read.1 >= 1.0 && m.write.1 >= 1.0, "{m:?}");
        assert!(m.total.read >= size.reads_per_second as f64, "{m:?}");
    }
    // Every entity and its name claim are stored items.
    let created = seeded as usize + size.seconds as usize * size.writes_per_second;
    assert!(
        report.stored.items >= 2 * created as i64,
        "{:?} stored for {created} entities",
        report.stored
    );
    for heading in [
        "## Capacity (DynamoDB partition model)",
        "### Hottest keys",
        "### Largest item collections",
        "### Units per operation",
        "| get version by id |",
        "| create model |",
    ] {
        assert!(text.contains(heading), "{heading} missing from:\n{text}");
    }
}

/// `CAPACITY_REPORT=PATH.md` also leaves PATH.json, which parses and holds
/// every operation's units per operation as the Markdown table shows them
/// (the bench report's cost section is built from it).
#[tokio::test(flavor = "multi_thread")]
async fn the_units_per_operation_are_written_as_json_beside_the_markdown() {
    let size = Size::tiny();
    let report = run(&size).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let markdown = dir.path().join("capacity.md");
    let json = write_files(&report, &markdown);
    assert_eq!(json, dir.path().join("capacity.json"));
    assert_eq!(
        std::fs::read_to_string(&markdown).expect("the Markdown"),
        report.markdown()
    );
    let text = std::fs::read_to_string(&json).expect("the JSON");
    let value: serde_json::Value = serde_json::from_str(&text).expect("the JSON parses");
    let operations = value["operations"]
        .as_array()
        .expect("operations: an array");
    let labels: Vec<&str> = operations
        .iter()
        .map(|o| o["op"].as_str().expect("op: a string"))
        .collect();
    assert_eq!(labels, Op::ALL.map(|op| op.label()).to_vec(), "{text}");
    for (o, (op, billed)) in operations.iter().zip(&report.operations) {
        let ops = billed.ops as f64;
        assert_eq!(o["ops"].as_u64(), Some(billed.ops), "{op}: {o}");
        assert!(billed.ops > 0, "{op}: {o}");
        for (field, total) in [
            ("calls_per_op", billed.calls as f64),
            ("read_units_per_op", billed.units.read),
            ("write_units_per_op", billed.units.write),
        ] {
            let v = o[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{op}: {field} in {o}"));
            assert!((v - total / ops).abs() < 1e-9, "{op}: {field} {v} in {o}");
        }
    }
    assert_eq!(value["size"]["models"].as_u64(), Some(size.models as u64));
    assert_eq!(
        value["size"]["versions"].as_u64(),
        Some(size.versions as u64)
    );
    assert!(
        value["size"]["stored_bytes"].as_i64().unwrap_or(0) > 0,
        "{text}"
    );
}
