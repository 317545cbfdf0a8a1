//! `aloft-bench fairness`: the dispatcher under skewed load. Ten tenants with equal weights submit at once,
//! one of them 100 times as much as each other; executor slots free up as simulated attempts end (virtual
//! time, so the result does not depend on the machine's load). Reports each tenant's share of the attempts
//! started while every tenant still had work queued, Jain's fairness index over those shares, and the real
//! time the dispatcher spends per decision.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant;

use aloft_fairq::{jain_index, Dispatcher, Tenant};

#[derive(Debug, Clone)]
pub struct FairnessResult {
    pub shares: Vec<(String, f64)>,
    pub jain: f64,
    pub contended_starts: usize,
    pub decisions: usize,
    pub nanos_per_decision: f64,
}

pub fn run(tenants: usize, per_tenant: usize, capacity: usize) -> FairnessResult {
    let tenants: Vec<Tenant> = (0..tenants.max(2))
        .map(|i| Tenant::new(&format!("team-{i}"), "production"))
        .collect();
    let mut dispatcher: Dispatcher<u64> = Dispatcher::new(capacity.max(1));
    let mut submitted = 0u64;
    for (index, tenant) in tenants.iter().enumerate() {
        let count = if index == 0 { per_tenant * 100 } else { per_tenant };
        for _ in 0..count {
            // Durations 5-14 virtual ms, varied deterministically.
            dispatcher.push(tenant, 5 + (submitted * 7919) % 10);
            submitted += 1;
        }
    }
    let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let index_of: BTreeMap<&Tenant, usize> = tenants.iter().enumerate().map(|(i, t)| (t, i)).collect();
    let mut contended_starts = vec![0usize; tenants.len()];
    let mut now = 0u64;
    let mut decisions = 0usize;
    let mut dispatch_nanos = 0u128;
    loop {
        let contended = tenants.iter().all(|t| dispatcher.queued(t) > 0);
        let started_at = Instant::now();
        let mut started = Vec::new();
        while dispatcher.peek().is_some() {
            match dispatcher.start() {
                Some(start) => started.push(start),
                None => break,
            }
        }
        dispatch_nanos += started_at.elapsed().as_nanos();
        decisions += started.len();
        for (tenant, duration) in started {
            let index = index_of[&tenant];
            if contended {
                contended_starts[index] += 1;
            }
            running.push(Reverse((now + duration, index)));
        }
        let Some(Reverse((ends_at, index))) = running.pop() else {
            break;
        };
        now = ends_at;
        dispatcher.finished(&tenants[index]);
    }
    let total: usize = contended_starts.iter().sum();
    let shares: Vec<f64> = contended_starts
        .iter()
        .map(|count| *count as f64 / total.max(1) as f64)
        .collect();
    FairnessResult {
        jain: jain_index(&shares),
        shares: tenants
            .iter()
            .map(ToString::to_string)
            .zip(shares.iter().copied())
            .collect(),
        contended_starts: total,
        decisions,
        nanos_per_decision: dispatch_nanos as f64 / decisions.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_share_equally_under_skewed_load() {
        let result = run(10, 200, 16);
        assert!(result.jain >= 0.95, "{result:?}");
        assert_eq!(result.decisions, 200 * 100 + 9 * 200);
    }
}
