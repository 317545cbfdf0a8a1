//! The operations endpoints every service serves: `/healthz` (the process answers), `/readyz` (its
//! dependencies are reachable and it has caught up) and `/metrics` (Prometheus text format).
//!
//! Metrics live in one in-process registry; each crate declares its names and help texts in its own
//! `metrics.rs`. Labels must have bounded cardinality (tenant or outcome, never an execution id). The
//! endpoints are served by `aloft_runtime::tls::spawn_ops` (plain HTTP, or TLS when the service has a certificate).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// A metric's name, kind and help text, declared once per crate.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    described: BTreeMap<&'static str, Metric>,
    values: BTreeMap<(&'static str, Labels), f64>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

fn with_registry<T>(action: impl FnOnce(&mut Registry) -> T) -> T {
    let mut registry = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    action(&mut registry)
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| (*key, value.to_string()))
        .collect()
}

impl Metric {
    /// Declares the metric so it is listed (at 0 when it has no labels) before anything is recorded.
    pub fn register(&self) {
        with_registry(|registry| {
            registry.described.insert(self.name, *self);
            registry.values.entry((self.name, Vec::new())).or_insert(0.0);
        });
    }

    pub fn increment(&self, label_pairs: &[(&'static str, &str)], by: f64) {
        debug_assert_eq!(self.kind, MetricKind::Counter, "{} is not a counter", self.name);
        with_registry(|registry| {
            registry.described.entry(self.name).or_insert(*self);
            *registry
                .values
                .entry((self.name, labels(label_pairs)))
                .or_insert(0.0) += by;
        });
    }

    /// The current value of one labelled sample, if recorded.
    pub fn value(&self, label_pairs: &[(&'static str, &str)]) -> Option<f64> {
        with_registry(|registry| registry.values.get(&(self.name, labels(label_pairs))).copied())
    }

    pub fn set(&self, label_pairs: &[(&'static str, &str)], value: f64) {
        debug_assert_eq!(self.kind, MetricKind::Gauge, "{} is not a gauge", self.name);
        with_registry(|registry| {
            registry.described.entry(self.name).or_insert(*self);
            registry.values.insert((self.name, labels(label_pairs)), value);
        });
    }
}

/// Every registered metric in the Prometheus text exposition format.
pub fn render() -> String {
    with_registry(|registry| {
        let mut text = String::new();
        for (name, metric) in &registry.described {
            let kind = match metric.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            text.push_str(&format!("# HELP {name} {}\n# TYPE {name} {kind}\n", metric.help));
            for ((sample_name, sample_labels), value) in &registry.values {
                if sample_name != name {
                    continue;
                }
                let rendered_labels = if sample_labels.is_empty() {
                    String::new()
                } else {
                    let pairs: Vec<String> = sample_labels
                        .iter()
                        .map(|(key, value)| {
                            format!("{key}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
                        })
                        .collect();
                    format!("{{{}}}", pairs.join(","))
                };
                text.push_str(&format!("{name}{rendered_labels} {value}\n"));
            }
        }
        text
    })
}

/// Says whether the service is ready; the error explains why not.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `/healthz`, `/readyz` and `/metrics`, for a server of the caller's (TLS: `aloft_runtime::tls::spawn_ops`).
pub fn router(readiness: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = Arc::clone(&readiness);
                async move {
                    match readiness().await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
                        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n"))
                            .into_response(),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async { ([("content-type", "text/plain; version=0.0.4")], render()).into_response() }),
        )
}
