//! `aloft notify` (project/domain default rules) and the rule files `aloft run --notify-file` reads.

use std::path::Path;

use aloft_core::notify::{validate_rules, NotificationRule};
use aloft_proto::v1 as wire;

use crate::args::{Cli, NotifyCommand};
use crate::client::AdminClient;

/// Reads a YAML or JSON list of rules and checks what can be checked here (admin checks the secrets).
pub fn rules_json_from_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let rules: Vec<NotificationRule> = serde_yaml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a list of notification rules ({e}); each rule has phases and one of slack, email, webhook",
            path.display()
        )
    })?;
    validate_rules(&path.display().to_string(), &rules).map_err(|e| anyhow::anyhow!(e))?;
    Ok(serde_json::to_string(&rules)?)
}

pub async fn run(cli: &Cli, client: &mut AdminClient, command: &NotifyCommand) -> anyhow::Result<i32> {
    let (rules_json, all_domains) = match command {
        NotifyCommand::SetDefaults { file, all_domains } => (rules_json_from_file(file)?, *all_domains),
        NotifyCommand::ClearDefaults { all_domains } => ("[]".to_string(), *all_domains),
    };
    let domain = if all_domains {
        "*".to_string()
    } else {
        cli.domain.clone()
    };
    let response = client
        .set_notification_defaults(wire::SetNotificationDefaultsRequest {
            project: cli.project.clone(),
            domain: domain.clone(),
            rules_json,
        })
        .await
        .map_err(|status| anyhow::anyhow!("cannot set notification defaults: {}", status.message()))?
        .into_inner();
    let scope = if all_domains {
        format!("{} (every domain)", cli.project)
    } else {
        format!("{}/{domain}", cli.project)
    };
    println!("notification defaults of {scope}: {} rule(s)", response.rules);
    Ok(0)
}
