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
