//! `model-versions`: the function serving model versions and the artifacts
//! of a version: `/model_versions`, `/model_version`, `/model_versions/{id}`
//! and `/model_versions/{id}/artifacts`, under both API prefixes, on AWS
//! Lambda or as plain HTTP on `$PORT` (Knative). The bootstrap is shared:
//! see `registry::runtime`.

use std::process::ExitCode;

use registry::api::Slice;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run("model-versions", &[Slice::ModelVersions]).await
}
