//! The REST/JSON API on a fleet (Kafka + Postgres in CI), as a script or the console calls it: every call
//! made through a client driven only by the OpenAPI document (operationId + parameters), answers equal to
//! the gRPC twin's, the same error codes and messages (HTTP status from the shared mapping), labels and
//! filters, pages that never repeat or skip an execution while new ones arrive, node pages, the live watch
//! (server-sent events) and time travel over the history.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use aloft_e2e::rest::{grpc_json, OpenApiClient};
use aloft_e2e::*;
use aloft_proto::v1 as wire;
use serde_json::{json, Value};

const TENANT: [(&str, &str); 2] = [("project", PROJECT), ("domain", DOMAIN)];

fn with_tenant<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = TENANT.to_vec();
    params.extend_from_slice(more);
    params
}

async fn create(client: &OpenApiClient, name: &str, x: &str, labels: Value) -> (u16, Value) {
    client
        .call(
            "CreateExecution",
            &TENANT,
            Some(json!({
                "name": name,
                "workflow": {"project": PROJECT, "domain": DOMAIN, "name": "diamond"},
                "text_inputs": {"x": x},
                "labels": labels,
            })),
        )
        .await
}

fn execution_id(name: &str) -> wire::ExecutionIdentifier {
    wire::ExecutionIdentifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rest_api_answers_as_its_grpc_twin_and_pages_filters_watches_and_travels_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(dir.path()).await;
    let mut grpc = wait_for_client(&fleet.endpoint(), String::new).await;
    register_file(&mut grpc, &repo_root().join("examples/diamond.yaml")).await;
    let client = OpenApiClient::load(&fleet.endpoint()).await;
    assert_eq!(client.document["openapi"], "3.0.3");

    // Launch with labels, through REST; the answer is the gRPC CreateExecutionResponse as JSON.
    let (status, created) = create(&client, "rest-a", "3", json!({"team": "ml", "tier": "gold"})).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["id"]["name"], "rest-a");
    let finished = wait_succeeded(&mut grpc, &execution_id("rest-a"), Duration::from_secs(60)).await;
    let (status, got) = client
        .call("GetExecution", &with_tenant(&[("name", "rest-a")]), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        got,
        grpc_json(&finished),
        "REST and gRPC answer the same execution"
    );
    assert_eq!(got["phase"], "SUCCEEDED");
    assert_eq!(got["labels"]["team"], "ml");
    let (_, alone) = client
        .call(
            "GetExecution",
            &with_tenant(&[("name", "rest-a"), ("without_nodes", "true")]),
            None,
        )
        .await;
    assert!(alone["nodes"].as_array().unwrap().is_empty());
    assert!(alone["attempts"].as_array().unwrap().is_empty());
    assert_eq!(alone["outputs"], got["outputs"]);
    let d = got["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "d")
        .unwrap();
    assert_eq!(
        d["upstream"],
        json!(["b", "c"]),
        "the graph's edges travel with the nodes"
    );

    // Errors: the same code and message as gRPC, the HTTP status from the shared mapping.
    let grpc_missing = grpc
        .get_execution(wire::GetExecutionRequest {
            id: Some(execution_id("no-such-run")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let (status, missing) = client
        .call("GetExecution", &with_tenant(&[("name", "no-such-run")]), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "NOT_FOUND");
    assert_eq!(missing["message"], grpc_missing.message());
    let (status, bad_input) = create(&client, "rest-bad", "three", json!({})).await;
    assert_eq!(status, 400, "{bad_input}");
    assert_eq!(bad_input["code"], "INVALID_ARGUMENT");
    let grpc_bad = launch(&mut grpc, workflow("diamond"), "grpc-bad", &[("x", "three")])
        .await
        .unwrap_err();
    assert_eq!(bad_input["message"], grpc_bad.message());
    let (status, bad_label) = create(&client, "rest-bad-label", "3", json!({"team": "ml ops"})).await;
    assert_eq!(status, 400);
    assert!(
        bad_label["message"].as_str().unwrap().contains("label \"team\""),
        "{bad_label}"
    );
    let (status, twice) = create(&client, "rest-a", "3", json!({})).await;
    assert_eq!((status, twice["code"].as_str()), (409, Some("ALREADY_EXISTS")));
    let (status, unknown_param) = client
        .call_text("ListExecutions", &with_tenant(&[("limit", "x")]), None)
        .await;
    assert_eq!(status, 400, "{unknown_param}");
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/projects/{PROJECT}/domains/{DOMAIN}/executions",
            fleet.endpoint()
        ))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert!(raw.text().await.unwrap().contains("not valid JSON"));
    let raw = reqwest::get(format!("{}/api/v1/no/such/route", fleet.endpoint()))
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 404);

    // A node's inputs (its bindings resolved) and outputs, as gRPC gives them; an unknown node is named.
    let node_data = grpc
        .get_node_data(wire::GetNodeDataRequest {
            id: Some(execution_id("rest-a")),
            node_id: "d".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (status, rest_node) = client
        .call(
            "GetNodeData",
            &with_tenant(&[("name", "rest-a"), ("node_id", "d")]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rest_node}");
    assert_eq!(rest_node, grpc_json(&node_data));
    // int64 travels as a JSON string (proto3's JSON mapping).
    assert_eq!(
        rest_node["inputs"]["values"]["a"]["integer"]
            .to_string()
            .trim_matches('"'),
        "8",
        "{rest_node}"
    );
    let (status, no_node) = client
        .call(
            "GetNodeData",
            &with_tenant(&[("name", "rest-a"), ("node_id", "zz")]),
            None,
        )
        .await;
    assert_eq!(status, 404, "{no_node}");
    assert!(
        no_node["message"]
            .as_str()
            .unwrap()
            .contains("has no node \"zz\"; its nodes are a, b, c, d"),
        "{no_node}"
    );

    // A batch registers all of its documents, a later one compiled against an earlier one, or none.
    let task = json!({"name": "rest-echo", "version": "1", "interface": {"inputs": {"n": "integer"}, "outputs": {"n": "integer"}},
        "run": {"process": {"command": ["sh", "-c", "cp $ALOFT_INPUT_DIR/n $ALOFT_OUTPUT_DIR/n"]}}});
    let flow = json!({"name": "rest-echo-flow", "interface": {"inputs": {"x": "integer"}, "outputs": {"y": "integer"}},
        "nodes": [{"id": "e", "task": "rest-echo", "inputs": {"n": "inputs.x"}}], "outputs": {"y": "e.n"}});
    let broken = json!({"name": "rest-broken", "nodes": [{"id": "a", "task": "no-such-task"}]});
    let document = |kind: &str, spec: &Value| json!({"kind": kind, "spec_json": spec.to_string()});
    let (status, refused) = client
        .call(
            "RegisterBatch",
            &with_tenant(&[]),
            Some(json!({"documents": [document("TASK", &task), document("WORKFLOW", &flow), document("WORKFLOW", &broken)]})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.starts_with("document 3 of 3:")
            && message.contains("no-such-task")
            && message.ends_with("nothing was registered"),
        "{refused}"
    );
    let (status, _) = client
        .call("GetTask", &with_tenant(&[("name", "rest-echo")]), None)
        .await;
    assert_eq!(status, 404, "a refused batch registered its first document");
    let (status, registered) = client
        .call(
            "RegisterBatch",
            &with_tenant(&[]),
            Some(json!({"documents": [document("TASK", &task), document("WORKFLOW", &flow), document("TASK", &task)]})),
        )
        .await;
    assert_eq!(status, 200, "{registered}");
    let outcomes: Vec<&str> = registered["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["CREATED", "CREATED", "ALREADY_EXISTS_IDENTICAL"]);

    // The deliveries and tenants pages' calls: the same answers and refusals as gRPC.
    let grpc_bad_domain = grpc
        .list_deliveries(wire::ListDeliveriesRequest {
            project: PROJECT.into(),
            domain: "nowhere".into(),
            limit: 0,
        })
        .await
        .unwrap_err();
    let (status, bad_domain) = client
        .call(
            "ListDeliveries",
            &[("project", PROJECT), ("domain", "nowhere")],
            None,
        )
        .await;
    assert_eq!(status, 400, "{bad_domain}");
    assert_eq!(bad_domain["message"], grpc_bad_domain.message());
    let tenants = grpc
        .list_tenants(wire::ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (status, rest_tenants) = client.call("ListTenants", &[], None).await;
    assert_eq!(status, 200, "{rest_tenants}");
    assert_eq!(rest_tenants, grpc_json(&tenants));
    assert!(
        tenants
            .tenants
            .iter()
            .any(|t| t.project == PROJECT && t.domain == DOMAIN && t.weight == 1),
        "{rest_tenants}"
    );

    // Pages never repeat or skip an execution while new ones arrive.
    let mut expected = BTreeSet::from(["rest-a".to_string()]);
    for i in 0..6 {
        let name = format!("page-{i}");
        let (status, answer) = create(&client, &name, "1", json!({"batch": "paging"})).await;
        assert_eq!(status, 200, "{answer}");
        expected.insert(name);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut arrived = 0;
    loop {
        let mut params = with_tenant(&[("limit", "3")]);
        if !token.is_empty() {
            params.push(("page_token", token.as_str()));
        }
        let (status, page) = client.call("ListExecutions", &params, None).await;
        assert_eq!(status, 200, "{page}");
        for execution in page["executions"].as_array().unwrap() {
            assert!(
                execution["nodes"].as_array().unwrap().is_empty(),
                "summaries carry no nodes"
            );
            seen.push(execution["id"]["name"].as_str().unwrap().to_string());
        }
        token = page["next_page_token"].as_str().unwrap().to_string();
        // A new execution arrives between pages: it is newer than every page already read.
        create(&client, &format!("late-{arrived}"), "1", json!({})).await;
        arrived += 1;
        if token.is_empty() {
            break;
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no execution twice: {seen:?}");
    assert!(expected.is_subset(&unique), "every execution once: {seen:?}");

    // Filters: by label, by phase, by name prefix; counts by phase.
    let (_, by_label) = client
        .call(
            "ListExecutions",
            &with_tenant(&[("labels.batch", "paging")]),
            None,
        )
        .await;
    let names: BTreeSet<&str> = by_label["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{by_label}");
    assert!(names.iter().all(|n| n.starts_with("page-")));
    let (_, by_prefix) = client
        .call("ListExecutions", &with_tenant(&[("name_prefix", "late-")]), None)
        .await;
    assert_eq!(by_prefix["executions"].as_array().unwrap().len(), arrived);
    for i in 0..6 {
        wait_finished(
            &mut grpc,
            &execution_id(&format!("page-{i}")),
            Duration::from_secs(60),
        )
        .await;
    }
    let (_, succeeded) = client
        .call(
            "ListExecutions",
            &with_tenant(&[("phases", "SUCCEEDED"), ("labels.batch", "paging")]),
            None,
        )
        .await;
    assert_eq!(succeeded["executions"].as_array().unwrap().len(), 6);
    let (_, counts) = client
        .call(
            "CountExecutions",
            &with_tenant(&[("labels.batch", "paging")]),
            None,
        )
        .await;
    assert_eq!(counts["by_phase"]["SUCCEEDED"], "6", "{counts}");
    assert_eq!(counts["total"], "6");

    // Node pages: the diamond's four nodes two at a time, then only the failed ones (none).
    let (_, first) = client
        .call(
            "ListNodeExecutions",
            &with_tenant(&[("name", "rest-a"), ("limit", "2")]),
            None,
        )
        .await;
    assert_eq!(first["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(first["phase_counts"]["SUCCEEDED"], "4");
    let token = first["next_page_token"].as_str().unwrap();
    let (_, second) = client
        .call(
            "ListNodeExecutions",
            &with_tenant(&[("name", "rest-a"), ("limit", "2"), ("page_token", token)]),
            None,
        )
        .await;
    let ids: Vec<&str> = first["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["nodes"].as_array().unwrap())
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(second["next_page_token"], "");
    let (_, failed) = client
        .call(
            "ListNodeExecutions",
            &with_tenant(&[("name", "rest-a"), ("phases", "NODE_FAILED")]),
            None,
        )
        .await;
    assert!(failed["nodes"].as_array().unwrap().is_empty());

    // The watch: every event of the ended execution as server-sent events, numbered, then the end.
    let (status, stream) = client
        .call_text("WatchExecution", &with_tenant(&[("name", "rest-a")]), None)
        .await;
    assert_eq!(status, 200);
    let (_, history) = client
        .call("GetExecutionHistory", &with_tenant(&[("name", "rest-a")]), None)
        .await;
    let events: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["index"] != "0")
        .collect();
    let ids: Vec<String> = stream
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(str::to_string)
        .collect();
    let expected_ids: Vec<String> = (1..=events.len()).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected_ids, "{stream}");
    assert!(stream.trim_end().ends_with("event: end\ndata: {}"), "{stream}");
    let (_, tail) = client
        .call_text(
            "WatchExecution",
            &with_tenant(&[("name", "rest-a"), ("after_index", "3")]),
            None,
        )
        .await;
    assert_eq!(
        tail.lines().filter(|l| l.starts_with("id: ")).count(),
        events.len() - 3
    );

    // Time travel: right after the request every node waits; at the last event all succeeded.
    let (status, at_request) = client
        .call(
            "GetExecutionState",
            &with_tenant(&[("name", "rest-a"), ("at_index", "1")]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{at_request}");
    assert_eq!(at_request["phase"], "QUEUED");
    let phases: Vec<&str> = at_request["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["NODE_QUEUED", "NODE_PENDING", "NODE_PENDING", "NODE_PENDING"]
    );
    let last = events.len().to_string();
    let (_, at_end) = client
        .call(
            "GetExecutionState",
            &with_tenant(&[("name", "rest-a"), ("at_index", &last)]),
            None,
        )
        .await;
    assert_eq!(at_end["phase"], "SUCCEEDED");
    assert_eq!(
        at_end["outputs"], got["outputs"],
        "the fold ends where the read model is"
    );
    let (status, beyond) = client
        .call(
            "GetExecutionState",
            &with_tenant(&[("name", "rest-a"), ("at_index", "9999")]),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(beyond["message"].as_str().unwrap().contains("9999"), "{beyond}");

    // The console is served by the same listener.
    let console = reqwest::get(format!("{}/console/executions/x", fleet.endpoint()))
        .await
        .unwrap();
    assert_eq!(console.status().as_u16(), 200);
    assert!(console.text().await.unwrap().contains("<title>Aloft"));
    fleet.stop().await.unwrap();
}

const CACHED: &str = r#"
kind: task
name: cached-inc
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
cache: {version: "1"}
run: {process: {command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
"#;

/// The catalog's lineage and cache RPCs through admin's REST API: the catalog's own answers as JSON, its
/// errors with their HTTP status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lineage_and_cache_entries_through_rest_are_the_catalogs_answers() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(dir.path()).await;
    let mut grpc = wait_for_client(&fleet.endpoint(), String::new).await;
    register_text(&mut grpc, dir.path(), "cached.yaml", CACHED).await;
    let id = launch(&mut grpc, task("cached-inc", "1"), "rest-cached", &[("n", "4")])
        .await
        .unwrap();
    wait_succeeded(&mut grpc, &id, Duration::from_secs(60)).await;
    let client = OpenApiClient::load(&fleet.endpoint()).await;
    let mut catalog = aloft_cli::lineage::connect_catalog(&fleet.catalog_endpoint())
        .await
        .unwrap();
    let request = wire::ListCacheEntriesRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        task_name: String::new(),
        limit: 0,
    };
    let direct = catalog.list_cache_entries(request).await.unwrap().into_inner();
    let (status, entries) = client.call("ListCacheEntries", &with_tenant(&[]), None).await;
    assert_eq!(status, 200, "{entries}");
    assert_eq!(
        entries,
        grpc_json(&direct),
        "REST and the catalog's gRPC answer the same entries"
    );
    assert_eq!(entries["entries"][0]["task_name"], "cached-inc");
    let (status, lineage) = client
        .call("GetLineage", &with_tenant(&[("name", "rest-cached")]), None)
        .await;
    assert_eq!(status, 200, "{lineage}");
    assert!(
        lineage["artifacts"].as_array().is_some_and(|a| !a.is_empty()),
        "{lineage}"
    );
    let (status, missing) = client
        .call("GetLineage", &with_tenant(&[("name", "no-such-run")]), None)
        .await;
    assert_eq!(status, 404, "{missing}");
    assert!(
        missing["message"].as_str().unwrap().contains("no-such-run"),
        "{missing}"
    );
    let (status, evicted) = client
        .call(
            "Evict",
            &with_tenant(&[]),
            Some(json!({"task_name": "cached-inc"})),
        )
        .await;
    assert_eq!(status, 200, "{evicted}");
    assert_eq!(evicted["evicted"], "1");
    let (_, entries) = client.call("ListCacheEntries", &with_tenant(&[]), None).await;
    assert!(
        entries["entries"].as_array().is_none_or(|e| e.is_empty()),
        "{entries}"
    );
    fleet.stop().await.unwrap();
}

/// A third-party generator's client: the OpenAPI document validates (openapi-spec-validator), and
/// openapi-python-client (both from PyPI, installed by scripts/test.sh) generates a Python client from it that
/// launches the diamond, reads it back SUCCEEDED with its output, and gets the API's own 404 for an unknown
/// execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_openapi_document_by_a_third_party_calls_the_api() {
    let python = std::env::var("ALOFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let installed = std::process::Command::new(&python)
        .args(["-c", "import openapi_spec_validator, openapi_python_client"])
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "openapi-spec-validator and openapi-python-client are needed (scripts/test.sh installs them)"
        );
        eprintln!("skipping: no openapi-python-client");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(dir.path()).await;
    let mut grpc = wait_for_client(&fleet.endpoint(), String::new).await;
    register_file(&mut grpc, &repo_root().join("examples/diamond.yaml")).await;
    let document = reqwest::get(format!("{}/api/v1/openapi.json", fleet.endpoint()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, document).unwrap();
    let script = dir.path().join("generated_client.py");
    std::fs::write(
        &script,
        r#"import json, subprocess, sys, time
spec, out, base = sys.argv[1], sys.argv[2], sys.argv[3]
from openapi_spec_validator import validate
validate(json.load(open(spec)))
print("document valid")
subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", spec,
                "--output-path", out + "/aloft_rest", "--meta", "none"], check=True, capture_output=True)
sys.path.insert(0, out)
from aloft_rest.client import Client
from aloft_rest.api.executions import create_execution, get_execution
from aloft_rest.models import CreateExecutionRequest, Identifier
from aloft_rest.models.create_execution_request_text_inputs import CreateExecutionRequestTextInputs
client = Client(base_url=base)
request = CreateExecutionRequest(
    workflow=Identifier(project="default", domain="development", name="diamond"),
    name="generated-1",
    text_inputs=CreateExecutionRequestTextInputs.from_dict({"x": "3"}),
)
print("created", create_execution.sync("default", "development", client=client, body=request).id.name)
for _ in range(300):
    got = get_execution.sync("default", "development", "generated-1", client=client)
    if str(got.phase) in ("SUCCEEDED", "FAILED"):
        break
    time.sleep(0.2)
print("phase", got.phase, "result", got.outputs.to_dict()["values"]["result"]["integer"])
missing = get_execution.sync_detailed("default", "development", "no-such-run", client=client)
print("missing", missing.status_code.value, missing.parsed.code, missing.parsed.message)
"#,
    )
    .unwrap();
    let out = dir.path().to_path_buf();
    let base = fleet.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(&script)
            .arg(&spec)
            .arg(&out)
            .arg(base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("document valid"), "{stdout}");
    assert!(stdout.contains("created generated-1"), "{stdout}");
    assert!(stdout.contains("phase SUCCEEDED result 24"), "{stdout}");
    assert!(
        stdout.contains("missing 404 NOT_FOUND execution default/development/no-such-run not found"),
        "{stdout}"
    );
    fleet.stop().await.unwrap();
}
