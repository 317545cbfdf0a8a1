//! Spec files: YAML or JSON, one or more documents (`---`), each with a `kind`.

use std::path::Path;

use aloft_core::spec::SpecDocument;
use aloft_proto::v1 as wire;
use serde::Deserialize;

use crate::client::AdminClient;

pub fn read_spec_file(path: &Path) -> anyhow::Result<Vec<SpecDocument>> {
    if path.extension().is_some_and(|extension| extension == "py") {
        return compile_python(path);
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| anyhow::anyhow!("{}: document {}: {e}", path.display(), index + 1))?;
        if value.is_null() {
            continue;
        }
        let spec: SpecDocument = serde_yaml::from_value(value).map_err(|e| {
            anyhow::anyhow!(
                "{}: document {}: {e} (every document needs kind: project, task, workflow or launch_plan)",
                path.display(),
                index + 1
            )
        })?;
        documents.push(spec);
    }
    if documents.is_empty() {
        anyhow::bail!("{} holds no spec documents", path.display());
    }
    Ok(documents)
}

/// The interpreter `aloft` compiles Python files with (`ALOFT_PYTHON`, default `python3`): it must have the
/// SDK installed (`pip install ./sdk/python`).
fn python() -> String {
    std::env::var("ALOFT_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The spec documents a Python file of `@task`s and `@workflow`s defines, compiled by the SDK
/// (`python -m aloft.compile FILE`): the same documents a YAML file gives.
fn compile_python(path: &Path) -> anyhow::Result<Vec<SpecDocument>> {
    let interpreter = python();
    let output = std::process::Command::new(&interpreter)
        .args(["-m", "aloft.compile"])
        .arg(path)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {interpreter} to compile {}: {e} (set ALOFT_PYTHON)",
                path.display()
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named aloft") {
            anyhow::bail!(
                "{}: the Aloft Python SDK is not installed for {interpreter} (pip install ./sdk/python, or set ALOFT_PYTHON)",
                path.display()
            );
        }
        anyhow::bail!("{}: {}", path.display(), stderr.trim());
    }
    let documents: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)
        .map_err(|e| anyhow::anyhow!("{}: the SDK printed no spec documents: {e}", path.display()))?;
    documents
        .into_iter()
        .enumerate()
        .map(|(index, document)| {
            serde_json::from_value(document)
                .map_err(|e| anyhow::anyhow!("{}: compiled document {}: {e}", path.display(), index + 1))
        })
        .collect()
}

/// What a registration produced, for printing and for choosing what `aloft run FILE` launches.
#[derive(Debug, Clone)]
pub struct Registered {
    pub kind: &'static str,
    pub id: wire::Identifier,
    pub created: bool,
}

/// Registers `documents`: projects first, then every task, workflow and launch plan in one batch, which
/// admin writes only when all of them pass (a refused one leaves nothing of the others registered).
pub async fn register_documents(
    client: &mut AdminClient,
    project: &str,
    domain: &str,
    documents: Vec<SpecDocument>,
) -> anyhow::Result<Vec<Registered>> {
    let mut registered = Vec::new();
    let mut batch = Vec::new();
    let mut kinds = Vec::new();
    for document in documents {
        let (kind, entity, spec_json) = match &document {
            SpecDocument::Project(spec) => {
                let response = client
                    .create_project(wire::CreateProjectRequest {
                        project: Some(wire::Project {
                            name: spec.name.clone(),
                            description: spec.description.clone(),
                            domains: spec.domains.clone(),
                        }),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("project {}: {}", spec.name, s.message()))?
                    .into_inner();
                registered.push(Registered {
                    kind: "project",
                    id: wire::Identifier {
                        project: spec.name.clone(),
                        ..Default::default()
                    },
                    created: response.outcome == wire::WriteOutcome::Created as i32,
                });
                continue;
            }
            SpecDocument::Task(spec) => ("task", wire::EntityKind::Task, serde_json::to_string(spec)?),
            SpecDocument::Workflow(spec) => (
                "workflow",
                wire::EntityKind::Workflow,
                serde_json::to_string(spec)?,
            ),
            SpecDocument::LaunchPlan(spec) => (
                "launch plan",
                wire::EntityKind::LaunchPlan,
                serde_json::to_string(spec)?,
            ),
        };
        kinds.push(kind);
        batch.push(wire::RegisterDocument {
            kind: entity as i32,
            spec_json,
        });
    }
    if batch.is_empty() {
        return Ok(registered);
    }
    let results = client
        .register_batch(wire::RegisterBatchRequest {
            project: project.to_string(),
            domain: domain.to_string(),
            documents: batch,
        })
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner()
        .results;
    for (kind, response) in kinds.into_iter().zip(results) {
        registered.push(Registered {
            kind,
            id: response.id.unwrap_or_default(),
            created: response.outcome == wire::WriteOutcome::Created as i32,
        });
    }
    Ok(registered)
}
