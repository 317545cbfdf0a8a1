//! The pure domain of Aloft: identifiers, the literal type system, task/workflow specs, the workflow
//! compiler and the execution state machine (`apply` / `decide`).
//!
//! This crate owns the rules; it must not do IO (no tokio, no sqlx, no rdkafka). Every function here is a
//! plain function over plain data so it can be property-tested and replayed: live processing and replay of
//! the event log run exactly this code.

pub mod cache;
pub mod children;
pub mod compiler;
pub mod compute;
pub mod condition;
pub mod events;
pub mod ids;
pub mod interface;
pub mod invalid;
pub mod item_resources;
pub mod notify;
pub mod phase;
pub mod principal;
pub mod quantity;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod types;

pub use compiler::{compile_workflow, CompileError, CompiledNode, CompiledWorkflow, NodeBinding};
pub use events::{ExecutionEvent, RegistryEvent, ScheduleEvent};
pub use ids::{ExecutionId, Identifier, StreamId};
pub use invalid::SpecError;
pub use spec::{LaunchPlanSpec, ProjectSpec, TaskSpec, WorkflowSpec};
pub use state::{decide, AppliedEvent, ExecutionPhase, ExecutionState, NodePhase, PartitionFold};
pub use types::{LiteralType, Value};
