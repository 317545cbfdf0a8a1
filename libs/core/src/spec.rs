//! What users register: projects, tasks, workflows and launch plans, as written in YAML/JSON spec files.
//!
//! A spec file holds one or more documents, each tagged with `kind`. Versions left out are filled in with a
//! hash of the content, so registering the same content twice is idempotent.
//!
//! Over 600 lines: every entity's spec type with its validation, kept together so the shape users write in
//! YAML is defined in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::compute::{ContainerSpec, Resources};
use crate::ids::{validate_name, validate_version, Identifier, NameError};
pub use crate::interface::Interface;
use crate::invalid::SpecError;
use crate::types::{parse_duration_millis, LiteralType};

pub const DEFAULT_DOMAINS: [&str; 3] = ["development", "staging", "production"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_domains")]
    pub domains: Vec<String>,
}

fn default_domains() -> Vec<String> {
    DEFAULT_DOMAINS.iter().map(|d| d.to_string()).collect()
}

impl ProjectSpec {
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name("project", &self.name)?;
        for domain in &self.domains {
            validate_name("domain", domain)?;
        }
        Ok(())
    }
}

/// How a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskKind {
    /// A local subprocess in a fresh working directory. Inputs arrive as files in `$ALOFT_INPUT_DIR` and as
    /// `ALOFT_INPUT_<NAME>` env vars; outputs are read from files the command writes to `$ALOFT_OUTPUT_DIR`.
    Process {
        command: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Blob inputs are handed over as their URIs (the task reads them itself, e.g. with its own S3
        /// client) instead of being downloaded into `$ALOFT_INPUT_DIR` first.
        #[serde(default, skip_serializing_if = "is_false")]
        blobs_by_uri: bool,
    },
    /// A command in its own container image (on a container engine, or as a Kubernetes pod), with the same
    /// `$ALOFT_INPUT_DIR` / `$ALOFT_OUTPUT_DIR` contract as a process.
    Container(ContainerSpec),
    /// Does nothing and succeeds; for tests and benchmarks.
    Noop,
    /// Sleeps for `duration` (e.g. `2s`) and succeeds.
    Sleep { duration: String },
    /// Copies each input to the output of the same name.
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after user errors (non-zero exit, timeout).
    #[serde(default)]
    pub user: u32,
    /// Retries after system errors (the executor or the machine failed). Separate budget, as in Flyte.
    #[serde(default = "default_system_retries")]
    pub system: u32,
}

fn default_system_retries() -> u32 {
    3
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            user: 0,
            system: default_system_retries(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub interface: Interface,
    pub run: TaskKind,
    #[serde(default)]
    pub retries: RetryPolicy,
    /// Per-attempt timeout such as `30s` or `1h`; the attempt is killed and counts as a user error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Memoization: results are reused for equal inputs (see `aloft_core::cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheConfig>,
    /// What an attempt holds while it runs: CPU, memory, GPUs, and tokens of shared pools (`pools: {warehouse: 1}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The platform may interrupt an attempt of this task (to drain a propeller, or on preemptible machines):
    /// it is then stopped and retried as a system error. The last attempt the system retry budget allows runs
    /// non-interruptible, so interruptions alone cannot fail the node.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interruptible: bool,
    /// Secrets the task gets at attempt start, by name, as an environment variable or a file; the
    /// propeller resolves them, and their values appear nowhere else (spec, events, logs, API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<TaskSecret>,
}

/// One secret a task needs: `{name: hf-token, env: HF_TOKEN}` or `{name: gcs-key, file: key.json}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSecret {
    /// The secret's name in the propeller's secret source.
    pub name: String,
    /// The environment variable the task reads it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The file it is written to: a process task finds it as `$ALOFT_SECRETS_DIR/<file name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl TaskSecret {
    fn validate(&self, task: &str) -> Result<(), SpecError> {
        validate_name("secret name", &self.name).map_err(|e| SpecError::task(task, e.to_string()))?;
        match (&self.env, &self.file) {
            (Some(env), None) => {
                let valid = env
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                    && env
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    return Err(SpecError::task(
                        task,
                        format!(
                            "secret {}: env {env:?} is not an environment variable name (A-Z, 0-9, _)",
                            self.name
                        ),
                    ));
                }
                if env.starts_with("ALOFT_") {
                    return Err(SpecError::task(
                        task,
                        format!(
                            "secret {}: env {env:?} is reserved (ALOFT_* carry the task's inputs)",
                            self.name
                        ),
                    ));
                }
                Ok(())
            }
            (None, Some(file)) => {
                let name = std::path::Path::new(file).file_name().and_then(|n| n.to_str());
                match name {
                    Some(name) if name != ".." && name != "." => Ok(()),
                    _ => Err(SpecError::task(
                        task,
                        format!("secret {}: file {file:?} names no file", self.name),
                    )),
                }
            }
            _ => Err(SpecError::task(
                task,
                format!("secret {} needs exactly one of env or file", self.name),
            )),
        }
    }

    /// The file name a `file` secret is written under.
    pub fn file_name(&self) -> Option<&str> {
        self.file
            .as_deref()
            .and_then(|file| std::path::Path::new(file).file_name())
            .and_then(|name| name.to_str())
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl TaskSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name("task name", &self.name)?;
        if let Some(version) = &self.version {
            validate_version(version)?;
        }
        validate_interface_names(&self.interface)?;
        if let Some(cache) = &self.cache {
            cache.validate(&self.name, &self.interface)?;
        }
        if let Some(resources) = &self.resources {
            resources.validate(&self.name)?;
        }
        let mut secret_targets = std::collections::BTreeSet::new();
        for secret in &self.secrets {
            secret.validate(&self.name)?;
            let target = secret.env.as_deref().or(secret.file_name()).unwrap_or_default();
            if !secret_targets.insert(target) {
                return Err(SpecError::task(
                    &self.name,
                    format!("two secrets go to {target:?}"),
                ));
            }
        }
        if let Some(timeout) = &self.timeout {
            let millis = parse_duration_millis(timeout)
                .map_err(|e| SpecError::task(&self.name, format!("timeout: {e}")))?;
            if millis <= 0 {
                return Err(SpecError::task(&self.name, "timeout must be positive"));
            }
        }
        match &self.run {
            TaskKind::Process { command, .. } if command.is_empty() => Err(SpecError::task(
                &self.name,
                "run.process.command must not be empty",
            )),
            TaskKind::Container(container) => container.validate(&self.name),
            TaskKind::Sleep { duration } => parse_duration_millis(duration)
                .map(|_| ())
                .map_err(|e| SpecError::task(&self.name, format!("run.sleep.duration: {e}"))),
            TaskKind::Echo => {
                for (output, output_type) in &self.interface.outputs {
                    match self.interface.inputs.get(output) {
                        Some(input_type) if input_type.is_assignable_to(output_type) => {}
                        _ => {
                            return Err(SpecError::task(
                                &self.name,
                                format!("echo output {output:?} needs an input of the same name and type"),
                            ))
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn timeout_millis(&self) -> Option<i64> {
        self.timeout
            .as_deref()
            .and_then(|t| parse_duration_millis(t).ok())
    }
}

fn validate_interface_names(interface: &Interface) -> Result<(), SpecError> {
    for name in interface.inputs.keys().chain(interface.outputs.keys()) {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= crate::ids::MAX_NAME_LEN;
        if !valid {
            return Err(SpecError::VariableName { name: name.clone() });
        }
    }
    for (side, schemas, variables) in [
        ("input_schemas", &interface.input_schemas, &interface.inputs),
        ("output_schemas", &interface.output_schemas, &interface.outputs),
    ] {
        for (name, schema) in schemas {
            let problem = if !variables.contains_key(name) {
                Some(format!(
                    "names no variable of the interface (they are {:?})",
                    variables.keys().collect::<Vec<_>>()
                ))
            } else if !schema.is_object() {
                Some("must be a JSON Schema object".to_string())
            } else if schema.to_string().len() > crate::interface::MAX_SCHEMA_BYTES {
                Some(format!(
                    "is larger than {} KiB",
                    crate::interface::MAX_SCHEMA_BYTES / 1024
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(SpecError::invalid(format!("interface.{side}.{name}"), problem));
            }
        }
    }
    Ok(())
}

/// A reference to a registered task: `name` (latest version at registration time) or `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    pub name: String,
    pub version: Option<String>,
}

impl TaskRef {
    pub fn parse(text: &str) -> TaskRef {
        match text.split_once('@') {
            Some((name, version)) => TaskRef {
                name: name.to_string(),
                version: Some(version.to_string()),
            },
            None => TaskRef {
                name: text.to_string(),
                version: None,
            },
        }
    }
}

/// Where a node input (or a workflow output) gets its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum BindingSpec {
    /// `{input: x}`: a workflow input.
    WorkflowInput { input: String },
    /// `{node: a, output: y}`: an upstream node's output.
    NodeOutput { node: String, output: String },
    /// `{value: 3}`: a constant, converted by the input's declared type.
    Constant { value: serde_json::Value },
    /// Shorthand: `inputs.x` or `a.y`.
    Shorthand(String),
}

/// One node of a workflow. It does exactly one thing: run a `task`, inline a registered `workflow`, choose
/// one of several nodes with a `branch`, or wait at a `gate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    /// `name` or `name@version` of a registered task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `name` or `name@version` of a registered workflow, inlined as a subworkflow: its nodes run under
    /// this node (ids `THIS/INNER`) and its outputs are this node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicSpec>,
    /// `name` or `name@version` of a registered launch plan, run as a child execution of its own (with the
    /// plan's default and fixed inputs); its outputs are this node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_plan: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, BindingSpec>,
    /// Ordering-only dependencies: run after these nodes even without a data binding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Overrides the task's retry policy for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Overrides the task's per-attempt timeout for this node (a task or map node), e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Overrides the task's `interruptible` flag for this node (a task or map node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
    /// Overrides the task's resources for this node (a task or map node; a map's every item), field by
    /// field: `resources: {memory: 16Gi}` keeps the task's CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// What a node does, as given by the one of `task`, `workflow`, `branch`, `gate` it sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeSpecKind<'a> {
    Task(&'a str),
    Workflow(&'a str),
    Branch(&'a BranchSpec),
    Gate(&'a GateSpec),
    Map(&'a MapSpec),
    Dynamic(&'a DynamicSpec),
    LaunchPlan(&'a str),
}

impl NodeSpec {
    /// A node that runs `task` with these inputs.
    pub fn task(id: &str, task: &str, inputs: BTreeMap<String, BindingSpec>) -> NodeSpec {
        NodeSpec {
            id: id.to_string(),
            task: Some(task.to_string()),
            workflow: None,
            branch: None,
            gate: None,
            map: None,
            dynamic: None,
            launch_plan: None,
            inputs,
            after: Vec::new(),
            retries: None,
            timeout: None,
            interruptible: None,
            resources: None,
        }
    }

    /// The node's kind, or an error naming the node when it sets none or more than one.
    pub fn kind(&self) -> Result<NodeSpecKind<'_>, SpecError> {
        let mut kinds = Vec::new();
        if let Some(task) = &self.task {
            kinds.push(NodeSpecKind::Task(task));
        }
        if let Some(workflow) = &self.workflow {
            kinds.push(NodeSpecKind::Workflow(workflow));
        }
        if let Some(branch) = &self.branch {
            kinds.push(NodeSpecKind::Branch(branch));
        }
        if let Some(gate) = &self.gate {
            kinds.push(NodeSpecKind::Gate(gate));
        }
        if let Some(map) = &self.map {
            kinds.push(NodeSpecKind::Map(map));
        }
        if let Some(dynamic) = &self.dynamic {
            kinds.push(NodeSpecKind::Dynamic(dynamic));
        }
        if let Some(launch_plan) = &self.launch_plan {
            kinds.push(NodeSpecKind::LaunchPlan(launch_plan));
        }
        match kinds.as_slice() {
            [kind] => Ok(*kind),
            [] => Err(SpecError::NoNodeKind {
                node: self.id.clone(),
            }),
            _ => Err(SpecError::SeveralNodeKinds {
                node: self.id.clone(),
            }),
        }
    }
}

/// `if`/`elif`/`else`: the first case whose condition holds runs its node; the others are SKIPPED. The
/// branch node's outputs are those its cases' nodes all have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    /// Tried in order (the first is the `if`, the rest `elif`s).
    pub cases: Vec<BranchCaseSpec>,
    /// Runs when no case matches; without it, no match fails the node.
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<Box<NodeSpec>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchCaseSpec {
    /// E.g. `inputs.n > 10 and prep.ok == true` (see `aloft_core::condition`).
    #[serde(rename = "if")]
    pub condition: String,
    pub then: Box<NodeSpec>,
}

/// Runs `task` once per item of the list bound to its input `over` (the node's other inputs go to every
/// run); each task output becomes a list, in item order. `map: {task: square, over: n, concurrency: 50}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// `name` or `name@version` of a registered task.
    pub task: String,
    /// The task input each item is given to; the node binds it to a list of that input's type.
    pub over: String,
    /// At most this many items run at once (default: no limit beyond the execution's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The share of items that must succeed (default 1.0). Below 1.0, failed items do not fail the node and
    /// their place in each output list is empty (the outputs are lists of optional values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_success_ratio: Option<f64>,
    /// What each item asks for, read from the item: `{memory: "{{item.memory}}"}` over a struct or map item
    /// (see [`crate::item_resources`]); over the task's and the node's resources, field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_resources: Option<crate::compute::Resources>,
}

/// A workflow planned at run time: `task` (the planner) gets the node's inputs and writes its output
/// `workflow` (type struct): a workflow spec, compiled and type-checked like a registered one before any of
/// its nodes start. Its inputs are the node's inputs; its outputs must include the declared `outputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicSpec {
    /// `name` or `name@version` of the planner task.
    pub task: String,
    /// The registered tasks the planned workflow may run (`name` or `name@version`), resolved at registration
    /// so an execution keeps the versions it was launched with.
    #[serde(default)]
    pub uses: Vec<String>,
    /// The node's outputs, which the planned workflow must produce.
    #[serde(default)]
    pub outputs: BTreeMap<String, LiteralType>,
}

/// A node that waits: a fixed time, a named signal, or an approval. Without a timeout a signal or an
/// approval is awaited for as long as the execution runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GateSpec {
    /// `gate: {sleep: 30s}`.
    Sleep(String),
    /// `gate: {signal: {name: go, type: boolean, timeout: 1h}}`: set with `aloft signal EXECUTION NAME VALUE`;
    /// a typed signal's value is the node's output `value`.
    Signal {
        name: String,
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        value_type: Option<LiteralType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
    },
    /// `gate: {approve: {timeout: 1d}}`: given with `aloft approve EXECUTION NODE`.
    Approve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub interface: Interface,
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub outputs: BTreeMap<String, BindingSpec>,
    /// At most this many nodes run at once (default: no limit); a launch plan may set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    /// What a node that fails for good does to the rest of the execution.
    #[serde(default, skip_serializing_if = "FailurePolicy::is_fail_fast")]
    pub on_failure: FailurePolicy,
}

/// What happens to the rest of an execution when a node fails for good (its retries used up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The execution fails at once; running attempts are aborted (Flyte's FAIL_IMMEDIATELY).
    #[default]
    FailFast,
    /// Nodes that do not depend on the failed one still run to completion, then the execution fails
    /// (Flyte's FAIL_AFTER_EXECUTABLE_NODES_COMPLETE).
    CompleteOthers,
}

impl FailurePolicy {
    pub fn is_fail_fast(&self) -> bool {
        *self == FailurePolicy::FailFast
    }
}

fn validate_max_parallelism(what: &str, max_parallelism: Option<u32>) -> Result<(), SpecError> {
    if max_parallelism == Some(0) {
        return Err(SpecError::invalid(
            what,
            "max_parallelism must be at least 1 (leave it out for no limit)",
        ));
    }
    Ok(())
}

impl WorkflowSpec {
    /// Every task, workflow and launch plan its nodes reference, cases of branches included (so a registry
    /// can look them up before compiling).
    pub fn references(&self) -> (Vec<TaskRef>, Vec<TaskRef>, Vec<TaskRef>) {
        fn walk(
            node: &NodeSpec,
            tasks: &mut Vec<TaskRef>,
            workflows: &mut Vec<TaskRef>,
            plans: &mut Vec<TaskRef>,
        ) {
            if let Some(plan) = &node.launch_plan {
                plans.push(TaskRef::parse(plan));
            }
            if let Some(task) = &node.task {
                tasks.push(TaskRef::parse(task));
            }
            if let Some(workflow) = &node.workflow {
                workflows.push(TaskRef::parse(workflow));
            }
            if let Some(map) = &node.map {
                tasks.push(TaskRef::parse(&map.task));
            }
            if let Some(dynamic) = &node.dynamic {
                tasks.push(TaskRef::parse(&dynamic.task));
                tasks.extend(dynamic.uses.iter().map(|task| TaskRef::parse(task)));
            }
            if let Some(branch) = &node.branch {
                for case in &branch.cases {
                    walk(&case.then, tasks, workflows, plans);
                }
                if let Some(otherwise) = &branch.otherwise {
                    walk(otherwise, tasks, workflows, plans);
                }
            }
        }
        let (mut tasks, mut workflows, mut plans) = (Vec::new(), Vec::new(), Vec::new());
        for node in &self.nodes {
            walk(node, &mut tasks, &mut workflows, &mut plans);
        }
        (tasks, workflows, plans)
    }

    pub fn validate_names(&self) -> Result<(), SpecError> {
        validate_name("workflow name", &self.name)?;
        validate_max_parallelism(&format!("workflow {}", self.name), self.max_parallelism)?;
        if let Some(version) = &self.version {
            validate_version(version)?;
        }
        validate_interface_names(&self.interface)?;
        for node in &self.nodes {
            validate_name("node id", &node.id)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchPlanSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `name` or `name@version` of the workflow.
    pub workflow: String,
    /// Inputs used when the caller gives none; the caller may override them.
    #[serde(default)]
    pub default_inputs: BTreeMap<String, serde_json::Value>,
    /// Inputs the caller may not override.
    #[serde(default)]
    pub fixed_inputs: BTreeMap<String, serde_json::Value>,
    /// Fire on a cron expression or a fixed rate while this version is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::ScheduleSpec>,
    /// At most this many nodes of one execution run at once; overrides the workflow's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    /// Who to tell when an execution of this launch plan ends in one of the rules' phases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::notify::NotificationRule>,
}

impl LaunchPlanSpec {
    pub fn validate_names(&self) -> Result<(), SpecError> {
        validate_name("launch plan name", &self.name)?;
        validate_max_parallelism(&format!("launch plan {}", self.name), self.max_parallelism)?;
        crate::notify::validate_rules(&format!("launch plan {}", self.name), &self.notifications)?;
        if let Some(version) = &self.version {
            validate_version(version)?;
        }
        Ok(())
    }
}

/// One document of a spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Parsed once per registration and never stored in bulk: boxing the task would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum SpecDocument {
    Project(ProjectSpec),
    Task(TaskSpec),
    Workflow(WorkflowSpec),
    LaunchPlan(LaunchPlanSpec),
}

/// A short, stable hash of any serializable spec, used as its default version and to tell identical
/// re-registrations from conflicting ones. serde_json with `BTreeMap`s and struct field order is canonical.
pub fn content_digest<T: Serialize>(spec: &T) -> String {
    let canonical = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(&Sha256::digest(&canonical)[..8])
}

/// The identifier a spec gets: its own version, or a digest of its content without a version.
pub fn identifier_for(
    project: &str,
    domain: &str,
    name: &str,
    version: Option<&str>,
    digest: &str,
) -> Identifier {
    Identifier {
        project: project.to_string(),
        domain: domain.to_string(),
        name: name.to_string(),
        version: version.map(str::to_string).unwrap_or_else(|| digest.to_string()),
    }
}

/// Rejects JSON in which an object names a key twice (JSON parsers keep the last silently, which would
/// let a node input be bound twice without anyone noticing). The error gives the path of the key.
pub fn reject_duplicate_keys(json: &str) -> Result<(), SpecError> {
    use serde::de::DeserializeSeed;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    DuplicateKeyCheck { path: String::new() }
        .deserialize(&mut deserializer)
        .map_err(|e| SpecError::DuplicateKey(e.to_string()))
}

struct DuplicateKeyCheck {
    path: String,
}

impl<'de> serde::de::DeserializeSeed<'de> for DuplicateKeyCheck {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DuplicateKeyCheck {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(format!(
                    "{path} is given more than once"
                )));
            }
            map.next_value_seed(DuplicateKeyCheck { path })?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(DuplicateKeyCheck {
                path: format!("{}[{index}]", self.path),
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_reported_with_its_path() {
        let json = r#"{"nodes": [{"id": "a", "inputs": {"n": "inputs.x", "n": "inputs.y"}}]}"#;
        let error = reject_duplicate_keys(json).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("nodes[0].inputs.n is given more than once"),
            "{error}"
        );
        assert!(reject_duplicate_keys(r#"{"a": {"n": 1}, "b": {"n": 2}}"#).is_ok());
    }

    fn task_with_schemas(schemas: serde_json::Value) -> Result<TaskSpec, serde_json::Error> {
        let mut task = serde_json::json!({
            "name": "fit",
            "interface": {
                "inputs": {"params": "struct"},
                "outputs": {"score": "float"}
            },
            "run": {"process": {"command": ["true"]}}
        });
        task["interface"]["input_schemas"] = schemas;
        serde_json::from_value(task)
    }

    #[test]
    fn a_variable_schema_is_carried_and_checked_against_the_interface() {
        let schema = serde_json::json!({"type": "object", "properties": {"lr": {"type": "number"}}});
        let task = task_with_schemas(serde_json::json!({"params": schema.clone()})).unwrap();
        task.validate().unwrap();
        assert_eq!(task.interface.input_schemas["params"], schema);
        // It is part of the content: a changed schema is a new version.
        let other = task_with_schemas(serde_json::json!({"params": {"type": "object"}})).unwrap();
        assert_ne!(content_digest(&task), content_digest(&other));

        let unknown = task_with_schemas(serde_json::json!({"nope": {"type": "object"}})).unwrap();
        let error = unknown.validate().unwrap_err().to_string();
        assert!(
            error.contains("interface.input_schemas.nope: names no variable of the interface"),
            "{error}"
        );
        let not_object = task_with_schemas(serde_json::json!({"params": 3})).unwrap();
        let error = not_object.validate().unwrap_err().to_string();
        assert!(error.contains("must be a JSON Schema object"), "{error}");
    }
}
