//! The workspace's binaries (registry-local, the functions, ...) as child
//! processes: where cargo put them, a free port to serve on, the readiness
//! wait, and a [`Process`] that keeps the child's output in a log file and
//! kills it when dropped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The path every binary answers with 200 once it serves (the readiness probe).
pub const HEALTH: &str = "/readyz/health";

/// How long a binary may take to answer [`HEALTH`] with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a binary that exits before it is ready is started again on
/// a new port (covers the race between picking a free port and binding it).
const START_ATTEMPTS: u32 = 3;

/// Variables of the registry's configuration that must not leak from the
/// environment of the test run into a binary under test (a test that wants
/// one sets it).
const SCRUBBED: &[&str] = &[
    "PORT",
    "MR_STORE",
    "MR_TABLE",
    "MR_CREATE_TABLE",
    "MR_DATA_DIR",
    "MR_ARTIFACT_BUCKET",
    "MR_LOG_FORMAT",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_PROFILE",
];

/// The directory cargo put the workspace's binaries in: the directory of the
/// running executable, or its parent when that is `deps/` (a test binary is
/// `<target>/<profile>/deps/<test>-<hash>`). So `CARGO_TARGET_DIR` and the
/// profile are honoured.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running executable");
    let dir = exe.parent().expect("the executable is in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent()
            .expect("deps/ is in the profile directory")
            .into()
    } else {
        dir.into()
    }
}

/// The workspace binary `name`; panics, saying how to build it, if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build it first (`cargo build --workspace --all-targets`)",
        path.display()
    );
    path
}

/// The server of the HTTP API tests: `MR_BIN` when set (tests/openapi and
/// tests/compat point it at other binaries), else `registry-local`.
pub fn server_bin() -> PathBuf {
    match std::env::var_os("MR_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => bin("registry-local"),
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn try_free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// [`try_free_port`], panicking if the OS has none.
pub fn free_port() -> u16 {
    try_free_port().expect("a free port on 127.0.0.1")
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(128)
        // Below the server's idle limit (MR_HEADER_TIMEOUT_SECS, 10 s): a
        // connection the server is closing is never reused.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

/// Why a child did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first (with this status).
    Exited(ExitStatus),
    /// It did not answer [`HEALTH`] with 200 in time.
    Timeout(Duration),
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "exited before it was ready ({status})"),
            NotReady::Timeout(t) => write!(f, "did not answer GET {HEALTH} with 200 within {t:?}"),
        }
    }
}

/// Wait until `child`, serving at `base` (`http://127.0.0.1:<port>`), answers
/// [`HEALTH`] with 200, at most `timeout`. A 200 counts only while the child
/// still runs (not some other process on a reused port).
pub async fn wait_ready(child: &mut Child, base: &str, timeout: Duration) -> Result<(), NotReady> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("HTTP client");
    let url = format!("{base}{HEALTH}");
    let deadline = Instant::now() + timeout;
    let exited = |child: &mut Child| child.try_wait().ok().flatten().map(NotReady::Exited);
    loop {
        if let Some(e) = exited(child) {
            return Err(e);
        }
        if let Ok(r) = client.get(&url).send().await
            && r.status().as_u16() == 200
        {
            return match exited(child) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout(timeout));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How to start one binary: which, with what environment, where its data
/// and its output go.
///
/// The child gets the test run's environment minus the registry's
/// configuration variables, then `MR_DATA_DIR` (see [`Launch::data_dir`]),
/// `MR_LOG=info` and `AWS_EC2_METADATA_DISABLED=true`, then `PORT` (from
/// [`Launch::start_http`]), then [`Launch::env`] in order (later wins).
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    log: Option<PathBuf>,
}

impl Launch {
    /// The workspace binary `name` (see [`bin`]).
    pub fn new(name: &str) -> Launch {
        Launch::program(bin(name))
    }

    /// Any executable.
    pub fn program(path: impl Into<PathBuf>) -> Launch {
        Launch {
            program: path.into(),
            env: Vec::new(),
            data_dir: None,
            log: None,
        }
    }

    /// One more environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// More environment variables, in order.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Launch {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// `MR_DATA_DIR` (the caller owns it). Default: `data/` in a temporary
    /// directory of the process's own, removed with it.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Launch {
        self.data_dir = Some(dir.into());
        self
    }

    /// The file that gets stdout and stderr (truncated at each start).
    /// Default: `output.log` in the process's own temporary directory.
    pub fn log(mut self, file: impl Into<PathBuf>) -> Launch {
        self.log = Some(file.into());
        self
    }

    fn name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string())
    }

    /// Start it with `extra` variables after the defaults (before
    /// [`Launch::env`]); does not wait for anything.
    fn spawn_with(&self, extra: &[(&str, String)]) -> Process {
        let dir = match (&self.data_dir, &self.log) {
            (Some(_), Some(_)) => None,
            _ => Some(
                tempfile::Builder::new()
                    .prefix("mr-process-")
                    .tempdir()
                    .expect("temporary directory"),
            ),
        };
        let own = |file: &str| dir.as_ref().expect("own directory").path().join(file);
        let data_dir = self.data_dir.clone().unwrap_or_else(|| own("data"));
        let log = self.log.clone().unwrap_or_else(|| own("output.log"));
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("log file {}: {e}", log.display()));
        let err = out.try_clone().expect("log file handle");
        let mut cmd = Command::new(&self.program);
        for var in SCRUBBED {
            cmd.env_remove(var);
        }
        cmd.env("MR_DATA_DIR", &data_dir)
            .env("MR_LOG", "info")
            // Never probe instance metadata (not a loopback address).
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        Process {
            name: self.name(),
            child,
            log,
            _dir: dir,
        }
    }

    /// Start it; does not wait for anything.
    pub fn spawn(&self) -> Process {
        self.spawn_with(&[])
    }

    /// Start it serving HTTP on a free `PORT` and wait until it is ready
    /// ([`wait_ready`]); returns it and its base URL. Starts it again on a
    /// new port if it exits first (a port race), at most three times.
    pub async fn start_http(&self) -> (Process, String) {
        let mut failures = Vec::new();
        // A port the caller chose (its URL had to be known beforehand, as an
        // OIDC redirect URL is), else a free one.
        let chosen = self
            .env
            .iter()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse::<u16>().ok());
        for _ in 0..START_ATTEMPTS {
            let port = chosen.unwrap_or_else(free_port);
            let mut p = self.spawn_with(&[("PORT", port.to_string())]);
            let base = format!("http://127.0.0.1:{port}");
            match wait_ready(&mut p.child, &base, READY_TIMEOUT).await {
                Ok(()) => return (p, base),
                Err(e @ NotReady::Exited(_)) => {
                    failures.push(format!("on port {port}: {e}; output:\n{}", p.log_tail()));
                }
                Err(e @ NotReady::Timeout(_)) => {
                    let out = p.log_tail();
                    p.kill().await;
                    panic!(
                        "{} on port {port} {e}; env {:?}; output:\n{out}",
                        self.program.display(),
                        self.env
                    );
                }
            }
        }
        panic!(
            "{} did not start {START_ATTEMPTS} times (env {:?}):\n{}",
            self.program.display(),
            self.env,
            failures.join("\n----\n")
        );
    }
}

/// A running binary; killed (SIGKILL) when dropped.
pub struct Process {
    /// The binary's file name.
    pub name: String,
    child: Child,
    log: PathBuf,
    // Removed after the child was killed (fields drop in order).
    _dir: Option<tempfile::TempDir>,
}

impl Process {
    /// Start the workspace binary `name` with `env` (see [`Launch`]); does
    /// not wait for anything.
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Process {
        Launch::new(name).envs(env.iter().cloned()).spawn()
    }

    /// Start the workspace binary `name` with `env` serving HTTP on a free
    /// port, ready (see [`Launch::start_http`]); returns it and its base URL.
    pub async fn start_http(name: &str, env: &[(&str, String)]) -> (Process, String) {
        Launch::new(name)
            .envs(env.iter().cloned())
            .start_http()
            .await
    }

    /// Everything the binary printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 8,000 bytes of [`Process::log`].
    pub fn log_tail(&self) -> String {
        let out = self.log();
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

    /// The file the output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id; panics once it exited and was reaped.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Wait until it answers [`HEALTH`] at `base`, at most [`READY_TIMEOUT`].
    pub async fn wait_ready(&mut self, base: &str) -> Result<(), String> {
        wait_ready(&mut self.child, base, READY_TIMEOUT)
            .await
            .map_err(|e| format!("{} {e}", self.name))
    }

    /// Wait for it to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Send SIGTERM (as Knative and Kubernetes do to stop a pod).
    pub fn terminate(&self) {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// SIGKILL (no graceful shutdown), and reap it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
