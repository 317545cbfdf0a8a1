//! `aloft-bench notify`: N executions fail within one second, each with an email rule; a notifier delivers
//! to a local SMTP server (real SMTP on loopback). Reports delivery lag (execution end to the message
//! accepted by the server) and duplicates. The executions are appended to the log as a propeller would
//! write them, so the figure is the notifier's, not the engine's.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use aloft_core::ExecutionId;
use aloft_eventlog::{partition_for_key, LogBackend, Topics};
use aloft_testkit::SmtpSink;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct NotifyBenchResult {
    pub executions: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub lag_p50_millis: i64,
    pub lag_p99_millis: i64,
    pub lag_max_millis: i64,
    pub append_seconds: f64,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub async fn run(
    kafka_brokers: Option<&str>,
    database_url: Option<&str>,
    executions: usize,
    smtp_per_second: u32,
) -> anyhow::Result<NotifyBenchResult> {
    let scratch = tempfile::tempdir()?;
    let url = match database_url {
        Some(url) if url.starts_with("postgres") => {
            aloft_store::create_scratch_postgres_database(url).await?
        }
        Some(url) => url.to_string(),
        None => format!("sqlite://{}", scratch.path().join("notifier.db").display()),
    };
    let store = aloft_store::Store::connect(&url).await?;
    let (backend, topics) = match kafka_brokers {
        Some(brokers) => (
            LogBackend::Kafka {
                brokers: brokers.to_string(),
            },
            Topics::with_prefix(&format!("bench-{}.", uuid::Uuid::new_v4().simple())),
        ),
        None => (
            LogBackend::Embedded {
                dir: scratch.path().join("log"),
            },
            Topics::with_prefix(""),
        ),
    };
    let log = aloft_eventlog::open(&backend, &topics, 8).await?;
    let shutdown = CancellationToken::new();
    let smtp = SmtpSink::start(shutdown.clone()).await?;
    let rules = [smtp.failure_email_rule("team@example.com", Some("{{name}} {{phase}}"))];
    let mut options = aloft_notifier::NotifierOptions::new(topics.clone());
    options.policy.smtp_per_second = NonZeroU32::new(smtp_per_second).unwrap_or(NonZeroU32::MIN);
    let notifier = tokio::spawn(aloft_notifier::run(options, store, log.clone(), shutdown.clone()));

    // Executions end spread over one second: ten waves, 100 ms apart.
    let partitions = log.partition_count(&topics.executions).await?;
    let mut finished_at: HashMap<String, i64> = HashMap::new();
    let started = Instant::now();
    let waves = 10usize;
    for wave in 0..waves {
        let wave_start = started + Duration::from_millis(100 * wave as u64);
        tokio::time::sleep_until(wave_start.into()).await;
        let mut batches: HashMap<u32, Vec<(String, Vec<u8>)>> = HashMap::new();
        for index in (wave..executions).step_by(waves) {
            let id = ExecutionId {
                project: "bench".into(),
                domain: "production".into(),
                name: format!("fail-{index}"),
            };
            let at = now_millis();
            let (key, envelopes) = aloft_testkit::failed_execution_records(&id, &rules, at)?;
            finished_at.insert(id.name.clone(), at);
            let batch = batches.entry(partition_for_key(&key, partitions)).or_default();
            batch.extend(envelopes.into_iter().map(|bytes| (key.clone(), bytes)));
        }
        crate::engine::append_by_partition(&*log, &topics.executions, batches).await?;
    }
    let append_seconds = started.elapsed().as_secs_f64();
    eprintln!("{executions} failed executions appended in {append_seconds:.2} s; waiting for the emails");

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    loop {
        let received = smtp.received().len();
        if received >= executions {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {received} of {executions} emails arrived within 300 s");
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("{received}/{executions} emails delivered");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give any duplicate a moment to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = smtp.received();
    shutdown.cancel();
    notifier.await??;

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut lags = Vec::new();
    for mail in &mails {
        let name = mail
            .subject()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let count = seen.entry(name.clone()).or_default();
        *count += 1;
        if *count == 1 {
            if let Some(at) = finished_at.get(&name) {
                lags.push(mail.received_at - at);
            }
        }
    }
    lags.sort_unstable();
    let percentile = |p: f64| {
        lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Ok(NotifyBenchResult {
        executions,
        delivered: seen.len(),
        duplicates: mails.len() - seen.len(),
        lag_p50_millis: percentile(0.50),
        lag_p99_millis: percentile(0.99),
        lag_max_millis: lags.last().copied().unwrap_or_default(),
        append_seconds,
    })
}
