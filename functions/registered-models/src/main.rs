//! `registered-models`: the function serving registered models and the
//! versions of a model: `/registered_models`, `/registered_model`,
//! `/registered_models/{id}` and `/registered_models/{id}/versions`, under
//! both API prefixes, on AWS Lambda or as plain HTTP on `$PORT` (Knative).
//! The bootstrap is shared: see `registry::runtime`.

use std::process::ExitCode;

use registry::api::Slice;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run("registered-models", &[Slice::RegisteredModels]).await
}
