//! The scheduler: fires the active launch plans that carry a schedule (cron or fixed rate), by appending
//! `ExecutionRequested` to `aloft.executions` with an execution name derived from (launch plan, scheduled
//! time). A repeated fire — by a new leader after a crash, or by a paused old one — is the same execution
//! and is recognised downstream, so no time runs twice.
//!
//! It holds no state outside the log: launch plans come from `aloft.registry`, its progress (fired and
//! skipped times) from its own events on `aloft.schedules`, whose single partition also elects the leader
//! through the consumer group. It never runs executions itself.

pub mod clock;
pub mod metrics;
pub mod plan;
mod service;

pub use service::{execution_name, Scheduler, SchedulerHandle, SchedulerOptions, SchedulerProgress};
