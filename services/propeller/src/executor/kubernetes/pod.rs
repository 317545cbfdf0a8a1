//! The Pod of one attempt, built from its task: deterministic name and labels (a successor finds it by
//! them), requests and limits, GPUs with their node selector and toleration, the interruptible (spot)
//! toleration, service account, image pull secrets, task secrets from Kubernetes Secrets, the task's
//! timeout as `activeDeadlineSeconds`, and the attempt's data contract as environment variables.

use std::collections::BTreeMap;

use aloft_core::events::Outputs;
use aloft_core::spec::{ContainerSpec, TaskSpec};
use aloft_core::Value;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, LocalObjectReference, Pod, PodSpec, ResourceRequirements,
    SecretKeySelector, SecretVolumeSource, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::executor::attempt::AttemptId;

/// Labels every attempt pod carries (values sanitised to label syntax; the full id is an annotation).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_ATTEMPT: &str = "aloft.dev/attempt-id";
pub const LABEL_PROJECT: &str = "aloft.dev/project";
pub const LABEL_DOMAIN: &str = "aloft.dev/domain";
pub const LABEL_EXECUTION: &str = "aloft.dev/execution";
pub const ANNOTATION_ATTEMPT: &str = "aloft.dev/attempt";
/// The node label a task's `accelerator` selects on, and the taint GPU and spot nodes carry.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
pub const INTERRUPTIBLE_TAINT: &str = "aloft.dev/interruptible";
/// Where `file` secrets are mounted in the task container.
pub const SECRETS_MOUNT: &str = "/etc/aloft/secrets";
/// The key a task secret's value is read from in its Kubernetes Secret (the Secret is named after it).
pub const SECRET_KEY: &str = "value";

/// How this propeller's pods are placed and authorised.
#[derive(Debug, Clone)]
pub struct PodSettings {
    /// The namespace of a project/domain: `{project}` and `{domain}` are replaced (`{project}-{domain}`).
    pub namespace_pattern: String,
    /// Create a namespace that does not exist yet (on the first pod's 404), rather than fail the attempt.
    pub create_namespaces: bool,
    pub service_account: Option<String>,
    pub image_pull_secrets: Vec<String>,
    /// The node label whose value must equal a task's `accelerator`.
    pub accelerator_label: String,
    /// Helper containers that stage the attempt's data through the store (`--kubernetes-helper-image`);
    /// without them the task reads its inputs' URIs and writes its outputs to the store itself.
    pub data_helper: Option<super::helpers::DataHelper>,
}

impl Default for PodSettings {
    fn default() -> Self {
        PodSettings {
            namespace_pattern: "{project}-{domain}".to_string(),
            create_namespaces: false,
            service_account: None,
            image_pull_secrets: Vec::new(),
            accelerator_label: "aloft.dev/accelerator".to_string(),
            data_helper: None,
        }
    }
}

impl PodSettings {
    /// The namespace an attempt of `project`/`domain` runs in (lowercase, `_` and `.` as `-`).
    pub fn namespace(&self, project: &str, domain: &str) -> String {
        dns_label(
            &self
                .namespace_pattern
                .replace("{project}", project)
                .replace("{domain}", domain),
            63,
        )
    }
}

/// `text` as a DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric, at most
/// `max` characters.
fn dns_label(text: &str, max: usize) -> String {
    let mapped: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed: String = mapped.chars().take(max).collect();
    trimmed.trim_matches('-').to_string()
}

/// A short hash of the attempt's whole id: names and label values stay unique after sanitising.
fn attempt_hash(attempt: &AttemptId) -> String {
    hex::encode(&Sha256::digest(attempt.to_string().as_bytes())[..6])
}

/// The pod of an attempt: `EXECUTION-NODE-ATTEMPT-HASH`, sanitised to a DNS label (at most 63).
pub fn pod_name(attempt: &AttemptId) -> String {
    let hash = attempt_hash(attempt);
    let readable = dns_label(
        &format!(
            "{}-{}-{}",
            attempt.execution.name, attempt.node_id, attempt.attempt
        ),
        63 - hash.len() - 1,
    );
    format!("{readable}-{hash}")
}

/// The label selector that finds an attempt's pod.
pub fn attempt_selector(attempt: &AttemptId) -> String {
    format!("{LABEL_ATTEMPT}={}", attempt_hash(attempt))
}

/// The environment an attempt's container gets: where its outputs go, its inputs (blobs and offloaded values
/// by URI: the pod reads them from the store itself), its identity, and the task's own variables.
pub fn attempt_env(
    attempt: &AttemptId,
    inputs: &Outputs,
    container: &ContainerSpec,
    output_uri: &str,
) -> Vec<EnvVar> {
    let value = |name: &str, value: String| EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    };
    let mut env = vec![
        value("ALOFT_OUTPUT_URI", output_uri.to_string()),
        value("ALOFT_EXECUTION", attempt.execution.to_string()),
        value("ALOFT_NODE", attempt.node_id.clone()),
        value("ALOFT_ATTEMPT", attempt.attempt.to_string()),
    ];
    for (name, input) in inputs {
        let text = match input {
            Value::Blob { uri, .. } | Value::Offloaded { uri, .. } => uri.clone(),
            other => other.to_text(),
        };
        env.push(value(&format!("ALOFT_INPUT_{}", name.to_ascii_uppercase()), text));
    }
    env.extend(container.env.iter().map(|(name, text)| value(name, text.clone())));
    env
}

/// CPU as Kubernetes writes it: whole cores bare (`2`), else millicores (`500m`).
fn cpu_quantity(millis: u64) -> Quantity {
    if millis.is_multiple_of(1000) {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

/// Bytes in the largest binary unit that divides them exactly (`4Gi`, `512Mi`), else as bytes.
fn bytes_quantity(bytes: u64) -> Quantity {
    for (suffix, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return Quantity(format!("{}{suffix}", bytes / size));
        }
    }
    Quantity(bytes.to_string())
}

/// Requests and limits in Kubernetes quantities (GPUs as a limit: extended resources are not overcommitted).
fn resources(task: &TaskSpec) -> Option<ResourceRequirements> {
    let resources = task.resources.as_ref()?;
    let (requests, limits) = (resources.requests(), resources.limits());
    let mut request_map = BTreeMap::new();
    let mut limit_map = BTreeMap::new();
    if let Some(cpu) = requests.cpu_millis {
        request_map.insert("cpu".to_string(), cpu_quantity(cpu));
    }
    if let Some(memory) = requests.memory_bytes {
        request_map.insert("memory".to_string(), bytes_quantity(memory));
    }
    if let Some(storage) = requests.ephemeral_storage_bytes {
        request_map.insert("ephemeral-storage".to_string(), bytes_quantity(storage));
    }
    if let Some(cpu) = limits.cpu_millis {
        limit_map.insert("cpu".to_string(), cpu_quantity(cpu));
    }
    if let Some(memory) = limits.memory_bytes {
        limit_map.insert("memory".to_string(), bytes_quantity(memory));
    }
    if let Some(storage) = limits.ephemeral_storage_bytes {
        limit_map.insert("ephemeral-storage".to_string(), bytes_quantity(storage));
    }
    if requests.gpu > 0 {
        // Extended resources are requested as limits (the request defaults to it).
        limit_map.insert(GPU_RESOURCE.to_string(), Quantity(requests.gpu.to_string()));
    }
    if request_map.is_empty() && limit_map.is_empty() {
        return None;
    }
    Some(ResourceRequirements {
        requests: (!request_map.is_empty()).then_some(request_map),
        limits: (!limit_map.is_empty()).then_some(limit_map),
        ..Default::default()
    })
}

/// The pod that runs `attempt` of `task` with `inputs`; `interruptible`: it may run on spot nodes.
pub fn attempt_pod(
    settings: &PodSettings,
    attempt: &AttemptId,
    task: &TaskSpec,
    container: &ContainerSpec,
    inputs: &Outputs,
    output_uri: &str,
    interruptible: bool,
) -> Pod {
    let id = &attempt.execution;
    let labels: BTreeMap<String, String> = [
        (LABEL_MANAGED_BY, "aloft".to_string()),
        (LABEL_ATTEMPT, attempt_hash(attempt)),
        (LABEL_PROJECT, dns_label(&id.project, 63)),
        (LABEL_DOMAIN, dns_label(&id.domain, 63)),
        (LABEL_EXECUTION, dns_label(&id.name, 63)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    let mut env = attempt_env(attempt, inputs, container, output_uri);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for secret in &task.secrets {
        let secret_name = dns_label(&secret.name, 253);
        if let Some(variable) = &secret.env {
            env.push(EnvVar {
                name: variable.clone(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret_name,
                        key: SECRET_KEY.to_string(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            });
        } else if let Some(file) = secret.file_name() {
            let volume = format!("secret-{}", dns_label(&secret.name, 50));
            volumes.push(Volume {
                name: volume.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret_name),
                    items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                        key: SECRET_KEY.to_string(),
                        path: file.to_string(),
                        mode: Some(0o400),
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: volume,
                mount_path: format!("{SECRETS_MOUNT}/{file}"),
                sub_path: Some(file.to_string()),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    if !mounts.is_empty() {
        env.push(EnvVar {
            name: "ALOFT_SECRETS_DIR".to_string(),
            value: Some(SECRETS_MOUNT.to_string()),
            value_from: None,
        });
    }
    let requests = task.resources.as_ref().map(|r| r.requests()).unwrap_or_default();
    let mut tolerations = Vec::new();
    let mut node_selector = BTreeMap::new();
    if requests.gpu > 0 {
        tolerations.push(Toleration {
            key: Some(GPU_RESOURCE.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some("NoSchedule".to_string()),
            ..Default::default()
        });
    }
    if let Some(accelerator) = task.resources.as_ref().and_then(|r| r.accelerator.clone()) {
        node_selector.insert(settings.accelerator_label.clone(), accelerator);
    }
    if interruptible {
        tolerations.push(Toleration {
            key: Some(INTERRUPTIBLE_TAINT.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some("NoSchedule".to_string()),
            ..Default::default()
        });
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(attempt)),
            namespace: Some(settings.namespace(&id.project, &id.domain)),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_ATTEMPT.to_string(),
                attempt.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            active_deadline_seconds: task
                .timeout_millis()
                .map(|millis| (millis.max(1000) + 999) / 1000),
            service_account_name: settings.service_account.clone(),
            image_pull_secrets: (!settings.image_pull_secrets.is_empty()).then(|| {
                settings
                    .image_pull_secrets
                    .iter()
                    .map(|name| LocalObjectReference { name: name.clone() })
                    .collect()
            }),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            volumes: (!volumes.is_empty()).then_some(volumes),
            containers: vec![Container {
                name: "task".to_string(),
                image: Some(container.image.clone()),
                command: (!container.command.is_empty()).then(|| container.command.clone()),
                args: (!container.args.is_empty()).then(|| container.args.clone()),
                working_dir: container.working_dir.clone(),
                env: Some(env),
                resources: resources(task),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}
