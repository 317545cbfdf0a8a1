//! The event log's errors, each of a kind of the shared `ErrorCode`.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("event log io error at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("unknown topic {0:?}; it must be created before use")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("data directory {0} is in use by another aloft process")]
    InUse(String),
    #[error("cannot decode event envelope: {0}")]
    Decode(String),
    #[error("cannot encode event envelope: {0}")]
    Encode(String),
    #[error("the event log was closed")]
    Closed,
    #[error("an event of {bytes} bytes for {topic} is more than the {max} bytes an event may be")]
    RecordTooLarge { topic: String, bytes: usize, max: usize },
    #[error("topic {topic:?} cannot have {partitions} partitions: at most {max}")]
    TooManyPartitions {
        topic: String,
        partitions: u32,
        max: u32,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl aloft_proto::status::ServiceError for Error {
    fn error_code(&self) -> aloft_proto::status::ErrorCode {
        use aloft_proto::status::ErrorCode;
        match self {
            Error::Io { .. } | Error::Kafka(_) | Error::InUse(_) | Error::Closed => ErrorCode::Unavailable,
            Error::UnknownTopic(_) | Error::UnknownPartition { .. } => ErrorCode::FailedPrecondition,
            Error::TooManyPartitions { .. } | Error::RecordTooLarge { .. } => ErrorCode::InvalidArgument,
            Error::Decode(_) | Error::Encode(_) => ErrorCode::Internal,
        }
    }
}
