//! The compiler's unit tests: what compiles, in which order, and what each refusal says.

use super::*;
use crate::spec::{BindingSpec, FailurePolicy, NodeSpec, RetryPolicy, TaskKind};

fn task(name: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> (Identifier, TaskSpec) {
    let interface = Interface {
        inputs: inputs
            .iter()
            .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
            .collect(),
        outputs: outputs
            .iter()
            .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
            .collect(),
        ..Default::default()
    };
    let spec = TaskSpec {
        name: name.to_string(),
        version: Some("v1".into()),
        interface,
        run: TaskKind::Noop,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    };
    let id = Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
        version: "v1".into(),
    };
    (id, spec)
}

fn resolver(tasks: Vec<(Identifier, TaskSpec)>) -> impl Fn(&TaskRef) -> Option<(Identifier, TaskSpec)> {
    move |r: &TaskRef| tasks.iter().find(|(id, _)| id.name == r.name).cloned()
}

fn node(id: &str, task: &str, inputs: &[(&str, &str)]) -> NodeSpec {
    let inputs = inputs
        .iter()
        .map(|(k, v)| (k.to_string(), BindingSpec::Shorthand(v.to_string())))
        .collect();
    NodeSpec::task(id, task, inputs)
}

fn workflow(nodes: Vec<NodeSpec>) -> WorkflowSpec {
    WorkflowSpec {
        name: "wf".into(),
        version: None,
        interface: Interface {
            inputs: [("x".to_string(), LiteralType::Integer)].into(),
            outputs: BTreeMap::new(),
            ..Default::default()
        },
        nodes,
        outputs: BTreeMap::new(),
        max_parallelism: None,
        on_failure: FailurePolicy::FailFast,
    }
}

fn wf_id() -> Identifier {
    Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: "wf".into(),
        version: "1".into(),
    }
}

fn tasks() -> Vec<(Identifier, TaskSpec)> {
    vec![
        task("inc", &[("n", "integer")], &[("n", "integer")]),
        task("say", &[("s", "string")], &[("s", "string")]),
    ]
}

#[test]
fn compiles_in_topological_order() {
    let spec = workflow(vec![
        node("b", "inc", &[("n", "a.n")]),
        node("a", "inc", &[("n", "inputs.x")]),
    ]);
    let compiled = compile_workflow(wf_id(), &spec, &resolver(tasks())).unwrap();
    assert_eq!(compiled.nodes[0].id, "a");
    assert_eq!(compiled.nodes[1].upstream, vec![0]);
}

#[test]
fn rejects_cycles_naming_the_nodes() {
    let spec = workflow(vec![
        node("a", "inc", &[("n", "b.n")]),
        node("b", "inc", &[("n", "a.n")]),
    ]);
    let error = compile_workflow(wf_id(), &spec, &resolver(tasks())).unwrap_err();
    assert!(matches!(error, CompileError::Cycle { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("a") && message.contains("b"), "{message}");
}

#[test]
fn rejects_type_mismatch_naming_node_and_input() {
    let spec = workflow(vec![
        node("a", "inc", &[("n", "inputs.x")]),
        node("b", "say", &[("s", "a.n")]),
    ]);
    let message = compile_workflow(wf_id(), &spec, &resolver(tasks()))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("\"b\"") && message.contains("\"s\"") && message.contains("integer"),
        "{message}"
    );
}

#[test]
fn rejects_unknown_references_and_unbound_inputs() {
    let unknown_task = workflow(vec![node("a", "nope", &[])]);
    assert!(matches!(
        compile_workflow(wf_id(), &unknown_task, &resolver(tasks())),
        Err(CompileError::UnknownTask { .. })
    ));
    let unknown_node = workflow(vec![node("a", "inc", &[("n", "ghost.n")])]);
    assert!(matches!(
        compile_workflow(wf_id(), &unknown_node, &resolver(tasks())),
        Err(CompileError::UnknownNode { .. })
    ));
    let unbound = workflow(vec![node("a", "inc", &[])]);
    assert_eq!(
        compile_workflow(wf_id(), &unbound, &resolver(tasks())).unwrap_err(),
        CompileError::UnboundInput {
            node: "a".into(),
            input: "n".into()
        }
    );
    let duplicate = workflow(vec![
        node("a", "inc", &[("n", "inputs.x")]),
        node("a", "inc", &[("n", "inputs.x")]),
    ]);
    assert!(matches!(
        compile_workflow(wf_id(), &duplicate, &resolver(tasks())),
        Err(CompileError::DuplicateNodeId { .. })
    ));
    let undeclared = workflow(vec![node("a", "inc", &[("n", "inputs.y")])]);
    assert!(matches!(
        compile_workflow(wf_id(), &undeclared, &resolver(tasks())),
        Err(CompileError::UnknownWorkflowInput { .. })
    ));
}
