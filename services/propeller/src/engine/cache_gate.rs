//! The cache gate: holds back the start of each cached node (`memo::looked_up_before_start`) until the
//! catalog has answered, asking it in the background. A hit is then decided instead of the start, as one
//! `NodeCacheHit` with the stored outputs; a miss or an unreachable catalog starts the attempt, which runs
//! without asking again.

use std::collections::HashMap;
use std::sync::Arc;

use aloft_core::cache::{CacheOutcome, CacheStatus};
use aloft_core::events::{ExecutionEvent, Outputs};
use aloft_core::state::ExecutionState;
use aloft_core::ExecutionId;
use aloft_telemetry::trace::Span;
use tokio::sync::mpsc;

use crate::attempts::AttemptKey;
use crate::memo::{self, Catalog, PriorLookup};
use crate::metrics;

/// A cache lookup made before a cached node's `AttemptStarted` is decided.
enum CacheLookup {
    InFlight,
    /// Decided as one `NodeCacheHit` at the next decision, instead of the start.
    Hit {
        outputs: Outputs,
        outcome: CacheOutcome,
    },
    /// The attempt runs, without asking again.
    Prior(PriorLookup),
}

/// The catalog's answer to one lookup.
pub struct LookupDone {
    partition: u32,
    key: AttemptKey,
    lookup: CacheLookup,
}

pub struct CacheGate {
    catalog: Option<Arc<dyn Catalog>>,
    lookups: HashMap<AttemptKey, CacheLookup>,
    answered: mpsc::UnboundedSender<LookupDone>,
}

impl CacheGate {
    /// The gate, and the channel the catalog's answers arrive on (for `answered`).
    pub fn new(catalog: Option<Arc<dyn Catalog>>) -> (CacheGate, mpsc::UnboundedReceiver<LookupDone>) {
        let (answered, answers) = mpsc::unbounded_channel();
        let gate = CacheGate {
            catalog,
            lookups: HashMap::new(),
            answered,
        };
        (gate, answers)
    }

    /// Whether a start of `state`'s `node` waits for the catalog (so it cannot be decided ahead).
    pub fn holds_back(&self, state: &ExecutionState, node: usize) -> bool {
        self.catalog.is_some()
            && memo::looked_up_before_start(&state.workflow.nodes[node].task, state.overwrite_cache)
    }

    /// `decisions` for `execution` with every start of a cached node replaced: by a `NodeCacheHit` when the
    /// catalog answered a hit, dropped while the lookup is in flight (a lookup starts for a new one), kept
    /// once it answered a miss.
    pub fn filter(
        &mut self,
        partition: u32,
        state: &ExecutionState,
        traceparent: &str,
        decisions: Vec<ExecutionEvent>,
    ) -> Vec<ExecutionEvent> {
        let Some(catalog) = self.catalog.clone() else {
            return decisions;
        };
        let execution = &state.id;
        let mut kept = Vec::with_capacity(decisions.len());
        let mut to_look_up = Vec::new();
        for event in decisions {
            let ExecutionEvent::AttemptStarted {
                node, attempt, at, ..
            } = &event
            else {
                kept.push(event);
                continue;
            };
            let (node, attempt, at) = (*node, *attempt, *at);
            let task = &state.workflow.nodes[node].task;
            if !memo::looked_up_before_start(task, state.overwrite_cache) {
                kept.push(event);
                continue;
            }
            let key = AttemptKey {
                execution: execution.clone(),
                node,
                attempt,
            };
            match self.lookups.get(&key) {
                Some(CacheLookup::Hit { outputs, outcome }) => {
                    kept.push(ExecutionEvent::NodeCacheHit {
                        execution: execution.clone(),
                        node,
                        attempt,
                        outputs: outputs.clone(),
                        cache: outcome.clone(),
                        at,
                    });
                    self.lookups.remove(&key);
                }
                Some(CacheLookup::Prior(_)) => kept.push(event),
                Some(CacheLookup::InFlight) => {}
                None => {
                    // Inputs that do not resolve fail the attempt when it starts.
                    let cache_key = state
                        .node_inputs(node)
                        .ok()
                        .and_then(|inputs| memo::key_for(execution, task, &inputs));
                    match cache_key {
                        Some(cache_key) => to_look_up.push((key, cache_key, task.name.clone())),
                        None => kept.push(event),
                    }
                }
            }
        }
        for (key, cache_key, task) in to_look_up {
            self.lookups.insert(key.clone(), CacheLookup::InFlight);
            let span = Span::start(
                "propeller.cache_lookup",
                traceparent,
                false,
                &[
                    ("aloft.execution", key.execution.to_string()),
                    ("aloft.node", state.workflow.nodes[key.node].id.clone()),
                    ("aloft.task", task),
                ],
            );
            let (catalog, answered) = (Arc::clone(&catalog), self.answered.clone());
            tokio::spawn(async move {
                let answer = span
                    .scope(async { catalog.get_or_reserve(&cache_key, None).await })
                    .await;
                drop(span);
                let lookup = match answer {
                    Ok(memo::Lookup::Hit { outputs, source }) => CacheLookup::Hit {
                        outputs,
                        outcome: CacheOutcome {
                            key: cache_key,
                            status: CacheStatus::Hit,
                            source: Some(source),
                        },
                    },
                    Ok(_) => CacheLookup::Prior(PriorLookup::Missed),
                    Err(error) => CacheLookup::Prior(PriorLookup::Failed(error)),
                };
                let _ = answered.send(LookupDone {
                    partition,
                    key,
                    lookup,
                });
            });
        }
        kept
    }

    /// Records the catalog's answers; the executions to decide again, each once.
    pub fn answered(&mut self, answered: Vec<LookupDone>) -> Vec<(u32, ExecutionId)> {
        let mut to_decide: Vec<(u32, ExecutionId)> = Vec::new();
        for LookupDone {
            partition,
            key,
            lookup,
        } in answered
        {
            // Still wanted only while in flight (dropped when the execution ended or the partition moved).
            let Some(entry @ CacheLookup::InFlight) = self.lookups.get_mut(&key) else {
                continue;
            };
            if matches!(lookup, CacheLookup::Hit { .. }) {
                metrics::CACHE_LOOKUPS.increment(&[("result", "hit")], 1.0);
            }
            *entry = lookup;
            let wanted = (partition, key.execution);
            if !to_decide.contains(&wanted) {
                to_decide.push(wanted);
            }
        }
        to_decide
    }

    /// The lookup already made for an attempt about to run (it then does not ask again).
    pub fn take_prior(&mut self, key: &AttemptKey) -> Option<PriorLookup> {
        match self.lookups.remove(key) {
            Some(CacheLookup::Prior(prior)) => Some(prior),
            _ => None,
        }
    }

    /// Forgets the lookups of executions `gone` says are gone (ended, or on a partition moved away).
    pub fn forget(&mut self, gone: impl Fn(&ExecutionId) -> bool) {
        self.lookups.retain(|key, _| !gone(&key.execution));
    }
}
