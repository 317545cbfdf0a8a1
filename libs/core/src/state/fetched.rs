//! Offloaded values the engine reads, fetched for it. A map's list (or a branch's condition operand) may be
//! too large to travel inline in an event, and then only its reference `{uri, size, digest, type}` is in the
//! state. `decide` and `apply` are
//! pure and never touch the blob store: the propeller asks `fetches_needed`, fetches those values (checked
//! against their digests) and hands them over with `store_fetched` before it decides again. A map whose
//! list (a branch whose operand) is not fetched yet is not decided; the items of an offloaded list are bound to their element
//! (`NodeBinding::Item`) rather than to a copy of it, so applying the map's expansion needs no value.
//! Fetched values are a cache beside the state, never part of it: not stored, not logged, and two states
//! that differ only here are equal.

use std::sync::Arc;

use crate::compiler::{Control, NodeBinding};
use crate::phase::NodePhase;
use crate::spec::TaskSpec;
use crate::types::Value;

use super::errors::ResolveError;
use super::model::ExecutionState;

impl ExecutionState {
    /// The offloaded references (`Value::Offloaded`) the engine needs fetched before it can go on: the
    /// lists of ready maps, those of expanded maps whose items are bound to an element of them, and the
    /// condition operands of branches that can choose.
    pub fn fetches_needed(&self) -> Vec<Value> {
        let mut needed: Vec<Value> = Vec::new();
        for branch in self.decidable_branches() {
            if let Some(Control::Branch { cases, .. }) = &self.workflow.nodes[branch].control {
                for operand in cases.iter().flat_map(|case| case.condition.refs()) {
                    self.note_unfetched(operand, &mut needed);
                }
            }
        }
        let running_maps = self
            .offloaded_maps
            .iter()
            .filter(|&&map| self.nodes[map].phase == NodePhase::Running);
        for &node in self.ready.iter().chain(running_maps) {
            let compiled = &self.workflow.nodes[node];
            let Some(Control::Map(control)) = &compiled.control else {
                continue;
            };
            let Some(binding) = compiled.inputs.get(&control.over) else {
                continue;
            };
            self.note_unfetched(binding, &mut needed);
        }
        needed
    }

    /// Adds the value `binding` resolves to, to `needed` when it is an offloaded reference not fetched yet
    /// (read in place: a ready map's inline list is not copied to be looked at).
    fn note_unfetched(&self, binding: &NodeBinding, needed: &mut Vec<Value>) {
        let reference = match binding {
            NodeBinding::WorkflowInput(name) => self.inputs.get(name),
            NodeBinding::NodeOutput { node, output } => self
                .nodes
                .get(*node)
                .and_then(|state| state.outputs.as_ref())
                .and_then(|outputs| outputs.get(output)),
            NodeBinding::Constant(_) | NodeBinding::Item { .. } => None,
        };
        if let Some(reference @ Value::Offloaded { .. }) = reference {
            if self.fetched_value(reference).is_none() && !needed.contains(reference) {
                needed.push(reference.clone());
            }
        }
    }

    /// The offloaded references node `node`'s inputs need fetched: the list its elements come from, for the
    /// item of a map over an offloaded list (a read model resolving an item's inputs after the map ended).
    pub fn fetches_needed_by(&self, node: usize) -> Vec<Value> {
        let Some(compiled) = self.workflow.nodes.get(node) else {
            return Vec::new();
        };
        let mut needed: Vec<Value> = Vec::new();
        for binding in compiled.inputs.values() {
            if let NodeBinding::Item { list, .. } = binding {
                self.note_unfetched(list, &mut needed);
            }
        }
        needed
    }

    /// Whether the value `binding` resolves to is offloaded and not fetched yet.
    pub(super) fn awaits_fetch(&self, binding: &NodeBinding) -> bool {
        let mut needed = Vec::new();
        self.note_unfetched(binding, &mut needed);
        !needed.is_empty()
    }

    /// Hands over the value `uri` names, fetched from the blob store and checked against its digest.
    pub fn store_fetched(&mut self, uri: String, value: Value) {
        self.fetched.0.insert(uri, Arc::new(value));
    }

    /// Forgets every fetched value (when the execution has ended, say).
    pub fn forget_fetched(&mut self) {
        self.fetched.0.clear();
    }

    /// What an offloaded `reference` holds, when it was fetched; `value` itself when it is inline.
    pub(super) fn fetched_value<'a>(&'a self, value: &'a Value) -> Option<&'a Value> {
        match value {
            Value::Offloaded { uri, .. } => self.fetched.0.get(uri).map(Arc::as_ref),
            inline => Some(inline),
        }
    }

    /// `value`, read whole: an offloaded one as fetched, or an error when it was not.
    pub(super) fn read_whole(&self, value: Value) -> Result<Value, ResolveError> {
        match &value {
            Value::Offloaded { uri, size, .. } => match self.fetched.0.get(uri) {
                Some(fetched) => Ok(fetched.as_ref().clone()),
                None => Err(ResolveError::Offloaded {
                    size: *size,
                    uri: uri.clone(),
                }),
            },
            _ => Ok(value),
        }
    }

    /// Element `index` of the list `list` binds.
    pub(super) fn resolve_item(&self, list: &NodeBinding, index: usize) -> Result<Value, ResolveError> {
        let reference = self.resolve(list)?;
        let whole = self.fetched_value(&reference).ok_or_else(|| match &reference {
            Value::Offloaded { uri, size, .. } => ResolveError::Offloaded {
                size: *size,
                uri: uri.clone(),
            },
            _ => ResolveError::NotAList { index },
        })?;
        match whole {
            Value::List(values) => values.get(index).cloned().ok_or(ResolveError::NotAList { index }),
            _ => Err(ResolveError::NotAList { index }),
        }
    }

    /// The task an attempt of `node` runs: its compiled task, or for the item of a map over an offloaded
    /// list, the map's task with the resources the item names (`item_resources`), which could not be
    /// filled in when the map expanded without its list.
    pub fn attempt_task(&self, node: usize) -> Result<TaskSpec, ResolveError> {
        let compiled = &self.workflow.nodes[node];
        let Some(map) = compiled.item_of else {
            return Ok(compiled.task.clone());
        };
        let Some(Control::Map(control)) = &self.workflow.nodes[map].control else {
            return Ok(compiled.task.clone());
        };
        let (Some(template), Some(NodeBinding::Item { list, index })) = (
            control.item_resources.as_deref(),
            compiled.inputs.get(&control.over),
        ) else {
            return Ok(compiled.task.clone());
        };
        let item = self.resolve_item(list, *index)?;
        // Checked when the map was decided; a value that no longer fits keeps the task's own.
        Ok(
            crate::item_resources::item_task(&control.task, Some(template), &item)
                .unwrap_or_else(|_| (*control.task).clone()),
        )
    }
}
