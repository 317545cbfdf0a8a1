//! One watch per namespace over the attempt pods there (label `app.kubernetes.io/managed-by=aloft`), shared
//! by every attempt the propeller follows in it, as a shared informer is: a thousand running attempts hold
//! one watch and the latest state of their own pod, rather than a thousand watches with their connections.
//!
//! An attempt subscribes before it creates its pod (so no event of it is missed) and seeds the subscription
//! with what it knows (the created pod, or one read back). States only move forward: an older
//! `resourceVersion` never replaces a newer one, and a deletion is final.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use super::pod::LABEL_MANAGED_BY;

/// What is known of one attempt's pod.
#[derive(Debug, Clone)]
pub(super) enum Seen {
    NotYet,
    Present(Box<Pod>),
    Deleted,
}

/// The watches of this propeller, one per namespace it has followed a pod in.
#[derive(Default)]
pub(super) struct PodWatches {
    namespaces: Mutex<HashMap<String, Arc<Followers>>>,
}

/// The attempts followed in one namespace, by pod name.
#[derive(Default)]
struct Followers {
    by_pod: Mutex<HashMap<String, watch::Sender<Seen>>>,
}

/// One attempt's subscription; dropping it unsubscribes.
pub(super) struct Following {
    pub(super) seen: watch::Receiver<Seen>,
    followers: Arc<Followers>,
    name: String,
}

impl Drop for Following {
    fn drop(&mut self) {
        lock(&self.followers.by_pod).remove(&self.name);
    }
}

impl Following {
    /// Records what the attempt learned itself (the pod it created or read), unless the watch knows newer.
    pub(super) fn seed(&self, pod: Pod) {
        self.followers.publish(&self.name, Seen::Present(Box::new(pod)));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `resourceVersion` of a pod as a number, when it is one (etcd's revisions are).
fn version(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

impl Followers {
    fn publish(&self, name: &str, seen: Seen) {
        let by_pod = lock(&self.by_pod);
        let Some(sender) = by_pod.get(name) else {
            return;
        };
        sender.send_if_modified(|current| {
            let newer = match (&*current, &seen) {
                (Seen::Deleted, _) => false,
                (_, Seen::Deleted) | (Seen::NotYet, _) => true,
                (Seen::Present(known), Seen::Present(new)) => match (version(known), version(new)) {
                    (Some(known), Some(new)) => new > known,
                    _ => true,
                },
                (Seen::Present(_), Seen::NotYet) => false,
            };
            if newer {
                *current = seen;
            }
            newer
        });
    }
}

impl Followers {
    /// The followed pods a (re)list did not show that had been seen before: deleted, or created after the
    /// list was taken. A pod not seen yet is not among them: it may not be created yet (an attempt
    /// subscribes before it creates its pod).
    fn unlisted(&self, listed: &HashSet<String>) -> Vec<String> {
        lock(&self.by_pod)
            .iter()
            .filter(|(name, seen)| !listed.contains(*name) && matches!(*seen.borrow(), Seen::Present(_)))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl PodWatches {
    /// Subscribes to pod `name` in `namespace`, starting the namespace's watch on first use.
    pub(super) fn follow(&self, client: &kube::Client, namespace: &str, name: &str) -> Following {
        let followers = {
            let mut namespaces = lock(&self.namespaces);
            match namespaces.get(namespace) {
                Some(followers) => Arc::clone(followers),
                None => {
                    let followers = Arc::new(Followers::default());
                    namespaces.insert(namespace.to_string(), Arc::clone(&followers));
                    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
                    tokio::spawn(dispatch(api, Arc::downgrade(&followers)));
                    followers
                }
            }
        };
        let (sender, seen) = watch::channel(Seen::NotYet);
        lock(&followers.by_pod).insert(name.to_string(), sender);
        Following {
            seen,
            followers,
            name: name.to_string(),
        }
    }
}

/// Runs one namespace's watch, handing each event to the attempt that follows that pod (if any).
async fn dispatch(api: Api<Pod>, followers: Weak<Followers>) {
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}=aloft"));
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    // The pods of the current (re)list: a followed pod missing from it was deleted while the watch was down.
    let mut listed = HashSet::new();
    while let Some(event) = events.next().await {
        let Some(followers) = followers.upgrade() else {
            return;
        };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "the watch of attempt pods failed; watching again");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                listed.insert(name.clone());
                followers.publish(&name, Seen::Present(Box::new(pod)));
            }
            watcher::Event::Apply(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                followers.publish(&name, Seen::Present(Box::new(pod)));
            }
            watcher::Event::Delete(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                followers.publish(&name, Seen::Deleted);
            }
            watcher::Event::InitDone => {
                let missing = followers.unlisted(&listed);
                // Not listed may also mean created after the list was taken: ask before calling it deleted.
                for name in missing {
                    let (api, followers) = (api.clone(), Arc::clone(&followers));
                    tokio::spawn(async move {
                        for _ in 0..10 {
                            match api.get_opt(&name).await {
                                Ok(Some(pod)) => {
                                    return followers.publish(&name, Seen::Present(Box::new(pod)))
                                }
                                Ok(None) => return followers.publish(&name, Seen::Deleted),
                                Err(error) => {
                                    tracing::warn!(pod = %name, %error, "cannot read a followed pod after a relist");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(version: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "resourceVersion": version},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn phase(seen: &Seen) -> Option<String> {
        match seen {
            Seen::Present(pod) => pod.status.as_ref()?.phase.clone(),
            _ => None,
        }
    }

    #[test]
    fn states_only_move_forward() {
        let followers = Arc::new(Followers::default());
        let (sender, seen) = watch::channel(Seen::NotYet);
        lock(&followers.by_pod).insert("p".into(), sender);
        followers.publish("p", Seen::Present(Box::new(pod("12", "Running"))));
        // An older read (the create's answer arriving after the watch's event) does not go back.
        followers.publish("p", Seen::Present(Box::new(pod("11", "Pending"))));
        assert_eq!(phase(&seen.borrow()).as_deref(), Some("Running"));
        followers.publish("p", Seen::Present(Box::new(pod("13", "Succeeded"))));
        assert_eq!(phase(&seen.borrow()).as_deref(), Some("Succeeded"));
        followers.publish("p", Seen::Deleted);
        followers.publish("p", Seen::Present(Box::new(pod("14", "Running"))));
        assert!(matches!(*seen.borrow(), Seen::Deleted));
        // Another pod's events reach nobody.
        followers.publish("q", Seen::Deleted);
    }

    #[test]
    fn after_a_relist_only_pods_seen_before_are_checked() {
        let followers = Followers::default();
        let (seen_sender, _seen) = watch::channel(Seen::Present(Box::new(pod("5", "Running"))));
        let (new_sender, _new) = watch::channel(Seen::NotYet);
        lock(&followers.by_pod).insert("seen".into(), seen_sender);
        lock(&followers.by_pod).insert("not-created-yet".into(), new_sender);
        assert_eq!(followers.unlisted(&HashSet::new()), ["seen"]);
        assert!(followers
            .unlisted(&HashSet::from(["seen".to_string()]))
            .is_empty());
    }
}
