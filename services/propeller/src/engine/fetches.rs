//! Offloaded values the engine reads, fetched for it from the blob store: a map's list too large to travel
//! inline (see `aloft_core::state::FetchedValues`). The loop asks for what an execution's state says it
//! needs (`fetches_needed`) instead of deciding it; each value is fetched once, in the background, checked
//! against its digest and parsed by its type, and comes back to the loop as a `Fetched`, which hands it to
//! the state and decides again. Attempt starts and re-attachments whose inputs are elements of such a list
//! wait here until it has come. Like the cache gate, this never calls back into the engine.

use std::collections::{HashMap, HashSet};

use aloft_blobstore::BlobStore;
use aloft_core::{ExecutionId, Value};
use tokio::sync::mpsc;

use crate::attempts::AttemptKey;

/// A fetch that ended: the value of `uri`, or why it could not be read.
pub(super) struct Fetched {
    pub partition: u32,
    pub execution: ExecutionId,
    pub uri: String,
    pub value: Result<Value, String>,
}

/// Work that waits for an execution's fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterFetch {
    /// Start attempt `attempt` of `node` (its `AttemptStarted` is applied).
    Start { node: usize, attempt: u32 },
    /// Re-attach to an attempt a previous owner started.
    Reattach(AttemptKey),
}

pub(super) struct Fetches {
    blobs: Option<BlobStore>,
    in_flight: HashMap<ExecutionId, HashSet<String>>,
    waiting: HashMap<ExecutionId, Vec<AfterFetch>>,
    answered: mpsc::UnboundedSender<Fetched>,
}

impl Fetches {
    pub(super) fn new(blobs: Option<BlobStore>) -> (Fetches, mpsc::UnboundedReceiver<Fetched>) {
        let (answered, answers) = mpsc::unbounded_channel();
        let fetches = Fetches {
            blobs,
            in_flight: HashMap::new(),
            waiting: HashMap::new(),
            answered,
        };
        (fetches, answers)
    }

    /// Whether `execution` waits for a fetch.
    pub(super) fn is_fetching(&self, execution: &ExecutionId) -> bool {
        self.in_flight.contains_key(execution)
    }

    /// Fetches the offloaded references in `needed` for `execution`, each unless it is already on its way.
    pub(super) fn request(&mut self, partition: u32, execution: &ExecutionId, needed: Vec<Value>) {
        for reference in needed {
            let Value::Offloaded { uri, .. } = &reference else {
                continue;
            };
            if !self
                .in_flight
                .entry(execution.clone())
                .or_default()
                .insert(uri.clone())
            {
                continue;
            }
            let (uri, execution, answered) = (uri.clone(), execution.clone(), self.answered.clone());
            let store = self
                .blobs
                .as_ref()
                .map(|blobs| blobs.for_tenant(&execution.project, &execution.domain));
            tokio::spawn(async move {
                // The store retries what fails on its way (`aloft_blobstore`'s retry config).
                let value = match store {
                    Some(store) => store.resolve(&reference).await.map_err(|e| e.to_string()),
                    None => Err("the propeller has no blob store to read it from".to_string()),
                };
                let _ = answered.send(Fetched {
                    partition,
                    execution,
                    uri,
                    value,
                });
            });
        }
    }

    /// Holds `work` until `execution`'s fetches have come.
    pub(super) fn wait(&mut self, execution: &ExecutionId, work: AfterFetch) {
        let waiting = self.waiting.entry(execution.clone()).or_default();
        if !waiting.contains(&work) {
            waiting.push(work);
        }
    }

    /// Records that `fetched` came; the work that waited for its execution once nothing more is on its way.
    pub(super) fn answered(&mut self, fetched: &Fetched) -> Vec<AfterFetch> {
        if let Some(uris) = self.in_flight.get_mut(&fetched.execution) {
            uris.remove(&fetched.uri);
            if !uris.is_empty() {
                return Vec::new();
            }
            self.in_flight.remove(&fetched.execution);
        }
        self.waiting.remove(&fetched.execution).unwrap_or_default()
    }
}
