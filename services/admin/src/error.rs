//! Admin's errors, each of a kind of the shared `ErrorCode` (which picks the gRPC code and HTTP status).

use aloft_proto::status::{ErrorCode, ServiceError};
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
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// Over the tenant's API rate: the caller may retry after the wait.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The same error with its message rewritten (to say where in a request it arose); an internal
    /// error stays as it is.
    pub fn map_message(self, rewrite: impl FnOnce(String) -> String) -> ApiError {
        match self {
            ApiError::InvalidArgument(message) => ApiError::InvalidArgument(rewrite(message)),
            ApiError::NotFound(message) => ApiError::NotFound(rewrite(message)),
            ApiError::AlreadyExists(message) => ApiError::AlreadyExists(rewrite(message)),
            ApiError::FailedPrecondition(message) => ApiError::FailedPrecondition(rewrite(message)),
            ApiError::PermissionDenied(message) => ApiError::PermissionDenied(rewrite(message)),
            other => other,
        }
    }
}

impl ServiceError for ApiError {
    fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            ApiError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::ResourceExhausted { .. } => ErrorCode::ResourceExhausted,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let mut status = match &error {
            // The message alone: callers read it, not the kind's prefix.
            ApiError::InvalidArgument(message)
            | ApiError::NotFound(message)
            | ApiError::AlreadyExists(message)
            | ApiError::FailedPrecondition(message)
            | ApiError::Unavailable(message)
            | ApiError::PermissionDenied(message)
            | ApiError::Unauthenticated(message)
            | ApiError::ResourceExhausted { message, .. } => {
                Status::new(error.error_code().grpc(), message.clone())
            }
            ApiError::Internal(message) => {
                // Logged once here, where it is turned into an answer.
                tracing::error!(error = %message, "internal error");
                Status::new(error.error_code().grpc(), message.clone())
            }
        };
        if let ApiError::ResourceExhausted { retry_after, .. } = &error {
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
        }
        status
    }
}

impl ApiError {
    /// A library's error as the API answers it: the kind its own `ServiceError` mapping says (the one mapping
    /// every service shares), with `context` before its message.
    fn of_kind(error: &dyn ServiceError, context: &str) -> ApiError {
        let message = format!("{context}{error}");
        match error.error_code() {
            ErrorCode::InvalidArgument => ApiError::InvalidArgument(message),
            ErrorCode::NotFound => ApiError::NotFound(message),
            ErrorCode::AlreadyExists => ApiError::AlreadyExists(message),
            ErrorCode::FailedPrecondition => ApiError::FailedPrecondition(message),
            ErrorCode::Unavailable | ErrorCode::ResourceExhausted => ApiError::Unavailable(message),
            ErrorCode::Unauthenticated => ApiError::Unauthenticated(message),
            ErrorCode::PermissionDenied => ApiError::PermissionDenied(message),
            ErrorCode::Internal => ApiError::Internal(message),
        }
    }
}

impl From<aloft_store::Error> for ApiError {
    fn from(error: aloft_store::Error) -> ApiError {
        ApiError::of_kind(&error, "read model: ")
    }
}

impl From<aloft_eventlog::Error> for ApiError {
    fn from(error: aloft_eventlog::Error) -> ApiError {
        match error {
            aloft_eventlog::Error::RecordTooLarge { .. } => ApiError::InvalidArgument(format!(
                "{error}: values and specs travel inline in events, so pass large data as a blob (a file in \
                 the blob store) and split a very large workflow into subworkflows"
            )),
            error => ApiError::of_kind(&error, "event log: "),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
