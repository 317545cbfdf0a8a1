//! Notification rules at the API: checked completely at registration (shape, phases, URLs, templates and
//! that every secret reference resolves here), so a broken rule is refused now, not discovered when an
//! execution fails at 3 a.m. Admin and the notifier are expected to see the same secrets (same env, same
//! mounted files); a notifier that cannot resolve one records the delivery as failed with the reason.

use aloft_core::notify::{validate_rules, NotificationRule};

use super::*;

/// Validates `rules` and resolves each secret they reference; `owner` names them in errors.
pub(super) fn check_rules(owner: &str, rules: &[NotificationRule]) -> ApiResult<()> {
    validate_rules(owner, rules).map_err(invalid)?;
    for (index, rule) in rules.iter().enumerate() {
        if let Some(path) = rule.email.as_ref().and_then(|email| email.smtp.ca_file.as_ref()) {
            std::fs::read(path).map_err(|e| {
                invalid(format!(
                    "{owner} notification rule {}: email.smtp.ca_file {path}: {e}",
                    index + 1
                ))
            })?;
        }
        for reference in rule.secret_refs() {
            aloft_runtime::secrets::resolve(reference).map_err(|reason| {
                invalid(format!(
                    "{owner} notification rule {}: {reason} (set it where admin and the notifier run)",
                    index + 1
                ))
            })?;
        }
    }
    Ok(())
}

fn parse_rules(field: &str, json: &str) -> ApiResult<Vec<NotificationRule>> {
    serde_json::from_str(json).map_err(|e| invalid(format!("{field}: not a list of notification rules: {e}")))
}

/// The per-execution override a create request asks for: `None` keeps the launch plan's and the project's.
pub(super) fn execution_override(
    request: &wire::CreateExecutionRequest,
) -> ApiResult<Option<Vec<NotificationRule>>> {
    if request.disable_notifications {
        if !request.notifications_json.is_empty() {
            return Err(invalid(
                "disable_notifications and notifications_json exclude each other",
            ));
        }
        return Ok(Some(Vec::new()));
    }
    if request.notifications_json.is_empty() {
        return Ok(None);
    }
    let rules = parse_rules("notifications_json", &request.notifications_json)?;
    check_rules("execution", &rules)?;
    Ok(Some(rules))
}

impl AdminApi {
    pub(super) async fn set_notification_defaults(
        &self,
        request: wire::SetNotificationDefaultsRequest,
    ) -> ApiResult<wire::SetNotificationDefaultsResponse> {
        if request.domain == "*" {
            validate_name("project", &request.project).map_err(|e| invalid(e.to_string()))?;
            if self.store.get_project(&request.project).await?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "project {:?} does not exist; create it first (aloft project create {})",
                    request.project, request.project
                )));
            }
        } else {
            self.require_domain(&request.project, &request.domain).await?;
        }
        let rules = parse_rules("rules_json", &request.rules_json)?;
        check_rules(
            &format!("defaults of {}/{}", request.project, request.domain),
            &rules,
        )?;
        let count = rules.len() as u32;
        self.append_registry(RegistryEvent::NotificationDefaultsSet {
            project: request.project,
            domain: request.domain,
            rules,
            at: now_millis(),
        })
        .await?;
        Ok(wire::SetNotificationDefaultsResponse { rules: count })
    }

    pub(super) async fn list_deliveries_rpc(
        &self,
        request: wire::ListDeliveriesRequest,
    ) -> ApiResult<wire::ListDeliveriesResponse> {
        self.require_domain(&request.project, &request.domain).await?;
        let limit = match request.limit {
            0 => 100,
            limit => limit.min(1_000),
        };
        let rows = aloft_store::deliveries::recent_delivery_events(
            self.store.pool(),
            &request.project,
            &request.domain,
            limit,
        )
        .await?;
        Ok(wire::ListDeliveriesResponse {
            events: rows
                .into_iter()
                .map(|(row, execution)| wire::DeliveryEvent {
                    delivery_id: row.delivery_id,
                    execution,
                    attempt: row.attempt,
                    kind: row.kind,
                    summary: row.summary,
                    occurred_at_millis: row.occurred_at,
                })
                .collect(),
        })
    }
}
