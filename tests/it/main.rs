//! HTTP API integration tests: every test spawns the real `registry-local` binary
//! (see `harness.rs`) and talks to it over a socket on both API prefixes.

mod common;
mod harness;

mod artifacts;
mod durability;
mod filters;
mod lists;
mod misc;
mod outage;
mod model_versions;
mod race;
mod registered_models;
mod serving;
mod experiments;
