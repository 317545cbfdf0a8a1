//! The two examples run end to end in `aloft dev` (embedded log + SQLite, one process) and with admin and
//! propeller as separate processes over Kafka and Postgres, with the same results; histories are gap-free;
//! dropping every projection table and replaying the log rebuilds identical rows.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aloft_cli::client::AdminClient;
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_e2e::*;
use aloft_proto::v1 as wire;

async fn run_examples(client: &mut AdminClient) -> Vec<String> {
    register_file(client, &repo_root().join("examples/diamond.yaml")).await;
    let diamond = launch(client, workflow("diamond"), "diamond-1", &[("x", "3")])
        .await
        .expect("launch diamond");
    let finished = wait_finished(client, &diamond, Duration::from_secs(60)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "diamond: {}",
        finished.error
    );
    assert_eq!(scalar_outputs(&finished), vec!["result=24"]);
    assert_history_gap_free(client, &diamond).await;

    register_file(client, &repo_root().join("examples/train.yaml")).await;
    let plan = wire::create_execution_request::Target::LaunchPlan(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "train-default".into(),
        version: String::new(),
    });
    let train = launch(client, plan, "train-1", &[("learning_rate", "0.05")])
        .await
        .expect("launch train");
    let finished = wait_finished(client, &train, Duration::from_secs(60)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "train: {}",
        finished.error
    );
    let outputs = scalar_outputs(&finished);
    let mse: f64 = outputs
        .iter()
        .find_map(|o| o.strip_prefix("mse="))
        .and_then(|v| v.parse().ok())
        .expect("mse output");
    assert!(
        mse < 0.2,
        "the fit should reach the noise floor (1/12), got mse {mse}"
    );
    assert_history_gap_free(client, &train).await;
    let mut all = vec!["result=24".to_string()];
    all.extend(outputs);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_give_the_same_results_embedded_and_on_kafka_and_postgres_and_replay_rebuilds_the_rows() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(FleetConfig::embedded(
        scratch.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ))
    .await
    .unwrap();
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    let embedded_results = run_examples(&mut client).await;
    fleet.stop().await.unwrap();

    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let mut admin = deployment.start_admin();
    let _propeller = deployment.start_propeller("propeller-1");
    let mut client = deployment.client().await;
    let kafka_results = run_examples(&mut client).await;
    assert_eq!(
        embedded_results, kafka_results,
        "the same examples must give the same outputs on both stacks"
    );

    // Audit guarantee: drop every projection and replay the log from offset 0.
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    admin.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = admin.child.wait();
    let before = store.dump_projections().await.unwrap();
    assert!(before.contains("diamond-1") && before.contains("train-1"));
    store.drop_projections().await.unwrap();
    assert!(!store.dump_projections().await.unwrap().contains("diamond-1"));
    let _admin = deployment.start_admin();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = store.dump_projections().await.unwrap();
        if after == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay did not rebuild identical rows:\n--- before\n{before}\n--- after\n{after}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
