//! `aloft apikey`, `aloft rolebinding`, `aloft whoami`, `aloft admin audit`, `aloft login` / `logout`: who may
//! do what in a project, and who did what.

use std::io::Read;

use aloft_proto::v1 as wire;

use crate::args::*;
use crate::client::AdminClient;

use super::shared::*;

fn millis_text(millis: i64) -> String {
    if millis == 0 {
        return "-".to_string();
    }
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| millis.to_string())
}

fn principal_text(principal: Option<&wire::Principal>) -> String {
    principal.map_or_else(|| "-".to_string(), crate::render::principal_text)
}

pub(super) async fn api_key(
    cli: &Cli,
    client: &mut AdminClient,
    command: &ApiKeyCommand,
) -> anyhow::Result<i32> {
    match command {
        ApiKeyCommand::Create {
            role,
            for_domain,
            name,
            expires,
        } => {
            let created = client
                .create_api_key(wire::CreateApiKeyRequest {
                    project: cli.project.clone(),
                    domain: for_domain.clone().unwrap_or_default(),
                    role: role.clone(),
                    name: name.clone().unwrap_or_default(),
                    expires_in_seconds: expires.map(|d| d.as_secs().max(1) as i64).unwrap_or(0),
                })
                .await
                .map_err(api("apikey create"))?
                .into_inner();
            let key = created.key.unwrap_or_default();
            eprintln!(
                "API key {} ({}) for {}{}: role {}, expires {}. It is shown once; only a digest of it is kept:",
                key.id,
                key.name,
                key.project,
                if key.domain.is_empty() { String::new() } else { format!("/{}", key.domain) },
                key.role,
                if key.expires_at_millis == 0 { "never".to_string() } else { millis_text(key.expires_at_millis) }
            );
            println!("{}", created.secret);
            Ok(0)
        }
        ApiKeyCommand::List => {
            let keys = client
                .list_api_keys(wire::ListApiKeysRequest {
                    project: cli.project.clone(),
                })
                .await
                .map_err(api("apikey list"))?
                .into_inner()
                .keys;
            println!(
                "{:<14} {:<20} {:<12} {:<10} {:<20} {:<20} {:<20} CREATED BY",
                "ID", "NAME", "DOMAIN", "ROLE", "CREATED", "EXPIRES", "REVOKED"
            );
            for key in keys {
                println!(
                    "{:<14} {:<20} {:<12} {:<10} {:<20} {:<20} {:<20} {}",
                    key.id,
                    key.name,
                    if key.domain.is_empty() { "*" } else { &key.domain },
                    key.role,
                    millis_text(key.created_at_millis),
                    millis_text(key.expires_at_millis),
                    millis_text(key.revoked_at_millis),
                    key.created_by
                );
            }
            Ok(0)
        }
        ApiKeyCommand::Revoke { id } => {
            client
                .revoke_api_key(wire::RevokeApiKeyRequest {
                    project: cli.project.clone(),
                    id: id.clone(),
                })
                .await
                .map_err(api("apikey revoke"))?;
            println!("API key {id} revoked: every admin replica refuses it within seconds");
            Ok(0)
        }
    }
}

pub(super) async fn role_binding(
    cli: &Cli,
    client: &mut AdminClient,
    command: &RoleBindingCommand,
) -> anyhow::Result<i32> {
    let (member, role, domain, remove) = match command {
        RoleBindingCommand::List => {
            let bindings = client
                .list_role_bindings(wire::ListRoleBindingsRequest {
                    project: cli.project.clone(),
                })
                .await
                .map_err(api("rolebinding list"))?
                .into_inner()
                .bindings;
            println!("{:<40} {:<12} {:<10} SOURCE", "MEMBER", "DOMAIN", "ROLE");
            for b in bindings {
                println!(
                    "{:<40} {:<12} {:<10} {}",
                    b.member,
                    if b.domain.is_empty() { "*" } else { &b.domain },
                    b.role,
                    b.source
                );
            }
            return Ok(0);
        }
        RoleBindingCommand::Add {
            member,
            role,
            for_domain,
        } => (member, role, for_domain, false),
        RoleBindingCommand::Remove {
            member,
            role,
            for_domain,
        } => (member, role, for_domain, true),
    };
    client
        .bind_role(wire::BindRoleRequest {
            binding: Some(wire::RoleBinding {
                member: member.clone(),
                project: cli.project.clone(),
                domain: domain.clone().unwrap_or_default(),
                role: role.clone(),
                source: String::new(),
            }),
            remove,
        })
        .await
        .map_err(api("rolebinding"))?;
    println!(
        "{member} {} {role} on {}{}",
        if remove { "no longer holds" } else { "holds" },
        cli.project,
        domain.as_ref().map(|d| format!("/{d}")).unwrap_or_default()
    );
    Ok(0)
}

pub(super) async fn who_am_i(client: &mut AdminClient) -> anyhow::Result<i32> {
    let me = client
        .who_am_i(wire::WhoAmIRequest {})
        .await
        .map_err(api("whoami"))?
        .into_inner();
    if !me.auth_enabled {
        println!("authentication is off on this admin: every caller is anonymous and may do everything");
        return Ok(0);
    }
    println!("{}", principal_text(me.principal.as_ref()));
    if !me.groups.is_empty() {
        println!("groups: {}", me.groups.join(", "));
    }
    if me.all_projects {
        println!("projects: all (platform admin)");
    } else {
        println!(
            "projects: {}",
            if me.projects.is_empty() {
                "none".to_string()
            } else {
                me.projects.join(", ")
            }
        );
    }
    Ok(0)
}

pub(super) async fn audit(
    cli: &Cli,
    client: &mut AdminClient,
    since: Option<std::time::Duration>,
    subject: Option<&str>,
    limit: u32,
) -> anyhow::Result<i32> {
    let since_millis = since
        .map(|d| chrono::Utc::now().timestamp_millis() - d.as_millis() as i64)
        .unwrap_or(0);
    let events = client
        .list_audit_events(wire::ListAuditEventsRequest {
            project: cli.project.clone(),
            since_millis,
            subject: subject.unwrap_or_default().to_string(),
            limit,
        })
        .await
        .map_err(api("audit"))?
        .into_inner()
        .events;
    println!("{:<20} {:<40} {:<24} TARGET", "WHEN", "WHO", "ACTION");
    for event in events {
        println!(
            "{:<20} {:<40} {:<24} {}",
            millis_text(event.occurred_at_millis),
            principal_text(event.principal.as_ref()),
            event.action,
            event.target
        );
    }
    Ok(0)
}

/// `aloft login`: an authorization-code login with PKCE at the issuer admin names, through the browser;
/// the token is kept for later commands.
pub(super) async fn login(client: &mut AdminClient) -> anyhow::Result<i32> {
    let info = client
        .get_auth_info(wire::GetAuthInfoRequest {})
        .await
        .map_err(api("login"))?
        .into_inner();
    if !info.enabled {
        eprintln!("authentication is off on this admin: nothing to log in to");
        return Ok(0);
    }
    if info.issuer.is_empty() {
        anyhow::bail!(
            "this admin takes API keys and service tokens but has no OIDC issuer: use aloft login --with-token"
        );
    }
    let token = crate::login::authorization_code(&info.issuer, &info.client_id, |url| {
        eprintln!("open this URL in a browser to log in (waiting for it on loopback):\n{url}");
    })
    .await?;
    store_credential(&token)?;
    Ok(0)
}

/// `aloft login --with-token`: keeps the credential read from stdin, readable by the user only.
pub(super) fn login_with_token() -> anyhow::Result<i32> {
    let mut credential = String::new();
    std::io::stdin().read_to_string(&mut credential)?;
    let credential = credential.trim();
    if credential.is_empty() {
        anyhow::bail!("no credential on stdin");
    }
    store_credential(credential)?;
    Ok(0)
}

fn store_credential(credential: &str) -> anyhow::Result<()> {
    let path = crate::client::credential_path()
        .ok_or_else(|| anyhow::anyhow!("no config directory: set HOME or XDG_CONFIG_HOME"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(&path, credential)?;
    eprintln!("credential stored in {} (only you can read it)", path.display());
    Ok(())
}

pub(super) fn logout() -> anyhow::Result<i32> {
    if let Some(path) = crate::client::credential_path() {
        match std::fs::remove_file(&path) {
            Ok(()) => eprintln!("removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("no stored credential"),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }
    Ok(0)
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}
