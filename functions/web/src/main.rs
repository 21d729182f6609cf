//! `web`: the registry's web interface, server-rendered pages under `/ui/`
//! (`/` redirects there), behind the same edge as the API. Runs as a
//! Knative service or a Lambda like the others; `make run` serves the same
//! pages. See `registry::web`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run_web("web").await
}
