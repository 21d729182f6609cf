//! `artifacts`: the function serving artifacts of every type:
//! `/model_artifacts`, `/model_artifact`, `/model_artifacts/{id}`,
//! `/artifacts`, `/artifact` and `/artifacts/{id}`, under both API prefixes,
//! on AWS Lambda or as plain HTTP on `$PORT` (Knative). The bootstrap is
//! shared: see `registry::runtime`.

use std::process::ExitCode;

use registry::api::Slice;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run("artifacts", &[Slice::Artifacts]).await
}
