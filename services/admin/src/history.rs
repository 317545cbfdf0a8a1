//! One-line, human-readable summaries of history events.

use aloft_core::events::ExecutionEvent;

pub fn summarize(payload_json: &str, node_ids: &[String]) -> String {
    let Ok(event) = serde_json::from_str::<ExecutionEvent>(payload_json) else {
        return "(unreadable event)".to_string();
    };
    let node_name = |index: &usize| {
        node_ids
            .get(*index)
            .cloned()
            .unwrap_or_else(|| format!("#{index}"))
    };
    let values = |outputs: &aloft_core::events::Outputs| {
        outputs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match event {
        ExecutionEvent::ExecutionRequested {
            workflow,
            inputs,
            scheduled_at,
            recovery,
            parent,
            ..
        } => {
            let mut trigger = scheduled_at
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|at| format!(" (scheduled for {})", at.to_rfc3339()))
                .unwrap_or_default();
            if let Some(parent) = &parent {
                trigger.push_str(&format!(
                    " (launched by {} node {})",
                    parent.execution, parent.node_id
                ));
            }
            if let Some(recovery) = &recovery {
                trigger.push_str(&format!(
                    " (recovering {}: {} node(s) RECOVERED)",
                    recovery.from,
                    recovery.nodes.len()
                ));
            }
            format!(
                "requested {} with {}{trigger}",
                workflow.id,
                if inputs.is_empty() {
                    "no inputs".to_string()
                } else {
                    values(&inputs)
                }
            )
        }
        ExecutionEvent::TerminateRequested { reason, .. } => format!("terminate requested: {reason}"),
        ExecutionEvent::PartitionClaimed {
            partition,
            epoch,
            owner,
            ..
        } => {
            format!("partition {partition} claimed by {owner} (epoch {epoch})")
        }
        ExecutionEvent::ExecutionStarted { .. } => "execution started".to_string(),
        ExecutionEvent::AttemptStarted {
            node,
            attempt,
            interruptible,
            ..
        } => {
            let how = if interruptible { " (interruptible)" } else { "" };
            format!("node {} attempt {attempt} started{how}", node_name(&node))
        }
        ExecutionEvent::AttemptWaiting {
            node,
            attempt,
            reason,
            ..
        } => format!(
            "node {} attempt {attempt} waiting for resources: {reason}",
            node_name(&node)
        ),
        ExecutionEvent::AttemptDispatched { node, attempt, .. } => {
            format!(
                "node {} attempt {attempt} got its resources and runs",
                node_name(&node)
            )
        }
        ExecutionEvent::AttemptSucceeded {
            node,
            attempt,
            outputs,
            cache,
            ..
        } => {
            let cache_text = cache.as_ref().map(cache_text).unwrap_or_default();
            format!(
                "node {} attempt {attempt} succeeded{cache_text}: {}",
                node_name(&node),
                values(&outputs)
            )
        }
        ExecutionEvent::NodeCacheHit {
            node,
            attempt,
            outputs,
            cache,
            ..
        } => format!(
            "node {} attempt {attempt} succeeded without running{}: {}",
            node_name(&node),
            cache_text(&cache),
            values(&outputs)
        ),
        ExecutionEvent::AttemptFailed {
            node,
            attempt,
            kind,
            message,
            ..
        } => {
            format!(
                "node {} attempt {attempt} failed ({}): {message}",
                node_name(&node),
                kind.as_str()
            )
        }
        ExecutionEvent::NodeSucceeded { node, outputs, .. } => {
            format!("node {} succeeded: {}", node_name(&node), values(&outputs))
        }
        ExecutionEvent::BranchTaken {
            node,
            condition,
            skipped,
            ..
        } => {
            let skipped_names: Vec<String> = skipped.iter().map(node_name).collect();
            format!(
                "branch {} took {}; skipped: {}",
                node_name(&node),
                if condition == "else" {
                    "else".to_string()
                } else {
                    format!("the case {condition}")
                },
                if skipped_names.is_empty() {
                    "none".to_string()
                } else {
                    skipped_names.join(", ")
                }
            )
        }
        ExecutionEvent::GateWaiting {
            execution,
            node,
            waiting_for,
            ..
        } => format!(
            "gate {} waits for {}",
            node_name(&node),
            aloft_proto::convert::describe_wait(&waiting_for, &execution.name)
        ),
        ExecutionEvent::ChildLaunched { node, child, .. } => {
            format!("node {} launched child execution {child}", node_name(&node))
        }
        ExecutionEvent::ChildFinished {
            child, phase, error, ..
        } => match error {
            Some(error) => format!("child execution {child} ended {}: {error}", phase.as_str()),
            None => format!("child execution {child} ended {}", phase.as_str()),
        },
        ExecutionEvent::DynamicExpanded { node, added, .. } => format!(
            "dynamic {} planned {} node(s): {}",
            node_name(&node),
            added.len(),
            added.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
        ExecutionEvent::MapExpanded {
            node, items, task, ..
        } => format!("map {} runs {task} over {items} item(s)", node_name(&node)),
        ExecutionEvent::SignalReceived { signal, value, .. } => match signal.strip_prefix("approve:") {
            Some(node) => format!("approval of node {node} received"),
            None => format!("signal {signal} received: {value}"),
        },
        ExecutionEvent::NodeFailed { node, message, .. } => {
            format!("node {} failed: {message}", node_name(&node))
        }
        ExecutionEvent::ExecutionFinished {
            phase,
            outputs,
            error,
            ..
        } => match error {
            Some(error) => format!("execution {}: {error}", phase.as_str()),
            None => format!("execution {}: {}", phase.as_str(), values(&outputs)),
        },
    }
}

/// " (cache HIT from EXEC/NODE/ATTEMPT)", or " (cache STATUS)" when no source is known.
fn cache_text(outcome: &aloft_core::cache::CacheOutcome) -> String {
    match &outcome.source {
        Some(source) => format!(" (cache {} from {source})", outcome.status.as_str()),
        None => format!(" (cache {})", outcome.status.as_str()),
    }
}
