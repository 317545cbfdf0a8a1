//! The Python SDK through the `aloft` CLI, as a Python user types it, on the embedded default: a workflow of
//! typed Python functions runs with `aloft run FILE.py:NAME` and gives the outputs its YAML twin gives; a
//! map over a list of blobs moves every chunk through the blob store; a Python exception becomes the
//! node's error, message first. Needs the SDK installed for `python3` (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::{Command, Output};

use aloft_e2e::{binary, repo_root};

/// Whether the SDK is importable; required when real backends are (scripts/test.sh installs it).
fn sdk_installed() -> bool {
    let python = std::env::var("ALOFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(python)
        .args(["-c", "import aloft"])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the Aloft Python SDK is not installed (pip install ./sdk/python)"
        );
        eprintln!("skipping: the Aloft Python SDK is not installed");
    }
    found
}

fn aloft(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(binary("aloft"))
        .current_dir(dir)
        .env("ALOFT_DATA_DIR", dir.join("data"))
        .env_remove("ALOFT_ADMIN")
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_python_diamond_gives_what_the_yaml_diamond_gives() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let python = repo_root().join("examples/python/diamond.py");
    let yaml = repo_root().join("examples/diamond.yaml");
    for x in ["3", "10"] {
        let from_python = stdout_of(&aloft(
            dir.path(),
            &[
                "run",
                &format!("{}:diamond", python.display()),
                "--input",
                &format!("x={x}"),
            ],
        ));
        let from_yaml = stdout_of(&aloft(
            dir.path(),
            &["run", yaml.to_str().unwrap(), "--input", &format!("x={x}")],
        ));
        let outputs = |text: &str| {
            text.lines()
                .find(|line| line.starts_with("outputs"))
                .map(str::to_string)
                .unwrap_or_default()
        };
        assert_eq!(outputs(&from_python), outputs(&from_yaml), "{from_python}");
    }
    let listed = stdout_of(&aloft(dir.path(), &["list", "workflows"]));
    assert!(listed.contains("diamond"), "{listed}");
}

#[test]
fn a_map_over_blob_chunks_moves_every_chunk_through_the_store() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let chunks = repo_root().join("examples/python/chunks.py");
    let out = stdout_of(&aloft(
        dir.path(),
        &[
            "run",
            &format!("{}:chunks", chunks.display()),
            "--input",
            "records=1000",
            "--input",
            "chunk_size=300",
        ],
    ));
    assert!(out.contains("o0=1000"), "{out}");
    let split = out
        .lines()
        .find(|line| line.trim_start().starts_with("split "))
        .unwrap_or_default();
    assert_eq!(
        split.matches("/blobs/").count(),
        4,
        "every chunk is a blob in the store, not a path on the task's machine: {split}"
    );
    assert!(
        out.contains("cache=POPULATED"),
        "the counting step is cached: {out}"
    );
}

#[test]
fn a_python_exception_is_the_nodes_error_and_bad_definitions_name_their_line() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.py");
    std::fs::write(
        &failing,
        "from aloft import task, workflow\n\n\
         @task(retries=1)\n\
         def boom(n: int) -> int:\n    raise ValueError(f'bad n {n}')\n\n\
         @workflow\n\
         def failing(n: int) -> int:\n    return boom(n=n)\n",
    )
    .unwrap();
    let run = aloft(
        dir.path(),
        &["run", &format!("{}:failing", failing.display()), "--input", "n=5"],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success());
    assert!(stdout.contains("FAILED after 2 attempt(s)"), "{stdout}");
    assert!(stdout.contains("ValueError: bad n 5"), "{stdout}");

    let bad = dir.path().join("bad.py");
    std::fs::write(
        &bad,
        "from aloft import task, workflow\n\n\
         @task\n\
         def shout(text: str) -> str:\n    return text.upper()\n\n\
         @workflow\n\
         def wrong(n: int) -> str:\n    return shout(text=n)\n",
    )
    .unwrap();
    let refused = aloft(dir.path(), &["register", "-f", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("bad.py:9: shout.text takes string, given integer"),
        "{stderr}"
    );
}

/// `aloft register DIR` registers every file of a directory in one batch: when admin refuses one document
/// (here a launch plan whose notification rule names a secret the deployment does not have), nothing of
/// the module or of the directory's other files is registered; once the secret exists, all of it is.
#[test]
fn registering_a_directory_is_all_or_nothing() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::write(
        pipelines.join("flow.py"),
        "from aloft import LaunchPlan, on_slack, task, workflow\n\n\
         @task\n\
         def first(n: int) -> int:\n    return n + 1\n\n\
         @workflow\n\
         def flow(n: int) -> int:\n    return first(n=n)\n\n\
         alerts = LaunchPlan(flow, name='flow-alerts', default_inputs={'n': 1},\n\
             notifications=[on_slack(['FAILED'], webhook_url='env:ALOFT_TEST_SLACK_URL')])\n",
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("examples/diamond.yaml"),
        pipelines.join("diamond.yaml"),
    )
    .unwrap();
    let register = |slack: Option<&str>| {
        let mut command = Command::new(binary("aloft"));
        command
            .current_dir(dir.path())
            .env("ALOFT_DATA_DIR", dir.path().join("data"))
            .env_remove("ALOFT_ADMIN")
            .env_remove("ALOFT_TEST_SLACK_URL")
            .args(["register", pipelines.to_str().unwrap()]);
        if let Some(url) = slack {
            command.env("ALOFT_TEST_SLACK_URL", url);
        }
        command.output().unwrap()
    };
    let refused = register(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("ALOFT_TEST_SLACK_URL") && stderr.contains("nothing was registered"),
        "{stderr}"
    );
    let tasks = stdout_of(&aloft(dir.path(), &["list", "tasks"]));
    assert!(
        !tasks.contains("first") && !tasks.contains("increment"),
        "a refused batch registered something:\n{tasks}"
    );
    let registered = stdout_of(&register(Some("https://hooks.slack.invalid/T000")));
    for entity in [
        "registered task first@",
        "registered workflow flow@",
        "registered launch plan flow-alerts@",
        "registered task increment@1",
        "registered workflow diamond@",
    ] {
        assert!(registered.contains(entity), "{entity}: {registered}");
    }
    let run = stdout_of(&aloft(dir.path(), &["run", "flow-alerts"]));
    assert!(run.contains("o0=2"), "{run}");
}

/// examples/python/train.py, the typed train/evaluate pipeline: a map fits a model per learning rate, a
/// second map scores each, a struct comes out; the cached dataset step is a hit the second time; its
/// scheduled launch plan registers and runs with its default inputs.
#[test]
fn the_python_train_example_maps_over_learning_rates_and_caches_its_data() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let train = repo_root().join("examples/python/train.py");
    let target = format!("{}:train", train.display());
    let args = [
        "run",
        &target,
        "--input",
        "rows=200",
        "--input",
        "lrs=[0.01, 0.1, 0.5]",
    ];
    let first = stdout_of(&aloft(dir.path(), &args));
    assert!(
        first.contains(r#"outputs    o0={"learning_rate":0.1,"mse":"#),
        "{first}"
    );
    assert!(first.contains("evaluate-map[2]  SUCCEEDED"), "{first}");
    let second = stdout_of(&aloft(dir.path(), &args));
    let make_data = second
        .lines()
        .find(|line| line.trim_start().starts_with("make_data"))
        .unwrap_or_default();
    assert!(make_data.contains("cache=HIT"), "{second}");
    stdout_of(&aloft(dir.path(), &["register", "-f", train.to_str().unwrap()]));
    // The dataclass keeps its shape in the registered interface (the engine types it `struct`).
    let evaluate = stdout_of(&aloft(dir.path(), &["get", "task", "evaluate"]));
    assert!(
        evaluate.contains("output_schemas:") && evaluate.contains("title: Score"),
        "{evaluate}"
    );
    let nightly = stdout_of(&aloft(dir.path(), &["run", "train-nightly"]));
    assert!(nightly.contains("rows=500"), "{nightly}");
    assert!(nightly.contains(r#"o0={"learning_rate":"#), "{nightly}");
}

/// Dataframes pass between Python tasks as parquet blobs through the blob store: a pandas DataFrame made by
/// one task is read, filtered and passed on by the next, and a pyarrow Table by a third.
#[test]
fn dataframes_pass_between_python_tasks_as_parquet_blobs() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frames.py");
    std::fs::write(
        &file,
        "from typing import Annotated\nimport pandas\nimport pyarrow\nfrom aloft import Columns, task, workflow\n\n\
         Counts = Annotated[pandas.DataFrame, Columns(gene=str, count=int)]\n\n\
         @task\n\
         def counts(genes: int) -> Counts:\n    return pandas.DataFrame({'gene': [f'g{i}' for i in range(genes)], 'count': list(range(genes))})\n\n\
         @task\n\
         def top(frame: Counts, n: int) -> pyarrow.Table:\n    best = frame.sort_values('count', ascending=False).head(n)\n    return pyarrow.Table.from_pandas(best, preserve_index=False)\n\n\
         @task\n\
         def total(table: pyarrow.Table) -> int:\n    return sum(table.column('count').to_pylist())\n\n\
         @workflow\n\
         def frames(genes: int, n: int) -> int:\n    return total(table=top(frame=counts(genes=genes), n=n))\n\n\
         @task\n\
         def genes_only(genes: int) -> Counts:\n    return pandas.DataFrame({'gene': ['g0'] * genes})\n\n\
         @workflow\n\
         def narrow(genes: int) -> int:\n    return total(table=top(frame=genes_only(genes=genes), n=1))\n",
    )
    .unwrap();
    let run = stdout_of(&aloft(
        dir.path(),
        &[
            "run",
            &format!("{}:frames", file.display()),
            "--input",
            "genes=10",
            "--input",
            "n=3",
        ],
    ));
    // The three largest counts of 0..10: 9 + 8 + 7.
    assert!(run.contains("o0=24"), "{run}");
    // The frames are blobs in the store, not values in the events.
    assert!(run.contains("/counts/1/o0"), "{run}");
    // The declared columns are in the interface, and a frame without one of them fails the task.
    let counts = stdout_of(&aloft(dir.path(), &["get", "task", "counts"]));
    assert!(
        counts.contains("columns:") && counts.contains("gene: string"),
        "{counts}"
    );
    let narrow = aloft(
        dir.path(),
        &["run", &format!("{}:narrow", file.display()), "--input", "genes=2"],
    );
    let stdout = String::from_utf8_lossy(&narrow.stdout);
    assert!(!narrow.status.success(), "{stdout}");
    assert!(
        stdout.contains("the frame has no column 'count' that Columns(gene=str, count=int) declares"),
        "{stdout}"
    );
}

/// A launch plan called in a Python workflow is a launch-plan node: the plan (with its fixed input) and its
/// workflow are registered before the parent, the node launches a linked child execution, and the parent
/// takes the child's output.
#[test]
fn a_launch_plan_called_in_python_runs_as_a_linked_child_execution() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plans.py");
    std::fs::write(
        &file,
        "from aloft import LaunchPlan, task, workflow\n\n\
         @task\n\
         def repeat(text: str, times: int) -> str:\n    return text * times\n\n\
         @task\n\
         def length(text: str) -> int:\n    return len(text)\n\n\
         @workflow\n\
         def measure(text: str, times: int = 2) -> int:\n    return length(text=repeat(text=text, times=times))\n\n\
         triple = LaunchPlan(measure, name='measure-triple', fixed_inputs={'times': 3})\n\n\
         @workflow\n\
         def parent(text: str) -> int:\n    return triple(text=text)\n",
    )
    .unwrap();
    let run = stdout_of(&aloft(
        dir.path(),
        &[
            "run",
            &format!("{}:parent", file.display()),
            "--input",
            "text=abcd",
        ],
    ));
    // 4 characters repeated the plan's fixed 3 times, measured in the child.
    assert!(run.contains("o0=12"), "{run}");
    let plans = stdout_of(&aloft(dir.path(), &["list", "launchplans"]));
    assert!(plans.contains("measure-triple"), "{plans}");
    let executions = stdout_of(&aloft(dir.path(), &["list", "executions"]));
    assert!(
        executions.contains("measure-triple"),
        "the child runs the plan: {executions}"
    );
}

/// A `@dynamic` workflow's shape follows its inputs' values: its planner runs the body with them, the engine
/// compiles and runs the plan under the node, and the workflow takes the plan's output.
#[test]
fn a_dynamic_python_workflow_runs_the_plan_its_inputs_make() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.py");
    std::fs::write(
        &file,
        "from aloft import dynamic, task, workflow\n\n\
         @task\n\
         def inc(n: int) -> int:\n    return n + 1\n\n\
         @dynamic(uses=[inc])\n\
         def chain(length: int) -> int:\n    value = 0\n    for _ in range(length):\n        value = inc(n=value)\n    return value\n\n\
         @workflow\n\
         def outer(length: int) -> int:\n    return inc(n=chain(length=length))\n",
    )
    .unwrap();
    for (length, expected) in [("4", "o0=5"), ("1", "o0=2")] {
        let run = stdout_of(&aloft(
            dir.path(),
            &[
                "run",
                &format!("{}:outer", file.display()),
                "--input",
                &format!("length={length}"),
            ],
        ));
        assert!(run.contains(expected), "length {length}: {run}");
    }
    // A body that wires nothing for its inputs fails the node saying so (the engine runs no empty plan).
    let empty = aloft(
        dir.path(),
        &["run", &format!("{}:outer", file.display()), "--input", "length=0"],
    );
    let stdout = String::from_utf8_lossy(&empty.stdout);
    assert!(!empty.status.success(), "{stdout}");
    assert!(
        stdout.contains("chain wired no task for these inputs"),
        "{stdout}"
    );
}

/// `aloft.Remote` from a Python script against a running fleet (Kafka and Postgres in CI): it registers a
/// workflow and its tasks over the REST API, launches it with Python values, waits, reads typed outputs, a
/// node's outputs and the history, reads an output offloaded to the blob store, relaunches with a changed
/// input, terminates a running execution and recovers it; an input of the wrong type is refused before
/// anything is sent, and an unknown project is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_script_runs_a_workflow_on_a_fleet_through_remote() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = aloft_e2e::start_fleet(dir.path()).await;
    let script = dir.path().join("remote_run.py");
    std::fs::write(
        &script,
        r#"import sys
from aloft import Remote, RemoteError, task, workflow

@task
def inc(n: int) -> int:
    return n + 1

@task
def pair(n: int, label: str) -> tuple[int, str]:
    return n * 2, label.upper()

@workflow
def twice(n: int, label: str = "x") -> tuple[int, str]:
    return pair(n=inc(n=inc(n=n)), label=label)

@task
def nap(seconds: float) -> int:
    import time
    time.sleep(seconds)
    return 0

@task
def many(n: int) -> list[int]:
    return list(range(n))

@workflow
def big(n: int) -> list[int]:
    return many(n=n)

@workflow
def slow(seconds: float) -> int:
    return nap(seconds=seconds)

if __name__ == "__main__":
    remote = Remote(sys.argv[1])
    run = remote.run(twice, n=3, label="ok").wait(timeout=90)
    print("phase", run.phase)
    print("outputs", sorted(run.outputs.items()))
    print("by name", sorted(remote.execution(run.name).outputs.items()))
    print("node pair", sorted(run.node_outputs("pair").items()))
    print("node pair given", sorted(run.node_inputs("pair").items()))
    print("run name", run.name)
    try:
        run.node_inputs("nosuch")
    except RemoteError as error:
        print("unknown node", error.status, error.message)
    print("history starts", run.history()[0]["kind"])
    large = remote.run(big, n=200000).wait(timeout=90)
    values = large.outputs["o0"]
    print("offloaded", large.phase, len(values), sum(values), len(large.node_outputs("many")["o0"]))
    again = run.relaunch(n=5).wait(timeout=90)
    print("relaunched", again.name != run.name, sorted(again.outputs.items()))
    stopped = remote.run(slow, seconds=60.0)
    while stopped.refresh().phase in ("QUEUED", "UNKNOWN"):
        pass
    stopped.terminate("enough")
    print("terminated", stopped.wait(timeout=60).phase)
    recovered = stopped.recover()
    print("recovered", recovered.name != stopped.name, recovered.refresh().phase in ("QUEUED", "RUNNING"))
    recovered.terminate()
    try:
        remote.run(twice, n="three")
    except TypeError as error:
        print("refused", error)
    try:
        Remote(sys.argv[1], project="nope").run(twice, n=1)
    except RemoteError as error:
        print("remote error", error.status, error.message)
"#,
    )
    .unwrap();
    let python = std::env::var("ALOFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let endpoint = fleet.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(&script).arg(endpoint).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = stdout_of(&output);
    assert!(stdout.contains("phase SUCCEEDED"), "{stdout}");
    assert!(stdout.contains("outputs [('o0', 10), ('o1', 'OK')]"), "{stdout}");
    assert!(stdout.contains("by name [('o0', 10), ('o1', 'OK')]"), "{stdout}");
    assert!(
        stdout.contains("node pair [('o0', 10), ('o1', 'OK')]"),
        "{stdout}"
    );
    // A node's inputs are its bindings resolved: `n` from two inc nodes upstream, `label` from the workflow.
    assert!(
        stdout.contains("node pair given [('label', 'ok'), ('n', 5)]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unknown node 404 execution")
            && stdout.contains("has no node \"nosuch\"; its nodes are"),
        "{stdout}"
    );
    let run_name = stdout
        .lines()
        .find_map(|line| line.strip_prefix("run name "))
        .expect("the script prints the run's name")
        .to_string();
    let admin = fleet.endpoint();
    let given = aloft(
        dir.path(),
        &[
            "--admin", &admin, "download", &run_name, "n", "--node", "pair", "--input",
        ],
    );
    assert_eq!(stdout_of(&given).trim(), "5");
    assert!(stdout.contains("history starts ExecutionRequested"), "{stdout}");
    // A list of 200,000 integers (1.3 MB) is offloaded to the store; Remote reads it back whole.
    assert!(
        stdout.contains("offloaded SUCCEEDED 200000 19999900000 200000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("relaunched True [('o0', 14), ('o1', 'OK')]"),
        "{stdout}"
    );
    assert!(stdout.contains("terminated ABORTED"), "{stdout}");
    assert!(stdout.contains("recovered True True"), "{stdout}");
    assert!(
        stdout.contains("refused expected int, got str 'three'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("remote error 404 project \"nope\" does not exist"),
        "{stdout}"
    );
}

/// examples/python/release.py on a fleet (Kafka and Postgres in CI): a branch into a subworkflow, a sleep,
/// a typed signal and an approval written in Python, answered through the CLI, end with 23 + 19 = 42.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_branches_subworkflows_and_gates_run_on_a_fleet() {
    if !sdk_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = aloft_e2e::start_fleet(dir.path()).await;
    let admin = fleet.endpoint();
    let cli = |args: &[&str]| {
        let mut full = vec!["--admin", admin.as_str()];
        full.extend_from_slice(args);
        aloft(dir.path(), &full)
    };
    let release = repo_root().join("examples/python/release.py");
    stdout_of(&cli(&["register", "-f", release.to_str().unwrap()]));
    stdout_of(&cli(&[
        "run",
        "release",
        "--input",
        "x=20",
        "--name",
        "py-release",
    ]));
    let mut client = aloft_e2e::wait_for_client(&admin, String::new).await;
    let id = aloft_proto::v1::ExecutionIdentifier {
        project: aloft_e2e::PROJECT.into(),
        domain: aloft_e2e::DOMAIN.into(),
        name: "py-release".into(),
    };
    let waiting_on = |node: &'static str| {
        move |execution: &aloft_proto::v1::Execution| {
            execution
                .nodes
                .iter()
                .any(|n| n.node_id == node && n.phase == aloft_proto::v1::NodePhase::NodeRunning as i32)
        }
    };
    aloft_e2e::wait_until(
        &mut client,
        &id,
        std::time::Duration::from_secs(60),
        waiting_on("bump"),
    )
    .await;
    stdout_of(&cli(&["signal", "py-release", "bump", "19"]));
    aloft_e2e::wait_until(
        &mut client,
        &id,
        std::time::Duration::from_secs(60),
        waiting_on("review"),
    )
    .await;
    stdout_of(&cli(&["approve", "py-release", "review"]));
    let finished = aloft_e2e::wait_succeeded(&mut client, &id, std::time::Duration::from_secs(60)).await;
    assert_eq!(aloft_e2e::scalar_outputs(&finished), ["result=42"]);
    let skipped = finished
        .nodes
        .iter()
        .find(|n| n.node_id == "size/inc-2")
        .map(|n| n.phase);
    assert_eq!(skipped, Some(aloft_proto::v1::NodePhase::NodeSkipped as i32));
}

/// The Python examples on a deployment of processes (Kafka, Postgres and the S3 server in CI): admin, a
/// propeller and the catalog each their own binary, the examples compiled and registered through the SDK by
/// `aloft run FILE.py:WORKFLOW`. The diamond gives the YAML diamond's answer, the chunked count counts every
/// record, and the typed train pipeline maps over its learning rates and hits its cache on a second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_examples_run_on_a_deployment_of_processes() {
    if !sdk_installed() {
        return;
    }
    let Some((brokers, database)) = aloft_e2e::real_backends() else {
        return;
    };
    let mut deployment = aloft_e2e::Deployment::new(&brokers, &database).await;
    deployment.blob_store = aloft_e2e::real_s3_store();
    let _services = [
        deployment.start_catalog(),
        deployment.start_admin(),
        deployment.start_propeller("p1"),
    ];
    deployment.client().await;
    let admin = format!("http://127.0.0.1:{}", deployment.admin_port);
    let dir = tempfile::tempdir().unwrap();
    let examples = repo_root().join("examples/python");
    let run = |file: &str, workflow: &str, inputs: &[&str]| {
        let target = format!("{}:{workflow}", examples.join(file).display());
        let mut args = vec!["--admin", admin.as_str(), "run", "--wait", target.as_str()];
        for input in inputs {
            args.extend(["--input", input]);
        }
        stdout_of(&aloft(dir.path(), &args))
    };
    let diamond = run("diamond.py", "diamond", &["x=3"]);
    assert!(diamond.contains("result=24"), "{diamond}");
    let chunks = run("chunks.py", "chunks", &["records=1000", "chunk_size=300"]);
    assert!(chunks.contains("o0=1000"), "{chunks}");
    let train_inputs = ["rows=200", "lrs=[0.01, 0.1, 0.5]"];
    let first = run("train.py", "train", &train_inputs);
    assert!(
        first.contains(r#"outputs    o0={"learning_rate":0.1,"mse":"#),
        "{first}"
    );
    let second = run("train.py", "train", &train_inputs);
    let make_data = second
        .lines()
        .find(|line| line.trim_start().starts_with("make_data"))
        .unwrap_or_default();
    assert!(make_data.contains("cache=HIT"), "{second}");
}
