//! `serving`: the function serving serving environments, inference services
//! and the models they serve: `/serving_environments`, `/serving_environment`,
//! `/inference_services`, `/inference_service` and their sub-paths, under
//! both API prefixes, on AWS Lambda or as plain HTTP on `$PORT` (Knative).
//! The bootstrap is shared: see `registry::runtime`.

use std::process::ExitCode;

use registry::api::Slice;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run("serving", &[Slice::Serving]).await
}
