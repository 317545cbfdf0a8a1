//! What the data-plane tests share: a deployment on the test S3 bucket, propellers with disks of their own
//! (as on other machines), failing over from one to another, and reading offloaded values.

#![allow(dead_code)] // each test file uses its own part

use aloft_e2e::*;
use aloft_proto::v1 as wire;

/// A deployment whose services all use a fresh prefix of the test S3 bucket.
pub async fn s3_deployment() -> Option<Deployment> {
    let (brokers, database) = real_backends()?;
    let store = real_s3_store()?;
    let mut deployment = Deployment::new(&brokers, &database).await;
    deployment.blob_store = Some(store);
    Some(deployment)
}

/// A propeller with a work dir of its own (as on another machine).
pub fn propeller_on_own_disk(deployment: &Deployment, member: &str) -> Service {
    propeller_on_own_disk_with(deployment, member, &[])
}

/// `propeller_on_own_disk` with `extra` environment.
pub fn propeller_on_own_disk_with(
    deployment: &Deployment,
    member: &str,
    extra: &[(&str, String)],
) -> Service {
    let work = deployment.scratch.path().join(format!("work-{member}"));
    let mut env = vec![
        ("ALOFT_MEMBER_ID", member.to_string()),
        ("ALOFT_WORK_DIR", work.display().to_string()),
    ];
    env.extend_from_slice(extra);
    deployment.start_with_env("aloft-propeller", &format!("propeller-{member}"), &env)
}

/// SIGKILLs propeller `first` (member `a`), wipes its work dir, starts member `b` with `start` and lets
/// execution `id` past its `go` gate: what runs next runs on B, as on another machine.
pub async fn fail_over_and_go(
    deployment: &Deployment,
    first: &mut Service,
    start: fn(&Deployment, &str) -> Service,
    client: &mut AdminClient,
    id: &wire::ExecutionIdentifier,
) -> Service {
    first.sigkill();
    std::fs::remove_dir_all(deployment.scratch.path().join("work-a")).expect("wipe A's disk");
    let second = start(deployment, "b");
    client
        .signal_execution(wire::SignalExecutionRequest {
            id: Some(id.clone()),
            signal: "go".into(),
            value: String::new(),
        })
        .await
        .expect("signal go");
    second
}

pub fn offloaded_of(literal: Option<&wire::Literal>) -> wire::OffloadedValue {
    match literal.and_then(|l| l.value.clone()) {
        Some(wire::literal::Value::Offloaded(offloaded)) => offloaded,
        other => panic!("expected an offloaded value, got {other:?}"),
    }
}
