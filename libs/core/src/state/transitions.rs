//! What one `apply` changed. Projections (admin's read models) write the rows of exactly these parts of the
//! state after folding the same events through the same `apply`, so the rules of a transition live in one
//! place: the state machine. A projection never re-derives a phase on its own.

use std::ops::Range;

/// The parts of an execution's state one applied event (or several, merged) changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transitions {
    /// The execution's own phase, timings, outputs or error changed.
    pub execution: bool,
    /// Nodes that did not exist before: a map's items or a dynamic node's planned nodes.
    pub added: Option<Range<usize>>,
    /// Nodes whose phase, attempts, outputs, error, timings or wait changed (a node may repeat).
    pub nodes: Vec<usize>,
}

impl Transitions {
    pub fn is_empty(&self) -> bool {
        !self.execution && self.added.is_none() && self.nodes.is_empty()
    }

    /// Folds `later` into these, as if one event had made both.
    pub fn merge(&mut self, later: Transitions) {
        self.execution |= later.execution;
        self.added = match (self.added.take(), later.added) {
            (Some(a), Some(b)) => Some(a.start.min(b.start)..a.end.max(b.end)),
            (a, b) => a.or(b),
        };
        self.nodes.extend(later.nodes);
    }

    /// Every changed node once, in index order, added nodes included.
    pub fn changed_nodes(&self) -> Vec<usize> {
        let mut nodes = self.nodes.clone();
        if let Some(added) = &self.added {
            nodes.extend(added.clone());
        }
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// The transitions of the event being applied, kept on the state while `apply` runs (its helpers record into
/// it) and handed back when it returns. Not part of the state: two states that differ only here are equal,
/// and it is never stored.
#[derive(Debug, Clone, Default)]
pub(super) struct Recorder(pub(super) Transitions);

impl PartialEq for Recorder {
    fn eq(&self, _other: &Recorder) -> bool {
        true
    }
}
