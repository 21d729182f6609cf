//! HTTP API integration tests: every test spawns the real `registry-local` binary
//! (see `harness.rs`) and talks to it over a socket on both API prefixes.

mod common;
mod harness;

mod artifacts;
mod durability;
mod experiments;
mod filters;
mod lists;
mod misc;
mod model_versions;
mod outage;
mod race;
mod registered_models;
mod serving;
