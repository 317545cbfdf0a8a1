//! Domain events. Each is carried in one `Envelope` on the log (see `aloft-eventlog`).
//!
//! `aloft.executions` carries two kinds of execution events: *requests* (appended by admin on behalf of a
//! user: `ExecutionRequested`, `TerminateRequested`) and *decisions* (appended only by the partition owner,
//! sequenced gap-free per execution stream and fenced by `writer_epoch`). `aloft.registry` carries
//! registrations, which are immutable per version.
//!
//! Over 600 lines: the log's whole vocabulary, every event of every topic with what it means, kept in one
//! file so that a change to any event is read beside the others (the golden files pin their encodings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache::CacheOutcome;
use crate::compiler::CompiledWorkflow;
use crate::ids::{ExecutionId, Identifier};
pub use crate::interface::Outputs;
use crate::notify::NotificationRule;
pub use crate::phase::{ErrorKind, ExecutionPhase, NodePhase};
use crate::spec::{LaunchPlanSpec, ProjectSpec, TaskSpec, WorkflowSpec};
use crate::types::Value;

/// What a recovering execution takes over from the failed one: the outputs of every node that succeeded
/// there, by node id (the workflow version is the same). Those nodes are RECOVERED and never run.
/// (Keyed by id, not index: map keys inside the tagged event must be strings.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    pub from: ExecutionId,
    pub nodes: BTreeMap<String, Outputs>,
}

/// The launch-plan node a child execution was launched by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    pub execution: ExecutionId,
    pub node: usize,
    pub node_id: String,
}

/// What a waiting gate waits for. The CLI and the console say it in their words (`aloft_proto::convert::
/// describe_wait`); the event carries only the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitingFor {
    /// The end of its sleep (`until` on the event says when).
    EndOfSleep,
    /// The signal `name` (`aloft signal EXECUTION NAME VALUE`).
    Signal { name: String },
    /// An approval of gate node `node` (`aloft approve EXECUTION NODE`).
    Approval { node: String },
    /// Said in words: events of schema version 1 carried the text itself.
    Described(String),
}

/// The typed forms as the log carries them (schema version 2 on).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TypedWait {
    EndOfSleep,
    Signal { name: String },
    Approval { node: String },
}

/// Either form: a version-1 text or a typed wait.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredWait {
    Text(String),
    Typed(TypedWait),
}

impl Serialize for WaitingFor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let typed = match self {
            WaitingFor::EndOfSleep => TypedWait::EndOfSleep,
            WaitingFor::Signal { name } => TypedWait::Signal { name: name.clone() },
            WaitingFor::Approval { node } => TypedWait::Approval { node: node.clone() },
            // Written back as it was read, so a version-1 event re-encodes to the same bytes.
            WaitingFor::Described(text) => return serializer.serialize_str(text),
        };
        typed.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WaitingFor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match StoredWait::deserialize(deserializer)? {
            StoredWait::Text(text) => WaitingFor::Described(text),
            StoredWait::Typed(TypedWait::EndOfSleep) => WaitingFor::EndOfSleep,
            StoredWait::Typed(TypedWait::Signal { name }) => WaitingFor::Signal { name },
            StoredWait::Typed(TypedWait::Approval { node }) => WaitingFor::Approval { node },
        })
    }
}

/// A node added to an execution at run time, as readers (the read model) need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddedNode {
    pub id: String,
    pub task: Identifier,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExecutionEvent {
    ExecutionRequested {
        execution: ExecutionId,
        request_id: String,
        workflow: Box<CompiledWorkflow>,
        inputs: Outputs,
        launch_plan: Option<Identifier>,
        requested_at: i64,
        /// The schedule time this execution was fired for, when a schedule launched it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled_at: Option<i64>,
        /// Cached tasks skip the lookup, run, and replace the stored result.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        overwrite_cache: bool,
        /// Replaces the launch plan's and the project's notification rules for this execution; an empty
        /// list disables every notification.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notifications: Option<Vec<NotificationRule>>,
        /// Set when this execution recovers a failed one: its nodes that succeeded are not run again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery: Option<Recovery>,
        /// Set for a child execution a launch-plan node launched: told when this one ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<Box<ParentLink>>,
        /// Labels to find the execution by (`team=ml`), validated by `ids::validate_labels`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
    },
    TerminateRequested {
        execution: ExecutionId,
        reason: String,
        requested_at: i64,
    },
    /// A propeller took ownership of a partition; decisions with another epoch read after it are discarded.
    PartitionClaimed {
        partition: u32,
        epoch: u64,
        owner: String,
        at: i64,
    },
    ExecutionStarted {
        execution: ExecutionId,
        at: i64,
    },
    AttemptStarted {
        execution: ExecutionId,
        node: usize,
        attempt: u32,
        /// The platform may interrupt this attempt (see `TaskSpec::interruptible`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interruptible: bool,
        at: i64,
    },
    /// A started attempt waits for the propeller's resources (an executor slot, the tenant's quota, a
    /// resource pool): `reason` names the limit and the attempt's place in its tenant's queue when it
    /// began waiting. Only attempts that cannot start at once get one.
    AttemptWaiting {
        execution: ExecutionId,
        node: usize,
        attempt: u32,
        reason: String,
        at: i64,
    },
    /// A waiting attempt got its resources and runs now.
    AttemptDispatched {
        execution: ExecutionId,
        node: usize,
        attempt: u32,
        at: i64,
    },
    AttemptSucceeded {
        execution: ExecutionId,
        node: usize,
        attempt: u32,
        outputs: Outputs,
        at: i64,
        /// Set for cached tasks: the key and what the cache did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<CacheOutcome>,
    },
    AttemptFailed {
        execution: ExecutionId,
        node: usize,
        attempt: u32,
        kind: ErrorKind,
        message: String,
        at: i64,
    },
    /// A ready cached node took stored outputs instead of running: its attempt `attempt` is recorded as
    /// succeeded from the cache (status HIT) in this one decision, with no `AttemptStarted`.
    NodeCacheHit {
        execution: ExecutionId,
        node: usize,
        attempt: u32,
        outputs: Outputs,
        cache: CacheOutcome,
        at: i64,
    },
    /// A node the state machine runs itself (a subworkflow's end, a branch, a gate) is done with `outputs`.
    NodeSucceeded {
        execution: ExecutionId,
        node: usize,
        outputs: Outputs,
        at: i64,
    },
    /// A branch chose case `case` (`cases.len()` is the `else`); the other cases' nodes are SKIPPED.
    /// `condition` (the case's condition, or `else`) and `skipped` are for readers without the workflow.
    BranchTaken {
        execution: ExecutionId,
        node: usize,
        case: usize,
        condition: String,
        skipped: Vec<usize>,
        at: i64,
    },
    /// A gate began to wait; `until` is when a sleep ends or a signal or approval times out.
    GateWaiting {
        execution: ExecutionId,
        node: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
        /// What it waits for.
        waiting_for: WaitingFor,
        at: i64,
    },
    /// A map node's list input is ready: it adds one item node per element, at indices `first..first+items`
    /// (ids `NODE[i]`, running `task`). The nodes follow from the compiled workflow; `first` and `task` are
    /// for readers without it.
    MapExpanded {
        execution: ExecutionId,
        node: usize,
        first: usize,
        items: usize,
        task: Identifier,
        at: i64,
    },
    /// A dynamic node's planned workflow compiled: its nodes are added at indices `first..` under the node
    /// (ids `NODE/INNER`). The nodes follow from the planner's output; `added` is for readers without it.
    DynamicExpanded {
        execution: ExecutionId,
        node: usize,
        first: usize,
        added: Vec<AddedNode>,
        at: i64,
    },
    /// A launch-plan node launched child execution `child` (its owner then appends the child's request).
    ChildLaunched {
        execution: ExecutionId,
        node: usize,
        child: ExecutionId,
        at: i64,
    },
    /// A request: child execution `child` of launch-plan node `node` ended.
    ChildFinished {
        execution: ExecutionId,
        node: usize,
        child: ExecutionId,
        phase: ExecutionPhase,
        outputs: Outputs,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        requested_at: i64,
    },
    /// A request: a signal was sent to the execution (an approval is the signal `approve:NODE`).
    SignalReceived {
        execution: ExecutionId,
        signal: String,
        value: Value,
        requested_at: i64,
    },
    /// A node used up its retry budget, matched no branch case, or timed out at a gate.
    NodeFailed {
        execution: ExecutionId,
        node: usize,
        phase: NodePhase,
        message: String,
        at: i64,
    },
    ExecutionFinished {
        execution: ExecutionId,
        phase: ExecutionPhase,
        outputs: Outputs,
        error: Option<String>,
        at: i64,
    },
}

impl ExecutionEvent {
    /// The execution this event is about; `None` for partition-level events.
    pub fn execution(&self) -> Option<&ExecutionId> {
        match self {
            ExecutionEvent::ExecutionRequested { execution, .. }
            | ExecutionEvent::TerminateRequested { execution, .. }
            | ExecutionEvent::ExecutionStarted { execution, .. }
            | ExecutionEvent::AttemptStarted { execution, .. }
            | ExecutionEvent::AttemptWaiting { execution, .. }
            | ExecutionEvent::AttemptDispatched { execution, .. }
            | ExecutionEvent::AttemptSucceeded { execution, .. }
            | ExecutionEvent::AttemptFailed { execution, .. }
            | ExecutionEvent::NodeCacheHit { execution, .. }
            | ExecutionEvent::NodeFailed { execution, .. }
            | ExecutionEvent::NodeSucceeded { execution, .. }
            | ExecutionEvent::BranchTaken { execution, .. }
            | ExecutionEvent::GateWaiting { execution, .. }
            | ExecutionEvent::MapExpanded { execution, .. }
            | ExecutionEvent::DynamicExpanded { execution, .. }
            | ExecutionEvent::ChildLaunched { execution, .. }
            | ExecutionEvent::ChildFinished { execution, .. }
            | ExecutionEvent::SignalReceived { execution, .. }
            | ExecutionEvent::ExecutionFinished { execution, .. } => Some(execution),
            ExecutionEvent::PartitionClaimed { .. } => None,
        }
    }

    /// A node's success, however it was decided: `(node, attempt, outputs, cache, at)` of an
    /// `AttemptSucceeded` or a `NodeCacheHit`.
    pub fn node_success(&self) -> Option<(usize, u32, &Outputs, Option<&CacheOutcome>, i64)> {
        match self {
            ExecutionEvent::AttemptSucceeded {
                node,
                attempt,
                outputs,
                cache,
                at,
                ..
            } => Some((*node, *attempt, outputs, cache.as_ref(), *at)),
            ExecutionEvent::NodeCacheHit {
                node,
                attempt,
                outputs,
                cache,
                at,
                ..
            } => Some((*node, *attempt, outputs, Some(cache), *at)),
            _ => None,
        }
    }

    /// Requests come from admin and are not part of the owner's sequence.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            ExecutionEvent::ExecutionRequested { .. }
                | ExecutionEvent::TerminateRequested { .. }
                | ExecutionEvent::SignalReceived { .. }
                | ExecutionEvent::ChildFinished { .. }
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ExecutionEvent::ExecutionRequested { .. } => "ExecutionRequested",
            ExecutionEvent::TerminateRequested { .. } => "TerminateRequested",
            ExecutionEvent::PartitionClaimed { .. } => "PartitionClaimed",
            ExecutionEvent::ExecutionStarted { .. } => "ExecutionStarted",
            ExecutionEvent::AttemptStarted { .. } => "AttemptStarted",
            ExecutionEvent::AttemptWaiting { .. } => "AttemptWaiting",
            ExecutionEvent::AttemptDispatched { .. } => "AttemptDispatched",
            ExecutionEvent::AttemptSucceeded { .. } => "AttemptSucceeded",
            ExecutionEvent::AttemptFailed { .. } => "AttemptFailed",
            ExecutionEvent::NodeCacheHit { .. } => "NodeCacheHit",
            ExecutionEvent::NodeFailed { .. } => "NodeFailed",
            ExecutionEvent::NodeSucceeded { .. } => "NodeSucceeded",
            ExecutionEvent::BranchTaken { .. } => "BranchTaken",
            ExecutionEvent::GateWaiting { .. } => "GateWaiting",
            ExecutionEvent::MapExpanded { .. } => "MapExpanded",
            ExecutionEvent::DynamicExpanded { .. } => "DynamicExpanded",
            ExecutionEvent::ChildLaunched { .. } => "ChildLaunched",
            ExecutionEvent::ChildFinished { .. } => "ChildFinished",
            ExecutionEvent::SignalReceived { .. } => "SignalReceived",
            ExecutionEvent::ExecutionFinished { .. } => "ExecutionFinished",
        }
    }

    pub fn occurred_at(&self) -> i64 {
        match self {
            ExecutionEvent::ExecutionRequested { requested_at, .. }
            | ExecutionEvent::TerminateRequested { requested_at, .. }
            | ExecutionEvent::SignalReceived { requested_at, .. }
            | ExecutionEvent::ChildFinished { requested_at, .. } => *requested_at,
            ExecutionEvent::PartitionClaimed { at, .. }
            | ExecutionEvent::ExecutionStarted { at, .. }
            | ExecutionEvent::AttemptStarted { at, .. }
            | ExecutionEvent::AttemptWaiting { at, .. }
            | ExecutionEvent::AttemptDispatched { at, .. }
            | ExecutionEvent::AttemptSucceeded { at, .. }
            | ExecutionEvent::AttemptFailed { at, .. }
            | ExecutionEvent::NodeCacheHit { at, .. }
            | ExecutionEvent::NodeFailed { at, .. }
            | ExecutionEvent::NodeSucceeded { at, .. }
            | ExecutionEvent::BranchTaken { at, .. }
            | ExecutionEvent::GateWaiting { at, .. }
            | ExecutionEvent::MapExpanded { at, .. }
            | ExecutionEvent::DynamicExpanded { at, .. }
            | ExecutionEvent::ChildLaunched { at, .. }
            | ExecutionEvent::ExecutionFinished { at, .. } => *at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RegistryEvent {
    ProjectRegistered {
        project: ProjectSpec,
        at: i64,
    },
    TaskRegistered {
        id: Identifier,
        spec: TaskSpec,
        digest: String,
        at: i64,
    },
    WorkflowRegistered {
        id: Identifier,
        spec: WorkflowSpec,
        compiled: Box<CompiledWorkflow>,
        digest: String,
        at: i64,
    },
    LaunchPlanRegistered {
        id: Identifier,
        spec: LaunchPlanSpec,
        workflow: Identifier,
        default_inputs: Outputs,
        fixed_inputs: Outputs,
        digest: String,
        at: i64,
    },
    /// Makes this version the one that is scheduled; every other version of the name stops.
    LaunchPlanActivated {
        id: Identifier,
        at: i64,
    },
    LaunchPlanDeactivated {
        id: Identifier,
        at: i64,
    },
    /// Stored results of a task (one cache version, or all when empty; one key when set) created at or
    /// before `at` are dropped; replaying the log keeps them dropped.
    /// How a tenant's attempts share the propellers' capacity: its weight against other tenants, and at most
    /// how many run at once. The latest setting applies, without restarting anything.
    TenantQuotaSet {
        project: String,
        domain: String,
        weight: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_running: Option<u32>,
        at: i64,
    },
    /// A named resource pool shared by every propeller replica: at most `limit` tokens held at once. The
    /// latest definition of a name applies.
    PoolDefined {
        name: String,
        limit: u32,
        at: i64,
    },
    /// The default notification rules of a project's domain (`*`: every domain), replacing earlier ones;
    /// they apply to executions that do not override their rules.
    NotificationDefaultsSet {
        project: String,
        domain: String,
        rules: Vec<NotificationRule>,
        at: i64,
    },
    CacheEvicted {
        project: String,
        domain: String,
        task_name: String,
        #[serde(default)]
        cache_version: String,
        #[serde(default)]
        key: String,
        at: i64,
    },
    /// An API key for machines: its secret is never recorded, only the secret's SHA-256.
    ApiKeyCreated {
        key_id: String,
        name: String,
        project: String,
        /// Empty: every domain of the project.
        #[serde(default)]
        domain: String,
        role: String,
        secret_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
        at: i64,
    },
    /// The key is refused from now on, by every admin replica once it has read this.
    ApiKeyRevoked {
        key_id: String,
        /// The key's project (for the audit trail).
        #[serde(default)]
        project: String,
        at: i64,
    },
    /// `member` (`subject:<sub>` or `group:<name>`) holds `role` on the project (one domain when set), or
    /// no longer does when `granted` is false.
    RoleBindingSet {
        member: String,
        project: String,
        #[serde(default)]
        domain: String,
        role: String,
        granted: bool,
        at: i64,
    },
}

impl RegistryEvent {
    /// Registry streams hold exactly one event each (entities are immutable per version).
    pub fn stream(&self) -> String {
        match self {
            RegistryEvent::ProjectRegistered { project, .. } => format!("project/{}", project.name),
            RegistryEvent::TaskRegistered { id, .. } => format!("task/{id}"),
            RegistryEvent::WorkflowRegistered { id, .. } => format!("workflow/{id}"),
            RegistryEvent::LaunchPlanRegistered { id, .. } => format!("launch_plan/{id}"),
            // State changes of one launch plan: one stream per change, made unique by its time.
            RegistryEvent::LaunchPlanActivated { id, at } => format!("launch_plan_state/{id}/activated/{at}"),
            RegistryEvent::LaunchPlanDeactivated { id, at } => {
                format!("launch_plan_state/{id}/deactivated/{at}")
            }
            RegistryEvent::CacheEvicted {
                project,
                domain,
                task_name,
                at,
                ..
            } => format!("cache_eviction/{project}/{domain}/{task_name}/{at}"),
            RegistryEvent::NotificationDefaultsSet {
                project, domain, at, ..
            } => format!("notification_defaults/{project}/{domain}/{at}"),
            RegistryEvent::TenantQuotaSet {
                project, domain, at, ..
            } => format!("tenant_quota/{project}/{domain}/{at}"),
            RegistryEvent::PoolDefined { name, at, .. } => format!("pool/{name}/{at}"),
            RegistryEvent::ApiKeyCreated { key_id, .. } => format!("api_key/{key_id}"),
            RegistryEvent::ApiKeyRevoked { key_id, .. } => format!("api_key/{key_id}/revoked"),
            RegistryEvent::RoleBindingSet {
                member,
                project,
                domain,
                role,
                at,
                ..
            } => format!("role_binding/{project}/{domain}/{member}/{role}/{at}"),
        }
    }

    /// The event's name, as the audit trail shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryEvent::ProjectRegistered { .. } => "ProjectRegistered",
            RegistryEvent::TaskRegistered { .. } => "TaskRegistered",
            RegistryEvent::WorkflowRegistered { .. } => "WorkflowRegistered",
            RegistryEvent::LaunchPlanRegistered { .. } => "LaunchPlanRegistered",
            RegistryEvent::LaunchPlanActivated { .. } => "LaunchPlanActivated",
            RegistryEvent::LaunchPlanDeactivated { .. } => "LaunchPlanDeactivated",
            RegistryEvent::TenantQuotaSet { .. } => "TenantQuotaSet",
            RegistryEvent::PoolDefined { .. } => "PoolDefined",
            RegistryEvent::NotificationDefaultsSet { .. } => "NotificationDefaultsSet",
            RegistryEvent::CacheEvicted { .. } => "CacheEvicted",
            RegistryEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
            RegistryEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            RegistryEvent::RoleBindingSet { .. } => "RoleBindingSet",
        }
    }

    /// The project and domain the event belongs to (empty for platform-wide ones: pools).
    pub fn tenant(&self) -> (&str, &str) {
        match self {
            RegistryEvent::ProjectRegistered { project, .. } => (&project.name, ""),
            RegistryEvent::TaskRegistered { id, .. }
            | RegistryEvent::WorkflowRegistered { id, .. }
            | RegistryEvent::LaunchPlanRegistered { id, .. }
            | RegistryEvent::LaunchPlanActivated { id, .. }
            | RegistryEvent::LaunchPlanDeactivated { id, .. } => (&id.project, &id.domain),
            RegistryEvent::TenantQuotaSet { project, domain, .. }
            | RegistryEvent::NotificationDefaultsSet { project, domain, .. }
            | RegistryEvent::CacheEvicted { project, domain, .. }
            | RegistryEvent::ApiKeyCreated { project, domain, .. }
            | RegistryEvent::RoleBindingSet { project, domain, .. } => (project, domain),
            RegistryEvent::ApiKeyRevoked { project, .. } => (project, ""),
            RegistryEvent::PoolDefined { .. } => ("", ""),
        }
    }

    pub fn at(&self) -> i64 {
        match self {
            RegistryEvent::ProjectRegistered { at, .. }
            | RegistryEvent::TaskRegistered { at, .. }
            | RegistryEvent::WorkflowRegistered { at, .. }
            | RegistryEvent::LaunchPlanRegistered { at, .. }
            | RegistryEvent::LaunchPlanActivated { at, .. }
            | RegistryEvent::LaunchPlanDeactivated { at, .. }
            | RegistryEvent::CacheEvicted { at, .. }
            | RegistryEvent::NotificationDefaultsSet { at, .. }
            | RegistryEvent::TenantQuotaSet { at, .. }
            | RegistryEvent::PoolDefined { at, .. }
            | RegistryEvent::ApiKeyCreated { at, .. }
            | RegistryEvent::ApiKeyRevoked { at, .. }
            | RegistryEvent::RoleBindingSet { at, .. } => *at,
        }
    }
}

/// What the scheduler records on `aloft.schedules`: its progress per launch plan version, so a new leader
/// knows what was fired without any state outside the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ScheduleEvent {
    /// The execution for `scheduled_at` was requested (after its `ExecutionRequested` was acknowledged).
    ScheduleFired {
        launch_plan: Identifier,
        scheduled_at: i64,
        execution: ExecutionId,
        fired_at: i64,
    },
    /// Missed times up to `through` were skipped by the catch-up policy.
    ScheduleSkipped {
        launch_plan: Identifier,
        through: i64,
        count: u32,
        at: i64,
    },
    /// Every cursor at this point of the topic: a new leader starts reading here (its offset is committed
    /// for the snapshot group) instead of at offset 0.
    ScheduleCursors {
        cursors: Vec<(Identifier, i64)>,
        at: i64,
    },
}

impl ScheduleEvent {
    /// The cursors this event moves: `(launch plan version, schedule time reached)`.
    pub fn cursors(&self) -> Vec<(&Identifier, i64)> {
        match self {
            ScheduleEvent::ScheduleFired {
                launch_plan,
                scheduled_at,
                ..
            } => vec![(launch_plan, *scheduled_at)],
            ScheduleEvent::ScheduleSkipped {
                launch_plan, through, ..
            } => vec![(launch_plan, *through)],
            ScheduleEvent::ScheduleCursors { cursors, .. } => {
                cursors.iter().map(|(id, at)| (id, *at)).collect()
            }
        }
    }

    /// The stream of this event on `aloft.schedules`.
    pub fn stream(&self) -> String {
        match self {
            ScheduleEvent::ScheduleFired { launch_plan, .. }
            | ScheduleEvent::ScheduleSkipped { launch_plan, .. } => {
                format!("schedule/{launch_plan}")
            }
            ScheduleEvent::ScheduleCursors { at, .. } => format!("schedule_cursors/{at}"),
        }
    }
}
