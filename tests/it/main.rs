//! HTTP API integration tests: every test spawns the real `registry-local` binary
//! (see `harness.rs`) and talks to it over a socket on both API prefixes.
//! `common` has the payloads and entity assertions, `listing` the list
//! checks, `resources` the cases every resource shares (one table of
//! resources); processes, the HTTP client and the paging walker are
//! `registry-test-support`'s (tests/support/).

mod common;
mod harness;
mod listing;

mod artifacts;
mod auth;
mod authz;
mod browser;
mod change_events;
mod durability;
mod edge;
mod experiments;
mod filters;
mod governance;
mod history;
mod limits;
mod lineage;
mod lists;
mod migration;
mod misc;
mod oidc;
mod outage;
mod race;
mod resources;
mod serve_roles;
mod serving;
mod web;
