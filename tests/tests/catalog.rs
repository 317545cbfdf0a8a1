//! Memoization and lineage on Kafka + Postgres, with admin, propeller and catalog as separate processes.
//! A cached task counts its real runs in a file, so "ran once" is observed, not inferred. It counts completed
//! runs (the line is written after the work): an attempt killed mid-run is not a result computed.
//!
//! Over 600 lines: memoization and lineage end to end, sharing the counting task and the deployment setup.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

fn task_spec(runs_file: &Path, version: &str, cache_version: &str, serialize: bool, sleep: &str) -> String {
    format!(
        r#"kind: task
name: double
version: "{version}"
interface: {{inputs: {{x: integer, note: string}}, outputs: {{y: integer}}}}
cache: {{version: "{cache_version}", serialize: {serialize}, ignored_inputs: [note]}}
run:
  process:
    command: ["sh", "-c", "sleep {sleep}; echo run >> {runs}; echo $((ALOFT_INPUT_X * 2)) > \"$ALOFT_OUTPUT_DIR/y\""]
"#,
        runs = runs_file.display()
    )
}

fn runs(runs_file: &Path) -> usize {
    std::fs::read_to_string(runs_file)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn double(version: &str) -> wire::create_execution_request::Target {
    task("double", version)
}

async fn run_to_end(
    client: &mut aloft_cli::client::AdminClient,
    target: wire::create_execution_request::Target,
    name: &str,
    x: &str,
    overwrite_cache: bool,
) -> wire::Execution {
    let id = client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: name.into(),
            target: Some(target),
            inputs: None,
            text_inputs: [
                ("x".to_string(), x.to_string()),
                ("note".to_string(), name.to_string()),
            ]
            .into_iter()
            .collect(),
            overwrite_cache,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap();
    let finished = wait_finished(client, &id, Duration::from_secs(60)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{name}: {}",
        finished.error
    );
    finished
}

fn cache_status(execution: &wire::Execution) -> String {
    execution.nodes[0].cache_status.clone()
}

fn output_y(execution: &wire::Execution) -> Vec<String> {
    scalar_outputs(execution)
}

async fn lineage(
    catalog: &mut aloft_cli::lineage::CatalogClient,
    execution: &str,
    node: &str,
    output: &str,
) -> Result<wire::GetLineageResponse, tonic::Status> {
    let request = aloft_cli::lineage::lineage_request(
        PROJECT,
        DOMAIN,
        &[execution, node, output]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/"),
        0,
    )
    .unwrap();
    catalog.get_lineage(request).await.map(|r| r.into_inner())
}

/// Waits until the catalog's lineage of `execution` is complete (it projects the log asynchronously).
async fn settled_lineage(
    catalog: &mut aloft_cli::lineage::CatalogClient,
    execution: &str,
) -> wire::GetLineageResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = lineage(catalog, execution, "", "").await {
            if !answer.partial {
                return answer;
            }
        }
        assert!(Instant::now() < deadline, "lineage of {execution} never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_task_runs_once_per_key_and_its_lineage_follows_cache_hits() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let _propeller = deployment.start_propeller("propeller");
    let mut client = deployment.client().await;
    let mut catalog = deployment.catalog().await;
    let dir = deployment.scratch.path();
    let runs_file = dir.join("runs.txt");
    register_text(
        &mut client,
        dir,
        "v1.yaml",
        &task_spec(&runs_file, "1", "1", false, "0"),
    )
    .await;

    let first = run_to_end(&mut client, double("1"), "first", "3", false).await;
    assert_eq!(output_y(&first), ["y=6"]);
    assert_eq!(cache_status(&first), "POPULATED");
    assert_eq!(runs(&runs_file), 1);

    // Equal inputs (the ignored `note` differs): served from the cache, no run.
    let second = run_to_end(&mut client, double("1"), "second", "3", false).await;
    assert_eq!(output_y(&second), ["y=6"]);
    assert_eq!(cache_status(&second), "HIT");
    assert_eq!(
        second.attempts[0].cache_source,
        "default/development/first/double/1"
    );
    assert_eq!(runs(&runs_file), 1, "a cache hit must not run the task");
    // The hit is one decision: the node went from ready to SUCCEEDED in one event (the lookup came before
    // it), with no attempt started.
    let history = client
        .get_execution_history(wire::GetExecutionRequest {
            id: second.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = history.events.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ExecutionRequested",
            "ExecutionStarted",
            "NodeCacheHit",
            "ExecutionFinished"
        ],
        "{history:#?}"
    );

    // Another input runs.
    let other_input = run_to_end(&mut client, double("1"), "other-input", "4", false).await;
    assert_eq!(output_y(&other_input), ["y=8"]);
    assert_eq!(cache_status(&other_input), "POPULATED");
    assert_eq!(runs(&runs_file), 2);

    // A new task version with the same cache version reuses the result; a new cache version runs.
    register_text(
        &mut client,
        dir,
        "v2.yaml",
        &task_spec(&runs_file, "2", "1", false, "0"),
    )
    .await;
    let new_code = run_to_end(&mut client, double("2"), "new-code", "3", false).await;
    assert_eq!(cache_status(&new_code), "HIT");
    assert_eq!(runs(&runs_file), 2);
    register_text(
        &mut client,
        dir,
        "v3.yaml",
        &task_spec(&runs_file, "3", "2", false, "0"),
    )
    .await;
    let new_cache_version = run_to_end(&mut client, double("3"), "new-cache-version", "3", false).await;
    assert_eq!(cache_status(&new_cache_version), "POPULATED");
    assert_eq!(runs(&runs_file), 3);

    // overwrite_cache runs and replaces; later runs reuse the replacement.
    let overwrite = run_to_end(&mut client, double("1"), "overwrite", "3", true).await;
    assert_eq!(cache_status(&overwrite), "SKIPPED");
    assert_eq!(runs(&runs_file), 4);
    let after_overwrite = run_to_end(&mut client, double("1"), "after-overwrite", "3", false).await;
    assert_eq!(cache_status(&after_overwrite), "HIT");
    assert_eq!(
        after_overwrite.attempts[0].cache_source,
        "default/development/overwrite/double/1"
    );

    // Lineage: the hit's output was reused from `overwrite`, which was made from its input x.
    let answer = settled_lineage(&mut catalog, "after-overwrite").await;
    let y = "default/development/after-overwrite/double/y";
    assert!(answer.selected.contains(&y.to_string()), "{answer:?}");
    let edges: Vec<(String, String, String)> = answer
        .edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone(), e.relation.clone()))
        .collect();
    assert!(edges.contains(&(
        "default/development/overwrite/double/y".to_string(),
        y.to_string(),
        "cache".to_string()
    )));
    assert!(edges.contains(&(
        "default/development/overwrite/@inputs/x".to_string(),
        "default/development/overwrite/double/y".to_string(),
        "input x".to_string()
    )));
    // Downstream of `first`'s output: `second` reused it. (The catalog projects the partitions of
    // `second` and `after-overwrite` independently, so wait for the edge rather than assume its order.)
    settled_lineage(&mut catalog, "second").await;
    let downstream = lineage(&mut catalog, "first", "double", "y").await.unwrap();
    assert!(downstream
        .edges
        .iter()
        .any(|e| e.from.ends_with("/first/double/y") && e.to.ends_with("/second/double/y")));

    // Eviction: the next run runs again.
    let evicted = catalog
        .evict(wire::EvictRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            task_name: "double".into(),
            cache_version: "1".into(),
            key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evicted.evicted, 2, "x=3 and x=4 under cache version 1");
    let after_evict = run_to_end(&mut client, double("1"), "after-evict", "3", false).await;
    assert_eq!(cache_status(&after_evict), "POPULATED");
    assert_eq!(runs(&runs_file), 5);

    // Bad input: clear errors naming what is wrong.
    let unknown = lineage(&mut catalog, "no-such-execution", "", "")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown.message().contains("no-such-execution"),
        "{}",
        unknown.message()
    );
    let unknown_node = lineage(&mut catalog, "first", "nope", "").await.unwrap_err();
    assert!(
        unknown_node.message().contains("its nodes are: double"),
        "{}",
        unknown_node.message()
    );
    let unknown_output = lineage(&mut catalog, "first", "double", "z").await.unwrap_err();
    assert!(
        unknown_output.message().contains("its outputs are: y"),
        "{}",
        unknown_output.message()
    );
    let bad_cache = dir.join("bad.yaml");
    std::fs::write(
        &bad_cache,
        task_spec(&runs_file, "9", "", false, "0").replace("name: double", "name: broken"),
    )
    .unwrap();
    let documents = aloft_cli::specs::read_spec_file(&bad_cache);
    let registered = match documents {
        Ok(documents) => aloft_cli::specs::register_documents(&mut client, PROJECT, DOMAIN, documents)
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    };
    let error = registered.unwrap_err().to_string();
    assert!(error.contains("cache.version must not be empty"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_serialized_executions_run_the_task_once() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let _propeller_a = deployment.start_propeller("propeller-a");
    let _propeller_b = deployment.start_propeller("propeller-b");
    let mut client = deployment.client().await;
    let mut catalog = deployment.catalog().await;
    // Partitions that move between propellers mid-run make the new owner run the attempt again (at-least-once
    // on ownership change); this test is about concurrent executions, so let the group settle first.
    deployment
        .wait_for_logs(
            &["propeller-propeller-a", "propeller-propeller-b"],
            "partition claimed; deciding",
            Duration::from_secs(60),
        )
        .await;
    let dir = deployment.scratch.path();
    let runs_file = dir.join("runs.txt");
    register_text(
        &mut client,
        dir,
        "task.yaml",
        &task_spec(&runs_file, "1", "1", true, "2"),
    )
    .await;

    let mut ids = Vec::new();
    for index in 0..20 {
        let id = client
            .create_execution(wire::CreateExecutionRequest {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                name: format!("serialized-{index}"),
                target: Some(double("1")),
                inputs: None,
                text_inputs: [
                    ("x".to_string(), "21".to_string()),
                    ("note".to_string(), index.to_string()),
                ]
                .into_iter()
                .collect(),
                overwrite_cache: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id
            .unwrap();
        ids.push(id);
    }
    // While the task runs, lineage answers partially and says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lineage(&mut catalog, "serialized-0", "", "").await {
            Ok(answer) => {
                assert!(
                    answer.partial,
                    "a running execution's lineage must be marked partial"
                );
                assert!(
                    answer.partial_reason.contains("serialized-0"),
                    "{}",
                    answer.partial_reason
                );
                break;
            }
            Err(status) if status.code() == tonic::Code::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("lineage of a running execution: {status}"),
        }
    }
    let mut statuses = Vec::new();
    for id in &ids {
        let finished = wait_finished(&mut client, id, Duration::from_secs(120)).await;
        assert_eq!(
            finished.phase,
            wire::ExecutionPhase::Succeeded as i32,
            "{}",
            finished.error
        );
        assert_eq!(scalar_outputs(&finished), ["y=42"]);
        statuses.push(cache_status(&finished));
    }
    assert_eq!(
        runs(&runs_file),
        1,
        "20 serialized executions must run the task once (cache statuses: {statuses:?})"
    );
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| *s == "HIT").count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "POPULATED").count(),
        1,
        "{statuses:?}"
    );
}

/// A blob a task wrote is keyed by its content: each run of `make` writes the same bytes to a new file (a new
/// URI), and the cached `count` that reads it is a hit the second time; different bytes run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_inputs_are_keyed_by_content_digest() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let _propeller = deployment.start_propeller("propeller");
    let mut client = deployment.client().await;
    let dir = deployment.scratch.path();
    let runs_file = dir.join("runs.txt");
    let specs = format!(
        r#"kind: task
name: make
version: "1"
interface: {{inputs: {{n: integer}}, outputs: {{data: blob}}}}
run:
  process:
    command: ["sh", "-c", "seq $ALOFT_INPUT_N > \"$ALOFT_OUTPUT_DIR/data\""]
---
kind: task
name: count
version: "1"
interface: {{inputs: {{data: blob}}, outputs: {{lines: integer}}}}
cache: {{version: "1"}}
run:
  process:
    command: ["sh", "-c", "echo run >> {runs}; wc -l < \"$ALOFT_INPUT_DATA\" > \"$ALOFT_OUTPUT_DIR/lines\""]
---
kind: workflow
name: make-and-count
interface: {{inputs: {{n: integer}}, outputs: {{lines: integer}}}}
nodes:
  - {{id: make, task: make, inputs: {{n: inputs.n}}}}
  - {{id: count, task: count, inputs: {{data: make.data}}}}
outputs: {{lines: count.lines}}
"#,
        runs = runs_file.display()
    );
    register_text(&mut client, dir, "blobs.yaml", &specs).await;
    let run = |name: &'static str, n: &'static str| {
        let mut client = client.clone();
        async move {
            let id = launch(&mut client, workflow("make-and-count"), name, &[("n", n)])
                .await
                .unwrap();
            wait_succeeded(&mut client, &id, Duration::from_secs(60)).await
        }
    };
    let first = run("first", "3").await;
    let again = run("again", "3").await;
    let other = run("other", "4").await;
    let count_status = |execution: &wire::Execution| {
        execution
            .nodes
            .iter()
            .find(|node| node.node_id == "count")
            .map(|node| node.cache_status.clone())
            .unwrap_or_default()
    };
    assert_eq!(scalar_outputs(&first), ["lines=3"]);
    assert_eq!(count_status(&first), "POPULATED");
    assert_eq!(count_status(&again), "HIT", "same bytes at a new URI");
    assert_eq!(scalar_outputs(&again), ["lines=3"]);
    assert_eq!(count_status(&other), "POPULATED", "other bytes");
    assert_eq!(scalar_outputs(&other), ["lines=4"]);
    assert_eq!(runs(&runs_file), 2);
}

/// The propeller holding a serialized task's reservation is SIGKILLed mid-run while another execution with
/// the same key waits for it: after the reservation expires (no more heartbeats), the surviving work takes
/// over — the task completes exactly once and both executions succeed, one from the other's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_reservation_holder_is_taken_over_once_its_reservation_expires() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let ttl = [("ALOFT_CACHE_RESERVATION_TTL_MS", "3000".to_string())];
    let mut holder = deployment.start_with_env("aloft-propeller", "propeller-holder", &ttl);
    let mut client = deployment.client().await;
    let dir = deployment.scratch.path();
    let (runs_file, release) = (dir.join("runs.txt"), dir.join("release"));
    // The run blocks until `release` exists, then counts itself (completed runs only).
    let block = format!("0; while [ ! -f {} ]; do sleep 0.1; done", release.display());
    register_text(
        &mut client,
        dir,
        "task.yaml",
        &task_spec(&runs_file, "1", "1", true, &block),
    )
    .await;
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        ids.push(
            launch(&mut client, double("1"), name, &[("x", "5"), ("note", name)])
                .await
                .unwrap(),
        );
    }
    // Both attempts are running: one holds the reservation (its process blocks), the other waits for it.
    wait_all_running(&mut client, &ids).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The holder's machine dies: the propeller and the task process it started.
    holder.sigkill();
    kill_processes_mentioning(&release.display().to_string());
    std::fs::write(&release, "").unwrap();
    // The broker drops the dead member after its session timeout (6 s); the replacement then owns every
    // partition, finds both attempts lost and retries them.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _replacement = deployment.start_with_env("aloft-propeller", "propeller-replacement", &ttl);
    let mut statuses = Vec::new();
    for id in &ids {
        let finished = wait_succeeded(&mut client, id, Duration::from_secs(90)).await;
        assert_eq!(output_y(&finished), ["y=10"]);
        statuses.push(cache_status(&finished));
    }
    statuses.sort();
    let mut histories = String::new();
    for id in &ids {
        let history = client
            .get_execution_history(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for event in history.events {
            histories.push_str(&format!("{} {} {}\n", id.name, event.kind, event.summary));
        }
    }
    assert_eq!(statuses, ["HIT", "POPULATED"], "{histories}");
    assert_eq!(
        runs(&runs_file),
        1,
        "the task completed exactly once:\n{histories}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_catalog_executions_still_finish_and_it_catches_up_and_rebuilds_identically() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let mut catalog_service = deployment.start_catalog();
    let _propeller = deployment.start_propeller("propeller");
    let mut client = deployment.client().await;
    deployment.catalog().await;
    let dir = deployment.scratch.path();
    let runs_file = dir.join("runs.txt");
    register_text(
        &mut client,
        dir,
        "task.yaml",
        &task_spec(&runs_file, "1", "1", false, "0"),
    )
    .await;
    run_to_end(&mut client, double("1"), "before-outage", "1", false).await;

    // Killed mid-run: five attempts looked their keys up (misses) and are running when the catalog dies, so
    // their results cannot be stored (version 2 of the task sleeps 2 s; same cache version, same keys).
    register_text(
        &mut client,
        dir,
        "slow.yaml",
        &task_spec(&runs_file, "2", "1", false, "2"),
    )
    .await;
    let mut mid_run = Vec::new();
    for x in 10..15 {
        let (name, x) = (format!("mid-run-{x}"), x.to_string());
        mid_run.push(
            launch(&mut client, double("2"), &name, &[("x", &x), ("note", &name)])
                .await
                .unwrap(),
        );
    }
    wait_all_running(&mut client, &mid_run).await;
    catalog_service.sigkill();
    for id in &mid_run {
        let finished = wait_succeeded(&mut client, id, Duration::from_secs(60)).await;
        assert_eq!(cache_status(&finished), "PUT_FAILURE", "{}", id.name);
    }
    assert_eq!(runs(&runs_file), 6);

    for (name, x) in [("outage-a", "2"), ("outage-b", "3")] {
        let finished = run_to_end(&mut client, double("1"), name, x, false).await;
        assert_eq!(cache_status(&finished), "LOOKUP_FAILURE");
    }
    assert_eq!(runs(&runs_file), 8);

    let catalog_service_again = deployment.start_catalog();
    let mut catalog_again = deployment.catalog().await;
    let mid_run_names: Vec<String> = mid_run.iter().map(|id| id.name.clone()).collect();
    for name in ["before-outage", "outage-a", "outage-b"]
        .into_iter()
        .chain(mid_run_names.iter().map(String::as_str))
    {
        let answer = settled_lineage(&mut catalog_again, name).await;
        assert!(
            answer
                .selected
                .iter()
                .any(|id| id.ends_with(&format!("/{name}/double/y"))),
            "{name}: {answer:?}"
        );
    }
    // The results recorded during the outage came from the log: the next equal runs are hits.
    let hit = run_to_end(&mut client, double("1"), "after-outage", "2", false).await;
    assert_eq!(cache_status(&hit), "HIT");
    let hit_mid_run = run_to_end(&mut client, double("1"), "after-mid-run", "12", false).await;
    assert_eq!(cache_status(&hit_mid_run), "HIT");
    assert_eq!(output_y(&hit_mid_run), ["y=24"]);
    assert_eq!(runs(&runs_file), 8);
    settled_lineage(&mut catalog_again, "after-outage").await;

    // Audit: drop the catalog's tables, replay the log, get the same rows.
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let before = aloft_catalog::store::dump_tables(&store).await.unwrap();
    assert!(before.contains("after-outage"), "{before}");
    drop(catalog_service_again);
    aloft_catalog::store::drop_tables(&store).await.unwrap();
    assert!(!aloft_catalog::store::dump_tables(&store)
        .await
        .unwrap()
        .contains("after-outage"));
    let _rebuilt = deployment.start_catalog();
    let deadline = Instant::now() + Duration::from_secs(60);
    while aloft_catalog::store::dump_tables(&store).await.unwrap() != before {
        assert!(
            Instant::now() < deadline,
            "replay did not rebuild the same catalog:\n{}\nexpected:\n{before}",
            aloft_catalog::store::dump_tables(&store).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `aloft admin lag` and `aloft admin replay` against a Kafka + Postgres deployment, through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_replay_rebuilds_identical_tables_and_lag_shows_the_projectors_caught_up() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let admin = deployment.start_admin();
    let catalog_service = deployment.start_catalog();
    let _propeller = deployment.start_propeller("propeller");
    let mut client = deployment.client().await;
    let mut catalog = deployment.catalog().await;
    let dir = deployment.scratch.path();
    let runs_file = dir.join("runs.txt");
    register_text(
        &mut client,
        dir,
        "task.yaml",
        &task_spec(&runs_file, "1", "1", false, "0"),
    )
    .await;
    run_to_end(&mut client, double("1"), "one", "5", false).await;
    run_to_end(&mut client, double("1"), "two", "5", false).await;
    settled_lineage(&mut catalog, "two").await;

    let aloft = |args: &[&str]| {
        let output = std::process::Command::new(binary("aloft"))
            .args(args)
            .env("ALOFT_KAFKA_BROKERS", &deployment.brokers)
            .env("ALOFT_DATABASE_URL", &deployment.database_url)
            .env("ALOFT_TOPIC_PREFIX", &deployment.topic_prefix)
            .env("ALOFT_DATA_DIR", dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(
            output.status.success(),
            "aloft {args:?} failed:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (lag, _) = aloft(&["admin", "lag"]);
        assert!(lag.contains("admin  ") && lag.contains("catalog  "), "{lag}");
        if lag.contains("total lag 0 record(s)") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projectors never caught up:\n{lag}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let projections = store.dump_projections().await.unwrap();
    let catalog_tables = aloft_catalog::store::dump_tables(&store).await.unwrap();
    drop(admin);
    drop(catalog_service);
    let (_, progress) = aloft(&["admin", "replay", "--rebuild-projections", "--rebuild-catalog"]);
    assert!(progress.contains("admin: replayed"), "{progress}");
    assert!(progress.contains("catalog: replayed"), "{progress}");
    assert_eq!(store.dump_projections().await.unwrap(), projections);
    assert_eq!(
        aloft_catalog::store::dump_tables(&store).await.unwrap(),
        catalog_tables
    );
}

/// SIGKILLs every process whose command line mentions `needle` (task processes orphaned by a killed propeller).
fn kill_processes_mentioning(needle: &str) {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Waits until the (single-node) executions' nodes all run.
async fn wait_all_running(client: &mut AdminClient, ids: &[wire::ExecutionIdentifier]) {
    for id in ids {
        wait_until(client, id, Duration::from_secs(30), |e| {
            e.nodes
                .first()
                .is_some_and(|n| n.phase == wire::NodePhase::NodeRunning as i32)
        })
        .await;
    }
}
