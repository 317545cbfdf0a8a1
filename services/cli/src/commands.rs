//! What each `aloft` command does: operator commands work on the backends directly; the
//! others talk to admin (and the catalog) through their gRPC APIs, in-process or remote alike.
//!
//! Over 600 lines: the dispatch of every command; the split into one file per command (issue 16 section 5) is
//! not done yet.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aloft_proto::v1 as wire;
use tonic::Status;

use crate::args::*;
use crate::client::{AdminClient, Connection};
use crate::fleet::{Fleet, FleetConfig};
use crate::specs::{read_spec_file, register_documents};
use crate::{lineage, render};

fn api(context: &str) -> impl Fn(Status) -> anyhow::Error + '_ {
    move |status| anyhow::anyhow!("{context}: {}", status.message())
}

/// Runs one parsed command line; the exit code is 0 on success, 1 when an awaited execution did not
/// succeed.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Dev {
            listen,
            catalog_listen,
        } => {
            let mut config = FleetConfig::embedded(&cli.data_dir, *listen);
            config.bootstrap_project = Some(cli.project.clone());
            config.catalog_listen = *catalog_listen;
            let fleet = Fleet::start(config).await?;
            eprintln!(
                "aloft dev: API on {}, catalog on {}, data in {}; Ctrl-C to stop",
                fleet.endpoint(),
                fleet.catalog_endpoint(),
                cli.data_dir.display()
            );
            fleet.run_until(aloft_runtime::shutdown_on_signals()).await?;
            return Ok(0);
        }
        Command::Admin {
            command: AdminCommand::Lag { deployment },
        } => {
            let rows = crate::admin_ops::lag(&deployment.address(), &cli.data_dir).await?;
            print!("{}", crate::admin_ops::render_lag(&rows));
            return Ok(0);
        }
        Command::Admin {
            command:
                AdminCommand::Replay {
                    rebuild_projections,
                    rebuild_catalog,
                    deployment,
                },
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
            return Ok(0);
        }
        _ => {}
    }
    let mut connection = Connection::open(
        cli.admin.as_deref(),
        cli.catalog.as_deref(),
        &cli.data_dir,
        &cli.project,
    )
    .await?;
    let embedded = connection.embedded.is_some();
    let result = match &cli.command {
        Command::Lineage { .. } | Command::Cache { .. } => {
            run_catalog_command(&cli, connection.catalog_url.as_deref()).await
        }
        _ => run_command(&cli, &mut connection.client, embedded).await,
    };
    connection.close().await?;
    result
}

async fn run_catalog_command(cli: &Cli, catalog_url: Option<&str>) -> anyhow::Result<i32> {
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

fn execution_id(cli: &Cli, text: &str) -> wire::ExecutionIdentifier {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [project, domain, name] => wire::ExecutionIdentifier {
            project: project.to_string(),
            domain: domain.to_string(),
            name: name.to_string(),
        },
        _ => wire::ExecutionIdentifier {
            project: cli.project.clone(),
            domain: cli.domain.clone(),
            name: text.to_string(),
        },
    }
}

fn entity_id(cli: &Cli, name: &str, version: Option<&str>) -> wire::Identifier {
    wire::Identifier {
        project: cli.project.clone(),
        domain: cli.domain.clone(),
        name: name.to_string(),
        version: version.unwrap_or_default().to_string(),
    }
}

async fn run_command(cli: &Cli, client: &mut AdminClient, embedded: bool) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Register { files } => {
            for file in files {
                register_file(cli, client, file).await?;
            }
            Ok(0)
        }
        Command::Run {
            target,
            inputs,
            name,
            version,
            wait,
            overwrite_cache,
            notify_file,
            no_notify,
        } => {
            let notifications_json = match notify_file {
                Some(file) => crate::notify::rules_json_from_file(file)?,
                None => String::new(),
            };
            let path = Path::new(target);
            let target = if path.is_file() {
                let registered = register_file(cli, client, path).await?;
                let pick = |kind: &str| {
                    registered
                        .iter()
                        .rev()
                        .find(|r| r.kind == kind)
                        .map(|r| (kind.to_string(), r.id.clone()))
                };
                pick("launch plan")
                    .or_else(|| pick("workflow"))
                    .or_else(|| pick("task"))
                    .ok_or_else(|| {
                        anyhow::anyhow!("{target} defines nothing to run (no launch plan, workflow or task)")
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
            if !(*wait || embedded) {
                return Ok(0);
            }
            let finished = follow(client, &execution).await?;
            render::print_execution(&finished);
            Ok(if finished.phase == wire::ExecutionPhase::Succeeded as i32 {
                0
            } else {
                1
            })
        }
        Command::Get { args, version } => {
            let (kind, name) = match args.as_slice() {
                [name] => ("execution", name.as_str()),
                [kind, name] => (kind.as_str(), name.as_str()),
                _ => anyhow::bail!("usage: aloft get [execution|task|workflow|launchplan] NAME"),
            };
            let id = entity_id(cli, name, version.as_deref());
            match kind {
                "execution" | "executions" => {
                    let execution = client
                        .get_execution(wire::GetExecutionRequest {
                            id: Some(execution_id(cli, name)),
                        })
                        .await
                        .map_err(api("get execution"))?
                        .into_inner();
                    render::print_execution(&execution);
                }
                "task" | "tasks" => {
                    let task = client
                        .get_task(wire::GetEntityRequest { id: Some(id) })
                        .await
                        .map_err(api("get task"))?
                        .into_inner();
                    print_entity("task", task.id.as_ref(), &task.spec_json)?;
                }
                "workflow" | "workflows" => {
                    let workflow = client
                        .get_workflow(wire::GetEntityRequest { id: Some(id) })
                        .await
                        .map_err(api("get workflow"))?
                        .into_inner();
                    print_entity("workflow", workflow.id.as_ref(), &workflow.spec_json)?;
                }
                "launchplan" | "launchplans" | "launch-plan" => {
                    let plan = client
                        .get_launch_plan(wire::GetEntityRequest { id: Some(id) })
                        .await
                        .map_err(api("get launch plan"))?
                        .into_inner();
                    print_entity("launch plan", plan.id.as_ref(), &plan.spec_json)?;
                }
                other => anyhow::bail!("unknown kind {other:?}; use execution, task, workflow or launchplan"),
            }
            Ok(0)
        }
        Command::List { what, limit } => {
            let entities = wire::ListEntitiesRequest {
                project: cli.project.clone(),
                domain: cli.domain.clone(),
                name: String::new(),
            };
            match what {
                ListKind::Executions => {
                    let response = client
                        .list_executions(wire::ListExecutionsRequest {
                            project: cli.project.clone(),
                            domain: cli.domain.clone(),
                            limit: *limit,
                        })
                        .await
                        .map_err(api("list executions"))?
                        .into_inner();
                    for execution in &response.executions {
                        render::print_execution_line(execution);
                    }
                }
                ListKind::Tasks => {
                    for task in client
                        .list_tasks(entities)
                        .await
                        .map_err(api("list tasks"))?
                        .into_inner()
                        .tasks
                    {
                        print_id_line(task.id.as_ref());
                    }
                }
                ListKind::Workflows => {
                    for workflow in client
                        .list_workflows(entities)
                        .await
                        .map_err(api("list workflows"))?
                        .into_inner()
                        .workflows
                    {
                        print_id_line(workflow.id.as_ref());
                    }
                }
                ListKind::Launchplans => {
                    for plan in client
                        .list_launch_plans(entities)
                        .await
                        .map_err(api("list launch plans"))?
                        .into_inner()
                        .launch_plans
                    {
                        print_id_line(plan.id.as_ref());
                    }
                }
                ListKind::Projects => {
                    for project in client
                        .list_projects(wire::ListProjectsRequest {})
                        .await
                        .map_err(api("list projects"))?
                        .into_inner()
                        .projects
                    {
                        println!(
                            "{:30}  {:40}  {}",
                            project.name,
                            project.domains.join(","),
                            project.description
                        );
                    }
                }
            }
            Ok(0)
        }
        Command::History { execution, json } => {
            let history = client
                .get_execution_history(wire::GetExecutionRequest {
                    id: Some(execution_id(cli, execution)),
                })
                .await
                .map_err(api("history"))?
                .into_inner();
            if *json {
                for event in &history.events {
                    let payload: serde_json::Value =
                        serde_json::from_str(&event.payload_json).unwrap_or(serde_json::Value::Null);
                    let line = serde_json::json!({
                        "log_partition": event.log_partition,
                        "log_offset": event.log_offset,
                        "stream": event.stream,
                        "seq": event.seq,
                        "writer_epoch": event.writer_epoch,
                        "occurred_at_millis": event.occurred_at_millis,
                        "kind": event.kind,
                        "topic": event.topic,
                        "summary": event.summary,
                        "event": payload,
                    });
                    println!("{line}");
                }
            } else {
                render::print_history(&history.events);
            }
            Ok(0)
        }
        Command::Terminate { execution, reason } => {
            let id = execution_id(cli, execution);
            client
                .terminate_execution(wire::TerminateExecutionRequest {
                    id: Some(id.clone()),
                    reason: reason.clone().unwrap_or_default(),
                })
                .await
                .map_err(api("terminate"))?;
            println!(
                "termination of {}/{}/{} requested",
                id.project, id.domain, id.name
            );
            Ok(0)
        }
        Command::Signal {
            execution,
            signal,
            value,
        } => {
            let id = execution_id(cli, execution);
            client
                .signal_execution(wire::SignalExecutionRequest {
                    id: Some(id.clone()),
                    signal: signal.clone(),
                    value: value.clone().unwrap_or_default(),
                })
                .await
                .map_err(api("signal"))?;
            println!("signal {signal} sent to {}/{}/{}", id.project, id.domain, id.name);
            Ok(0)
        }
        Command::Approve { execution, node } => {
            let id = execution_id(cli, execution);
            client
                .approve_execution(wire::ApproveExecutionRequest {
                    id: Some(id.clone()),
                    node: node.clone(),
                })
                .await
                .map_err(api("approve"))?;
            println!("node {node} of {}/{}/{} approved", id.project, id.domain, id.name);
            Ok(0)
        }
        Command::Notify { command } => crate::notify::run(cli, client, command).await,
        Command::Quota {
            command: QuotaCommand::Pool { name, limit },
        } => {
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
        Command::Quota {
            command: QuotaCommand::Set { weight, max_running },
        } => {
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
        Command::Project { command } => {
            match command {
                ProjectCommand::Create {
                    name,
                    description,
                    domains,
                } => {
                    let response = client
                        .create_project(wire::CreateProjectRequest {
                            project: Some(wire::Project {
                                name: name.clone(),
                                description: description.clone(),
                                domains: domains.clone(),
                            }),
                        })
                        .await
                        .map_err(api("create project"))?
                        .into_inner();
                    let outcome = if response.outcome == wire::WriteOutcome::Created as i32 {
                        "created"
                    } else {
                        "already exists, unchanged"
                    };
                    println!("project {name}: {outcome}");
                }
                ProjectCommand::List => {
                    for project in client
                        .list_projects(wire::ListProjectsRequest {})
                        .await
                        .map_err(api("list projects"))?
                        .into_inner()
                        .projects
                    {
                        println!("{:30}  {}", project.name, project.domains.join(","));
                    }
                }
            }
            Ok(0)
        }
        Command::Relaunch {
            execution,
            inputs,
            name,
            wait,
        } => {
            let created = client
                .relaunch_execution(wire::RelaunchExecutionRequest {
                    id: Some(execution_id(cli, execution)),
                    name: name.clone().unwrap_or_default(),
                    text_inputs: inputs.iter().cloned().collect(),
                })
                .await
                .map_err(api("relaunch"))?
                .into_inner();
            let id = created.id.unwrap_or_default();
            println!(
                "started execution {}/{}/{} (relaunch of {execution})",
                id.project, id.domain, id.name
            );
            if !(*wait || embedded) {
                return Ok(0);
            }
            let finished = follow(client, &id).await?;
            render::print_execution(&finished);
            Ok(if finished.phase == wire::ExecutionPhase::Succeeded as i32 {
                0
            } else {
                1
            })
        }
        Command::Recover {
            execution,
            name,
            wait,
        } => {
            let created = client
                .recover_execution(wire::RecoverExecutionRequest {
                    id: Some(execution_id(cli, execution)),
                    name: name.clone().unwrap_or_default(),
                })
                .await
                .map_err(api("recover"))?
                .into_inner();
            let id = created.id.unwrap_or_default();
            println!(
                "started execution {}/{}/{} (recovery of {execution})",
                id.project, id.domain, id.name
            );
            if !(*wait || embedded) {
                return Ok(0);
            }
            let finished = follow(client, &id).await?;
            render::print_execution(&finished);
            Ok(if finished.phase == wire::ExecutionPhase::Succeeded as i32 {
                0
            } else {
                1
            })
        }
        Command::Launchplan { command } => {
            let (name, version, activate) = match command {
                LaunchPlanCommand::Activate { name, version } => (name, version, true),
                LaunchPlanCommand::Deactivate { name, version } => (name, version, false),
            };
            let request = wire::GetEntityRequest {
                id: Some(entity_id(cli, name, Some(version))),
            };
            let plan = if activate {
                client
                    .activate_launch_plan(request)
                    .await
                    .map_err(api("activate"))?
            } else {
                client
                    .deactivate_launch_plan(request)
                    .await
                    .map_err(api("deactivate"))?
            }
            .into_inner();
            let state = if plan.active { "active" } else { "inactive" };
            println!("launch plan {name}@{version} is {state}");
            Ok(0)
        }
        Command::Schedules => {
            print_schedules(cli, client).await?;
            Ok(0)
        }
        Command::Dev { .. } | Command::Admin { .. } | Command::Lineage { .. } | Command::Cache { .. } => {
            Ok(0)
        }
    }
}

async fn register_file(
    cli: &Cli,
    client: &mut AdminClient,
    path: &Path,
) -> anyhow::Result<Vec<crate::specs::Registered>> {
    let documents = read_spec_file(path)?;
    let registered = register_documents(client, &cli.project, &cli.domain, documents)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for item in &registered {
        let outcome = if item.created { "registered" } else { "unchanged" };
        if item.kind == "project" {
            println!("{outcome} project {}", item.id.project);
        } else {
            println!("{outcome} {} {}@{}", item.kind, item.id.name, item.id.version);
        }
    }
    Ok(registered)
}

async fn resolve_target(
    cli: &Cli,
    client: &mut AdminClient,
    name: &str,
    version: Option<&str>,
) -> anyhow::Result<(String, wire::Identifier)> {
    let id = entity_id(cli, name, version);
    if let Ok(plan) = client
        .get_launch_plan(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
    {
        return Ok((
            "launch plan".to_string(),
            plan.into_inner().id.unwrap_or_default(),
        ));
    }
    if let Ok(workflow) = client
        .get_workflow(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
    {
        return Ok((
            "workflow".to_string(),
            workflow.into_inner().id.unwrap_or_default(),
        ));
    }
    if let Ok(task) = client
        .get_task(wire::GetEntityRequest { id: Some(id.clone()) })
        .await
    {
        return Ok(("task".to_string(), task.into_inner().id.unwrap_or_default()));
    }
    anyhow::bail!(
        "{name:?} is neither a file nor a launch plan, workflow or task registered in {}/{}",
        cli.project,
        cli.domain
    )
}

/// Polls the execution and prints each node's phase changes until it finishes.
async fn follow(client: &mut AdminClient, id: &wire::ExecutionIdentifier) -> anyhow::Result<wire::Execution> {
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    loop {
        let execution = client
            .get_execution(wire::GetExecutionRequest { id: Some(id.clone()) })
            .await
            .map_err(api("following the execution"))?
            .into_inner();
        for node in &execution.nodes {
            if seen.get(&node.node_id) != Some(&node.phase) {
                seen.insert(node.node_id.clone(), node.phase);
                let phase = render::node_phase(node.phase);
                if phase != "PENDING" && phase != "QUEUED" || node.attempts > 0 {
                    eprintln!("  {:20} {}", node.node_id, phase);
                }
            }
        }
        if render::is_terminal(execution.phase) {
            return Ok(execution);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn print_entity(kind: &str, id: Option<&wire::Identifier>, spec_json: &str) -> anyhow::Result<()> {
    if let Some(id) = id {
        println!("{kind} {}/{}/{}@{}", id.project, id.domain, id.name, id.version);
    }
    let spec: serde_json::Value = serde_json::from_str(spec_json)?;
    print!("{}", serde_yaml::to_string(&spec)?);
    Ok(())
}

fn print_id_line(id: Option<&wire::Identifier>) {
    if let Some(id) = id {
        println!("{:30}  {}", id.name, id.version);
    }
}

async fn print_schedules(cli: &Cli, client: &mut AdminClient) -> anyhow::Result<()> {
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
