//! The compiled form of a workflow: a flat, topologically ordered list of nodes with resolved bindings and
//! the task specs they run embedded, so the log alone is enough to replay an execution.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::ids::Identifier;
use crate::spec::{FailurePolicy, Interface, RetryPolicy, TaskSpec};
use crate::types::{LiteralType, Value};

/// A resolved source for a node input or workflow output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeBinding {
    WorkflowInput(String),
    NodeOutput {
        node: usize,
        output: String,
    },
    Constant(Value),
    /// Element `index` of the list `list` resolves to: the input of a map's item when the map's list was
    /// offloaded to the blob store (an inline list gives each item its element as a `Constant`).
    Item {
        list: Box<NodeBinding>,
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledNode {
    pub id: String,
    /// The task a task node runs. A control node (see `control`) carries a synthetic no-op task named after
    /// its kind (`branch`, `gate`, the subworkflow's name) so read models can show what it is.
    pub task_id: Identifier,
    pub task: TaskSpec,
    pub inputs: BTreeMap<String, NodeBinding>,
    /// Indices of every node this one waits for (data and `after` dependencies), sorted.
    pub upstream: Vec<usize>,
    pub retries: RetryPolicy,
    /// Set for nodes that run no task; the state machine settles them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// Set for nodes inside a branch case: they run only if the branch takes that case, else are SKIPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_of: Option<CaseRef>,
    /// Set for the item nodes a map node adds at run time: the map node's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_of: Option<usize>,
}

impl CompiledNode {
    /// The bindings of this node whose values the engine itself reads and which must travel inline (never
    /// offloaded to the blob store): a dynamic node's plan, which applying its expansion reads. A map's list
    /// and a branch's condition operands are not among them: the propeller fetches an offloaded one before
    /// the node is decided (see `ExecutionState::fetches_needed`). Each names a node upstream of this one.
    pub fn bindings_read_by_the_engine(&self) -> Vec<&NodeBinding> {
        match &self.control {
            Some(Control::Dynamic(control)) => vec![&control.plan],
            _ => Vec::new(),
        }
    }

    pub fn is_task(&self) -> bool {
        self.control.is_none()
    }
}

/// A node inside case `case` of branch node `branch` (`case == cases.len()` is the `else`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRef {
    pub branch: usize,
    pub case: usize,
}

/// Nodes the state machine runs itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// The end of an inlined subworkflow: it waits for every inner node and its outputs are its `inputs`
    /// (the subworkflow's output bindings).
    Subworkflow {
        workflow: Identifier,
    },
    /// Decides once the nodes its conditions read are done, then waits for the taken case's nodes; its
    /// outputs are the taken case's exit node's outputs.
    Branch {
        cases: Vec<CompiledCase>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        otherwise: Option<CaseArm>,
        outputs: Vec<String>,
    },
    Gate(CompiledGate),
    /// Expands, once its inputs are ready, into one item node per element of input `over`; done when
    /// every item is, with each output gathered as a list in item order.
    Map(MapControl),
    /// Runs the workflow its planner (the node before it) wrote, inlined under it at run time; done when
    /// every planned node is, with the planned workflow's outputs.
    Dynamic(Box<DynamicControl>),
    /// Launches a child execution of a launch plan and takes its outputs when it succeeds.
    LaunchPlan(Box<ChildPlan>),
}

/// What a launch-plan node runs: the plan's workflow (compiled, with the plan's limits) and its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildPlan {
    pub plan: Identifier,
    pub workflow: CompiledWorkflow,
    /// Used for inputs the node leaves unbound.
    pub default_inputs: BTreeMap<String, Value>,
    /// Always used; the node may not bind these.
    pub fixed_inputs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicControl {
    /// Where the planned spec comes from: the planner's output `workflow`.
    pub plan: NodeBinding,
    /// The tasks the plan may use, by the reference it writes (`name` or `name@version`).
    pub tasks: BTreeMap<String, (Identifier, TaskSpec)>,
    /// The types of the node's inputs, which the planned workflow's inputs must accept.
    pub input_types: BTreeMap<String, LiteralType>,
    pub outputs: BTreeMap<String, LiteralType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapControl {
    pub task_id: Identifier,
    pub task: Box<TaskSpec>,
    pub over: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    pub min_success_ratio: f64,
    /// Each item's retry budget.
    pub retries: RetryPolicy,
    /// What each item asks for, read from the item (`crate::item_resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_resources: Option<Box<crate::compute::Resources>>,
}

impl Control {
    pub(super) fn kind_name(&self) -> &'static str {
        match self {
            Control::Subworkflow { .. } => "subworkflow",
            Control::Branch { .. } => "branch",
            Control::Gate(_) => "gate",
            Control::Map(_) => "map",
            Control::Dynamic(_) => "dynamic",
            Control::LaunchPlan(_) => "launch_plan",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledCase {
    /// The condition as written, for messages.
    pub text: String,
    pub condition: Condition<NodeBinding>,
    pub arm: CaseArm,
}

/// A case's nodes: the contiguous indices `first..=exit`; `exit` is the case's own node (whose outputs are
/// the branch's), the rest are nested inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseArm {
    pub first: usize,
    pub exit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompiledGate {
    Sleep {
        millis: i64,
    },
    Signal {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_type: Option<LiteralType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_millis: Option<i64>,
    },
    Approve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_millis: Option<i64>,
    },
}

impl CompiledGate {
    /// The signal name that opens this gate: the declared name, or `approve:NODE` for an approval (signal
    /// names cannot contain ':', so the two never collide).
    pub fn signal_name(&self, node_id: &str) -> Option<String> {
        match self {
            CompiledGate::Sleep { .. } => None,
            CompiledGate::Signal { name, .. } => Some(name.clone()),
            CompiledGate::Approve { .. } => Some(approval_signal(node_id)),
        }
    }
}

/// The signal an approval of node `node_id` sends.
pub fn approval_signal(node_id: &str) -> String {
    format!("approve:{node_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledWorkflow {
    pub id: Identifier,
    pub interface: Interface,
    /// In a topological order: every node comes after all of its upstream nodes. Subworkflows and branch
    /// cases are flattened in, each in a contiguous block that ends with its own node.
    pub nodes: Vec<CompiledNode>,
    pub outputs: BTreeMap<String, NodeBinding>,
    /// At most this many nodes run at once; `None` is no limit. Set from the workflow spec, or from the
    /// launch plan when an execution is launched through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    #[serde(default, skip_serializing_if = "FailurePolicy::is_fail_fast")]
    pub on_failure: FailurePolicy,
}

impl CompiledWorkflow {
    /// The workflow inputs the engine reads (see [`CompiledNode::bindings_read_by_the_engine`]).
    pub fn inputs_read_by_the_engine(&self) -> std::collections::BTreeSet<String> {
        self.nodes
            .iter()
            .flat_map(CompiledNode::bindings_read_by_the_engine)
            .filter_map(|binding| match binding {
                NodeBinding::WorkflowInput(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// A workflow of one node that runs a single task, so `aloft run TASK` goes through the same engine.
    pub fn for_single_task(task_id: Identifier, task: TaskSpec) -> CompiledWorkflow {
        let inputs = task
            .interface
            .inputs
            .keys()
            .map(|name| (name.clone(), NodeBinding::WorkflowInput(name.clone())));
        let outputs = task.interface.outputs.keys().map(|name| {
            (
                name.clone(),
                NodeBinding::NodeOutput {
                    node: 0,
                    output: name.clone(),
                },
            )
        });
        CompiledWorkflow {
            id: task_id.clone(),
            interface: task.interface.clone(),
            outputs: outputs.collect(),
            nodes: vec![CompiledNode {
                id: task.name.clone(),
                task_id,
                inputs: inputs.collect(),
                upstream: vec![],
                retries: task.retries,
                task,
                control: None,
                case_of: None,
                item_of: None,
            }],
            max_parallelism: None,
            on_failure: FailurePolicy::FailFast,
        }
    }
}
