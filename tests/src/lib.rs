//! Helpers for Aloft's end-to-end tests: start the service binaries as separate processes on Kafka and
//! Postgres, or the embedded fleet in-process, and drive them through the admin API like a user would.
//!
//! Over 600 lines: the one test library every end-to-end test uses (deployments, clients, waiting helpers); a
//! test-kit crate holds the protocol peers.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aloft_cli::client::connect;
pub use aloft_cli::client::AdminClient;
use aloft_cli::specs::{read_spec_file, register_documents};
use aloft_proto::v1 as wire;

pub mod containers;
pub mod faults;
pub mod rest;
pub use containers::{attempt_containers, busybox_image, docker, real_container_engine};

pub const PROJECT: &str = "default";
pub const DOMAIN: &str = "development";

/// The Redis URL, or `None` (test skipped) unless real backends are required.
pub fn real_redis() -> Option<String> {
    let url = std::env::var("ALOFT_TEST_REDIS_URL").ok();
    if url.is_none() {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_REDIS_URL is required"
        );
        eprintln!("skipping: ALOFT_TEST_REDIS_URL not set");
    }
    url
}

/// A blob store URL on the S3-compatible server `scripts/test.sh` starts (moto), under a fresh prefix, or
/// `None` (test skipped) unless real backends are required.
pub fn real_s3_store() -> Option<String> {
    let Ok(endpoint) = std::env::var("ALOFT_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_S3_ENDPOINT is required"
        );
        eprintln!("skipping: ALOFT_TEST_S3_ENDPOINT not set");
        return None;
    };
    let bucket = std::env::var("ALOFT_TEST_S3_BUCKET").unwrap_or_else(|_| "aloft-test".into());
    Some(format!(
        "s3://{bucket}/e2e-{}?endpoint={endpoint}&region=us-east-1",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Every record of `topic`, partition by partition, read to the log's current end (none when the topic does
/// not exist).
pub async fn read_topic(log: &dyn aloft_eventlog::EventLog, topic: &str) -> Vec<aloft_eventlog::Record> {
    let Ok(partitions) = log.partition_count(topic).await else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for partition in 0..partitions {
        let end = log
            .end_offset(topic, partition)
            .await
            .expect("the partition's end offset");
        if end == 0 {
            continue;
        }
        let mut stream = log
            .read(vec![(topic.to_string(), partition, 0)])
            .await
            .expect("read the partition");
        let mut read = 0;
        while read < end {
            for record in stream.next_batch(1000).await.expect("a batch of records") {
                read = record.offset + 1;
                records.push(record);
            }
        }
    }
    records
}

/// Kafka brokers and a Postgres base URL, or `None` (test skipped) unless real backends are required.
pub fn real_backends() -> Option<(String, String)> {
    let brokers = std::env::var("ALOFT_TEST_KAFKA_BROKERS").ok();
    let database = std::env::var("ALOFT_TEST_DATABASE_URL").ok();
    match (brokers, database) {
        (Some(brokers), Some(database)) => Some((brokers, database)),
        _ => {
            assert!(
                std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
                "ALOFT_TEST_KAFKA_BROKERS and ALOFT_TEST_DATABASE_URL are required"
            );
            eprintln!("skipping: ALOFT_TEST_KAFKA_BROKERS / ALOFT_TEST_DATABASE_URL not set");
            None
        }
    }
}

/// A whole fleet in this process with its data under `dir`: on Kafka and a scratch Postgres database when the
/// test backends are configured (as in CI), else on the embedded log and SQLite.
pub async fn start_fleet(dir: &Path) -> aloft_cli::fleet::Fleet {
    start_fleet_with_auth(dir, None).await
}

/// `start_fleet`, authenticating callers with `auth` when set.
pub async fn start_fleet_with_auth(
    dir: &Path,
    auth: Option<aloft_auth::AuthConfig>,
) -> aloft_cli::fleet::Fleet {
    start_fleet_with(dir, |config| config.auth = auth).await
}

/// `start_fleet`, with `adjust` applied to the embedded configuration first (authentication, a blob store).
pub async fn start_fleet_with(
    dir: &Path,
    adjust: impl FnOnce(&mut aloft_cli::fleet::FleetConfig),
) -> aloft_cli::fleet::Fleet {
    let mut config =
        aloft_cli::fleet::FleetConfig::embedded(dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    adjust(&mut config);
    let brokers = std::env::var("ALOFT_TEST_KAFKA_BROKERS").ok();
    let database = std::env::var("ALOFT_TEST_DATABASE_URL").ok();
    if let (Some(brokers), Some(database)) = (brokers, database) {
        config = config
            .on_kafka(&brokers, "e2e")
            .on_database(&database)
            .await
            .expect("scratch database");
    } else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_KAFKA_BROKERS and ALOFT_TEST_DATABASE_URL are required"
        );
    }
    aloft_cli::fleet::Fleet::start(config)
        .await
        .expect("fleet starts")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A service binary from the same target directory as this test (`cargo build --bins` builds them).
pub fn binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("current exe");
    let dir = test_exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed when dropped.
pub struct Service {
    pub child: Child,
    pub name: String,
}

impl Service {
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// A deployment's scratch directory (its services' logs and work dirs). With `ALOFT_TEST_KEEP_SCRATCH` set it
/// is kept after the test, and its path printed, to read the services' logs of a failed test.
fn scratch_dir() -> tempfile::TempDir {
    let mut scratch = tempfile::Builder::new()
        .prefix("aloft-e2e-")
        .tempdir()
        .expect("tempdir");
    if std::env::var_os("ALOFT_TEST_KEEP_SCRATCH").is_some() {
        scratch.disable_cleanup(true);
        eprintln!(
            "keeping the deployment's scratch directory {}",
            scratch.path().display()
        );
    }
    scratch
}

/// Partitions of every topic a deployment's services create (`ALOFT_PARTITIONS`).
pub const PARTITIONS: u32 = 4;

/// The partition of `aloft.executions` execution `name` of the test project and domain lands in.
pub fn partition_of(name: &str) -> u32 {
    let id = aloft_core::ExecutionId {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    };
    aloft_eventlog::partition_for_key(&id.partition_key(), PARTITIONS)
}

/// One deployment on the real parts: its own topic prefix, Postgres database and work dir.
pub struct Deployment {
    pub brokers: String,
    pub database_url: String,
    pub topic_prefix: String,
    pub admin_port: u16,
    /// Every propeller of the deployment is pointed here; start the catalog with `start_catalog`.
    pub catalog_port: u16,
    pub scratch: tempfile::TempDir,
    /// The blob store every service of the deployment is given (`ALOFT_BLOB_STORE`); `None`: each
    /// service's default, a directory in the shared scratch directory.
    pub blob_store: Option<String>,
}

impl Deployment {
    pub async fn new(brokers: &str, database_base: &str) -> Deployment {
        Deployment {
            brokers: brokers.to_string(),
            database_url: aloft_store::create_scratch_postgres_database(database_base)
                .await
                .expect("scratch database"),
            topic_prefix: format!("e2e-{}.", uuid::Uuid::new_v4().simple()),
            admin_port: free_port(),
            catalog_port: free_port(),
            scratch: scratch_dir(),
            blob_store: None,
        }
    }

    fn command(&self, binary_name: &str, log_name: &str) -> Command {
        self.command_for(&binary(binary_name), log_name)
    }

    fn command_for(&self, program: &Path, log_name: &str) -> Command {
        let mut command = Command::new(program);
        let path = self.scratch.path().join(format!("{log_name}.log"));
        // A restarted service's earlier log is kept (`name.log.1`, `.2`, ...): a failure is often explained
        // by what the service wrote before it was killed.
        if path.exists() {
            let kept = (1..)
                .map(|n| self.scratch.path().join(format!("{log_name}.log.{n}")))
                .find(|kept| !kept.exists());
            if let Some(kept) = kept {
                let _ = std::fs::rename(&path, kept);
            }
        }
        let log = std::fs::File::create(&path).expect("log file");
        command
            .env("ALOFT_KAFKA_BROKERS", &self.brokers)
            .env("ALOFT_DATABASE_URL", &self.database_url)
            .env("ALOFT_TOPIC_PREFIX", &self.topic_prefix)
            .env("ALOFT_PARTITIONS", PARTITIONS.to_string())
            .env("ALOFT_DATA_DIR", self.scratch.path())
            .env(
                "RUST_LOG",
                std::env::var("ALOFT_TEST_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(url) = &self.blob_store {
            command.env("ALOFT_BLOB_STORE", url);
        }
        command
    }

    /// Starts any service binary of this deployment with extra environment.
    pub fn start_with_env(&self, binary_name: &str, log_name: &str, env: &[(&str, String)]) -> Service {
        self.start_program(&binary(binary_name), binary_name, log_name, env, |_| {})
    }

    /// `start_with_env` running `program`, a build of `binary_name` (the fault harness runs the previous
    /// release's propeller beside this build's), with `adjust` given the command last (it starts a
    /// propeller in a network namespace of its own).
    pub fn start_program(
        &self,
        program: &Path,
        binary_name: &str,
        log_name: &str,
        env: &[(&str, String)],
        adjust: impl FnOnce(&mut Command),
    ) -> Service {
        let mut command = self.command_for(program, log_name);
        if binary_name == "aloft-admin" {
            command
                .env("ALOFT_CATALOG", self.catalog_url())
                .env("ALOFT_ADMIN_LISTEN", format!("127.0.0.1:{}", self.admin_port))
                .env("ALOFT_BOOTSTRAP_PROJECT", PROJECT);
        }
        if binary_name == "aloft-propeller" {
            command
                .env("ALOFT_WORK_DIR", self.scratch.path().join("work"))
                .env("ALOFT_CATALOG", self.catalog_url());
        }
        if binary_name == "aloft-catalog" {
            command.env("ALOFT_CATALOG_LISTEN", format!("127.0.0.1:{}", self.catalog_port));
        }
        for (key, value) in env {
            command.env(key, value);
        }
        adjust(&mut command);
        Service {
            child: command.spawn().expect("spawn service"),
            name: log_name.into(),
        }
    }

    pub fn start_admin(&self) -> Service {
        self.start_admin_with_env(&[])
    }

    /// `start_admin` with `extra` environment.
    pub fn start_admin_with_env(&self, extra: &[(&str, String)]) -> Service {
        let mut command = self.command("aloft-admin", "admin");
        command
            .env("ALOFT_ADMIN_LISTEN", format!("127.0.0.1:{}", self.admin_port))
            .env("ALOFT_BOOTSTRAP_PROJECT", PROJECT);
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn admin");
        Service {
            child,
            name: "admin".into(),
        }
    }

    pub fn start_propeller(&self, member: &str) -> Service {
        let child = self
            .command("aloft-propeller", &format!("propeller-{member}"))
            .env("ALOFT_MEMBER_ID", member)
            .env("ALOFT_WORK_DIR", self.scratch.path().join("work"))
            .env("ALOFT_CATALOG", self.catalog_url())
            .spawn()
            .expect("spawn propeller");
        Service {
            child,
            name: member.into(),
        }
    }

    pub fn start_scheduler(&self, member: &str) -> Service {
        let child = self
            .command("aloft-scheduler", &format!("scheduler-{member}"))
            .env("ALOFT_MEMBER_ID", member)
            .spawn()
            .expect("spawn scheduler");
        Service {
            child,
            name: member.into(),
        }
    }

    pub fn start_catalog(&self) -> Service {
        let child = self
            .command("aloft-catalog", "catalog")
            .env("ALOFT_CATALOG_LISTEN", format!("127.0.0.1:{}", self.catalog_port))
            .spawn()
            .expect("spawn catalog");
        Service {
            child,
            name: "catalog".into(),
        }
    }

    pub fn catalog_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.catalog_port)
    }

    /// Connects to the catalog once it answers.
    pub async fn catalog(&self) -> aloft_cli::lineage::CatalogClient {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = aloft_cli::lineage::connect_catalog(&self.catalog_url()).await {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "the catalog never answered; log:\n{}",
                self.log("catalog")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every named service's log contains `needle` (e.g. each propeller has claimed a partition,
    /// so the consumer group has settled and no partition moves while the test runs).
    pub async fn wait_for_logs(&self, names: &[&str], needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !names.iter().all(|name| self.log(name).contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "not every one of {names:?} logged {needle:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.scratch.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Every log `name` wrote, its runs before restarts first (`log` is the current run's only).
    pub fn logs_of_every_run(&self, name: &str) -> String {
        let mut runs: Vec<String> = (1..)
            .map(|n| self.scratch.path().join(format!("{name}.log.{n}")))
            .take_while(|kept| kept.exists())
            .map(|kept| std::fs::read_to_string(kept).unwrap_or_default())
            .collect();
        runs.push(self.log(name));
        runs.join("")
    }

    /// Connects to admin once it answers and the bootstrap project exists.
    /// The deployment's event log on Kafka (its topics created with `partitions` partitions if missing).
    pub async fn open_log(&self, partitions: u32) -> std::sync::Arc<dyn aloft_eventlog::EventLog> {
        aloft_eventlog::open(
            &aloft_eventlog::LogBackend::Kafka {
                brokers: self.brokers.clone(),
            },
            &aloft_eventlog::Topics::with_prefix(&self.topic_prefix),
            partitions,
        )
        .await
        .expect("open the deployment's event log")
    }

    pub async fn client(&self) -> AdminClient {
        let address: SocketAddr = ([127, 0, 0, 1], self.admin_port).into();
        wait_for_client(&format!("http://{address}"), || self.log("admin")).await
    }
}

pub async fn wait_for_client(url: &str, log: impl Fn() -> String) -> AdminClient {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut client) = connect(url).await {
            let projects = client.list_projects(wire::ListProjectsRequest {}).await;
            if projects.is_ok_and(|p| p.into_inner().projects.iter().any(|p| p.name == PROJECT)) {
                return client;
            }
        }
        assert!(
            Instant::now() < deadline,
            "admin at {url} never became ready; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client of admin at `url` calling with bearer `token`, once admin answers it (a panic after 60 s).
pub async fn client_as(url: &str, token: &str) -> AdminClient {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut client) = aloft_cli::client::connect_as(url, Some(token)).await {
            if client.who_am_i(wire::WhoAmIRequest {}).await.is_ok() {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "admin at {url} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes spec `text` to `dir/name` and registers it into the default project and domain.
pub async fn register_text(client: &mut AdminClient, dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing the spec file");
    register_file(client, &path).await;
}

/// A deployment on Kafka + Postgres with admin and, when `propeller` names one, a propeller of that member
/// name (services in that order); `None` without the real backends.
pub async fn deploy(propeller: Option<&str>) -> Option<(Deployment, Vec<Service>, AdminClient)> {
    let (brokers, database) = real_backends()?;
    let deployment = Deployment::new(&brokers, &database).await;
    let mut services = vec![deployment.start_admin()];
    if let Some(member) = propeller {
        services.push(deployment.start_propeller(member));
    }
    let client = deployment.client().await;
    Some((deployment, services, client))
}

/// Registers a spec file into the default project and domain.
pub async fn register_file(client: &mut AdminClient, path: &Path) -> Vec<aloft_cli::specs::Registered> {
    let documents = read_spec_file(path).expect("spec file");
    register_documents(client, PROJECT, DOMAIN, documents)
        .await
        .expect("registration")
}

/// A launch target: task `name` of the test project (`version` empty: its latest).
pub fn task(name: &str, version: &str) -> wire::create_execution_request::Target {
    wire::create_execution_request::Target::Task(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
        version: version.into(),
    })
}

pub fn workflow(name: &str) -> wire::create_execution_request::Target {
    wire::create_execution_request::Target::Workflow(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
        version: String::new(),
    })
}

pub async fn launch(
    client: &mut AdminClient,
    target: wire::create_execution_request::Target,
    name: &str,
    inputs: &[(&str, &str)],
) -> Result<wire::ExecutionIdentifier, tonic::Status> {
    let response = client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: name.into(),
            target: Some(target),
            inputs: None,
            text_inputs: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overwrite_cache: false,
            notifications_json: String::new(),
            disable_notifications: false,
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().id.unwrap_or_default())
}

pub async fn get(client: &mut AdminClient, id: &wire::ExecutionIdentifier) -> wire::Execution {
    client
        .get_execution(wire::GetExecutionRequest {
            id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .expect("get execution")
        .into_inner()
}

/// Waits until `condition` holds for the execution (or fails after `within`). An execution not found yet
/// is waited for too: one requested by a service (a child of a launch-plan node, a scheduled run) appears
/// once admin has projected its request.
pub async fn wait_until(
    client: &mut AdminClient,
    id: &wire::ExecutionIdentifier,
    within: Duration,
    condition: impl Fn(&wire::Execution) -> bool,
) -> wire::Execution {
    let deadline = Instant::now() + within;
    loop {
        let found = client
            .get_execution(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await;
        let last = match found {
            Ok(response) => {
                let execution = response.into_inner();
                if condition(&execution) {
                    return execution;
                }
                format!("{execution:?}")
            }
            Err(status) if status.code() == tonic::Code::NotFound => status.message().to_string(),
            Err(status) => panic!("get execution {}: {status}", id.name),
        };
        assert!(
            Instant::now() < deadline,
            "execution {} never reached the condition; last: {last}",
            id.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_finished(
    client: &mut AdminClient,
    id: &wire::ExecutionIdentifier,
    within: Duration,
) -> wire::Execution {
    wait_until(client, id, within, |e| aloft_cli::render::is_terminal(e.phase)).await
}

/// Waits for the execution to finish and asserts it SUCCEEDED (the error is the failure message).
pub async fn wait_succeeded(
    client: &mut AdminClient,
    id: &wire::ExecutionIdentifier,
    within: Duration,
) -> wire::Execution {
    let finished = wait_finished(client, id, within).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{}: {}",
        id.name,
        finished.error
    );
    finished
}

/// Outputs as `name=text`, leaving out blobs (their URIs name the machine-local work dir).
pub fn scalar_outputs(execution: &wire::Execution) -> Vec<String> {
    let mut outputs: Vec<String> = execution
        .outputs
        .iter()
        .flat_map(|m| m.values.iter())
        .filter(|(_, v)| !matches!(v.value, Some(wire::literal::Value::Blob(_))))
        .map(|(k, v)| format!("{k}={}", aloft_cli::render::literal_text(v)))
        .collect();
    outputs.sort();
    outputs
}

/// Every execution of the test project and domain, page by page (stops at the first refused page).
pub async fn all_executions(client: &mut AdminClient) -> Vec<wire::Execution> {
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let Ok(page) = client
            .list_executions(wire::ListExecutionsRequest {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                limit: 500,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
        else {
            return found;
        };
        let page = page.into_inner();
        found.extend(page.executions);
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

/// Checks the decision stream of an execution has seq 1..=n with no gap and ends in ExecutionFinished.
pub async fn assert_history_gap_free(
    client: &mut AdminClient,
    id: &wire::ExecutionIdentifier,
) -> Vec<wire::HistoryEvent> {
    let history = client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner()
        .events;
    let decisions: Vec<&wire::HistoryEvent> = history
        .iter()
        .filter(|e| aloft_core::StreamId::is_execution(&e.stream))
        .collect();
    let seqs: Vec<u64> = decisions.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "history of {} has gaps or repeats", id.name);
    assert_eq!(
        history.first().map(|e| e.kind.as_str()),
        Some("ExecutionRequested")
    );
    assert_eq!(
        decisions.last().map(|e| e.kind.as_str()),
        Some("ExecutionFinished")
    );
    history
}

pub use aloft_cli::ops_probe::http_get;

/// Parses Prometheus text: every sample line is `name{labels} value`; returns samples by name+labels.
pub fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        samples.insert(
            series.to_string(),
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        );
    }
    samples
}

/// Registers a task that runs `sh -c SCRIPT` as version 1 in the default project.
pub async fn register_process_task(client: &mut AdminClient, domain: &str, name: &str, script: &str) {
    let spec = serde_json::json!({
        "name": name,
        "version": "1",
        "run": {"process": {"command": ["sh", "-c", script]}},
    });
    client
        .register_task(wire::RegisterRequest {
            project: PROJECT.into(),
            domain: domain.into(),
            spec_json: spec.to_string(),
        })
        .await
        .expect("register the task");
}

/// Starts an execution of version 1 of `task` named `name`.
pub async fn start_task(
    client: &mut AdminClient,
    domain: &str,
    task: &str,
    name: &str,
) -> wire::ExecutionIdentifier {
    client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: domain.into(),
            name: name.into(),
            target: Some(wire::create_execution_request::Target::Task(wire::Identifier {
                project: PROJECT.into(),
                domain: domain.into(),
                name: task.into(),
                version: "1".into(),
            })),
            ..Default::default()
        })
        .await
        .expect("start the execution")
        .into_inner()
        .id
        .expect("a created execution has an id")
}

/// One sample (`name{labels}` as rendered) from a service's /metrics on `port`; 0 when absent.
pub async fn metric(port: u16, sample: &str) -> f64 {
    match http_get(port, "/metrics").await {
        Some((200, body)) => parse_prometheus(&body).get(sample).copied().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// The whole log of a node's latest attempt, read once (no follow).
pub async fn read_task_log(client: &mut AdminClient, id: &wire::ExecutionIdentifier, node: &str) -> String {
    let mut stream = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: node.into(),
            ..Default::default()
        })
        .await
        .expect("read the log")
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = stream.message().await.expect("a log chunk") {
        text.extend_from_slice(&chunk.data);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The bytes `DownloadData` streams for `request` (a blob, or a value's text), gathered.
pub async fn download_data(client: &mut AdminClient, request: wire::DownloadDataRequest) -> Vec<u8> {
    let mut chunks = client
        .download_data(request)
        .await
        .expect("download the data")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.expect("a chunk") {
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}
