//! The loop's follow-ups of blob-store traffic it started (`fetches`, `offloads`): a fetched list handed
//! to its execution's state, with the attempt starts and re-attachments that waited for it; decisions whose
//! large values were offloaded, appended at last.

use tracing::warn;

use super::fetches::{AfterFetch, Fetched};
use super::offloads::Offloaded;
use super::partition::attempt_request;
use super::{execution_failed, Engine};
use crate::attempts::{AttemptKey, AttemptToReattach};

impl Engine {
    /// Hands a fetched value to its execution's state, then carries out what waited for it and decides
    /// again; a value that cannot be read fails the execution, naming it.
    pub(super) fn on_fetched(&mut self, fetched: Fetched) {
        let waiting = self.fetches.answered(&fetched);
        let Fetched {
            partition,
            execution,
            uri,
            value,
        } = fetched;
        let Some(state) = self
            .partitions
            .get_mut(&partition)
            .and_then(|runtime| runtime.fold.executions.get_mut(&execution))
        else {
            return;
        };
        match value {
            Ok(value) => state.store_fetched(uri, value),
            Err(error) => {
                let error = format!("cannot read the offloaded list {uri} a map expands: {error}");
                warn!(execution = %execution, %error, "failing the execution");
                self.append_decisions(partition, &execution, vec![execution_failed(&execution, error)]);
                return;
            }
        }
        if self.fetches.is_fetching(&execution) {
            return;
        }
        for work in waiting {
            match work {
                AfterFetch::Start { node, attempt } => {
                    let key = AttemptKey {
                        execution: execution.clone(),
                        node,
                        attempt,
                    };
                    if self.still_running(partition, &key) {
                        self.start_attempt(partition, &execution, node, attempt);
                    }
                }
                AfterFetch::Reattach(key) => self.reattach_after_fetch(partition, key),
            }
        }
        self.decide_and_append(partition, &execution);
    }

    /// Appends decisions whose large values were offloaded, and decides again; decisions whose values could
    /// not be stored fail the execution, naming why.
    pub(super) fn on_offloaded(&mut self, offloaded: Offloaded) {
        self.offloads.finished(&offloaded);
        let Offloaded {
            partition,
            execution,
            decisions,
        } = offloaded;
        if !self
            .partitions
            .get(&partition)
            .is_some_and(|runtime| runtime.active)
        {
            return;
        }
        match decisions {
            Ok(decisions) => self.append_or_offload(partition, &execution, decisions, false),
            Err(error) => {
                warn!(execution = %execution, %error, "failing the execution");
                let failure = execution_failed(&execution, error);
                self.append_or_offload(partition, &execution, vec![failure], false);
            }
        }
        self.decide_and_append(partition, &execution);
    }

    /// Whether the state says attempt `key` runs (it may have been cancelled while its inputs were fetched).
    fn still_running(&self, partition: u32, key: &AttemptKey) -> bool {
        self.partitions
            .get(&partition)
            .and_then(|runtime| runtime.fold.executions.get(&key.execution))
            .and_then(|state| state.nodes.get(key.node))
            .and_then(|node| node.running_attempt())
            .is_some_and(|running| running.number == key.attempt)
    }

    /// Re-attaches to an attempt of a previous owner whose inputs needed a fetch, or records it lost.
    fn reattach_after_fetch(&mut self, partition: u32, key: AttemptKey) {
        if self.handed.contains(&key) || !self.still_running(partition, &key) {
            return;
        }
        let Some(state) = self
            .partitions
            .get(&partition)
            .and_then(|runtime| runtime.fold.executions.get(&key.execution))
        else {
            return;
        };
        match attempt_request(state, key.node, key.attempt) {
            Ok(request) => {
                let interruptible = state.nodes[key.node].is_interruptible(key.attempt);
                self.handed.insert(key.clone());
                self.attempts.reattach(AttemptToReattach {
                    partition,
                    interruptible,
                    key,
                    request,
                });
            }
            Err(_) => self.record_lost(partition, key),
        }
    }
}
