//! `aloft quota`: a tenant's weight and limits, and resource pools.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(cli: &Cli, client: &mut AdminClient, command: &QuotaCommand) -> anyhow::Result<i32> {
    match command {
        QuotaCommand::Pool { name, limit } => {
            client
                .define_pool(wire::DefinePoolRequest {
                    name: name.clone(),
                    limit: *limit,
                })
                .await
                .map_err(api("pool"))?;
            println!("resource pool {name}: {limit} token(s) shared by every propeller");
            Ok(0)
        }
        QuotaCommand::Set { weight, max_running } => {
            client
                .set_tenant_quota(wire::SetTenantQuotaRequest {
                    project: cli.project.clone(),
                    domain: cli.domain.clone(),
                    weight: *weight,
                    max_running: max_running.unwrap_or(0),
                })
                .await
                .map_err(api("quota"))?;
            let limit = max_running.map_or("no limit".to_string(), |max| format!("at most {max} running"));
            println!(
                "quota of {}/{}: weight {weight}, {limit}",
                cli.project, cli.domain
            );
            Ok(0)
        }
    }
}
