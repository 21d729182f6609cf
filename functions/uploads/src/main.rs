//! `uploads`: the function serving the upload extension under
//! `/api/registry_ext/v1` (outside the Kubeflow contract): presigned upload
//! URLs for a model version's files and the completion call that verifies
//! and registers them, on AWS Lambda or as plain HTTP on `$PORT` (Knative).
//! The bootstrap is shared: see `registry::runtime`.

use std::process::ExitCode;

use registry::api::Slice;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run("uploads", &[Slice::Uploads]).await
}
