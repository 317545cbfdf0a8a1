//! A whole Aloft fleet (admin, propellers, scheduler) in one process, sharing one event log instance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aloft_eventlog::{LogBackend, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub backend: LogBackend,
    pub database_url: String,
    pub topics: Topics,
    pub partitions: u32,
    pub work_dir: PathBuf,
    pub listen: SocketAddr,
    pub bootstrap_project: Option<String>,
    pub propellers: usize,
}

impl FleetConfig {
    /// Everything embedded under `data_dir`: the file log, SQLite and task working dirs.
    pub fn embedded(data_dir: &std::path::Path, listen: SocketAddr) -> FleetConfig {
        FleetConfig {
            backend: LogBackend::Embedded {
                dir: data_dir.to_path_buf(),
            },
            database_url: format!("sqlite://{}", data_dir.join("aloft.db").display()),
            topics: Topics::with_prefix(""),
            partitions: 8,
            work_dir: data_dir.join("work"),
            listen,
            bootstrap_project: Some("default".to_string()),
            propellers: 1,
        }
    }
}

pub struct Fleet {
    pub address: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Fleet {
    pub async fn start(config: FleetConfig) -> anyhow::Result<Fleet> {
        if let LogBackend::Embedded { dir } = &config.backend {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
        }
        let store = aloft_store::Store::connect(&config.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("database {}: {e}", config.database_url))?;
        let log = aloft_eventlog::open(&config.backend, &config.topics, config.partitions).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let address = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        for index in 0..config.propellers.max(1) {
            let options = aloft_propeller::PropellerOptions {
                topics: config.topics.clone(),
                member_id: format!("{}-propeller-{index}", aloft_telemetry::default_member_id()),
                work_dir: config.work_dir.clone(),
            };
            tasks.push(tokio::spawn(aloft_propeller::run(
                options,
                Arc::clone(&log),
                shutdown.child_token(),
            )));
        }
        let scheduler_options = aloft_scheduler::SchedulerOptions::new(
            config.topics.clone(),
            format!("{}-scheduler", aloft_telemetry::default_member_id()),
        );
        let clock = Arc::new(aloft_scheduler::clock::SystemClock {
            interval: std::time::Duration::from_millis(500),
        });
        let (scheduler, _progress) =
            aloft_scheduler::Scheduler::new(scheduler_options, Arc::clone(&log), clock);
        tasks.push(tokio::spawn(scheduler.run(shutdown.child_token())));
        let mut admin_options = aloft_admin::AdminOptions::new(config.topics.clone());
        admin_options.bootstrap_project = config.bootstrap_project.clone();
        tasks.push(tokio::spawn(aloft_admin::run(
            admin_options,
            store,
            log,
            listener,
            shutdown.child_token(),
        )));
        Ok(Fleet {
            address,
            shutdown,
            tasks,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the API first, then the propellers, and reports the first failure of any component.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(join_error) => {
                    first_error.get_or_insert(anyhow::anyhow!("fleet task panicked: {join_error}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits until a component stops on its own (an error) or `shutdown` is cancelled.
    pub async fn run_until(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown.cancelled() => self.stop().await,
            (finished, _, _) = futures::future::select_all(self.tasks.iter_mut()) => {
                self.shutdown.cancel();
                match finished {
                    Ok(Ok(())) => Err(anyhow::anyhow!("a fleet component stopped unexpectedly")),
                    Ok(Err(error)) => Err(error),
                    Err(join_error) => Err(anyhow::anyhow!("fleet task panicked: {join_error}")),
                }
            }
        }
    }
}
