//! Bad input gets a clear error that names what is wrong, and stores nothing. The fleet runs in this process on
//! Kafka and Postgres when the test backends are configured (as in CI), else on the embedded log.
//!
//! Over 600 lines: one test per refusal, each short, sharing one fleet setup.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_cli::client::AdminClient;
use aloft_e2e::*;
use aloft_proto::v1 as wire;
use tonic::Code;

fn register_request(spec_json: &str) -> wire::RegisterRequest {
    wire::RegisterRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        spec_json: spec_json.into(),
    }
}

async fn counts(client: &mut AdminClient) -> (usize, usize, usize, usize) {
    let entities = || wire::ListEntitiesRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: String::new(),
    };
    let tasks = client
        .list_tasks(entities())
        .await
        .unwrap()
        .into_inner()
        .tasks
        .len();
    let workflows = client
        .list_workflows(entities())
        .await
        .unwrap()
        .into_inner()
        .workflows
        .len();
    let versions = client
        .list_tasks(wire::ListEntitiesRequest {
            name: "increment".into(),
            ..entities()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
        .len();
    let executions = client
        .list_executions(wire::ListExecutionsRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions
        .len();
    (tasks, workflows, versions, executions)
}

fn assert_rejected<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    let status = result.expect_err("bad input must be rejected");
    assert_eq!(status.code(), code, "{}", status.message());
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "error {:?} should mention {needle:?}",
            status.message()
        );
    }
}

const WORKFLOW_WITH_CYCLE: &str = r#"{"name": "loop", "interface": {"inputs": {"x": "integer"}},
  "nodes": [{"id": "a", "task": "increment", "inputs": {"n": "b.n"}}, {"id": "b", "task": "increment", "inputs": {"n": "a.n"}}]}"#;
const WORKFLOW_WITH_TYPE_MISMATCH: &str = r#"{"name": "mismatch", "interface": {"inputs": {"x": "string"}},
  "nodes": [{"id": "a", "task": "increment", "inputs": {"n": "inputs.x"}}]}"#;
const WORKFLOW_WITH_UNKNOWN_TASK: &str =
    r#"{"name": "ghost", "nodes": [{"id": "a", "task": "no-such-task"}]}"#;
const WORKFLOW_WITH_DOUBLE_BINDING: &str = r#"{"name": "double", "interface": {"inputs": {"x": "integer"}},
  "nodes": [{"id": "a", "task": "increment", "inputs": {"n": "inputs.x", "n": "inputs.x"}}]}"#;
const WORKFLOW_WITH_UNKNOWN_NODE: &str = r#"{"name": "dangling", "interface": {"inputs": {"x": "integer"}},
  "nodes": [{"id": "a", "task": "increment", "inputs": {"n": "nowhere.n"}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_with_a_clear_error_and_stores_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(scratch.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    let execution = launch(&mut client, workflow("diamond"), "taken", &[("x", "1")])
        .await
        .unwrap();
    wait_finished(&mut client, &execution, Duration::from_secs(30)).await;
    client
        .register_task(register_request(
            r#"{"name": "take-text", "interface": {"inputs": {"text": "string"}}, "run": "noop"}"#,
        ))
        .await
        .unwrap();
    client
        .register_workflow(register_request(
            r#"{"name": "text", "interface": {"inputs": {"text": "string"}},
              "nodes": [{"id": "a", "task": "take-text", "inputs": {"text": "inputs.text"}}]}"#,
        ))
        .await
        .unwrap();
    let before = counts(&mut client).await;

    // Malformed specs.
    assert_rejected(
        client.register_task(register_request("{not json")).await,
        Code::InvalidArgument,
        &["invalid task spec"],
    );
    assert_rejected(
        client
            .register_task(register_request(
                r#"{"name": "t", "run": {"process": {"comand": ["true"]}}}"#,
            ))
            .await,
        Code::InvalidArgument,
        &["unknown field", "comand"],
    );
    assert_rejected(
        client
            .register_task(register_request(
                r#"{"name": "t", "interface": {"inputs": {"x": "widget"}}, "run": "noop"}"#,
            ))
            .await,
        Code::InvalidArgument,
        &["widget"],
    );
    // Names with spaces or over-long.
    assert_rejected(
        client
            .register_task(register_request(r#"{"name": "my task", "run": "noop"}"#))
            .await,
        Code::InvalidArgument,
        &["my task", "' '"],
    );
    let long_name = format!(r#"{{"name": "{}", "run": "noop"}}"#, "a".repeat(64));
    assert_rejected(
        client.register_task(register_request(&long_name)).await,
        Code::InvalidArgument,
        &["64 characters"],
    );
    // Compile errors name the node and the variable.
    assert_rejected(
        client
            .register_workflow(register_request(WORKFLOW_WITH_CYCLE))
            .await,
        Code::InvalidArgument,
        &["cycle", "a", "b"],
    );
    assert_rejected(
        client
            .register_workflow(register_request(WORKFLOW_WITH_TYPE_MISMATCH))
            .await,
        Code::InvalidArgument,
        &["\"a\"", "\"n\"", "integer", "string"],
    );
    assert_rejected(
        client
            .register_workflow(register_request(WORKFLOW_WITH_UNKNOWN_TASK))
            .await,
        Code::InvalidArgument,
        &["no-such-task", "not registered"],
    );
    assert_rejected(
        client
            .register_workflow(register_request(WORKFLOW_WITH_UNKNOWN_NODE))
            .await,
        Code::InvalidArgument,
        &["nowhere"],
    );
    // An input bound twice (JSON keeps the last key silently; it must not).
    assert_rejected(
        client
            .register_workflow(register_request(WORKFLOW_WITH_DOUBLE_BINDING))
            .await,
        Code::InvalidArgument,
        &["nodes[0].inputs.n", "more than once"],
    );
    // A version re-registered with different content conflicts; identical content is idempotent.
    let changed = r#"{"name": "increment", "version": "1", "interface": {"inputs": {"n": "integer"}, "outputs": {"n": "integer"}},
      "run": {"process": {"command": ["sh", "-c", "echo 0 > $ALOFT_OUTPUT_DIR/n"]}}}"#;
    assert_rejected(
        client.register_task(register_request(changed)).await,
        Code::AlreadyExists,
        &["increment", "different content"],
    );
    let again = register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    assert!(
        again.iter().all(|r| !r.created),
        "identical re-registration must be a no-op"
    );
    // Inputs of the wrong type, missing or unknown; an execution name that exists.
    assert_rejected(
        launch(&mut client, workflow("diamond"), "", &[("x", "three")])
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        &["x", "not an integer"],
    );
    assert_rejected(
        launch(&mut client, workflow("diamond"), "", &[])
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        &["missing input", "x"],
    );
    assert_rejected(
        launch(&mut client, workflow("diamond"), "", &[("x", "1"), ("y", "2")])
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        &["unknown input", "y"],
    );
    assert_rejected(
        launch(&mut client, workflow("diamond"), "taken", &[("x", "1")])
            .await
            .map(tonic::Response::new),
        Code::AlreadyExists,
        &["taken"],
    );
    assert_rejected(
        launch(&mut client, workflow("no-such-workflow"), "", &[])
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        &["no-such-workflow"],
    );
    assert_rejected(
        launch(&mut client, workflow("diamond"), "Bad Name", &[("x", "1")])
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        &["execution name"],
    );
    // A workflow too large to register even compressed is refused by its size (not answered UNAVAILABLE as
    // if the broker were down). Random text, as zstd would shrink repeated text far below the limit. (A
    // launch input too large for one event is not refused: admin offloads it, see `data_plane.rs`.)
    let random_text = |bytes: usize| -> Vec<String> {
        (0..bytes / 32)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect()
    };
    let nodes: Vec<String> = random_text(40_000 * 32)
        .iter()
        .map(|id| format!(r#"{{"id": "n{id}", "task": "take-text", "inputs": {{"text": "inputs.text"}}}}"#))
        .collect();
    let huge_workflow = format!(
        r#"{{"name": "huge", "interface": {{"inputs": {{"text": "string"}}}}, "nodes": [{}]}}"#,
        nodes.join(",")
    );
    assert_rejected(
        client.register_workflow(register_request(&huge_workflow)).await,
        Code::InvalidArgument,
        &["more than the 983040 bytes", "subworkflows"],
    );
    // Terminating a finished execution is refused.
    assert_rejected(
        client
            .terminate_execution(wire::TerminateExecutionRequest {
                id: Some(execution.clone()),
                reason: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        &["already finished"],
    );

    assert_eq!(
        counts(&mut client).await,
        before,
        "rejected input must store nothing"
    );
    fleet.stop().await.unwrap();
}

#[test]
fn spec_file_errors_name_the_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "kind: task\nname: ok\nrun: noop\n---\nkind: task\nname: broken\nrun: {process: {command: []}, extra: 1}\n").unwrap();
    let error = aloft_cli::specs::read_spec_file(&path).unwrap_err().to_string();
    assert!(
        error.contains("bad.yaml") && error.contains("document 2"),
        "{error}"
    );
    std::fs::write(&path, "name: no-kind\n").unwrap();
    let error = aloft_cli::specs::read_spec_file(&path).unwrap_err().to_string();
    assert!(error.contains("kind"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_running_execution_aborts_it_and_kills_its_attempts() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(scratch.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    let marker = scratch.path().join("finished");
    let spec = scratch.path().join("slow.yaml");
    std::fs::write(
        &spec,
        format!(
            "kind: task\nname: slow\nrun: {{process: {{command: [sh, -c, 'sleep 20; touch {}']}}}}\n---\n\
             kind: workflow\nname: slow\nnodes: [{{id: wait, task: slow}}, {{id: after, task: slow, after: [wait]}}]\n",
            marker.display()
        ),
    )
    .unwrap();
    register_file(&mut client, &spec).await;
    let id = launch(&mut client, workflow("slow"), "stop-me", &[])
        .await
        .unwrap();
    wait_until(&mut client, &id, Duration::from_secs(30), |e| {
        e.nodes
            .iter()
            .any(|n| n.phase == wire::NodePhase::NodeRunning as i32)
    })
    .await;
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(id.clone()),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(30)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Aborted as i32);
    assert!(finished.error.contains("changed my mind"), "{}", finished.error);
    let phases: Vec<i32> = finished.nodes.iter().map(|n| n.phase).collect();
    assert_eq!(
        phases,
        vec![
            wire::NodePhase::NodeAborted as i32,
            wire::NodePhase::NodeSkipped as i32
        ]
    );
    assert!(
        !marker.exists(),
        "the running attempt must be killed, not left to finish"
    );
    fleet.stop().await.unwrap();
}

const SCHEDULED_WORKFLOW: &str = r#"{"name": "stamped", "interface": {"inputs": {"kickoff": "datetime", "label": "string"}},
  "nodes": [{"id": "a", "task": "stamp", "inputs": {"at": "inputs.kickoff", "label": "inputs.label"}}]}"#;
const STAMP_TASK: &str = r#"{"name": "stamp", "version": "1", "interface": {"inputs": {"at": "datetime", "label": "string"}}, "run": "noop"}"#;

fn scheduled_plan(schedule: &str, defaults: &str) -> String {
    format!(
        r#"{{"name": "nightly", "workflow": "stamped", "default_inputs": {defaults}, "schedule": {schedule}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_rejected_at_registration_or_activation_and_store_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(scratch.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    client.register_task(register_request(STAMP_TASK)).await.unwrap();
    client
        .register_workflow(register_request(SCHEDULED_WORKFLOW))
        .await
        .unwrap();
    let plans = |client: &mut AdminClient| {
        let mut client = client.clone();
        async move {
            client
                .list_launch_plans(wire::ListEntitiesRequest {
                    project: PROJECT.into(),
                    domain: DOMAIN.into(),
                    name: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .launch_plans
                .len()
        }
    };
    let label = r#"{"label": "x"}"#;
    let cases = [
        (
            scheduled_plan(r#"{"cron": "0 25 * * *"}"#, label),
            vec!["cron field hour", "25", "0-23"],
        ),
        (
            scheduled_plan(r#"{"cron": "* * *"}"#, label),
            vec!["cron", "3 fields"],
        ),
        (
            scheduled_plan(r#"{"fixed_rate": "0m"}"#, label),
            vec!["fixed_rate"],
        ),
        (
            scheduled_plan(r#"{"cron": "@daily", "kickoff_time_input": "missing"}"#, label),
            vec!["kickoff_time_input", "missing", "not an input"],
        ),
        (
            scheduled_plan(r#"{"cron": "@daily", "kickoff_time_input": "label"}"#, label),
            vec!["kickoff_time_input", "label", "string", "not datetime"],
        ),
        (
            scheduled_plan(r#"{"cron": "@daily", "kickoff_time_input": "kickoff"}"#, "{}"),
            vec!["every required input", "label"],
        ),
        (
            scheduled_plan(r#"{"cron": "@daily", "timezone": "Mars/Olympus"}"#, label),
            vec!["timezone", "Mars/Olympus"],
        ),
        (
            scheduled_plan(r#"{"cron": "@daily", "catch_up": "sometimes"}"#, label),
            vec!["sometimes"],
        ),
    ];
    for (spec, needles) in cases {
        assert_rejected(
            client.register_launch_plan(register_request(&spec)).await,
            Code::InvalidArgument,
            &needles,
        );
    }
    assert_eq!(
        plans(&mut client).await,
        0,
        "rejected launch plans must store nothing"
    );

    let good = scheduled_plan(r#"{"cron": "@daily", "kickoff_time_input": "kickoff"}"#, label);
    let registered = client
        .register_launch_plan(register_request(&good))
        .await
        .unwrap()
        .into_inner();
    let version = registered.id.unwrap().version;
    let unknown = wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "nightly".into(),
        version: "no-such-version".into(),
    };
    assert_rejected(
        client
            .activate_launch_plan(wire::GetEntityRequest { id: Some(unknown) })
            .await,
        Code::NotFound,
        &["nightly", "no-such-version"],
    );
    let no_version = wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "nightly".into(),
        version: String::new(),
    };
    assert_rejected(
        client
            .activate_launch_plan(wire::GetEntityRequest { id: Some(no_version) })
            .await,
        Code::InvalidArgument,
        &["version"],
    );
    let id = wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "nightly".into(),
        version,
    };
    let active = client
        .activate_launch_plan(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);
    let inactive = client
        .deactivate_launch_plan(wire::GetEntityRequest { id: Some(id) })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active);
    fleet.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_keep_their_versions_and_relaunch_reruns_the_same_version_with_changed_inputs() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(scratch.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    let task = |version: &str, expression: &str| {
        format!(
            r#"{{"name": "calc", "version": "{version}", "interface": {{"inputs": {{"x": "integer"}}, "outputs": {{"y": "integer"}}}},
               "run": {{"process": {{"command": ["sh", "-c", "sleep 1; echo $(({expression})) > $ALOFT_OUTPUT_DIR/y"]}}}}}}"#
        )
    };
    client
        .register_task(register_request(&task("1", "ALOFT_INPUT_X + 1")))
        .await
        .unwrap();
    let pipeline = r#"{"name": "calc", "interface": {"inputs": {"x": "integer"}, "outputs": {"y": "integer"}},
        "nodes": [{"id": "calc", "task": "calc", "inputs": {"x": "inputs.x"}}], "outputs": {"y": "calc.y"}}"#;
    client
        .register_workflow(register_request(pipeline))
        .await
        .unwrap();
    let first = launch(&mut client, workflow("calc"), "first", &[("x", "10")])
        .await
        .unwrap();
    // A newer task version registered while `first` runs does not change what `first` runs.
    client
        .register_task(register_request(&task("2", "ALOFT_INPUT_X * 100")))
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &first, Duration::from_secs(30)).await;
    assert_eq!(scalar_outputs(&finished), vec!["y=11"]);

    let relaunched = client
        .relaunch_execution(wire::RelaunchExecutionRequest {
            id: Some(first.clone()),
            name: "second".into(),
            text_inputs: [("x".to_string(), "20".to_string())].into(),
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap();
    let finished = wait_finished(&mut client, &relaunched, Duration::from_secs(30)).await;
    assert_eq!(
        scalar_outputs(&finished),
        vec!["y=21"],
        "same task version, new input"
    );
    assert_eq!(finished.workflow, get(&mut client, &first).await.workflow);

    let bad = wire::RelaunchExecutionRequest {
        id: Some(first.clone()),
        name: "third".into(),
        text_inputs: [("z".to_string(), "1".to_string())].into(),
    };
    assert_rejected(
        client.relaunch_execution(bad).await,
        Code::InvalidArgument,
        &["unknown input", "z"],
    );
    let taken = wire::RelaunchExecutionRequest {
        id: Some(first.clone()),
        name: "second".into(),
        text_inputs: Default::default(),
    };
    assert_rejected(
        client.relaunch_execution(taken).await,
        Code::AlreadyExists,
        &["second"],
    );
    let missing = wire::ExecutionIdentifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "never-ran".into(),
    };
    let unknown = wire::RelaunchExecutionRequest {
        id: Some(missing),
        name: String::new(),
        text_inputs: Default::default(),
    };
    assert_rejected(
        client.relaunch_execution(unknown).await,
        Code::NotFound,
        &["never-ran"],
    );
    fleet.stop().await.unwrap();
}

/// A launch plan's `max_parallelism` bounds how many nodes of one execution run at once (the workflow's own
/// limit is overridden), and a limit of zero is refused at registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallelism_from_the_launch_plan_bounds_running_nodes() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(scratch.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    let spec = scratch.path().join("wide.yaml");
    std::fs::write(
        &spec,
        r#"kind: task
name: nap
version: "1"
run: {sleep: {duration: 200ms}}
---
kind: workflow
name: wide
max_parallelism: 4
nodes: [{id: a, task: nap}, {id: b, task: nap}, {id: c, task: nap}, {id: d, task: nap}]
---
kind: launch_plan
name: wide-one-at-a-time
workflow: wide
max_parallelism: 1
"#,
    )
    .unwrap();
    register_file(&mut client, &spec).await;
    let plan = wire::create_execution_request::Target::LaunchPlan(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "wide-one-at-a-time".into(),
        version: String::new(),
    });
    let id = launch(&mut client, plan, "serial", &[]).await.unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(30)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Succeeded as i32);
    let history = client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let mut running = 0i32;
    let mut most = 0;
    for event in &history {
        match event.kind.as_str() {
            "AttemptStarted" => running += 1,
            "AttemptSucceeded" | "AttemptFailed" => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!(most, 1, "the launch plan allows one node at a time");

    let refused = client
        .register_launch_plan(register_request(
            r#"{"name": "zero", "workflow": "wide", "max_parallelism": 0}"#,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("max_parallelism must be at least 1"),
        "{}",
        refused.message()
    );
    fleet.stop().await.unwrap();
}

/// Broken notification rules are refused when they are registered (not when an execution fails at night),
/// with the rule and the field named, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_notification_rules_are_refused_at_registration() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(scratch.path()).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    let plan = |rules: &str| {
        register_request(&format!(
            r#"{{"name": "noisy", "workflow": "diamond", "notifications": {rules}}}"#
        ))
    };
    let webhook = |url: &str| {
        format!(r#"[{{"phases": ["FAILED"], "webhook": {{"url": "{url}", "secret": "env:PATH"}}}}]"#)
    };
    for (rules, needles) in [
        (webhook("htp://hooks.example.com/x"), vec!["launch plan noisy notification rule 1", "webhook.url", "not an http"]),
        (webhook("https://hooks.example.com:99999/x"), vec!["webhook.url", "invalid port"]),
        (
            r#"[{"phases": ["FAILD"], "slack": {"webhook_url": "env:PATH"}}]"#.to_string(),
            vec!["unknown phase \"FAILD\"", "SUCCEEDED, FAILED, TIMED_OUT, ABORTED"],
        ),
        (
            r#"[{"phases": ["FAILED"], "email": {"to": ["a@example.com"], "from": "b@example.com",
                "smtp": {"host": "127.0.0.1"}, "subject": "{{name}} {{colour}}"}}]"#
                .to_string(),
            vec!["email.subject", "unknown template variable {{colour}}"],
        ),
        (
            r#"[{"phases": ["FAILED"], "slack": {"webhook_url": "env:ALOFT_SURELY_UNSET_SLACK_URL"}}]"#.to_string(),
            vec!["ALOFT_SURELY_UNSET_SLACK_URL", "is not set"],
        ),
        (
            r#"[{"phases": ["FAILED"], "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}}]"#.to_string(),
            vec!["slack.webhook_url", "not a secret reference"],
        ),
        (
            r#"[{"phases": ["FAILED"], "slack": {"webhook_url": "env:PATH"}, "webhook": {"url": "https://x.example.com", "secret": "env:PATH"}}]"#.to_string(),
            vec!["exactly one channel"],
        ),
        (
            r#"[{"phases": ["FAILED"], "pager": {"number": "1"}}]"#.to_string(),
            vec!["unknown field", "pager"],
        ),
    ] {
        assert_rejected(client.register_launch_plan(plan(&rules)).await, Code::InvalidArgument, &needles);
    }
    let plans = client
        .list_launch_plans(wire::ListEntitiesRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .launch_plans;
    assert!(
        plans.iter().all(|p| p.id.as_ref().unwrap().name != "noisy"),
        "nothing stored"
    );

    // Per execution and per project the same checks apply.
    let create = |notifications_json: &str, disable: bool| wire::CreateExecutionRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: String::new(),
        target: Some(workflow("diamond")),
        text_inputs: [("x".to_string(), "1".to_string())].into_iter().collect(),
        notifications_json: notifications_json.into(),
        disable_notifications: disable,
        ..Default::default()
    };
    assert_rejected(
        client
            .create_execution(create(&webhook("not a url"), false))
            .await,
        Code::InvalidArgument,
        &["execution notification rule 1", "webhook.url"],
    );
    assert_rejected(
        client
            .create_execution(create(&webhook("https://x.example.com"), true))
            .await,
        Code::InvalidArgument,
        &["exclude each other"],
    );
    assert_rejected(
        client
            .set_notification_defaults(wire::SetNotificationDefaultsRequest {
                project: "nobody".into(),
                domain: "*".into(),
                rules_json: "[]".into(),
            })
            .await,
        Code::NotFound,
        &["project \"nobody\" does not exist"],
    );
    assert_rejected(
        client
            .set_notification_defaults(wire::SetNotificationDefaultsRequest {
                project: PROJECT.into(),
                domain: "production".into(),
                rules_json: r#"[{"phases": ["DONE"], "slack": {"webhook_url": "env:PATH"}}]"#.into(),
            })
            .await,
        Code::InvalidArgument,
        &[
            "defaults of default/production notification rule 1",
            "unknown phase \"DONE\"",
        ],
    );
    let accepted = client
        .set_notification_defaults(wire::SetNotificationDefaultsRequest {
            project: PROJECT.into(),
            domain: "production".into(),
            rules_json: r#"[{"phases": ["FAILED"], "slack": {"webhook_url": "env:PATH"}}]"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.rules, 1);
    fleet.stop().await.unwrap();
}
