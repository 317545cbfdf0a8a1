//! Upgrade safety (issue 22): `tests/golden/log/events.log` is an embedded event log written by an earlier
//! build from a fixed workload that produces every kind of execution event (`scripts/write-golden-log.sh`
//! runs `writes_the_golden_log` below), and `read_models.json` is what that build's admin answered for it.
//! Every later build replays the log from offset 0 into fresh read models and must answer the same, so an
//! incompatible change to the events, their decoding or the projection fails here.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_e2e::*;
use aloft_proto::v1 as wire;

fn golden_dir() -> PathBuf {
    repo_root().join("tests/golden/log")
}

const PLANNER: &str = r#"n=$ALOFT_INPUT_N
nodes="{\"id\":\"s0\",\"task\":\"inc\",\"inputs\":{\"n\":\"inputs.n\"}}"
i=1
while [ $i -lt $n ]; do nodes="$nodes,{\"id\":\"s$i\",\"task\":\"inc\",\"inputs\":{\"n\":\"s$((i-1)).n\"}}"; i=$((i+1)); done
printf '{"name":"steps","interface":{"inputs":{"n":"integer"},"outputs":{"total":"integer"}},"nodes":[%s],"outputs":{"total":"s%s.n"}}' "$nodes" "$((n-1))" > "$ALOFT_OUTPUT_DIR/workflow"
"#;

/// Every node kind, a cache miss and hit, retries that fail, a map with a failed item, a dynamic node, a
/// launch-plan child, gates answered by a signal and by time, and a terminated execution.
fn workload(planner: &Path) -> String {
    format!(
        r#"kind: task
name: inc
version: "1"
interface: {{inputs: {{n: integer}}, outputs: {{n: integer}}}}
run: {{process: {{command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > $ALOFT_OUTPUT_DIR/n"]}}}}
---
kind: task
name: cached-inc
version: "1"
cache: {{version: "1"}}
interface: {{inputs: {{n: integer}}, outputs: {{n: integer}}}}
run: {{process: {{command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > $ALOFT_OUTPUT_DIR/n"]}}}}
---
kind: task
name: picky
version: "1"
retries: {{user: 1}}
interface: {{inputs: {{n: integer}}, outputs: {{n: integer}}}}
run: {{process: {{command: ["sh", "-c", "[ $ALOFT_INPUT_N -ne 2 ] || exit 3; echo $ALOFT_INPUT_N > $ALOFT_OUTPUT_DIR/n"]}}}}
---
kind: task
name: planner
version: "1"
interface: {{inputs: {{n: integer}}, outputs: {{workflow: struct}}}}
run: {{process: {{command: ["sh", "{planner}"]}}}}
---
kind: workflow
name: child
interface: {{inputs: {{n: integer}}, outputs: {{n: integer}}}}
nodes: [{{id: one, task: inc, inputs: {{n: inputs.n}}}}]
outputs: {{n: one.n}}
---
kind: launch_plan
name: child-plan
workflow: child
---
kind: workflow
name: kinds
interface: {{inputs: {{x: integer}}, outputs: {{result: integer, items: "list<optional<integer>>"}}}}
nodes:
  - {{id: prep, task: inc, inputs: {{n: inputs.x}}}}
  - {{id: left, task: cached-inc, inputs: {{n: prep.n}}}}
  - {{id: right, task: cached-inc, inputs: {{n: prep.n}}, after: [left]}}
  - id: size
    branch:
      cases:
        - if: "prep.n > 3"
          then: {{id: big, task: inc, inputs: {{n: left.n}}}}
      else: {{id: small, task: inc, inputs: {{n: right.n}}}}
  - {{id: nap, gate: {{sleep: 200ms}}, after: [size]}}
  - {{id: bump, gate: {{signal: {{name: bump, type: integer}}}}, after: [nap]}}
  - {{id: each, map: {{task: picky, over: n, min_success_ratio: 0.5}}, inputs: {{n: {{value: [1, 2, 3]}}}}}}
  - {{id: steps, dynamic: {{task: planner, uses: [inc], outputs: {{total: integer}}}}, inputs: {{n: bump.value}}}}
  - {{id: kid, launch_plan: child-plan, inputs: {{n: steps.total}}}}
outputs: {{result: kid.n, items: each.n}}
---
kind: workflow
name: failing
nodes: [{{id: boom, task: picky, inputs: {{n: {{value: 2}}}}}}]
---
kind: workflow
name: waiting
nodes: [{{id: hold, gate: {{signal: {{name: never}}}}}}]
"#,
        planner = planner.display()
    )
}

/// What admin answers about every execution: phases, errors, scalar outputs and each node's phase,
/// attempts and cache status (no times, paths or ids that differ between runs).
async fn read_models(client: &mut AdminClient) -> serde_json::Value {
    let executions = all_executions(client).await;
    let mut names: Vec<String> = executions
        .into_iter()
        .filter_map(|e| e.id.map(|id| id.name))
        .collect();
    names.sort();
    let mut dumped = Vec::new();
    for name in names {
        let id = wire::ExecutionIdentifier {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: name.clone(),
        };
        let execution = get(client, &id).await;
        let mut nodes: Vec<serde_json::Value> = execution
            .nodes
            .iter()
            .map(|node| {
                serde_json::json!({
                    "node": node.node_id,
                    "phase": wire::NodePhase::try_from(node.phase).map(|p| p.as_str_name()).unwrap_or("?"),
                    "attempts": node.attempts,
                    "cache": node.cache_status,
                })
            })
            .collect();
        nodes.sort_by_key(|node| node["node"].as_str().unwrap_or_default().to_string());
        dumped.push(serde_json::json!({
            "name": name,
            "phase": wire::ExecutionPhase::try_from(execution.phase).map(|p| p.as_str_name()).unwrap_or("?"),
            "error": execution.error,
            "outputs": scalar_outputs(&execution),
            "nodes": nodes,
        }));
    }
    serde_json::Value::Array(dumped)
}

/// Every kind of execution event the log holds.
async fn event_kinds(log_file: &Path) -> std::collections::BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(log_file, dir.path().join("events.log")).unwrap();
    let topics = aloft_eventlog::Topics::with_prefix("");
    let backend = aloft_eventlog::LogBackend::Embedded {
        dir: dir.path().to_path_buf(),
    };
    let log = aloft_eventlog::open(&backend, &topics, 8).await.unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for record in read_topic(log.as_ref(), &topics.executions).await {
        for envelope in aloft_eventlog::Envelope::decode_all(&record.payload).unwrap() {
            if let aloft_eventlog::Payload::Execution(event) = envelope.payload {
                kinds.insert(event.kind().to_string());
            }
        }
    }
    kinds
}

async fn embedded_fleet(dir: &Path) -> (Fleet, AdminClient) {
    let mut config = FleetConfig::embedded(dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    // One attempt at a time: the diamond's second branch waits, so the log holds AttemptWaiting too.
    config.max_running_attempts = Some(1);
    let fleet = Fleet::start(config).await.unwrap();
    let client = wait_for_client(&format!("http://{}", fleet.address), String::new).await;
    (fleet, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_by_an_earlier_build_replays_to_the_same_read_models() {
    let golden = golden_dir();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("read_models.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(golden.join("events.log"), dir.path().join("events.log")).unwrap();
    let (fleet, mut client) = embedded_fleet(dir.path()).await;
    // The projector replays from offset 0; wait until it has caught up with every execution's end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut replayed = read_models(&mut client).await;
    while replayed != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        replayed = read_models(&mut client).await;
    }
    fleet.stop().await.unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&replayed).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap(),
        "the read models of the golden log differ from those its build answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_log_holds_every_kind_of_execution_event() {
    let kinds = event_kinds(&golden_dir().join("events.log")).await;
    // Every variant has a golden file of its own (libs/eventlog/tests/golden/execution).
    let variants: Vec<String> = std::fs::read_dir(repo_root().join("libs/eventlog/tests/golden/execution"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            (!stem.contains('.')).then(|| stem.split('_').map(capitalize).collect())
        })
        .collect();
    let missing: Vec<&String> = variants.iter().filter(|v| !kinds.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "the golden log lacks {missing:?}; it holds {kinds:?}"
    );
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Writes the golden log and its read models (run by `scripts/write-golden-log.sh`; never in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/golden/log; run by scripts/write-golden-log.sh"]
async fn writes_the_golden_log() {
    let dir = tempfile::tempdir().unwrap();
    let planner = dir.path().join("plan.sh");
    std::fs::write(&planner, PLANNER).unwrap();
    let (fleet, mut client) = embedded_fleet(dir.path()).await;
    register_text(&mut client, dir.path(), "golden.yaml", &workload(&planner)).await;
    let kinds = launch(&mut client, workflow("kinds"), "kinds-1", &[("x", "3")])
        .await
        .unwrap();
    let failing = launch(&mut client, workflow("failing"), "failing-1", &[])
        .await
        .unwrap();
    let waiting = launch(&mut client, workflow("waiting"), "waiting-1", &[])
        .await
        .unwrap();
    wait_until(&mut client, &kinds, Duration::from_secs(60), |e| {
        e.nodes
            .iter()
            .any(|n| n.node_id == "bump" && n.phase == wire::NodePhase::NodeRunning as i32)
    })
    .await;
    client
        .signal_execution(wire::SignalExecutionRequest {
            id: Some(kinds.clone()),
            signal: "bump".into(),
            value: "3".into(),
        })
        .await
        .unwrap();
    wait_finished(&mut client, &kinds, Duration::from_secs(60)).await;
    wait_finished(&mut client, &failing, Duration::from_secs(60)).await;
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(waiting.clone()),
            reason: "golden log".into(),
        })
        .await
        .unwrap();
    wait_finished(&mut client, &waiting, Duration::from_secs(60)).await;
    // The child execution finishes with its parent; give the projector a moment to settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let models = read_models(&mut client).await;
    fleet.stop().await.unwrap();
    let golden = golden_dir();
    std::fs::create_dir_all(&golden).unwrap();
    std::fs::copy(dir.path().join("events.log"), golden.join("events.log")).unwrap();
    std::fs::write(
        golden.join("read_models.json"),
        serde_json::to_string_pretty(&models).unwrap() + "\n",
    )
    .unwrap();
    eprintln!(
        "wrote {} with {:?}",
        golden.display(),
        event_kinds(&golden.join("events.log")).await
    );
}
