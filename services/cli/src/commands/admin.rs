//! `aloft admin`: operator tools on a deployment's log and databases directly.

use crate::args::*;

pub(super) async fn run(cli: &Cli, command: &AdminCommand) -> anyhow::Result<i32> {
    match command {
        AdminCommand::Lag { deployment } => {
            let rows = crate::admin_ops::lag(&deployment.address(), &cli.data_dir).await?;
            print!("{}", crate::admin_ops::render_lag(&rows));
            Ok(0)
        }
        AdminCommand::Replay {
            rebuild_projections,
            rebuild_catalog,
            deployment,
        } => {
            if !rebuild_projections && !rebuild_catalog {
                anyhow::bail!(
                    "say what to rebuild: --rebuild-projections (admin's read models) and/or --rebuild-catalog"
                );
            }
            let rebuild = crate::admin_ops::Rebuild {
                projections: *rebuild_projections,
                catalog: *rebuild_catalog,
            };
            crate::admin_ops::replay(&deployment.address(), &cli.data_dir, rebuild, |line| {
                eprintln!("{line}")
            })
            .await?;
            Ok(0)
        }
    }
}
