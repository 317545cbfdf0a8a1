//! Killing the propeller (SIGKILL) in the middle of the diamond and starting another finishes the execution
//! with the right outputs; nothing is lost and no succeeded node runs twice.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

fn slow_diamond(marker: &std::path::Path) -> String {
    // Every run of a node appends its name to the marker file, so re-runs are visible.
    let step = |name: &str, inputs: &str, expression: &str| {
        format!(
            "kind: task\nname: {name}\nversion: \"1\"\ninterface:\n  inputs: {inputs}\n  outputs: {{n: integer}}\nrun:\n  process:\n    \
             command: [\"sh\", \"-c\", \"echo $ALOFT_NODE >> {marker}; sleep 2; echo $(({expression})) > $ALOFT_OUTPUT_DIR/n\"]\n",
            marker = marker.display()
        )
    };
    [
        step("slow-step", "{n: integer}", "ALOFT_INPUT_N + 1"),
        step("slow-join", "{a: integer, b: integer}", "ALOFT_INPUT_A + ALOFT_INPUT_B"),
        "kind: workflow\nname: slow-diamond\ninterface: {inputs: {x: integer}, outputs: {result: integer}}\nnodes:\n  \
         - {id: a, task: slow-step, inputs: {n: inputs.x}}\n  - {id: b, task: slow-step, inputs: {n: a.n}}\n  \
         - {id: c, task: slow-step, inputs: {n: a.n}}\n  - {id: d, task: slow-join, inputs: {a: b.n, b: c.n}}\noutputs: {result: d.n}\n"
            .to_string(),
    ]
    .join("---\n")
}

fn node_phase(execution: &wire::Execution, node: &str) -> i32 {
    execution
        .nodes
        .iter()
        .find(|n| n.node_id == node)
        .map(|n| n.phase)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_propeller_is_replaced_and_the_execution_finishes_without_rerunning_succeeded_nodes() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let marker = deployment.scratch.path().join("runs.txt");
    let spec = deployment.scratch.path().join("slow-diamond.yaml");
    std::fs::write(&spec, slow_diamond(&marker)).unwrap();
    let _admin = deployment.start_admin();
    let mut first = deployment.start_propeller("propeller-first");
    let mut client = deployment.client().await;
    register_file(&mut client, &spec).await;
    let id = launch(&mut client, workflow("slow-diamond"), "survivor", &[("x", "3")])
        .await
        .unwrap();

    // Kill the owner while b and c are running, after a succeeded.
    wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        node_phase(e, "a") == wire::NodePhase::NodeSucceeded as i32
            && node_phase(e, "b") == wire::NodePhase::NodeRunning as i32
    })
    .await;
    first.sigkill();
    let _second = deployment.start_propeller("propeller-second");

    let finished = wait_finished(&mut client, &id, Duration::from_secs(120)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{}",
        finished.error
    );
    // a = 4, b = c = 5, d = 10
    assert_eq!(scalar_outputs(&finished), vec!["result=10"]);
    let runs = std::fs::read_to_string(&marker).unwrap();
    let count = |node: &str| runs.lines().filter(|l| *l == node).count();
    assert_eq!(
        count("a"),
        1,
        "a succeeded before the kill and must not run again; runs:\n{runs}"
    );
    assert_eq!(count("d"), 1, "d ran only after the recovery; runs:\n{runs}");
    // b and c were running when their propeller died; their processes lived on (only the propeller was
    // killed), so the new owner re-attached to them instead of running them again.
    assert_eq!((count("b"), count("c")), (1, 1), "runs:\n{runs}");

    let history = assert_history_gap_free(&mut client, &id).await;
    assert!(
        !history.iter().any(|e| e.kind == "AttemptFailed"),
        "no attempt was lost: {history:?}"
    );
    let second = std::fs::read_to_string(deployment.scratch.path().join("propeller-propeller-second.log"))
        .unwrap_or_default();
    assert!(
        second.contains("partition claimed") && second.contains("re-attached to a task process"),
        "the second propeller claimed the partitions and re-attached to the running attempts:\n{second}"
    );
}

/// Every envelope of `topic`, partition by partition, decoded (the log is read to its current end).
async fn read_all(brokers: &str, topic: &str) -> Vec<(u32, aloft_eventlog::Envelope)> {
    let log = aloft_eventlog::kafka::KafkaLog::connect(brokers).await.unwrap();
    let mut envelopes = Vec::new();
    for record in read_topic(&log, topic).await {
        for envelope in aloft_eventlog::Envelope::decode_all(&record.payload).unwrap() {
            envelopes.push((record.partition, envelope));
        }
    }
    envelopes
}

/// A propeller paused with SIGSTOP while its attempts run loses its partitions to another; its tasks finish
/// meanwhile, and once resumed it appends their results under its old epoch. Every reader discards those
/// late decisions (the log shows them after the newer claim), the new owner retries the attempts, and every
/// execution ends SUCCEEDED with the right output and a gap-free history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_its_late_decisions_are_discarded() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let spec = deployment.scratch.path().join("double.yaml");
    std::fs::write(
        &spec,
        "kind: task\nname: double\nversion: \"1\"\ninterface: {inputs: {n: integer}, outputs: {n: integer}}\nrun:\n  \
         process:\n    command: [\"sh\", \"-c\", \"sleep 1; echo $((ALOFT_INPUT_N * 2)) > $ALOFT_OUTPUT_DIR/n\"]\n",
    )
    .unwrap();
    let _admin = deployment.start_admin();
    let paused = deployment.start_propeller("paused");
    let mut client = deployment.client().await;
    register_file(&mut client, &spec).await;
    deployment
        .wait_for_logs(
            &["propeller-paused"],
            "partition claimed; deciding",
            Duration::from_secs(60),
        )
        .await;
    let task = task("double", "1");
    let mut ids = Vec::new();
    for n in 0..12 {
        let n_text = n.to_string();
        ids.push(
            launch(
                &mut client,
                task.clone(),
                &format!("double-{n}"),
                &[("n", n_text.as_str())],
            )
            .await
            .unwrap(),
        );
    }
    for id in &ids {
        wait_until(&mut client, id, Duration::from_secs(60), |e| {
            node_phase(e, "double") == wire::NodePhase::NodeRunning as i32
        })
        .await;
    }
    // Paused with its attempts running; their processes are not paused and finish meanwhile.
    paused.signal(nix::sys::signal::Signal::SIGSTOP);
    // The broker drops the paused member after its session timeout (6 s); a new member takes its partitions.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _successor = deployment.start_propeller("successor");
    deployment
        .wait_for_logs(
            &["propeller-successor"],
            "partition claimed; deciding",
            Duration::from_secs(60),
        )
        .await;
    // Resumed: it still believes it owns its partitions until it reads the newer claims.
    paused.signal(nix::sys::signal::Signal::SIGCONT);

    for (n, id) in ids.iter().enumerate() {
        let finished = wait_succeeded(&mut client, id, Duration::from_secs(120)).await;
        assert_eq!(scalar_outputs(&finished), vec![format!("n={}", n * 2)]);
        assert_history_gap_free(&mut client, id).await;
    }

    // In log order per partition: a decision whose writer epoch is below a claim already on the log came from
    // the paused owner after it was replaced.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let topic = format!("{}aloft.executions", deployment.topic_prefix);
    let mut epochs: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut late = Vec::new();
    for (partition, envelope) in read_all(&brokers, &topic).await {
        let aloft_eventlog::Payload::Execution(event) = &envelope.payload else {
            continue;
        };
        if let aloft_core::ExecutionEvent::PartitionClaimed { epoch, .. } = event {
            let current = epochs.entry(partition).or_default();
            *current = (*current).max(*epoch);
            continue;
        }
        if !event.is_request() && envelope.writer_epoch < epochs.get(&partition).copied().unwrap_or(0) {
            late.push(format!(
                "{} {} epoch {}",
                envelope.stream,
                event.kind(),
                envelope.writer_epoch
            ));
        }
    }
    assert!(
        !late.is_empty(),
        "the resumed owner wrote no late decision, so this run shows no fencing"
    );
    eprintln!(
        "{} late decisions of the paused owner on the log: {late:?}",
        late.len()
    );
    // None of them took effect: each execution's history (what admin applied) holds only current-epoch
    // decisions, and its single succeeded attempt is the successor's: it re-attached to the attempt's
    // process (which kept running while its owner was paused) or, where the resumed owner killed that
    // process on standing down, retried it.
    for id in &ids {
        let history = assert_history_gap_free(&mut client, id).await;
        let succeeded = history.iter().filter(|e| e.kind == "AttemptSucceeded").count();
        assert_eq!(succeeded, 1, "{}: {late:?}", id.name);
    }
    let successor = deployment.log("propeller-successor");
    assert!(
        successor.contains("re-attached to a task process")
            || successor.contains("task attempt lost, retrying"),
        "the successor took over the paused owner's running attempts:\n{successor}"
    );
}

/// The task processes a propeller started (its children), for killing them with it as a dead machine would.
fn children_of(parent: u32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the command may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// SIGKILL of one propeller among two (and of the task processes it started) while 200 executions of a
/// two-node workflow run: the survivor alone takes the victim's partitions over, all 200 succeed with the right
/// output, every history is gap-free, and no node whose attempt succeeded ran again (one `AttemptSucceeded` per
/// node, and no start after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_executions_survive_the_sigkill_of_one_of_two_propellers() {
    use futures::StreamExt;
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let marker = deployment.scratch.path().join("runs.txt");
    let spec = deployment.scratch.path().join("pair.yaml");
    let step = |name: &str, pause: &str| {
        format!(
            "kind: task\nname: {name}\nversion: \"1\"\ninterface: {{inputs: {{n: integer}}, outputs: {{n: integer}}}}\nrun:\n  \
             process:\n    command: [\"sh\", \"-c\", \"sleep {pause}; echo $((ALOFT_INPUT_N + 1)) > $ALOFT_OUTPUT_DIR/n; \
             echo $ALOFT_EXECUTION $ALOFT_NODE >> {marker}\"]\n",
            marker = marker.display()
        )
    };
    let workflow_spec = "kind: workflow\nname: pair\ninterface: {inputs: {x: integer}, outputs: {result: integer}}\nnodes:\n  \
         - {id: first, task: slow-plus-one, inputs: {n: inputs.x}}\n  - {id: second, task: plus-one, inputs: {n: first.n}}\n\
         outputs: {result: second.n}\n";
    std::fs::write(
        &spec,
        [
            step("slow-plus-one", "1"),
            step("plus-one", "0.2"),
            workflow_spec.to_string(),
        ]
        .join("---\n"),
    )
    .unwrap();
    let _admin = deployment.start_admin();
    let mut victim = deployment.start_propeller("victim");
    let _survivor = deployment.start_propeller("survivor");
    let mut client = deployment.client().await;
    register_file(&mut client, &spec).await;
    deployment
        .wait_for_logs(
            &["propeller-victim", "propeller-survivor"],
            "partition claimed; deciding",
            Duration::from_secs(60),
        )
        .await;
    let ids: Vec<wire::ExecutionIdentifier> = futures::stream::iter(0..200)
        .map(|x| {
            let mut client = client.clone();
            async move {
                let x_text = x.to_string();
                launch(
                    &mut client,
                    workflow("pair"),
                    &format!("pair-{x}"),
                    &[("x", x_text.as_str())],
                )
                .await
                .unwrap()
            }
        })
        .buffered(8)
        .collect()
        .await;
    // Kill once work is under way on both: some nodes succeeded, others are running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&marker)
        .unwrap_or_default()
        .lines()
        .count()
        < 60
    {
        assert!(std::time::Instant::now() < deadline, "nothing ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    victim.signal(nix::sys::signal::Signal::SIGSTOP);
    for child in children_of(victim.pid()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    victim.sigkill();
    // No replacement: the survivor takes the victim's partitions over once the broker drops it (6 s).

    let mut lost = 0;
    for (x, id) in ids.iter().enumerate() {
        let finished = wait_succeeded(&mut client, id, Duration::from_secs(180)).await;
        assert_eq!(
            scalar_outputs(&finished),
            vec![format!("result={}", x + 2)],
            "{}",
            id.name
        );
        let history = assert_history_gap_free(&mut client, id).await;
        lost += history
            .iter()
            .filter(|e| e.kind == "AttemptFailed" && e.summary.contains("attempt lost"))
            .count();
        for node in ["first", "second"] {
            let node_events: Vec<&str> = history
                .iter()
                .filter(|e| e.summary.starts_with(&format!("node {node} ")))
                .map(|e| e.kind.as_str())
                .collect();
            let succeeded = node_events
                .iter()
                .filter(|kind| **kind == "AttemptSucceeded")
                .count();
            assert_eq!(succeeded, 1, "{} {node}: {node_events:?}", id.name);
            assert_eq!(
                node_events.last(),
                Some(&"AttemptSucceeded"),
                "{} {node} ran after it succeeded",
                id.name
            );
        }
    }
    assert!(lost >= 1, "the kill hit no running attempt");
    eprintln!("{lost} attempts lost with the killed propeller and retried");
    let runs = std::fs::read_to_string(&marker).unwrap();
    assert!(runs.lines().count() >= 400, "every node completed at least once");
}
