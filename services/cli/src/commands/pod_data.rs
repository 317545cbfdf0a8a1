//! `aloft admin pod-data stage-in|stage-out`: the helper containers of a task pod. A failure is written to
//! the termination log, where the kubelet picks it up for the pod's status and the executor reads it, and
//! sets the exit code that says whose it is (2: the task's inputs; 1: the platform's).

use std::path::Path;

use aloft_propeller::executor::pod_data::{self, PodDataError, TaskProcesses};

use crate::args::{Cli, PodDataStep};

pub(super) async fn run(
    cli: &Cli,
    step: &PodDataStep,
    pod_dir: &Path,
    termination_log: &Path,
    blobs: &aloft_runtime::BlobStoreArgs,
) -> i32 {
    match step_result(cli, step, pod_dir, blobs).await {
        Ok(said) => {
            eprintln!("{said}");
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            // Best effort: outside a pod there is no termination log.
            let _ = std::fs::write(termination_log, error.to_string());
            error.exit_code()
        }
    }
}

async fn step_result(
    cli: &Cli,
    step: &PodDataStep,
    pod_dir: &Path,
    blobs: &aloft_runtime::BlobStoreArgs,
) -> Result<String, PodDataError> {
    // First, so the task cannot come and go while the store is being opened.
    if let PodDataStep::StageOut { proc_dir, .. } = step {
        TaskProcesses::at(proc_dir).wait_until_ended().await?;
    }
    if blobs.blob_store.is_none() {
        return Err(PodDataError::System(
            "ALOFT_BLOB_STORE (--blob-store) is not set: the pod's helpers need the deployment's store"
                .into(),
        ));
    }
    let store = blobs
        .open(&cli.data_dir)
        .await
        .map_err(|error| PodDataError::System(format!("{error:#}")))?;
    match step {
        PodDataStep::StageIn { inputs } => {
            let staged = pod_data::stage_in(&store, pod_dir, inputs).await?;
            Ok(format!(
                "staged {staged} input(s) into {}",
                pod_data::inputs_dir(pod_dir).display()
            ))
        }
        PodDataStep::StageOut { output_key, .. } => {
            let tenant = store.for_tenant(&cli.project, &cli.domain);
            let uploaded = pod_data::stage_out(&tenant, pod_dir, output_key).await?;
            Ok(format!(
                "uploaded {uploaded} output(s) to {}",
                tenant.uri_of(output_key)
            ))
        }
    }
}
