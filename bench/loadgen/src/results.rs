//! What the bench measures, one JSON object a line in `results.jsonl`, and
//! the process facts it reads from `/proc` (resident memory).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::load::Outcome;

/// Latency and throughput of one operation at one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub requests: u64,
    pub errors: u64,
    pub concurrency: usize,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Timing {
    /// `  ERRORS n: first error` for a progress line, or nothing.
    pub fn error_note(&self) -> String {
        match &self.first_error {
            Some(e) => format!("  ERRORS {}: {e}", self.errors),
            None => String::new(),
        }
    }

    pub fn of(o: &Outcome, concurrency: usize) -> Timing {
        Timing {
            requests: o.requests,
            errors: o.errors,
            concurrency,
            ops_per_s: o.ops_per_s(),
            p50_ms: o.quantile_ms(0.50),
            p90_ms: o.quantile_ms(0.90),
            p99_ms: o.quantile_ms(0.99),
            max_ms: o.latency_us.max() as f64 / 1000.0,
            first_error: o.first_error.clone(),
        }
    }
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// Table 1: an operation of the registry workload. Table 4 (ops
    /// `upload to visible (...)`, one upload per request) adds the size of
    /// the uploaded object.
    Workload {
        system: String,
        op: String,
        #[serde(flatten)]
        timing: Timing,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object_bytes: Option<u64>,
    },
    /// Resident memory of a system's server processes (kB, the whole process tree).
    Memory {
        system: String,
        idle_kb: u64,
        post_load_kb: u64,
    },
    /// Table 2: seeding one model with many versions.
    Seed {
        system: String,
        versions: u64,
        #[serde(flatten)]
        timing: Timing,
        seconds: f64,
    },
    /// Table 2: one list request in a model with `versions` versions.
    Scale {
        system: String,
        versions: u64,
        /// `first page`, `deep page`, `filtered page`.
        op: String,
        page_size: usize,
        /// Items before the page (the deep page's offset).
        offset: u64,
        #[serde(flatten)]
        timing: Timing,
    },
    /// Table 6: `/readyz/health` probed while clients send the worst `LIKE`
    /// filter (bench/loadgen/src/health_attack.rs).
    HealthUnderAttack {
        system: String,
        /// Models seeded with a description of `description_chars` `a`s
        /// (`description_chars_asked`, or the most the server stores).
        models: usize,
        description_chars: usize,
        description_chars_asked: usize,
        /// Length of the `LIKE` pattern, in characters.
        pattern_chars: usize,
        attack_clients: usize,
        /// How long the attack ran.
        seconds: f64,
        /// Probes of an idle server just before the attack, for comparison.
        idle_health: Timing,
        health: Timing,
        /// The filter queries: a request each.
        attack: Timing,
    },
    /// Table 3: start-up of one binary.
    ColdStart {
        binary: String,
        size_bytes: u64,
        starts: usize,
        failed_starts: usize,
        median_ms: f64,
        p90_ms: f64,
        min_ms: f64,
        max_ms: f64,
        idle_rss_kb: u64,
        post_load_rss_kb: u64,
        /// The operations of the post-load run that the binary serves.
        load_ops: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Append `record` to the JSON-lines file `path`.
pub fn append(path: &Path, record: &Record) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let line = serde_json::to_string(record).map_err(|e| e.to_string())?;
    writeln!(file, "{line}").map_err(|e| format!("{}: {e}", path.display()))
}

/// Every record of `path` (a missing file has none).
pub fn read_all(path: &Path) -> Result<Vec<Record>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}: {l}", path.display())))
        .collect()
}

/// VmRSS of one process, in kB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS of `pid` and all its descendants (MLflow serves from worker
/// processes under a supervisor), in kB.
pub fn tree_rss_kb(pid: u32) -> u64 {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((child, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.into_iter().map(rss_kb).sum()
}
