//! `registry-local`: every API slice on one port, on the configured store.
//! Used by `make run` and the tests; like the functions, it also runs under
//! Lambda when `AWS_LAMBDA_RUNTIME_API` is set. With a sink
//! (`MR_EVENTS_SINK`) it also delivers the change events.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("migrate-table") {
        return registry::runtime::migrate_table(args).await;
    }
    registry::runtime::run_local("registry-local").await
}
