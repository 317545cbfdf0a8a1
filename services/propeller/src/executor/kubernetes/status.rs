//! What a pod's status says about its attempt: still going, or how it ended. Kubelets report the reasons
//! this reads (`OOMKilled`, `ErrImagePull`/`ImagePullBackOff`, `CreateContainerConfigError`, `Evicted`,
//! `DeadlineExceeded`); the mapping
//! to user, timeout and system errors is the same as the container executor's.

use k8s_openapi::api::core::v1::Pod;

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
            if matches!(
                waiting_reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
            ) {
                return PodState::ImageUnavailable {
                    reason: waiting_reason,
                    message: waiting.message.clone().unwrap_or_default(),
                };
            }
            if matches!(
                waiting_reason.as_str(),
                "CreateContainerConfigError" | "CreateContainerError"
            ) {
                return PodState::Unconfigurable {
                    reason: waiting_reason,
                    message: waiting.message.clone().unwrap_or_default(),
                };
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
    match terminated {
        Some(terminated) if terminated.reason.as_deref() == Some("OOMKilled") => PodState::OutOfMemory,
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
}
