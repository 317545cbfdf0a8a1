//! Why the state cannot produce a value a decision needs. These never reach an API: `decide` turns each
//! into the failure message of the node (or execution) it concerns.

use crate::compiler::PlanError;

/// A binding whose value does not exist (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("workflow input {name:?} has no value")]
    WorkflowInput { name: String },
    #[error("node {node:?} has no output {output:?}")]
    NodeOutput { node: String, output: String },
    #[error(
        "its value was offloaded to the blob store ({size} bytes, over the inline limit), and the engine \
         decides only on values carried inline"
    )]
    Offloaded { size: u64 },
}

impl ResolveError {
    /// `value` when the engine can read it, not when only a reference to it travels inline.
    pub(crate) fn inline(value: crate::types::Value) -> Result<crate::types::Value, ResolveError> {
        match value {
            crate::types::Value::Offloaded { size, .. } => Err(ResolveError::Offloaded { size }),
            inline => Ok(inline),
        }
    }
}

/// Why a map node's items cannot be gathered into its outputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatherError {
    #[error("the map has not expanded")]
    NotExpanded,
    #[error(
        "{succeeded} of {total} items succeeded, below min_success_ratio {min_success_ratio}{first_failure}"
    )]
    TooFewSucceeded {
        succeeded: usize,
        total: usize,
        min_success_ratio: f64,
        /// `; first failure: ITEM ERROR`, or empty when no item failed.
        first_failure: String,
    },
}

/// Why a dynamic node's planned workflow cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlannedError {
    #[error("not a dynamic node")]
    NotDynamic,
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}
