//! The container engine's side of an attempt: making sure the image is there (pulling it, a failure being the
//! task's), waiting for a container to stop, when it started, following its output into the attempt's log,
//! watching the local storage it uses against its limit, and the exit code recorded for a successor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::container::{InspectContainerOptions, LogOutput, LogsOptions, WaitContainerOptions};
use bollard::errors::Error as EngineError;
use bollard::image::CreateImageOptions;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::executor::attempt::{system_error, user_error, AttemptOutcome};
use crate::executor::workdir::AttemptDir;

/// The file in the attempt directory the container's exit code is written to before the container is
/// removed: a successor that finds no container but this file still learns how the attempt ended.
pub(super) const EXIT_CODE_FILE: &str = crate::executor::workdir::CONTAINER_EXIT_FILE;
/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ContainerExit {
    pub(super) code: i64,
    pub(super) oom_killed: bool,
}

impl ContainerExit {
    pub(super) fn record(&self) -> String {
        format!("{} {}", self.code, if self.oom_killed { "oom" } else { "-" })
    }
}

pub(super) async fn recorded_exit(dir: &AttemptDir) -> Option<ContainerExit> {
    let text = tokio::fs::read_to_string(dir.path.join(EXIT_CODE_FILE))
        .await
        .ok()?;
    let mut fields = text.split_whitespace();
    let code = fields.next()?.parse().ok()?;
    Some(ContainerExit {
        code,
        oom_killed: fields.next() == Some("oom"),
    })
}

/// Makes sure `image` is on the engine, pulling it when it is not; a pull that fails is the task's error,
/// quoting the engine.
pub(super) async fn ensure_image(engine: &Docker, image: &str) -> Result<(), AttemptOutcome> {
    match engine.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(error) => return Err(system_error(format!("cannot look up image {image}: {error}"))),
    }
    tracing::info!(%image, "pulling the task's image");
    let mut pull = engine.create_image(
        Some(CreateImageOptions {
            from_image: image,
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(progress) = pull.next().await {
        match progress {
            Ok(info) => {
                if let Some(error) = info.error {
                    return Err(user_error(format!("image {image} cannot be pulled: {error}")));
                }
            }
            // Docker refuses the request; podman answers 200 and reports the failure in the stream.
            Err(
                EngineError::DockerResponseServerError { message, .. }
                | EngineError::DockerStreamError { error: message },
            ) => return Err(user_error(format!("image {image} cannot be pulled: {message}"))),
            Err(error) => return Err(system_error(format!("pulling image {image}: {error}"))),
        }
    }
    Ok(())
}

/// Waits until container `name` is not running (the engine answers a non-zero exit as an error; either
/// way the container has stopped). A dropped connection is retried while the container still runs.
pub(super) async fn wait_for_exit(engine: &Docker, name: &str) {
    loop {
        let mut wait = engine.wait_container(
            name,
            Some(WaitContainerOptions {
                condition: "not-running",
            }),
        );
        match wait.next().await {
            Some(Ok(_)) | Some(Err(EngineError::DockerContainerWaitError { .. })) | None => return,
            Some(Err(EngineError::DockerResponseServerError { status_code: 404, .. })) => return,
            Some(Err(error)) => {
                tracing::warn!(container = %name, %error, "waiting for the container failed; waiting again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How often a container with an ephemeral-storage limit has its local storage measured.
pub(super) const STORAGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Returns (the bytes used) once container `name` uses more local storage than `limit`: its writable layer
/// and the attempt directory mounted into it (inputs, outputs, log), as a kubelet counts a pod's writable
/// layers, emptyDir volumes and logs against its ephemeral-storage limit. Never returns without a limit.
pub(super) async fn storage_exceeded(
    engine: &Docker,
    name: &str,
    attempt_dir: &Path,
    limit: Option<u64>,
) -> u64 {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(STORAGE_CHECK_INTERVAL).await;
        let layer = engine
            .inspect_container(name, Some(InspectContainerOptions { size: true }))
            .await
            .ok()
            .and_then(|inspected| inspected.size_rw)
            .map_or(0, |bytes| bytes.max(0) as u64);
        let dir = attempt_dir.to_path_buf();
        let mounted = tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .unwrap_or(0);
        if layer + mounted > limit {
            return layer + mounted;
        }
    }
}

/// The bytes of the files under `dir` (symbolic links not followed; what cannot be read counts nothing).
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_usage(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// When container `name` started, as the engine recorded it.
pub(super) async fn started_at(engine: &Docker, name: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let inspected = engine.inspect_container(name, None).await.ok()?;
    let started = inspected.state?.started_at?;
    chrono::DateTime::parse_from_rfc3339(&started)
        .ok()
        .map(|at| at.with_timezone(&chrono::Utc))
}

/// Writes container `name`'s output (all of it, from its start) into `log_path` until the container stops.
pub(super) async fn write_log(engine: Docker, name: String, log_path: PathBuf) {
    let mut file = match tokio::fs::File::create(&log_path).await {
        Ok(file) => file,
        Err(error) => {
            tracing::warn!(path = %log_path.display(), %error, "cannot create the attempt's log");
            return;
        }
    };
    let mut stream = engine.logs(
        &name,
        Some(LogsOptions::<String> {
            follow: true,
            stdout: true,
            stderr: true,
            tail: "all".to_string(),
            ..Default::default()
        }),
    );
    while let Some(chunk) = stream.next().await {
        let bytes = match chunk {
            Ok(
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message },
            ) => message,
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(error) => {
                tracing::debug!(container = %name, %error, "the container's log stream ended");
                break;
            }
        };
        if file.write_all(&bytes).await.is_err() {
            break;
        }
        // The shipper reads the file: flush what arrived so it ships within its interval.
        let _ = file.flush().await;
    }
    let _ = file.flush().await;
}

/// An engine refusal as the attempt's error: a 4xx is the task's (bad image config, conflict), anything
/// else the platform's.
pub(super) fn engine_failure(context: &str, error: EngineError) -> AttemptOutcome {
    match error {
        EngineError::DockerResponseServerError { status_code, message }
            if (400..500).contains(&status_code) =>
        {
            user_error(format!("{context}: {message}"))
        }
        other => system_error(format!("{context}: {other}")),
    }
}
