//! What authentication and authorization add to a call: two fleets in this process on the same kind of
//! backends, one without authentication and one checking OIDC tokens of a test issuer on loopback (JWKS
//! fetched once and cached, as in a deployment), called alternately so both see the same load. Each takes
//! `samples` CreateExecution and GetExecution calls; p50/p99 of each and their ratio.

use std::time::{Duration, Instant};

use aloft_cli::client::{connect_as, AdminClient};
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_proto::v1 as wire;
use aloft_testkit::oidc::TestIssuer;
use tokio_util::sync::CancellationToken;

use crate::shared::percentile_ms;

pub struct AuthCase {
    pub call: &'static str,
    pub plain_p50_ms: f64,
    pub plain_p99_ms: f64,
    pub auth_p50_ms: f64,
    pub auth_p99_ms: f64,
}

const TASK: &str =
    r#"{"name": "noop", "version": "1", "interface": {}, "run": {"process": {"command": ["true"]}}}"#;

async fn fleet(
    dir: &std::path::Path,
    auth: Option<aloft_auth::AuthConfig>,
    kafka: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<Fleet> {
    let mut config = FleetConfig::embedded(dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    // Launches only: nothing runs them, so the calls alone are measured.
    config.propellers = 0;
    config.auth = auth;
    if let Some(brokers) = kafka {
        config = config.on_kafka(brokers, "bench-auth");
    }
    if let Some(url) = database {
        config = config.on_database(url).await?;
    }
    Fleet::start(config).await
}

async fn ready(url: &str, token: Option<&str>) -> anyhow::Result<AdminClient> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut client) = connect_as(url, token).await {
            let projects = client.list_projects(wire::ListProjectsRequest {}).await;
            if projects.is_ok_and(|p| p.into_inner().projects.iter().any(|p| p.name == "default")) {
                return Ok(client);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "admin at {url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create(name: String) -> wire::CreateExecutionRequest {
    wire::CreateExecutionRequest {
        project: "default".into(),
        domain: "development".into(),
        name,
        target: Some(wire::create_execution_request::Target::Task(wire::Identifier {
            project: "default".into(),
            domain: "development".into(),
            name: "noop".into(),
            version: "1".into(),
        })),
        ..Default::default()
    }
}

pub async fn run(
    samples: usize,
    kafka: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<Vec<AuthCase>> {
    let shutdown = CancellationToken::new();
    let issuer = TestIssuer::start("aloft", shutdown.clone()).await?;
    let config: aloft_auth::AuthConfig = serde_yaml::from_str(&format!(
        "oidc: {{issuer: \"{}\", audience: aloft}}\nbindings:\n  - {{member: \"group:ml\", project: default, role: admin}}\n",
        issuer.issuer
    ))?;
    let (plain_dir, auth_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let plain_fleet = fleet(plain_dir.path(), None, kafka, database).await?;
    let auth_fleet = fleet(auth_dir.path(), Some(config), kafka, database).await?;
    let token = issuer.token("bench-user", &["ml"]);
    let mut plain = ready(&plain_fleet.endpoint(), None).await?;
    let mut authed = ready(&auth_fleet.endpoint(), Some(&token)).await?;
    for client in [&mut plain, &mut authed] {
        client
            .register_task(wire::RegisterRequest {
                project: "default".into(),
                domain: "development".into(),
                spec_json: TASK.into(),
            })
            .await?;
    }
    let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
    for i in 0..samples + samples / 10 {
        // The first tenth warms both up (connections, caches) and is not counted.
        let counted = i >= samples / 10;
        for (which, client) in [&mut plain, &mut authed].into_iter().enumerate() {
            let name = format!("b{which}x{i}");
            let begun = Instant::now();
            let created = client.create_execution(create(name)).await?.into_inner();
            let create_time = begun.elapsed();
            let begun = Instant::now();
            client
                .get_execution(wire::GetExecutionRequest {
                    id: created.id,
                    without_nodes: false,
                })
                .await?;
            let get_time = begun.elapsed();
            if counted {
                times[0][which].push(create_time);
                times[1][which].push(get_time);
            }
        }
    }
    let mut cases = Vec::new();
    for (index, call) in ["CreateExecution", "GetExecution"].into_iter().enumerate() {
        let [plain_times, auth_times] = &mut times[index];
        plain_times.sort();
        auth_times.sort();
        cases.push(AuthCase {
            call,
            plain_p50_ms: percentile_ms(plain_times, 0.5),
            plain_p99_ms: percentile_ms(plain_times, 0.99),
            auth_p50_ms: percentile_ms(auth_times, 0.5),
            auth_p99_ms: percentile_ms(auth_times, 0.99),
        });
    }
    anyhow::ensure!(
        issuer.jwks_fetches() >= 1,
        "the authenticating fleet never fetched the issuer's keys"
    );
    plain_fleet.stop().await?;
    auth_fleet.stop().await?;
    shutdown.cancel();
    Ok(cases)
}
