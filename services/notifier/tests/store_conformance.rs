//! One conformance suite for the notifier's repository (rules, followed executions, deliveries, attempts),
//! run against SQLite (always) and Postgres (when `ALOFT_TEST_DATABASE_URL` is set; required when
//! `ALOFT_REQUIRE_REAL_BACKENDS=1`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use aloft_core::events::{ExecutionEvent, RegistryEvent};
use aloft_core::notify::{DeliveryEvent, DeliveryOutcome, NotificationRule, WebhookChannel};
use aloft_core::spec::LaunchPlanSpec;
use aloft_core::{CompiledWorkflow, ExecutionId, ExecutionPhase, Identifier};
use aloft_notifier::store::{self as notifier, AttemptResult, MIGRATIONS};
use aloft_store::deliveries;
use aloft_store::projection::{Admission, LoggedEvent};
use aloft_store::Store;

type Backend = (Store, Option<tempfile::TempDir>);

async fn sqlite_backend() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("notifier.db").display());
    Some((
        Store::connect_with(&url, &[&MIGRATIONS]).await.expect("sqlite"),
        Some(dir),
    ))
}

async fn postgres_backend() -> Option<Backend> {
    let Ok(base) = std::env::var("ALOFT_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_DATABASE_URL is required"
        );
        eprintln!("skipping: ALOFT_TEST_DATABASE_URL is not set");
        return None;
    };
    let url = aloft_store::create_scratch_postgres_database(&base)
        .await
        .expect("scratch database");
    Some((
        Store::connect_with(&url, &[&MIGRATIONS]).await.expect("postgres"),
        None,
    ))
}

fn hook(path: &str, phases: &[&str]) -> NotificationRule {
    NotificationRule {
        phases: phases.iter().map(|p| p.to_string()).collect(),
        slack: None,
        email: None,
        webhook: Some(WebhookChannel {
            url: format!("https://hooks.example.com{path}"),
            secret: "env:SECRET".into(),
        }),
    }
}

fn plan_id() -> Identifier {
    Identifier {
        project: "p".into(),
        domain: "prod".into(),
        name: "nightly".into(),
        version: "v1".into(),
    }
}

fn execution(name: &str) -> ExecutionId {
    ExecutionId {
        project: "p".into(),
        domain: "prod".into(),
        name: name.into(),
    }
}

fn requested(name: &str, override_rules: Option<Vec<NotificationRule>>) -> ExecutionEvent {
    let workflow: CompiledWorkflow = CompiledWorkflow::for_single_task(
        plan_id(),
        serde_json::from_str(r#"{"name": "noop", "run": "noop"}"#).unwrap(),
    );
    ExecutionEvent::ExecutionRequested {
        execution: execution(name),
        request_id: name.into(),
        workflow: Box::new(workflow),
        inputs: Default::default(),
        launch_plan: Some(plan_id()),
        requested_at: 1_000,
        scheduled_at: None,
        overwrite_cache: false,
        notifications: override_rules,
        recovery: None,
        parent: None,
        labels: Default::default(),
    }
}

fn finished(name: &str, phase: ExecutionPhase) -> ExecutionEvent {
    ExecutionEvent::ExecutionFinished {
        execution: execution(name),
        phase,
        outputs: Default::default(),
        error: Some("node train failed".into()),
        at: 4_500,
    }
}

/// Applies `event` as it would be read from the log (requests seq 1 on their own stream, decisions seq 1
/// on the execution's) and returns how many deliveries it created.
async fn apply(store: &Store, epoch: &mut u64, offset: u64, event: &ExecutionEvent) -> usize {
    let name = event.execution().map(|id| id.name.clone()).unwrap_or_default();
    let stream = if event.is_request() {
        format!("request/p/prod/{name}")
    } else {
        format!("execution/p/prod/{name}")
    };
    let logged = LoggedEvent {
        partition: 0,
        offset,
        index: 0,
        stream: &stream,
        seq: 1,
        writer_epoch: 0,
        occurred_at: event.occurred_at(),
        traceparent: "",
        event,
        principal: None,
    };
    let mut connection = store.pool().acquire().await.unwrap();
    let mut admission = Admission::new("notifier_executions");
    let created =
        notifier::apply_execution_event(&mut connection, &mut admission, epoch, &logged, "http://console")
            .await
            .unwrap();
    admission.flush(&mut connection).await.unwrap();
    created
}

async fn register_rules(store: &Store) {
    let mut connection = store.pool().acquire().await.unwrap();
    let spec: LaunchPlanSpec = serde_json::from_value(serde_json::json!({
        "name": "nightly", "workflow": "job@1",
        "notifications": [hook("/plan", &["FAILED"])]
    }))
    .unwrap();
    let plan = RegistryEvent::LaunchPlanRegistered {
        id: plan_id(),
        spec,
        workflow: plan_id(),
        default_inputs: Default::default(),
        fixed_inputs: Default::default(),
        digest: "d".into(),
        at: 1,
    };
    notifier::apply_registry_event(&mut connection, &plan)
        .await
        .unwrap();
    for (domain, path, at) in [
        ("prod", "/prod-defaults", 2),
        ("*", "/all-domains", 3),
        ("prod", "/prod-newer", 4),
    ] {
        let defaults = RegistryEvent::NotificationDefaultsSet {
            project: "p".into(),
            domain: domain.into(),
            rules: vec![hook(path, &["FAILED", "SUCCEEDED"])],
            at,
        };
        notifier::apply_registry_event(&mut connection, &defaults)
            .await
            .unwrap();
    }
}

macro_rules! notifier_suite {
    ($backend:path) => {
        #[tokio::test]
        async fn a_finished_execution_creates_one_delivery_per_matching_rule_and_recipient_once() {
            let Some((store, _dir)) = $backend().await else {
                return;
            };
            register_rules(&store).await;
            let mut epoch = 0;
            assert_eq!(
                apply(&store, &mut epoch, 0, &requested("run-1", None)).await,
                0
            );
            // The plan's FAILED rule, the newest prod defaults and the all-domain defaults.
            assert_eq!(
                apply(
                    &store,
                    &mut epoch,
                    1,
                    &finished("run-1", ExecutionPhase::Failed)
                )
                .await,
                3
            );
            // The same event read again (a crash before the offset was stored) creates nothing new.
            assert_eq!(
                apply(
                    &store,
                    &mut epoch,
                    1,
                    &finished("run-1", ExecutionPhase::Failed)
                )
                .await,
                0
            );
            let due = notifier::due_deliveries(store.pool(), 10_000, 100)
                .await
                .unwrap();
            let mut urls: Vec<String> = due.iter().map(|d| d.recipient.clone()).collect();
            urls.sort();
            assert_eq!(
                urls,
                [
                    "webhook:https://hooks.example.com/all-domains",
                    "webhook:https://hooks.example.com/plan",
                    "webhook:https://hooks.example.com/prod-newer",
                ]
            );
            let context = &due[0].context;
            assert_eq!(
                (context.duration_ms, context.phase.as_str()),
                (3_500, "FAILED")
            );
            assert_eq!(context.launch_plan, "nightly@v1");
            assert_eq!(
                context.url,
                "http://console/projects/p/domains/prod/executions/run-1"
            );
            // Not due before the execution ended.
            assert!(notifier::due_deliveries(store.pool(), 4_000, 100)
                .await
                .unwrap()
                .is_empty());
        }

        #[tokio::test]
        async fn an_override_replaces_every_rule_and_an_empty_one_silences() {
            let Some((store, _dir)) = $backend().await else {
                return;
            };
            register_rules(&store).await;
            let mut epoch = 0;
            apply(
                &store,
                &mut epoch,
                0,
                &requested("own", Some(vec![hook("/own", &["SUCCEEDED"])])),
            )
            .await;
            apply(
                &store,
                &mut epoch,
                1,
                &requested("silent", Some(Vec::new())),
            )
            .await;
            assert_eq!(
                apply(
                    &store,
                    &mut epoch,
                    2,
                    &finished("own", ExecutionPhase::Succeeded)
                )
                .await,
                1
            );
            assert_eq!(
                apply(
                    &store,
                    &mut epoch,
                    3,
                    &finished("silent", ExecutionPhase::Failed)
                )
                .await,
                0
            );
            let due = notifier::due_deliveries(store.pool(), 10_000, 100)
                .await
                .unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].recipient, "webhook:https://hooks.example.com/own");
        }

        #[tokio::test]
        async fn attempts_move_the_state_and_wait_in_the_outbox_until_published() {
            let Some((store, _dir)) = $backend().await else {
                return;
            };
            register_rules(&store).await;
            let mut epoch = 0;
            apply(
                &store,
                &mut epoch,
                0,
                &requested("run-1", Some(vec![hook("/x", &["FAILED"])])),
            )
            .await;
            apply(
                &store,
                &mut epoch,
                1,
                &finished("run-1", ExecutionPhase::Failed),
            )
            .await;
            let delivery = notifier::due_deliveries(store.pool(), 10_000, 1)
                .await
                .unwrap()
                .remove(0);
            let event = |attempt, outcome| DeliveryEvent::DeliveryAttempted {
                delivery_id: delivery.delivery_id.clone(),
                execution: delivery.execution.clone(),
                channel: "webhook".into(),
                recipient: delivery.recipient.clone(),
                attempt,
                outcome,
                at: 5_000,
            };
            let retry = AttemptResult::Retry {
                at: 5_000,
                retry_at: 7_000,
                reason: "HTTP 503".into(),
            };
            let retry_event = event(
                1,
                DeliveryOutcome::WillRetry {
                    reason: "HTTP 503".into(),
                    retry_at: 7_000,
                },
            );
            notifier::record_attempt(store.pool(), &delivery.delivery_id, 1, &retry, &retry_event)
                .await
                .unwrap();
            assert!(
                notifier::due_deliveries(store.pool(), 6_000, 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "backing off"
            );
            let again = notifier::due_deliveries(store.pool(), 7_000, 10)
                .await
                .unwrap();
            assert_eq!(again[0].attempts, 1);
            let delivered = AttemptResult::Delivered { at: 7_100 };
            notifier::record_attempt(
                store.pool(),
                &delivery.delivery_id,
                2,
                &delivered,
                &event(2, DeliveryOutcome::Delivered),
            )
            .await
            .unwrap();
            assert!(
                notifier::due_deliveries(store.pool(), 100_000, 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "never re-sent"
            );
            assert_eq!(
                notifier::delivery_counts(store.pool()).await.unwrap(),
                (0, 1, 0)
            );
            let outbox = notifier::unpublished_attempts(store.pool(), 10)
                .await
                .unwrap();
            assert_eq!(
                outbox
                    .iter()
                    .map(|(_, attempt, _)| *attempt)
                    .collect::<Vec<_>>(),
                [1, 2]
            );
            assert_eq!(outbox[0].2, retry_event);
            notifier::mark_published(store.pool(), &delivery.delivery_id, 1)
                .await
                .unwrap();
            assert_eq!(
                notifier::unpublished_attempts(store.pool(), 10)
                    .await
                    .unwrap()
                    .len(),
                1
            );

            // Admin's projection of the topic: a re-published attempt changes nothing.
            let mut connection = store.pool().acquire().await.unwrap();
            deliveries::apply_delivery_event(&mut connection, &retry_event)
                .await
                .unwrap();
            deliveries::apply_delivery_event(&mut connection, &retry_event)
                .await
                .unwrap();
            drop(connection);
            let rows = deliveries::delivery_events_of(store.pool(), &execution("run-1"))
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            assert!(
                rows[0]
                    .summary
                    .contains("failed (attempt 1), will retry: HTTP 503"),
                "{}",
                rows[0].summary
            );
        }
    };
}

mod sqlite {
    use super::*;
    notifier_suite!(sqlite_backend);
}

mod postgres {
    use super::*;
    notifier_suite!(postgres_backend);
}
