//! `aloft schedules`: active schedules and when each fires next.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(cli: &Cli, client: &mut AdminClient, _embedded: bool) -> anyhow::Result<i32> {
    print_schedules(cli, client).await?;
    Ok(0)
}

pub(super) async fn print_schedules(cli: &Cli, client: &mut AdminClient) -> anyhow::Result<()> {
    let entities = |name: &str| wire::ListEntitiesRequest {
        project: cli.project.clone(),
        domain: cli.domain.clone(),
        name: name.to_string(),
    };
    let latest = client
        .list_launch_plans(entities(""))
        .await
        .map_err(api("list launch plans"))?
        .into_inner();
    let now = chrono::Utc::now();
    println!(
        "{:30}  {:18}  {:24}  {:8}  next fire (UTC)",
        "launch plan", "version", "schedule", "catch-up"
    );
    for plan in latest.launch_plans {
        let name = plan.id.as_ref().map(|id| id.name.clone()).unwrap_or_default();
        let versions = client
            .list_launch_plans(entities(&name))
            .await
            .map_err(api("list launch plans"))?
            .into_inner();
        for version in versions.launch_plans.into_iter().filter(|p| p.active) {
            let spec: aloft_core::spec::LaunchPlanSpec = serde_json::from_str(&version.spec_json)?;
            let Some(schedule) = spec.schedule else { continue };
            let expression = match (&schedule.cron, &schedule.fixed_rate) {
                (Some(cron), _) => format!(
                    "{cron}{}",
                    schedule
                        .timezone
                        .as_deref()
                        .map(|z| format!(" {z}"))
                        .unwrap_or_default()
                ),
                (None, Some(rate)) => format!("every {rate}"),
                (None, None) => String::new(),
            };
            let next = schedule
                .compile()
                .ok()
                .and_then(|compiled| compiled.next_after(now))
                .map(|time| time.to_rfc3339())
                .unwrap_or_else(|| "never".to_string());
            let version_name = version
                .id
                .as_ref()
                .map(|id| id.version.clone())
                .unwrap_or_default();
            println!(
                "{name:30}  {version_name:18}  {expression:24}  {:8}  {next}",
                format!("{:?}", schedule.catch_up).to_lowercase()
            );
        }
    }
    Ok(())
}
