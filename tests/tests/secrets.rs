//! Task secrets on Kafka and Postgres: a secret reaches the task that names it (as an environment variable
//! and as a file) and is found nowhere else — not in any topic's records, any table, any service's log, any
//! API answer, nor in the environment of a task that did not ask for it. A missing secret fails the attempt
//! as a system error naming the secret.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

const TOKEN: &str = "tok-5f1c9e2b7a4d40c8b1e3";
const KEY: &str = "key-93ab0d6e12f84f7aa2c5";

const SPECS: &str = r#"kind: task
name: uses-secrets
version: "1"
interface: {outputs: {token_length: integer, key_length: integer}}
secrets:
  - {name: hf-token, env: HF_TOKEN}
  - {name: gcs-key, file: /var/run/secrets/key.json}
run:
  process:
    command: ["sh", "-c", "printf %s \"$HF_TOKEN\" | wc -c > \"$ALOFT_OUTPUT_DIR/token_length\" && wc -c < \"$ALOFT_SECRETS_DIR/key.json\" > \"$ALOFT_OUTPUT_DIR/key_length\" && [ \"$(printf %s \"$HF_TOKEN\" | sha256sum | cut -c1-64)\" = \"$TOKEN_SHA\" ] && [ \"$(sha256sum < $ALOFT_SECRETS_DIR/key.json | cut -c1-64)\" = \"$KEY_SHA\" ] && echo secrets checked"]
---
kind: task
name: nosy
version: "1"
run:
  process:
    command: ["sh", "-c", "env; ls -la . || true"]
---
kind: task
name: wants-absent
version: "1"
secrets:
  - {name: absent, env: ABSENT}
run:
  process:
    command: ["true"]
"#;

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every byte of every topic of the deployment, decoded as text.
async fn whole_log_text(deployment: &Deployment) -> String {
    let log = deployment.open_log(4).await;
    let topics = aloft_eventlog::Topics::with_prefix(&deployment.topic_prefix);
    let mut text = String::new();
    for topic in [
        &topics.registry,
        &topics.executions,
        &topics.schedules,
        &topics.deliveries,
    ] {
        for record in read_topic(log.as_ref(), topic).await {
            text.push_str(&String::from_utf8_lossy(&record.payload));
        }
    }
    text
}

/// Every row of every table of the deployment's database, as `pg_dump` writes them.
fn whole_database_text(database_url: &str) -> String {
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", database_url])
        .output()
        .expect("run pg_dump");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    String::from_utf8_lossy(&dump.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_its_task_and_nothing_else() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let secrets_dir = deployment.scratch.path().join("secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    std::fs::write(secrets_dir.join("gcs-key"), format!("{KEY}\n")).unwrap();
    let _admin = deployment.start_admin();
    let _propeller = deployment.start_with_env(
        "aloft-propeller",
        "propeller",
        &[
            ("ALOFT_MEMBER_ID", "p1".to_string()),
            ("ALOFT_SECRETS_DIR", secrets_dir.display().to_string()),
            ("ALOFT_SECRET_HF_TOKEN", TOKEN.to_string()),
            // What the task compares against: digests, so no value is anywhere but in the secret source.
            ("TOKEN_SHA", sha256_hex(TOKEN)),
            ("KEY_SHA", sha256_hex(KEY)),
        ],
    );
    let mut client = deployment.client().await;
    register_text(&mut client, deployment.scratch.path(), "secrets.yaml", SPECS).await;

    let used = launch(&mut client, task("uses-secrets", "1"), "uses", &[])
        .await
        .unwrap();
    let used = wait_succeeded(&mut client, &used, Duration::from_secs(60)).await;
    assert_eq!(
        scalar_outputs(&used),
        [
            format!("key_length={}", KEY.len()),
            format!("token_length={}", TOKEN.len())
        ]
    );
    let nosy = launch(&mut client, task("nosy", "1"), "nosy", &[]).await.unwrap();
    let nosy = wait_succeeded(&mut client, &nosy, Duration::from_secs(60)).await;
    let absent = launch(&mut client, task("wants-absent", "1"), "absent", &[])
        .await
        .unwrap();
    let absent = wait_finished(&mut client, &absent, Duration::from_secs(60)).await;
    assert_eq!(absent.phase, wire::ExecutionPhase::Failed as i32);
    let attempt = absent.attempts.first().expect("an attempt");
    assert_eq!(attempt.error_kind, "SYSTEM", "{attempt:?}");
    assert!(
        attempt.error.contains("secret \"absent\"") && attempt.error.contains("ALOFT_SECRET_ABSENT"),
        "{}",
        attempt.error
    );

    // Everything the platform answers, stores, logs or appends, and what the nosy task saw.
    let mut seen = String::new();
    for execution in [&used, &nosy, &absent] {
        let id = execution.id.clone().unwrap();
        seen.push_str(&format!("{:?}", get(&mut client, &id).await));
        let history = client
            .get_execution_history(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.push_str(&format!("{history:?}"));
        let data = client
            .get_execution_data(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.push_str(&format!("{data:?}"));
        for node in &execution.nodes {
            let mut logs = client
                .get_task_logs(wire::GetTaskLogsRequest {
                    id: Some(id.clone()),
                    node_id: node.node_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(chunk) = logs.message().await.unwrap() {
                seen.push_str(&String::from_utf8_lossy(&chunk.data));
            }
        }
    }
    assert!(seen.contains("secrets checked"), "the task's own log is readable");
    assert!(
        seen.contains("KEY_SHA="),
        "the nosy task's environment is in its log"
    );
    seen.push_str(&whole_log_text(&deployment).await);
    seen.push_str(&whole_database_text(&deployment.database_url));
    for entry in std::fs::read_dir(deployment.scratch.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            seen.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    assert!(!seen.contains(TOKEN), "the env secret's value leaked");
    assert!(!seen.contains(KEY), "the file secret's value leaked");
    assert!(
        !seen.contains("ALOFT_SECRET_HF_TOKEN="),
        "the propeller's secret variables are not the task's"
    );
}
