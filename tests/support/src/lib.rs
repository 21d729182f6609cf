//! What every integration test target shares (tests/it, tests/events,
//! tests/functions, and the storage contract suite of `registry` in
//! shared/tests/contract.rs, which is why this crate does not depend on
//! `registry`):
//!
//! - [`process`]: the binaries cargo built (found next to the running test
//!   executable, so `CARGO_TARGET_DIR` and the profile are honoured; `MR_BIN`
//!   overrides the API server), started as child processes on a
//!   [`free_port`], [`wait_ready`] for their health path;
//! - [`servers`]: where the test servers (dynalite, s3s-fs) listen;
//! - [`api`]: an HTTP client of the REST API on one prefix ([`Api`]), its
//!   responses ([`Resp`]) with the error-shape assertions;
//! - [`paging`]: a walker that follows `nextPageToken` to the end.

pub mod api;
pub mod paging;
pub mod process;
pub mod servers;

pub use api::{
    Api, PREFIXES, Resp, V1, V1ALPHA3, assert_envelope, id, ids_of, items, tag, truncate, uniq,
};
pub use paging::{Page, assert_full_pages};
pub use process::{
    HEALTH, Launch, NotReady, Process, READY_TIMEOUT, bin, bin_dir, free_port, http_client,
    server_bin, try_free_port, wait_ready,
};
pub use servers::server_env;
