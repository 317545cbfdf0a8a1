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
        AdminCommand::PodData {
            step,
            pod_dir,
            termination_log,
            blobs,
        } => Ok(super::pod_data::run(cli, step, pod_dir, termination_log, blobs).await),
        AdminCommand::Gc {
            older_than,
            dry_run,
            blobs,
            deployment,
        } => {
            let blobs = blobs.open(&cli.data_dir).await?;
            let report = crate::gc::gc(
                &deployment.address(),
                &cli.data_dir,
                &blobs,
                *older_than,
                *dry_run,
                |line| println!("{line}"),
            )
            .await?;
            println!(
                "{} {} object(s), {} bytes, of {} execution(s) finished more than {} ago; kept {} still referenced",
                if *dry_run { "would remove" } else { "removed" },
                report.removed_objects,
                report.removed_bytes,
                report.executions,
                humantime_like(*older_than),
                report.kept_objects
            );
            Ok(0)
        }
        // Answered through the API (commands::run sends it there).
        AdminCommand::Audit { .. } => Ok(0),
    }
}

/// A duration as the flag would say it (`90s`, `2h`, `30d`).
fn humantime_like(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s > 0 => format!("{s}s"),
        _ => format!("{}ms", duration.as_millis()),
    }
}
