//! One trace per execution, exported over OTLP: admin, propeller and catalog run as processes with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/gRPC receiver in this test (the real protocol on
//! loopback). The API call's span is the trace's root; the propeller's lookup before the start and the task
//! attempt are its children; the catalog's lookup is the lookup span's child and its store the attempt's.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;

#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn text(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(value) => Some((kv.key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = text(
                &resource_spans
                    .resource
                    .map(|resource| resource.attributes)
                    .unwrap_or_default(),
            );
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: text(&span.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

const CACHED_TASK: &str = r#"kind: task
name: double
version: "1"
interface: {inputs: {x: integer}, outputs: {y: integer}}
cache: {version: "1"}
run:
  process:
    command: ["sh", "-c", "echo $((ALOFT_INPUT_X * 2)) > \"$ALOFT_OUTPUT_DIR/y\""]
"#;

async fn run_double(client: &mut AdminClient, name: &str) -> wire::ExecutionIdentifier {
    let double = task("double", "1");
    let id = launch(client, double, name, &[("x", "21")]).await.unwrap();
    wait_succeeded(client, &id, Duration::from_secs(60)).await;
    id
}

/// The spans of `execution`'s trace once its root and `catalog_spans` catalog spans arrived.
async fn trace_of(receiver: &Receiver, execution: &str, catalog_spans: usize) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let propeller = spans.iter().find(|span| {
            span.service == "aloft-propeller"
                && span.attributes.get("aloft.execution").map(String::as_str) == Some(execution)
        });
        if let Some(propeller) = propeller {
            let trace: Vec<ReceivedSpan> = spans
                .iter()
                .filter(|span| span.trace_id == propeller.trace_id)
                .cloned()
                .collect();
            let catalog = trace
                .iter()
                .filter(|span| span.service == "aloft-catalog")
                .count();
            let has_root = trace.iter().any(|span| span.service == "aloft-admin");
            if catalog >= catalog_spans && has_root {
                return trace;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the trace of {execution} never arrived whole; received: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_execution_is_one_trace_across_admin_propeller_and_catalog() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let receiver = Receiver::default();
    let port = free_port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve(([127, 0, 0, 1], port).into()),
    );
    let deployment = Deployment::new(&brokers, &database).await;
    let otel = || {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        ]
    };
    let _services = [
        deployment.start_with_env("aloft-admin", "admin", &otel()),
        deployment.start_with_env("aloft-catalog", "catalog", &otel()),
        deployment.start_with_env("aloft-propeller", "propeller", &otel()),
    ];
    let mut client = deployment.client().await;
    let spec = deployment.scratch.path().join("double.yaml");
    std::fs::write(&spec, CACHED_TASK).unwrap();
    register_file(&mut client, &spec).await;

    // The first run misses and stores; the second hits.
    let first = run_double(&mut client, "first").await;
    let second = run_double(&mut client, "second").await;
    let first_trace = trace_of(&receiver, &format!("{PROJECT}/{DOMAIN}/first"), 2).await;
    let second_trace = trace_of(&receiver, &format!("{PROJECT}/{DOMAIN}/second"), 1).await;
    assert_ne!(
        first_trace[0].trace_id, second_trace[0].trace_id,
        "two executions, two traces"
    );

    // The first run: looked up (miss), then the attempt ran and stored its result. The second: looked up
    // (hit) and succeeded in the same decision, with no attempt run.
    for (id, trace, propeller_spans) in [
        (
            &first,
            &first_trace,
            vec![
                ("propeller.attempt", "catalog.Put"),
                ("propeller.cache_lookup", "catalog.GetOrReserve"),
            ],
        ),
        (
            &second,
            &second_trace,
            vec![("propeller.cache_lookup", "catalog.GetOrReserve")],
        ),
    ] {
        let by_id: HashMap<&str, &ReceivedSpan> =
            trace.iter().map(|span| (span.span_id.as_str(), span)).collect();
        let roots: Vec<&ReceivedSpan> = trace
            .iter()
            .filter(|span| span.parent_span_id.is_empty())
            .collect();
        assert_eq!(roots.len(), 1, "{}: one root: {trace:#?}", id.name);
        let root = roots[0];
        assert_eq!(
            (root.service.as_str(), root.name.as_str()),
            ("aloft-admin", "admin.CreateExecution")
        );
        // Every other span's parent is in the same trace.
        for span in trace.iter().filter(|span| !span.parent_span_id.is_empty()) {
            assert!(
                by_id.contains_key(span.parent_span_id.as_str()),
                "{}: {} has a parent outside the trace",
                id.name,
                span.name
            );
        }
        let mut children: Vec<(&str, &str)> = Vec::new();
        for span in trace.iter().filter(|span| span.service == "aloft-propeller") {
            assert_eq!(
                span.parent_span_id, root.span_id,
                "{}: {} is the API call's child",
                id.name, span.name
            );
            assert_eq!(
                span.attributes.get("aloft.task").map(String::as_str),
                Some("double")
            );
            for child in trace.iter().filter(|child| child.parent_span_id == span.span_id) {
                assert_eq!(child.service, "aloft-catalog", "{}: {}", id.name, child.name);
                children.push((span.name.as_str(), child.name.as_str()));
            }
        }
        children.sort();
        assert_eq!(children, propeller_spans, "{}: {trace:#?}", id.name);
        assert_eq!(
            trace.len(),
            1 + 2 * propeller_spans.len(),
            "{}: only the root, the propeller's spans and their catalog calls: {trace:#?}",
            id.name
        );
    }
    server.abort();
}
