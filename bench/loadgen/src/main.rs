//! `registry-bench`: the measuring half of `make bench` (bench/run.sh starts
//! and stops the servers, this binary loads them and writes the report).
//!
//! ```text
//! registry-bench workload  --api ours|mlflow --url URL --system NAME --out FILE
//!                          [--concurrency 1,8,32] [--reads N] [--creates N] [--warmup N] [--pid PID] [--prefix P]
//!                          [--ops 'get by id,...'] [--connections keepalive|fresh] [--bearer TOKEN]
//!                          [--before-measure SH] [--after-measure SH]
//! registry-bench scale     --api ours|mlflow --url URL --system NAME --out FILE
//!                          [--versions N] [--seed-concurrency C] [--page-size N]
//!                          [--deep-offset N] [--requests N] [--warmup N] [--connections keepalive|fresh]
//! registry-bench coldstart --fixture-bin PATH --bin PATH... --data-dir DIR --out FILE
//!                          [--starts N] [--load-requests N]
//! registry-bench upload-latency --url URL --system NAME --out FILE
//!                          [--uploads N] [--bytes N] [--warmup N]
//! registry-bench health-under-attack --url URL --system NAME --out FILE
//!                          [--seconds 20] [--description-chars 150000] [--bearer TOKEN]
//! registry-bench report    --results FILE --meta FILE --out FILE [--notes FILE] [--profile FILE]
//! ```
//!
//! `--bearer TOKEN` (API `ours` only) is sent as `Authorization: Bearer
//! TOKEN` with every request, for a registry with `MR_AUTH=jwt`.

mod apis;
mod coldstart;
mod cost;
mod health_attack;
mod load;
mod report;
mod results;
mod scale;
mod upload;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use apis::{Api, Flavor};

/// `--key value` pairs after the subcommand (a key may repeat).
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --flag, got '{key}'"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            pairs.push((key.to_string(), value.clone()));
        }
        Ok(Flags(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn required(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("--{key} is required"))
    }

    fn path(&self, key: &str) -> Result<PathBuf, String> {
        self.required(key).map(PathBuf::from)
    }

    fn num<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: '{v}' is not a number")),
        }
    }

    fn connections(&self) -> Result<load::Connections, String> {
        load::Connections::parse(self.get("connections").unwrap_or("keepalive"))
    }

    fn api(&self) -> Result<Api, String> {
        self.api_of(Flavor::parse(self.required("api")?)?)
    }

    /// `--url` and `--bearer` for a server that speaks `flavor`.
    fn api_of(&self, flavor: Flavor) -> Result<Api, String> {
        Ok(Api {
            flavor,
            base: self.required("url")?.trim_end_matches('/').to_string(),
            authorization: Api::bearer(flavor, self.get("bearer"))?,
        })
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!(
            "usage: registry-bench workload|scale|coldstart|upload-latency|health-under-attack|report --flag value ..."
        );
        return ExitCode::from(2);
    };
    match Flags::parse(rest).and_then(|flags| dispatch(command, &flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-bench {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: &str, f: &Flags) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    match command {
        "workload" => {
            let concurrencies = f
                .get("concurrency")
                .unwrap_or("1,8,32")
                .split(',')
                .map(|c| {
                    c.trim()
                        .parse()
                        .map_err(|_| format!("--concurrency: '{c}' is not a number"))
                })
                .collect::<Result<Vec<usize>, String>>()?;
            rt.block_on(workload::run(workload::WorkloadArgs {
                api: f.api()?,
                system: f.required("system")?.to_string(),
                concurrencies,
                reads: f.num("reads", 2000)?,
                creates: f.num("creates", 1000)?,
                warmup: f.num("warmup", 200)?,
                out: f.path("out")?,
                prefix: f.get("prefix").unwrap_or("wl").to_string(),
                ops: match f.get("ops") {
                    Some(list) => list
                        .split(',')
                        .map(workload::Op::parse)
                        .collect::<Result<_, _>>()?,
                    None => Vec::new(),
                },
                connections: f.connections()?,
                before_measure: f.get("before-measure").map(str::to_string),
                after_measure: f.get("after-measure").map(str::to_string),
                pid: f
                    .get("pid")
                    .map(|p| p.parse())
                    .transpose()
                    .map_err(|_| "--pid")?,
            }))
        }
        "scale" => rt.block_on(scale::run(scale::ScaleArgs {
            api: f.api()?,
            system: f.required("system")?.to_string(),
            versions: f.num("versions", 10_000)?,
            seed_concurrency: f.num("seed-concurrency", 8)?,
            page_size: f.num("page-size", 100)?,
            deep_offset: f.num("deep-offset", 9_000)?,
            requests: f.num("requests", 200)?,
            warmup: f.num("warmup", 20)?,
            connections: f.connections()?,
            out: f.path("out")?,
        })),
        "coldstart" => coldstart::run(
            &rt,
            coldstart::ColdStartArgs {
                bins: f.all("bin").into_iter().map(PathBuf::from).collect(),
                fixture_bin: f.path("fixture-bin")?,
                data_dir: f.path("data-dir")?,
                starts: f.num("starts", 20)?,
                load_requests: f.num("load-requests", 1000)?,
                out: f.path("out")?,
            },
        ),
        "upload-latency" => rt.block_on(upload::run(upload::UploadArgs {
            base: f.required("url")?.trim_end_matches('/').to_string(),
            system: f.required("system")?.to_string(),
            uploads: f.num("uploads", 30)?,
            bytes: f.num("bytes", 256 * 1024)?,
            warmup: f.num("warmup", 3)?,
            out: f.path("out")?,
        })),
        "health-under-attack" => rt.block_on(health_attack::run(health_attack::HealthAttackArgs {
            api: f.api_of(Flavor::Ours)?,
            system: f.required("system")?.to_string(),
            seconds: f.num("seconds", 20)?,
            description_chars: f.num("description-chars", 150_000)?,
            out: f.path("out")?,
        })),
        "report" => report::write(report::ReportArgs {
            results: f.path("results")?,
            meta: f.path("meta")?,
            out: f.path("out")?,
            notes: f.get("notes").map(PathBuf::from),
            profile: f.get("profile").map(PathBuf::from),
        }),
        other => Err(format!("unknown command '{other}'")),
    }
}
