//! What the data helpers of a task pod do (`aloft admin pod-data stage-in|stage-out`, run in Aloft's own
//! image beside the task's): `stage-in`, an init container, writes the attempt's inputs into the pod's shared
//! volume as a process task finds them in `$ALOFT_INPUT_DIR` (blobs and offloaded values downloaded from the
//! store, streamed); `stage-out`, a container sharing the pod's process namespace, waits until the task's
//! processes have ended and uploads what they left in `$ALOFT_OUTPUT_DIR` under the attempt's output prefix,
//! where the executor reads outputs back by type. A task image therefore needs no client of the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aloft_blobstore::BlobStore;
use aloft_core::events::{ErrorKind, Outputs};

use crate::executor::attempt::AttemptOutcome;
use crate::executor::staging::stage_inputs;

/// Where the pod's shared volume is mounted in every container of it.
pub const POD_DATA_DIR: &str = "/var/run/aloft";
/// The exit code of a helper that failed for the task's reason (an input that does not exist); any other
/// failure exits 1 and is the platform's.
pub const USER_ERROR_EXIT: i32 = 2;

/// The inputs directory under the shared volume.
pub fn inputs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("inputs")
}

/// The outputs directory under the shared volume.
pub fn outputs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outputs")
}

/// Why a helper failed: the task's inputs (the user's) or the platform.
#[derive(Debug, thiserror::Error)]
pub enum PodDataError {
    #[error("{0}")]
    User(String),
    #[error("{0}")]
    System(String),
}

impl PodDataError {
    /// The helper's exit code, which the executor reads back from the pod's status.
    pub fn exit_code(&self) -> i32 {
        match self {
            PodDataError::User(_) => USER_ERROR_EXIT,
            PodDataError::System(_) => 1,
        }
    }

    fn from_outcome(outcome: AttemptOutcome) -> PodDataError {
        match outcome {
            AttemptOutcome::Failed {
                kind: ErrorKind::User,
                message,
            } => PodDataError::User(message),
            AttemptOutcome::Failed { message, .. } => PodDataError::System(message),
            other => PodDataError::System(format!("unexpected staging outcome: {other:?}")),
        }
    }
}

/// Writes `inputs` (the attempt's inputs as JSON, as the executor put them in the init container's
/// environment) into `data_dir`'s inputs directory and makes its outputs directory writable by the task,
/// whatever user its image runs as. Returns how many inputs were staged.
pub async fn stage_in(blobs: &BlobStore, data_dir: &Path, inputs: &str) -> Result<usize, PodDataError> {
    let inputs: Outputs = serde_json::from_str(inputs).map_err(|error| {
        PodDataError::System(format!("ALOFT_POD_INPUTS is not an attempt's inputs: {error}"))
    })?;
    let (input_dir, output_dir) = (inputs_dir(data_dir), outputs_dir(data_dir));
    for dir in [&input_dir, &output_dir] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|error| PodDataError::System(format!("cannot create {}: {error}", dir.display())))?;
    }
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(&output_dir, std::fs::Permissions::from_mode(0o777))
        .await
        .map_err(|error| {
            PodDataError::System(format!(
                "cannot open {} to the task: {error}",
                output_dir.display()
            ))
        })?;
    stage_inputs(blobs, &input_dir, &inputs, false)
        .await
        .map_err(PodDataError::from_outcome)?;
    Ok(inputs.len())
}

/// Uploads every file and directory the task left in `data_dir`'s outputs directory to `output_key/NAME` in
/// `blobs` (the attempt's tenant store), streamed. Returns how many were uploaded.
pub async fn stage_out(blobs: &BlobStore, data_dir: &Path, output_key: &str) -> Result<usize, PodDataError> {
    let output_dir = outputs_dir(data_dir);
    let mut entries = match tokio::fs::read_dir(&output_dir).await {
        Ok(entries) => entries,
        // The task never ran (its init container failed): nothing to upload.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => {
            return Err(PodDataError::System(format!(
                "cannot read {}: {error}",
                output_dir.display()
            )))
        }
    };
    let mut uploaded = 0;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|error| PodDataError::System(format!("cannot read {}: {error}", output_dir.display())))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{}/{name}", output_key.trim_end_matches('/'));
        blobs
            .upload(&entry.path(), &key)
            .await
            .map_err(|error| PodDataError::System(format!("uploading output {name:?}: {error}")))?;
        uploaded += 1;
    }
    Ok(uploaded)
}

/// The task's processes, seen from a container that shares the pod's process namespace: every process but
/// the pod's first (its pause process), this one and the ones that have ended but are not yet reaped.
pub struct TaskProcesses {
    proc_dir: PathBuf,
    poll: Duration,
}

impl Default for TaskProcesses {
    fn default() -> Self {
        TaskProcesses::at(Path::new("/proc"))
    }
}

impl TaskProcesses {
    /// Reads processes from `proc_dir` (a procfs mount).
    pub fn at(proc_dir: &Path) -> TaskProcesses {
        TaskProcesses {
            proc_dir: proc_dir.to_path_buf(),
            poll: Duration::from_millis(100),
        }
    }

    /// The process ids that belong to the task now.
    fn running(&self) -> std::io::Result<Vec<u32>> {
        let own = std::process::id();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.proc_dir)? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == 1 || pid == own {
                continue;
            }
            // `pid (comm) STATE ...`: a zombie has ended.
            let state = std::fs::read_to_string(self.proc_dir.join(pid.to_string()).join("stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.trim_start().chars().next())
                });
            if state != Some('Z') {
                found.push(pid);
            }
        }
        Ok(found)
    }

    /// Waits until the task has started and then until all of its processes have ended. The kubelet starts
    /// a pod's containers in their order and this helper comes first, so the task cannot have come and gone
    /// before the first look; a task that never starts (its image cannot be pulled) is ended by the
    /// executor, which deletes the pod.
    pub async fn wait_until_ended(&self) -> Result<(), PodDataError> {
        let read = |processes: std::io::Result<Vec<u32>>| {
            processes.map_err(|error| {
                PodDataError::System(format!(
                    "cannot read the pod's processes in {} (is shareProcessNamespace set?): {error}",
                    self.proc_dir.display()
                ))
            })
        };
        while read(self.running())?.is_empty() {
            tokio::time::sleep(self.poll).await;
        }
        while !read(self.running())?.is_empty() {
            tokio::time::sleep(self.poll).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aloft_core::Value;

    #[tokio::test]
    async fn inputs_are_staged_as_files_and_outputs_uploaded_under_the_attempt_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("store")).unwrap();
        let blob = store
            .put("in/data.csv", bytes::Bytes::from_static(b"a,b\n1,2\n"))
            .await
            .unwrap();
        let inputs = Outputs::from([
            ("n".to_string(), Value::Integer(3)),
            (
                "data".to_string(),
                Value::Blob {
                    uri: blob,
                    format: "csv".into(),
                    digest: None,
                    size: None,
                },
            ),
        ]);
        let pod = dir.path().join("pod");
        let staged = stage_in(&store, &pod, &serde_json::to_string(&inputs).unwrap())
            .await
            .unwrap();
        assert_eq!(staged, 2);
        assert_eq!(std::fs::read_to_string(pod.join("inputs/n")).unwrap(), "3");
        assert_eq!(std::fs::read(pod.join("inputs/data")).unwrap(), b"a,b\n1,2\n");

        std::fs::write(pod.join("outputs/total"), "6\n").unwrap();
        std::fs::create_dir_all(pod.join("outputs/report")).unwrap();
        std::fs::write(pod.join("outputs/report/summary.txt"), "ok").unwrap();
        assert_eq!(stage_out(&store, &pod, "p/d/e/n/1").await.unwrap(), 2);
        let mut written: Vec<String> = store
            .list("p/d/e/n/1")
            .await
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        written.sort();
        assert_eq!(written, ["p/d/e/n/1/report/summary.txt", "p/d/e/n/1/total"]);
    }

    #[tokio::test]
    async fn a_missing_blob_input_is_the_users_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("store")).unwrap();
        let inputs = Outputs::from([(
            "reads".to_string(),
            Value::Blob {
                uri: store.uri_of("nowhere/reads.fq"),
                format: String::new(),
                digest: None,
                size: None,
            },
        )]);
        let error = stage_in(
            &store,
            &dir.path().join("pod"),
            &serde_json::to_string(&inputs).unwrap(),
        )
        .await
        .unwrap_err();
        assert_eq!(error.exit_code(), USER_ERROR_EXIT);
        assert!(error.to_string().contains("input \"reads\""), "{error}");
        let garbled = stage_in(&store, &dir.path().join("pod"), "{not json")
            .await
            .unwrap_err();
        assert_eq!(garbled.exit_code(), 1);
        assert!(garbled.to_string().contains("ALOFT_POD_INPUTS"), "{garbled}");
    }

    #[tokio::test]
    async fn the_wait_ends_once_the_task_has_started_and_its_processes_are_gone() {
        let proc_dir = tempfile::tempdir().unwrap();
        for pid in ["1", &std::process::id().to_string(), "self", "meminfo"] {
            std::fs::create_dir_all(proc_dir.path().join(pid)).unwrap();
        }
        let processes = TaskProcesses {
            proc_dir: proc_dir.path().to_path_buf(),
            poll: Duration::from_millis(10),
        };
        let waiting = tokio::spawn(async move { processes.wait_until_ended().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "ended before the task started");
        // The task starts (one process, and a zombie that does not count), then ends.
        std::fs::create_dir_all(proc_dir.path().join("40")).unwrap();
        std::fs::write(proc_dir.path().join("40/stat"), "40 (python (x)) S 1 40").unwrap();
        std::fs::create_dir_all(proc_dir.path().join("41")).unwrap();
        std::fs::write(proc_dir.path().join("41/stat"), "41 (sh) Z 1 41").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "ended while the task ran");
        std::fs::remove_dir_all(proc_dir.path().join("40")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
