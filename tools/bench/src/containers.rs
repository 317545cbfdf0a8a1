//! `aloft-bench containers`: what the container executor adds to a container's own cost. The engine's own
//! create+start+wait(+remove) of a no-op image, timed through its API, against whole attempts of a
//! `container` task running the same image through the propeller's executor (working directory, log
//! follower and shipping, exit inspection, output collection, removal): p50/p99 of each over `--nodes`
//! attempts, one at a time.

use std::time::{Duration, Instant};

use aloft_blobstore::BlobStore;
use aloft_core::ExecutionId;
use aloft_propeller::executor::{
    AttemptOutcome, AttemptRequest, ContainerExecutor, ContainerOptions, SecretSource, TaskExecutor,
};
use tokio_util::sync::CancellationToken;

/// The image every attempt runs (built locally from a static busybox when missing).
pub const IMAGE: &str = "aloft-bench/noop:1";

pub struct ContainerBench {
    pub attempts: usize,
    pub engine_p50_ms: f64,
    pub engine_p99_ms: f64,
    pub aloft_p50_ms: f64,
    pub aloft_p99_ms: f64,
}

pub async fn run(engine: &str, attempts: usize) -> anyhow::Result<ContainerBench> {
    let engine_for_image = engine.to_string();
    tokio::task::spawn_blocking(move || aloft_testkit::images::busybox_image(&engine_for_image, IMAGE))
        .await?
        .map_err(|error| anyhow::anyhow!("building {IMAGE}: {error}"))?;
    // Interleaved, a batch of each in turn, so a machine that gets busier or quieter weighs on both alike.
    let (mut baseline, mut through_aloft) = (Vec::new(), Vec::new());
    let batch = 10.min(attempts.max(1));
    let mut done = 0;
    while done < attempts {
        let count = batch.min(attempts - done);
        baseline.extend(engine_only(engine, count, done).await?);
        through_aloft.extend(through_executor(engine, count, done).await?);
        done += count;
    }
    baseline.sort();
    through_aloft.sort();
    Ok(ContainerBench {
        attempts,
        engine_p50_ms: crate::shared::percentile_ms(&baseline, 0.5),
        engine_p99_ms: crate::shared::percentile_ms(&baseline, 0.99),
        aloft_p50_ms: crate::shared::percentile_ms(&through_aloft, 0.5),
        aloft_p99_ms: crate::shared::percentile_ms(&through_aloft, 0.99),
    })
}

/// The engine alone: create, start, wait for and remove a container of `true` through its API (the same
/// client library the executor uses, one call per step, no Aloft code).
async fn engine_only(engine: &str, attempts: usize, first: usize) -> anyhow::Result<Vec<Duration>> {
    use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions, WaitContainerOptions};
    use futures::StreamExt;
    let docker = bollard::Docker::connect_with_unix(
        engine,
        120,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )?;
    let mut times = Vec::with_capacity(attempts);
    for index in first..first + attempts {
        let name = format!("aloft-bench-engine-{}-{index}", std::process::id());
        let started = Instant::now();
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: name.clone(),
                    platform: None,
                }),
                Config {
                    image: Some(IMAGE.to_string()),
                    cmd: Some(vec!["true".to_string()]),
                    host_config: Some(bollard::models::HostConfig {
                        network_mode: Some("none".to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await?;
        docker.start_container::<String>(&name, None).await?;
        let mut wait = docker.wait_container(
            &name,
            Some(WaitContainerOptions {
                condition: "not-running",
            }),
        );
        while let Some(result) = wait.next().await {
            result?;
        }
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

/// Whole attempts of a `container` task through the propeller's executor.
async fn through_executor(engine: &str, attempts: usize, first: usize) -> anyhow::Result<Vec<Duration>> {
    let scratch = tempfile::tempdir()?;
    let blobs = BlobStore::local(&scratch.path().join("blobs"))?;
    let executor = ContainerExecutor::new(
        ContainerOptions {
            engine: engine.to_string(),
            network: "none".to_string(),
        },
        scratch.path().join("work"),
        blobs,
        SecretSource::new(None),
        aloft_propeller::executor::DEFAULT_TERMINATION_GRACE,
    );
    let task = crate::shared::noop_container_task("noop-container", IMAGE);
    let mut times = Vec::with_capacity(attempts);
    for index in first..first + attempts {
        let request = AttemptRequest {
            execution: ExecutionId {
                project: "bench".into(),
                domain: "development".into(),
                name: format!("containers-{index}"),
            },
            node_id: "noop".into(),
            attempt: 1,
            task: task.clone(),
            task_version: "1".into(),
            inputs: Default::default(),
            keep_inline: Default::default(),
        };
        let started = Instant::now();
        let outcome = executor.start(request, CancellationToken::new()).await;
        times.push(started.elapsed());
        if !matches!(outcome, AttemptOutcome::Succeeded(_)) {
            anyhow::bail!("attempt {index} did not succeed: {outcome:?}");
        }
    }
    Ok(times)
}
