//! The one mapping from error kinds to gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    /// Over the tenant's API rate: the caller may retry after the wait.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument(message) => Status::invalid_argument(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::Unavailable(message) => Status::unavailable(message),
            ApiError::ResourceExhausted { message, retry_after } => {
                let mut status = Status::resource_exhausted(message);
                // Whole seconds (rounded up) as HTTP's Retry-After, and the exact wait in milliseconds.
                let seconds = retry_after.as_millis().div_ceil(1000).max(1);
                for (key, value) in [
                    ("retry-after", seconds),
                    ("retry-after-ms", retry_after.as_millis()),
                ] {
                    if let Ok(value) = value.to_string().parse() {
                        status.metadata_mut().insert(key, value);
                    }
                }
                status
            }
            ApiError::Internal(message) => {
                // Logged once here, where it is turned into an answer.
                tracing::error!(error = %message, "internal error");
                Status::internal(message)
            }
        }
    }
}

impl From<aloft_store::Error> for ApiError {
    fn from(error: aloft_store::Error) -> ApiError {
        ApiError::Internal(error.to_string())
    }
}

impl From<aloft_eventlog::Error> for ApiError {
    fn from(error: aloft_eventlog::Error) -> ApiError {
        ApiError::Unavailable(format!("event log: {error}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
