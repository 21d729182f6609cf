//! `experiments`: the function serving experiments, experiment runs, their
//! artifacts and metric history: `/experiments`, `/experiment`,
//! `/experiment_runs`, `/experiment_run` and their sub-paths, under both API
//! prefixes, on AWS Lambda or as plain HTTP on `$PORT` (Knative). The
//! bootstrap is shared: see `registry::runtime`.

use std::process::ExitCode;

use registry::api::Slice;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run("experiments", &[Slice::Experiments]).await
}
