//! Distributed traces: one execution is one trace, from the API call through the propeller's attempts,
//! the catalog and the notifier. Spans are exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set (nothing is recorded otherwise). The context travels as a W3C `traceparent`: in the envelope of
//! every event (admin writes it on `ExecutionRequested`, the propeller copies it onto its decisions) and in
//! a `traceparent` gRPC header between services.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Tracer, TracerProvider};

/// The environment variable naming the OTLP/gRPC collector (e.g. `http://otel-collector:4317`).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The header (gRPC metadata key) carrying the trace context between services.
pub const TRACEPARENT_HEADER: &str = "traceparent";

struct Exporting {
    provider: TracerProvider,
    tracer: Tracer,
}

static EXPORTING: OnceLock<Exporting> = OnceLock::new();

tokio::task_local! {
    /// The traceparent of the span the current task works for (read by outgoing gRPC calls).
    static CURRENT: String;
}

/// Starts exporting this service's spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Must run inside the
/// tokio runtime (the exporter's channel and batch processor live on it).
pub fn init_otlp(service: &str) -> anyhow::Result<()> {
    let Some(endpoint) = std::env::var(OTLP_ENDPOINT_ENV).ok().filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|error| anyhow::anyhow!("{OTLP_ENDPOINT_ENV}={endpoint}: {error}"))?;
    let provider = TracerProvider::builder()
        .with_batch_exporter(exporter, opentelemetry_sdk::runtime::Tokio)
        .with_resource(opentelemetry_sdk::Resource::new([KeyValue::new(
            "service.name",
            service.to_string(),
        )]))
        .build();
    let tracer = provider.tracer(service.to_string());
    let _ = EXPORTING.set(Exporting { provider, tracer });
    tracing::info!(%endpoint, "exporting spans over OTLP");
    Ok(())
}

/// Sends the spans still buffered (call before the process exits).
pub fn flush() {
    if let Some(exporting) = EXPORTING.get() {
        for result in exporting.provider.force_flush() {
            if let Err(error) = result {
                tracing::warn!(%error, "cannot flush spans");
            }
        }
    }
}

fn parent_context(traceparent: &str) -> Context {
    if traceparent.is_empty() {
        return Context::new();
    }
    let carrier = HashMap::from([(TRACEPARENT_HEADER.to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// One unit of Aloft's work in a trace; ended when dropped.
pub struct Span {
    inner: Option<opentelemetry_sdk::trace::Span>,
    traceparent: String,
}

impl Span {
    /// Starts `name` as a child of `parent` (a traceparent; empty: a new trace). `server`: the span serves
    /// a request (an API call); otherwise it is internal work.
    pub fn start(
        name: &'static str,
        parent: &str,
        server: bool,
        attributes: &[(&'static str, String)],
    ) -> Span {
        let Some(exporting) = EXPORTING.get() else {
            // Not exporting: pass the context on unchanged, so a service that does export still joins it.
            return Span {
                inner: None,
                traceparent: parent.to_string(),
            };
        };
        let kind = if server {
            SpanKind::Server
        } else {
            SpanKind::Internal
        };
        let span = exporting
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(
                attributes
                    .iter()
                    .map(|(key, value)| KeyValue::new(*key, value.clone())),
            )
            .start_with_context(&exporting.tracer, &parent_context(parent));
        let context = span.span_context();
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        Span {
            inner: Some(span),
            traceparent,
        }
    }

    /// This span's context as a W3C traceparent, for the events and calls it causes.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: &str) {
        if let Some(span) = &mut self.inner {
            span.set_status(Status::error(message.to_string()));
        }
    }

    /// Runs `work` with this span as the task's current context (outgoing gRPC calls carry it).
    pub async fn scope<F: std::future::Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.traceparent.clone(), work).await
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(span) = &mut self.inner {
            span.end();
        }
    }
}

/// The trace context of an incoming gRPC call (empty when the caller sent none or it is malformed).
pub fn from_grpc(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| parent_context(value).span().span_context().is_valid())
        .unwrap_or_default()
        .to_string()
}

/// Adds the current task's trace context (see `Span::scope`) to an outgoing gRPC call.
pub fn to_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    let current = CURRENT.try_with(Clone::clone).unwrap_or_default();
    if let Ok(value) = current.parse() {
        if !current.is_empty() {
            metadata.insert(TRACEPARENT_HEADER, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_the_context_passes_through() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = Span::start("work", parent, false, &[]);
        assert_eq!(span.traceparent(), parent);
    }

    #[test]
    fn incoming_headers_must_be_valid_traceparents() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            TRACEPARENT_HEADER,
            "garbage".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(from_grpc(&metadata), "");
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        metadata.insert(
            TRACEPARENT_HEADER,
            valid.parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(from_grpc(&metadata), valid);
    }
}
