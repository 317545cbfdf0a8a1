//! `aloft run`: launch a launch plan, workflow or task (or register a file and run its last workflow).

use std::collections::BTreeMap;
use std::path::Path;

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

pub(super) async fn run(
    cli: &Cli,
    client: &mut AdminClient,
    embedded: bool,
    args: &RunArgs,
) -> anyhow::Result<i32> {
    let RunArgs {
        target,
        inputs,
        name,
        version,
        wait,
        overwrite_cache,
        notify_file,
        no_notify,
        labels,
    } = args;
    let notifications_json = match notify_file {
        Some(file) => crate::notify::rules_json_from_file(file)?,
        None => String::new(),
    };
    // `FILE:NAME` runs the entity NAME the file defines (`pipelines/train.py:train`).
    let (file, wanted) = match target.rsplit_once(':') {
        Some((file, name)) if Path::new(file).is_file() && !name.is_empty() => (file, Some(name)),
        _ => (target.as_str(), None),
    };
    let path = Path::new(file);
    let target = if path.is_file() {
        let registered = register_file(cli, client, path).await?;
        let pick = |kind: &str| {
            registered
                .iter()
                .rev()
                .filter(|r| wanted.is_none_or(|name| r.id.name == name))
                .find(|r| r.kind == kind)
                .map(|r| (kind.to_string(), r.id.clone()))
        };
        pick("launch plan")
            .or_else(|| pick("workflow"))
            .or_else(|| pick("task"))
            .ok_or_else(|| match wanted {
                Some(name) => {
                    anyhow::anyhow!("{file} defines no launch plan, workflow or task named {name:?}")
                }
                None => anyhow::anyhow!("{target} defines nothing to run (no launch plan, workflow or task)"),
            })?
    } else {
        resolve_target(cli, client, target, version.as_deref()).await?
    };
    let (kind, id) = target;
    use wire::create_execution_request::Target;
    let request = wire::CreateExecutionRequest {
        project: cli.project.clone(),
        domain: cli.domain.clone(),
        name: name.clone().unwrap_or_default(),
        target: Some(match kind.as_str() {
            "launch plan" => Target::LaunchPlan(id.clone()),
            "workflow" => Target::Workflow(id.clone()),
            _ => Target::Task(id.clone()),
        }),
        inputs: None,
        text_inputs: inputs
            .iter()
            .cloned()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect(),
        overwrite_cache: *overwrite_cache,
        notifications_json,
        disable_notifications: *no_notify,
        labels: labels.iter().cloned().collect(),
    };
    let created = client
        .create_execution(request)
        .await
        .map_err(api("cannot start the execution"))?
        .into_inner();
    let execution = created.id.unwrap_or_default();
    println!(
        "started execution {}/{}/{} of {kind} {}@{}",
        execution.project, execution.domain, execution.name, id.name, id.version
    );
    finish(client, &execution, *wait || embedded).await
}
