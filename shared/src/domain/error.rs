//! The registry's errors. Each variant is one HTTP status at the API edge
//! (mapped in one place, `api::error`); failures of the stores keep their
//! cause, so the log line of a 5xx shows the whole chain while the client
//! sees only the first link.

use std::sync::Arc;

use crate::store::port::StoreError;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Malformed input: unknown field, bad type or enum, bad filter or token.
    #[error("{0}")]
    BadRequest(String),
    /// A required field is missing or empty.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    /// A name or externalId is already taken in its scope.
    #[error("{0}")]
    Conflict(String),
    /// The entity would be larger than the store takes (see
    /// `registry::MAX_ENTITY_BYTES`); nothing was written.
    #[error("{0}")]
    TooLarge(String),
    /// The caller sent no credentials, and needs some for this.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The store cannot be reached, or too much contention: retry later.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A bug, a misconfiguration, or data the registry cannot read.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl Error {
    /// Retry later, for `message`.
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::Unavailable {
            message: message.into(),
            cause: None,
        }
    }

    /// Retry later, because of `cause`.
    pub fn unavailable_by(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Unavailable {
            message: message.into(),
            cause: Some(Cause::new(cause)),
        }
    }

    /// Something the registry cannot handle, for `message`.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal {
            message: message.into(),
            cause: None,
        }
    }

    /// Something the registry cannot handle, because of `cause`.
    pub fn internal_by(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Internal {
            message: message.into(),
            cause: Some(Cause::new(cause)),
        }
    }
}

/// The error underneath another, kept for the log (shared, so errors stay
/// `Clone`; compared by text).
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(e))
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// An error and every cause under it, `: `-separated (for logs).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        // Wrappers often repeat their cause's text: say it once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConditionFailed => Error::Conflict("concurrent modification, retry".into()),
            // The domain's own limits are stricter: reaching these means it
            // forgot one, still a client error and the same on every backend.
            StoreError::TooLarge(m) => Error::TooLarge(format!("item too large: {m}")),
            StoreError::KeyTooLong(m) => Error::BadRequest(format!("key too long: {m}")),
            e @ StoreError::Unavailable { .. } => {
                Error::unavailable_by("the metadata store is unavailable", e)
            }
            e @ (StoreError::Internal { .. } | StoreError::ReadOnly(_)) => {
                Error::internal_by("the metadata store failed", e)
            }
        }
    }
}

/// Shorthand for `Err(Error::BadRequest(..))`.
pub fn bad_request<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::BadRequest(msg.into()))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
