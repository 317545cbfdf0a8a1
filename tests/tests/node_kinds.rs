//! Subworkflow, branch and gate nodes on Kafka + Postgres, with admin and a propeller as separate
//! processes: a branch picks a case holding a subworkflow and skips the other, gates sleep, wait for a
//! typed signal sent with `aloft signal` and for an approval given with `aloft approve`; a gate times out;
//! and bad signals, approvals and specs are refused with what is wrong, changing nothing.
//!
//! Over 600 lines: one deployment per node kind, with the helpers they share; splitting by node kind would
//! repeat the setup.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use sha2::Digest;

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use tonic::Code;

/// The release example plus a workflow whose signal gate times out.
fn spec() -> String {
    let example = std::fs::read_to_string(repo_root().join("examples/release.yaml")).unwrap();
    format!(
        "{example}---\nkind: workflow\nname: impatient\nnodes:\n  - {{id: go, gate: {{signal: {{name: go, timeout: 1s}}}}}}\n"
    )
}

fn node<'a>(execution: &'a wire::Execution, id: &str) -> &'a wire::NodeExecution {
    execution
        .nodes
        .iter()
        .find(|n| n.node_id == id)
        .unwrap_or_else(|| panic!("no node {id} in {execution:?}"))
}

fn phase(execution: &wire::Execution, id: &str) -> wire::NodePhase {
    wire::NodePhase::try_from(node(execution, id).phase).unwrap()
}

fn signal_request(id: &wire::ExecutionIdentifier, signal: &str, value: &str) -> wire::SignalExecutionRequest {
    wire::SignalExecutionRequest {
        id: Some(id.clone()),
        signal: signal.into(),
        value: value.into(),
    }
}

fn approve_request(id: &wire::ExecutionIdentifier, node: &str) -> wire::ApproveExecutionRequest {
    wire::ApproveExecutionRequest {
        id: Some(id.clone()),
        node: node.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_subworkflows_and_gates_run_on_kafka_and_postgres() {
    let Some((deployment, _services, mut client)) = deploy(Some("p1")).await else {
        return;
    };
    register_text(&mut client, deployment.scratch.path(), "release.yaml", &spec()).await;
    let aloft = |args: &[&str]| {
        let output = std::process::Command::new(binary("aloft"))
            .arg("--admin")
            .arg(format!("http://127.0.0.1:{}", deployment.admin_port))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status.success(), stdout, stderr)
    };

    let id = launch(&mut client, workflow("release"), "release-1", &[("x", "20")])
        .await
        .unwrap();
    // The branch took the case with the subworkflow; its nodes ran under the branch's case node.
    let waiting = wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        e.nodes
            .iter()
            .any(|n| n.node_id == "bump" && n.phase == wire::NodePhase::NodeRunning as i32)
    })
    .await;
    for succeeded in ["prep", "size/big/a", "size/big/b", "size/big", "size", "nap"] {
        assert_eq!(
            phase(&waiting, succeeded),
            wire::NodePhase::NodeSucceeded,
            "{succeeded}"
        );
    }
    assert_eq!(phase(&waiting, "size/small"), wire::NodePhase::NodeSkipped);
    assert!(
        node(&waiting, "bump").wait_reason.contains("signal \"bump\""),
        "{:?}",
        node(&waiting, "bump")
    );
    let (ok, shown, _) = aloft(&["get", "release-1"]);
    assert!(ok && shown.contains("waiting for signal \"bump\""), "{shown}");

    // Bad signals and approvals are refused with what is wrong; none changes the execution.
    let error = client
        .approve_execution(approve_request(&id, "review"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(
        error.message().contains("not waiting for approval"),
        "{}",
        error.message()
    );
    let error = client
        .approve_execution(approve_request(&id, "nap"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("its approval gates are: review"),
        "{}",
        error.message()
    );
    let error = client
        .signal_execution(signal_request(&id, "bumpp", "1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("no gate waiting for signal \"bumpp\"")
            && error.message().contains("its signals are: bump"),
        "{}",
        error.message()
    );
    let (ok, _, stderr) = aloft(&["signal", "release-1", "bump", "nineteen"]);
    assert!(
        !ok && stderr.contains("takes a value of type integer"),
        "{stderr}"
    );
    let unchanged = get(&mut client, &id).await;
    assert_eq!(phase(&unchanged, "bump"), wire::NodePhase::NodeRunning);

    let (ok, stdout, stderr) = aloft(&["signal", "release-1", "bump", "19"]);
    assert!(ok, "{stdout}{stderr}");
    let reviewing = wait_until(&mut client, &id, Duration::from_secs(30), |e| {
        e.nodes
            .iter()
            .any(|n| n.node_id == "review" && n.phase == wire::NodePhase::NodeRunning as i32)
    })
    .await;
    assert!(node(&reviewing, "review")
        .wait_reason
        .contains("aloft approve release-1 review"));
    let (ok, stdout, stderr) = aloft(&["approve", "release-1", "review"]);
    assert!(ok && stdout.contains("approved"), "{stdout}{stderr}");
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    // prep = 21, the big case adds two (23), plus the signal's 19.
    assert_eq!(scalar_outputs(&finished), ["result=42"]);

    let history = assert_history_gap_free(&mut client, &id).await;
    let summaries: Vec<&str> = history.iter().map(|e| e.summary.as_str()).collect();
    for expected in [
        "branch size took the case prep.n > 10; skipped: size/small",
        "gate bump waits for signal \"bump\"",
        "signal bump received: 19",
        "approval of node review received",
        "node size succeeded: n=23",
    ] {
        assert!(
            summaries.iter().any(|s| s.contains(expected)),
            "{expected:?} not in {summaries:#?}"
        );
    }
    let error = client
        .signal_execution(signal_request(&id, "bump", "1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("already finished"),
        "{}",
        error.message()
    );

    // The small case: x = 2 takes the else; the signal and the approval are given before their gates wait.
    let small = launch(&mut client, workflow("release"), "release-2", &[("x", "2")])
        .await
        .unwrap();
    client
        .signal_execution(signal_request(&small, "bump", "100"))
        .await
        .unwrap();
    let reviewing = wait_until(&mut client, &small, Duration::from_secs(60), |e| {
        e.nodes
            .iter()
            .any(|n| n.node_id == "review" && n.phase == wire::NodePhase::NodeRunning as i32)
    })
    .await;
    assert_eq!(phase(&reviewing, "size/big/a"), wire::NodePhase::NodeSkipped);
    client
        .approve_execution(approve_request(&small, "review"))
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &small, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["result=104"]);

    // A gate that times out fails the execution with the reason.
    let impatient = launch(&mut client, workflow("impatient"), "impatient-1", &[])
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &impatient, Duration::from_secs(30)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    assert!(
        finished.error.contains("timed out waiting for signal \"go\""),
        "{}",
        finished.error
    );
    assert_eq!(phase(&finished, "go"), wire::NodePhase::NodeTimedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kind_specs_that_do_not_compile_are_refused_with_the_reason() {
    let Some((deployment, _services, mut client)) = deploy(None).await else {
        return;
    };
    register_text(&mut client, deployment.scratch.path(), "base.yaml", &spec()).await;
    for (bad, expected) in [
        ("prep.n > 10", "prep.n > 'ten'", "compares integer with string"),
        (
            "workflow: plus-two",
            "workflow: plus-three",
            "workflow \"plus-three\" is not registered",
        ),
        ("{sleep: 300ms}", "{sleep: a while}", "gate sleep"),
    ]
    .map(|(from, to, expected)| {
        (
            spec()
                .replacen(from, to, 1)
                .replace("name: release", "name: release-bad"),
            expected,
        )
    }) {
        // Only the changed workflow document, through the CLI's registration path.
        let documents: Vec<&str> = bad.split("---\n").collect();
        let path = deployment.scratch.path().join("bad.yaml");
        std::fs::write(&path, documents[3]).unwrap();
        let parsed = aloft_cli::specs::read_spec_file(&path).unwrap();
        let error = aloft_cli::specs::register_documents(&mut client, PROJECT, DOMAIN, parsed)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{expected:?} not in {error}");
        let listed = client
            .list_workflows(wire::ListEntitiesRequest {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            !format!("{listed:?}").contains("release-bad"),
            "nothing is stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_runs_a_task_per_item_on_kafka_and_tolerates_failures_within_its_ratio() {
    let Some((deployment, _services, mut client)) = deploy(Some("p1")).await else {
        return;
    };
    let spec = r#"kind: task
name: picky
version: "1"
interface: {inputs: {n: integer, offset: integer}, outputs: {n: integer}}
run: {process: {command: ["sh", "-c", "test $ALOFT_INPUT_N -ne 13 || { echo 'thirteen' >&2; exit 3; }; echo $((ALOFT_INPUT_N + ALOFT_INPUT_OFFSET)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
---
kind: workflow
name: fan
interface: {inputs: {xs: "list<integer>"}, outputs: {ns: "list<optional<integer>>"}}
nodes:
  - id: each
    map: {task: picky, over: n, concurrency: 8, min_success_ratio: 0.99}
    inputs: {n: inputs.xs, offset: {value: 1000}}
outputs: {ns: each.n}
---
kind: workflow
name: strict-fan
interface: {inputs: {xs: "list<integer>"}}
nodes:
  - {id: each, map: {task: picky, over: n}, inputs: {n: inputs.xs, offset: {value: 0}}}
---
kind: workflow
name: wrapped-fan
interface: {inputs: {xs: "list<integer>"}, outputs: {ns: "list<optional<integer>>"}}
nodes:
  - {id: inner, workflow: fan, inputs: {xs: inputs.xs}}
outputs: {ns: inner.ns}
"#;
    register_text(&mut client, deployment.scratch.path(), "fan.yaml", spec).await;
    let items: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let list = format!("[{}]", items.join(","));

    let id = launch(&mut client, workflow("fan"), "fan-1", &[("xs", &list)])
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(120)).await;
    let ns = scalar_outputs(&finished);
    let expected: Vec<String> = (0..150)
        .map(|i| {
            if i == 13 {
                "none".to_string()
            } else {
                (i + 1000).to_string()
            }
        })
        .collect();
    assert_eq!(ns, [format!("ns=[{}]", expected.join(", "))]);
    assert_eq!(
        finished
            .nodes
            .iter()
            .filter(|n| n.node_id.starts_with("each["))
            .count(),
        150
    );
    assert_eq!(phase(&finished, "each[13]"), wire::NodePhase::NodeFailed);
    assert_eq!(phase(&finished, "each[149]"), wire::NodePhase::NodeSucceeded);
    let history = assert_history_gap_free(&mut client, &id).await;
    assert!(history
        .iter()
        .any(|e| e.summary.contains("map each runs") && e.summary.contains("over 150 item(s)")));
    // Never more than `concurrency` items ran at once: replay the attempt starts and ends.
    let (mut running, mut most) = (0i64, 0i64);
    for event in &history {
        match event.kind.as_str() {
            "AttemptStarted" => running += 1,
            "AttemptSucceeded" | "AttemptFailed" => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert!(most <= 8 && most > 1, "at most 8 items at once, saw {most}");

    let strict = launch(
        &mut client,
        workflow("strict-fan"),
        "strict-1",
        &[("xs", "[12, 13, 14]")],
    )
    .await
    .unwrap();
    let finished = wait_finished(&mut client, &strict, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    assert!(
        finished
            .error
            .contains("2 of 3 items succeeded, below min_success_ratio 1")
            && finished.error.contains("each[1]"),
        "{}",
        finished.error
    );
    // A map over a value that is not a list is refused at launch, naming the input.
    let error = launch(&mut client, workflow("strict-fan"), "strict-2", &[("xs", "12")])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("xs"), "{}", error.message());

    // Nested: the map inside a subworkflow, its items shown under the subworkflow's node.
    let wrapped = launch(
        &mut client,
        workflow("wrapped-fan"),
        "wrapped-1",
        &[("xs", "[1, 2, 3]")],
    )
    .await
    .unwrap();
    let finished = wait_succeeded(&mut client, &wrapped, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["ns=[1001, 1002, 1003]"]);
    assert_eq!(phase(&finished, "inner/each"), wire::NodePhase::NodeSucceeded);
    assert_eq!(phase(&finished, "inner/each[2]"), wire::NodePhase::NodeSucceeded);
    assert_eq!(phase(&finished, "inner"), wire::NodePhase::NodeSucceeded);
    assert_history_gap_free(&mut client, &wrapped).await;
}

/// Plans a chain of N `inc` steps and then a branch on the last step: its output `workflow` is the spec.
/// With N = 99 it plans a task the node does not allow.
const PLANNER: &str = r#"n=$ALOFT_INPUT_N; task=inc
if [ "$n" -eq 99 ]; then task=forbidden; n=1; fi
nodes="{\"id\":\"s0\",\"task\":\"$task\",\"inputs\":{\"n\":\"inputs.n\"}}"
i=1
while [ $i -lt $n ]; do nodes="$nodes,{\"id\":\"s$i\",\"task\":\"inc\",\"inputs\":{\"n\":\"s$((i-1)).n\"}}"; i=$((i+1)); done
last="s$((n-1))"
printf '{"name":"steps","interface":{"inputs":{"n":"integer"},"outputs":{"total":"integer"}},"nodes":[%s,{"id":"check","branch":{"cases":[{"if":"%s.n > 5","then":{"id":"big","task":"add","inputs":{"a":"%s.n","b":{"value":100}}}}],"else":{"id":"small","task":"inc","inputs":{"n":"%s.n"}}}}],"outputs":{"total":"check.n"}}' "$nodes" "$last" "$last" "$last" > "$ALOFT_OUTPUT_DIR/workflow"
"#;

/// A map whose items' outputs are large gathers references to them (each was offloaded to the blob store);
/// one whose items' inline outputs together are too large for one event has the gathered list offloaded by
/// the engine, instead of failing or leaving the propeller to decide the same refused event again and again
/// (which held up every execution of the partition); the partition goes on with the next execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_large_outputs_gathers_references_and_one_too_large_for_an_event_is_offloaded() {
    let Some((deployment, _services, mut client)) = deploy(Some("p1")).await else {
        return;
    };
    let spec = r#"kind: task
name: bulky
version: "1"
interface: {inputs: {n: integer, size: integer}, outputs: {s: string}}
run: {process: {command: ["sh", "-c", "head -c $ALOFT_INPUT_SIZE /dev/urandom | base64 -w0 | head -c $ALOFT_INPUT_SIZE > \"$ALOFT_OUTPUT_DIR/s\""]}}
---
kind: workflow
name: bulky-fan
interface: {inputs: {xs: "list<integer>", size: integer}, outputs: {ss: "list<string>"}}
nodes:
  - {id: each, map: {task: bulky, over: n}, inputs: {n: inputs.xs, size: inputs.size}}
outputs: {ss: each.s}
"#;
    register_text(&mut client, deployment.scratch.path(), "bulky.yaml", spec).await;
    // Each item's 400 KiB output is offloaded to the blob store: the map gathers three references, and the
    // whole list downloads as its text.
    let id = launch(
        &mut client,
        workflow("bulky-fan"),
        "bulky-3",
        &[("xs", "[1, 2, 3]"), ("size", "409600")],
    )
    .await
    .unwrap();
    let done = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    let ss = done.outputs.as_ref().and_then(|o| o.values.get("ss")).cloned();
    let Some(wire::literal::Value::List(items)) = ss.and_then(|l| l.value) else {
        panic!("ss is not a list: {:?}", done.outputs)
    };
    assert_eq!(items.values.len(), 3);
    for item in &items.values {
        let Some(wire::literal::Value::Offloaded(offloaded)) = &item.value else {
            panic!("an item's 400 KiB output travels as a reference: {item:?}")
        };
        assert_eq!(offloaded.size, 409_600);
    }
    let text = download_data(
        &mut client,
        wire::DownloadDataRequest {
            id: Some(id.clone()),
            name: "ss".into(),
            ..Default::default()
        },
    )
    .await;
    let strings: Vec<String> = serde_json::from_slice(&text).expect("the list as JSON");
    assert_eq!(strings.len(), 3);
    for (text, item) in strings.iter().zip(&items.values) {
        let Some(wire::literal::Value::Offloaded(offloaded)) = &item.value else {
            unreachable!()
        };
        assert_eq!(text.len(), 409_600);
        let digest: String = sha2::Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            format!("sha256:{digest}"),
            offloaded.digest,
            "each item's own text"
        );
    }

    // Thirty 60 KiB outputs stay inline, one by one, but gathered they are too large for one event even
    // compressed (they are random): the engine offloads the gathered list to the blob store as a task's
    // large output is, and the execution succeeds with a reference to it, every item's text in its place.
    let id = launch(
        &mut client,
        workflow("bulky-fan"),
        "bulky-30",
        &[
            ("xs", &format!("{:?}", (0..30).collect::<Vec<_>>())),
            ("size", "61440"),
        ],
    )
    .await
    .unwrap();
    let done = wait_succeeded(&mut client, &id, Duration::from_secs(90)).await;
    let phases: Vec<wire::NodePhase> = (0..30).map(|i| phase(&done, &format!("each[{i}]"))).collect();
    assert!(
        phases.iter().all(|p| *p == wire::NodePhase::NodeSucceeded),
        "{phases:?}"
    );
    let gathered = match done
        .outputs
        .as_ref()
        .and_then(|o| o.values.get("ss"))
        .and_then(|l| l.value.clone())
    {
        Some(wire::literal::Value::Offloaded(offloaded)) => offloaded,
        other => panic!("the gathered list travels as a reference: {other:?}"),
    };
    assert!(
        gathered.uri.ends_with("/bulky-30/each/gathered/s.value"),
        "{}",
        gathered.uri
    );
    let text = download_data(
        &mut client,
        wire::DownloadDataRequest {
            id: Some(id.clone()),
            name: "ss".into(),
            ..Default::default()
        },
    )
    .await;
    let strings: Vec<String> = serde_json::from_slice(&text).expect("the list as JSON");
    assert_eq!(strings.len(), 30);
    assert!(strings.iter().all(|s| s.len() == 61_440));
    assert_eq!(text.len() as u64, gathered.size);
    // The next execution on the same partition runs to its end.
    let next = (0..)
        .map(|i| format!("bulky-1-{i}"))
        .find(|name| partition_of(name) == partition_of("bulky-30"))
        .unwrap();
    let id = launch(
        &mut client,
        workflow("bulky-fan"),
        &next,
        &[("xs", "[1]"), ("size", "10")],
    )
    .await
    .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Succeeded as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_node_runs_the_workflow_its_planner_writes_on_kafka() {
    let Some((deployment, _services, mut client)) = deploy(Some("p1")).await else {
        return;
    };
    let script = deployment.scratch.path().join("plan.sh");
    std::fs::write(&script, PLANNER).unwrap();
    let planner = format!(
        r#"---
kind: task
name: planner
version: "1"
interface: {{inputs: {{n: integer}}, outputs: {{workflow: struct}}}}
run: {{process: {{command: ["sh", "{}"]}}}}
---
kind: workflow
name: planned
interface: {{inputs: {{n: integer}}, outputs: {{result: integer}}}}
nodes:
  - id: steps
    dynamic: {{task: planner, uses: [inc, add], outputs: {{total: integer}}}}
    inputs: {{n: inputs.n}}
  - {{id: last, task: inc, inputs: {{n: steps.total}}}}
outputs: {{result: last.n}}
"#,
        script.display()
    );
    register_text(
        &mut client,
        deployment.scratch.path(),
        "planned.yaml",
        &format!("{}{planner}", spec()),
    )
    .await;

    // Three steps: 4, 5, 6; 6 > 5 takes the big case (+100); then `last` adds one.
    let id = launch(&mut client, workflow("planned"), "planned-3", &[("n", "3")])
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["result=107"]);
    for node_id in [
        "steps/plan",
        "steps/s0",
        "steps/s1",
        "steps/s2",
        "steps/check/big",
        "steps/check",
        "steps",
        "last",
    ] {
        assert_eq!(
            phase(&finished, node_id),
            wire::NodePhase::NodeSucceeded,
            "{node_id}"
        );
    }
    assert_eq!(
        phase(&finished, "steps/check/small"),
        wire::NodePhase::NodeSkipped
    );
    let history = assert_history_gap_free(&mut client, &id).await;
    assert!(history.iter().any(|e| e
        .summary
        .contains("dynamic steps planned 6 node(s): steps/s0, steps/s1, steps/s2")));

    // One step: 2 takes the small case.
    let id = launch(&mut client, workflow("planned"), "planned-1", &[("n", "1")])
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["result=4"]);

    // A plan that does not compile fails the node with the compile error; none of its nodes ran.
    let id = launch(&mut client, workflow("planned"), "planned-bad", &[("n", "99")])
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    assert!(
        finished.error.contains("the planned workflow does not compile")
            && finished.error.contains("task \"forbidden\" is not registered")
            && finished.error.contains("it may use the tasks: add, inc"),
        "{}",
        finished.error
    );
    assert!(
        finished.nodes.iter().all(|n| !n.node_id.starts_with("steps/s")),
        "nothing planned was added"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_plan_node_runs_a_linked_child_execution_and_aborting_the_parent_aborts_it() {
    let Some((deployment, _services, mut client)) = deploy(Some("p1")).await else {
        return;
    };
    let plans = r#"---
kind: launch_plan
name: plus-two-default
workflow: plus-two
default_inputs: {n: 5}
---
kind: workflow
name: parent
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: kid, launch_plan: plus-two-default, inputs: {n: inputs.x}}
  - {id: defaulted, launch_plan: plus-two-default}
  - {id: total, task: add, inputs: {a: kid.n, b: defaulted.n}}
outputs: {result: total.n}
---
kind: workflow
name: waiter
nodes:
  - {id: hold, gate: {signal: {name: never}}}
---
kind: launch_plan
name: waiter-plan
workflow: waiter
---
kind: workflow
name: waits-for-child
nodes:
  - {id: child, launch_plan: waiter-plan}
"#;
    register_text(
        &mut client,
        deployment.scratch.path(),
        "plans.yaml",
        &format!("{}{plans}", spec()),
    )
    .await;

    let id = launch(&mut client, workflow("parent"), "parent-1", &[("x", "10")])
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    // kid: 10 + 2; defaulted: the plan's default 5 + 2.
    assert_eq!(scalar_outputs(&finished), ["result=19"]);
    let child_id = |name: &str| wire::ExecutionIdentifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    };
    for (node_id, child, expected) in [
        ("kid", "parent-1-kid", "n=12"),
        ("defaulted", "parent-1-defaulted", "n=7"),
    ] {
        let child_execution = wait_succeeded(&mut client, &child_id(child), Duration::from_secs(30)).await;
        assert_eq!(scalar_outputs(&child_execution), [expected], "{child}");
        // Linked both ways in the read model: the child names its parent and node, the node its child.
        assert_eq!(child_execution.parent.as_ref(), Some(&id), "{child}");
        assert_eq!(child_execution.parent_node, node_id);
        assert_eq!(node(&finished, node_id).child_execution, child);
        let history = assert_history_gap_free(&mut client, &child_id(child)).await;
        assert!(
            history[0]
                .summary
                .contains(&format!("(launched by {PROJECT}/{DOMAIN}/parent-1 node")),
            "the child names its parent: {}",
            history[0].summary
        );
    }
    let history = assert_history_gap_free(&mut client, &id).await;
    for expected in [
        format!("node kid launched child execution {PROJECT}/{DOMAIN}/parent-1-kid"),
        format!("child execution {PROJECT}/{DOMAIN}/parent-1-kid ended SUCCEEDED"),
    ] {
        assert!(
            history.iter().any(|e| e.summary.contains(&expected)),
            "{expected:?} not in the parent's history"
        );
    }

    // Aborting a parent aborts the child it waits for.
    let id = launch(&mut client, workflow("waits-for-child"), "holder", &[])
        .await
        .unwrap();
    let child = child_id("holder-child");
    let running = wait_until(&mut client, &id, Duration::from_secs(30), |e| {
        e.nodes
            .iter()
            .any(|n| n.node_id == "child" && n.wait_reason.contains("child execution holder-child"))
    })
    .await;
    assert_eq!(phase(&running, "child"), wire::NodePhase::NodeRunning);
    wait_until(&mut client, &child, Duration::from_secs(30), |e| {
        e.phase == wire::ExecutionPhase::Running as i32
    })
    .await;
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(id.clone()),
            reason: "not needed".into(),
        })
        .await
        .unwrap();
    let parent = wait_finished(&mut client, &id, Duration::from_secs(30)).await;
    assert_eq!(parent.phase, wire::ExecutionPhase::Aborted as i32);
    let aborted = wait_finished(&mut client, &child, Duration::from_secs(30)).await;
    assert_eq!(
        aborted.phase,
        wire::ExecutionPhase::Aborted as i32,
        "{}",
        aborted.error
    );
    assert!(
        aborted.error.contains("its parent") && aborted.error.contains("ended ABORTED"),
        "{}",
        aborted.error
    );
}

/// A workflow of 20,000 task nodes registers as one event (its payload compressed; plain it would be
/// several times the broker's limit), reads back whole, and runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_of_twenty_thousand_task_nodes_registers_and_runs() {
    let Some((deployment, _services, mut client)) = deploy(Some("p1")).await else {
        return;
    };
    const NODES: usize = 20_000;
    let nodes: Vec<String> = (0..NODES)
        .map(|i| format!(r#"{{"id": "n{i}", "task": "nothing", "inputs": {{"x": "inputs.x"}}}}"#))
        .collect();
    let spec = format!(
        r#"{{"kind": "task", "name": "nothing", "version": "1", "interface": {{"inputs": {{"x": "integer"}}}}, "run": "noop"}}
---
{{"kind": "workflow", "name": "wide", "version": "1", "interface": {{"inputs": {{"x": "integer"}}}}, "nodes": [{}]}}
"#,
        nodes.join(",")
    );
    assert!(spec.len() > 1_000_000, "{}", spec.len());
    let started = std::time::Instant::now();
    register_text(&mut client, deployment.scratch.path(), "wide.yaml", &spec).await;
    let registered = started.elapsed();
    let read = client
        .get_workflow(wire::GetEntityRequest {
            id: Some(wire::Identifier {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                name: "wide".into(),
                version: "1".into(),
            }),
        })
        .await
        .expect("the workflow reads back")
        .into_inner();
    let stored: serde_json::Value = serde_json::from_str(&read.spec_json).unwrap();
    assert_eq!(stored["nodes"].as_array().map(Vec::len), Some(NODES));
    let id = launch(&mut client, workflow("wide"), "wide", &[("x", "7")])
        .await
        .expect("launch the wide workflow");
    // Polled without its nodes: 20,000 of them on every read would load admin more than the run.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let done = loop {
        let execution = client
            .get_execution(wire::GetExecutionRequest {
                id: Some(id.clone()),
                without_nodes: true,
            })
            .await
            .unwrap()
            .into_inner();
        if aloft_cli::render::is_terminal(execution.phase) {
            break execution;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {:?}",
            execution.phase
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        done.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{}",
        done.error
    );
    eprintln!(
        "{NODES} task nodes: registered in {registered:?}, launched and run in {:?}",
        started.elapsed() - registered
    );
}
