//! The one place where errors become HTTP statuses and the upstream error
//! body `{"code": "<status text>", "message": "..."}`.
//!
//! Handlers return [`ApiError`], made only from typed errors: the domain's
//! [`Error`], and the HTTP layer's own [`HttpError`]. A 5xx keeps its cause:
//! the response carries the whole chain in an extension ([`ErrorChain`])
//! that the edge logs with the request id, while the body says no more
//! than the first link.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::error::{Error, chain};

/// Failures of the HTTP layer itself.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The function serves the other half of the API's methods
    /// (`MR_SERVE`): the routing in front of it is wrong.
    #[error("this function serves {0} (MR_SERVE={0}); {1} requests go to another function")]
    OtherFunction(&'static str, String),
    /// The request body could not be read (cut off, stalled).
    #[error("reading the request body: {0}")]
    Body(#[source] axum::Error),
    /// Local I/O on the server's side.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        cause: std::io::Error,
    },
    /// The answer could not be written (a serializer failed).
    #[error("{0}")]
    Encoding(String),
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// The full chain, for the log of a 5xx.
    chain: Option<String>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(status: StatusCode, e: &(dyn std::error::Error + 'static)) -> ApiError {
        ApiError {
            status,
            message: e.to_string(),
            chain: status.is_server_error().then(|| chain(e)),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, &e)
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        let status = match &e {
            HttpError::NoRoute => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed | HttpError::OtherFunction(..) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            HttpError::Body(_) => StatusCode::BAD_REQUEST,
            HttpError::Io { .. } | HttpError::Encoding(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, &e)
    }
}

/// The cause chain of a 5xx answer, for the edge's log line.
#[derive(Clone, Debug)]
pub struct ErrorChain(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status.canonical_reason().unwrap_or("Error");
        let mut response = (
            self.status,
            Json(json!({ "code": code, "message": self.message })),
        )
            .into_response();
        if let Some(chain) = self.chain {
            response.extensions_mut().insert(ErrorChain(chain));
        }
        response
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
