//! The auth configuration file (`--auth-config FILE`, YAML): the OIDC issuer, platform admins, role bindings
//! from IdP groups, service credentials and the approval policy. Bindings made through the API
//! (`aloft rolebinding`) are registry events and add to these.
//!
//! ```yaml
//! oidc:
//!   issuer: https://login.example.com/realms/aloft
//!   audience: aloft
//!   groups_claim: groups        # default
//!   name_claim: email           # default
//! platform_admins: [group:platform-team]
//! bindings:
//!   - {member: group:ml-team, project: ml, role: operator}
//!   - {member: subject:8c1f-..., project: ml, domain: production, role: approver}
//! service_tokens:               # sha256 (hex) of each service's token; the token itself stays with the service
//!   - {name: propeller, sha256: 5e88...}
//! require_distinct_approver: true  # or a list of projects: [ml, finance]
//! ```

use crate::error::ConfigError;
use std::path::Path;

use serde::Deserialize;

use crate::oidc::OidcSettings;
use crate::policy::{Binding, Member, Policy, Role};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
    #[serde(default)]
    pub platform_admins: Vec<String>,
    #[serde(default)]
    pub bindings: Vec<BindingConfig>,
    #[serde(default)]
    pub service_tokens: Vec<ServiceToken>,
    /// The launcher of an execution may not approve its gates: another person must (in every project, or in
    /// those listed).
    #[serde(default)]
    pub require_distinct_approver: DistinctApprover,
}

/// Where an execution's launcher may not approve it: nowhere, everywhere, or in the projects listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DistinctApprover {
    Everywhere(bool),
    Projects(Vec<String>),
}

impl Default for DistinctApprover {
    fn default() -> Self {
        DistinctApprover::Everywhere(false)
    }
}

impl DistinctApprover {
    pub fn applies_to(&self, project: &str) -> bool {
        match self {
            DistinctApprover::Everywhere(on) => *on,
            DistinctApprover::Projects(projects) => projects.iter().any(|p| p == project),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub member: String,
    pub project: String,
    #[serde(default)]
    pub domain: String,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceToken {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

impl AuthConfig {
    pub fn load(path: &Path) -> Result<AuthConfig, ConfigError> {
        let unreadable = |reason: String| ConfigError::Unreadable {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let config: AuthConfig = serde_yaml::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
        config.policy().map_err(ConfigError::in_file(path))?;
        for token in &config.service_tokens {
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::in_file(path)(ConfigError::ServiceTokenDigest {
                    name: token.name.clone(),
                }));
            }
        }
        Ok(config)
    }

    /// Whether callers must authenticate at all.
    pub fn enabled(&self) -> bool {
        self.oidc.is_some() || !self.service_tokens.is_empty() || !self.platform_admins.is_empty()
    }

    /// The platform admins and bindings this file grants, each checked.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let platform_admins = self
            .platform_admins
            .iter()
            .map(|m| Member::parse(m).map_err(ConfigError::at_entry("platform_admins")))
            .collect::<Result<Vec<_>, _>>()?;
        let bindings = self
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| {
                Ok(Binding {
                    member: Member::parse(&b.member)
                        .map_err(ConfigError::at_entry(format!("bindings[{i}]")))?,
                    project: b.project.clone(),
                    domain: b.domain.clone(),
                    role: Role::parse(&b.role).map_err(ConfigError::at_entry(format!("bindings[{i}]")))?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Policy {
            platform_admins,
            bindings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_with_a_bad_role_or_member_is_refused_naming_the_entry() {
        let config: AuthConfig =
            serde_yaml::from_str("bindings:\n  - {member: group:ml, project: ml, role: owner}\n").unwrap();
        assert!(config
            .policy()
            .unwrap_err()
            .to_string()
            .contains("bindings[0]: unknown role \"owner\""));
        let config: AuthConfig = serde_yaml::from_str("platform_admins: [ada]\n").unwrap();
        assert!(config
            .policy()
            .unwrap_err()
            .to_string()
            .contains("subject:<sub> or group:<name>"));
        assert!(serde_yaml::from_str::<AuthConfig>("oidcc: {}\n").is_err());
        let some: AuthConfig = serde_yaml::from_str("require_distinct_approver: [ml]\n").unwrap();
        assert!(some.require_distinct_approver.applies_to("ml"));
        assert!(!some.require_distinct_approver.applies_to("finance"));
        let all: AuthConfig = serde_yaml::from_str("require_distinct_approver: true\n").unwrap();
        assert!(all.require_distinct_approver.applies_to("finance"));
        assert!(!AuthConfig::default().require_distinct_approver.applies_to("ml"));
    }
}

/// The flags of a service that authenticates its callers (admin, the catalog).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// Who may call: the OIDC issuer, platform admins, role bindings, service tokens (YAML; see
    /// `aloft_auth::config`; admin and the catalog read the same file). Without it authentication is off,
    /// which is allowed on a loopback address only.
    #[arg(long, env = "ALOFT_AUTH_CONFIG")]
    pub auth_config: Option<std::path::PathBuf>,
    /// Serve without authentication on a non-loopback address: anyone who reaches it may do everything.
    #[arg(long, env = "ALOFT_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

impl AuthArgs {
    /// The configuration a service listening on `listen` runs with (`None`: authentication off), or why it
    /// must not start: nobody may reach an unauthenticated API from another machine by accident.
    pub fn load(&self, listen: std::net::SocketAddr) -> Result<Option<AuthConfig>, ConfigError> {
        let config = match &self.auth_config {
            Some(path) => Some(AuthConfig::load(path).map_err(|e| ConfigError::Flag(Box::new(e)))?),
            None => None,
        };
        let authenticating = config.as_ref().is_some_and(AuthConfig::enabled);
        if !authenticating && !listen.ip().is_loopback() && !self.insecure_no_auth {
            return Err(ConfigError::OpenWithoutAuth { listen });
        }
        if !authenticating {
            tracing::warn!(%listen, "authentication is off: every caller may do everything");
        }
        Ok(config)
    }
}
