//! The model registry: domain, storage port and adapters, HTTP API, and the
//! bootstrap shared by every function binary.

pub mod api;
pub mod config;
pub mod domain;
pub mod events;
pub mod registration;
pub mod runtime;
pub mod store;
pub mod web;
