//! The execution state machine: `apply(state, event)` folds one event into the state and `decide(state,
//! now)` returns the decisions that follow from it. Both are pure; the propeller and every replay run the
//! same code, so replaying a partition from offset 0 rebuilds exactly the live state.
//!
//! `model` holds the state, `apply` its transitions, `decide` what follows from it, `fencing` the admission
//! rule and the fold of a partition, `snapshot` the fold's stored form,
//! `fetched` the offloaded values the engine reads, fetched for it by the propeller,
//! `transitions` what one `apply` changed (for the read models, which write those parts of the state).

mod apply;
mod decide;
mod errors;
mod fencing;
mod fetched;
mod model;
mod snapshot;
mod transitions;

pub use crate::phase::{AttemptPhase, ErrorKind, ExecutionPhase, NodePhase};
pub use decide::{child_execution_id, decide, MAX_STARTS_PER_DECISION};
pub use errors::{GatherError, PlannedError, ResolveError};
pub use fencing::{admit, AppliedEvent, EventMeta, PartitionFold};
pub use model::{AttemptState, ExecutionState, FetchedValues, NodeState};
pub use snapshot::SnapshotError;
pub use transitions::Transitions;
