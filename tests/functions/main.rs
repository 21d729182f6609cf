//! Tests of the deployable function binaries and of `infra/`:
//! - `http`: each function on a free `PORT` serves its routes and 404s the
//!   others, starts without network I/O, stops on SIGTERM;
//! - `lambda`: the same binaries under a Lambda Runtime API emulator, fed
//!   API Gateway v1/v2 and Function URL events;
//! - `manifests`: the Knative manifests, routing and Lambda template, offline;
//! - `deployed`: the binaries run with the configuration of those files
//!   (authentication, the policy), asked what the deployment promises;
//! - `storage_events`: the `storage-events` function under Lambda, invoked
//!   with S3 notifications and EventBridge events (s3s-fs, dynalite).
//!
//! Starting the binaries is `registry-test-support`'s (tests/support/).
//!
//! The upstream Python client runs through the Knative routing in
//! tests/run.sh (via the `functions-gateway` binary).

mod contract;
mod deployed;
mod http;
mod lambda;
mod manifests;
mod storage_events;
