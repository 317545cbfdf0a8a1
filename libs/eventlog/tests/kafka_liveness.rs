//! Partition liveness on a real broker (`ALOFT_TEST_KAFKA_BROKERS`; required when
//! `ALOFT_REQUIRE_REAL_BACKENDS=1`): a partition the group left to a member that never reads it is assigned
//! anew, and one whose owner beats is left alone.
//!
//! The member that never reads stands for what tansu 0.6 can leave behind after a broker stop: the
//! coordinator assigns a partition to a member whose owner is gone. Here it is a plain rdkafka consumer in
//! the group that takes its assignment and does nothing else, as such a ghost does.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aloft_eventlog::kafka::KafkaLog;
use aloft_eventlog::EventLog;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::ClientContext;

/// Every assignment the ghost was handed, in order.
#[derive(Clone, Default)]
struct Assignments(Arc<Mutex<Vec<Vec<u32>>>>);

impl Assignments {
    fn all(&self) -> Vec<Vec<u32>> {
        self.0.lock().unwrap().clone()
    }
}

impl ClientContext for Assignments {}

impl ConsumerContext for Assignments {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assignment) = rebalance {
            let mut partitions: Vec<u32> = assignment
                .elements()
                .iter()
                .map(|element| element.partition() as u32)
                .collect();
            partitions.sort_unstable();
            self.0.lock().unwrap().push(partitions);
        }
    }
}

/// A group of two on a topic of two partitions: a ghost that holds one partition and reads nothing, and an
/// Aloft member (its assignments followed in the background, so its checks run) that holds the other.
struct Group {
    log: Arc<KafkaLog>,
    topic: String,
    group: String,
    ghost: Assignments,
    ghost_partition: u32,
    _ghost_poller: tokio::task::JoinHandle<()>,
    _member: tokio::task::JoinHandle<()>,
}

fn unique(name: &str) -> String {
    format!("liveness-{name}-{}", uuid::Uuid::new_v4().simple())
}

impl Group {
    async fn form(log: Arc<KafkaLog>, brokers: &str) -> Group {
        let topic = unique("topic");
        let group = unique("group");
        log.ensure_topic(&topic, 2).await.unwrap();
        let ghost = Assignments::default();
        let consumer: StreamConsumer<Assignments> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("client.id", "ghost")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "roundrobin")
            .create_with_context(ghost.clone())
            .unwrap();
        consumer.subscribe(&[topic.as_str()]).unwrap();
        let ghost_poller = tokio::spawn(async move {
            loop {
                let _ = consumer.recv().await;
            }
        });
        wait_for("the ghost's first assignment", || !ghost.all().is_empty()).await;

        let mut membership = log.join_group(&group, &topic, "member").await.unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::clone(&held);
        // Followed as the propeller follows it: inside a `select!` that drops the future every time
        // something else happens (here every 5 ms, as records arrive under load), so nothing the membership does may depend on one call
        // of `next_assignment` running long.
        let member = tokio::spawn(async move {
            loop {
                tokio::select! {
                    assignment = membership.next_assignment() => match assignment {
                        Ok(assignment) => *holding.lock().unwrap() = assignment,
                        Err(_) => return,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        });
        wait_for("the two to split the partitions", || {
            let member = held.lock().unwrap().clone();
            let ghost = ghost.all().last().cloned().unwrap_or_default();
            member.len() == 1 && ghost.len() == 1 && member != ghost
        })
        .await;
        let ghost_partition = ghost.all().last().unwrap()[0];
        Group {
            log,
            topic,
            group,
            ghost,
            ghost_partition,
            _ghost_poller: ghost_poller,
            _member: member,
        }
    }

    /// Writes records to the ghost's partition after a beat below them: an owner beat for it once and
    /// then the records came with nobody reading them.
    async fn leave_records_behind_a_beat(&self) {
        let liveness_group = format!("{}-liveness", self.group);
        self.log
            .commit(&liveness_group, &self.topic, self.ghost_partition, 0)
            .await
            .unwrap();
        self.log
            .append_batch(
                &self.topic,
                self.ghost_partition,
                (0..3u8).map(|i| ("k".to_string(), vec![i])).collect(),
            )
            .await
            .unwrap();
    }

    /// Beats for the ghost's partition as a live owner would.
    async fn beat_for_the_ghost(&self) {
        let end = self
            .log
            .end_offset(&self.topic, self.ghost_partition)
            .await
            .unwrap();
        let liveness_group = format!("{}-liveness", self.group);
        self.log
            .commit(&liveness_group, &self.topic, self.ghost_partition, end)
            .await
            .unwrap();
    }
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_nobody_reads_is_assigned_anew_and_one_whose_owner_beats_is_left_alone() {
    let Ok(brokers) = std::env::var("ALOFT_TEST_KAFKA_BROKERS") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_KAFKA_BROKERS is required"
        );
        eprintln!("skipping: ALOFT_TEST_KAFKA_BROKERS is not set");
        return;
    };
    let log = Arc::new(KafkaLog::connect(&brokers).await.unwrap());
    // Both groups at once, so the one left alone is watched for as long as the other takes to act.
    let (stalled, alive) = tokio::join!(
        Group::form(Arc::clone(&log), &brokers),
        Group::form(Arc::clone(&log), &brokers)
    );
    stalled.leave_records_behind_a_beat().await;
    alive.leave_records_behind_a_beat().await;
    alive.beat_for_the_ghost().await;
    let stalled_before = stalled.ghost.all().len();
    let alive_before = alive.ghost.all().len();

    // The member checks every 15 s; the second check after the records came sees them unread.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stalled.ghost.all().len() == stalled_before {
        assert!(
            Instant::now() < deadline,
            "the member never had the group assign anew though partition {} had records nobody read",
            stalled.ghost_partition
        );
        alive.beat_for_the_ghost().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        alive.ghost.all().len(),
        alive_before,
        "the group whose every partition had a beating owner was assigned anew: {:?}",
        alive.ghost.all()
    );
}
