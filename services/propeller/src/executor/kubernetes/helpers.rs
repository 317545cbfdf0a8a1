//! The data helpers a task pod gets when the propeller is given a helper image (`--kubernetes-helper-image`):
//! a shared `emptyDir` at `/var/run/aloft`, an init container `aloft-inputs` that stages the attempt's inputs
//! there, and a container `aloft-outputs` (first in the pod, sharing its process namespace) that uploads the
//! task's outputs once its processes end. The task container gets the process task's contract:
//! `$ALOFT_INPUT_DIR`, `$ALOFT_OUTPUT_DIR`, and `ALOFT_INPUT_<NAME>` as a staged file's path. Copilot, Flyte's
//! helper for raw containers, works the same way.

use std::collections::BTreeMap;
use std::path::Path;

use aloft_blobstore::BlobStore;
use aloft_core::events::Outputs;
use aloft_core::Value;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, PodSpec, ResourceRequirements, SecretEnvSource,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::pod_data::{inputs_dir, outputs_dir, POD_DATA_DIR};
use crate::executor::attempt::AttemptId;
use crate::executor::staging::env_name;

/// The names of the helper containers (the executor reads their exit from the pod's status).
pub const STAGE_IN_CONTAINER: &str = "aloft-inputs";
pub const STAGE_OUT_CONTAINER: &str = "aloft-outputs";
const VOLUME: &str = "aloft-data";

/// The image the helpers run in and how they reach the store.
#[derive(Debug, Clone)]
pub struct DataHelper {
    /// An image with the `aloft` binary (Aloft's own).
    pub image: String,
    /// The blob-store settings the helpers get, as the propeller's own (`ALOFT_BLOB_STORE`,
    /// `ALOFT_RAW_DATA_STORES`): URLs only, never credentials.
    pub store_env: Vec<(String, String)>,
    /// A Secret in the task namespace whose keys become the helpers' environment (the store's credentials,
    /// e.g. `AWS_ACCESS_KEY_ID`); optional, as a cloud identity of the pod's service account does as well.
    pub credentials_secret: String,
}

fn var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Whether the init container stages `value` as a file the task reads by path (the same choice as process
/// staging: a blob of the store, an offloaded value, or a collection gathered from offloaded items).
fn staged_as_file(blobs: &BlobStore, value: &Value) -> bool {
    match value {
        Value::Blob { uri, .. } => blobs.owns(uri),
        Value::Offloaded { .. } => true,
        other => aloft_blobstore::holds_offloaded(other),
    }
}

/// Adds the helpers to `spec` (whose task container is named `task`), for `attempt` with `inputs`, its
/// outputs going to `output_key` in the attempt's tenant store.
pub fn add_data_helpers(
    spec: &mut PodSpec,
    helper: &DataHelper,
    blobs: &BlobStore,
    attempt: &AttemptId,
    inputs: &Outputs,
    output_key: &str,
) -> Result<(), serde_json::Error> {
    let data_dir = Path::new(POD_DATA_DIR);
    let mount = VolumeMount {
        name: VOLUME.to_string(),
        mount_path: POD_DATA_DIR.to_string(),
        ..Default::default()
    };
    let mut common_env = vec![var("ALOFT_POD_DATA_DIR", POD_DATA_DIR)];
    common_env.extend(
        helper
            .store_env
            .iter()
            .map(|(name, value)| var(name, value.clone())),
    );
    let helper_container = |name: &str, step: &str, env: Vec<EnvVar>| Container {
        name: name.to_string(),
        image: Some(helper.image.clone()),
        command: Some(["aloft", "admin", "pod-data", step].map(String::from).to_vec()),
        env: Some(common_env.iter().cloned().chain(env).collect()),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: helper.credentials_secret.clone(),
                optional: Some(true),
            }),
            ..Default::default()
        }]),
        volume_mounts: Some(vec![mount.clone()]),
        // Small requests, no limits: the helpers stream, and a limit would only fail a large transfer.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("50m".into())),
                ("memory".to_string(), Quantity("64Mi".into())),
            ])),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Default::default()
    };
    let stage_in = helper_container(
        STAGE_IN_CONTAINER,
        "stage-in",
        vec![var("ALOFT_POD_INPUTS", serde_json::to_string(inputs)?)],
    );
    let stage_out = helper_container(
        STAGE_OUT_CONTAINER,
        "stage-out",
        vec![
            var("ALOFT_OUTPUT_KEY", output_key),
            var("ALOFT_PROJECT", attempt.execution.project.clone()),
            var("ALOFT_DOMAIN", attempt.execution.domain.clone()),
        ],
    );
    for task in spec.containers.iter_mut().filter(|c| c.name == "task") {
        let env = task.env.get_or_insert_with(Vec::new);
        for var_of_input in env.iter_mut() {
            let staged = inputs
                .iter()
                .find(|(name, _)| env_name(name) == var_of_input.name)
                .filter(|(_, value)| staged_as_file(blobs, value));
            if let Some((name, _)) = staged {
                var_of_input.value = Some(inputs_dir(data_dir).join(name).display().to_string());
            }
        }
        env.push(var("ALOFT_INPUT_DIR", inputs_dir(data_dir).display().to_string()));
        env.push(var(
            "ALOFT_OUTPUT_DIR",
            outputs_dir(data_dir).display().to_string(),
        ));
        task.volume_mounts
            .get_or_insert_with(Vec::new)
            .push(mount.clone());
    }
    spec.init_containers.get_or_insert_with(Vec::new).push(stage_in);
    // First: the kubelet starts containers in order, so it is watching before the task exists.
    spec.containers.insert(0, stage_out);
    spec.share_process_namespace = Some(true);
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::executor::kubernetes::{attempt_pod, PodSettings};
    use aloft_core::spec::{ContainerSpec, TaskSpec};

    #[test]
    fn a_pod_with_helpers_stages_through_a_shared_volume() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(dir.path()).unwrap();
        let task: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "version": "1",
            "interface": {"inputs": {"n": "integer", "reads": "blob", "far": "blob"}, "outputs": {}},
            "run": {"container": {"image": "busybox:1", "command": ["sh", "-c", "true"]}}
        }))
        .unwrap();
        let aloft_core::spec::TaskKind::Container(container) = &task.run else {
            panic!()
        };
        let container: &ContainerSpec = container;
        let attempt = AttemptId {
            execution: aloft_core::ExecutionId {
                project: "p".into(),
                domain: "d".into(),
                name: "e1".into(),
            },
            node_id: "n0".into(),
            attempt: 1,
        };
        let blob = |uri: String| Value::Blob {
            uri,
            format: String::new(),
            digest: None,
            size: None,
        };
        let inputs = Outputs::from([
            ("n".to_string(), Value::Integer(4)),
            ("reads".to_string(), blob(blobs.uri_of("x/reads"))),
            ("far".to_string(), blob("https://example.com/far".to_string())),
        ]);
        let mut pod = attempt_pod(
            &PodSettings::default(),
            &attempt,
            &task,
            container,
            &inputs,
            "uri",
            false,
        );
        let helper = DataHelper {
            image: "aloft:test".into(),
            store_env: vec![("ALOFT_BLOB_STORE".into(), "s3://b/p".into())],
            credentials_secret: "aloft-blob-store".into(),
        };
        let spec = pod.spec.as_mut().unwrap();
        add_data_helpers(spec, &helper, &blobs, &attempt, &inputs, "p/d/e1/n0/1").unwrap();
        assert_eq!(spec.share_process_namespace, Some(true));
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["aloft-outputs", "task"]);
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, "aloft-inputs");
        assert_eq!(
            init.command.as_ref().unwrap().join(" "),
            "aloft admin pod-data stage-in"
        );
        let env = |c: &Container, name: &str| {
            c.env
                .as_ref()
                .unwrap()
                .iter()
                .find(|v| v.name == name)
                .and_then(|v| v.value.clone())
        };
        let staged: Outputs = serde_json::from_str(&env(init, "ALOFT_POD_INPUTS").unwrap()).unwrap();
        assert_eq!(staged, inputs);
        assert_eq!(env(init, "ALOFT_BLOB_STORE").as_deref(), Some("s3://b/p"));
        assert_eq!(
            init.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .optional,
            Some(true)
        );
        let task_container = &spec.containers[1];
        assert_eq!(env(task_container, "ALOFT_INPUT_N").as_deref(), Some("4"));
        assert_eq!(
            env(task_container, "ALOFT_INPUT_READS").as_deref(),
            Some("/var/run/aloft/inputs/reads")
        );
        // A blob outside the deployment's stores is the task's to fetch, by its URI.
        assert_eq!(
            env(task_container, "ALOFT_INPUT_FAR").as_deref(),
            Some("https://example.com/far")
        );
        assert_eq!(
            env(task_container, "ALOFT_OUTPUT_DIR").as_deref(),
            Some("/var/run/aloft/outputs")
        );
        assert_eq!(
            env(&spec.containers[0], "ALOFT_OUTPUT_KEY").as_deref(),
            Some("p/d/e1/n0/1")
        );
        for container in spec.containers.iter().chain([init]) {
            assert_eq!(
                container
                    .volume_mounts
                    .as_ref()
                    .unwrap()
                    .last()
                    .unwrap()
                    .mount_path,
                "/var/run/aloft"
            );
        }
    }
}
