//! The operations endpoints every service serves: `/healthz` (the process answers), `/readyz` (its
//! dependencies are reachable and it has caught up) and `/metrics` (Prometheus text format).
//!
//! Metrics are the `prometheus` crate's collectors in one in-process registry; each crate declares its names,
//! help texts and label names in its own `metrics.rs`. Labels must have bounded cardinality (tenant or outcome, never an execution id). The
//! endpoints are served by `aloft_runtime::tls::spawn_ops` (plain HTTP, or TLS when the service has a certificate).

use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use prometheus::{CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`), for durations and lags.
    Histogram,
}

/// Bucket bounds of every histogram, in seconds: from a few milliseconds (a dispatch, a projection batch)
/// to an hour (a long wait for resources or a slow delivery).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A metric's name, kind, help text and label names, declared once per crate as a `static` (its series
/// are made on first use). Backed by the `prometheus` crate's collectors, registered in one registry
/// per process (every service of `aloft dev` shares it).
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    /// The label names, in the order `render` prints them; calls give values by name.
    pub labels: &'static [&'static str],
    collector: OnceLock<Collector>,
}

enum Collector {
    Counter(CounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Metric {
        Metric::new(name, MetricKind::Counter, help, labels)
    }

    pub const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Metric {
        Metric::new(name, MetricKind::Gauge, help, labels)
    }

    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Metric {
        Metric::new(name, MetricKind::Histogram, help, labels)
    }

    const fn new(
        name: &'static str,
        kind: MetricKind,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Metric {
        Metric {
            name,
            kind,
            help,
            labels,
            collector: OnceLock::new(),
        }
    }

    fn collector(&self) -> &Collector {
        self.collector.get_or_init(|| {
            let built = match self.kind {
                MetricKind::Counter => {
                    CounterVec::new(Opts::new(self.name, self.help), self.labels).map(Collector::Counter)
                }
                MetricKind::Gauge => {
                    GaugeVec::new(Opts::new(self.name, self.help), self.labels).map(Collector::Gauge)
                }
                MetricKind::Histogram => HistogramVec::new(
                    HistogramOpts::new(self.name, self.help).buckets(SECONDS_BUCKETS.to_vec()),
                    self.labels,
                )
                .map(Collector::Histogram),
            };
            // Names and labels are constants of the code: a bad one is a bug caught by the first test.
            let collector = built.unwrap_or_else(|error| panic!("metric {}: {error}", self.name));
            let registered = match &collector {
                Collector::Counter(vec) => registry().register(Box::new(vec.clone())),
                Collector::Gauge(vec) => registry().register(Box::new(vec.clone())),
                Collector::Histogram(vec) => registry().register(Box::new(vec.clone())),
            };
            if let Err(error) = registered {
                tracing::warn!(metric = self.name, %error, "metric not registered");
            }
            collector
        })
    }

    /// The label values of `pairs` in the declared order (a label not given is empty).
    fn values<'a>(&self, pairs: &[(&'static str, &'a str)]) -> Vec<&'a str> {
        debug_assert!(
            pairs.iter().all(|(key, _)| self.labels.contains(key)),
            "{} has labels {:?}, given {pairs:?}",
            self.name,
            self.labels
        );
        self.labels
            .iter()
            .map(|label| {
                pairs
                    .iter()
                    .find(|(key, _)| key == label)
                    .map_or("", |(_, value)| *value)
            })
            .collect()
    }

    /// Declares the metric so it is listed (at 0 when it has no labels) before anything is recorded.
    pub fn register(&self) {
        if !self.labels.is_empty() {
            self.collector();
            return;
        }
        match self.collector() {
            Collector::Counter(vec) => drop(vec.with_label_values::<&str>(&[])),
            Collector::Gauge(vec) => drop(vec.with_label_values::<&str>(&[])),
            Collector::Histogram(vec) => drop(vec.with_label_values::<&str>(&[])),
        }
    }

    /// Adds `by` to a counter.
    pub fn increment(&self, label_pairs: &[(&'static str, &str)], by: f64) {
        debug_assert_eq!(self.kind, MetricKind::Counter, "{} is not a counter", self.name);
        if let Collector::Counter(vec) = self.collector() {
            vec.with_label_values(&self.values(label_pairs))
                .inc_by(by.max(0.0));
        }
    }

    /// Sets a gauge.
    pub fn set(&self, label_pairs: &[(&'static str, &str)], value: f64) {
        debug_assert_eq!(self.kind, MetricKind::Gauge, "{} is not a gauge", self.name);
        if let Collector::Gauge(vec) = self.collector() {
            vec.with_label_values(&self.values(label_pairs)).set(value);
        }
    }

    /// Records one observation of a histogram (seconds).
    pub fn observe(&self, label_pairs: &[(&'static str, &str)], value: f64) {
        debug_assert_eq!(
            self.kind,
            MetricKind::Histogram,
            "{} is not a histogram",
            self.name
        );
        if let Collector::Histogram(vec) = self.collector() {
            vec.with_label_values(&self.values(label_pairs)).observe(value);
        }
    }

    /// The current value of one labelled counter or gauge sample (a histogram's sum), if recorded.
    pub fn value(&self, label_pairs: &[(&'static str, &str)]) -> Option<f64> {
        let values = self.values(label_pairs);
        match self.collector() {
            Collector::Counter(vec) => vec.get_metric_with_label_values(&values).ok().map(|c| c.get()),
            Collector::Gauge(vec) => vec.get_metric_with_label_values(&values).ok().map(|g| g.get()),
            Collector::Histogram(vec) => vec
                .get_metric_with_label_values(&values)
                .ok()
                .map(|h| h.get_sample_sum()),
        }
    }
}

/// Every registered metric in the Prometheus text exposition format.
pub fn render() -> String {
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry().gather(), &mut text) {
        tracing::warn!(%error, "cannot render the metrics");
    }
    String::from_utf8(text).unwrap_or_default()
}

/// Why a service is not ready, as `/readyz` answers it (each service's own reason, rendered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotReady {
    pub reason: String,
}

impl NotReady {
    pub fn because(reason: impl std::fmt::Display) -> NotReady {
        NotReady {
            reason: reason.to_string(),
        }
    }
}

/// Says whether the service is ready; the error explains why not.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), NotReady>> + Send + Sync>;

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
