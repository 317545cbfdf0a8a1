//! Ordering: the topological order of a spec's nodes, or the nodes of one cycle.

use crate::spec::WorkflowSpec;

use super::errors::CompileError;

/// Kahn's algorithm; on a cycle, reports the nodes of one cycle in order.
pub(super) fn topological_order(
    spec: &WorkflowSpec,
    upstream: &[Vec<usize>],
) -> Result<Vec<usize>, CompileError> {
    let count = upstream.len();
    let mut downstream = vec![Vec::new(); count];
    let mut remaining_upstream = vec![0usize; count];
    for (node, ups) in upstream.iter().enumerate() {
        remaining_upstream[node] = ups.len();
        for &up in ups {
            downstream[up].push(node);
        }
    }
    let mut ready: Vec<usize> = (0..count).filter(|&n| remaining_upstream[n] == 0).rev().collect();
    let mut order = Vec::with_capacity(count);
    while let Some(node) = ready.pop() {
        order.push(node);
        for &down in downstream[node].iter().rev() {
            remaining_upstream[down] -= 1;
            if remaining_upstream[down] == 0 {
                ready.push(down);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    // Walk upstream edges among the unordered nodes until one repeats: that is a cycle. Every unordered
    // node has an unordered upstream node (else Kahn's algorithm would have ordered it), so the walk ends.
    let mut in_cycle_candidates: Vec<bool> = vec![true; count];
    for &done in &order {
        in_cycle_candidates[done] = false;
    }
    let start = in_cycle_candidates.iter().position(|&c| c).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(&next) = upstream[current].iter().find(|&&u| in_cycle_candidates[u]) {
        if let Some(position) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> = path[position..]
                .iter()
                .rev()
                .map(|&n| spec.nodes[n].id.clone())
                .collect();
            cycle.push(cycle[0].clone());
            return Err(CompileError::Cycle { nodes: cycle });
        }
        path.push(next);
        current = next;
    }
    Err(CompileError::Cycle {
        nodes: path.iter().map(|&n| spec.nodes[n].id.clone()).collect(),
    })
}
