//! One conformance suite for every `EventLog` backend: embedded (always) and Kafka (when
//! `ALOFT_TEST_KAFKA_BROKERS` is set; required when `ALOFT_REQUIRE_REAL_BACKENDS=1`, as in scripts/test.sh).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aloft_eventlog::{partition_for_key, EventLog, GroupMembership};

/// Builds a backend for one test; `None` means the backend is not available here (the test is skipped).
type Backend = (Arc<dyn EventLog>, Option<tempfile::TempDir>);

fn unique(name: &str) -> String {
    format!("conformance-{name}-{}", uuid::Uuid::new_v4().simple())
}

async fn read_all(
    log: &Arc<dyn EventLog>,
    topic: &str,
    partition: u32,
    from: u64,
    count: usize,
) -> Vec<aloft_eventlog::Record> {
    let mut reader = log
        .read(vec![(topic.to_string(), partition, from)])
        .await
        .expect("open reader");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while records.len() < count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(remaining, reader.next_batch(100))
            .await
            .expect("records arrive in time")
            .expect("read");
        records.extend(batch);
    }
    records
}

/// Follows a membership until its assignment satisfies `wanted` (or fails after 40 s).
async fn assignment_until(
    membership: &mut Box<dyn GroupMembership>,
    current: &mut Vec<u32>,
    wanted: impl Fn(&[u32]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !wanted(current) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, membership.next_assignment()).await {
            Ok(Ok(assignment)) => *current = assignment,
            Ok(Err(error)) => panic!("membership failed: {error}"),
            Err(_) => panic!("assignment never settled; last was {current:?}"),
        }
    }
}

macro_rules! conformance_suite {
    ($backend:path) => {
        use super::*;

        #[tokio::test]
        async fn appended_records_are_read_back_in_order_with_their_offsets() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("order");
            log.ensure_topic(&topic, 3).await.unwrap();
            let records: Vec<(String, Vec<u8>)> = (0..5)
                .map(|i| (format!("k{i}"), format!("payload-{i}").into_bytes()))
                .collect();
            let positions = log.append_batch(&topic, 1, records.clone()).await.unwrap();
            assert_eq!(
                positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
                vec![0, 1, 2, 3, 4]
            );
            assert!(positions.iter().all(|p| p.partition == 1));
            assert_eq!(log.end_offset(&topic, 1).await.unwrap(), 5);
            assert_eq!(log.end_offset(&topic, 0).await.unwrap(), 0);
            let read = read_all(&log, &topic, 1, 0, 5).await;
            for (index, record) in read.iter().enumerate() {
                assert_eq!(record.offset, index as u64);
                assert_eq!(record.key, records[index].0);
                assert_eq!(record.payload, records[index].1);
            }
        }

        #[tokio::test]
        async fn reading_from_an_offset_skips_what_came_before() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("offset");
            log.ensure_topic(&topic, 1).await.unwrap();
            let records = (0..4).map(|i| ("k".to_string(), vec![i as u8])).collect();
            log.append_batch(&topic, 0, records).await.unwrap();
            let read = read_all(&log, &topic, 0, 2, 2).await;
            assert_eq!(
                read.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
                vec![vec![2u8], vec![3u8]]
            );
        }

        #[tokio::test]
        async fn a_key_always_lands_in_the_same_partition() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("keys");
            log.ensure_topic(&topic, 4).await.unwrap();
            let key = "proj/dev/execution-1";
            let expected = partition_for_key(key, 4);
            for i in 0..3u8 {
                let position = log.append(&topic, key, vec![i]).await.unwrap();
                assert_eq!(position.partition, expected);
            }
            assert_eq!(log.end_offset(&topic, expected).await.unwrap(), 3);
        }

        #[tokio::test]
        async fn batches_enqueued_without_waiting_keep_their_order() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("pipelined");
            log.ensure_topic(&topic, 1).await.unwrap();
            let first = log.append_batch(
                &topic,
                0,
                (0..50u8).map(|i| ("k".to_string(), vec![i])).collect(),
            );
            let second = log.append_batch(
                &topic,
                0,
                (50..100u8).map(|i| ("k".to_string(), vec![i])).collect(),
            );
            first.await.unwrap();
            second.await.unwrap();
            let read = read_all(&log, &topic, 0, 0, 100).await;
            let payloads: Vec<u8> = read.iter().map(|r| r.payload[0]).collect();
            assert_eq!(payloads, (0..100u8).collect::<Vec<_>>());
        }

        #[tokio::test]
        async fn a_group_splits_partitions_between_members_and_rebalances_when_one_leaves() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("group");
            let group = unique("members");
            log.ensure_topic(&topic, 4).await.unwrap();
            let mut first = log.join_group(&group, &topic, "member-a").await.unwrap();
            let mut first_assignment = Vec::new();
            assignment_until(&mut first, &mut first_assignment, |a| a.len() == 4).await;
            let mut second = log.join_group(&group, &topic, "member-b").await.unwrap();
            let mut second_assignment = Vec::new();
            // Both must settle: disjoint, together every partition, neither empty.
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let union: BTreeSet<u32> = first_assignment
                    .iter()
                    .chain(second_assignment.iter())
                    .copied()
                    .collect();
                let disjoint = first_assignment
                    .iter()
                    .all(|p| !second_assignment.contains(p));
                if union.len() == 4
                    && disjoint
                    && !first_assignment.is_empty()
                    && !second_assignment.is_empty()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "never split: {first_assignment:?} / {second_assignment:?}"
                );
                tokio::select! {
                    Ok(a) = first.next_assignment() => first_assignment = a,
                    Ok(b) = second.next_assignment() => second_assignment = b,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            drop(second);
            assignment_until(&mut first, &mut first_assignment, |a| a.len() == 4).await;
        }

        #[tokio::test]
        async fn a_batch_with_a_record_over_the_limit_is_refused_whole_by_its_size() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("large");
            log.ensure_topic(&topic, 1).await.unwrap();
            let largest = vec![7u8; aloft_eventlog::MAX_RECORD_BYTES - 1];
            log.append_batch(&topic, 0, vec![("k".to_string(), largest)])
                .await
                .expect("a record of the most bytes allowed is taken");
            let too_large = vec![7u8; aloft_eventlog::MAX_RECORD_BYTES];
            let refused = log
                .append_batch(
                    &topic,
                    0,
                    vec![("k".to_string(), vec![1]), ("k".to_string(), too_large)],
                )
                .await
                .expect_err("a record over the limit is refused");
            assert!(
                matches!(
                    refused,
                    aloft_eventlog::Error::RecordTooLarge { bytes, .. }
                        if bytes == aloft_eventlog::MAX_RECORD_BYTES + 1
                ),
                "{refused}"
            );
            assert!(
                refused.to_string().contains("more than the 983040 bytes"),
                "{refused}"
            );
            log.append_batch(&topic, 0, vec![("k".to_string(), vec![2])])
                .await
                .unwrap();
            let read = read_all(&log, &topic, 0, 0, 2).await;
            assert_eq!(
                read.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 1],
                "nothing of the refused batch was written"
            );
            assert_eq!(read[1].payload, vec![2]);
        }

        #[tokio::test]
        async fn committed_offsets_are_stored_per_group() {
            let Some((log, _dir)) = $backend().await else {
                return;
            };
            let topic = unique("commit");
            log.ensure_topic(&topic, 2).await.unwrap();
            log.append_batch(
                &topic,
                1,
                (0..6u8).map(|i| ("k".to_string(), vec![i])).collect(),
            )
            .await
            .unwrap();
            let group = unique("committer");
            assert_eq!(log.committed(&group, &topic, 1).await.unwrap(), None);
            log.commit(&group, &topic, 1, 5).await.unwrap();
            assert_eq!(log.committed(&group, &topic, 1).await.unwrap(), Some(5));
            assert_eq!(
                log.committed(&unique("other"), &topic, 1).await.unwrap(),
                None
            );
        }
    };
}

async fn embedded_backend() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = aloft_eventlog::embedded::EmbeddedLog::open(dir.path()).expect("open embedded log");
    Some((Arc::new(log), Some(dir)))
}

async fn kafka_backend() -> Option<Backend> {
    let Ok(brokers) = std::env::var("ALOFT_TEST_KAFKA_BROKERS") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_KAFKA_BROKERS is required"
        );
        eprintln!("skipping: ALOFT_TEST_KAFKA_BROKERS is not set");
        return None;
    };
    let log = aloft_eventlog::kafka::KafkaLog::connect(&brokers)
        .await
        .expect("connect to Kafka");
    Some((Arc::new(log), None))
}

mod embedded {
    conformance_suite!(embedded_backend);
}

mod kafka {
    conformance_suite!(kafka_backend);
}

mod embedded_only {
    use aloft_eventlog::embedded::EmbeddedLog;
    use aloft_eventlog::{Error, EventLog};

    #[tokio::test]
    async fn records_and_commits_survive_a_reopen_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            log.ensure_topic("t", 2).await.unwrap();
            log.append_batch(
                "t",
                1,
                vec![("k".into(), b"one".to_vec()), ("k".into(), b"two".to_vec())],
            )
            .await
            .unwrap();
            log.commit("g", "t", 1, 2).await.unwrap();
        }
        // A crash in the middle of a write leaves a partial frame at the end.
        let path = dir.path().join("events.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[42, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        assert_eq!(log.end_offset("t", 1).await.unwrap(), 2);
        assert_eq!(log.committed("g", "t", 1).await.unwrap(), Some(2));
        let position = log
            .append_batch("t", 1, vec![("k".into(), b"three".to_vec())])
            .await
            .unwrap();
        assert_eq!(position[0].offset, 2);
    }

    #[tokio::test]
    async fn a_data_directory_is_used_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedLog::open(dir.path()).unwrap();
        assert!(matches!(EmbeddedLog::open(dir.path()), Err(Error::InUse(_))));
    }

    #[tokio::test]
    async fn corruption_before_the_tail_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            log.ensure_topic("t", 1).await.unwrap();
            log.append_batch(
                "t",
                0,
                vec![("k".into(), b"one".to_vec()), ("k".into(), b"two".to_vec())],
            )
            .await
            .unwrap();
        }
        let path = dir.path().join("events.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let error = EmbeddedLog::open(dir.path())
            .err()
            .expect("corruption is an error");
        assert!(error.to_string().contains("corrupt"), "{error}");
    }

    /// Found by the fuzzer (`fuzz/corpus/embedded_log/too-many-partitions`): a topic frame whose checksum
    /// holds but that asks for 1.6 billion partitions made opening the file allocate until it was killed.
    #[tokio::test]
    async fn a_topic_frame_asking_for_billions_of_partitions_is_corruption_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let input = include_bytes!("../../../fuzz/corpus/embedded_log/too-many-partitions");
        std::fs::write(dir.path().join("events.log"), input).unwrap();
        let error = EmbeddedLog::open(dir.path()).err().expect("the frame is refused");
        assert!(
            error.to_string().contains("corrupt at byte 0")
                && error.to_string().contains("1633771873 partitions"),
            "{error}"
        );
        let fresh = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(fresh.path()).unwrap();
        let refused = log.ensure_topic("t", u32::MAX).await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::TooManyPartitions {
                    partitions: u32::MAX,
                    max: 1024,
                    ..
                }
            ),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn appending_to_an_unknown_topic_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        assert!(matches!(
            log.append_batch("missing", 0, vec![]).await,
            Err(Error::UnknownTopic(_))
        ));
    }
}
