//! One conformance suite for the read-model store, run against SQLite (always) and Postgres (when
//! `ALOFT_TEST_DATABASE_URL` is set; required when `ALOFT_REQUIRE_REAL_BACKENDS=1`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use aloft_core::compiler::CompiledWorkflow;
use aloft_core::events::{ErrorKind, ExecutionEvent, RegistryEvent};
use aloft_core::spec::{Interface, ProjectSpec, RetryPolicy, TaskKind, TaskSpec};
use aloft_core::state::{AppliedEvent, ExecutionPhase};
use aloft_core::{ExecutionId, Identifier, Value};
use aloft_store::projection::{apply_registry_event, ExecutionReadModels, LoggedEvent};
use aloft_store::Store;

type Backend = (Store, String, Option<tempfile::TempDir>);

async fn sqlite_backend() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.expect("sqlite");
    Some((store, url, Some(dir)))
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
    Some((Store::connect(&url).await.expect("postgres"), url, None))
}

fn task(name: &str, version: &str, command: &str) -> (Identifier, TaskSpec) {
    let id = Identifier {
        project: "p".into(),
        domain: "dev".into(),
        name: name.into(),
        version: version.into(),
    };
    let spec = TaskSpec {
        name: name.into(),
        version: Some(version.into()),
        interface: Interface {
            inputs: BTreeMap::new(),
            outputs: [("n".to_string(), "integer".parse().unwrap())].into(),
            ..Default::default()
        },
        run: TaskKind::Process {
            command: vec![command.into()],
            env: BTreeMap::new(),
            blobs_by_uri: false,
        },
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    };
    (id, spec)
}

fn execution() -> ExecutionId {
    ExecutionId {
        project: "p".into(),
        domain: "dev".into(),
        name: "run-1".into(),
    }
}

/// `(stream, seq, writer_epoch, event)` for a one-node execution that fails once and then succeeds.
fn execution_events() -> Vec<(String, u64, u64, ExecutionEvent)> {
    let (task_id, task_spec) = task("work", "v1", "true");
    let workflow = CompiledWorkflow::for_single_task(task_id, task_spec);
    let id = execution();
    let stream = id.stream();
    let decision = |seq: u64, event: ExecutionEvent| (stream.clone(), seq, 1, event);
    let outputs: BTreeMap<String, Value> = [("n".to_string(), Value::Integer(7))].into();
    vec![
        (
            "partition/0".into(),
            1,
            1,
            ExecutionEvent::PartitionClaimed {
                partition: 0,
                epoch: 1,
                owner: "a".into(),
                at: 1,
            },
        ),
        (
            "request/p/dev/run-1/r1".into(),
            1,
            0,
            ExecutionEvent::ExecutionRequested {
                overwrite_cache: false,
                notifications: None,
                recovery: None,
                parent: None,
                execution: id.clone(),
                request_id: "r1".into(),
                workflow: Box::new(workflow),
                inputs: BTreeMap::new(),
                launch_plan: None,
                requested_at: 10,
                scheduled_at: None,
                labels: Default::default(),
            },
        ),
        decision(
            1,
            ExecutionEvent::ExecutionStarted {
                execution: id.clone(),
                at: 11,
            },
        ),
        decision(
            2,
            ExecutionEvent::AttemptStarted {
                execution: id.clone(),
                node: 0,
                attempt: 1,
                interruptible: true,
                at: 12,
            },
        ),
        decision(
            3,
            ExecutionEvent::AttemptFailed {
                execution: id.clone(),
                node: 0,
                attempt: 1,
                kind: ErrorKind::System,
                message: "lost".into(),
                at: 13,
            },
        ),
        // A duplicate of seq 3 (a redelivery) and a decision from a fenced-out owner (epoch 0).
        decision(
            3,
            ExecutionEvent::ExecutionStarted {
                execution: id.clone(),
                at: 99,
            },
        ),
        (
            "execution/p/dev/run-1".into(),
            4,
            0,
            ExecutionEvent::ExecutionFinished {
                execution: id.clone(),
                phase: ExecutionPhase::Aborted,
                outputs: BTreeMap::new(),
                error: None,
                at: 99,
            },
        ),
        decision(
            4,
            ExecutionEvent::AttemptStarted {
                execution: id.clone(),
                node: 0,
                attempt: 2,
                interruptible: false,
                at: 14,
            },
        ),
        decision(
            5,
            ExecutionEvent::AttemptSucceeded {
                cache: None,
                execution: id.clone(),
                node: 0,
                attempt: 2,
                outputs: outputs.clone(),
                at: 15,
            },
        ),
        decision(
            6,
            ExecutionEvent::ExecutionFinished {
                execution: id.clone(),
                phase: ExecutionPhase::Succeeded,
                outputs,
                error: None,
                at: 16,
            },
        ),
    ]
}

/// The `offset`-th event of `execution_events()` as read from partition 0.
fn logged_at(
    offset: usize,
    (stream, seq, writer_epoch, event): &(String, u64, u64, ExecutionEvent),
) -> LoggedEvent<'_> {
    LoggedEvent {
        partition: 0,
        offset: offset as u64,
        index: 0,
        stream,
        seq: *seq,
        writer_epoch: *writer_epoch,
        occurred_at: event.occurred_at(),
        traceparent: "",
        event,
        principal: None,
    }
}

/// Applies `events[range]` in one transaction of `read_models`, as the projector loop does; the verdicts.
async fn project_batch(
    store: &Store,
    read_models: &mut ExecutionReadModels,
    epoch: &mut u64,
    events: &[(String, u64, u64, ExecutionEvent)],
    range: std::ops::Range<usize>,
) -> aloft_store::Result<Vec<AppliedEvent>> {
    let mut tx = store.pool().begin().await?;
    let mut verdicts = Vec::new();
    for offset in range {
        verdicts.push(
            read_models
                .apply(&mut tx, epoch, &logged_at(offset, &events[offset]))
                .await?,
        );
    }
    if let Err(failure) = read_models.flush(&mut tx).await {
        tx.rollback().await?;
        read_models.rolled_back();
        return Err(failure);
    }
    tx.commit().await?;
    read_models.committed();
    Ok(verdicts)
}

async fn project_all(store: &Store) -> Vec<AppliedEvent> {
    let mut tx = store.pool().begin().await.unwrap();
    let project = ProjectSpec {
        name: "p".into(),
        description: "d".into(),
        domains: vec!["dev".into()],
    };
    apply_registry_event(&mut tx, 0, &RegistryEvent::ProjectRegistered { project, at: 1 })
        .await
        .unwrap();
    let mut epoch = 0;
    let mut verdicts = Vec::new();
    let mut read_models = ExecutionReadModels::default();
    for (offset, event) in execution_events().iter().enumerate() {
        verdicts.push(
            read_models
                .apply(&mut tx, &mut epoch, &logged_at(offset, event))
                .await
                .unwrap(),
        );
    }
    read_models.flush(&mut tx).await.unwrap();
    aloft_store::projection::save_offset(
        &mut tx,
        aloft_store::projection::OffsetsTable::READ_MODELS,
        "aloft.executions",
        0,
        10,
        epoch,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    verdicts
}

macro_rules! store_suite {
    ($backend:path) => {
        use super::*;

        #[tokio::test]
        async fn registrations_are_first_writer_wins_and_latest_is_the_last_registered() {
            let Some((store, _url, _dir)) = $backend().await else {
                return;
            };
            let mut tx = store.pool().begin().await.unwrap();
            for (offset, (id, spec)) in [
                task("t", "v1", "one"),
                task("t", "v2", "two"),
                task("t", "v1", "changed"),
            ]
            .into_iter()
            .enumerate()
            {
                let event = RegistryEvent::TaskRegistered {
                    id,
                    spec,
                    digest: format!("d{offset}"),
                    at: offset as i64,
                };
                apply_registry_event(&mut tx, offset as u64, &event)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            let v1 = store
                .get_task("p", "dev", "t", Some("v1"))
                .await
                .unwrap()
                .expect("v1 stored");
            assert_eq!(
                v1.digest, "d0",
                "a later registration of the same version must not overwrite"
            );
            let latest = store
                .get_task("p", "dev", "t", None)
                .await
                .unwrap()
                .expect("latest");
            assert_eq!(latest.id.version, "v2");
            assert_eq!(store.list_tasks("p", "dev", None).await.unwrap().len(), 1);
            assert_eq!(
                store.list_tasks("p", "dev", Some("t")).await.unwrap().len(),
                2
            );
            assert!(store
                .get_task("p", "dev", "missing", None)
                .await
                .unwrap()
                .is_none());
        }

        #[tokio::test]
        async fn remembered_seqs_carry_over_batches_and_a_seq_another_projector_moved_fails_the_batch() {
            let Some((store, _url, _dir)) = $backend().await else {
                return;
            };
            let events = execution_events();
            let (mut first, mut first_epoch) = (ExecutionReadModels::default(), 0);
            let claim_request_start = project_batch(&store, &mut first, &mut first_epoch, &events, 0..3)
                .await
                .unwrap();
            assert!(claim_request_start
                .iter()
                .all(|v| *v == AppliedEvent::Accepted));
            let row = store.get_execution(&execution()).await.unwrap().unwrap();
            assert_eq!((row.phase.as_str(), row.last_seq), ("RUNNING", 1));
            // A second projector of the same tables applies the next decision (seq 2).
            let (mut second, mut second_epoch) = (ExecutionReadModels::default(), 1);
            let verdicts = project_batch(&store, &mut second, &mut second_epoch, &events, 3..4)
                .await
                .unwrap();
            assert_eq!(verdicts, [AppliedEvent::Accepted]);
            // The first still remembers seq 1: its batch with seq 2 fails rather than applying it twice.
            let conflict = project_batch(&store, &mut first, &mut first_epoch, &events, 3..4)
                .await
                .unwrap_err();
            assert!(
                conflict
                    .to_string()
                    .contains("executions.last_seq of execution p/dev/run-1 is no longer 1"),
                "{conflict}"
            );
            // Having forgotten, it reads seq 2 back: a duplicate; the rest of the run applies.
            let verdicts = project_batch(
                &store,
                &mut first,
                &mut first_epoch,
                &events,
                3..events.len(),
            )
            .await
            .unwrap();
            assert_eq!(verdicts[0], AppliedEvent::Duplicate);
            let row = store.get_execution(&execution()).await.unwrap().unwrap();
            assert_eq!((row.phase.as_str(), row.last_seq), ("SUCCEEDED", 6));
            let attempts = store.task_attempts(&execution()).await.unwrap();
            assert_eq!(
                attempts.len(),
                2,
                "attempt 1 was recorded once: {attempts:?}"
            );
            let history = store.execution_history(&execution()).await.unwrap();
            let started = history
                .iter()
                .filter(|e| e.kind == "AttemptStarted")
                .count();
            assert_eq!(started, 2, "each attempt's start is in the history once");
        }

        #[tokio::test]
        async fn execution_events_project_with_fencing_and_dedupe() {
            let Some((store, _url, _dir)) = $backend().await else {
                return;
            };
            let verdicts = project_all(&store).await;
            assert_eq!(verdicts[5], AppliedEvent::Duplicate);
            assert_eq!(verdicts[6], AppliedEvent::Fenced);
            let row = store
                .get_execution(&execution())
                .await
                .unwrap()
                .expect("execution row");
            assert_eq!(row.phase, "SUCCEEDED");
            assert_eq!(row.outputs.get("n"), Some(&Value::Integer(7)));
            assert_eq!(row.last_seq, 6);
            let nodes = store.node_executions(&execution()).await.unwrap();
            assert_eq!(nodes.len(), 1);
            assert_eq!(
                (nodes[0].phase.as_str(), nodes[0].attempts),
                ("SUCCEEDED", 2)
            );
            let attempts = store.task_attempts(&execution()).await.unwrap();
            assert_eq!(
                attempts
                    .iter()
                    .map(|a| a.phase.as_str())
                    .collect::<Vec<_>>(),
                vec!["FAILED", "SUCCEEDED"]
            );
            assert_eq!(attempts[0].error_kind, "SYSTEM");
            assert_eq!(
                attempts.iter().map(|a| a.interruptible).collect::<Vec<_>>(),
                [true, false]
            );
            let history = store.execution_history(&execution()).await.unwrap();
            let seqs: Vec<u64> = history
                .iter()
                .filter(|e| e.stream.starts_with("execution/"))
                .map(|e| e.seq)
                .collect();
            assert_eq!(
                seqs,
                vec![1, 2, 3, 4, 5, 6],
                "history is gap-free and holds no fenced or duplicate event"
            );
            let request = store.execution_request(&execution()).await.unwrap();
            assert_eq!(
                request.as_ref(),
                history.iter().find(|e| e.kind == "ExecutionRequested"),
                "the request is read on its own"
            );
            let mut unknown = execution();
            unknown.name = "no-such-execution".into();
            assert!(store.execution_request(&unknown).await.unwrap().is_none());
        }

        #[tokio::test]
        async fn dropping_and_replaying_rebuilds_identical_rows() {
            let Some((store, _url, _dir)) = $backend().await else {
                return;
            };
            project_all(&store).await;
            let before = store.dump_projections().await.unwrap();
            store.drop_projections().await.unwrap();
            assert!(store.get_execution(&execution()).await.unwrap().is_none());
            project_all(&store).await;
            assert_eq!(store.dump_projections().await.unwrap(), before);
        }

        #[tokio::test]
        async fn a_snapshot_is_replaced_by_newer_ones_only() {
            let Some((store, _url, _dir)) = $backend().await else {
                return;
            };
            let snapshot = |offset: u64, state: &str| aloft_store::snapshots::Snapshot {
                next_offset: offset,
                epoch: 2,
                state_json: state.to_string(),
                taken_at: 1,
            };
            assert_eq!(store.load_snapshot("t", 3).await.unwrap(), None);
            store
                .save_snapshot("t", 3, &snapshot(10, "ten"))
                .await
                .unwrap();
            store
                .save_snapshot("t", 3, &snapshot(20, "twenty"))
                .await
                .unwrap();
            // A late writer (an owner that has since lost the partition) does not roll it back.
            store
                .save_snapshot("t", 3, &snapshot(15, "fifteen"))
                .await
                .unwrap();
            assert_eq!(
                store.load_snapshot("t", 3).await.unwrap(),
                Some(snapshot(20, "twenty"))
            );
            assert_eq!(
                store.load_snapshot("t", 4).await.unwrap(),
                None,
                "per partition"
            );
        }

        #[tokio::test]
        async fn tenant_quotas_keep_the_latest_set_and_running_attempts_count_per_tenant() {
            let Some((store, _url, _dir)) = $backend().await else {
                return;
            };
            project_all(&store).await;
            let mut tx = store.pool().begin().await.unwrap();
            for (offset, (weight, max_running, at)) in [(3, Some(7), 20), (5, None, 10), (2, None, 30)]
                .into_iter()
                .enumerate()
            {
                let event = RegistryEvent::TenantQuotaSet {
                    project: "p".into(),
                    domain: "dev".into(),
                    weight,
                    max_running,
                    at,
                };
                apply_registry_event(&mut tx, 100 + offset as u64, &event)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            // The one set last (at 30) holds; the one read late but set earlier (at 10) does not undo it.
            let quotas = store.tenant_quotas().await.unwrap();
            assert_eq!(quotas.len(), 1);
            assert_eq!(
                (quotas[0].weight, quotas[0].max_running, quotas[0].set_at),
                (2, None, 30)
            );
            let loads = store.task_loads().await.unwrap();
            let running: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM task_attempts WHERE phase = 'RUNNING'")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            let counted: u64 = loads.iter().map(|load| load.running).sum();
            assert_eq!(counted, running as u64, "{loads:?}");
            assert!(
                loads.iter().all(|load| load.waiting <= load.running),
                "{loads:?}"
            );
        }

        #[tokio::test]
        async fn migrations_run_once() {
            let Some((store, url, _dir)) = $backend().await else {
                return;
            };
            project_all(&store).await;
            // Connecting again to the same database must neither re-run migrations nor touch the rows.
            drop(store);
            let store = Store::connect(&url).await.expect("reconnect");
            assert!(store.get_execution(&execution()).await.unwrap().is_some());
            let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(
                rows,
                aloft_store::MIGRATIONS.len() as i64,
                "every migration recorded once"
            );
        }
    };
}

mod sqlite {
    store_suite!(sqlite_backend);
}

mod postgres {
    store_suite!(postgres_backend);
}
