//! What each `aloft` command does, one file per command: operator commands (`admin`, `dev`) work on the
//! backends directly; the others talk to admin (and the catalog) through their gRPC APIs, in-process or
//! remote alike. This file only dispatches; `shared` holds what several commands use.

mod access;
mod admin;
mod approve;
mod catalog;
mod dev;
mod download;
mod get;
mod history;
mod launchplan;
mod list;
mod logs;
mod pod_data;
mod project;
mod quota;
mod recover;
mod register;
mod relaunch;
mod run;
mod schedules;
mod shared;
mod signal;
mod terminate;

use crate::args::*;
use crate::client::{AdminClient, Connection};

/// Runs one parsed command line; the exit code is 0 on success, 1 when an awaited execution did not
/// succeed.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Dev {
            listen,
            catalog_listen,
            blob_store,
            containers,
        } => {
            return dev::run(
                &cli,
                listen,
                catalog_listen,
                blob_store.as_deref(),
                containers.clone(),
            )
            .await;
        }
        Command::Admin { command } if !matches!(command, AdminCommand::Audit { .. }) => {
            return admin::run(&cli, command).await
        }
        Command::Login { with_token: true } => return access::login_with_token(),
        Command::Logout => return access::logout(),
        _ => {}
    }
    crate::client::use_credential(cli.token.clone().or_else(crate::client::stored_credential));
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
            catalog::run(&cli, connection.catalog_url.as_deref()).await
        }
        _ => run_command(&cli, &mut connection.client, embedded).await,
    };
    connection.close().await?;
    result
}

async fn run_command(cli: &Cli, client: &mut AdminClient, embedded: bool) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Register { paths, files } => {
            let all: Vec<_> = files.iter().chain(paths).cloned().collect();
            register::run(cli, client, embedded, &all).await
        }
        Command::Run(args) => run::run(cli, client, embedded, args).await,
        Command::Get {
            args,
            output: Some(output),
            node,
            ..
        } => {
            let execution = args.last().map(String::as_str).unwrap_or_default();
            let what = download::Wanted {
                name: output,
                node: node.as_deref(),
                input: false,
                path: None,
            };
            download::run(cli, client, execution, what, None).await
        }
        Command::Get { args, version, .. } => get::run(cli, client, embedded, args, version).await,
        Command::Download {
            execution,
            name,
            node,
            input,
            path,
            to,
            url,
        } => {
            let what = download::Wanted {
                name,
                node: node.as_deref(),
                input: *input,
                path: path.as_deref(),
            };
            if *url {
                download::print_url(cli, client, execution, what).await
            } else {
                download::run(cli, client, execution, what, to.as_deref()).await
            }
        }
        Command::List { what, limit, filters } => {
            list::run(cli, client, embedded, what, limit, filters).await
        }
        Command::History { execution, json } => history::run(cli, client, embedded, execution, json).await,
        Command::Logs {
            execution,
            node,
            attempt,
            follow,
        } => logs::run(cli, client, execution, node, *attempt, *follow).await,
        Command::Terminate { execution, reason } => {
            terminate::run(cli, client, embedded, execution, reason).await
        }
        Command::Signal {
            execution,
            signal,
            value,
        } => signal::run(cli, client, embedded, execution, signal, value).await,
        Command::Approve { execution, node } => approve::run(cli, client, embedded, execution, node).await,
        Command::Notify { command } => crate::notify::run(cli, client, command).await,
        Command::Project { command } => project::run(cli, client, embedded, command).await,
        Command::Relaunch {
            execution,
            inputs,
            name,
            wait,
        } => relaunch::run(cli, client, embedded, execution, inputs, name, wait).await,
        Command::Recover {
            execution,
            name,
            wait,
        } => recover::run(cli, client, embedded, execution, name, wait).await,
        Command::Launchplan { command } => launchplan::run(cli, client, embedded, command).await,
        Command::Schedules => schedules::run(cli, client, embedded).await,
        Command::Quota { command } => quota::run(cli, client, command).await,
        Command::Apikey { command } => access::api_key(cli, client, command).await,
        Command::Rolebinding { command } => access::role_binding(cli, client, command).await,
        Command::Whoami => access::who_am_i(client).await,
        Command::Login { .. } => access::login(client).await,
        Command::Admin {
            command:
                AdminCommand::Audit {
                    since,
                    subject,
                    limit,
                },
        } => access::audit(cli, client, *since, subject.as_deref(), *limit).await,
        Command::Dev { .. }
        | Command::Admin { .. }
        | Command::Lineage { .. }
        | Command::Cache { .. }
        | Command::Logout => Ok(0),
    }
}
