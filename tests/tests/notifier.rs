//! Notifications on Kafka + Postgres with admin, propeller and notifier as separate processes, delivered to
//! real protocol peers on loopback: an SMTP server (lettre speaks SMTP to it) and an HTTP server standing in
//! for Slack and webhook receivers.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aloft_cli::client::AdminClient;
use aloft_core::notify::{NotificationRule, WebhookChannel};
use aloft_e2e::*;
use aloft_notifier::channels::{sign, SIGNATURE_HEADER};
use aloft_proto::v1 as wire;
use aloft_testkit::{HttpSink, SmtpSink};
use tokio_util::sync::CancellationToken;

const HOOK_SECRET: &str = "correct horse battery staple";

fn spec(smtp_port: u16, http: &HttpSink) -> String {
    format!(
        r#"kind: task
name: maybe-fail
version: "1"
interface: {{inputs: {{fail: boolean}}}}
run:
  process:
    command: ["sh", "-c", "if [ \"$ALOFT_INPUT_FAIL\" = true ]; then echo 'boom: asked to fail' >&2; exit 3; fi"]
---
kind: workflow
name: job
version: "1"
interface: {{inputs: {{fail: boolean}}}}
nodes:
  - {{id: step, task: maybe-fail, inputs: {{fail: inputs.fail}}}}
---
kind: launch_plan
name: nightly
workflow: job
notifications:
  - phases: [FAILED]
    email:
      to: [team@example.com]
      from: aloft@example.com
      smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none}}
      subject: "{{{{project}}}}/{{{{domain}}}} {{{{name}}}} {{{{phase}}}}"
      body: "Launch plan {{{{launch_plan}}}} ended {{{{phase}}}} after {{{{duration}}}}: {{{{error}}}} ({{{{url}}}})"
  - phases: [SUCCEEDED]
    slack: {{webhook_url: "env:ALOFT_TEST_SLACK_URL"}}
  - phases: [SUCCEEDED, FAILED]
    webhook: {{url: "{hook}", secret: "env:ALOFT_TEST_HOOK_SECRET"}}
"#,
        hook = http.url("/hook")
    )
}

fn nightly() -> wire::create_execution_request::Target {
    wire::create_execution_request::Target::LaunchPlan(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "nightly".into(),
        version: String::new(),
    })
}

async fn run(
    client: &mut AdminClient,
    name: &str,
    fail: bool,
    notifications: Option<&[NotificationRule]>,
    disable: bool,
) -> wire::Execution {
    let id = client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: name.into(),
            target: Some(nightly()),
            text_inputs: [("fail".to_string(), fail.to_string())].into_iter().collect(),
            notifications_json: notifications
                .map(|rules| serde_json::to_string(rules).unwrap())
                .unwrap_or_default(),
            disable_notifications: disable,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap();
    wait_finished(client, &id, Duration::from_secs(60)).await
}

async fn eventually<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn env(http: &HttpSink) -> Vec<(&'static str, String)> {
    vec![
        ("ALOFT_TEST_SLACK_URL", http.url("/slack")),
        ("ALOFT_TEST_HOOK_SECRET", HOOK_SECRET.to_string()),
        ("ALOFT_NOTIFY_RETRY_BASE_MS", "50".to_string()),
        ("ALOFT_CONSOLE_URL", "http://console.test".to_string()),
        (
            "RUST_LOG",
            std::env::var("ALOFT_TEST_NOTIFIER_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ]
}

async fn history(client: &mut AdminClient, name: &str) -> Vec<wire::HistoryEvent> {
    client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(wire::ExecutionIdentifier {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                name: name.into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn wait_for_history(client: &mut AdminClient, name: &str, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let summaries: Vec<String> = history(client, name)
            .await
            .into_iter()
            .map(|e| e.summary)
            .collect();
        if summaries.iter().any(|s| s.contains(needle)) {
            return summaries;
        }
        assert!(
            Instant::now() < deadline,
            "history of {name} never showed {needle:?}: {summaries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_email_the_team_successes_reach_slack_and_every_end_is_a_signed_webhook() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let peers = CancellationToken::new();
    let smtp = SmtpSink::start(peers.clone()).await.unwrap();
    let http = HttpSink::start(peers.clone()).await.unwrap();
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_with_env("aloft-admin", "admin", &env(&http));
    let _propeller = deployment.start_propeller("propeller");
    let _notifier = deployment.start_with_env("aloft-notifier", "notifier", &env(&http));
    let mut client = deployment.client().await;
    let dir = deployment.scratch.path();
    std::fs::write(dir.join("spec.yaml"), spec(smtp.address.port(), &http)).unwrap();
    register_file(&mut client, &dir.join("spec.yaml")).await;

    let failed = run(&mut client, "fails-1", true, None, false).await;
    assert_eq!(failed.phase, wire::ExecutionPhase::Failed as i32);
    let mail = eventually("the failure email", Duration::from_secs(60), || {
        smtp.received()
            .into_iter()
            .find(|m| m.subject().contains("fails-1"))
    })
    .await;
    assert_eq!(mail.to, ["team@example.com"]);
    assert_eq!(mail.from, "aloft@example.com");
    assert_eq!(mail.subject(), "default/development fails-1 FAILED");
    let body = mail.body();
    assert!(body.contains("Launch plan nightly@"), "{body}");
    assert!(body.contains("ended FAILED after"), "{body}");
    assert!(
        body.contains("boom: asked to fail"),
        "the error is in the email: {body}"
    );
    assert!(
        body.contains("http://console.test/projects/default/domains/development/executions/fails-1"),
        "{body}"
    );

    let succeeded = run(&mut client, "works-1", false, None, false).await;
    assert_eq!(succeeded.phase, wire::ExecutionPhase::Succeeded as i32);
    let slack = eventually("the Slack message", Duration::from_secs(60), || {
        http.received("/slack").into_iter().next()
    })
    .await;
    let text = serde_json::from_str::<serde_json::Value>(&slack.body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("*SUCCEEDED*") && text.contains("works-1") && text.contains("nightly@"),
        "{text}"
    );

    // Both ends reached the webhook, each signed with the shared secret over the exact body.
    let hooks = eventually("both webhooks", Duration::from_secs(60), || {
        let hooks = http.received("/hook");
        (hooks.len() >= 2).then_some(hooks)
    })
    .await;
    let mut phases = BTreeMap::new();
    for hook in &hooks {
        let signature = hook.headers.get(&SIGNATURE_HEADER.to_ascii_lowercase()).unwrap();
        assert_eq!(signature, &sign(HOOK_SECRET.as_bytes(), hook.body.as_bytes()));
        assert_ne!(signature, &sign(b"another secret", hook.body.as_bytes()));
        let payload: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
        phases.insert(
            payload["execution"].as_str().unwrap().to_string(),
            payload["phase"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(phases["fails-1"], "FAILED");
    assert_eq!(phases["works-1"], "SUCCEEDED");

    // Every delivery is on aloft.deliveries and shows in the execution's history.
    let summaries = wait_for_history(
        &mut client,
        "fails-1",
        "email notification to team@example.com delivered",
    )
    .await;
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("webhook notification to") && s.contains("delivered")),
        "{summaries:#?}"
    );

    // An execution silenced at launch sends nothing; one with its own rules uses only those.
    run(&mut client, "silent-1", true, None, true).await;
    let own_rules = [NotificationRule {
        phases: vec!["FAILED".into()],
        slack: None,
        email: None,
        webhook: Some(WebhookChannel {
            url: http.url("/own"),
            secret: "env:ALOFT_TEST_HOOK_SECRET".into(),
        }),
    }];
    run(&mut client, "own-1", true, Some(&own_rules), false).await;
    eventually("the execution's own webhook", Duration::from_secs(60), || {
        http.received("/own").into_iter().next()
    })
    .await;
    wait_for_history(&mut client, "own-1", "delivered").await;
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    for name in ["silent-1", "own-1"] {
        let id = aloft_core::ExecutionId {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: name.into(),
        };
        let deliveries = aloft_notifier::store::deliveries_of(store.pool(), &id)
            .await
            .unwrap();
        let expected = usize::from(name == "own-1");
        assert_eq!(deliveries.len(), expected, "{name}: {deliveries:?}");
    }
    assert!(smtp
        .received()
        .iter()
        .all(|m| !m.subject().contains("silent-1") && !m.subject().contains("own-1")));
    assert_eq!(
        http.received("/hook").len(),
        2,
        "the launch plan's webhook saw only fails-1 and works-1"
    );
    peers.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_destination_gets_the_message_once_and_a_400_is_given_up_at_once() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let peers = CancellationToken::new();
    let smtp = SmtpSink::start(peers.clone()).await.unwrap();
    let http = HttpSink::start(peers.clone()).await.unwrap();
    http.answer_next("/flaky", &[503, 503, 503]);
    http.answer_always("/bad", 400);
    http.answer_next("/slow-down", &[429]);
    http.ask_to_retry_after("/slow-down", 1);
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_with_env("aloft-admin", "admin", &env(&http));
    let _propeller = deployment.start_propeller("propeller");
    let _notifier = deployment.start_with_env("aloft-notifier", "notifier", &env(&http));
    let mut client = deployment.client().await;
    let dir = deployment.scratch.path();
    std::fs::write(dir.join("spec.yaml"), spec(smtp.address.port(), &http)).unwrap();
    register_file(&mut client, &dir.join("spec.yaml")).await;

    let hook = |path: &str| NotificationRule {
        phases: vec!["FAILED".into()],
        slack: None,
        email: None,
        webhook: Some(WebhookChannel {
            url: http.url(path),
            secret: "env:ALOFT_TEST_HOOK_SECRET".into(),
        }),
    };
    let rejecting_mailbox = smtp.failure_email_rule("reject-me@example.com", None);
    run(
        &mut client,
        "flaky-1",
        true,
        Some(&[
            hook("/flaky"),
            hook("/bad"),
            hook("/slow-down"),
            rejecting_mailbox,
        ]),
        false,
    )
    .await;

    let summaries = wait_for_history(&mut client, "flaky-1", "(attempt 4)").await;
    let flaky = http.received("/flaky");
    let statuses: Vec<u16> = flaky.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [503, 503, 503, 200],
        "retried until it succeeded, then never again"
    );
    let ids: Vec<&String> = flaky
        .iter()
        .map(|r| r.headers.get("x-aloft-delivery").unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] == pair[1]),
        "one delivery id across retries"
    );
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.contains("/flaky") && s.contains("will retry"))
            .count(),
        3,
        "{summaries:#?}"
    );

    let summaries = wait_for_history(&mut client, "flaky-1", "reject-me@example.com given up").await;
    let bad = summaries.iter().find(|s| s.contains("/bad")).unwrap();
    assert!(
        bad.contains("given up (attempt 1)") && bad.contains("HTTP 400"),
        "{bad}"
    );
    let rejected = summaries.iter().find(|s| s.contains("reject-me")).unwrap();
    assert!(
        rejected.contains("given up (attempt 1)") && rejected.contains("550"),
        "{rejected}"
    );
    // A 429 with Retry-After: 1 is retried no sooner than a second later (the backoff alone is ~50 ms).
    let slowed = eventually("the retry after Retry-After", Duration::from_secs(30), || {
        let requests = http.received("/slow-down");
        (requests.len() >= 2).then_some(requests)
    })
    .await;
    assert_eq!(slowed.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    let waited = slowed[1].received_at - slowed[0].received_at;
    assert!(waited >= 990, "retried after {waited} ms despite Retry-After: 1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(http.received("/bad").len(), 1, "a 400 is not retried");
    assert_eq!(http.received("/flaky").len(), 4);
    peers.cancel();
}

/// Appends an execution that is requested and finishes FAILED at once, straight to the log (no propeller):
/// the notifier cannot tell it from a real one, and the kill loop stays fast.
async fn append_failed_execution(
    log: &std::sync::Arc<dyn aloft_eventlog::EventLog>,
    topics: &aloft_eventlog::Topics,
    name: &str,
    rules: &[NotificationRule],
) {
    let id = aloft_core::ExecutionId {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    };
    let at = chrono::Utc::now().timestamp_millis();
    let (key, envelopes) = aloft_testkit::failed_execution_records(&id, rules, at).unwrap();
    let partition =
        aloft_eventlog::partition_for_key(&key, log.partition_count(&topics.executions).await.unwrap());
    let records = envelopes.into_iter().map(|bytes| (key.clone(), bytes)).collect();
    log.append_batch(&topics.executions, partition, records)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_notifier_never_loses_a_message_and_duplicates_only_in_the_send_window() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    const TRIALS: usize = 50;
    let peers = CancellationToken::new();
    let smtp = SmtpSink::start(peers.clone()).await.unwrap();
    let http = HttpSink::start(peers.clone()).await.unwrap();
    let deployment = Deployment::new(&brokers, &database).await;
    let topics = aloft_eventlog::Topics::with_prefix(&deployment.topic_prefix);
    let log = deployment.open_log(4).await;
    let rules = [
        NotificationRule {
            phases: vec!["FAILED".into()],
            slack: None,
            email: None,
            webhook: Some(WebhookChannel {
                url: http.url("/kill"),
                secret: "env:ALOFT_TEST_HOOK_SECRET".into(),
            }),
        },
        smtp.failure_email_rule("oncall@example.com", Some("{{name}} {{phase}}")),
    ];
    // One trial: a notifier that is up, an execution that fails, a SIGKILL 0-119 ms later (while the notifier
    // reads the event, records its deliveries, sends, or records the sends), then a restarted notifier that
    // must deliver whatever the killed one did not record as delivered, and nothing it did.
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let received = |name: &str| {
        let hooks = http
            .received("/kill")
            .iter()
            .filter(|r| r.body.contains(&format!("\"execution\":\"{name}\"")))
            .count();
        let mails = smtp
            .received()
            .iter()
            .filter(|m| m.subject() == format!("{name} FAILED"))
            .count();
        (hooks, mails)
    };
    let delivered = || async {
        aloft_notifier::store::delivery_counts(store.pool())
            .await
            .unwrap()
            .1
    };
    let (mut sent_unrecorded_total, mut duplicates_total) = (0, 0);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for trial in 0..TRIALS {
        let name = format!("kill-{trial}");
        let killed_log = format!("notifier-{trial}");
        let mut notifier = deployment.start_with_env("aloft-notifier", &killed_log, &env(&http));
        deployment
            .wait_for_logs(
                &[killed_log.as_str()],
                "notifier running",
                Duration::from_secs(30),
            )
            .await;
        append_failed_execution(&log, &topics, &name, &rules).await;
        tokio::time::sleep(Duration::from_millis((trial as u64 * 7) % 120)).await;
        notifier.sigkill();
        // A message whose last bytes were in the socket buffer still reaches the server after the kill.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (hooks, mails) = received(&name);
        let sent_by_killed = hooks + mails;
        let recorded_by_killed = (delivered().await - 2 * trial as u64) as usize;
        let sent_unrecorded = sent_by_killed - recorded_by_killed.min(sent_by_killed);
        *outcomes
            .entry(match (sent_by_killed, recorded_by_killed) {
                (0, _) => "killed before sending",
                (_, 2) => "killed after recording both",
                _ => "killed between a send and its record",
            })
            .or_default() += 1;

        let mut restarted =
            deployment.start_with_env("aloft-notifier", &format!("restarted-{trial}"), &env(&http));
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered().await != 2 * (trial as u64 + 1) {
            assert!(
                Instant::now() < deadline,
                "trial {trial}: the restarted notifier did not deliver"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        restarted.sigkill();
        let (hooks, mails) = received(&name);
        assert!(
            hooks >= 1 && mails >= 1,
            "trial {trial}: lost a message (webhook {hooks}, email {mails})"
        );
        let duplicates = hooks + mails - 2;
        assert!(
            duplicates <= sent_unrecorded,
            "trial {trial}: {duplicates} duplicate(s), but only {sent_unrecorded} message(s) were sent and not recorded before the kill"
        );
        sent_unrecorded_total += sent_unrecorded;
        duplicates_total += duplicates;
    }
    let counts = aloft_notifier::store::delivery_counts(store.pool())
        .await
        .unwrap();
    assert_eq!(counts, (0, 2 * TRIALS as u64, 0), "(pending, delivered, failed)");
    eprintln!(
        "notifier SIGKILL trials: {TRIALS} ({outcomes:?}); duplicates: {duplicates_total}, all of messages sent \
         but not recorded before the kill ({sent_unrecorded_total})"
    );
    peers.cancel();
}

/// Many executions failing together, with sends finishing while the notifier looks for due deliveries:
/// each recipient gets its message exactly once (a stale read of a just-recorded delivery once sent some
/// twice on Postgres).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_failing_together_are_each_notified_exactly_once() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    const EXECUTIONS: usize = 300;
    let peers = CancellationToken::new();
    let smtp = SmtpSink::start(peers.clone()).await.unwrap();
    let http = HttpSink::start(peers.clone()).await.unwrap();
    let deployment = Deployment::new(&brokers, &database).await;
    let topics = aloft_eventlog::Topics::with_prefix(&deployment.topic_prefix);
    let log = deployment.open_log(4).await;
    let mut notifier_env = env(&http);
    notifier_env.push(("ALOFT_NOTIFY_SMTP_PER_SECOND", "1000".to_string()));
    let _notifier = deployment.start_with_env("aloft-notifier", "notifier", &notifier_env);
    let rules = [smtp.failure_email_rule("team@example.com", Some("{{name}}"))];
    for index in 0..EXECUTIONS {
        append_failed_execution(&log, &topics, &format!("together-{index}"), &rules).await;
    }
    eventually("every email", Duration::from_secs(120), || {
        (smtp.received().len() >= EXECUTIONS).then_some(())
    })
    .await;
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while aloft_notifier::store::delivery_counts(store.pool())
        .await
        .unwrap()
        != (0, EXECUTIONS as u64, 0)
    {
        assert!(Instant::now() < deadline, "not every delivery was recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for mail in smtp.received() {
        *counts.entry(mail.subject()).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert_eq!(counts.len(), EXECUTIONS);
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");
    peers.cancel();
}
