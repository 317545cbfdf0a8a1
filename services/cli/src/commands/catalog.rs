//! `aloft lineage` and `aloft cache`: the catalog's answers, through its API.

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::lineage;

use super::shared::*;

pub(super) async fn run(cli: &Cli, catalog_url: Option<&str>) -> anyhow::Result<i32> {
    let url = catalog_url.ok_or_else(|| {
        anyhow::anyhow!("no catalog address: pass --catalog URL (or set ALOFT_CATALOG) along with --admin")
    })?;
    let mut catalog = lineage::connect_catalog(url).await?;
    match &cli.command {
        Command::Lineage { target, json, depth } => {
            let request = lineage::lineage_request(&cli.project, &cli.domain, target, *depth)?;
            let answer = catalog
                .get_lineage(request)
                .await
                .map_err(api("lineage"))?
                .into_inner();
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&lineage::lineage_json(&answer))?
                );
            } else {
                print!("{}", lineage::render_lineage(&answer));
            }
            Ok(0)
        }
        Command::Cache {
            command: CacheCommand::List { task, limit },
        } => {
            let entries = catalog
                .list_cache_entries(wire::ListCacheEntriesRequest {
                    project: cli.project.clone(),
                    domain: cli.domain.clone(),
                    task_name: task.clone().unwrap_or_default(),
                    limit: *limit,
                })
                .await
                .map_err(api("list cached results"))?
                .into_inner();
            print!("{}", lineage::render_cache_entries(&entries.entries));
            Ok(0)
        }
        Command::Cache {
            command:
                CacheCommand::Evict {
                    task,
                    cache_version,
                    key,
                },
        } => {
            let evicted = catalog
                .evict(wire::EvictRequest {
                    project: cli.project.clone(),
                    domain: cli.domain.clone(),
                    task_name: task.clone(),
                    cache_version: cache_version.clone().unwrap_or_default(),
                    key: key.clone().unwrap_or_default(),
                })
                .await
                .map_err(api("evict"))?
                .into_inner();
            println!("evicted {} cached result(s) of task {task}", evicted.evicted);
            Ok(0)
        }
        _ => Ok(0),
    }
}
