//! Task executors: how one attempt runs (and, shared by them, how its data is staged through the blob
//! store, its log shipped there and its secrets resolved). Every way of running a task is a
//! [`TaskExecutor`]: `process` (a local command in a fresh working directory), `container` (its own image on
//! a local container engine, or as a Kubernetes pod when the propeller is given a cluster) and the built-ins `noop`, `sleep` and `echo` (for tests and benchmarks) are
//! the implementations today, and [`Executors`] routes each attempt to the one its task kind names.
//!
//! A non-zero exit, a timeout or missing/ill-typed outputs are user errors (they count against the task's
//! retries); failing to prepare the attempt is a system error.

mod attempt;
mod builtin;
mod container;
mod kubernetes;
mod log_shipper;
mod process;
mod registry;
mod secrets;
mod staging;
mod termination;
mod workdir;

pub use attempt::{kind_of, AttemptId, AttemptOutcome, AttemptRequest, ExecutorError, TaskExecutor};
pub use builtin::BuiltinExecutor;
pub use container::{container_name, ContainerExecutor, ContainerOptions};
pub use kubernetes::{
    attempt_pod, attempt_selector, pod_data, pod_name, pod_state, DataHelper, KubernetesExecutor,
    KubernetesOptions, PodSettings, PodState,
};
pub use log_shipper::{log_prefix, SHIP_INTERVAL};
pub use process::ProcessExecutor;
pub use registry::Executors;
pub use secrets::SecretSource;
pub use termination::DEFAULT_TERMINATION_GRACE;
pub use workdir::sweep_ended as sweep_ended_attempts;
