//! Fair sharing of machines between tenants (project/domain): the weighted deficit-round-robin dispatcher
//! with global capacity and per-tenant quotas (`dispatcher`), resource pools shared by every propeller
//! replica through Redis leases (`pools`), and per-tenant API rate limits for admin (`ratelimit`). Each
//! shared-state part has an in-process implementation for `aloft dev` and a Redis one, tested by one
//! conformance suite.

pub mod dispatcher;
pub mod pools;
pub mod ratelimit;

pub use dispatcher::{jain_index, Dispatcher, Tenant, TenantPolicy, WaitReason};
