//! The registry's errors. Each variant is one HTTP status at the API edge
//! (mapped in one place, `api::error`).

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
    /// The store cannot be reached; retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::Unavailable(m),
            StoreError::ConditionFailed => Error::Conflict("concurrent modification, retry".into()),
            StoreError::Internal(m) => Error::Internal(m),
            // The domain's own limits are stricter: reaching these means it
            // forgot one, still a client error and the same on every backend.
            StoreError::TooLarge(m) => Error::TooLarge(format!("item too large: {m}")),
            StoreError::KeyTooLong(m) => Error::BadRequest(format!("key too long: {m}")),
        }
    }
}

/// Shorthand for `Err(Error::BadRequest(..))`.
pub fn bad_request<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::BadRequest(msg.into()))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
