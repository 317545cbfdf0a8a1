//! Per-tenant API rate limits on admin, shared through Redis: a tenant over its rate is refused with
//! RESOURCE_EXHAUSTED and a retry-after, while another tenant is unaffected.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_api_rate_is_told_to_wait_and_another_is_unaffected() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let Ok(redis) = std::env::var("ALOFT_TEST_REDIS_URL") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_REDIS_URL is required"
        );
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_with_env(
        "aloft-admin",
        "admin",
        &[
            ("ALOFT_TENANT_RATE_PER_SECOND", "2".to_string()),
            ("ALOFT_TENANT_BURST", "3".to_string()),
            ("ALOFT_REDIS_URL", redis),
        ],
    );
    let mut client = deployment.client().await;
    let list = |domain: &str| wire::ListExecutionsRequest {
        project: PROJECT.into(),
        domain: domain.into(),
        limit: 1,
    };
    let mut refused = None;
    for _ in 0..10 {
        match client.list_executions(list("development")).await {
            Ok(_) => {}
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("ten calls at once exceed a burst of 3");
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());
    assert!(
        status
            .message()
            .contains("default/development is over its API rate limit"),
        "{}",
        status.message()
    );
    let retry_after_ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after_ms > 0 && retry_after_ms <= 1000, "{retry_after_ms}");
    assert_eq!(
        status.metadata().get("retry-after").unwrap().to_str().unwrap(),
        "1"
    );

    // Another tenant (the production domain) is not slowed down by development's calls.
    for _ in 0..3 {
        client.list_executions(list("production")).await.unwrap();
    }
    // Waiting as told is enough.
    tokio::time::sleep(Duration::from_millis(retry_after_ms + 50)).await;
    client.list_executions(list("development")).await.unwrap();
}
