//! What a task asks of the compute plane: the container it runs in (`run: {container: ...}`) and the
//! resources an attempt holds (CPU, memory, GPUs, ephemeral storage, and tokens of shared pools), validated
//! at registration so an executor never meets a quantity or image reference it cannot use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::validate_name;
use crate::invalid::SpecError;
use crate::quantity::Quantity;

/// `run: {container: {image, command, args, env, working_dir}}`: the task runs in its own image. `command`
/// replaces the image's entrypoint and `args` its default arguments, as in a Kubernetes container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

impl ContainerSpec {
    pub fn validate(&self, task: &str) -> Result<(), SpecError> {
        validate_image_reference(&self.image)
            .map_err(|e| SpecError::task(task, format!("run.container.image: {e}")))?;
        if let Some(dir) = &self.working_dir {
            if !dir.starts_with('/') {
                return Err(SpecError::task(
                    task,
                    format!("run.container.working_dir {dir:?} must be an absolute path"),
                ));
            }
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') {
                return Err(SpecError::task(
                    task,
                    format!("run.container.env: {name:?} is not an environment variable name"),
                ));
            }
        }
        Ok(())
    }
}

/// Why an image reference is not one a container engine would parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageReferenceError {
    #[error("the image reference is empty")]
    Empty,
    #[error("{image:?} is longer than an image reference can be")]
    TooLong { image: String },
    #[error("{image:?} has an invalid digest {digest:?} (expected ALGORITHM:HEX, e.g. sha256:...)")]
    Digest { image: String, digest: String },
    #[error("{image:?} has an invalid tag {tag:?} (letters, digits, _ . -, at most 128)")]
    Tag { image: String, tag: String },
    #[error("{image:?} has an invalid registry host {host:?}")]
    RegistryHost { image: String, host: String },
    #[error(
        "{image:?}: {component:?} is not a valid repository name component \
         (lowercase letters and digits, separated by one . or _, two _, or dashes)"
    )]
    PathComponent { image: String, component: String },
}

/// Checks an image reference the way container engines parse it:
/// `[host[:port]/]path[:tag][@algorithm:digest]`, the path lowercase components joined by `/`.
pub fn validate_image_reference(image: &str) -> Result<(), ImageReferenceError> {
    if image.is_empty() {
        return Err(ImageReferenceError::Empty);
    }
    if image.len() > 255 * 2 {
        return Err(ImageReferenceError::TooLong {
            image: image.to_string(),
        });
    }
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let valid = digest.split_once(':').is_some_and(|(algorithm, hex)| {
            !algorithm.is_empty()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-_".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !valid {
            return Err(ImageReferenceError::Digest {
                image: image.to_string(),
                digest: digest.to_string(),
            });
        }
    }
    // The tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        let valid = tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(ImageReferenceError::Tag {
                image: image.to_string(),
                tag: tag.to_string(),
            });
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // A first component with a `.` or `:` or equal to `localhost` is a registry host, not a path component.
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let host = first.split_once(':').map_or(first, |(host, _)| host);
            let host_ok = !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            let port_ok = match first.split_once(':') {
                None => true,
                Some((_, port)) => !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()),
            };
            if !host_ok || !port_ok {
                return Err(ImageReferenceError::RegistryHost {
                    image: image.to_string(),
                    host: first.to_string(),
                });
            }
            components.remove(0);
        }
    }
    for component in components {
        if !valid_path_component(component) {
            return Err(ImageReferenceError::PathComponent {
                image: image.to_string(),
                component: component.to_string(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if is_alnum(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !is_alnum(bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let valid =
            separator == "." || separator == "_" || separator == "__" || separator.chars().all(|c| c == '-');
        if !valid {
            return false;
        }
    }
    true
}

fn is_alnum(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

/// What an attempt holds while it runs: `resources: {cpu: 2, memory: 4Gi, gpu: 1, accelerator: nvidia-t4,
/// ephemeral_storage: 10Gi, limits: {memory: 8Gi}, pools: {warehouse: 1}}`. `cpu`, `memory`, `gpu` and
/// `ephemeral_storage` are requests; `limits` sets where the limit differs (by default it equals the
/// request). `pools` are tokens of named pools (defined with `aloft quota pool`) shared by every propeller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "quantity_text")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "quantity_text")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// The kind of GPU (e.g. `nvidia-tesla-t4`): a node selector on Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "quantity_text")]
    pub ephemeral_storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, u32>,
}

/// Limits where they differ from the requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "quantity_text")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "quantity_text")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "quantity_text")]
    pub ephemeral_storage: Option<String>,
}

/// Amounts in the units executors use: millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComputeAmounts {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub gpu: u32,
    pub ephemeral_storage_bytes: Option<u64>,
}

impl Resources {
    /// Checks every quantity and pool of `task`'s resources, naming the field that is wrong.
    pub fn validate(&self, task: &str) -> Result<(), SpecError> {
        let field = |name: &str, text: &Option<String>| -> Result<Option<Quantity>, SpecError> {
            text.as_deref()
                .map(|text| {
                    Quantity::parse(text).map_err(|e| SpecError::task(task, format!("resources.{name}: {e}")))
                })
                .transpose()
        };
        let cpu = field("cpu", &self.cpu)?;
        let memory = field("memory", &self.memory)?;
        let storage = field("ephemeral_storage", &self.ephemeral_storage)?;
        if cpu.is_some_and(|q| q.milli() == 0) {
            return Err(SpecError::task(task, "resources.cpu must be more than 0"));
        }
        if memory.is_some_and(|q| q.units() == 0) {
            return Err(SpecError::task(task, "resources.memory must be more than 0"));
        }
        if let Some(accelerator) = &self.accelerator {
            validate_name("accelerator", accelerator)
                .map_err(|e| SpecError::task(task, format!("resources.{e}")))?;
            if self.gpu.unwrap_or(0) == 0 {
                return Err(SpecError::task(
                    task,
                    format!("resources.accelerator {accelerator:?} needs resources.gpu of at least 1"),
                ));
            }
        }
        if let Some(limits) = &self.limits {
            let pairs = [
                (
                    "cpu",
                    cpu,
                    &self.cpu,
                    field("limits.cpu", &limits.cpu)?,
                    &limits.cpu,
                ),
                (
                    "memory",
                    memory,
                    &self.memory,
                    field("limits.memory", &limits.memory)?,
                    &limits.memory,
                ),
                (
                    "ephemeral_storage",
                    storage,
                    &self.ephemeral_storage,
                    field("limits.ephemeral_storage", &limits.ephemeral_storage)?,
                    &limits.ephemeral_storage,
                ),
            ];
            for (name, request, request_text, limit, limit_text) in pairs {
                if let (Some(request), Some(limit)) = (request, limit) {
                    if limit < request {
                        return Err(SpecError::task(
                            task,
                            format!(
                                "resources.limits.{name} {} is below the request {}",
                                limit_text.as_deref().unwrap_or_default(),
                                request_text.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
        }
        for (pool, amount) in &self.pools {
            validate_name("resource pool", pool).map_err(|e| SpecError::task(task, e.to_string()))?;
            if *amount == 0 {
                return Err(SpecError::task(
                    task,
                    format!("resources.pools.{pool} must be at least 1"),
                ));
            }
        }
        Ok(())
    }

    /// The requests, parsed (validated specs only; an unparsable field reads as unset).
    pub fn requests(&self) -> ComputeAmounts {
        ComputeAmounts {
            cpu_millis: parsed(&self.cpu).map(Quantity::milli),
            memory_bytes: parsed(&self.memory).map(Quantity::units),
            gpu: self.gpu.unwrap_or(0),
            ephemeral_storage_bytes: parsed(&self.ephemeral_storage).map(Quantity::units),
        }
    }

    /// The limits: each the limit where one is set, else the request.
    pub fn limits(&self) -> ComputeAmounts {
        let requests = self.requests();
        let limits = self.limits.clone().unwrap_or_default();
        ComputeAmounts {
            cpu_millis: parsed(&limits.cpu).map(Quantity::milli).or(requests.cpu_millis),
            memory_bytes: parsed(&limits.memory)
                .map(Quantity::units)
                .or(requests.memory_bytes),
            gpu: requests.gpu,
            ephemeral_storage_bytes: parsed(&limits.ephemeral_storage)
                .map(Quantity::units)
                .or(requests.ephemeral_storage_bytes),
        }
    }

    /// These resources with every field `overrides` sets taken from it (a node's override of its task's).
    pub fn overridden_by(&self, overrides: &Resources) -> Resources {
        let mut limits = self.limits.clone().unwrap_or_default();
        if let Some(over) = &overrides.limits {
            limits.cpu = over.cpu.clone().or(limits.cpu);
            limits.memory = over.memory.clone().or(limits.memory);
            limits.ephemeral_storage = over.ephemeral_storage.clone().or(limits.ephemeral_storage);
        }
        let mut pools = self.pools.clone();
        pools.extend(overrides.pools.clone());
        Resources {
            cpu: overrides.cpu.clone().or(self.cpu.clone()),
            memory: overrides.memory.clone().or(self.memory.clone()),
            gpu: overrides.gpu.or(self.gpu),
            accelerator: overrides.accelerator.clone().or(self.accelerator.clone()),
            ephemeral_storage: overrides
                .ephemeral_storage
                .clone()
                .or(self.ephemeral_storage.clone()),
            limits: (limits != ResourceLimits::default()).then_some(limits),
            pools,
        }
    }
}

fn parsed(text: &Option<String>) -> Option<Quantity> {
    text.as_deref().and_then(|text| Quantity::parse(text).ok())
}

/// Quantities are strings in specs, but YAML users write `cpu: 2` or `cpu: 0.5`: take numbers too.
mod quantity_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Str(String),
            Int(i64),
            Float(f64),
        }
        Ok(Option::<Text>::deserialize(deserializer)?.map(|text| match text {
            Text::Str(text) => text,
            Text::Int(number) => number.to_string(),
            Text::Float(number) => number.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn image_references_parse_as_engines_parse_them() {
        for good in [
            "busybox",
            "aloft-test/busybox:1",
            "ghcr.io/org/aligner:2.1.0",
            "localhost:5000/tools/bwa",
            "registry.example.com:443/a/b/c:latest",
            "python@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my_image__x-y.z:v1_2",
        ] {
            validate_image_reference(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, says) in [
            ("", "empty"),
            ("Busybox", "repository name component"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            ("a//b", "repository name component"),
            ("python@sha256:xyz", "invalid digest"),
            ("host:port/x", "registry host"),
            ("ubuntu 22.04", "repository name component"),
        ] {
            let error = validate_image_reference(bad).unwrap_err();
            assert!(error.to_string().contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn resources_parse_numbers_and_quantities_and_name_bad_fields() {
        let resources: Resources =
            serde_yaml::from_str("{cpu: 0.5, memory: 64Mi, limits: {memory: 128Mi}, gpu: 1}").unwrap();
        resources.validate("t").unwrap();
        assert_eq!(resources.requests().cpu_millis, Some(500));
        assert_eq!(resources.requests().memory_bytes, Some(64 << 20));
        assert_eq!(resources.limits().memory_bytes, Some(128 << 20));
        assert_eq!(resources.limits().cpu_millis, Some(500));
        for (yaml, says) in [
            ("{cpu: -1}", "resources.cpu"),
            ("{memory: 4GB}", "resources.memory"),
            (
                "{memory: 1Gi, limits: {memory: 512Mi}}",
                "resources.limits.memory 512Mi is below the request 1Gi",
            ),
            ("{accelerator: nvidia-t4}", "needs resources.gpu"),
            ("{cpu: 0}", "more than 0"),
            ("{limits: {cpu: lots}}", "resources.limits.cpu"),
        ] {
            let resources: Resources = serde_yaml::from_str(yaml).unwrap();
            let error = resources.validate("t").unwrap_err();
            assert!(error.to_string().contains(says), "{yaml}: {error}");
        }
    }

    #[test]
    fn a_node_override_replaces_only_what_it_sets() {
        let task: Resources = serde_yaml::from_str("{cpu: 1, memory: 1Gi, pools: {db: 1}}").unwrap();
        let node: Resources = serde_yaml::from_str("{memory: 4Gi, gpu: 1}").unwrap();
        let merged = task.overridden_by(&node);
        assert_eq!(merged.cpu.as_deref(), Some("1"));
        assert_eq!(merged.memory.as_deref(), Some("4Gi"));
        assert_eq!(merged.gpu, Some(1));
        assert_eq!(merged.pools.get("db"), Some(&1));
    }
}
