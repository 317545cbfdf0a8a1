//! The `aloft` command line: every command, flag and environment variable (clap definitions).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::{DEFAULT_DEV_ADDRESS, DEFAULT_DEV_CATALOG_ADDRESS};

/// Aloft: typed, versioned, event-sourced workflow orchestration.
///
/// Without --admin, commands use a running `aloft dev` on 127.0.0.1:8089, or else start an embedded fleet
/// in this process on --data-dir, so `aloft run examples/diamond.yaml --input x=3` works with nothing installed.
#[derive(Parser, Debug)]
#[command(name = "aloft", version)]
pub struct Cli {
    /// Admin API address (e.g. http://127.0.0.1:8089).
    #[arg(long, global = true, env = "ALOFT_ADMIN")]
    pub admin: Option<String>,
    #[arg(long, global = true, env = "ALOFT_PROJECT", default_value = "default")]
    pub project: String,
    #[arg(long, global = true, env = "ALOFT_DOMAIN", default_value = "development")]
    pub domain: String,
    /// Catalog API address (memoized results and lineage); default: that of `aloft dev` or the embedded fleet.
    #[arg(long, global = true, env = "ALOFT_CATALOG")]
    pub catalog: Option<String>,
    /// Data directory of the embedded fleet.
    #[arg(long, global = true, env = "ALOFT_DATA_DIR", default_value = ".aloft")]
    pub data_dir: PathBuf,
    /// Credential sent to admin: an OIDC access token or an API key (`aloft apikey create`). Default: the
    /// one `aloft login` stored.
    #[arg(long, global = true, env = "ALOFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Register projects, tasks, workflows and launch plans from YAML/JSON spec files, or Python files
    /// of @task and @workflow functions (compiled by the SDK: pip install ./sdk/python). Everything named
    /// registers together: when admin refuses one document, none of the others is registered.
    Register {
        /// Spec files, or directories whose .yaml, .yml, .json and .py files are read (in name order).
        #[arg(required_unless_present = "files")]
        paths: Vec<PathBuf>,
        /// A spec file (the same as a path; may be repeated).
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
    },
    /// Run a launch plan, workflow or task by name, or register a spec file and run its last workflow.
    Run(RunArgs),
    /// Show an execution (default), task, workflow or launch plan.
    Get {
        /// `execution`, `task`, `workflow` or `launchplan`, then the name; or just an execution name.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[arg(long)]
        version: Option<String>,
        /// Print this output of the execution (a blob's bytes, other values as text) instead, e.g.
        /// `aloft get my-run --output model > model.json`.
        #[arg(long)]
        output: Option<String>,
        /// With --output: the output of this node rather than of the execution.
        #[arg(long, requires = "output")]
        node: Option<String>,
    },
    /// Write an execution's (or a node's) input or output to a file or stdout: a blob's bytes from the
    /// blob store, any other value as its text.
    Download {
        execution: String,
        /// The input's or output's name.
        name: String,
        /// This node's input or output rather than the execution's.
        #[arg(long)]
        node: Option<String>,
        /// An input rather than an output (with --node: what the node was given).
        #[arg(long)]
        input: bool,
        /// For a directory blob: the file inside it.
        #[arg(long)]
        path: Option<String>,
        /// Where to write it (default: stdout).
        #[arg(short = 'o', long = "to", conflicts_with = "url")]
        to: Option<std::path::PathBuf>,
        /// Print a URL that reads the blob without credentials for 15 minutes instead (S3, GCS, Azure).
        #[arg(long)]
        url: bool,
    },
    /// List executions, tasks, workflows, launch plans or projects.
    List {
        what: ListKind,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        filters: ExecutionFilters,
    },
    /// The log (stdout and stderr) of a node's attempt, from the blob store: readable after the attempt
    /// ended, on any machine, even when its propeller died.
    Logs {
        execution: String,
        /// The node's id in the workflow.
        node: String,
        /// The attempt's number (default: the node's latest).
        #[arg(long)]
        attempt: Option<u32>,
        /// Keep printing what the attempt writes until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Every event of an execution, in order.
    History {
        execution: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Run an execution again: the same workflow version with the same inputs, some replaced by --input.
    Relaunch {
        execution: String,
        #[arg(short = 'i', long = "input", value_parser = parse_key_value)]
        inputs: Vec<(String, String)>,
        /// Name of the new execution (generated when left out).
        #[arg(long)]
        name: Option<String>,
        /// Wait for it to finish, showing progress (always on for the embedded fleet).
        #[arg(long)]
        wait: bool,
    },
    /// Run a failed execution again, reusing the outputs of every node that succeeded (RECOVERED, not run
    /// again): only the failed and skipped nodes run, on the same workflow version and inputs.
    Recover {
        execution: String,
        /// Name of the new execution (generated when left out).
        #[arg(long)]
        name: Option<String>,
        /// Wait for it to finish, showing progress (always on for the embedded fleet).
        #[arg(long)]
        wait: bool,
    },
    /// Stop a running execution; its running attempts are killed.
    Terminate {
        execution: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a signal to a running execution's gates (`gate: {signal: {name: NAME}}`); a signal sent before
    /// its gate is reached opens the gate as soon as it is.
    Signal {
        execution: String,
        /// The signal's name, as the gate declares it.
        signal: String,
        /// Its value, parsed by the gate's declared type (leave out for a gate without a type).
        value: Option<String>,
    },
    /// Approve an approval gate (`gate: {approve: {}}`) that is waiting now.
    Approve {
        execution: String,
        /// The gate's node id, as `aloft get` shows it (e.g. `release/review` inside a subworkflow).
        node: String,
    },
    /// Activate or deactivate a launch plan version; only the active version of a name is scheduled.
    Launchplan {
        #[command(subcommand)]
        command: LaunchPlanCommand,
    },
    /// Launch plans with an active schedule, and when each fires next.
    Schedules,
    /// What an execution's artifacts were made from, and what was made from them.
    ///
    /// TARGET is EXECUTION, EXECUTION/NODE or EXECUTION/NODE/OUTPUT; an execution's inputs are its node
    /// `@inputs`. Upstream is followed to the inputs of the root execution, through cache hits too.
    Lineage {
        target: String,
        /// One JSON document: selected ids, artifacts and edges.
        #[arg(long)]
        json: bool,
        /// Follow at most this many steps each way (0: no limit).
        #[arg(long, default_value_t = 0)]
        depth: u32,
    },
    /// Operator tools that work on a deployment's log and databases directly (services may be down).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Memoized results: list them, or evict them so the task runs again.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Notification defaults of the project (--project) for one domain (--domain) or all of them.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// How the project's domain (--project, --domain) shares the propellers with other tenants.
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// API keys of the project (--project) for machines: create (the key is shown once), list, revoke.
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Roles on the project (--project) bound to users (subject:<sub>) and IdP groups (group:<name>).
    Rolebinding {
        #[command(subcommand)]
        command: RoleBindingCommand,
    },
    /// Who admin says you are, and which projects you may read.
    Whoami,
    /// Log in at admin's OIDC issuer through your browser (authorization code + PKCE, answered on loopback),
    /// or keep a credential read from stdin; kept in your config directory, readable by you only.
    Login {
        /// Read the credential (an access token or an API key) from stdin instead, e.g.
        /// `echo $KEY | aloft login --with-token`.
        #[arg(long)]
        with_token: bool,
    },
    /// Forget the stored credential.
    Logout,
    /// Run the whole fleet (admin, propeller, scheduler, catalog, notifier) in this process on the embedded
    /// backends.
    Dev {
        #[arg(long, default_value = DEFAULT_DEV_ADDRESS)]
        listen: SocketAddr,
        /// Where the catalog listens (`aloft lineage` and `aloft cache` find it here).
        #[arg(long, default_value = DEFAULT_DEV_CATALOG_ADDRESS)]
        catalog_listen: SocketAddr,
        /// The blob store for task data and logs (file:///DIR, s3://BUCKET/PREFIX?endpoint=URL, ...;
        /// default: `blobs` in --data-dir).
        #[arg(long, env = "ALOFT_BLOB_STORE")]
        blob_store: Option<String>,
        #[command(flatten)]
        containers: aloft_propeller::executor::ContainerOptions,
    },
}

/// What `aloft run` runs, and how.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A spec file (YAML, JSON, or Python with the SDK), FILE:NAME for one entity the file defines, or the
    /// name of a registered launch plan, workflow or task (looked up in that order).
    pub target: String,
    /// An input as NAME=VALUE, parsed by the input's declared type (lists, maps, structs as JSON).
    #[arg(short = 'i', long = "input", value_parser = parse_key_value)]
    pub inputs: Vec<(String, String)>,
    /// Execution name (generated when left out).
    #[arg(long)]
    pub name: Option<String>,
    /// Version of the named target (default: latest).
    #[arg(long)]
    pub version: Option<String>,
    /// Wait for the execution to finish, showing progress (always on for the embedded fleet).
    #[arg(long)]
    pub wait: bool,
    /// Run cached tasks even when a result is stored, and replace the stored result.
    #[arg(long)]
    pub overwrite_cache: bool,
    /// Notification rules (a YAML or JSON list) for this execution instead of the launch plan's and
    /// the project's.
    #[arg(long, value_name = "FILE")]
    pub notify_file: Option<PathBuf>,
    /// Send no notifications for this execution.
    #[arg(long, conflicts_with = "notify_file")]
    pub no_notify: bool,
    /// A label to find the execution by, as KEY=VALUE (repeatable): `aloft list executions --label team=ml`.
    #[arg(short = 'l', long = "label", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
}

/// Filters of `aloft list executions`.
#[derive(clap::Args, Debug, Default)]
pub struct ExecutionFilters {
    /// Only executions in this phase (repeatable): queued, running, succeeded, failed, aborted, timed_out.
    #[arg(long = "phase")]
    pub phases: Vec<String>,
    /// Only executions carrying this label, as KEY=VALUE (repeatable: all must match).
    #[arg(short = 'l', long = "label", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Only executions of the workflow of this name.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only executions whose name starts with this.
    #[arg(long)]
    pub name_prefix: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Set the tenant's weight (its share of busy propellers against other tenants) and, optionally, at
    /// most how many of its attempts run at once on each propeller. Applies without restarts.
    Set {
        #[arg(long, default_value_t = 1)]
        weight: u32,
        #[arg(long)]
        max_running: Option<u32>,
    },
    /// Define (or change) a resource pool shared by every propeller: tasks that declare
    /// `resources: {pools: {NAME: N}}` hold N of its LIMIT tokens while they run.
    Pool {
        name: String,
        #[arg(long)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Replace the default rules with those in FILE (a YAML or JSON list of rules); they apply to
    /// executions that do not bring their own (`aloft run --notify-file`).
    SetDefaults {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// For every domain of the project instead of --domain.
        #[arg(long)]
        all_domains: bool,
    },
    /// Remove the default rules.
    ClearDefaults {
        #[arg(long)]
        all_domains: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LaunchPlanCommand {
    /// Makes VERSION the active version of NAME (the previously active one stops).
    Activate {
        name: String,
        version: String,
    },
    Deactivate {
        name: String,
        version: String,
    },
}

/// Where a deployment keeps its log and databases (default: the embedded ones in --data-dir).
#[derive(clap::Args, Debug, Clone)]
pub struct DeploymentArgs {
    #[arg(long, env = "ALOFT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Admin's read-model database (default: SQLite in --data-dir).
    #[arg(long, env = "ALOFT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The catalog's database (default: --database-url, or SQLite in --data-dir).
    #[arg(long, env = "ALOFT_CATALOG_DATABASE_URL")]
    pub catalog_database_url: Option<String>,
    #[arg(long, env = "ALOFT_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
}

impl DeploymentArgs {
    pub fn address(&self) -> crate::admin_ops::DeploymentAddress {
        crate::admin_ops::DeploymentAddress {
            kafka_brokers: self.kafka_brokers.clone(),
            database_url: self.database_url.clone(),
            catalog_database_url: self.catalog_database_url.clone(),
            topic_prefix: self.topic_prefix.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and only a digest of it is kept.
    Create {
        /// viewer, operator, approver, publisher or admin.
        #[arg(long)]
        role: String,
        /// Only this domain of the project (default: every domain).
        #[arg(long = "for-domain")]
        for_domain: Option<String>,
        /// What the key is for (shown in lists and the audit trail).
        #[arg(long)]
        name: Option<String>,
        /// e.g. 30d, 12h; default: never.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<std::time::Duration>,
    },
    List,
    /// The key is refused by every admin replica within seconds.
    Revoke {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleBindingCommand {
    /// Bind `--role` to `--member` (subject:<sub> or group:<name>) on the project.
    Add {
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
        /// Only this domain of the project (default: every domain).
        #[arg(long = "for-domain")]
        for_domain: Option<String>,
    },
    Remove {
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
        #[arg(long = "for-domain")]
        for_domain: Option<String>,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Who did what in the project (--project): launches, terminations, approvals, signals, registrations,
    /// keys and bindings, with who did it and how they authenticated. Through the API (project admins).
    Audit {
        /// Since this long ago (e.g. 24h, 7d); default: the beginning.
        #[arg(long, value_parser = parse_duration)]
        since: Option<std::time::Duration>,
        /// Only this subject's actions.
        #[arg(long)]
        subject: Option<String>,
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// How far admin's and the catalog's projections are behind the log, per topic and partition.
    Lag {
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Empty derived tables and replay the whole log into them (stop the services concerned first).
    Replay {
        /// Rebuild admin's read models (projects ... execution events).
        #[arg(long)]
        rebuild_projections: bool,
        /// Rebuild the catalog's tables (cache entries, lineage).
        #[arg(long)]
        rebuild_catalog: bool,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Remove the raw data (blob outputs) of executions that finished longer ago than --older-than, except
    /// what a cache entry or an unfinished execution references; task logs are kept. Says what it removed.
    Gc {
        /// e.g. 30d, 12h.
        #[arg(long, value_parser = parse_duration)]
        older_than: std::time::Duration,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// The deployment's blob stores, as given to its propellers (default: `blobs` in --data-dir).
        #[command(flatten)]
        blobs: aloft_runtime::BlobStoreArgs,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Move a task pod's data through the blob store: what the helper containers the propeller gives task
    /// pods (--kubernetes-helper-image) run. Settings come from the environment the propeller sets.
    PodData {
        #[command(subcommand)]
        step: PodDataStep,
        /// The pod's shared volume, holding `inputs/` and `outputs/`.
        #[arg(
            long,
            env = "ALOFT_POD_DATA_DIR",
            default_value = "/var/run/aloft",
            global = true
        )]
        pod_dir: PathBuf,
        /// Where a failure's message is written for the kubelet to report in the pod's status.
        #[arg(
            long,
            env = "ALOFT_TERMINATION_LOG",
            default_value = "/dev/termination-log",
            global = true
        )]
        termination_log: PathBuf,
        /// The deployment's blob stores, as the propeller's.
        #[command(flatten)]
        blobs: aloft_runtime::BlobStoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum PodDataStep {
    /// Write the attempt's inputs into POD_DIR/inputs (blobs and offloaded values downloaded) and make
    /// POD_DIR/outputs writable for the task. Exits 2 when an input does not exist (the task's error).
    StageIn {
        /// The attempt's inputs, as JSON.
        #[arg(long, env = "ALOFT_POD_INPUTS", hide_env_values = true)]
        inputs: String,
    },
    /// Wait until the task's processes (seen through the pod's shared process namespace) have ended, then
    /// upload every file and directory in POD_DIR/outputs under the attempt's output key.
    StageOut {
        /// The store key the attempt's outputs go under (in the store of --project/--domain).
        #[arg(long, env = "ALOFT_OUTPUT_KEY")]
        output_key: String,
        /// Where the pod's processes are listed.
        #[arg(long, default_value = "/proc")]
        proc_dir: PathBuf,
    },
}

/// Why a value given on the command line does not parse (clap prints it after the flag's name).
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error(transparent)]
    Duration(#[from] aloft_core::types::ValueError),
    #[error("{text:?} must be positive")]
    NotPositive { text: String },
    #[error("expected NAME=VALUE, got {text:?}")]
    NotKeyValue { text: String },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, ArgError> {
    let millis = aloft_core::types::parse_duration_millis(text)?;
    if millis <= 0 {
        return Err(ArgError::NotPositive {
            text: text.to_string(),
        });
    }
    Ok(std::time::Duration::from_millis(millis as u64))
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Stored results in the project and domain, newest first.
    List {
        /// Only this task's results.
        task: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Remove a task's stored results (every cache version unless --cache-version).
    Evict {
        task: String,
        #[arg(long)]
        cache_version: Option<String>,
        /// Only the result with this cache key.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Domains (default: development, staging, production).
        #[arg(long = "domain-name")]
        domains: Vec<String>,
    },
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListKind {
    Executions,
    Tasks,
    Workflows,
    Launchplans,
    Projects,
}

pub fn parse_key_value(text: &str) -> Result<(String, String), ArgError> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| ArgError::NotKeyValue {
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // Catches clashing flags (a subcommand flag shadowing a global one) before a user does.
        super::Cli::command().debug_assert();
    }
}
