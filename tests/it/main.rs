//! HTTP API integration tests: every test spawns the real `registry-local` binary
//! (see `harness.rs`) and talks to it over a socket on both API prefixes.

mod common;
mod harness;

mod artifacts;
mod auth;
mod authz;
mod durability;
mod edge;
mod experiments;
mod filters;
mod limits;
mod lists;
mod misc;
mod model_versions;
mod outage;
mod race;
mod registered_models;
mod serving;
