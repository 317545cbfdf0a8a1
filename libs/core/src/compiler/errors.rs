//! What the compiler tells a user whose workflow does not compile: one error per problem, naming the node,
//! the input or the output and what is wrong with it.

use crate::types::LiteralType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("workflow has no nodes")]
    Empty,
    /// A name, a node's kind or another part of the spec that breaks the rules before compiling.
    #[error(transparent)]
    InvalidSpec(#[from] crate::invalid::SpecError),
    #[error("node id {node:?} is used more than once")]
    DuplicateNodeId { node: String },
    #[error("node {node:?}: task {task:?} is not registered")]
    UnknownTask { node: String, task: String },
    #[error("node {node:?}: input {input:?} refers to unknown node {referenced:?}")]
    UnknownNode {
        node: String,
        input: String,
        referenced: String,
    },
    #[error("node {node:?}: input {input:?} refers to {referenced:?}.{output}, but task of {referenced:?} has no output {output:?}")]
    UnknownOutput {
        node: String,
        input: String,
        referenced: String,
        output: String,
    },
    #[error("node {node:?}: input {input:?} refers to workflow input {name:?}, which the workflow does not declare")]
    UnknownWorkflowInput {
        node: String,
        input: String,
        name: String,
    },
    #[error("node {node:?}: binds {input:?}, which its task does not declare as an input")]
    UnknownInput { node: String, input: String },
    #[error("node {node:?}: input {input:?} is not bound")]
    UnboundInput { node: String, input: String },
    #[error("node {node:?}: input {input:?} has type {expected}, but is bound to {found}")]
    TypeMismatch {
        node: String,
        input: String,
        expected: String,
        found: String,
    },
    #[error("node {node:?}: input {input:?}: constant does not fit: {reason}")]
    BadConstant {
        node: String,
        input: String,
        reason: String,
    },
    #[error("node {node:?}: input {input:?}: {reason}")]
    BadBinding {
        node: String,
        input: String,
        reason: String,
    },
    #[error("node {node:?}: 'after' names unknown node {referenced:?}")]
    UnknownAfter { node: String, referenced: String },
    #[error("the workflow has a cycle through nodes {}", nodes.join(" -> "))]
    Cycle { nodes: Vec<String> },
    #[error("workflow output {output:?}: {reason}")]
    BadOutput { output: String, reason: String },
    #[error("node {node:?}: {message}")]
    BadNode { node: String, message: String },
    #[error("workflow output {output:?} is declared but not bound")]
    UnboundOutput { output: String },
}

/// Why the workflow a dynamic node's planner wrote cannot run in the node's place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the planner's output `workflow` is a {kind}, not a workflow spec")]
    NotASpec { kind: &'static str },
    #[error("the planned workflow is not a valid workflow spec: {reason}")]
    InvalidSpec { reason: String },
    #[error("the planned workflow does not compile: {error} (it may use the tasks: {allowed})")]
    DoesNotCompile {
        error: Box<CompileError>,
        allowed: String,
    },
    #[error("the planned workflow's input {input:?} has type {wanted}, but the node gives {given}")]
    InputType {
        input: String,
        wanted: LiteralType,
        given: LiteralType,
    },
    #[error("the planned workflow needs input {input:?}, which the node does not have")]
    MissingInput { input: String },
    #[error("the planned workflow's output {output:?} is {found}, not {wanted}")]
    OutputType {
        output: String,
        found: LiteralType,
        wanted: LiteralType,
    },
    #[error("the planned workflow has no output {output:?}")]
    MissingOutput { output: String },
}

pub(super) fn node_error(node: &str, message: String) -> CompileError {
    CompileError::BadNode {
        node: node.to_string(),
        message,
    }
}

pub(super) enum BindingFailure {
    UnknownNode(String),
    UnknownOutput(String, String),
    UnknownWorkflowInput(String),
    TypeMismatch(String, String),
    BadConstant(String),
    Syntax(String),
}

impl BindingFailure {
    pub(super) fn into_error(self, node: &str, input: &str) -> CompileError {
        let (node, input) = (node.to_string(), input.to_string());
        match self {
            BindingFailure::UnknownNode(referenced) => CompileError::UnknownNode {
                node,
                input,
                referenced,
            },
            BindingFailure::UnknownOutput(referenced, output) => CompileError::UnknownOutput {
                node,
                input,
                referenced,
                output,
            },
            BindingFailure::UnknownWorkflowInput(name) => {
                CompileError::UnknownWorkflowInput { node, input, name }
            }
            BindingFailure::TypeMismatch(expected, found) => CompileError::TypeMismatch {
                node,
                input,
                expected,
                found,
            },
            BindingFailure::BadConstant(reason) => CompileError::BadConstant { node, input, reason },
            BindingFailure::Syntax(reason) => CompileError::BadBinding { node, input, reason },
        }
    }

    pub(super) fn reason(self) -> String {
        match self {
            BindingFailure::UnknownNode(referenced) => format!("refers to unknown node {referenced:?}"),
            BindingFailure::UnknownOutput(node, output) => format!("node {node:?} has no output {output:?}"),
            BindingFailure::UnknownWorkflowInput(name) => {
                format!("refers to undeclared workflow input {name:?}")
            }
            BindingFailure::TypeMismatch(expected, found) => {
                format!("has type {expected}, but is bound to {found}")
            }
            BindingFailure::BadConstant(reason) | BindingFailure::Syntax(reason) => reason,
        }
    }
}
