//! Recover: a failed execution run again on the same workflow version and inputs, reusing the outputs of
//! every node that succeeded (RECOVERED, not run again) and running only the rest. Runs in one process on
//! Kafka and Postgres (the embedded log without them); the tasks count their real runs in files, so "not run
//! again" is observed, not inferred.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use tonic::Code;

fn spec(dir: &Path) -> String {
    let (runs, flag) = (dir.join("produce-runs"), dir.join("flag"));
    format!(
        r#"kind: task
name: produce
version: "1"
interface: {{inputs: {{x: integer}}, outputs: {{n: integer}}}}
run:
  process:
    command: ["sh", "-c", "echo run >> {runs}; echo $((ALOFT_INPUT_X + 4)) > \"$ALOFT_OUTPUT_DIR/n\""]
---
kind: task
name: needs-flag
version: "1"
interface: {{inputs: {{n: integer}}, outputs: {{m: integer}}}}
run:
  process:
    command: ["sh", "-c", "test -f {flag} || {{ echo 'the flag file is missing' >&2; exit 1; }}; echo $((ALOFT_INPUT_N * 2)) > \"$ALOFT_OUTPUT_DIR/m\""]
---
kind: workflow
name: two-step
interface: {{inputs: {{x: integer}}, outputs: {{m: integer}}}}
nodes:
  - {{id: a, task: produce, inputs: {{x: inputs.x}}}}
  - {{id: b, task: needs-flag, inputs: {{n: a.n}}}}
outputs: {{m: b.m}}
"#,
        runs = runs.display(),
        flag = flag.display()
    )
}

fn recover_request(source: &str, name: &str) -> wire::RecoverExecutionRequest {
    wire::RecoverExecutionRequest {
        id: Some(wire::ExecutionIdentifier {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: source.into(),
        }),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_a_failed_execution_runs_only_what_did_not_succeed() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(&scratch.path().join("data")).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    let spec_file = scratch.path().join("two-step.yaml");
    std::fs::write(&spec_file, spec(scratch.path())).unwrap();
    register_file(&mut client, &spec_file).await;
    let runs = || {
        std::fs::read_to_string(scratch.path().join("produce-runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    let failed = launch(&mut client, workflow("two-step"), "first", &[("x", "1")])
        .await
        .unwrap();
    let failed = wait_finished(&mut client, &failed, Duration::from_secs(60)).await;
    assert_eq!(failed.phase, wire::ExecutionPhase::Failed as i32);
    assert_eq!(runs(), 1);

    // Nothing changes for an execution that cannot be recovered.
    let status = client
        .recover_execution(recover_request("no-such-run", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());

    std::fs::write(scratch.path().join("flag"), "").unwrap();
    let recovered = client
        .recover_execution(recover_request("first", "first-recovered"))
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap();
    let recovered = wait_finished(&mut client, &recovered, Duration::from_secs(60)).await;
    assert_eq!(
        recovered.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{recovered:?}"
    );
    assert_eq!(
        scalar_outputs(&recovered),
        ["m=10"],
        "a's output (1 + 4) reused, b ran: 5 * 2"
    );
    assert_eq!(runs(), 1, "the node that succeeded did not run again");
    let a = recovered.nodes.iter().find(|n| n.node_id == "a").unwrap();
    assert_eq!(a.phase, wire::NodePhase::NodeRecovered as i32);
    assert_eq!(a.attempts, 0);
    let b = recovered.nodes.iter().find(|n| n.node_id == "b").unwrap();
    assert_eq!(b.phase, wire::NodePhase::NodeSucceeded as i32);

    let history = client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(wire::ExecutionIdentifier {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                name: "first-recovered".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let requested = &history[0].summary;
    assert!(
        requested.contains("recovering default/development/first: 1 node(s) RECOVERED"),
        "{requested}"
    );
    assert!(
        history
            .iter()
            .all(|e| !(e.kind == "AttemptStarted" && e.summary.contains("node a "))),
        "no attempt of a"
    );

    // Lineage: the RECOVERED output links back to the output of the execution that produced it, and from
    // there to that execution's input.
    let mut catalog = aloft_cli::lineage::connect_catalog(&fleet.catalog_endpoint())
        .await
        .unwrap();
    let target = "first-recovered/a/n";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let lineage = loop {
        let request = aloft_cli::lineage::lineage_request(PROJECT, DOMAIN, target, 0).unwrap();
        if let Ok(answer) = catalog.get_lineage(request).await {
            let answer = answer.into_inner();
            if !answer.partial {
                break answer;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lineage of {target} never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let edges: Vec<(String, String, String)> = lineage
        .edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone(), e.relation.clone()))
        .collect();
    let produced = format!("{PROJECT}/{DOMAIN}/first/a/n");
    let recovered_output = format!("{PROJECT}/{DOMAIN}/first-recovered/a/n");
    assert!(
        edges.contains(&(
            produced.clone(),
            recovered_output.clone(),
            "recovered".to_string()
        )),
        "{edges:?}"
    );
    assert!(
        edges.contains(&(
            format!("{PROJECT}/{DOMAIN}/first/@inputs/x"),
            produced,
            "input x".to_string()
        )),
        "{edges:?}"
    );

    let status = client
        .recover_execution(recover_request("first-recovered", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("succeeded: there is nothing to recover"),
        "{}",
        status.message()
    );
    fleet.stop().await.unwrap();
}
