//! `storage-events`: the function that registers models from uploads to the
//! artifact bucket. Over HTTP (Knative) it takes CloudEvents, in binary or
//! structured mode, at `/` (where a Trigger delivers) and `/events/storage`;
//! under AWS Lambda it is invoked with S3 event notifications and EventBridge
//! events directly. Both go through the same code path (`registry::registration`).
//! The bootstrap is shared: see `registry::runtime`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run_storage_events("storage-events").await
}
