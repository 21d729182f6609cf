//! Starting the real function binaries (`<target>/debug/<name>`, built by
//! `cargo build --workspace --all-targets`) as child processes, each with its
//! own embedded store in a temporary directory and its output in a log file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::contract::HEALTH;

/// How long a binary may take to answer its health path.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Variables of the registry's configuration that must not leak from the
/// environment of the test run into a binary under test.
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

/// The directory holding the workspace's debug binaries (this test binary is
/// in its `deps/`), so `CARGO_TARGET_DIR` is honoured.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in <target>/debug/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --all-targets` first",
        path.display()
    );
    path
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

/// A running function binary.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
    // Removed after the child was killed (fields drop in order).
    _dir: tempfile::TempDir,
}

impl Process {
    /// Start `name` with the embedded store in a fresh directory and `env`
    /// (which wins over the defaults). Does not wait for anything.
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Process {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("output.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(bin(name));
        for var in SCRUBBED {
            cmd.env_remove(var);
        }
        cmd.env("MR_DATA_DIR", dir.path().join("data"))
            .env("MR_LOG", "info")
            // Never probe instance metadata (not a loopback address).
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("start the function binary");
        Process {
            name: name.to_string(),
            child,
            log,
            _dir: dir,
        }
    }

    /// Start `name` serving HTTP on a free port and wait until it is ready.
    /// Retries on a new port if the binary exits first (a port race).
    pub async fn start_http(name: &str, env: &[(&str, String)]) -> (Process, String) {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut all = vec![("PORT", port.to_string())];
            all.extend(env.iter().cloned());
            let mut p = Process::spawn(name, &all);
            let base = format!("http://127.0.0.1:{port}");
            match p.wait_ready(&base).await {
                Ok(()) => return (p, base),
                Err(e) => last = format!("{e}\n{}", p.log()),
            }
        }
        panic!("{name} did not start: {last}");
    }

    /// Wait until `base` answers the health path with 200.
    pub async fn wait_ready(&mut self, base: &str) -> Result<(), String> {
        let client = client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "{} exited before it was ready: {status}",
                    self.name
                ));
            }
            if let Ok(r) = client.get(format!("{base}{HEALTH}")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{} was not ready in time", self.name));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the binary printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Wait for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Send SIGTERM (as Knative and Kubernetes do to stop a pod).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }
}
