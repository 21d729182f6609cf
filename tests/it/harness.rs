//! Spawns the real `registry-local` binary on a free port and talks to it over HTTP.
//!
//! Environment knobs (all optional):
//! - `MR_BIN`: path of the server binary (default: `<workspace>/target/debug/registry-local`).
//! - `MR_TEST_ENV="K=V,K2=V2"`: extra environment applied to EVERY spawned server, to point
//!   the whole suite at another backend (for example `MR_STORE=dynamodb,...`). In values,
//!   `{unique}` is replaced by a token unique to the server (stable across `restart()`), and
//!   `{data_dir}` by its data directory, so a shared backend can still give each server its own
//!   namespace, e.g.
//!   `MR_TEST_ENV="MR_STORE=dynamodb,MR_TABLE=it-{unique},MR_CREATE_TABLE=true,AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000"`.
//!   Variables are applied in this order: `PORT`, `MR_DATA_DIR`, `MR_TEST_ENV`, then the
//!   test's own [`ServerOpts::env`] (later wins; do not override `PORT`).
//!
//! The tests assume every server they start begins with an EMPTY store.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::common::{Api, PREFIXES, V1, V1ALPHA3};

/// How long a server may take to answer `/readyz/health` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a server that exits before becoming ready is respawned on a new port
/// (covers the small race between picking a free port and the server binding it).
const SPAWN_ATTEMPTS: u32 = 3;

/// Options for [`Server::start_with`].
#[derive(Default, Debug, Clone)]
pub struct ServerOpts {
    /// Use this data directory instead of a fresh temporary one (the caller owns it).
    pub data_dir: Option<PathBuf>,
    /// Extra environment variables for this server (applied after `MR_TEST_ENV`).
    pub env: Vec<(String, String)>,
}

pub struct Server {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    unique: String,
    env: Vec<(String, String)>,
    starts: u32,
    client: reqwest::Client,
    logs: tempfile::TempDir,
    // Declared last so it is removed after the child was told to die.
    _data_tmp: Option<tempfile::TempDir>,
}

/// Path of the server binary under test.
pub fn server_bin() -> PathBuf {
    match std::env::var_os("MR_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/registry-local"),
    }
}

/// Parses `MR_TEST_ENV` ("K=V,K2=V2"), substituting `{unique}` and `{data_dir}`.
fn suite_env(unique: &str, data_dir: &Path) -> Vec<(String, String)> {
    let raw = std::env::var("MR_TEST_ENV").unwrap_or_default();
    parse_env_list(&raw)
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace("{unique}", unique)
                .replace("{data_dir}", &data_dir.to_string_lossy());
            (k, v)
        })
        .collect()
}

fn parse_env_list(raw: &str) -> Vec<(String, String)> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => panic!("MR_TEST_ENV entry {kv:?} is not K=V"),
        })
        .collect()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(128)
        .build()
        .expect("reqwest client")
}

enum NotReady {
    Exited(String),
    Timeout,
}

impl Server {
    /// A server on a fresh, empty temporary data directory.
    pub async fn start() -> Server {
        Self::start_with(ServerOpts::default()).await
    }

    pub async fn start_with(opts: ServerOpts) -> Server {
        let (data_dir, data_tmp) = match opts.data_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("mr-it-data-")
                    .tempdir()
                    .expect("create data tempdir");
                (t.path().to_path_buf(), Some(t))
            }
        };
        let unique: String = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".to_owned())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut env = suite_env(&unique, &data_dir);
        env.extend(opts.env);
        let logs = tempfile::Builder::new()
            .prefix("mr-it-logs-")
            .tempdir()
            .expect("create log tempdir");
        let mut s = Server {
            child: None,
            port: 0,
            data_dir,
            unique,
            env,
            starts: 0,
            client: http_client(),
            logs,
            _data_tmp: data_tmp,
        };
        s.spawn_until_ready().await;
        s
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join(format!("server-{}.log", self.starts))
    }

    /// stdout+stderr of the current (or last) server process.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn output_tail(&self) -> String {
        let out = self.output();
        let max = 8000;
        if out.len() <= max {
            return out;
        }
        let mut cut = out.len() - max;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        format!("...{}", &out[cut..])
    }

    async fn spawn_until_ready(&mut self) {
        let bin = server_bin();
        if !bin.exists() {
            panic!(
                "server binary {} does not exist; build it with `cargo build -p registry-local` \
                 or point MR_BIN at it",
                bin.display()
            );
        }
        let mut failures = Vec::new();
        for _ in 0..SPAWN_ATTEMPTS {
            self.starts += 1;
            let port = free_port();
            let log = std::fs::File::create(self.log_path()).expect("create server log file");
            let log2 = log.try_clone().expect("clone log file handle");
            let mut cmd = Command::new(&bin);
            cmd.env("PORT", port.to_string())
                .env("MR_DATA_DIR", &self.data_dir)
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                .kill_on_drop(true);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
            self.child = Some(child);
            self.port = port;
            match self.wait_ready().await {
                Ok(()) => return,
                Err(NotReady::Exited(status)) => {
                    failures.push(format!(
                        "attempt on port {port}: server exited before ready ({status}); output:\n{}",
                        self.output_tail()
                    ));
                    self.child = None;
                }
                Err(NotReady::Timeout) => {
                    let out = self.output_tail();
                    self.kill9().await;
                    panic!(
                        "server on port {port} not ready (GET /readyz/health != 200) within {:?}; \
                         env={:?}; output:\n{out}",
                        READY_TIMEOUT, self.env
                    );
                }
            }
        }
        panic!(
            "server failed to start {SPAWN_ATTEMPTS} times (data dir {}, env {:?}):\n{}",
            self.data_dir.display(),
            self.env,
            failures.join("\n----\n")
        );
    }

    async fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = self.url("/readyz/health");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(NotReady::Exited(status.to_string()));
            }
            let probe = self
                .client
                .get(&url)
                .timeout(Duration::from_millis(1000))
                .send()
                .await;
            if let Ok(resp) = probe
                && resp.status().as_u16() == 200
            {
                // Make sure it is OUR process answering, not someone else on a reused port.
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(NotReady::Exited(status.to_string()));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("server is running")
    }

    /// Send SIGTERM (graceful shutdown) and wait up to `limit` for the
    /// process to exit; returns how long it took, or `None` if it did not.
    pub async fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let pid = self.pid();
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let child = self.child.as_mut().expect("server is running");
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(_) => {
                self.child = None;
                Some(started.elapsed())
            }
            Err(_) => None,
        }
    }

    /// SIGKILL the server (no graceful shutdown) and reap it.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGKILL (if running) and start again on the same data directory and environment.
    /// The port changes: build new [`Api`] values after a restart.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.spawn_until_ready().await;
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Token unique to this server (what `{unique}` expands to in `MR_TEST_ENV`).
    pub fn unique(&self) -> &str {
        &self.unique
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Absolute URL of a raw path, e.g. `url("/readyz/health")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    /// Absolute URL of `path` under `/api/model_registry/v1alpha3`.
    pub fn url_v1alpha3(&self, path: &str) -> String {
        self.url(&format!("{V1ALPHA3}{path}"))
    }

    /// Absolute URL of `path` under `/api/model_registry/v1`.
    pub fn url_v1(&self, path: &str) -> String {
        self.url(&format!("{V1}{path}"))
    }

    /// A client bound to one API prefix.
    pub fn api(&self, prefix: &'static str) -> Api {
        Api::new(self.client.clone(), self.base_url(), prefix)
    }

    /// One client per API prefix (v1alpha3, v1).
    pub fn apis(&self) -> Vec<Api> {
        PREFIXES.iter().map(|p| self.api(p)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- registry-local output (port {}, data dir {}) ----\n{}\n---- end ----",
                self.port,
                self.data_dir.display(),
                self.output_tail()
            );
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_env_list;

    #[test]
    fn parses_env_list() {
        assert_eq!(
            parse_env_list(" A=1, B=x=y ,,C="),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), "".into())
            ]
        );
        assert!(parse_env_list("").is_empty());
    }
}
