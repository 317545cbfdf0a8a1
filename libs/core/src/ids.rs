//! Names and identifiers. Every entity is scoped by project + domain; tasks, workflows and launch plans are
//! immutable per version.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest project, domain, entity or execution name we accept (fits a Kubernetes label value).
pub const MAX_NAME_LEN: usize = 63;
/// Longest version string we accept.
pub const MAX_VERSION_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct NameError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// Checks a project, domain, entity or execution name: 1..=63 chars of `a-z 0-9 - _ .`, starting with a
/// letter or digit.
pub fn validate_name(field: &str, value: &str) -> Result<(), NameError> {
    let fail = |reason: &str| NameError {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(fail("must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(fail(&format!(
            "is {} characters long, at most {MAX_NAME_LEN} are allowed",
            value.len()
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(*c)))
    {
        return Err(fail(&format!(
            "contains {bad:?}; only lowercase letters, digits, '-', '_' and '.' are allowed"
        )));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(fail("must start with a letter or a digit"));
    }
    Ok(())
}

/// At most this many labels on one execution.
pub const MAX_LABELS: usize = 32;
/// A label value's longest length (Kubernetes' limit, so labels can travel to pods unchanged).
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// Checks an execution's labels: keys are names (see `validate_name`, `/` also allowed after the first
/// character), values up to 63 characters of letters, digits, `-`, `_` and `.` (empty allowed).
pub fn validate_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), NameError> {
    if labels.len() > MAX_LABELS {
        return Err(NameError {
            field: "labels".to_string(),
            value: format!("{} labels", labels.len()),
            reason: format!("at most {MAX_LABELS} labels are allowed"),
        });
    }
    for (key, value) in labels {
        let field = format!("label {key:?}");
        validate_name("label key", &key.replace('/', "-")).map_err(|mut error| {
            error.value.clone_from(key);
            error
        })?;
        let fail = |reason: String| NameError {
            field: field.clone(),
            value: value.clone(),
            reason,
        };
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(fail(format!(
                "is {} characters long, at most {MAX_LABEL_VALUE_LEN} are allowed",
                value.len()
            )));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
        {
            return Err(fail(format!(
                "contains {bad:?}; only letters, digits, '-', '_' and '.' are allowed"
            )));
        }
    }
    Ok(())
}

/// Checks a version string: 1..=128 chars of `A-Z a-z 0-9 - _ . +`.
pub fn validate_version(value: &str) -> Result<(), NameError> {
    let fail = |reason: &str| NameError {
        field: "version".to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(fail("must not be empty"));
    }
    if value.len() > MAX_VERSION_LEN {
        return Err(fail(&format!("is longer than {MAX_VERSION_LEN} characters")));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.+".contains(*c)))
    {
        return Err(fail(&format!(
            "contains {bad:?}; only letters, digits, '-', '_', '.' and '+' are allowed"
        )));
    }
    Ok(())
}

/// Identifies one version of a task, workflow or launch plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub version: String,
}

impl Identifier {
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name("project", &self.project)?;
        validate_name("domain", &self.domain)?;
        validate_name("name", &self.name)?;
        validate_version(&self.version)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}@{}",
            self.project, self.domain, self.name, self.version
        )
    }
}

/// Identifies one execution. Unique per project + domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExecutionId {
    pub project: String,
    pub domain: String,
    pub name: String,
}

impl ExecutionId {
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name("project", &self.project)?;
        validate_name("domain", &self.domain)?;
        validate_name("execution name", &self.name)
    }

    /// The event stream of this execution: all decisions about it carry this stream and a gap-free `seq`.
    pub fn stream(&self) -> String {
        StreamId::Execution(self.clone()).to_string()
    }

    /// The partitioning key on `aloft.executions`: every event of one execution lands in one partition.
    pub fn partition_key(&self) -> String {
        format!("{}/{}/{}", self.project, self.domain, self.name)
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.domain, self.name)
    }
}

/// The stream of an event on `aloft.executions`; its text is the envelope's `stream`, and each kind is
/// built here only, so every writer and reader agree on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// The decisions of one execution, sequenced gap-free by its partition's owner.
    Execution(ExecutionId),
    /// One request for an execution (a launch, a signal, a child's end told to its parent, ...): `key` is
    /// the execution's partition key, `request` names the request uniquely within it.
    Request { key: String, request: String },
    /// The ownership claims of one partition; the claim's epoch is the sequence.
    Partition(u32),
}

impl StreamId {
    /// A request for `execution` named `request`.
    pub fn request(execution: &ExecutionId, request: impl Into<String>) -> StreamId {
        StreamId::Request {
            key: execution.partition_key(),
            request: request.into(),
        }
    }

    /// Whether `stream` (an envelope's text) is a request's stream.
    pub fn is_request(stream: &str) -> bool {
        stream.starts_with(REQUEST_PREFIX)
    }

    /// Whether `stream` (an envelope's text) is an execution's decision stream.
    pub fn is_execution(stream: &str) -> bool {
        stream.starts_with(EXECUTION_PREFIX)
    }
}

const EXECUTION_PREFIX: &str = "execution/";
const REQUEST_PREFIX: &str = "request/";
const PARTITION_PREFIX: &str = "partition/";

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Execution(id) => write!(f, "{EXECUTION_PREFIX}{id}"),
            StreamId::Request { key, request } => write!(f, "{REQUEST_PREFIX}{key}/{request}"),
            StreamId::Partition(partition) => write!(f, "{PARTITION_PREFIX}{partition}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_or_too_long_are_rejected_with_the_reason() {
        let spaced = validate_name("name", "my task").unwrap_err();
        assert!(spaced.to_string().contains("' '"), "{spaced}");
        let long = "a".repeat(64);
        let too_long = validate_name("name", &long).unwrap_err();
        assert!(too_long.to_string().contains("64 characters"), "{too_long}");
        assert!(validate_name("name", "-leading").is_err());
        assert!(validate_name("name", "train-v2.1_final").is_ok());
    }
}
