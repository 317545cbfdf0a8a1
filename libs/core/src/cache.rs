//! Memoization rules: which tasks are cached, the cache key of one run, and the cache status recorded on
//! every succeeded attempt.
//!
//! The key covers project, domain, task name, the cache version, the task's interface and a canonical hash
//! of the input values. The task *version* is deliberately not part of it: registering new code under the
//! same cache version reuses earlier results. Bump `cache.version` when a code change alters the outputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::ExecutionId;
use crate::interface::{Interface, Outputs};
use crate::invalid::SpecError;
use crate::types::Value;

/// `cache:` on a task spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Part of the cache key; bump it to invalidate results of earlier code.
    pub version: String,
    /// Concurrent runs with the same key run the task once: the others wait for the first one's result.
    #[serde(default)]
    pub serialize: bool,
    /// Inputs left out of the key (a log level, a scratch path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_inputs: Vec<String>,
}

impl CacheConfig {
    pub fn validate(&self, task: &str, interface: &Interface) -> Result<(), SpecError> {
        if self.version.trim().is_empty() {
            return Err(SpecError::task(task, "cache.version must not be empty"));
        }
        for ignored in &self.ignored_inputs {
            if !interface.inputs.contains_key(ignored) {
                return Err(SpecError::task(
                    task,
                    format!("cache.ignored_inputs names {ignored:?}, which is not an input of the task"),
                ));
            }
        }
        Ok(())
    }
}

/// What the cache did for one attempt, as in Flyte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CacheStatus {
    /// The task is not cached.
    Disabled,
    /// Looked up, not found, ran (and the attempt did not succeed, so nothing was stored).
    Miss,
    /// Served from the cache without running.
    Hit,
    /// Not found, ran, and the result was stored.
    Populated,
    /// The catalog could not be asked; the task ran anyway.
    LookupFailure,
    /// The task ran but its result could not be stored.
    PutFailure,
    /// The lookup was skipped (`overwrite_cache`); the task ran and replaced the stored result.
    Skipped,
}

impl CacheStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Disabled => "DISABLED",
            CacheStatus::Miss => "MISS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Populated => "POPULATED",
            CacheStatus::LookupFailure => "LOOKUP_FAILURE",
            CacheStatus::PutFailure => "PUT_FAILURE",
            CacheStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(text: &str) -> Option<CacheStatus> {
        [
            CacheStatus::Disabled,
            CacheStatus::Miss,
            CacheStatus::Hit,
            CacheStatus::Populated,
            CacheStatus::LookupFailure,
            CacheStatus::PutFailure,
            CacheStatus::Skipped,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// Whether the attempt's outputs should be (or were) stored under its key. A result whose store or
    /// lookup failed (the catalog was down) is stored from the log when the catalog catches up.
    pub fn stores_result(&self) -> bool {
        matches!(
            self,
            CacheStatus::Populated
                | CacheStatus::Skipped
                | CacheStatus::LookupFailure
                | CacheStatus::PutFailure
        )
    }
}

/// The attempt that produced a result: where a cache hit's outputs came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBy {
    pub execution: ExecutionId,
    pub node: String,
    pub attempt: u32,
}

/// `EXECUTION/NODE/ATTEMPT`, as history, the read models and `aloft get` show it, and the owner of a cache
/// reservation (the propeller reserves with it and the catalog releases by it, so both format it here).
impl std::fmt::Display for ProducedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.execution, self.node, self.attempt)
    }
}

/// Recorded on `AttemptSucceeded` of a cached task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheOutcome {
    pub key: String,
    pub status: CacheStatus,
    /// For a hit: the attempt whose outputs were reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ProducedBy>,
}

/// The cache key of running `task_name` (with `config`) on `inputs`, as lowercase hex SHA-256.
pub fn cache_key(
    project: &str,
    domain: &str,
    task_name: &str,
    config: &CacheConfig,
    interface: &Interface,
    inputs: &Outputs,
) -> String {
    let mut canonical = String::new();
    canonical.push_str("aloft-cache-v1\n");
    for part in [project, domain, task_name, config.version.as_str()] {
        push_text(&mut canonical, part);
    }
    // BTreeMaps serialize in key order, so the interface text is stable.
    let interface_text = serde_json::to_string(interface).unwrap_or_default();
    push_text(&mut canonical, &interface_text);
    let kept: BTreeMap<&String, &Value> = inputs
        .iter()
        .filter(|(name, _)| !config.ignored_inputs.contains(name))
        .collect();
    canonical.push('{');
    for (name, value) in kept {
        push_text(&mut canonical, name);
        canonical_value(&mut canonical, value);
    }
    canonical.push('}');
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Length-prefixed, so no two different sequences of parts give the same text.
fn push_text(out: &mut String, text: &str) {
    out.push_str(&text.len().to_string());
    out.push(':');
    out.push_str(text);
}

fn canonical_float(out: &mut String, value: f64) {
    // One spelling per number: 1, 1.0 and 1.00 parse to the same f64; -0.0 equals 0.0; every NaN is one.
    let normalized = if value == 0.0 {
        0.0
    } else if value.is_nan() {
        f64::NAN
    } else {
        value
    };
    out.push_str(&format!("f{:016x}", normalized.to_bits()));
}

fn canonical_value(out: &mut String, value: &Value) {
    match value {
        Value::Integer(i) => out.push_str(&format!("i{i};")),
        Value::Float(f) => canonical_float(out, *f),
        Value::String(s) => {
            out.push('s');
            push_text(out, s);
        }
        Value::Boolean(b) => out.push_str(if *b { "T" } else { "F" }),
        Value::Datetime(at) => out.push_str(&format!("t{};", at.timestamp_micros())),
        Value::Duration { millis } => out.push_str(&format!("d{millis};")),
        Value::Blob {
            digest: Some(digest),
            format,
            ..
        } => {
            // The content, wherever it lives: equal bytes at another URI are the same input.
            out.push('B');
            push_text(out, digest);
            push_text(out, format);
        }
        Value::Blob {
            uri,
            format,
            digest: None,
            ..
        } => {
            // Content unknown (e.g. a URI given as an input): identified by where it is.
            out.push('b');
            push_text(out, uri);
            push_text(out, format);
        }
        Value::List(items) => {
            out.push('[');
            for item in items {
                canonical_value(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('m');
            out.push('{');
            for (key, item) in entries {
                push_text(out, key);
                canonical_value(out, item);
            }
            out.push('}');
        }
        Value::Struct(json) => {
            out.push('j');
            canonical_json(out, json);
        }
        Value::None => out.push('n'),
        Value::Offloaded {
            digest, value_type, ..
        } => {
            // Its stored text, wherever it lies.
            out.push('o');
            push_text(out, digest);
            push_text(out, &value_type.to_string());
        }
    }
}

fn canonical_json(out: &mut String, json: &serde_json::Value) {
    use serde_json::Value as J;
    match json {
        J::Null => out.push('n'),
        J::Bool(b) => out.push_str(if *b { "T" } else { "F" }),
        J::Number(number) => match number.as_i64() {
            Some(i) => out.push_str(&format!("i{i};")),
            None => canonical_float(out, number.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => {
            out.push('s');
            push_text(out, s);
        }
        J::Array(items) => {
            out.push('[');
            for item in items {
                canonical_json(out, item);
            }
            out.push(']');
        }
        J::Object(map) => {
            // Objects keep insertion order in memory; the key must not depend on it.
            let sorted: BTreeMap<&String, &serde_json::Value> = map.iter().collect();
            out.push('{');
            for (key, item) in sorted {
                push_text(out, key);
                canonical_json(out, item);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LiteralType;

    fn interface() -> Interface {
        Interface {
            inputs: [
                ("x".to_string(), LiteralType::Float),
                ("cfg".to_string(), LiteralType::Struct),
                ("log_level".to_string(), LiteralType::String),
            ]
            .into_iter()
            .collect(),
            outputs: [("y".to_string(), LiteralType::Float)].into_iter().collect(),
            ..Default::default()
        }
    }

    fn config(version: &str) -> CacheConfig {
        CacheConfig {
            version: version.to_string(),
            serialize: false,
            ignored_inputs: vec!["log_level".to_string()],
        }
    }

    fn inputs(x: f64, cfg: &str, log_level: &str) -> Outputs {
        [
            ("x".to_string(), Value::Float(x)),
            (
                "cfg".to_string(),
                Value::Struct(serde_json::from_str(cfg).unwrap()),
            ),
            ("log_level".to_string(), Value::String(log_level.to_string())),
        ]
        .into_iter()
        .collect()
    }

    fn key(version: &str, inputs: &Outputs) -> String {
        cache_key("p", "d", "train", &config(version), &interface(), inputs)
    }

    #[test]
    fn equal_inputs_give_equal_keys_whatever_their_spelling_or_order() {
        let a = key("1", &inputs(1.0, r#"{"a": 1, "b": [1.5, "x"]}"#, "info"));
        let b = key("1", &inputs(1.00, r#"{"b": [1.50, "x"], "a": 1}"#, "info"));
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            key("1", &inputs(-0.0, "{}", "")),
            key("1", &inputs(0.0, "{}", ""))
        );
    }

    #[test]
    fn ignored_inputs_do_not_change_the_key() {
        assert_eq!(
            key("1", &inputs(2.0, "{}", "debug")),
            key("1", &inputs(2.0, "{}", "info"))
        );
    }

    #[test]
    fn values_versions_and_interfaces_do_change_it() {
        let base = key("1", &inputs(2.0, "{}", "info"));
        assert_ne!(base, key("2", &inputs(2.0, "{}", "info")));
        assert_ne!(base, key("1", &inputs(2.5, "{}", "info")));
        assert_ne!(base, key("1", &inputs(2.0, r#"{"a": null}"#, "info")));
        let mut other_interface = interface();
        other_interface
            .outputs
            .insert("z".to_string(), LiteralType::Integer);
        let other = cache_key(
            "p",
            "d",
            "train",
            &config("1"),
            &other_interface,
            &inputs(2.0, "{}", "info"),
        );
        assert_ne!(base, other);
        assert_ne!(
            base,
            cache_key(
                "p",
                "d2",
                "train",
                &config("1"),
                &interface(),
                &inputs(2.0, "{}", "info")
            )
        );
    }

    #[test]
    fn blobs_are_keyed_by_content_digest_when_known_else_by_uri() {
        let blob = |uri: &str, digest: Option<&str>| {
            let mut interface = Interface::default();
            interface
                .inputs
                .insert("data".into(), LiteralType::Blob { format: "csv".into() });
            let inputs: Outputs = [(
                "data".to_string(),
                Value::Blob {
                    uri: uri.into(),
                    format: "csv".into(),
                    digest: digest.map(str::to_string),
                    size: None,
                },
            )]
            .into_iter()
            .collect();
            cache_key("p", "d", "load", &config("1"), &interface, &inputs)
        };
        let same = Some("sha256:00ff");
        assert_eq!(
            blob("file:///run-1/data.csv", same),
            blob("file:///run-2/data.csv", same)
        );
        assert_ne!(
            blob("file:///run-1/data.csv", same),
            blob("file:///run-1/data.csv", Some("sha256:0100"))
        );
        assert_ne!(
            blob("file:///run-1/data.csv", None),
            blob("file:///run-2/data.csv", None)
        );
        assert_ne!(
            blob("file:///run-1/data.csv", None),
            blob("file:///run-1/data.csv", same)
        );
    }

    #[test]
    fn keys_are_stable_across_processes() {
        // A fixed expectation: a change here silently invalidates every stored cache entry.
        let inputs: Outputs = [("n".to_string(), Value::Integer(3))].into_iter().collect();
        let interface = Interface {
            inputs: [("n".to_string(), LiteralType::Integer)].into_iter().collect(),
            outputs: Default::default(),
            ..Default::default()
        };
        let config = CacheConfig {
            version: "1".to_string(),
            serialize: false,
            ignored_inputs: vec![],
        };
        let first = cache_key("p", "d", "t", &config, &interface, &inputs);
        assert_eq!(first, cache_key("p", "d", "t", &config, &interface, &inputs));
        assert_eq!(
            &first[..12],
            &STABLE_KEY_PREFIX[..12],
            "the cache key format changed"
        );
    }

    const STABLE_KEY_PREFIX: &str = "5f51c8d92005";

    #[test]
    fn empty_versions_and_unknown_ignored_inputs_are_rejected() {
        let error = config(" ").validate("train", &interface()).unwrap_err();
        assert!(
            error.to_string().contains("cache.version must not be empty"),
            "{error}"
        );
        let mut bad = config("1");
        bad.ignored_inputs.push("nope".to_string());
        let error = bad.validate("train", &interface()).unwrap_err();
        assert!(error.to_string().contains("\"nope\""), "{error}");
    }
}
