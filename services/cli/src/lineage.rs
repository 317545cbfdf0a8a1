//! `aloft lineage` and `aloft cache`: the catalog's client side, and how its answers are shown.

use std::collections::{BTreeMap, BTreeSet};

use aloft_proto::v1 as wire;

/// The catalog's generated client, as the lineage and cache commands call it.
pub type CatalogClient = aloft_catalog_client::RawClient;

/// Connects to the catalog at `url` now (through the shared client, which owns how connections are made).
pub async fn connect_catalog(url: &str) -> anyhow::Result<CatalogClient> {
    let credential = crate::client::credential();
    Ok(aloft_catalog_client::CatalogClient::connect(url)
        .await?
        .with_credential(credential.as_deref())?
        .raw())
}

/// `EXECUTION[/NODE[/OUTPUT]]` in the given project and domain.
pub fn lineage_request(
    project: &str,
    domain: &str,
    target: &str,
    depth: u32,
) -> anyhow::Result<wire::GetLineageRequest> {
    let parts: Vec<&str> = target.split('/').collect();
    let (name, node, output) = match parts.as_slice() {
        [name] => (*name, "", ""),
        [name, node] => (*name, *node, ""),
        [name, node, output] => (*name, *node, *output),
        _ => anyhow::bail!(
            "{target:?} is not EXECUTION[/NODE[/OUTPUT]]; choose the project and domain with --project and --domain"
        ),
    };
    if name.is_empty() || (parts.len() > 1 && node.is_empty()) || (parts.len() > 2 && output.is_empty()) {
        anyhow::bail!("{target:?} has an empty part; expected EXECUTION[/NODE[/OUTPUT]]");
    }
    Ok(wire::GetLineageRequest {
        execution: Some(wire::ExecutionIdentifier {
            project: project.to_string(),
            domain: domain.to_string(),
            name: name.to_string(),
        }),
        node: node.to_string(),
        output: output.to_string(),
        depth,
    })
}

fn short_value(value_json: &str) -> String {
    const MAX: usize = 60;
    if value_json.chars().count() <= MAX {
        return value_json.to_string();
    }
    let cut: String = value_json.chars().take(MAX).collect();
    format!("{cut}…")
}

fn describe(artifact: &wire::Artifact) -> String {
    let mut text = format!(
        "{} = {} ({})",
        artifact.id,
        short_value(&artifact.value_json),
        artifact.r#type
    );
    if !artifact.task.is_empty() {
        text.push_str(&format!(" by {} attempt {}", artifact.task, artifact.attempt));
    }
    text
}

/// The lineage as two trees per selected artifact: what it was made from, and what was made from it.
pub fn render_lineage(lineage: &wire::GetLineageResponse) -> String {
    let artifacts: BTreeMap<&str, &wire::Artifact> =
        lineage.artifacts.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut upstream: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut downstream: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for edge in &lineage.edges {
        upstream
            .entry(edge.to.as_str())
            .or_default()
            .push((edge.from.as_str(), edge.relation.as_str()));
        downstream
            .entry(edge.from.as_str())
            .or_default()
            .push((edge.to.as_str(), edge.relation.as_str()));
    }
    let mut out = String::new();
    if lineage.partial {
        out.push_str(&format!("partial answer: {}\n", lineage.partial_reason));
    }
    if lineage.selected.is_empty() {
        out.push_str("no artifacts recorded yet\n");
    }
    for selected in &lineage.selected {
        match artifacts.get(selected.as_str()) {
            Some(artifact) => out.push_str(&format!("{}\n", describe(artifact))),
            None => out.push_str(&format!("{selected}\n")),
        }
        for (title, graph) in [("made from", &upstream), ("used by", &downstream)] {
            let Some(children) = graph.get(selected.as_str()) else {
                continue;
            };
            out.push_str(&format!("  {title}:\n"));
            let mut path = BTreeSet::from([selected.as_str()]);
            render_children(&mut out, &artifacts, graph, children, "    ", &mut path);
        }
    }
    out
}

fn render_children<'a>(
    out: &mut String,
    artifacts: &BTreeMap<&str, &wire::Artifact>,
    graph: &BTreeMap<&'a str, Vec<(&'a str, &'a str)>>,
    children: &[(&'a str, &'a str)],
    indent: &str,
    path: &mut BTreeSet<&'a str>,
) {
    for (index, (id, relation)) in children.iter().enumerate() {
        let last = index + 1 == children.len();
        let branch = if last { "└─ " } else { "├─ " };
        let text = match artifacts.get(id) {
            Some(artifact) => describe(artifact),
            None => format!("{id} (not in the catalog)"),
        };
        out.push_str(&format!("{indent}{branch}[{relation}] {text}\n"));
        if !path.insert(id) {
            continue;
        }
        if let Some(grandchildren) = graph.get(id) {
            let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
            render_children(out, artifacts, graph, grandchildren, &deeper, path);
        }
        path.remove(id);
    }
}

/// The lineage as one JSON document (stable field names, for scripts).
pub fn lineage_json(lineage: &wire::GetLineageResponse) -> serde_json::Value {
    let artifacts: Vec<serde_json::Value> = lineage
        .artifacts
        .iter()
        .map(|artifact| {
            let execution = artifact.execution.clone().unwrap_or_default();
            serde_json::json!({
                "id": artifact.id,
                "execution": format!("{}/{}/{}", execution.project, execution.domain, execution.name),
                "node": artifact.node,
                "output": artifact.output,
                "value": serde_json::from_str::<serde_json::Value>(&artifact.value_json)
                    .unwrap_or_else(|_| serde_json::Value::String(artifact.value_json.clone())),
                "type": artifact.r#type,
                "task": artifact.task,
                "attempt": artifact.attempt,
                "cached_from": artifact.cached_from,
                "created_at_millis": artifact.created_at_millis,
            })
        })
        .collect();
    let edges: Vec<serde_json::Value> = lineage
        .edges
        .iter()
        .map(|edge| serde_json::json!({"from": edge.from, "to": edge.to, "relation": edge.relation}))
        .collect();
    serde_json::json!({
        "selected": lineage.selected,
        "partial": lineage.partial,
        "partial_reason": lineage.partial_reason,
        "artifacts": artifacts,
        "edges": edges,
    })
}

/// Outputs as plain JSON (`{"n": 49}`), as users wrote them.
fn plain_outputs(outputs_json: &str) -> String {
    match serde_json::from_str::<aloft_core::events::Outputs>(outputs_json) {
        Ok(outputs) => {
            let plain: serde_json::Map<String, serde_json::Value> = outputs
                .iter()
                .map(|(name, value)| (name.clone(), value.to_plain_json()))
                .collect();
            serde_json::Value::Object(plain).to_string()
        }
        Err(_) => outputs_json.to_string(),
    }
}

pub fn render_cache_entries(entries: &[wire::CacheEntry]) -> String {
    if entries.is_empty() {
        return "no cached results\n".to_string();
    }
    let mut out = String::from("TASK  CACHE_VERSION  KEY  PRODUCED_BY  TASK_VERSION  OUTPUTS\n");
    for entry in entries {
        let execution = entry.execution.clone().unwrap_or_default();
        out.push_str(&format!(
            "{}  {}  {}  {}/{}/{}  {}  {}\n",
            entry.task_name,
            entry.cache_version,
            &entry.key[..entry.key.len().min(12)],
            execution.name,
            entry.node,
            entry.attempt,
            entry.task_version,
            short_value(&plain_outputs(&entry.outputs_json))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_targets_parse_or_explain() {
        let request = lineage_request("p", "d", "run-1/train/model", 0).unwrap();
        assert_eq!(request.node, "train");
        assert_eq!(request.output, "model");
        assert_eq!(request.execution.unwrap().name, "run-1");
        let error = lineage_request("p", "d", "a/b/c/d", 0).unwrap_err().to_string();
        assert!(error.contains("EXECUTION[/NODE[/OUTPUT]]"), "{error}");
        let error = lineage_request("p", "d", "run-1//x", 0).unwrap_err().to_string();
        assert!(error.contains("empty part"), "{error}");
    }

    #[test]
    fn trees_show_both_directions_and_mark_partial_answers() {
        let artifact = |id: &str, value: &str| wire::Artifact {
            id: id.to_string(),
            value_json: value.to_string(),
            r#type: "integer".to_string(),
            ..Default::default()
        };
        let lineage = wire::GetLineageResponse {
            selected: vec!["p/d/e/b/out".to_string()],
            artifacts: vec![
                artifact("p/d/e/@inputs/x", "1"),
                artifact("p/d/e/b/out", "2"),
                artifact("p/d/e/c/out", "3"),
            ],
            edges: vec![
                wire::LineageEdge {
                    from: "p/d/e/@inputs/x".to_string(),
                    to: "p/d/e/b/out".to_string(),
                    relation: "input x".to_string(),
                },
                wire::LineageEdge {
                    from: "p/d/e/b/out".to_string(),
                    to: "p/d/e/c/out".to_string(),
                    relation: "input y".to_string(),
                },
            ],
            partial: true,
            partial_reason: "execution p/d/e is RUNNING".to_string(),
        };
        let text = render_lineage(&lineage);
        assert!(
            text.starts_with("partial answer: execution p/d/e is RUNNING"),
            "{text}"
        );
        assert!(
            text.contains("made from:\n    └─ [input x] p/d/e/@inputs/x = 1"),
            "{text}"
        );
        assert!(
            text.contains("used by:\n    └─ [input y] p/d/e/c/out = 3"),
            "{text}"
        );
        let json = lineage_json(&lineage);
        assert_eq!(json["artifacts"][1]["value"], 2);
        assert_eq!(json["partial"], true);
    }
}
