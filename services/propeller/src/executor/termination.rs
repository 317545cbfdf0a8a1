//! Stopping a process attempt's process group: SIGTERM first, so a task can flush and clean up, then
//! SIGKILL for whatever still runs after the grace period (what Kubernetes does to a pod, and `docker stop`
//! to a container).

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long a cancelled or timed-out attempt has between SIGTERM and SIGKILL unless the propeller is told
/// otherwise (`--termination-grace-ms`). Shorter than a pod's 30 s default: a terminated execution should
/// end promptly, and a task that needs longer to stop says so through the flag.
pub const DEFAULT_TERMINATION_GRACE: Duration = Duration::from_secs(10);

/// How often a stopping group is checked for processes still running.
const POLL: Duration = Duration::from_millis(50);

/// Sends SIGTERM to every process of group `group`, waits up to `grace` for all of them to end (calling
/// `reap` on each look, so the caller's own child does not linger as a zombie), then SIGKILLs the rest.
pub async fn stop_group(group: Pid, grace: Duration, mut reap: impl FnMut()) {
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        reap();
        if !group_running(group.as_raw()) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(
                group = group.as_raw(),
                ?grace,
                "still running after SIGTERM and the grace period: SIGKILL"
            );
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a process of group `group` still runs. Zombies do not count: no signal reaches them, and one
/// whose parent died waits for an init that may never reap it.
pub fn group_running(group: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let is_process = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        is_process
            && std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| running_in_group(&stat))
                == Some(group)
    })
}

/// The process group of a `/proc/PID/stat` line, `None` for a process that has ended (zombie or dead).
fn running_in_group(stat: &str) -> Option<i32> {
    // `PID (COMM) STATE PPID PGRP ...`: COMM may hold spaces and parentheses, so fields follow the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let _parent = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_group_of_a_running_process_only() {
        assert_eq!(
            running_in_group("4242 (sh -c (odd)) S 1 4242 4242 0 -1 4194560"),
            Some(4242)
        );
        assert_eq!(running_in_group("4243 (sleep) Z 4242 4242 4242 0"), None);
        assert_eq!(running_in_group("garbage"), None);
    }
}
