//! `events`: the function that delivers the registry's change events (every
//! ledger record as a CloudEvent) to a sink (`K_SINK` from a Knative
//! SinkBinding, or `MR_EVENTS_SINK`). Each invocation runs one round: a
//! Knative PingSource posts to `/` (or `/events/dispatch`), an EventBridge
//! schedule invokes the Lambda. See `registry::events`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    registry::runtime::run_events("events").await
}
