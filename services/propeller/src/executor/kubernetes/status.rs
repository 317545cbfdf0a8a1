//! What a pod's status says about its attempt: still going, or how it ended. Kubelets report the reasons
//! this reads (`OOMKilled`, `ErrImagePull`/`ImagePullBackOff`, `CreateContainerConfigError`, `Evicted`,
//! `DeadlineExceeded`); the mapping
//! to user, timeout and system errors is the same as the container executor's.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

use super::helpers::{STAGE_IN_CONTAINER, STAGE_OUT_CONTAINER};
use super::pod_data::USER_ERROR_EXIT;

/// Where a pod stands.
#[derive(Debug, Clone, PartialEq)]
pub enum PodState {
    /// Pending or running; nothing to report yet.
    Going,
    /// Its image cannot be pulled: the task's error, with the kubelet's message.
    ImageUnavailable {
        reason: String,
        message: String,
    },
    /// Its container cannot be set up, such as for a Kubernetes Secret of a task secret that does not exist
    /// (`CreateContainerConfigError`: the kubelet's message names the secret): the platform's error.
    Unconfigurable {
        reason: String,
        message: String,
    },
    Succeeded,
    /// Killed over its memory limit.
    OutOfMemory,
    /// Killed at `activeDeadlineSeconds` (the task's timeout).
    DeadlineExceeded,
    /// Its node went away or evicted it: the platform's failure, retried.
    Lost {
        reason: String,
        message: String,
    },
    /// A data helper failed: staging the inputs (an input that does not exist is the user's error, `user`)
    /// or uploading the outputs.
    StagingFailed {
        step: &'static str,
        user: bool,
        message: String,
    },
    /// Its command exited non-zero.
    Exited {
        code: i32,
        message: String,
    },
}

/// Reads `pod`'s status (its `task` container's, and the pod's reason).
pub fn pod_state(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Going;
    };
    let helpers = || {
        let inits = status.init_container_statuses.iter().flatten();
        inits.chain(
            status
                .container_statuses
                .iter()
                .flatten()
                .filter(|s| s.name != "task"),
        )
    };
    let reason = status.reason.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|statuses| statuses.iter().find(|s| s.name == "task"));
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if phase == "Pending" || phase == "Running" {
        if let Some(waiting) = container
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
        {
            let waiting_reason = waiting.reason.clone().unwrap_or_default();
            if image_unavailable(&waiting_reason) {
                return PodState::ImageUnavailable {
                    reason: waiting_reason,
                    message: waiting.message.clone().unwrap_or_default(),
                };
            }
            if unconfigurable(&waiting_reason) {
                return PodState::Unconfigurable {
                    reason: waiting_reason,
                    message: waiting.message.clone().unwrap_or_default(),
                };
            }
        }
        // A helper that cannot start (its image, its credentials' Secret) is the platform's to fix.
        for helper in helpers() {
            if let Some(waiting) = helper.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                if image_unavailable(&reason) || unconfigurable(&reason) {
                    return PodState::Unconfigurable {
                        reason,
                        message: format!(
                            "helper container {}: {}",
                            helper.name,
                            waiting.message.clone().unwrap_or_default()
                        ),
                    };
                }
            }
        }
        return PodState::Going;
    }
    if phase == "Succeeded" {
        return PodState::Succeeded;
    }
    // Failed (or Unknown: the node stopped reporting).
    if reason == "DeadlineExceeded" {
        return PodState::DeadlineExceeded;
    }
    if phase != "Failed" || reason == "Evicted" || reason == "NodeLost" || reason == "Shutdown" {
        return PodState::Lost {
            reason: if reason.is_empty() {
                phase.to_string()
            } else {
                reason
            },
            message,
        };
    }
    let terminated = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    if let Some(failed) = failed_helper(status.init_container_statuses.as_deref(), STAGE_IN_CONTAINER) {
        return PodState::StagingFailed {
            step: "staging its inputs",
            user: failed.exit_code == USER_ERROR_EXIT,
            message: failed.message.clone().unwrap_or_default(),
        };
    }
    match terminated {
        Some(terminated) if terminated.reason.as_deref() == Some("OOMKilled") => {
            return PodState::OutOfMemory
        }
        Some(terminated) if terminated.exit_code != 0 => {
            return PodState::Exited {
                code: terminated.exit_code,
                message: terminated.message.clone().unwrap_or(message),
            }
        }
        _ => {}
    }
    // The task ended well, but its outputs did not reach the store.
    if let Some(failed) = failed_helper(status.container_statuses.as_deref(), STAGE_OUT_CONTAINER) {
        return PodState::StagingFailed {
            step: "uploading its outputs",
            user: false,
            message: failed.message.clone().unwrap_or_default(),
        };
    }
    match terminated {
        Some(terminated) => PodState::Exited {
            code: terminated.exit_code,
            message: terminated.message.clone().unwrap_or(message),
        },
        None => PodState::Lost {
            reason: if reason.is_empty() {
                "Failed".to_string()
            } else {
                reason
            },
            message,
        },
    }
}

/// A container waiting for an image it cannot get.
/// Whether `pod`'s task container has started (it runs, or ran): from then on the kubelet has a log of it.
pub fn task_started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|s| s.name == "task"))
        .and_then(|task| task.state.as_ref())
        .is_some_and(|state| state.running.is_some() || state.terminated.is_some())
}

fn image_unavailable(reason: &str) -> bool {
    matches!(
        reason,
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
    )
}

/// A container the kubelet cannot set up (a Secret or a volume it needs is missing).
fn unconfigurable(reason: &str) -> bool {
    matches!(reason, "CreateContainerConfigError" | "CreateContainerError")
}

/// How helper container `name` ended, when it failed.
fn failed_helper<'a>(
    statuses: Option<&'a [ContainerStatus]>,
    name: &str,
) -> Option<&'a ContainerStateTerminated> {
    statuses?
        .iter()
        .find(|s| s.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .filter(|terminated| terminated.exit_code != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn kubelet_reasons_map_to_attempt_outcomes() {
        assert_eq!(
            pod_state(&pod(serde_json::json!({"phase": "Running"}))),
            PodState::Going
        );
        assert_eq!(
            pod_state(&pod(serde_json::json!({"phase": "Succeeded"}))),
            PodState::Succeeded
        );
        assert_eq!(
            pod_state(&pod(
                serde_json::json!({"phase": "Pending", "containerStatuses": [{
                "name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}}]})
            )),
            PodState::ImageUnavailable {
                reason: "ImagePullBackOff".into(),
                message: "pull access denied".into()
            }
        );
        assert_eq!(
            pod_state(&pod(
                serde_json::json!({"phase": "Pending", "containerStatuses": [{
                "name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"hf-token\" not found"}}}]})
            )),
            PodState::Unconfigurable {
                reason: "CreateContainerConfigError".into(),
                message: "secret \"hf-token\" not found".into()
            }
        );
        assert_eq!(
            pod_state(&pod(
                serde_json::json!({"phase": "Failed", "containerStatuses": [{
                "name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})
            )),
            PodState::OutOfMemory
        );
        assert_eq!(
            pod_state(&pod(
                serde_json::json!({"phase": "Failed", "containerStatuses": [{
                "name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]})
            )),
            PodState::Exited {
                code: 3,
                message: String::new()
            }
        );
        assert_eq!(
            pod_state(&pod(
                serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded"})
            )),
            PodState::DeadlineExceeded
        );
        assert!(matches!(
            pod_state(&pod(serde_json::json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}))),
            PodState::Lost { reason, .. } if reason == "Evicted"
        ));
        assert!(matches!(
            pod_state(&pod(serde_json::json!({"phase": "Unknown"}))),
            PodState::Lost { reason, .. } if reason == "Unknown"
        ));
    }

    #[test]
    fn helper_failures_say_which_step_and_whose_fault() {
        let container = |name: &str, state: serde_json::Value| serde_json::json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": state});
        let missing_input = pod(serde_json::json!({"phase": "Failed",
            "initContainerStatuses": [container("aloft-inputs",
                serde_json::json!({"terminated": {"exitCode": 2, "message": "input \"reads\": s3://b/x does not exist"}}))],
            "containerStatuses": [container("task", serde_json::json!({"waiting": {"reason": "PodInitializing"}}))]}));
        assert_eq!(
            pod_state(&missing_input),
            PodState::StagingFailed {
                step: "staging its inputs",
                user: true,
                message: "input \"reads\": s3://b/x does not exist".into()
            }
        );
        let upload_failed = pod(serde_json::json!({"phase": "Failed", "containerStatuses": [
            container("aloft-outputs", serde_json::json!({"terminated": {"exitCode": 1, "message": "store unreachable"}})),
            container("task", serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))]}));
        assert!(matches!(
            pod_state(&upload_failed),
            PodState::StagingFailed {
                user: false,
                step: "uploading its outputs",
                ..
            }
        ));
        // The task's own failure comes first.
        let task_failed = pod(serde_json::json!({"phase": "Failed", "containerStatuses": [
            container("aloft-outputs", serde_json::json!({"terminated": {"exitCode": 1}})),
            container("task", serde_json::json!({"terminated": {"exitCode": 5, "reason": "Error"}}))]}));
        assert!(matches!(
            pod_state(&task_failed),
            PodState::Exited { code: 5, .. }
        ));
        let helper_image = pod(serde_json::json!({"phase": "Pending",
            "initContainerStatuses": [container("aloft-inputs",
                serde_json::json!({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}))]}));
        assert!(matches!(
            pod_state(&helper_image),
            PodState::Unconfigurable { message, .. } if message.contains("aloft-inputs")
        ));
    }
}
