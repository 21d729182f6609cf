//! Table 3: cold start of each function binary, from exec to the first 200
//! on `/readyz/health`, its size, and its resident memory idle and after a
//! short load of the operations it serves.
//!
//! All binaries start on one embedded-store data directory that a first
//! server (`--fixture-bin`) fills with the workload fixture, so a binary that
//! serves reads has something to read.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::apis::{Api, Flavor};
use crate::load::{self, send};
use crate::results::{self, Record};
use crate::workload::{self, Fixture, Op};

pub struct ColdStartArgs {
    pub bins: Vec<PathBuf>,
    /// An all-slices server that creates the fixture in `data_dir` first.
    pub fixture_bin: PathBuf,
    pub data_dir: PathBuf,
    /// Timed starts per binary (after one untimed start).
    pub starts: usize,
    /// Requests per served operation in the post-load run (concurrency 8).
    pub load_requests: u64,
    pub out: PathBuf,
}

/// How long a binary may take to answer its first health check.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// What a binary needs beyond the store to start: the events function
/// refuses to start without a sink. Nothing listens on port 9 (discard),
/// and start-up never calls the sink.
const START_ENV: &[(&str, &str, &str)] = &[("events", "MR_EVENTS_SINK", "http://127.0.0.1:9/")];

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// One `GET /readyz/health` on a fresh connection: true on a 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = b"GET /readyz/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// A started server, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Exec `bin` and wait for its first 200; the time from exec to that 200.
    fn start(bin: &Path, data_dir: &Path) -> Result<(Server, Duration), String> {
        let port = free_port()?;
        let t0 = Instant::now();
        let name = bin.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let child = Command::new(bin)
            .env("PORT", port.to_string())
            .env("MR_DATA_DIR", data_dir)
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .envs(
                START_ENV
                    .iter()
                    .filter(|(binary, _, _)| *binary == name)
                    .map(|(_, key, value)| (key, value)),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut server = Server { child, port };
        loop {
            if healthy(port) {
                return Ok((server, t0.elapsed()));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before answering",
                    bin.display()
                ));
            }
            if t0.elapsed() > START_DEADLINE {
                return Err(format!(
                    "{} did not answer /readyz/health within {START_DEADLINE:?}",
                    bin.display()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn api(&self) -> Api {
        Api {
            flavor: Flavor::Ours,
            base: format!("http://127.0.0.1:{}", self.port),
            authorization: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(rt: &tokio::runtime::Runtime, args: ColdStartArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir).map_err(|e| e.to_string())?;
    let fixture = {
        let (server, _) = Server::start(&args.fixture_bin, &args.data_dir)?;
        let api = server.api();
        rt.block_on(async { workload::setup(&api, &load::client(1), "cs").await })?
    };
    for bin in &args.bins {
        let record = measure_binary(rt, &args, bin, &fixture);
        if let Record::ColdStart {
            binary,
            median_ms,
            p90_ms,
            idle_rss_kb,
            post_load_rss_kb,
            error,
            ..
        } = &record
        {
            eprintln!(
                "  {binary:<20} median {median_ms:.1} ms  p90 {p90_ms:.1} ms  idle {idle_rss_kb} kB  post-load {post_load_rss_kb} kB{}",
                error
                    .as_deref()
                    .map(|e| format!("  ERROR {e}"))
                    .unwrap_or_default()
            );
        }
        results::append(&args.out, &record)?;
    }
    Ok(())
}

fn measure_binary(
    rt: &tokio::runtime::Runtime,
    args: &ColdStartArgs,
    bin: &Path,
    fixture: &Fixture,
) -> Record {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size_bytes = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let mut times = Vec::new();
    let mut idle = Vec::new();
    let mut error = None;
    // One untimed start: page cache and the data directory, as on a warm node.
    if let Err(e) = Server::start(bin, &args.data_dir) {
        error = Some(e);
    }
    for _ in 0..args.starts {
        if error.is_some() {
            break;
        }
        match Server::start(bin, &args.data_dir) {
            Ok((server, elapsed)) => {
                times.push(elapsed.as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_millis(100));
                idle.push(results::rss_kb(server.pid()));
            }
            Err(e) => error = Some(e),
        }
    }
    let failed_starts = args.starts - times.len();
    let mut load_ops = Vec::new();
    let mut post_load_rss_kb = 0;
    if error.is_none() {
        match post_load(rt, bin, &args.data_dir, fixture, args.load_requests, &name) {
            Ok((ops, rss)) => {
                load_ops = ops;
                post_load_rss_kb = rss;
            }
            Err(e) => error = Some(e),
        }
    }
    times.sort_by(f64::total_cmp);
    idle.sort_unstable();
    Record::ColdStart {
        binary: name,
        size_bytes,
        starts: times.len(),
        failed_starts,
        median_ms: quantile(&times, 0.5),
        p90_ms: quantile(&times, 0.9),
        min_ms: times.first().copied().unwrap_or(0.0),
        max_ms: times.last().copied().unwrap_or(0.0),
        idle_rss_kb: idle.get(idle.len() / 2).copied().unwrap_or(0),
        post_load_rss_kb,
        load_ops,
        error,
    }
}

/// Start `bin`, run `requests` of each workload operation it serves (those
/// whose probe answers 2xx) at concurrency 8, and read its resident memory.
fn post_load(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    data_dir: &Path,
    fixture: &Fixture,
    requests: u64,
    name: &str,
) -> Result<(Vec<String>, u64), String> {
    let (server, _) = Server::start(bin, data_dir)?;
    let api = server.api();
    let served = rt.block_on(async {
        let client = load::client(8);
        let mut served = Vec::new();
        for op in Op::ALL {
            let make = workload::make_call(&api, fixture, op, &fixture.base, &format!("pl-{name}"));
            // The probe uses a sequence number the load below never reaches.
            if send(&client, &make(u64::MAX)).await.is_err() {
                continue;
            }
            load::run(&client, &make, 0, requests, 8).await;
            served.push(op.name().to_string());
        }
        served
    });
    Ok((served, results::rss_kb(server.pid())))
}
