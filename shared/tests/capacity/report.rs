//! What a simulation found, read from the bill: per-second maxima, the
//! hottest keys, the largest item collections, the units of each
//! operation, the limits exceeded; rendered as a Markdown section (the
//! bench report includes it as it is), and the units per operation as JSON
//! (the bench report's cost section reads them).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::billing::{Collection, Ledger, Operations, Units};

/// What one partition serves per second (DynamoDB's documented limits).
pub const PARTITION_READ_UNITS: f64 = 3000.0;
pub const PARTITION_WRITE_UNITS: f64 = 1000.0;
/// The largest item collection allowed here (DynamoDB's own limit is 10 GB,
/// beyond which the partition key takes no more writes).
pub const MAX_COLLECTION_BYTES: f64 = 1e9;
/// Rows of the hottest keys table.
const HOTTEST: usize = 10;
/// Rows of the largest collections table.
const LARGEST: usize = 5;

/// The busiest key of one second, for reads and for writes.
#[derive(Debug, Clone)]
pub struct SecondMax {
    pub second: u32,
    pub read: (String, f64),
    pub write: (String, f64),
    pub total: Units,
    pub keys: usize,
}

/// One key's busiest second, for reads and for writes.
#[derive(Debug, Clone)]
pub struct KeyPeak {
    pub key: String,
    pub read: f64,
    pub write: f64,
}

impl KeyPeak {
    /// The share of one partition's capacity it takes at its peak.
    pub fn share(&self) -> f64 {
        (self.read / PARTITION_READ_UNITS).max(self.write / PARTITION_WRITE_UNITS)
    }
}

/// A limit exceeded.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    Reads {
        key: String,
        second: u32,
        units: f64,
    },
    Writes {
        key: String,
        second: u32,
        units: f64,
    },
    Collection {
        pk: String,
        extrapolated: f64,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Reads {
                key,
                second,
                units: n,
            } => write!(
                f,
                "`{key}` took {} read units in second {second} (limit {})",
                units(*n),
                units(PARTITION_READ_UNITS)
            ),
            Violation::Writes {
                key,
                second,
                units: n,
            } => write!(
                f,
                "`{key}` took {} write units in second {second} (limit {})",
                units(*n),
                units(PARTITION_WRITE_UNITS)
            ),
            Violation::Collection { pk, extrapolated } => write!(
                f,
                "item collection `{pk}` would hold {} at full size (limit {})",
                bytes(*extrapolated),
                bytes(MAX_COLLECTION_BYTES)
            ),
        }
    }
}

/// How the simulation was run, for the report's first lines.
#[derive(Debug, Clone)]
pub struct Setting {
    pub models: usize,
    pub versions: usize,
    pub seconds: u32,
    pub reads_per_second: usize,
    pub writes_per_second: usize,
    pub zipf_s: f64,
    pub tasks: usize,
    /// Collections are multiplied by this to stand for the full size.
    pub extrapolation: f64,
    pub full_models: usize,
    pub full_versions: usize,
    pub seed_secs: f64,
    pub run_secs: f64,
    /// Operations that returned an error, by kind.
    pub errors: Vec<(&'static str, u64)>,
    /// The operation kinds, in table order.
    pub op_order: Vec<&'static str>,
}

/// The findings.
#[derive(Debug, Clone)]
pub struct Report {
    pub setting: Setting,
    pub seconds: Vec<SecondMax>,
    /// Every key's peak, hottest (largest share of a partition) first.
    pub peaks: Vec<KeyPeak>,
    /// Collections with local index entries, largest first, with their
    /// size extrapolated to the full registry.
    pub collections: Vec<(String, Collection, f64)>,
    pub operations: Vec<(&'static str, Operations)>,
    pub seed: Operations,
    /// Every item collection together (the whole table).
    pub stored: Collection,
    pub violations: Vec<Violation>,
}

impl Report {
    /// Read `ledger`; `seeded` holds the collections as seeding left them
    /// (what the extrapolation multiplies: the simulated seconds add the
    /// same at any size).
    pub fn new(ledger: &Ledger, seeded: &HashMap<String, Collection>, setting: Setting) -> Report {
        let mut seconds = Vec::new();
        let mut peaks: HashMap<&str, KeyPeak> = HashMap::new();
        let mut violations = Vec::new();
        for (&second, keys) in &ledger.seconds {
            let mut max = SecondMax {
                second,
                read: (String::new(), 0.0),
                write: (String::new(), 0.0),
                total: Units::default(),
                keys: keys.len(),
            };
            let mut sorted: Vec<(&String, &Units)> = keys.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            for (key, units) in sorted {
                max.total += *units;
                if units.read > max.read.1 {
                    max.read = (key.clone(), units.read);
                }
                if units.write > max.write.1 {
                    max.write = (key.clone(), units.write);
                }
                let peak = peaks.entry(key).or_insert_with(|| KeyPeak {
                    key: key.clone(),
                    read: 0.0,
                    write: 0.0,
                });
                peak.read = peak.read.max(units.read);
                peak.write = peak.write.max(units.write);
                if units.read > PARTITION_READ_UNITS {
                    violations.push(Violation::Reads {
                        key: key.clone(),
                        second,
                        units: units.read,
                    });
                }
                if units.write > PARTITION_WRITE_UNITS {
                    violations.push(Violation::Writes {
                        key: key.clone(),
                        second,
                        units: units.write,
                    });
                }
            }
            seconds.push(max);
        }
        let mut peaks: Vec<KeyPeak> = peaks.into_values().collect();
        peaks.sort_by(|a, b| b.share().total_cmp(&a.share()).then(a.key.cmp(&b.key)));
        let mut collections: Vec<(String, Collection, f64)> = ledger
            .collections
            .iter()
            .filter(|(_, c)| c.local_entries > 0)
            .map(|(pk, c)| {
                let at_seed = seeded.get(pk).map_or(0, |s| s.bytes) as f64;
                let extrapolated = at_seed * setting.extrapolation + (c.bytes as f64 - at_seed);
                (pk.clone(), *c, extrapolated)
            })
            .collect();
        collections.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        for (pk, _, extrapolated) in &collections {
            let extrapolated = *extrapolated;
            if extrapolated > MAX_COLLECTION_BYTES {
                violations.push(Violation::Collection {
                    pk: pk.clone(),
                    extrapolated,
                });
            }
        }
        let mut operations: Vec<(&'static str, Operations)> = setting
            .op_order
            .iter()
            .map(|op| (*op, ledger.operations.get(op).copied().unwrap_or_default()))
            .collect();
        for (op, o) in &ledger.operations {
            if !setting.op_order.contains(op) {
                operations.push((op, *o));
            }
        }
        let mut stored = Collection::default();
        for c in ledger.collections.values() {
            stored.bytes += c.bytes;
            stored.items += c.items;
            stored.local_entries += c.local_entries;
        }
        Report {
            stored,
            setting,
            seconds,
            peaks,
            collections,
            operations,
            seed: ledger.seed,
            violations,
        }
    }

    /// The section, in Markdown.
    pub fn markdown(&self) -> String {
        let s = &self.setting;
        let mut w = String::new();
        let _ = writeln!(w, "## Capacity (DynamoDB partition model)\n");
        let _ = writeln!(
            w,
            "The registry's own code (`Registry` over the embedded store) under a bill of every \
             table call as DynamoDB on-demand charges it (shared/tests/capacity: read units per \
             4 KiB, half for the eventually consistent global indexes; write units per KiB for \
             the item and for each of its index entries, failed conditions included), to the \
             partition key that serves it and the simulated second it happens in. \
             Seeded through `Registry::create` ({} tasks, not billed against the limits): \
             {} models and {} versions (one per model, the rest to Zipf-popular models, \
             s = {}). Then {} simulated second{} of {} reads/s (get version by id, find model \
             by name, list a model's versions (page 20), filtered search `stage='prod'` over \
             all versions (page 10), a quarter each; models Zipf-popular, s = {}, a version \
             uniformly among the model's) and {} writes/s (create version under a Zipf-popular \
             model, create model; half each), {} tasks at a time. Wall time: seeding {:.1} s, \
             simulated seconds {:.1} s.\n",
            s.tasks,
            thousands(s.models as f64),
            thousands(s.versions as f64),
            s.zipf_s,
            s.seconds,
            if s.seconds == 1 { "" } else { "s" },
            thousands(s.reads_per_second as f64),
            s.zipf_s,
            thousands(s.writes_per_second as f64),
            s.tasks,
            s.seed_secs,
            s.run_secs,
        );
        let _ = writeln!(
            w,
            "Limits: {} read units and {} write units per partition key per second; an item \
             collection with local index entries at most {}{}.\n",
            thousands(PARTITION_READ_UNITS),
            thousands(PARTITION_WRITE_UNITS),
            bytes(MAX_COLLECTION_BYTES),
            if s.extrapolation > 1.0 {
                format!(
                    " at the full size ({} models, {} versions): collection sizes here are \
                     extrapolated linearly, × {}",
                    thousands(s.full_models as f64),
                    thousands(s.full_versions as f64),
                    units(s.extrapolation)
                )
            } else {
                String::new()
            }
        );
        // The verdict line: the bench report makes it a target (bench/loadgen/src/report.rs).
        let n = self.violations.len();
        if n == 0 {
            let _ = writeln!(w, "**Within the limits.**\n");
        } else {
            let _ = writeln!(
                w,
                "**{n} limit{} exceeded.**\n",
                if n == 1 { "" } else { "s" }
            );
            if n > HOTTEST {
                let _ = writeln!(w, "The first {HOTTEST}:\n");
            }
            for v in self.violations.iter().take(HOTTEST) {
                let _ = writeln!(w, "- {v}");
            }
            let _ = writeln!(w);
        }
        let failed: u64 = s.errors.iter().map(|(_, n)| n).sum();
        if failed > 0 {
            let list: Vec<String> = s
                .errors
                .iter()
                .map(|(op, n)| format!("{op}: {n}"))
                .collect();
            let _ = writeln!(w, "Operations that failed: {}.\n", list.join(", "));
        }

        let _ = writeln!(w, "### Busiest key of each simulated second\n");
        let _ = writeln!(
            w,
            "| second | keys | read units (all keys) | max read units | on key | write units (all keys) | max write units | on key |"
        );
        let _ = writeln!(w, "|---:|---:|---:|---:|---|---:|---:|---|");
        for m in &self.seconds {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | `{}` | {} | {} | `{}` |",
                m.second,
                thousands(m.keys as f64),
                units(m.total.read),
                units(m.read.1),
                m.read.0,
                units(m.total.write),
                units(m.write.1),
                m.write.0,
            );
        }
        let _ = writeln!(w);

        let _ = writeln!(w, "### Hottest keys\n");
        let _ = writeln!(
            w,
            "Peak units of a key in any simulated second, and the share of one partition's \
             capacity that takes (the larger of reads ÷ {} and writes ÷ {}).\n",
            thousands(PARTITION_READ_UNITS),
            thousands(PARTITION_WRITE_UNITS)
        );
        let _ = writeln!(
            w,
            "| key | read units/s | write units/s | share of a partition |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|");
        for p in self.peaks.iter().take(HOTTEST) {
            let _ = writeln!(
                w,
                "| `{}` | {} | {} | {:.0}% |",
                p.key,
                units(p.read),
                units(p.write),
                p.share() * 100.0
            );
        }
        let _ = writeln!(w);

        let _ = writeln!(w, "### Largest item collections with local index entries\n");
        let _ = writeln!(
            w,
            "| partition key | items | local index entries | bytes (items + entries) | at full size |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|");
        for (pk, c, extrapolated) in self.collections.iter().take(LARGEST) {
            let _ = writeln!(
                w,
                "| `{pk}` | {} | {} | {} | {} |",
                thousands(c.items as f64),
                thousands(c.local_entries as f64),
                bytes(c.bytes as f64),
                bytes(*extrapolated),
            );
        }
        let _ = writeln!(
            w,
            "\n{} partition keys hold local index entries; the whole table: {} items, {} with \
             their local index entries.{}\n",
            thousands(self.collections.len() as f64),
            thousands(self.stored.items as f64),
            bytes(self.stored.bytes as f64),
            if s.extrapolation > 1.0 {
                " \"At full size\": what seeding stored × the extrapolation, plus what the \
                 simulated seconds added."
            } else {
                ""
            }
        );

        let _ = writeln!(w, "### Units per operation\n");
        let _ = writeln!(
            w,
            "Averages over the simulated seconds; table calls per operation for comparison with \
             the pinned call counts.\n"
        );
        let _ = writeln!(
            w,
            "| operation | ops | table calls/op | read units/op | write units/op |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|");
        let row = |w: &mut String, name: &str, o: &Operations| {
            let per = |v: f64| if o.ops == 0 { 0.0 } else { v / o.ops as f64 };
            let _ = writeln!(
                w,
                "| {name} | {} | {:.2} | {:.2} | {:.2} |",
                thousands(o.ops as f64),
                per(o.calls as f64),
                per(o.units.read),
                per(o.units.write),
            );
        };
        for (op, o) in &self.operations {
            row(&mut w, op, o);
        }
        row(&mut w, "seeding (creates; not in the limits)", &self.seed);
        let _ = writeln!(w);
        w
    }
}

impl Report {
    /// The units per operation and the simulation's size, as JSON: what
    /// the bench report's cost section reads (`capacity.json`, beside the
    /// Markdown). Per-operation figures are averages over the simulated
    /// seconds, as in the Markdown table; seeding is left out (it is not
    /// part of the workload's mix).
    pub fn json(&self) -> serde_json::Value {
        let per = |o: &Operations, v: f64| if o.ops == 0 { 0.0 } else { v / o.ops as f64 };
        let operations: Vec<serde_json::Value> = self
            .operations
            .iter()
            .map(|(op, o)| {
                serde_json::json!({
                    "op": op,
                    "ops": o.ops,
                    "calls_per_op": per(o, o.calls as f64),
                    "read_units_per_op": per(o, o.units.read),
                    "write_units_per_op": per(o, o.units.write),
                })
            })
            .collect();
        let s = &self.setting;
        serde_json::json!({
            "operations": operations,
            "size": {
                "models": s.models,
                "versions": s.versions,
                "seconds": s.seconds,
                "reads_per_second": s.reads_per_second,
                "writes_per_second": s.writes_per_second,
                "full_models": s.full_models,
                "full_versions": s.full_versions,
                // The whole table after the run: items and their local
                // index entries, at the simulated size (not extrapolated).
                "stored_items": self.stored.items,
                "stored_bytes": self.stored.bytes,
            },
        })
    }
}

/// 12,345 (no decimals) or 1,234.5.
fn thousands(v: f64) -> String {
    let text = if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    let (whole, frac) = text.split_at(text.find('.').unwrap_or(text.len()));
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out + frac
}

fn units(v: f64) -> String {
    thousands((v * 10.0).round() / 10.0)
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = v;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_easily() {
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(units(1500.5), "1,500.5");
        assert_eq!(bytes(1e9), "1.0 GB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(2_345_678.0), "2.3 MB");
    }
}
