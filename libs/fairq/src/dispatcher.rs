//! The weighted deficit-round-robin dispatcher: per-tenant queues of ready work, served in rounds where
//! each active tenant may start as many items as its weight, under a global capacity and each tenant's
//! concurrency quota. It is work-conserving (a tenant alone gets all capacity; a tenant at its quota or
//! blocked on a pool is passed over, not waited for) and never preempts: a newly active tenant gets its
//! share at the next free slots.
//!
//! Pure and synchronous: resource pools (which may live in Redis) are asked by the caller between
//! `peek` and `start`, so the dispatcher never awaits.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// A tenant: project and domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant {
    pub project: String,
    pub domain: String,
}

impl Tenant {
    pub fn new(project: &str, domain: &str) -> Tenant {
        Tenant {
            project: project.to_string(),
            domain: domain.to_string(),
        }
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project, self.domain)
    }
}

/// How a tenant is served. A weight of 3 against 1 gives a 75/25 split of starts under saturation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPolicy {
    pub weight: u32,
    /// At most this many of the tenant's items run at once (`None`: only the global capacity limits it).
    pub max_running: Option<u32>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            weight: 1,
            max_running: None,
        }
    }
}

/// A tenant quota that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("weight must be at least 1")]
    ZeroWeight,
    #[error("max_running must be at least 1 (leave it out for no limit)")]
    ZeroMaxRunning,
}

impl TenantPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.weight == 0 {
            return Err(PolicyError::ZeroWeight);
        }
        if self.max_running == Some(0) {
            return Err(PolicyError::ZeroMaxRunning);
        }
        Ok(())
    }
}

/// Which limit holds a tenant's queue: why its ready items are not running yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// Every executor slot is taken.
    Capacity { running: usize, capacity: usize },
    /// The tenant runs as many as its quota allows.
    TenantQuota { running: u32, max: u32 },
    /// A resource pool has no tokens left.
    Pool { pool: String },
    /// The propeller's compute (CPU, memory, GPUs) cannot hold the head item's request now; `shortage`
    /// names the resource, what the item wants and what is free.
    Compute { shortage: String },
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitReason::Capacity { running, capacity } => {
                write!(f, "executor capacity: {running} of {capacity} slots in use")
            }
            WaitReason::TenantQuota { running, max } => write!(f, "tenant quota: {running} of {max} running"),
            WaitReason::Pool { pool } => write!(f, "resource pool {pool}: no tokens free"),
            WaitReason::Compute { shortage } => write!(f, "resources: {shortage}"),
        }
    }
}

struct TenantQueue<T> {
    items: VecDeque<T>,
    policy: TenantPolicy,
    running: u32,
    deficit: u32,
    /// What the head item waits for (a pool's tokens, or compute), until it frees up.
    blocked_on: Option<WaitReason>,
}

impl<T> TenantQueue<T> {
    fn new(policy: TenantPolicy) -> Self {
        TenantQueue {
            items: VecDeque::new(),
            policy,
            running: 0,
            deficit: 0,
            blocked_on: None,
        }
    }

    fn at_quota(&self) -> bool {
        self.policy.max_running.is_some_and(|max| self.running >= max)
    }
}

/// The next item the dispatcher would start, with its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a, T> {
    pub tenant: &'a Tenant,
    pub item: &'a T,
}

pub struct Dispatcher<T> {
    capacity: usize,
    running: usize,
    tenants: HashMap<Tenant, TenantQueue<T>>,
    /// Tenants with queued items, in round-robin order; the front one is being served.
    active: VecDeque<Tenant>,
    policies: BTreeMap<Tenant, TenantPolicy>,
}

impl<T> Dispatcher<T> {
    pub fn new(capacity: usize) -> Dispatcher<T> {
        Dispatcher {
            capacity,
            running: 0,
            tenants: HashMap::new(),
            active: VecDeque::new(),
            policies: BTreeMap::new(),
        }
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Applies a tenant's policy from now on (running items are not touched).
    pub fn set_policy(&mut self, tenant: &Tenant, policy: TenantPolicy) {
        self.policies.insert(tenant.clone(), policy);
        if let Some(queue) = self.tenants.get_mut(tenant) {
            queue.policy = policy;
        }
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self, tenant: &Tenant) -> usize {
        self.tenants.get(tenant).map_or(0, |q| q.items.len())
    }

    pub fn running_of(&self, tenant: &Tenant) -> u32 {
        self.tenants.get(tenant).map_or(0, |q| q.running)
    }

    /// Queues a ready item at the back of its tenant's queue.
    pub fn push(&mut self, tenant: &Tenant, item: T) {
        let policy = self.policies.get(tenant).copied().unwrap_or_default();
        let queue = self
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantQueue::new(policy));
        let newly_active = queue.items.is_empty();
        queue.deficit = if newly_active { 0 } else { queue.deficit };
        queue.items.push_back(item);
        if newly_active {
            // A tenant that just became active is served at the next free slot, unless the tenant at the
            // front is in the middle of its turn.
            let front_mid_turn = self
                .active
                .front()
                .and_then(|front| self.tenants.get(front))
                .is_some_and(|front| front.deficit > 0);
            if front_mid_turn {
                self.active.push_back(tenant.clone());
            } else {
                self.active.push_front(tenant.clone());
            }
        }
    }

    /// A pool released tokens: its waiters may try again.
    pub fn pool_freed(&mut self, pool: &str) {
        for queue in self.tenants.values_mut() {
            if matches!(&queue.blocked_on, Some(WaitReason::Pool { pool: blocked }) if blocked == pool) {
                queue.blocked_on = None;
            }
        }
    }

    /// Lets every tenant blocked on a pool try again (pools shared with other replicas free tokens this
    /// dispatcher does not see). Says whether any was blocked.
    pub fn retry_blocked(&mut self) -> bool {
        let mut any = false;
        for queue in self.tenants.values_mut() {
            any |= queue.blocked_on.take().is_some();
        }
        any
    }

    /// The item to start next, or `None` when nothing may start now. The caller acquires the item's pool
    /// tokens and then calls `start`, or `blocked` when a pool has none.
    pub fn peek(&mut self) -> Option<Candidate<'_, T>> {
        if self.running >= self.capacity {
            return None;
        }
        // One pass over the active tenants at most: each is either served now or passed over.
        for _ in 0..self.active.len() {
            let tenant = self.active.front()?.clone();
            let queue = self.tenants.get_mut(&tenant)?;
            if queue.items.is_empty() {
                self.active.pop_front();
                continue;
            }
            if queue.at_quota() || queue.blocked_on.is_some() {
                // Work-conserving: the others go first; this tenant keeps no credit for the wait.
                queue.deficit = 0;
                self.active.rotate_left(1);
                continue;
            }
            if queue.deficit == 0 {
                queue.deficit = queue.policy.weight.max(1);
            }
            let tenant = self.active.front()?;
            let queue = self.tenants.get(tenant)?;
            return queue.items.front().map(|item| Candidate { tenant, item });
        }
        None
    }

    /// Starts the item `peek` returned: removes it from its queue and counts it as running.
    pub fn start(&mut self) -> Option<(Tenant, T)> {
        let tenant = self.active.front()?.clone();
        let queue = self.tenants.get_mut(&tenant)?;
        let item = queue.items.pop_front()?;
        queue.running += 1;
        queue.deficit = queue.deficit.saturating_sub(1);
        self.running += 1;
        if queue.items.is_empty() {
            queue.deficit = 0;
            self.active.pop_front();
        } else if queue.deficit == 0 {
            // Its share of this round is used: the next tenant's turn.
            self.active.rotate_left(1);
        }
        Some((tenant, item))
    }

    /// The item `peek` returned needs `pool`, which has no tokens: its tenant waits until `pool_freed`.
    pub fn blocked(&mut self, pool: &str) {
        self.blocked_by(WaitReason::Pool {
            pool: pool.to_string(),
        });
    }

    /// The item `peek` returned cannot start for `reason` (a pool, or compute that is in use): its tenant
    /// is passed over until `retry_blocked`.
    pub fn blocked_by(&mut self, reason: WaitReason) {
        if let Some(tenant) = self.active.front().cloned() {
            if let Some(queue) = self.tenants.get_mut(&tenant) {
                queue.blocked_on = Some(reason);
                queue.deficit = 0;
            }
            self.active.rotate_left(1);
        }
    }

    /// An item of `tenant` stopped running.
    pub fn finished(&mut self, tenant: &Tenant) {
        if let Some(queue) = self.tenants.get_mut(tenant) {
            queue.running = queue.running.saturating_sub(1);
        }
        self.running = self.running.saturating_sub(1);
    }

    /// Takes every queued item for which `unwanted` holds out of the queues (cancelled before it started).
    pub fn remove_where(&mut self, mut unwanted: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for queue in self.tenants.values_mut() {
            let (gone, kept): (VecDeque<T>, VecDeque<T>) =
                queue.items.drain(..).partition(|item| unwanted(item));
            queue.items = kept;
            removed.extend(gone);
            if queue.items.is_empty() {
                queue.deficit = 0;
            }
        }
        let tenants = &self.tenants;
        self.active
            .retain(|tenant| tenants.get(tenant).is_some_and(|queue| !queue.items.is_empty()));
        removed
    }

    /// The limit that keeps `tenant`'s queued items from starting now (`None`: nothing queued).
    pub fn wait_reason(&self, tenant: &Tenant) -> Option<WaitReason> {
        let queue = self.tenants.get(tenant)?;
        if queue.items.is_empty() {
            return None;
        }
        if let Some(reason) = &queue.blocked_on {
            return Some(reason.clone());
        }
        if let Some(max) = queue.policy.max_running.filter(|max| queue.running >= *max) {
            return Some(WaitReason::TenantQuota {
                running: queue.running,
                max,
            });
        }
        Some(WaitReason::Capacity {
            running: self.running,
            capacity: self.capacity,
        })
    }
}

/// Jain's fairness index of per-tenant shares (1.0: perfectly equal; 1/n: one tenant has everything).
pub fn jain_index(shares: &[f64]) -> f64 {
    let sum: f64 = shares.iter().sum();
    let squares: f64 = shares.iter().map(|s| s * s).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (shares.len() as f64 * squares)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_starts(dispatcher: &mut Dispatcher<u32>, count: usize) -> Vec<Tenant> {
        let mut started = Vec::new();
        for _ in 0..count {
            if dispatcher.peek().is_none() {
                break;
            }
            let (tenant, _) = dispatcher.start().expect("peeked item starts");
            started.push(tenant);
        }
        started
    }

    #[test]
    fn a_tenant_alone_gets_all_capacity() {
        let a = Tenant::new("a", "prod");
        let mut dispatcher = Dispatcher::new(8);
        for i in 0..20 {
            dispatcher.push(&a, i);
        }
        assert_eq!(drain_starts(&mut dispatcher, 100).len(), 8);
        assert_eq!(
            dispatcher.wait_reason(&a),
            Some(WaitReason::Capacity {
                running: 8,
                capacity: 8
            })
        );
    }

    #[test]
    fn weights_split_starts_under_saturation() {
        let (a, b) = (Tenant::new("a", "prod"), Tenant::new("b", "prod"));
        let mut dispatcher = Dispatcher::new(1);
        dispatcher.set_policy(
            &a,
            TenantPolicy {
                weight: 3,
                max_running: None,
            },
        );
        for i in 0..1000 {
            dispatcher.push(&a, i);
            dispatcher.push(&b, i);
        }
        let mut counts = HashMap::new();
        for _ in 0..400 {
            let (tenant, _) = {
                dispatcher.peek().expect("work is queued");
                dispatcher.start().expect("starts")
            };
            *counts.entry(tenant.clone()).or_insert(0) += 1;
            dispatcher.finished(&tenant);
        }
        assert_eq!((counts[&a], counts[&b]), (300, 100));
    }

    #[test]
    fn a_newly_active_tenant_starts_at_the_next_free_slot_without_preemption() {
        let (a, b) = (Tenant::new("a", "prod"), Tenant::new("b", "prod"));
        let mut dispatcher = Dispatcher::new(4);
        for i in 0..1000 {
            dispatcher.push(&a, i);
        }
        assert_eq!(drain_starts(&mut dispatcher, 10).len(), 4);
        dispatcher.push(&b, 0);
        assert!(
            dispatcher.peek().is_none(),
            "no preemption: all four slots stay with a"
        );
        dispatcher.finished(&a);
        let (tenant, _) = {
            dispatcher.peek().expect("a slot is free");
            dispatcher.start().expect("starts")
        };
        assert_eq!(tenant, b, "b is served at the first free slot");
    }

    #[test]
    fn quotas_and_pools_pass_the_tenant_over_and_others_use_the_slots() {
        let (a, b) = (Tenant::new("a", "prod"), Tenant::new("b", "prod"));
        let mut dispatcher = Dispatcher::new(10);
        dispatcher.set_policy(
            &a,
            TenantPolicy {
                weight: 1,
                max_running: Some(2),
            },
        );
        for i in 0..5 {
            dispatcher.push(&a, i);
            dispatcher.push(&b, i);
        }
        let started = drain_starts(&mut dispatcher, 100);
        assert_eq!(started.iter().filter(|t| **t == a).count(), 2);
        assert_eq!(started.iter().filter(|t| **t == b).count(), 5);
        assert_eq!(
            dispatcher.wait_reason(&a),
            Some(WaitReason::TenantQuota { running: 2, max: 2 })
        );

        let c = Tenant::new("c", "prod");
        dispatcher.push(&c, 0);
        dispatcher.peek().expect("c is next");
        dispatcher.blocked("warehouse");
        assert_eq!(
            dispatcher.wait_reason(&c),
            Some(WaitReason::Pool {
                pool: "warehouse".into()
            })
        );
        assert!(dispatcher.peek().is_none(), "a at quota, c blocked");
        dispatcher.pool_freed("warehouse");
        dispatcher.peek().expect("c may try again");
        assert_eq!(dispatcher.start().map(|(t, _)| t), Some(c));
    }

    #[test]
    fn tenants_blocked_on_pools_try_again_when_asked() {
        let (a, b) = (Tenant::new("a", "prod"), Tenant::new("b", "prod"));
        let mut dispatcher = Dispatcher::new(4);
        dispatcher.push(&a, 1);
        dispatcher.push(&b, 2);
        dispatcher.peek().expect("one of them is next");
        dispatcher.blocked("warehouse");
        dispatcher.peek().expect("the other is next");
        dispatcher.blocked("lake");
        assert!(dispatcher.peek().is_none(), "both wait for pools");
        assert!(dispatcher.retry_blocked(), "two tenants were blocked");
        assert!(!dispatcher.retry_blocked(), "none is blocked any more");
        assert_eq!(drain_starts(&mut dispatcher, 10).len(), 2);
    }

    #[test]
    fn invalid_policies_are_named() {
        assert!(TenantPolicy {
            weight: 0,
            max_running: None
        }
        .validate()
        .unwrap_err()
        .to_string()
        .contains("weight"));
        assert!(TenantPolicy {
            weight: 1,
            max_running: Some(0)
        }
        .validate()
        .unwrap_err()
        .to_string()
        .contains("max_running"));
    }

    #[test]
    fn jain_index_bounds() {
        assert!((jain_index(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-9);
        assert!((jain_index(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-9);
    }
}
