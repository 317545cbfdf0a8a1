//! Notification rules (on launch plans, per execution, and per project/domain as defaults), their
//! validation, the message templates and the deterministic delivery ids. Pure: resolving secrets and
//! sending belong to the notifier.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::ExecutionId;
use crate::invalid::SpecError;
use crate::phase::ExecutionPhase;

/// The execution phases a rule may name: the terminal ones, where a notification is meaningful.
pub const NOTIFIABLE_PHASES: [ExecutionPhase; 4] = [
    ExecutionPhase::Succeeded,
    ExecutionPhase::Failed,
    ExecutionPhase::TimedOut,
    ExecutionPhase::Aborted,
];

/// The variables a subject or body template may use.
pub const TEMPLATE_VARIABLES: [&str; 8] = [
    "project",
    "domain",
    "name",
    "phase",
    "error",
    "duration",
    "url",
    "launch_plan",
];

pub const DEFAULT_SUBJECT: &str = "[aloft] {{project}}/{{domain}} {{name}}: {{phase}}";
pub const DEFAULT_BODY: &str = "Execution {{name}} of launch plan {{launch_plan}} in {{project}}/{{domain}} \
finished {{phase}} after {{duration}}.\n\nError: {{error}}\n\n{{url}}\n";

/// One rule: when an execution ends in one of `phases`, notify through exactly one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationRule {
    /// Terminal phases, e.g. `[FAILED, TIMED_OUT]`.
    pub phases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
}

/// A Slack incoming webhook. The URL is itself a secret, so only its reference is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    /// `env:NAME` or `file:PATH` holding the incoming-webhook URL.
    pub webhook_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    pub to: Vec<String>,
    pub from: String,
    pub smtp: SmtpServer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl EmailChannel {
    pub fn subject_template(&self) -> &str {
        self.subject.as_deref().unwrap_or(DEFAULT_SUBJECT)
    }

    pub fn body_template(&self) -> &str {
        self.body.as_deref().unwrap_or(DEFAULT_BODY)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpServer {
    pub host: String,
    /// Defaults by `tls`: 25 (none), 587 (starttls), 465 (tls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Secret references (`env:NAME`, `file:PATH`); both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A PEM file of extra certificate authorities to trust for this server (a private CA), besides the
    /// public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl SmtpServer {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on a trusted network (or a local sink).
    None,
    #[default]
    Starttls,
    /// Implicit TLS (SMTPS).
    Tls,
}

/// A JSON POST of the event, signed with HMAC-SHA256 over the body (`X-Aloft-Signature: sha256=<hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub url: String,
    /// `env:NAME` or `file:PATH` holding the signing key.
    pub secret: String,
}

/// Why one field of a notification rule (a secret reference, a URL, a host, an address, a template) is
/// not valid; `SpecError` adds which rule and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{text:?} names no valid environment variable")]
    EnvName { text: String },
    #[error("{text:?} names no file")]
    NoFile { text: String },
    #[error(
        "{text:?} is not a secret reference; write env:NAME or file:PATH (secrets are never stored in plain text)"
    )]
    NotSecretRef { text: String },
    #[error("{url:?} {problem}")]
    Url { url: String, problem: UrlProblem },
    #[error("{host:?} is not a valid host name")]
    Host { host: String },
    #[error("{address:?} {problem}")]
    Address {
        address: String,
        problem: AddressProblem,
    },
    #[error("unclosed {{{{ in template {template:?}")]
    UnclosedTemplate { template: String },
    #[error("unknown template variable {{{{{name}}}}}; known: {}", TEMPLATE_VARIABLES.join(", "))]
    TemplateVariable { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("is not an http:// or https:// URL")]
    NotHttp,
    #[error("has no host")]
    NoHost,
    #[error("has an invalid port {0:?}")]
    Port(String),
    #[error("contains whitespace")]
    Whitespace,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressProblem {
    #[error("is not an email address (no @)")]
    NoAt,
    #[error("is not a valid email address")]
    Invalid,
    #[error("has an invalid domain")]
    Domain,
}

/// A reference to a secret: the secret itself never enters the log or the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<SecretRef, FieldError> {
        if let Some(name) = text.strip_prefix("env:") {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(FieldError::EnvName {
                    text: text.to_string(),
                });
            }
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(FieldError::NoFile {
                    text: text.to_string(),
                });
            }
            return Ok(SecretRef::File(path.to_string()));
        }
        Err(FieldError::NotSecretRef {
            text: text.to_string(),
        })
    }
}

/// The channel a rule uses, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRef<'a> {
    Slack(&'a SlackChannel),
    Email(&'a EmailChannel),
    Webhook(&'a WebhookChannel),
}

impl NotificationRule {
    /// The one channel of a validated rule.
    pub fn channel(&self) -> Option<ChannelRef<'_>> {
        match (&self.slack, &self.email, &self.webhook) {
            (Some(slack), None, None) => Some(ChannelRef::Slack(slack)),
            (None, Some(email), None) => Some(ChannelRef::Email(email)),
            (None, None, Some(webhook)) => Some(ChannelRef::Webhook(webhook)),
            _ => None,
        }
    }

    pub fn matches(&self, phase: ExecutionPhase) -> bool {
        self.phases.iter().any(|p| p == phase.as_str())
    }

    /// Every secret reference the rule holds, for checking at registration that each resolves.
    pub fn secret_refs(&self) -> Vec<&str> {
        match self.channel() {
            Some(ChannelRef::Slack(slack)) => vec![slack.webhook_url.as_str()],
            Some(ChannelRef::Webhook(webhook)) => vec![webhook.secret.as_str()],
            Some(ChannelRef::Email(email)) => email
                .smtp
                .username
                .iter()
                .chain(email.smtp.password.iter())
                .map(String::as_str)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The recipients of this rule: one delivery each.
    pub fn recipients(&self) -> Vec<String> {
        match self.channel() {
            Some(ChannelRef::Slack(slack)) => vec![format!("slack:{}", slack.webhook_url)],
            Some(ChannelRef::Webhook(webhook)) => vec![format!("webhook:{}", webhook.url)],
            Some(ChannelRef::Email(email)) => email.to.iter().map(|to| format!("email:{to}")).collect(),
            None => Vec::new(),
        }
    }

    /// Checks everything that does not need IO; `what` names the rule in errors.
    pub fn validate(&self, what: &str) -> Result<(), SpecError> {
        if self.phases.is_empty() {
            return Err(SpecError::invalid(
                what,
                format!("phases is empty; name at least one of {}", phase_names()),
            ));
        }
        for phase in &self.phases {
            if !NOTIFIABLE_PHASES.iter().any(|p| p.as_str() == phase) {
                return Err(SpecError::invalid(
                    what,
                    format!("unknown phase {phase:?}; expected one of {}", phase_names()),
                ));
            }
        }
        let channel = self
            .channel()
            .ok_or_else(|| SpecError::invalid(what, "give exactly one channel (slack, email or webhook)"))?;
        match channel {
            ChannelRef::Slack(slack) => {
                SecretRef::parse(&slack.webhook_url)
                    .map_err(|e| SpecError::invalid(what, format!("slack.webhook_url: {e}")))?;
            }
            ChannelRef::Webhook(webhook) => {
                validate_http_url(&webhook.url)
                    .map_err(|e| SpecError::invalid(what, format!("webhook.url: {e}")))?;
                SecretRef::parse(&webhook.secret)
                    .map_err(|e| SpecError::invalid(what, format!("webhook.secret: {e}")))?;
            }
            ChannelRef::Email(email) => {
                if email.to.is_empty() {
                    return Err(SpecError::invalid(what, "email.to is empty"));
                }
                for address in &email.to {
                    validate_email_address(address)
                        .map_err(|e| SpecError::invalid(what, format!("email.to: {e}")))?;
                }
                validate_email_address(&email.from)
                    .map_err(|e| SpecError::invalid(what, format!("email.from: {e}")))?;
                validate_host(&email.smtp.host)
                    .map_err(|e| SpecError::invalid(what, format!("email.smtp.host: {e}")))?;
                if email.smtp.ca_file.is_some() && email.smtp.tls == SmtpTls::None {
                    return Err(SpecError::invalid(
                        what,
                        "email.smtp.ca_file needs tls: starttls or tls",
                    ));
                }
                if email.smtp.port == Some(0) {
                    return Err(SpecError::invalid(
                        what,
                        "email.smtp.port must be between 1 and 65535",
                    ));
                }
                match (&email.smtp.username, &email.smtp.password) {
                    (Some(user), Some(password)) => {
                        SecretRef::parse(user)
                            .map_err(|e| SpecError::invalid(what, format!("email.smtp.username: {e}")))?;
                        SecretRef::parse(password)
                            .map_err(|e| SpecError::invalid(what, format!("email.smtp.password: {e}")))?;
                    }
                    (None, None) => {}
                    _ => {
                        return Err(SpecError::invalid(
                            what,
                            "email.smtp needs both username and password, or neither",
                        ))
                    }
                }
                check_template(email.subject_template())
                    .map_err(|e| SpecError::invalid(what, format!("email.subject: {e}")))?;
                check_template(email.body_template())
                    .map_err(|e| SpecError::invalid(what, format!("email.body: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Validates a list of rules, naming the rule by its position.
pub fn validate_rules(owner: &str, rules: &[NotificationRule]) -> Result<(), SpecError> {
    for (index, rule) in rules.iter().enumerate() {
        rule.validate(&format!("{owner} notification rule {}", index + 1))?;
    }
    Ok(())
}

fn phase_names() -> String {
    NOTIFIABLE_PHASES
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_http_url(url: &str) -> Result<(), FieldError> {
    let url_error = |problem| FieldError::Url {
        url: url.to_string(),
        problem,
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| url_error(UrlProblem::NotHttp))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(url_error(UrlProblem::NoHost));
    }
    if let Some(port) = host_port.rsplit_once("]:").map(|(_, p)| p).or_else(|| {
        if host_port.starts_with('[') {
            None
        } else {
            host_port.split_once(':').map(|(_, p)| p)
        }
    }) {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(url_error(UrlProblem::Port(port.to_string()))),
        }
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(url_error(UrlProblem::Whitespace));
    }
    validate_host(host)
}

fn validate_host(host: &str) -> Result<(), FieldError> {
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if valid {
        Ok(())
    } else {
        Err(FieldError::Host {
            host: host.to_string(),
        })
    }
}

fn validate_email_address(address: &str) -> Result<(), FieldError> {
    let address_error = |problem| FieldError::Address {
        address: address.to_string(),
        problem,
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(address_error(AddressProblem::NoAt));
    };
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';');
    if local.is_empty()
        || domain.is_empty()
        || address.chars().any(bad_char)
        || !domain.contains('.') && domain != "localhost"
    {
        return Err(address_error(AddressProblem::Invalid));
    }
    validate_host(domain).map_err(|_| address_error(AddressProblem::Domain))
}

/// The pieces of a template: text and `{{variable}}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Variable(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, FieldError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| FieldError::UnclosedTemplate {
            template: template.to_string(),
        })?;
        let name = after[..end].trim();
        if !TEMPLATE_VARIABLES.contains(&name) {
            return Err(FieldError::TemplateVariable {
                name: name.to_string(),
            });
        }
        pieces.push(Piece::Variable(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

pub fn check_template(template: &str) -> Result<(), FieldError> {
    parse_template(template).map(|_| ())
}

/// What a message says about the execution it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageContext {
    pub project: String,
    pub domain: String,
    pub name: String,
    /// `name@version` of the launch plan, or `-` when the execution ran a workflow or task directly.
    pub launch_plan: String,
    pub phase: String,
    pub error: String,
    pub duration_ms: i64,
    pub url: String,
    pub finished_at: i64,
}

impl MessageContext {
    fn variable(&self, name: &str) -> String {
        match name {
            "project" => self.project.clone(),
            "domain" => self.domain.clone(),
            "name" => self.name.clone(),
            "phase" => self.phase.clone(),
            "error" => {
                if self.error.is_empty() {
                    "none".to_string()
                } else {
                    self.error.clone()
                }
            }
            "duration" => format_duration(self.duration_ms),
            "url" => self.url.clone(),
            "launch_plan" => self.launch_plan.clone(),
            _ => String::new(),
        }
    }
}

/// Renders a template checked by `check_template`; an invalid one renders as itself.
pub fn render(template: &str, context: &MessageContext) -> String {
    match parse_template(template) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.to_string(),
                Piece::Variable(name) => context.variable(name),
            })
            .collect(),
        Err(_) => template.to_string(),
    }
}

/// `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub fn format_duration(millis: i64) -> String {
    let millis = millis.max(0);
    if millis < 1000 {
        format!("{millis} ms")
    } else if millis < 60_000 {
        format!("{:.1} s", millis as f64 / 1000.0)
    } else if millis < 3_600_000 {
        format!("{}m {:02}s", millis / 60_000, (millis / 1000) % 60)
    } else {
        format!("{}h {:02}m", millis / 3_600_000, (millis / 60_000) % 60)
    }
}

/// The Slack message text (mrkdwn).
pub fn slack_text(context: &MessageContext) -> String {
    let mut text = format!(
        "*{}* {}/{} execution `{}` (launch plan {}) after {}",
        context.phase,
        context.project,
        context.domain,
        context.name,
        context.launch_plan,
        format_duration(context.duration_ms)
    );
    if !context.error.is_empty() {
        text.push_str(&format!("\n>{}", context.error.replace('\n', "\n>")));
    }
    text.push_str(&format!("\n<{}|Open the execution>", context.url));
    text
}

/// The deterministic id of one delivery: the same event, rule and recipient always give the same id, so a
/// notifier that restarts recognizes what it already recorded.
pub fn delivery_id(event_id: &str, rule: &str, recipient: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [event_id, rule, recipient] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex_prefix(&hasher.finalize(), 16)
}

fn hex_prefix(bytes: &[u8], count: usize) -> String {
    bytes.iter().take(count).map(|b| format!("{b:02x}")).collect()
}

/// The rules in force for an execution: its own override when it has one (an empty override disables
/// every notification), otherwise its launch plan's rules followed by the project/domain defaults.
/// Each comes with a name that identifies it within the execution (for delivery ids).
pub fn effective_rules(
    override_rules: Option<&[NotificationRule]>,
    launch_plan_rules: &[NotificationRule],
    default_rules: &[NotificationRule],
) -> Vec<(String, NotificationRule)> {
    if let Some(rules) = override_rules {
        return rules
            .iter()
            .enumerate()
            .map(|(i, rule)| (format!("execution/{i}"), rule.clone()))
            .collect();
    }
    launch_plan_rules
        .iter()
        .enumerate()
        .map(|(i, rule)| (format!("launch_plan/{i}"), rule.clone()))
        .chain(
            default_rules
                .iter()
                .enumerate()
                .map(|(i, rule)| (format!("defaults/{i}"), rule.clone())),
        )
        .collect()
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    /// A transient failure; tried again at `retry_at`.
    WillRetry {
        reason: String,
        retry_at: i64,
    },
    /// A permanent failure (or the retry budget ran out): not tried again.
    GaveUp {
        reason: String,
    },
}

/// What the notifier records on `aloft.deliveries`: every attempt and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeliveryEvent {
    DeliveryAttempted {
        delivery_id: String,
        execution: ExecutionId,
        /// `slack`, `email` or `webhook`.
        channel: String,
        /// Who was notified; Slack webhooks appear by their secret reference, never the URL.
        recipient: String,
        attempt: u32,
        #[serde(flatten)]
        outcome: DeliveryOutcome,
        at: i64,
    },
}

impl DeliveryEvent {
    /// One stream per delivery; the attempt number is the sequence.
    pub fn stream(&self) -> String {
        match self {
            DeliveryEvent::DeliveryAttempted { delivery_id, .. } => format!("delivery/{delivery_id}"),
        }
    }

    pub fn summary(&self) -> String {
        match self {
            DeliveryEvent::DeliveryAttempted {
                channel,
                recipient,
                attempt,
                outcome,
                ..
            } => {
                let recipient = recipient.split_once(':').map(|(_, r)| r).unwrap_or(recipient);
                match outcome {
                    DeliveryOutcome::Delivered => {
                        format!("{channel} notification to {recipient} delivered (attempt {attempt})")
                    }
                    DeliveryOutcome::WillRetry { reason, .. } => format!(
                        "{channel} notification to {recipient} failed (attempt {attempt}), will retry: {reason}"
                    ),
                    DeliveryOutcome::GaveUp { reason } => format!(
                        "{channel} notification to {recipient} given up (attempt {attempt}): {reason}"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
