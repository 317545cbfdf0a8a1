//! The notifier's tables and their queries (its own migrations, `MIGRATIONS`): the rules it learns from `aloft.registry`, the executions it
//! follows on `aloft.executions`, the deliveries a finished execution creates, and each delivery's state.
//! Deliveries are inserted in the projector's transaction (with the offsets) under deterministic ids, so a
//! crash can neither lose one nor create it twice; the sender records each attempt with the new state, so a
//! restart never re-sends what was delivered.

use aloft_core::events::{ExecutionEvent, RegistryEvent};
use aloft_core::notify::{delivery_id, effective_rules, DeliveryEvent, MessageContext, NotificationRule};
use aloft_core::{ExecutionId, Identifier};
use sqlx::{AnyConnection, AnyPool, Row};

use aloft_store::admission::{Admission, LoggedEvent};
use aloft_store::projection::OffsetsTable;
use aloft_store::{from_json, to_json, Migrations, Result};

/// Where the notifier's projection commits its offsets.
pub const OFFSETS: OffsetsTable = OffsetsTable::new("notifier", "notifier_offsets");

/// The notifier's migrations, recorded in `notifier_schema_migrations`.
pub const MIGRATIONS: Migrations = Migrations {
    table: "notifier_schema_migrations",
    steps: &[(1, "notifier", include_str!("../migrations/0001_notifier.sql"))],
};

/// Where `{{url}}` points: `<console>/projects/<p>/domains/<d>/executions/<name>`.
pub fn execution_url(console_url: &str, id: &ExecutionId) -> String {
    format!(
        "{}/projects/{}/domains/{}/executions/{}",
        console_url.trim_end_matches('/'),
        id.project,
        id.domain,
        id.name
    )
}

/// Registrations that carry rules: launch plans (immutable per version) and defaults (latest wins).
pub async fn apply_registry_event(conn: &mut AnyConnection, event: &RegistryEvent) -> Result<()> {
    match event {
        RegistryEvent::LaunchPlanRegistered { id, spec, .. } if !spec.notifications.is_empty() => {
            sqlx::query(
                "INSERT INTO notifier_launch_plans (project, domain, name, version, rules_json) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(to_json(&spec.notifications))
            .execute(conn)
            .await?;
        }
        RegistryEvent::NotificationDefaultsSet {
            project,
            domain,
            rules,
            at,
        } => {
            sqlx::query(
                "INSERT INTO notifier_defaults (project, domain, rules_json, set_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project, domain) DO UPDATE SET rules_json = excluded.rules_json, \
                 set_at = excluded.set_at WHERE notifier_defaults.set_at <= excluded.set_at",
            )
            .bind(project)
            .bind(domain)
            .bind(to_json(rules))
            .bind(*at)
            .execute(conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The default rules of a project/domain: those set for the domain, then those set for every domain (`*`).
pub async fn default_rules(
    conn: &mut AnyConnection,
    project: &str,
    domain: &str,
) -> Result<Vec<NotificationRule>> {
    let rows = sqlx::query(
        "SELECT rules_json FROM notifier_defaults WHERE project = $1 AND (domain = $2 OR domain = '*') \
         ORDER BY CASE WHEN domain = '*' THEN 1 ELSE 0 END",
    )
    .bind(project)
    .bind(domain)
    .fetch_all(&mut *conn)
    .await?;
    let mut rules = Vec::new();
    for row in rows {
        let set: Vec<NotificationRule> = from_json("notifier_defaults", &row.try_get::<String, _>(0)?)?;
        rules.extend(set);
    }
    Ok(rules)
}

async fn launch_plan_rules(conn: &mut AnyConnection, id: &Identifier) -> Result<Vec<NotificationRule>> {
    let row = sqlx::query(
        "SELECT rules_json FROM notifier_launch_plans WHERE project = $1 AND domain = $2 AND name = $3 \
         AND version = $4",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .bind(&id.version)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => from_json("notifier_launch_plans", &row.try_get::<String, _>(0)?),
        None => Ok(Vec::new()),
    }
}

/// What the notifier remembers of an execution between its request and its end.
struct FollowedExecution {
    launch_plan: Option<Identifier>,
    override_rules: Option<Vec<NotificationRule>>,
    requested_at: i64,
}

async fn followed(conn: &mut AnyConnection, id: &ExecutionId) -> Result<Option<FollowedExecution>> {
    let row = sqlx::query(
        "SELECT launch_plan_json, override_json, requested_at FROM notifier_executions \
         WHERE project = $1 AND domain = $2 AND name = $3",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(FollowedExecution {
        launch_plan: from_json("notifier_executions", &row.try_get::<String, _>(0)?)?,
        override_rules: from_json("notifier_executions", &row.try_get::<String, _>(1)?)?,
        requested_at: row.try_get(2)?,
    }))
}

/// Applies one event of `aloft.executions` under the admission rule every reader shares. A finished
/// execution creates one pending delivery per matching rule and recipient; returns how many were new.
pub async fn apply_execution_event(
    conn: &mut AnyConnection,
    admission: &mut Admission,
    partition_epoch: &mut u64,
    logged: &LoggedEvent<'_>,
    console_url: &str,
) -> Result<usize> {
    let event = logged.event;
    let id = match admission.admit(conn, partition_epoch, logged).await? {
        Ok(id) => id,
        Err(_) => return Ok(0),
    };
    match event {
        ExecutionEvent::ExecutionRequested {
            launch_plan,
            requested_at,
            notifications,
            ..
        } => {
            sqlx::query(
                "INSERT INTO notifier_executions (project, domain, name, launch_plan_json, override_json, \
                 requested_at, last_seq) VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(to_json(launch_plan))
            .bind(to_json(notifications))
            .bind(*requested_at)
            .execute(&mut *conn)
            .await?;
            Ok(0)
        }
        ExecutionEvent::ExecutionFinished { phase, error, at, .. } => {
            let Some(execution) = followed(conn, id).await? else {
                return Ok(0);
            };
            let launch_plan_rules = match &execution.launch_plan {
                Some(plan) if execution.override_rules.is_none() => launch_plan_rules(conn, plan).await?,
                _ => Vec::new(),
            };
            let defaults = if execution.override_rules.is_none() {
                default_rules(conn, &id.project, &id.domain).await?
            } else {
                Vec::new()
            };
            let rules = effective_rules(execution.override_rules.as_deref(), &launch_plan_rules, &defaults);
            let context = MessageContext {
                project: id.project.clone(),
                domain: id.domain.clone(),
                name: id.name.clone(),
                launch_plan: execution
                    .launch_plan
                    .as_ref()
                    .map(|plan| format!("{}@{}", plan.name, plan.version))
                    .unwrap_or_else(|| "-".to_string()),
                phase: phase.as_str().to_string(),
                error: error.clone().unwrap_or_default(),
                duration_ms: at - execution.requested_at,
                url: execution_url(console_url, id),
                finished_at: *at,
            };
            let event_id = format!("{}#{}", logged.stream, logged.seq);
            let mut created = 0;
            for (rule_name, rule) in rules.iter().filter(|(_, rule)| rule.matches(*phase)) {
                for recipient in rule.recipients() {
                    let inserted = sqlx::query(
                        "INSERT INTO notifier_deliveries (delivery_id, project, domain, execution, event_id, \
                         rule_name, recipient, rule_json, context_json, state, attempts, next_attempt_at, \
                         last_error, created_at, traceparent) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, '', $10, $11) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(delivery_id(&event_id, rule_name, &recipient))
                    .bind(&id.project)
                    .bind(&id.domain)
                    .bind(&id.name)
                    .bind(&event_id)
                    .bind(rule_name)
                    .bind(&recipient)
                    .bind(to_json(rule))
                    .bind(to_json(&context))
                    .bind(*at)
                    .bind(logged.traceparent)
                    .execute(&mut *conn)
                    .await?;
                    created += inserted.rows_affected() as usize;
                }
            }
            Ok(created)
        }
        _ => Ok(0),
    }
}

/// A delivery waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub delivery_id: String,
    pub execution: ExecutionId,
    pub recipient: String,
    pub rule: NotificationRule,
    pub context: MessageContext,
    /// Attempts made so far.
    pub attempts: u32,
    /// The trace context of the execution it reports on.
    pub traceparent: String,
}

/// Deliveries due at `now`, oldest first.
pub async fn due_deliveries(pool: &AnyPool, now: i64, limit: usize) -> Result<Vec<PendingDelivery>> {
    let rows = sqlx::query(
        "SELECT delivery_id, project, domain, execution, recipient, rule_json, context_json, attempts, \
         traceparent FROM notifier_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, delivery_id LIMIT $2",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingDelivery {
                delivery_id: row.try_get(0)?,
                execution: ExecutionId {
                    project: row.try_get(1)?,
                    domain: row.try_get(2)?,
                    name: row.try_get(3)?,
                },
                recipient: row.try_get(4)?,
                rule: from_json("notifier_deliveries", &row.try_get::<String, _>(5)?)?,
                context: from_json("notifier_deliveries", &row.try_get::<String, _>(6)?)?,
                attempts: row.try_get::<i64, _>(7)? as u32,
                traceparent: row.try_get(8)?,
            })
        })
        .collect()
}

/// The time the next pending delivery is due, if any.
pub async fn next_due(pool: &AnyPool) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT MIN(next_attempt_at) FROM notifier_deliveries WHERE state = 'pending'")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<Option<i64>, _>(0)?)
}

/// The state a delivery moves to after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    Delivered { at: i64 },
    Retry { at: i64, retry_at: i64, reason: String },
    Failed { at: i64, reason: String },
}

/// Records one attempt and the delivery's new state in one transaction, with the event for
/// `aloft.deliveries` in the outbox.
pub async fn record_attempt(
    pool: &AnyPool,
    delivery_id: &str,
    attempt: u32,
    result: &AttemptResult,
    event: &DeliveryEvent,
) -> Result<()> {
    let (state, next_attempt_at, last_error, finished_at) = match result {
        AttemptResult::Delivered { at } => ("delivered", *at, String::new(), Some(*at)),
        AttemptResult::Retry { retry_at, reason, .. } => ("pending", *retry_at, reason.clone(), None),
        AttemptResult::Failed { at, reason } => ("failed", *at, reason.clone(), Some(*at)),
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE notifier_deliveries SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4, \
         finished_at = $5 WHERE delivery_id = $6",
    )
    .bind(state)
    .bind(attempt as i64)
    .bind(next_attempt_at)
    .bind(last_error)
    .bind(finished_at)
    .bind(delivery_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO notifier_attempts (delivery_id, attempt, event_json, published) VALUES ($1, $2, $3, 0) \
         ON CONFLICT DO NOTHING",
    )
    .bind(delivery_id)
    .bind(attempt as i64)
    .bind(to_json(event))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Recorded attempts not yet on `aloft.deliveries`, oldest first: `(delivery id, attempt, event)`.
pub async fn unpublished_attempts(pool: &AnyPool, limit: usize) -> Result<Vec<(String, u32, DeliveryEvent)>> {
    let rows = sqlx::query(
        "SELECT delivery_id, attempt, event_json FROM notifier_attempts WHERE published = 0 \
         ORDER BY delivery_id, attempt LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get::<i64, _>(1)? as u32,
                from_json("notifier_attempts", &row.try_get::<String, _>(2)?)?,
            ))
        })
        .collect()
}

pub async fn mark_published(pool: &AnyPool, delivery_id: &str, attempt: u32) -> Result<()> {
    sqlx::query("UPDATE notifier_attempts SET published = 1 WHERE delivery_id = $1 AND attempt = $2")
        .bind(delivery_id)
        .bind(attempt as i64)
        .execute(pool)
        .await?;
    Ok(())
}

/// How many deliveries are in each state: `(pending, delivered, failed)`.
pub async fn delivery_counts(pool: &AnyPool) -> Result<(u64, u64, u64)> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM notifier_deliveries GROUP BY state")
        .fetch_all(pool)
        .await?;
    let mut counts = (0, 0, 0);
    for row in rows {
        let count = row.try_get::<i64, _>(1)? as u64;
        match row.try_get::<String, _>(0)?.as_str() {
            "pending" => counts.0 = count,
            "delivered" => counts.1 = count,
            _ => counts.2 = count,
        }
    }
    Ok(counts)
}

/// One delivery's state, for tests and the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryState {
    pub delivery_id: String,
    pub recipient: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: String,
}

pub async fn deliveries_of(pool: &AnyPool, id: &ExecutionId) -> Result<Vec<DeliveryState>> {
    let rows = sqlx::query(
        "SELECT delivery_id, recipient, state, attempts, last_error FROM notifier_deliveries \
         WHERE project = $1 AND domain = $2 AND execution = $3 ORDER BY recipient",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryState {
                delivery_id: row.try_get(0)?,
                recipient: row.try_get(1)?,
                state: row.try_get(2)?,
                attempts: row.try_get::<i64, _>(3)? as u32,
                last_error: row.try_get(4)?,
            })
        })
        .collect()
}
