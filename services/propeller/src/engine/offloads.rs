//! Decisions too large for one event, made small enough: the outputs the engine gathers itself (a map's
//! lists of its items' outputs, an execution's outputs) may together be larger than a record may be, though
//! each item's output travelled inline. Such values are offloaded to the blob store as a task's large
//! outputs are, under the execution's raw-data prefix (`.../<node>/gathered/<output>.value`, or
//! `.../outputs/<output>.value`), and the decisions go out with references to them. The upload runs in the
//! background; the loop decides nothing more for the execution meanwhile, and appends the decisions when it
//! is done (or fails the execution, naming what could not be stored). Like the cache gate, this never calls
//! back into the engine.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aloft_blobstore::BlobStore;
use aloft_core::compiler::Control;
use aloft_core::events::ExecutionEvent;
use aloft_core::state::ExecutionState;
use aloft_core::{ExecutionId, LiteralType};
use tokio::sync::mpsc;

/// Decisions whose large values were offloaded (or why they could not be).
pub(super) struct Offloaded {
    pub partition: u32,
    pub execution: ExecutionId,
    pub decisions: Result<Vec<ExecutionEvent>, String>,
}

pub(super) struct Offloads {
    blobs: Option<BlobStore>,
    in_flight: HashSet<ExecutionId>,
    done: mpsc::UnboundedSender<Offloaded>,
}

/// The values of one decision that may be offloaded: its outputs, their types, the engine-read ones that
/// must stay, and where each goes.
struct Job {
    index: usize,
    types: BTreeMap<String, LiteralType>,
    keep_inline: BTreeSet<String>,
    key_prefix: String,
}

impl Offloads {
    pub(super) fn new(blobs: Option<BlobStore>) -> (Offloads, mpsc::UnboundedReceiver<Offloaded>) {
        let (done, finished) = mpsc::unbounded_channel();
        let offloads = Offloads {
            blobs,
            in_flight: HashSet::new(),
            done,
        };
        (offloads, finished)
    }

    /// Whether `execution`'s decisions are being offloaded.
    pub(super) fn is_offloading(&self, execution: &ExecutionId) -> bool {
        self.in_flight.contains(execution)
    }

    /// Starts offloading the gathered outputs of `decisions`; gives them back when nothing in them can be
    /// offloaded (no blob store, or no gathered output), for the caller to fail the execution.
    pub(super) fn offload(
        &mut self,
        partition: u32,
        state: &ExecutionState,
        decisions: Vec<ExecutionEvent>,
    ) -> Result<(), Vec<ExecutionEvent>> {
        let Some(blobs) = &self.blobs else {
            return Err(decisions);
        };
        let jobs = jobs(state, &decisions);
        if jobs.is_empty() || self.in_flight.contains(&state.id) {
            return Err(decisions);
        }
        let execution = state.id.clone();
        self.in_flight.insert(execution.clone());
        let store = blobs.for_tenant(&execution.project, &execution.domain);
        let done = self.done.clone();
        tokio::spawn(async move {
            let decisions = offload_outputs(&store, decisions, jobs).await;
            let _ = done.send(Offloaded {
                partition,
                execution,
                decisions,
            });
        });
        Ok(())
    }

    /// Records that `offloaded` is done.
    pub(super) fn finished(&mut self, offloaded: &Offloaded) {
        self.in_flight.remove(&offloaded.execution);
    }
}

/// The decisions among `decisions` that carry outputs the engine gathered, with their types.
fn jobs(state: &ExecutionState, decisions: &[ExecutionEvent]) -> Vec<Job> {
    let id = &state.id;
    let raw_data = format!("{}/{}/{}", id.project, id.domain, id.name);
    decisions
        .iter()
        .enumerate()
        .filter_map(|(index, decision)| match decision {
            ExecutionEvent::NodeSucceeded { node, .. } => {
                let compiled = state.workflow.nodes.get(*node)?;
                let Some(Control::Map(map)) = &compiled.control else {
                    return None;
                };
                let item = |output: &LiteralType| {
                    if map.min_success_ratio < 1.0 {
                        LiteralType::Optional(Box::new(output.clone()))
                    } else {
                        output.clone()
                    }
                };
                let types = map
                    .task
                    .interface
                    .outputs
                    .iter()
                    .map(|(name, output)| (name.clone(), LiteralType::List(Box::new(item(output)))))
                    .collect();
                Some(Job {
                    index,
                    types,
                    keep_inline: state.outputs_read_by_the_engine(*node),
                    key_prefix: format!("{raw_data}/{}/gathered", compiled.id),
                })
            }
            ExecutionEvent::ExecutionFinished { .. } => Some(Job {
                index,
                types: state.workflow.interface.outputs.clone(),
                keep_inline: BTreeSet::new(),
                key_prefix: format!("{raw_data}/outputs"),
            }),
            _ => None,
        })
        .collect()
}

/// `decisions` with the large values of each job's outputs offloaded. A gathered value that holds
/// references already (items whose outputs were offloaded) is small, and stays as it is.
async fn offload_outputs(
    store: &BlobStore,
    mut decisions: Vec<ExecutionEvent>,
    jobs: Vec<Job>,
) -> Result<Vec<ExecutionEvent>, String> {
    for job in jobs {
        let outputs = match decisions.get_mut(job.index) {
            Some(ExecutionEvent::NodeSucceeded { outputs, .. })
            | Some(ExecutionEvent::ExecutionFinished { outputs, .. }) => outputs,
            _ => continue,
        };
        let mut keep_inline = job.keep_inline;
        keep_inline.extend(
            outputs
                .iter()
                .filter(|(_, value)| aloft_blobstore::holds_offloaded(value))
                .map(|(name, _)| name.clone()),
        );
        let key_of = |name: &str| format!("{}/{name}.value", job.key_prefix);
        store
            .offload_large(outputs, &job.types, &keep_inline, store.value_limits(), key_of)
            .await
            .map_err(|error| format!("offloading gathered outputs: {error}"))?;
    }
    Ok(decisions)
}
