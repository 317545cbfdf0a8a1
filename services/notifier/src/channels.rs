//! Sending one delivery through its channel: Slack incoming webhooks and signed webhooks over HTTP(S),
//! email over SMTP (plain, STARTTLS or implicit TLS). Each send says whether it was delivered, failed for
//! now (worth retrying) or failed for good (a 4xx other than 429, a rejected address, a missing secret).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::PendingDelivery;
use aloft_core::notify::{render, slack_text, ChannelRef, EmailChannel, SmtpTls};
use hmac::{Hmac, Mac};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>` on webhook requests.
pub const SIGNATURE_HEADER: &str = "X-Aloft-Signature";
/// The header carrying the delivery id, so a receiver can recognise a repeat.
pub const DELIVERY_HEADER: &str = "X-Aloft-Delivery";

const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// A destination asking for a longer pause than this gets this: an hour is already a long silence.
const MAX_RETRY_AFTER_SECONDS: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered,
    /// Worth another try later (timeouts, 5xx, 429, SMTP 4xx).
    Transient(String),
    /// Worth another try, not before the wait the destination asked for (`Retry-After` on a 429 or 503).
    TransientAfter(String, Duration),
    /// Trying again would fail the same way.
    Permanent(String),
}

/// `sha256=<hex>` of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of a webhook delivery.
pub fn webhook_body(delivery: &PendingDelivery) -> serde_json::Value {
    let context = &delivery.context;
    serde_json::json!({
        "event": "execution.finished",
        "delivery_id": delivery.delivery_id,
        "project": context.project,
        "domain": context.domain,
        "execution": context.name,
        "launch_plan": context.launch_plan,
        "phase": context.phase,
        "error": if context.error.is_empty() { None } else { Some(&context.error) },
        "duration_ms": context.duration_ms,
        "url": context.url,
        "finished_at": context.finished_at,
    })
}

/// The key a rate limit applies to: one per destination (webhook URL or host, SMTP server).
pub fn destination(delivery: &PendingDelivery) -> String {
    match delivery.rule.channel() {
        Some(ChannelRef::Slack(slack)) => format!("slack:{}", slack.webhook_url),
        Some(ChannelRef::Webhook(webhook)) => {
            let host = webhook
                .url
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or(&webhook.url);
            format!("webhook:{host}")
        }
        Some(ChannelRef::Email(email)) => {
            format!("smtp:{}:{}", email.smtp.host, email.smtp.effective_port())
        }
        None => "invalid".to_string(),
    }
}

/// Sends deliveries; keeps one HTTP client and one SMTP connection pool per server.
pub struct Channels {
    http: reqwest::Client,
    smtp: Mutex<HashMap<String, AsyncSmtpTransport<Tokio1Executor>>>,
}

impl Channels {
    pub fn new() -> anyhow::Result<Channels> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("aloft-notifier/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Channels {
            http,
            smtp: Mutex::new(HashMap::new()),
        })
    }

    pub fn channel_name(delivery: &PendingDelivery) -> &'static str {
        match delivery.rule.channel() {
            Some(ChannelRef::Slack(_)) => "slack",
            Some(ChannelRef::Email(_)) => "email",
            Some(ChannelRef::Webhook(_)) => "webhook",
            None => "invalid",
        }
    }

    pub async fn send(&self, delivery: &PendingDelivery) -> SendOutcome {
        match delivery.rule.channel() {
            Some(ChannelRef::Slack(slack)) => {
                let url = match aloft_runtime::secrets::resolve(&slack.webhook_url) {
                    Ok(url) => url,
                    Err(error) => return SendOutcome::Permanent(error.to_string()),
                };
                let body = serde_json::json!({ "text": slack_text(&delivery.context) });
                self.post(&url, body.to_string(), &[]).await
            }
            Some(ChannelRef::Webhook(webhook)) => {
                let key = match aloft_runtime::secrets::resolve(&webhook.secret) {
                    Ok(key) => key,
                    Err(error) => return SendOutcome::Permanent(error.to_string()),
                };
                let body = webhook_body(delivery).to_string();
                let signature = sign(key.as_bytes(), body.as_bytes());
                let headers = [
                    (SIGNATURE_HEADER, signature),
                    (DELIVERY_HEADER, delivery.delivery_id.clone()),
                ];
                self.post(&webhook.url, body, &headers).await
            }
            Some(ChannelRef::Email(email)) => {
                let to = delivery
                    .recipient
                    .strip_prefix("email:")
                    .unwrap_or(&delivery.recipient);
                self.send_email(email, to, delivery).await
            }
            None => SendOutcome::Permanent("the rule has no single channel".to_string()),
        }
    }

    async fn post(&self, url: &str, body: String, headers: &[(&str, String)]) -> SendOutcome {
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return SendOutcome::Delivered;
                }
                // Delay-seconds form only; an HTTP-date falls back to the notifier's own backoff.
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(|seconds| Duration::from_secs(seconds.min(MAX_RETRY_AFTER_SECONDS)));
                let text = response.text().await.unwrap_or_default();
                let reason = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
                if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
                    match retry_after {
                        Some(wait) => SendOutcome::TransientAfter(reason, wait),
                        None => SendOutcome::Transient(reason),
                    }
                } else {
                    SendOutcome::Permanent(reason)
                }
            }
            // A URL the client cannot use will not get better by waiting.
            Err(error) if error.is_builder() => SendOutcome::Permanent(format!("invalid request: {error}")),
            Err(error) => SendOutcome::Transient(format!("request failed: {}", redact_url(&error))),
        }
    }

    async fn send_email(&self, email: &EmailChannel, to: &str, delivery: &PendingDelivery) -> SendOutcome {
        let message = match build_message(email, to, delivery) {
            Ok(message) => message,
            Err(error) => return SendOutcome::Permanent(error.to_string()),
        };
        let transport = match self.transport(email) {
            Ok(transport) => transport,
            Err(error) => return SendOutcome::Permanent(error.to_string()),
        };
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
            Ok(Ok(_)) => SendOutcome::Delivered,
            Ok(Err(error)) if error.is_permanent() => SendOutcome::Permanent(format!("SMTP: {error}")),
            Ok(Err(error)) => SendOutcome::Transient(format!("SMTP: {error}")),
            Err(_) => SendOutcome::Transient(format!("SMTP: no answer within {SEND_TIMEOUT:?}")),
        }
    }

    fn transport(&self, email: &EmailChannel) -> Result<AsyncSmtpTransport<Tokio1Executor>, MessageError> {
        let server = &email.smtp;
        let key = format!(
            "{}:{}:{:?}:{}",
            server.host,
            server.effective_port(),
            server.tls,
            server.username.as_deref().unwrap_or("")
        );
        let mut transports = self.smtp.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(transport) = transports.get(&key) {
            return Ok(transport.clone());
        }
        let tls_parameters = || -> Result<TlsParameters, MessageError> {
            let mut parameters = TlsParameters::builder(server.host.clone());
            if let Some(path) = &server.ca_file {
                let ca_file = |reason: String| MessageError::CaFile {
                    path: path.clone(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| ca_file(e.to_string()))?;
                let certificate = Certificate::from_pem(&pem).map_err(|e| ca_file(e.to_string()))?;
                parameters = parameters.add_root_certificate(certificate);
            }
            parameters.build_rustls().map_err(|e| MessageError::Tls {
                host: server.host.clone(),
                reason: e.to_string(),
            })
        };
        // The server's certificate must name `host`; plain SMTP is only for trusted relays and local sinks.
        let tls = match server.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
            .port(server.effective_port())
            .tls(tls)
            .timeout(Some(SEND_TIMEOUT));
        if let (Some(user), Some(password)) = (&server.username, &server.password) {
            let user = aloft_runtime::secrets::resolve(user)?;
            let password = aloft_runtime::secrets::resolve(password)?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        let transport = builder.build();
        transports.insert(key, transport.clone());
        Ok(transport)
    }
}

/// Why an email cannot be sent at all (a permanent failure of the delivery, never retried).
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error("SMTP ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("SMTP server {host}: TLS: {reason}")]
    Tls { host: String, reason: String },
    #[error(transparent)]
    Secret(#[from] aloft_runtime::secrets::SecretError),
    #[error("from address {address:?}: {reason}")]
    From { address: String, reason: String },
    #[error("address {address:?}: {reason}")]
    To { address: String, reason: String },
    #[error("cannot build the message: {0}")]
    Build(String),
}

fn build_message(
    email: &EmailChannel,
    to: &str,
    delivery: &PendingDelivery,
) -> Result<Message, MessageError> {
    let from: Mailbox =
        email
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MessageError::From {
                address: email.from.clone(),
                reason: e.to_string(),
            })?;
    let to: Mailbox = to
        .parse()
        .map_err(|e: lettre::address::AddressError| MessageError::To {
            address: to.to_string(),
            reason: e.to_string(),
        })?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(render(email.subject_template(), &delivery.context))
        .header(ContentType::TEXT_PLAIN)
        .body(render(email.body_template(), &delivery.context))
        .map_err(|e| MessageError::Build(e.to_string()))
}

/// A request error without its URL: a Slack webhook URL is a secret.
fn redact_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
