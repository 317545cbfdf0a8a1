//! Helpers several benchmarks share: this process's resident memory, percentiles of sorted durations, and
//! the no-op `container` task the container and pod benchmarks run.

use std::time::Duration;

use aloft_core::spec::{ContainerSpec, TaskKind, TaskSpec};

/// The `share` percentile (0.5, 0.99) of `sorted`, in milliseconds (nearest rank).
pub fn percentile_ms(sorted: &[Duration], share: f64) -> f64 {
    let index = ((sorted.len() as f64 * share).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// This process's resident set size, in KiB (0 when /proc cannot say).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// A `container` task named `name` that runs `true` in `image`.
pub fn noop_container_task(name: &str, image: &str) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        version: Some("1".into()),
        interface: Default::default(),
        run: TaskKind::Container(ContainerSpec {
            image: image.into(),
            command: vec!["true".into()],
            args: vec![],
            env: Default::default(),
            working_dir: None,
        }),
        retries: Default::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: vec![],
    }
}
