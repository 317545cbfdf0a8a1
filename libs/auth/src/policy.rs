//! Roles, permissions and bindings. Default deny: a principal holds a permission on a project only through a
//! binding of a role that grants it (or as a platform admin).

use crate::error::ConfigError;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What an RPC needs. Every RPC and REST route maps to exactly one (admin's `guard` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read everything of a project: entities, executions, history, data and logs.
    Read,
    /// Launch, relaunch, recover, terminate and signal executions.
    Execute,
    /// Approve a gate.
    Approve,
    /// Register tasks, workflows and launch plans; activate and deactivate schedules.
    Register,
    /// Quotas, notification defaults, cache eviction, API keys, role bindings and the audit trail.
    Administer,
    /// Above projects: create projects, define pools, bind platform admins.
    Platform,
    /// What only Aloft's own services do (the propeller's cache reservations and results).
    Service,
    /// Any authenticated caller (listing projects answers only those it may read).
    Authenticated,
    /// Anyone, without credentials: how to log in.
    Public,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Execute => "execute",
            Permission::Approve => "approve",
            Permission::Register => "register",
            Permission::Administer => "administer",
            Permission::Platform => "platform",
            Permission::Service => "service",
            Permission::Authenticated => "authenticated",
            Permission::Public => "public",
        }
    }

    /// The roles that grant it, for the message of a refusal.
    pub fn granted_by(self) -> &'static str {
        match self {
            Permission::Read => "viewer, operator, approver, publisher or admin of the project",
            Permission::Execute => "operator or admin of the project",
            Permission::Approve => "approver or admin of the project",
            Permission::Register => "publisher or admin of the project",
            Permission::Administer => "admin of the project",
            Permission::Platform => "platform admin",
            Permission::Service => "an Aloft service credential",
            Permission::Authenticated => "any authenticated caller",
            Permission::Public => "anyone",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role on a project (or one domain of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Publisher,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Publisher,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, ConfigError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| ConfigError::UnknownRole {
                role: text.to_string(),
            })
    }

    /// Every role reads the project; each adds its own verbs; admin holds them all.
    pub fn grants(self, permission: Permission) -> bool {
        match permission {
            Permission::Read | Permission::Authenticated | Permission::Public => true,
            Permission::Execute => matches!(self, Role::Operator | Role::Admin),
            Permission::Approve => matches!(self, Role::Approver | Role::Admin),
            Permission::Register => matches!(self, Role::Publisher | Role::Admin),
            Permission::Administer => self == Role::Admin,
            Permission::Platform | Permission::Service => false,
        }
    }
}

/// Who a binding is for: one subject (a token's `sub`, `apikey:<id>`), or everyone in an IdP group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Member {
    Subject(String),
    Group(String),
}

impl Member {
    /// `subject:<sub>` or `group:<name>`.
    pub fn parse(text: &str) -> Result<Member, ConfigError> {
        match text.split_once(':') {
            Some(("subject", sub)) if !sub.is_empty() => Ok(Member::Subject(sub.to_string())),
            Some(("group", group)) if !group.is_empty() => Ok(Member::Group(group.to_string())),
            _ => Err(ConfigError::Member {
                member: text.to_string(),
            }),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Subject(sub) => write!(f, "subject:{sub}"),
            Member::Group(group) => write!(f, "group:{group}"),
        }
    }
}

/// `member` holds `role` on `project` (every domain when `domain` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    pub member: Member,
    pub project: String,
    #[serde(default)]
    pub domain: String,
    pub role: Role,
}

/// What a request touches: nothing in particular, one project, or one domain of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Project(String),
    Domain(String, String),
}

impl Scope {
    pub fn project(&self) -> Option<&str> {
        match self {
            Scope::Platform => None,
            Scope::Project(project) | Scope::Domain(project, _) => Some(project),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Platform => f.write_str("the platform"),
            Scope::Project(project) => write!(f, "project {project}"),
            Scope::Domain(project, domain) => write!(f, "{project}/{domain}"),
        }
    }
}

/// Who holds what: platform admins, and role bindings (from config and from the API).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub platform_admins: Vec<Member>,
    pub bindings: Vec<Binding>,
}

/// The members a caller counts as: itself and its groups.
pub struct Membership<'a> {
    pub subject: &'a str,
    pub groups: &'a [String],
}

impl Membership<'_> {
    fn is(&self, member: &Member) -> bool {
        match member {
            Member::Subject(sub) => sub == self.subject,
            Member::Group(group) => self.groups.iter().any(|g| g == group),
        }
    }
}

impl Policy {
    pub fn is_platform_admin(&self, who: &Membership<'_>) -> bool {
        self.platform_admins.iter().any(|member| who.is(member))
    }

    /// Whether `who` holds `permission` on `scope` through this policy's bindings (platform admins hold
    /// every project permission).
    pub fn allows(&self, who: &Membership<'_>, permission: Permission, scope: &Scope) -> bool {
        if permission == Permission::Service {
            return false;
        }
        if self.is_platform_admin(who) {
            return true;
        }
        if matches!(permission, Permission::Authenticated | Permission::Public) {
            return true;
        }
        if permission == Permission::Platform {
            return false;
        }
        roles_allow(self.bindings.iter(), who, permission, scope)
    }

    /// The projects `who` may read something of (`None`: every project, for a platform admin).
    pub fn readable_projects(&self, who: &Membership<'_>) -> Option<Vec<String>> {
        if self.is_platform_admin(who) {
            return None;
        }
        let mut projects: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| who.is(&b.member))
            .map(|b| b.project.clone())
            .collect();
        projects.sort();
        projects.dedup();
        Some(projects)
    }
}

/// Whether one of `bindings` of `who` grants `permission` on `scope`. A domain binding covers only its
/// domain, so a project-wide request needs a project-wide binding.
pub fn roles_allow<'a>(
    bindings: impl Iterator<Item = &'a Binding>,
    who: &Membership<'_>,
    permission: Permission,
    scope: &Scope,
) -> bool {
    let (project, domain) = match scope {
        Scope::Platform => return false,
        Scope::Project(project) => (project.as_str(), None),
        Scope::Domain(project, domain) => (project.as_str(), Some(domain.as_str())),
    };
    bindings.into_iter().any(|binding| {
        binding.project == project
            && (binding.domain.is_empty() || Some(binding.domain.as_str()) == domain)
            && who.is(&binding.member)
            && binding.role.grants(permission)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(member: &str, project: &str, domain: &str, role: Role) -> Binding {
        Binding {
            member: Member::parse(member).expect("member"),
            project: project.into(),
            domain: domain.into(),
            role,
        }
    }

    #[test]
    fn roles_grant_reading_and_their_own_verbs_only() {
        assert!(Role::Viewer.grants(Permission::Read));
        assert!(!Role::Viewer.grants(Permission::Execute));
        assert!(Role::Operator.grants(Permission::Execute));
        assert!(!Role::Operator.grants(Permission::Approve));
        assert!(Role::Approver.grants(Permission::Approve));
        assert!(!Role::Publisher.grants(Permission::Execute));
        assert!(Role::Admin.grants(Permission::Administer));
        assert!(!Role::Admin.grants(Permission::Platform));
        assert!(Role::parse("owner")
            .unwrap_err()
            .to_string()
            .contains("viewer, operator"));
    }

    #[test]
    fn bindings_hold_for_their_project_and_domain_and_nothing_else() {
        let policy = Policy {
            platform_admins: vec![Member::Group("platform".into())],
            bindings: vec![
                binding("group:ml", "ml", "", Role::Operator),
                binding("subject:ada", "ml", "production", Role::Approver),
            ],
        };
        let ml = ["ml".to_string()];
        let member = Membership {
            subject: "bob",
            groups: &ml,
        };
        let ml_dev = Scope::Domain("ml".into(), "development".into());
        assert!(policy.allows(&member, Permission::Execute, &ml_dev));
        assert!(!policy.allows(&member, Permission::Approve, &ml_dev));
        assert!(!policy.allows(&member, Permission::Read, &Scope::Project("finance".into())));
        assert!(!policy.allows(&member, Permission::Platform, &Scope::Platform));
        let ada = Membership {
            subject: "ada",
            groups: &[],
        };
        assert!(policy.allows(
            &ada,
            Permission::Approve,
            &Scope::Domain("ml".into(), "production".into())
        ));
        assert!(!policy.allows(&ada, Permission::Approve, &ml_dev));
        // A domain binding does not reach the whole project.
        assert!(!policy.allows(&ada, Permission::Read, &Scope::Project("ml".into())));
        let platform = ["platform".to_string()];
        let root = Membership {
            subject: "root",
            groups: &platform,
        };
        assert!(policy.allows(&root, Permission::Platform, &Scope::Platform));
        assert!(policy.allows(&root, Permission::Administer, &Scope::Project("finance".into())));
        assert!(!policy.allows(&root, Permission::Service, &Scope::Platform));
        assert_eq!(policy.readable_projects(&member), Some(vec!["ml".to_string()]));
        assert_eq!(policy.readable_projects(&root), None);
    }
}
