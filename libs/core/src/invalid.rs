//! What is wrong with a spec a user wrote. Validation of tasks, workflows, launch plans and their parts
//! (containers, resources, caches, secrets, notification rules) answers a `SpecError` that names the
//! document and field the problem is in; the registration API answers every one as INVALID_ARGUMENT.

use crate::ids::NameError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A name or version that breaks the naming rules.
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("variable name {name:?} is invalid: use letters, digits and '_', starting with a letter")]
    VariableName { name: String },
    /// A field of `subject` (`task train`, `launch plan nightly notification rule 1`) that is wrong.
    #[error("{subject}: {problem}")]
    Invalid { subject: String, problem: String },
    #[error("node {node:?} must set one of task, workflow, launch_plan, branch, gate, map or dynamic")]
    NoNodeKind { node: String },
    #[error(
        "node {node:?} sets more than one of task, workflow, launch_plan, branch, gate, map and dynamic; \
         a node does one thing"
    )]
    SeveralNodeKinds { node: String },
    /// The JSON document names a key twice (JSON parsers would keep the last one silently).
    #[error("{0}")]
    DuplicateKey(String),
}

impl SpecError {
    /// A problem of `subject`, the message saying which field and what is wrong.
    pub fn invalid(subject: impl Into<String>, problem: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            subject: subject.into(),
            problem: problem.into(),
        }
    }

    /// A problem of task `task`.
    pub fn task(task: &str, problem: impl Into<String>) -> SpecError {
        SpecError::invalid(format!("task {task}"), problem)
    }
}
