//! Spec files: YAML or JSON, one or more documents (`---`), each with a `kind`.

use std::path::Path;

use aloft_core::spec::SpecDocument;
use aloft_proto::v1 as wire;
use serde::Deserialize;

use crate::client::AdminClient;

pub fn read_spec_file(path: &Path) -> anyhow::Result<Vec<SpecDocument>> {
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

/// What a registration produced, for printing and for choosing what `aloft run FILE` launches.
#[derive(Debug, Clone)]
pub struct Registered {
    pub kind: &'static str,
    pub id: wire::Identifier,
    pub created: bool,
}

pub async fn register_documents(
    client: &mut AdminClient,
    project: &str,
    domain: &str,
    documents: Vec<SpecDocument>,
) -> anyhow::Result<Vec<Registered>> {
    let mut registered = Vec::new();
    for document in documents {
        let request = |spec_json: String| wire::RegisterRequest {
            project: project.to_string(),
            domain: domain.to_string(),
            spec_json,
        };
        let (kind, response) = match &document {
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
                let id = wire::Identifier {
                    project: spec.name.clone(),
                    ..Default::default()
                };
                registered.push(Registered {
                    kind: "project",
                    id,
                    created: response.outcome == wire::WriteOutcome::Created as i32,
                });
                continue;
            }
            SpecDocument::Task(spec) => (
                "task",
                client.register_task(request(serde_json::to_string(spec)?)).await,
            ),
            SpecDocument::Workflow(spec) => (
                "workflow",
                client
                    .register_workflow(request(serde_json::to_string(spec)?))
                    .await,
            ),
            SpecDocument::LaunchPlan(spec) => (
                "launch plan",
                client
                    .register_launch_plan(request(serde_json::to_string(spec)?))
                    .await,
            ),
        };
        let response = response
            .map_err(|status| anyhow::anyhow!("{kind}: {}", status.message()))?
            .into_inner();
        let id = response.id.unwrap_or_default();
        registered.push(Registered {
            kind,
            id,
            created: response.outcome == wire::WriteOutcome::Created as i32,
        });
    }
    Ok(registered)
}
