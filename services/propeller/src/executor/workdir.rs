//! The working directory of one attempt, shared by the executors that run commands (a process, or a
//! container with the directory mounted): its layout (`inputs/`, `outputs/`, `log.txt`, `.secrets/`), named
//! after the attempt's deterministic id so a successor finds it, and the messages an attempt's end is
//! reported with.

use std::path::{Path, PathBuf};

use aloft_core::events::ErrorKind;
use aloft_core::spec::TaskSpec;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::attempt::{system_error, user_error, AttemptId, AttemptOutcome, AttemptRequest, ExecutorError};

/// The file in an attempt directory the command's stdout and stderr go to.
pub(crate) const LOG_FILE: &str = "log.txt";
/// The directory of an attempt's `file` secrets, removed when the attempt ends.
pub(crate) const SECRETS_DIR: &str = ".secrets";
/// The file in an attempt's outputs where a task may explain its failure (kind, message, traceback).
pub(crate) const ERROR_DOCUMENT: &str = ".aloft-error.json";
/// The file a process attempt's wrapper shell writes the command's exit status to when it ends.
pub(crate) const PROCESS_EXIT_FILE: &str = ".aloft-exit-status";
/// The file a container attempt's exit code (and whether it was killed for memory) is recorded in.
pub(crate) const CONTAINER_EXIT_FILE: &str = ".aloft-container-exit";
/// The file the propeller writes when an attempt ended however it ended (cancelled and timed-out attempts
/// record no exit of their own), so the sweep removes its directory if the delayed removal never runs.
pub(crate) const ENDED_FILE: &str = ".aloft-ended";

/// One attempt's directory under an executor's work root.
#[derive(Debug, Clone)]
pub(crate) struct AttemptDir {
    pub path: PathBuf,
}

impl AttemptDir {
    /// `root/PROJECT/DOMAIN/EXECUTION/NODE/ATTEMPT`.
    pub fn of(root: &Path, attempt: &AttemptId) -> AttemptDir {
        let id = &attempt.execution;
        AttemptDir {
            path: root
                .join(&id.project)
                .join(&id.domain)
                .join(&id.name)
                .join(&attempt.node_id)
                .join(attempt.attempt.to_string()),
        }
    }

    pub fn inputs(&self) -> PathBuf {
        self.path.join("inputs")
    }

    pub fn outputs(&self) -> PathBuf {
        self.path.join("outputs")
    }

    pub fn log(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }

    pub fn secrets(&self) -> PathBuf {
        self.path.join(SECRETS_DIR)
    }

    /// Records that the attempt ended (`ENDED_FILE`), if its directory is still there.
    pub async fn record_end(self) {
        if tokio::fs::metadata(&self.path).await.is_ok() {
            let _ = tokio::fs::write(self.path.join(ENDED_FILE), b"").await;
        }
    }

    /// Removes the directory, and its node's and execution's directories once they hold nothing else.
    pub async fn remove(self) {
        let _ = tokio::fs::remove_dir_all(&self.path).await;
        // Fails, as it should, while another attempt of the node or execution has its directory there.
        let mut parent = self.path.parent();
        for _ in 0..2 {
            let Some(directory) = parent else { break };
            if tokio::fs::remove_dir(directory).await.is_err() {
                break;
            }
            parent = directory.parent();
        }
    }

    /// Replaces a leftover directory of an earlier run of this very attempt (its owner died mid-way) with
    /// empty `inputs/` and `outputs/`.
    pub async fn prepare(&self) -> Result<(), AttemptOutcome> {
        let _ = tokio::fs::remove_dir_all(&self.path).await;
        for directory in [self.inputs(), self.outputs()] {
            if let Err(error) = tokio::fs::create_dir_all(&directory).await {
                return Err(system_error(format!(
                    "cannot create {}: {error}",
                    directory.display()
                )));
            }
        }
        Ok(())
    }

    /// The attempt's log as it is on this machine (the executors' `TaskExecutor::logs`).
    pub fn read_log(&self, attempt: &AttemptId) -> BoxFuture<'static, Result<String, ExecutorError>> {
        let log_path = self.log();
        let attempt = attempt.to_string();
        async move {
            tokio::fs::read_to_string(&log_path)
                .await
                .map_err(|error| ExecutorError::NoLog {
                    attempt,
                    reason: format!("cannot read {}: {error}", log_path.display()),
                })
        }
        .boxed()
    }

    /// Deletes the attempt's secret files once its command is gone.
    pub async fn remove_secrets(&self) {
        let secrets = self.secrets();
        // Most tasks have none: a cheap look first, so an attempt's end is reported without another hop.
        if secrets.exists() {
            let _ = tokio::fs::remove_dir_all(secrets).await;
        }
    }

    /// The last lines of the attempt's log, indented, for a failure message.
    pub async fn log_tail(&self) -> String {
        let text = tokio::fs::read_to_string(self.log()).await.unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(5);
        lines[start..].iter().map(|line| format!("\n  {line}")).collect()
    }

    /// The user error of a command that ended with `how` (`exited with 3`): the end of its log, and the
    /// command that prints all of it from the blob store, readable from anywhere.
    /// A task that wrote an error document (`outputs/.aloft-error.json`, as the Python SDK's entrypoint does)
    /// fails with its message instead: `system` kind as a system error, any other as a user error.
    pub async fn failed(&self, request: &AttemptRequest, how: &str) -> AttemptOutcome {
        let read_it = format!(
            "aloft logs {} {} --attempt {} --project {} --domain {}",
            request.execution.name,
            request.node_id,
            request.attempt,
            request.execution.project,
            request.execution.domain
        );
        if let Some((kind, message)) = self.reported_error().await {
            let message = format!("{message} ({how}; the whole log: {read_it})");
            return if kind == "system" {
                system_error(message)
            } else {
                user_error(message)
            };
        }
        let tail = self.log_tail().await;
        user_error(format!("{how}; the end of its log ({read_it}):{tail}"))
    }

    /// The kind and message of the error document the task wrote, if it wrote a readable one.
    async fn reported_error(&self) -> Option<(String, String)> {
        let text = tokio::fs::read_to_string(self.outputs().join(ERROR_DOCUMENT))
            .await
            .ok()?;
        let document: serde_json::Value = serde_json::from_str(&text).ok()?;
        let message = document.get("message")?.as_str()?.to_string();
        let kind = document
            .get("kind")
            .and_then(|kind| kind.as_str())
            .unwrap_or("user")
            .to_string();
        Some((kind, message))
    }
}

/// The failure of an attempt killed at its task's timeout.
pub(crate) fn timed_out(task: &TaskSpec) -> AttemptOutcome {
    let limit = task.timeout.clone().unwrap_or_default();
    AttemptOutcome::Failed {
        kind: ErrorKind::Timeout,
        message: format!("timed out after {limit}"),
    }
}

/// Removes the directories under `root` of attempts that ended (their exit recorded, or their end noted by
/// the propeller) more than `retention` ago: what a propeller that stopped left behind before its own delayed
/// removal ran. A directory without either may belong to a process or container still running for a
/// successor to re-attach to, and is left. Returns how many were removed.
pub async fn sweep_ended(root: PathBuf, retention: std::time::Duration) -> usize {
    tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        // root/PROJECT/DOMAIN/EXECUTION/NODE/ATTEMPT
        for attempt in directories_at_depth(&root, 5) {
            let ended_at = [PROCESS_EXIT_FILE, CONTAINER_EXIT_FILE, ENDED_FILE]
                .iter()
                .filter_map(|marker| std::fs::metadata(attempt.join(marker)).ok()?.modified().ok())
                .max();
            let old_enough = ended_at
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age >= retention);
            if old_enough && std::fs::remove_dir_all(&attempt).is_ok() {
                removed += 1;
                for parent in attempt.ancestors().skip(1).take(2) {
                    if std::fs::remove_dir(parent).is_err() {
                        break;
                    }
                }
            }
        }
        removed
    })
    .await
    .unwrap_or(0)
}

/// The directories exactly `depth` levels below `root` (hidden ones, such as the local blob store, skipped).
fn directories_at_depth(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..depth {
        level = level
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten()
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
            .map(|entry| entry.path())
            .collect();
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sweep_removes_ended_attempts_and_leaves_running_ones_and_the_blob_store() {
        let root = tempfile::tempdir().unwrap();
        let attempt = |execution: &str, n: u32| root.path().join(format!("p/d/{execution}/node/{n}"));
        for (execution, n) in [("ended", 1), ("contained", 1), ("cancelled", 1), ("running", 1)] {
            std::fs::create_dir_all(attempt(execution, n).join("outputs")).unwrap();
        }
        std::fs::write(attempt("ended", 1).join(PROCESS_EXIT_FILE), "0").unwrap();
        std::fs::write(attempt("contained", 1).join(CONTAINER_EXIT_FILE), "0 -").unwrap();
        AttemptDir {
            path: attempt("cancelled", 1),
        }
        .record_end()
        .await;
        AttemptDir {
            path: attempt("gone", 1),
        }
        .record_end()
        .await;
        assert!(
            !attempt("gone", 1).exists(),
            "noting the end of an attempt whose directory is gone makes none"
        );
        let blobs = root.path().join(".blobs/p/d/e/n/1");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(PROCESS_EXIT_FILE), "0").unwrap();

        let kept = sweep_ended(root.path().to_path_buf(), std::time::Duration::from_secs(3600)).await;
        assert_eq!(kept, 0, "nothing ended long enough ago");
        let removed = sweep_ended(root.path().to_path_buf(), std::time::Duration::ZERO).await;
        assert_eq!(removed, 3);
        assert!(
            !root.path().join("p/d/cancelled").exists(),
            "a cancelled attempt's noted end counts"
        );
        assert!(
            !root.path().join("p/d/ended").exists(),
            "its emptied parents go too"
        );
        assert!(!root.path().join("p/d/contained").exists());
        assert!(
            attempt("running", 1).exists(),
            "no exit recorded: it may still run"
        );
        assert!(blobs.exists(), "the local blob store is not an attempt directory");
    }
}
