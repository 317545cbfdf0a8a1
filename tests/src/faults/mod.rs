//! The fault harness: a steady workload on the real parts (a Kafka-compatible broker with persistent
//! storage, Postgres, Redis, two propellers, admin, the catalog, the scheduler and the notifier as
//! processes), faults injected on a schedule, and a checker over the raw log, the read models and the
//! webhooks received afterwards.
//!
//! `parts` owns the dependencies the harness can break (its own broker, Redis and Postgres cluster, the
//! deployment's database connections); `island` the network namespace one propeller runs in, whose link to
//! the broker the harness can cut; `workload` registers and launches the mix; `checker` reads what happened.

pub mod checker;
pub mod island;
pub mod parts;
pub mod workload;

use std::time::Duration;

/// One kind of fault the harness injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A propeller SIGKILLed and started again.
    PropellerKilled,
    /// The broker SIGKILLed and restarted on the same storage.
    BrokerKilled,
    /// The broker SIGSTOPped for longer than the consumer session timeout, then continued.
    BrokerPaused,
    /// Every connection of the deployment's database killed with `pg_terminate_backend`.
    DatabaseConnectionsKilled,
    /// Postgres shut down (fast: every session ended) and started again.
    DatabaseRestarted,
    /// Redis SIGKILLed and restarted empty.
    RedisRestartedEmpty,
    /// The notifier SIGKILLed while it delivers, and started again.
    NotifierKilled,
    /// The propellers' work directory filled below `--min-free-disk` for a while, then freed.
    DiskFilled,
    /// The scheduler's clock stepped 90 s forward for 10 s, then back (its `--clock-offset-file`).
    SchedulerClockStepped,
    /// One propeller's link to the broker cut (silent, not reset) for longer than the session timeout while
    /// its links to Postgres, Redis and the catalog and its task processes keep running, then healed.
    PropellerCutOff,
    /// The previous release's propeller, run beside this build's since the start, stopped as a rolling
    /// upgrade stops it (SIGTERM) and started from this build. Only with `ALOFT_FAULTS_PREVIOUS_PROPELLER`.
    PropellerUpgraded,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::PropellerKilled,
        Fault::BrokerKilled,
        Fault::BrokerPaused,
        Fault::DatabaseConnectionsKilled,
        Fault::RedisRestartedEmpty,
        Fault::DatabaseRestarted,
        Fault::NotifierKilled,
        Fault::DiskFilled,
        Fault::SchedulerClockStepped,
        Fault::PropellerCutOff,
        Fault::PropellerUpgraded,
    ];

    /// The short name `ALOFT_FAULTS_KINDS` takes (a comma-separated list limits a run to those kinds).
    pub fn short_name(self) -> &'static str {
        match self {
            Fault::PropellerKilled => "propeller",
            Fault::BrokerKilled => "broker-kill",
            Fault::BrokerPaused => "broker-pause",
            Fault::DatabaseConnectionsKilled => "postgres",
            Fault::DatabaseRestarted => "postgres-restart",
            Fault::RedisRestartedEmpty => "redis",
            Fault::NotifierKilled => "notifier",
            Fault::DiskFilled => "disk",
            Fault::SchedulerClockStepped => "clock-step",
            Fault::PropellerCutOff => "propeller-cut",
            Fault::PropellerUpgraded => "propeller-upgrade",
        }
    }

    /// The kinds a run injects, in turn: `ALOFT_FAULTS_KINDS`, or all of them.
    pub fn chosen() -> Vec<Fault> {
        let Ok(names) = std::env::var("ALOFT_FAULTS_KINDS") else {
            return Fault::ALL.to_vec();
        };
        let chosen: Vec<Fault> = names
            .split(',')
            .map(|name| {
                Fault::ALL
                    .into_iter()
                    .find(|fault| fault.short_name() == name.trim())
                    .unwrap_or_else(|| panic!("ALOFT_FAULTS_KINDS: unknown fault {name:?}"))
            })
            .collect();
        chosen
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::PropellerKilled => "propeller SIGKILL + restart",
            Fault::BrokerKilled => "broker SIGKILL + restart (same storage)",
            Fault::BrokerPaused => "broker SIGSTOP 10 s (> session timeout)",
            Fault::DatabaseConnectionsKilled => "Postgres pg_terminate_backend (all connections)",
            Fault::DatabaseRestarted => "Postgres restarted (fast shutdown, 3 s down)",
            Fault::RedisRestartedEmpty => "Redis SIGKILL + restart empty",
            Fault::NotifierKilled => "notifier SIGKILL + restart",
            Fault::DiskFilled => "work directory disk full 5 s",
            Fault::SchedulerClockStepped => "scheduler clock +90 s for 10 s, then back",
            Fault::PropellerCutOff => "propeller cut off from the broker 15 s",
            Fault::PropellerUpgraded => "previous release's propeller upgraded (SIGTERM, this build)",
        }
    }
}

/// One fault as it happened: when it healed and how long the fleet took to run a new execution after.
#[derive(Debug, Clone)]
pub struct Injected {
    pub fault: Fault,
    /// Seconds since the run started.
    pub at_seconds: f64,
    /// From the fault's end (restart, continue) to the first execution launched after it succeeding; `None`
    /// when none did before the run ended.
    pub recovered_after: Option<Duration>,
    /// p99 of launch-to-start (the read model's `started_at - created_at`) of executions launched from the
    /// fault's start until 10 s after it healed, and of those launched in the 30 s after that.
    pub p99_during: Option<Duration>,
    pub p99_after: Option<Duration>,
}

/// The `q` quantile (0..=1) of `values`, or `None` when there are none.
pub fn quantile(values: &mut [i64], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    Some(Duration::from_millis(values[index].max(0) as u64))
}
