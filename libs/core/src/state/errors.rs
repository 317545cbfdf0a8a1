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
         decides only on values carried inline or fetched for it (a map's list)"
    )]
    Offloaded { size: u64, uri: String },
    #[error("a map item's list has no element {index}")]
    NotAList { index: usize },
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
