//! Registration by upload: objects that land in the artifact bucket become
//! a registered model, a model version and a model artifact, by themselves.
//!
//! ## The convention
//! Under the prefix (`MR_EVENTS_PREFIX`, default `models/`) of the artifact
//! bucket, `<prefix><model>/<version>/<path...>` belongs to version
//! `<version>` of model `<model>` ([`convention`]). The first object of a
//! version folder registers the model (if new), the version (if new) and
//! one model artifact named after the model (as the upstream client's
//! `register_model` names it) whose `uri` is the folder. Every later change
//! of the folder updates that artifact: its state (`LIVE` while a file is
//! present, `DELETED` once all are removed, `PENDING` while only a manifest
//! is there) and its storage properties (size, file count, SHA-256,
//! per-file ETag and SHA-256). An optional manifest in the folder
//! ([`manifest`]) adds the format, description, author, metrics and
//! parameters.
//!
//! ## Exactly once in effect
//! Deliveries may repeat, fail half-way and arrive out of order, and anyone
//! who can reach the endpoint can post an event. Two things make any such
//! history end in the state of one clean, in-order delivery:
//!
//! 1. **The bucket is the truth; an event is a hint** (the object ledger,
//!    `ledger`): one state item per object holds what the bucket was last
//!    seen to hold there, and only a look at the bucket changes it.
//! 2. **Registry state is derived from the folder, not from the event**
//!    (reconciliation, `reconcile`): the folder's items are read with one
//!    consistent Query and the model, version and artifact are brought to
//!    what they describe, until a derivation ran on a view that was still
//!    current after it.
//!
//! A delivery that fails after recording is redelivered by the broker; it
//! looks at the bucket again and the derivation completes.
//!
//! ## The parts
//! - [`events`]: where events come from (CloudEvents, S3 notifications,
//!   EventBridge), read into [`StorageEvent`]s;
//! - [`delivery`]: a delivery applied, and the verdict a broker acts on;
//! - [`Registrar`]: one event (or the upload extension's completion) in,
//!   registry state out. It only reads the bucket
//!   ([`crate::store::artifacts::ArtifactRead`]).

pub mod convention;
pub mod delivery;
pub mod events;
mod find_or_create;
mod ledger;
pub mod manifest;
mod reconcile;
mod registrar;

pub use convention::{DEFAULT_PREFIX, FolderConvention, LOCAL_BUCKET, Location, NotOurs};
pub use events::{Change, StorageEvent};
pub use reconcile::{MAX_LISTED_FILES, props};
pub use registrar::{Outcome, Registrar, Registration};

use crate::domain::error::Error;
use crate::store::artifacts::ArtifactError;

/// An error and its causes, joined by `": "`: the whole message a sender
/// (a malformed delivery) or a reader (`manifest_error`) is shown.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Artifact store failures as registry errors: the store being away is
/// retryable; anything else is not this delivery's fault either, but also
/// needs an operator (credentials, bucket), so it is retried too.
pub fn storage_error(e: ArtifactError) -> Error {
    match e {
        ArtifactError::Invalid(m) => Error::BadRequest(m),
        ArtifactError::NotFound(m) => Error::NotFound(m),
        ArtifactError::Unavailable(m) => Error::unavailable(m),
        ArtifactError::Denied(m) | ArtifactError::Unsupported(m) | ArtifactError::Internal(m) => {
            Error::internal(m)
        }
    }
}
