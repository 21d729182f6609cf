//! A `registry-local` server for one test: the binary (see
//! [`registry_test_support::server_bin`]) on a free port, on its own data
//! directory, kept across restarts, with its output kept per start.
//!
//! Environment knobs (all optional):
//! - `MR_BIN`: path of the server binary (default: `registry-local` next to
//!   this test binary in the target directory).
//! - `MR_TEST_ENV="K=V,K2=V2"`: extra environment applied to EVERY spawned server, to point
//!   the whole suite at another backend (for example `MR_STORE=dynamodb,...`). In values,
//!   `{unique}` is replaced by a token unique to the server (stable across `restart()`), and
//!   `{data_dir}` by its data directory, so a shared backend can still give each server its own
//!   namespace, e.g.
//!   `MR_TEST_ENV="MR_STORE=dynamodb,MR_TABLE=it-{unique},MR_CREATE_TABLE=true,AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000"`.
//!   Variables are applied in this order: the defaults of
//!   [`registry_test_support::Launch`] (`MR_DATA_DIR`, ...), `PORT`, `MR_TEST_ENV`, then the
//!   test's own [`ServerOpts::env`] (later wins; do not override `PORT`).
//!
//! The tests assume every server they start begins with an EMPTY store.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use registry_test_support::{Launch, Process, http_client, server_bin};

use crate::common::{Api, PREFIXES, V1, V1ALPHA3};

/// Options for [`Server::start_with`].
#[derive(Default, Debug, Clone)]
pub struct ServerOpts {
    /// Use this data directory instead of a fresh temporary one (the caller owns it).
    pub data_dir: Option<PathBuf>,
    /// Extra environment variables for this server (applied after `MR_TEST_ENV`).
    pub env: Vec<(String, String)>,
}

pub struct Server {
    process: Process,
    base: String,
    data_dir: PathBuf,
    unique: String,
    env: Vec<(String, String)>,
    starts: u32,
    client: reqwest::Client,
    logs: tempfile::TempDir,
    // Declared last so it is removed after the child was told to die.
    _data_tmp: Option<tempfile::TempDir>,
}

/// Parses `MR_TEST_ENV` ("K=V,K2=V2"), substituting `{unique}` and `{data_dir}`:
/// the environment every server of the suite gets (public for tests that
/// run a binary of the suite's backend by other means than a [`Server`]).
pub fn suite_env(unique: &str, data_dir: &Path) -> Vec<(String, String)> {
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
        let (process, base) = Self::launch(&data_dir, &env, &logs, 1).await;
        Server {
            process,
            base,
            data_dir,
            unique,
            env,
            starts: 1,
            client: http_client(),
            logs,
            _data_tmp: data_tmp,
        }
    }

    async fn launch(
        data_dir: &Path,
        env: &[(String, String)],
        logs: &tempfile::TempDir,
        start: u32,
    ) -> (Process, String) {
        Launch::program(server_bin())
            .data_dir(data_dir)
            .log(logs.path().join(format!("server-{start}.log")))
            .envs(env.iter().cloned())
            .start_http()
            .await
    }

    /// stdout+stderr of the current (or last) server process.
    pub fn output(&self) -> String {
        self.process.log()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Send SIGTERM (graceful shutdown) and wait up to `limit` for the
    /// process to exit; returns how long it took, or `None` if it did not.
    pub async fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        self.process.terminate();
        self.process
            .wait_exit(limit)
            .await
            .map(|_| started.elapsed())
    }

    /// SIGKILL the server (no graceful shutdown) and reap it.
    pub async fn kill9(&mut self) {
        self.process.kill().await;
    }

    /// SIGKILL (if running) and start again on the same data directory and environment.
    /// The port changes: build new [`Api`] values after a restart.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.starts += 1;
        (self.process, self.base) =
            Self::launch(&self.data_dir, &self.env, &self.logs, self.starts).await;
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
        self.base.clone()
    }

    /// Absolute URL of a raw path, e.g. `url("/readyz/health")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
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
        Api::new(self.client.clone(), self.base.clone(), prefix)
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
                "---- {} output ({}, data dir {}) ----\n{}\n---- end ----",
                self.process.name,
                self.base,
                self.data_dir.display(),
                self.process.log_tail()
            );
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
