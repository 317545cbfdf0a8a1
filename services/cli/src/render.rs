//! Printing executions, values and history for people (and `--json` for programs).

use aloft_proto::v1 as wire;

pub fn literal_text(literal: &wire::Literal) -> String {
    use wire::literal::Value as W;
    match &literal.value {
        Some(W::Integer(i)) => i.to_string(),
        Some(W::Float(f)) => format!("{f}"),
        Some(W::String(s)) => format!("{s:?}"),
        Some(W::Boolean(b)) => b.to_string(),
        Some(W::Datetime(d)) => d.clone(),
        Some(W::DurationMillis(ms)) => aloft_core::types::format_duration_millis(*ms),
        Some(W::Blob(blob)) => blob.uri.clone(),
        Some(W::List(list)) => format!(
            "[{}]",
            list.values
                .iter()
                .map(literal_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(W::Map(map)) => format!("{{{}}}", map_text(map)),
        Some(W::StructJson(json)) => json.clone(),
        Some(W::None(_)) | None => "none".to_string(),
        Some(W::Offloaded(offloaded)) => format!(
            "(offloaded, {} bytes: `aloft get EXECUTION --output NAME` prints it)",
            offloaded.size
        ),
    }
}

pub fn map_text(map: &wire::LiteralMap) -> String {
    let mut entries: Vec<_> = map.values.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
        .iter()
        .map(|(k, v)| format!("{k}={}", literal_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name <subject> (via)`, or `subject (via)` when the name says nothing more.
pub fn principal_text(principal: &aloft_proto::v1::Principal) -> String {
    if principal.name.is_empty() || principal.name == principal.subject {
        format!("{} ({})", principal.subject, principal.via)
    } else {
        format!("{} <{}> ({})", principal.name, principal.subject, principal.via)
    }
}

pub fn execution_phase(phase: i32) -> &'static str {
    wire::ExecutionPhase::try_from(phase)
        .map(|p| p.as_str_name())
        .unwrap_or("UNKNOWN")
}

pub fn node_phase(phase: i32) -> &'static str {
    wire::NodePhase::try_from(phase)
        .map(|p| p.as_str_name().trim_start_matches("NODE_"))
        .unwrap_or("UNKNOWN")
}

pub fn is_terminal(phase: i32) -> bool {
    !matches!(
        wire::ExecutionPhase::try_from(phase),
        Ok(wire::ExecutionPhase::Queued | wire::ExecutionPhase::Running | wire::ExecutionPhase::Unspecified)
            | Err(_)
    )
}

fn execution_name(execution: &wire::Execution) -> String {
    execution
        .id
        .as_ref()
        .map(|id| format!("{}/{}/{}", id.project, id.domain, id.name))
        .unwrap_or_default()
}

fn duration_text(start: i64, end: i64) -> String {
    if start == 0 || end == 0 {
        return "-".to_string();
    }
    format!("{:.3}s", (end - start) as f64 / 1000.0)
}

pub fn print_execution(execution: &wire::Execution) {
    println!("execution  {}", execution_name(execution));
    if let Some(workflow) = &execution.workflow {
        println!("workflow   {}@{}", workflow.name, workflow.version);
    }
    if let Some(plan) = &execution.launch_plan {
        println!("launchplan {}@{}", plan.name, plan.version);
    }
    if let Some(scheduled) = chrono::DateTime::from_timestamp_millis(execution.scheduled_at_millis)
        .filter(|_| execution.scheduled_at_millis != 0)
    {
        println!("scheduled  for {}", scheduled.to_rfc3339());
    }
    println!("phase      {}", execution_phase(execution.phase));
    if let Some(by) = &execution.launched_by {
        println!("launched   by {}", principal_text(by));
    }
    if !execution.labels.is_empty() {
        let mut labels: Vec<String> = execution.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        println!("labels     {}", labels.join(" "));
    }
    println!(
        "duration   {}",
        duration_text(execution.started_at_millis, execution.finished_at_millis)
    );
    if let Some(inputs) = &execution.inputs {
        println!("inputs     {}", map_text(inputs));
    }
    if let Some(outputs) = &execution.outputs {
        if !outputs.values.is_empty() {
            println!("outputs    {}", map_text(outputs));
        }
    }
    if !execution.error.is_empty() {
        println!("error      {}", execution.error);
    }
    if let Some(parent) = &execution.parent {
        println!("parent     {} (node {})", parent.name, execution.parent_node);
    }
    if !execution.nodes.is_empty() {
        println!("nodes:");
        let width = execution.nodes.iter().map(|n| n.node_id.len()).max().unwrap_or(4);
        for node in &execution.nodes {
            let outputs = node.outputs.as_ref().map(map_text).unwrap_or_default();
            let child = if node.child_execution.is_empty() {
                String::new()
            } else {
                format!("child={}  ", node.child_execution)
            };
            let detail = if !node.wait_reason.is_empty() {
                format!("waiting for {}", node.wait_reason)
            } else if node.error.is_empty() || node_phase(node.phase) == "SUCCEEDED" {
                outputs
            } else {
                node.error.clone()
            };
            let cache = match node.cache_status.as_str() {
                "" | "DISABLED" => String::new(),
                status => format!("cache={status}  "),
            };
            println!(
                "  {:width$}  {:9}  attempts={}  {:>8}  {cache}{child}{}",
                node.node_id,
                node_phase(node.phase),
                node.attempts,
                duration_text(node.started_at_millis, node.finished_at_millis),
                detail
            );
        }
    }
}

pub fn print_execution_line(execution: &wire::Execution) {
    println!(
        "{:40}  {:9}  {:24}  {}",
        execution_name(execution),
        execution_phase(execution.phase),
        execution
            .workflow
            .as_ref()
            .map(|w| format!("{}@{}", w.name, w.version))
            .unwrap_or_default(),
        chrono::DateTime::from_timestamp_millis(execution.created_at_millis)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default()
    );
}

pub fn print_history(events: &[wire::HistoryEvent]) {
    for event in events {
        let time = chrono::DateTime::from_timestamp_millis(event.occurred_at_millis)
            .map(|d| d.format("%H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let position = if aloft_core::StreamId::is_request(&event.stream) {
            "request".to_string()
        } else {
            format!("seq {}", event.seq)
        };
        let by = event
            .principal
            .as_ref()
            .map(|p| format!("  (by {})", principal_text(p)))
            .unwrap_or_default();
        println!("{time}  {position:>8}  {:18}  {}{by}", event.kind, event.summary);
    }
}
