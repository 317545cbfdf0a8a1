//! One mapping from error kinds to gRPC codes and HTTP statuses, shared by every service (as Quickwit's
//! `ServiceError`): a library's `Error` says which `ErrorCode` each of its variants is, and every API edge
//! (gRPC today, the REST API next) answers with the code and status that kind maps to.

/// What kind of failure an error is, as a caller must act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is wrong; retrying it unchanged fails again.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The request is valid but the thing it acts on is not in a state that allows it.
    FailedPrecondition,
    /// Over a limit (a tenant's API rate); retry later.
    ResourceExhausted,
    /// A part the service depends on is unreachable or behind; retry later.
    Unavailable,
    Unauthenticated,
    PermissionDenied,
    /// A bug or corrupt data: nothing the caller can fix.
    Internal,
}

impl ErrorCode {
    pub fn grpc(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The kind a gRPC code stands for (codes no Aloft error uses count as internal), so an answer the
    /// gRPC handler gave maps to the same HTTP status as the error it came from.
    pub fn from_grpc(code: tonic::Code) -> ErrorCode {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ErrorCode::InvalidArgument,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::AlreadyExists | tonic::Code::Aborted => ErrorCode::AlreadyExists,
            tonic::Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            tonic::Code::ResourceExhausted => ErrorCode::ResourceExhausted,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ErrorCode::Unavailable
            }
            tonic::Code::Unauthenticated => ErrorCode::Unauthenticated,
            tonic::Code::PermissionDenied => ErrorCode::PermissionDenied,
            _ => ErrorCode::Internal,
        }
    }

    /// The name callers see in an error answer of the REST API (the gRPC code's name).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status of the REST/JSON API for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => 409,
            ErrorCode::ResourceExhausted => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// An error an API can answer with: its message, and the kind that picks the code.
pub trait ServiceError: std::error::Error {
    fn error_code(&self) -> ErrorCode;
}

/// The gRPC status of `error`: its kind's code and its message.
pub fn grpc_status(error: &dyn ServiceError) -> tonic::Status {
    tonic::Status::new(error.error_code().grpc(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("project \"genomics\" does not exist")]
    struct NoProject;

    impl ServiceError for NoProject {
        fn error_code(&self) -> ErrorCode {
            ErrorCode::NotFound
        }
    }

    #[test]
    fn an_error_answers_with_its_kinds_code_and_status_and_its_own_message() {
        let status = grpc_status(&NoProject);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "project \"genomics\" does not exist");
        assert_eq!(NoProject.error_code().http_status(), 404);
        assert_eq!(ErrorCode::ResourceExhausted.http_status(), 429);
        assert_eq!(ErrorCode::Unavailable.grpc(), tonic::Code::Unavailable);
    }
}
