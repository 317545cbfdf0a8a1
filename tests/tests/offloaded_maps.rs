//! Values the engine decides on that are too large to travel inline, on Kafka, Postgres and the S3 server: a
//! map's list and a branch's operand are offloaded to the blob store, and the engine fetches them to expand
//! the map or choose the case, on whichever propeller owns the execution by then.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

mod data_support;
use data_support::*;

const WORDS: &str = r#"kind: task
name: words
version: "1"
interface: {inputs: {n: integer}, outputs: {ws: "list<string>"}}
run:
  process:
    command: ["python3", "-c", "import json, os; n = int(os.environ['ALOFT_INPUT_N']); json.dump(['w%d-' % i + 'x' * 10000 for i in range(n)], open(os.environ['ALOFT_OUTPUT_DIR'] + '/ws', 'w'))"]
---
kind: task
name: measure
version: "1"
interface: {inputs: {w: string}, outputs: {size: integer}}
run:
  process:
    command: ["sh", "-c", "wc -c < \"$ALOFT_INPUT_DIR/w\" > \"$ALOFT_OUTPUT_DIR/size\""]
---
kind: workflow
name: measure-all
interface: {inputs: {n: integer}, outputs: {sizes: "list<integer>"}}
nodes:
  - {id: make, task: words, inputs: {n: inputs.n}}
  - {id: go, gate: {signal: {name: go}}, after: [make]}
  - {id: each, map: {task: measure, over: w}, inputs: {w: make.ws}, after: [go]}
outputs: {sizes: each.size}
---
kind: task
name: long-text
version: "1"
interface: {outputs: {text: string}}
run:
  process:
    command: ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a > \"$ALOFT_OUTPUT_DIR/text\""]
---
kind: task
name: mark
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
run:
  process:
    command: ["sh", "-c", "echo $ALOFT_INPUT_N > \"$ALOFT_OUTPUT_DIR/n\""]
---
kind: workflow
name: decide-on-long
interface: {outputs: {taken: integer}}
nodes:
  - {id: make, task: long-text}
  - {id: pick, branch: {cases: [{if: "make.text != 'short'", then: {id: long, task: mark, inputs: {n: {value: 1}}}}], else: {id: short, task: mark, inputs: {n: {value: 0}}}}}
outputs: {taken: pick.n}
"#;

/// The list the map reads (12 words of 10 KB, 120 KB) is offloaded by the task that makes it; after that
/// propeller is SIGKILLed with its disk wiped, its successor fetches the list, expands the map and gives
/// each item its element; an item's inputs read through the API are its element.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_over_an_offloaded_list_expands_on_another_propeller() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let mut first = propeller_on_own_disk(&deployment, "a");
    let mut client = deployment.client().await;
    register_text(&mut client, deployment.scratch.path(), "words.yaml", WORDS).await;
    const N: usize = 12;
    let id = launch(
        &mut client,
        workflow("measure-all"),
        "measure-all",
        &[("n", &N.to_string())],
    )
    .await
    .unwrap();
    let running = wire::NodePhase::NodeRunning as i32;
    let waiting = wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        e.nodes.iter().any(|n| n.node_id == "go" && n.phase == running)
    })
    .await;
    let make = waiting.nodes.iter().find(|n| n.node_id == "make").unwrap();
    let ws = offloaded_of(make.outputs.as_ref().and_then(|o| o.values.get("ws")));
    assert!(ws.size > 64 * 1024, "over the inline limit: {}", ws.size);

    let _second = fail_over_and_go(&deployment, &mut first, propeller_on_own_disk, &mut client, &id).await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(180)).await;
    let expected: Vec<String> = (0..N)
        .map(|i| (format!("w{i}-").len() + 10_000).to_string())
        .collect();
    assert_eq!(
        scalar_outputs(&finished),
        [format!("sizes=[{}]", expected.join(", "))],
        "each item measured its own element"
    );
    let items = finished
        .nodes
        .iter()
        .filter(|n| n.node_id.starts_with("each["))
        .count();
    assert_eq!(items, N);

    let data = client
        .get_node_data(wire::GetNodeDataRequest {
            id: Some(id.clone()),
            node_id: "each[3]".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let element = data
        .inputs
        .as_ref()
        .and_then(|inputs| inputs.values.get("w"))
        .and_then(|literal| literal.value.clone());
    let expected = format!("w3-{}", "x".repeat(10_000));
    assert!(
        matches!(&element, Some(wire::literal::Value::String(text)) if *text == expected),
        "an item's input is its element of the fetched list, not {:.80?}",
        element
    );
}

/// A branch whose operand was offloaded (a 100 KB text) decides on the text the propeller fetched: the case
/// holds, where an engine that could not read the operand would have taken the else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_decides_on_an_offloaded_operand() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let _propeller = propeller_on_own_disk(&deployment, "a");
    let mut client = deployment.client().await;
    register_text(&mut client, deployment.scratch.path(), "words.yaml", WORDS).await;
    let id = launch(&mut client, workflow("decide-on-long"), "decide-on-long", &[])
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    let make = finished.nodes.iter().find(|n| n.node_id == "make").unwrap();
    let text = offloaded_of(make.outputs.as_ref().and_then(|o| o.values.get("text")));
    assert_eq!(text.size, 100_000);
    assert_eq!(scalar_outputs(&finished), ["taken=1"], "the case held");
}
