//! The REST/JSON edge of admin: `/api/v1/...`, one route per RPC of the AdminService (`routes::ROUTES`).
//! A REST call becomes the gRPC request message (path parameters, query parameters typed by the message's
//! descriptor, and the JSON body), is answered by the very same handler as the gRPC call (so validation,
//! codes and messages are the same), and its error maps to an HTTP status through the one shared
//! `ErrorCode` mapping. The OpenAPI document is generated from the same route table and descriptors.

// A failed call here is an HTTP answer or a tonic status: the edge's own types, answered at once, however
// large (as `into_status` in the gRPC edge).
#![allow(clippy::result_large_err)]

pub mod openapi;
pub mod routes;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;

use aloft_proto::status::ErrorCode;
use aloft_proto::v1 as wire;
use aloft_proto::v1::admin_service_server::AdminService;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tonic::Request;

use crate::guard::Guarded;
use routes::{Answer, Route, ROUTES};
use schema::{RequestShapeError, Schemas};

#[derive(Clone)]
struct RestState {
    api: Guarded,
    /// The catalog, for its lineage and cache routes; `None`: those answer UNAVAILABLE.
    catalog: Option<aloft_catalog_client::RawClient>,
    schemas: Arc<Schemas>,
    openapi: Arc<Value>,
}

/// The `/api/v1` routes, answered by `api`.
pub fn router(
    api: Guarded,
    catalog: Option<aloft_catalog_client::RawClient>,
) -> anyhow::Result<axum::Router> {
    let schemas = Arc::new(anyhow::Context::context(
        Schemas::load(),
        "the embedded descriptor set is unreadable",
    )?);
    let openapi = Arc::new(openapi::document(&schemas));
    let state = RestState {
        api,
        catalog,
        schemas,
        openapi,
    };
    let mut router = axum::Router::new();
    // Routes sharing a path (GET and POST on /executions) must be added as one method router.
    let mut by_path: BTreeMap<String, axum::routing::MethodRouter<RestState>> = BTreeMap::new();
    for route in ROUTES {
        let handler = move |state: State<RestState>,
                            path: Path<BTreeMap<String, String>>,
                            query: RawQuery,
                            headers: HeaderMap,
                            body: Bytes| async move {
            handle(route, state.0, path.0, query.0, headers, body).await
        };
        let method = match route.method {
            "GET" => axum::routing::get(handler),
            "POST" => axum::routing::post(handler),
            _ => axum::routing::put(handler),
        };
        let path = routes::axum_path(route.path);
        let merged = match by_path.remove(&path) {
            Some(existing) => existing.merge(method),
            None => method,
        };
        by_path.insert(path, merged);
    }
    for (path, method) in by_path {
        router = router.route(&path, method);
    }
    Ok(router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(|state: State<RestState>| async move {
                axum::Json(state.openapi.as_ref().clone())
            }),
        )
        .route("/api/v1/*unknown", axum::routing::any(unknown_route))
        .with_state(state))
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    error_response(
        ErrorCode::NotFound,
        &format!(
            "no API route {}; see /api/v1/openapi.json for the routes",
            uri.path()
        ),
        None,
    )
}

/// An error answer: the shared mapping's HTTP status, and `{code, message}`.
fn error_response(code: ErrorCode, message: &str, retry_after: Option<&HeaderValue>) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        axum::Json(json!({"code": code.name(), "message": message})),
    )
        .into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value.clone());
    }
    response
}

fn status_response(status: &tonic::Status) -> Response {
    let retry_after = status
        .metadata()
        .get("retry-after")
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    error_response(
        ErrorCode::from_grpc(status.code()),
        status.message(),
        retry_after.as_ref(),
    )
}

fn bad_request(message: String) -> Response {
    error_response(ErrorCode::InvalidArgument, &message, None)
}

/// The request message of `route` as JSON: the body, then the query parameters, then the path parameters.
fn request_json(
    route: &Route,
    schemas: &Schemas,
    path: &BTreeMap<String, String>,
    query: Option<&str>,
    body: &[u8],
) -> Result<Value, RequestShapeError> {
    let mut request = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(RequestShapeError::BodyNotObject {
                    message: route.request,
                })
            }
            Err(e) => return Err(RequestShapeError::BodyNotJson(e.to_string())),
        }
    };
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        params
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    for (key, values) in &params {
        schemas.set_query_value(route.request, &mut request, key, values)?;
    }
    for (param, field) in route.path_fields {
        let Some(value) = path.get(*param) else {
            continue;
        };
        let mut target = &mut request;
        let mut parts = field.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                target.insert(part.to_string(), Value::String(value.clone()));
                break;
            }
            let next = target
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(next) = next else {
                break;
            };
            target = next;
        }
    }
    Ok(Value::Object(request))
}

fn decode<T: serde::de::DeserializeOwned>(route: &Route, request: Value) -> Result<T, Response> {
    serde_json::from_value(request).map_err(|e| bad_request(format!("invalid {}: {e}", route.request)))
}

fn json_answer<T: serde::Serialize>(result: Result<tonic::Response<T>, tonic::Status>) -> Response {
    match result {
        Ok(response) => axum::Json(response.into_inner()).into_response(),
        Err(status) => status_response(&status),
    }
}

async fn handle(
    route: &'static Route,
    state: RestState,
    path: BTreeMap<String, String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = match request_json(route, &state.schemas, &path, query.as_deref(), &body) {
        Ok(request) => request,
        Err(error) => return bad_request(error.to_string()),
    };
    // A reconnecting EventSource says where it was.
    if route.answer == Answer::EventStream {
        if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
            if let Value::Object(map) = &mut request {
                map.insert("after_index".to_string(), Value::String(last.to_string()));
            }
        }
    }
    // Credentials (and the trace context) reach the RPC as gRPC metadata, as they would over gRPC.
    let metadata = tonic::metadata::MetadataMap::from_headers(headers);
    if CATALOG_RPCS.contains(&route.rpc) {
        return match catalog_dispatch(route, state.catalog, request, metadata).await {
            Ok(response) | Err(response) => response,
        };
    }
    match dispatch(route, &state.api, request, metadata).await {
        Ok(response) | Err(response) => response,
    }
}

/// The RPC's request message, carrying the HTTP request's headers as metadata.
fn with_metadata<T>(message: T, metadata: &tonic::metadata::MetadataMap) -> Request<T> {
    let mut request = Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request
}

macro_rules! unary {
    ($route:expr, $api:expr, $request:expr, $method:ident, $metadata:expr) => {
        json_answer(AdminService::$method($api, with_metadata(decode($route, $request)?, &$metadata)).await)
    };
}

async fn dispatch(
    route: &'static Route,
    api: &Guarded,
    request: Value,
    metadata: tonic::metadata::MetadataMap,
) -> Result<Response, Response> {
    Ok(match route.rpc {
        "CreateProject" => unary!(route, api, request, create_project, metadata),
        "ListProjects" => unary!(route, api, request, list_projects, metadata),
        "RegisterTask" => unary!(route, api, request, register_task, metadata),
        "GetTask" => unary!(route, api, request, get_task, metadata),
        "ListTasks" => unary!(route, api, request, list_tasks, metadata),
        "RegisterWorkflow" => unary!(route, api, request, register_workflow, metadata),
        "GetWorkflow" => unary!(route, api, request, get_workflow, metadata),
        "ListWorkflows" => unary!(route, api, request, list_workflows, metadata),
        "RegisterLaunchPlan" => unary!(route, api, request, register_launch_plan, metadata),
        "RegisterBatch" => unary!(route, api, request, register_batch, metadata),
        "GetLaunchPlan" => unary!(route, api, request, get_launch_plan, metadata),
        "ListLaunchPlans" => unary!(route, api, request, list_launch_plans, metadata),
        "ActivateLaunchPlan" => unary!(route, api, request, activate_launch_plan, metadata),
        "DeactivateLaunchPlan" => unary!(route, api, request, deactivate_launch_plan, metadata),
        "SetNotificationDefaults" => unary!(route, api, request, set_notification_defaults, metadata),
        "SetTenantQuota" => unary!(route, api, request, set_tenant_quota, metadata),
        "DefinePool" => unary!(route, api, request, define_pool, metadata),
        "CreateExecution" => unary!(route, api, request, create_execution, metadata),
        "GetExecution" => unary!(route, api, request, get_execution, metadata),
        "ListExecutions" => unary!(route, api, request, list_executions, metadata),
        "CountExecutions" => unary!(route, api, request, count_executions, metadata),
        "ListNodeExecutions" => unary!(route, api, request, list_node_executions, metadata),
        "GetExecutionData" => unary!(route, api, request, get_execution_data, metadata),
        "GetNodeData" => unary!(route, api, request, get_node_data, metadata),
        "ListDeliveries" => unary!(route, api, request, list_deliveries, metadata),
        "ListTenants" => unary!(route, api, request, list_tenants, metadata),
        "GetExecutionHistory" => unary!(route, api, request, get_execution_history, metadata),
        "GetExecutionState" => unary!(route, api, request, get_execution_state, metadata),
        "TerminateExecution" => unary!(route, api, request, terminate_execution, metadata),
        "SignalExecution" => unary!(route, api, request, signal_execution, metadata),
        "ApproveExecution" => unary!(route, api, request, approve_execution, metadata),
        "RelaunchExecution" => unary!(route, api, request, relaunch_execution, metadata),
        "RecoverExecution" => unary!(route, api, request, recover_execution, metadata),
        "GetDataUrl" => unary!(route, api, request, get_data_url, metadata),
        "CreateApiKey" => unary!(route, api, request, create_api_key, metadata),
        "ListApiKeys" => unary!(route, api, request, list_api_keys, metadata),
        "RevokeApiKey" => unary!(route, api, request, revoke_api_key, metadata),
        "BindRole" => unary!(route, api, request, bind_role, metadata),
        "ListRoleBindings" => unary!(route, api, request, list_role_bindings, metadata),
        "ListAuditEvents" => unary!(route, api, request, list_audit_events, metadata),
        "WhoAmI" => unary!(route, api, request, who_am_i, metadata),
        "GetAuthInfo" => unary!(route, api, request, get_auth_info, metadata),
        "WatchExecution" => {
            let request: wire::WatchExecutionRequest = decode(route, request)?;
            match api.watch_execution(with_metadata(request, &metadata)).await {
                Ok(stream) => event_stream(stream.into_inner()),
                Err(status) => status_response(&status),
            }
        }
        "GetTaskLogs" => {
            let request: wire::GetTaskLogsRequest = decode(route, request)?;
            match api.get_task_logs(with_metadata(request, &metadata)).await {
                Ok(stream) => {
                    byte_stream(
                        stream.into_inner().map(|chunk| chunk.map(|c| c.data)),
                        "text/plain; charset=utf-8",
                    )
                    .await
                }
                Err(status) => status_response(&status),
            }
        }
        "DownloadData" => {
            let request: wire::DownloadDataRequest = decode(route, request)?;
            match api.download_data(with_metadata(request, &metadata)).await {
                Ok(stream) => {
                    byte_stream(
                        stream.into_inner().map(|chunk| chunk.map(|c| c.data)),
                        "application/octet-stream",
                    )
                    .await
                }
                Err(status) => status_response(&status),
            }
        }
        other => error_response(
            ErrorCode::Internal,
            &format!(
                "route {} names RPC {other}, which the REST edge does not serve",
                route.path
            ),
            None,
        ),
    })
}

/// The catalog's RPCs among the routes: admin forwards them with the caller's metadata, and the catalog
/// authenticates and authorizes the caller itself (the same policy).
pub const CATALOG_RPCS: &[&str] = &["ListCacheEntries", "Evict", "GetLineage"];

async fn catalog_dispatch(
    route: &'static Route,
    catalog: Option<aloft_catalog_client::RawClient>,
    request: Value,
    metadata: tonic::metadata::MetadataMap,
) -> Result<Response, Response> {
    let Some(mut catalog) = catalog else {
        return Err(error_response(
            ErrorCode::Unavailable,
            &format!(
                "{} is answered by the catalog, and this admin has no --catalog address",
                route.rpc
            ),
            None,
        ));
    };
    // Only the caller's credential and trace context go on: HTTP/1.1 headers such as `connection` or
    // `content-length` are not allowed on the HTTP/2 call to the catalog.
    let mut forwarded = tonic::metadata::MetadataMap::new();
    for key in ["authorization", "traceparent"] {
        if let Some(value) = metadata.get(key) {
            forwarded.insert(key, value.clone());
        }
    }
    let metadata = forwarded;
    Ok(match route.rpc {
        "ListCacheEntries" => json_answer(
            catalog
                .list_cache_entries(with_metadata(decode(route, request)?, &metadata))
                .await,
        ),
        "Evict" => json_answer(
            catalog
                .evict(with_metadata(decode(route, request)?, &metadata))
                .await,
        ),
        _ => json_answer(
            catalog
                .get_lineage(with_metadata(decode(route, request)?, &metadata))
                .await,
        ),
    })
}

/// Server-sent events: `id` is the event's place in the history (what Last-Event-ID resumes from), `data`
/// the HistoryEvent as JSON; an `error` event carries a failure, an `end` event says the execution ended.
fn event_stream(stream: crate::api::HistoryStream) -> Response {
    let events = stream
        .map(|item| {
            let frame = match item {
                Ok(event) => format!(
                    "id: {}\nevent: history\ndata: {}\n\n",
                    event.index,
                    serde_json::to_string(&event).unwrap_or_default()
                ),
                Err(status) => format!(
                    "event: error\ndata: {}\n\n",
                    json!({"code": ErrorCode::from_grpc(status.code()).name(), "message": status.message()})
                ),
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(frame))
        })
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"event: end\ndata: {}\n\n"))
        }));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A streamed RPC's bytes as the body. The first chunk is awaited before answering, so an error the RPC
/// finds at once (no such node, no log yet) is an error status, not a 200 with an empty body.
async fn byte_stream(
    stream: impl futures::Stream<Item = Result<Vec<u8>, tonic::Status>> + Send + 'static,
    content_type: &'static str,
) -> Response {
    let mut stream = Box::pin(stream);
    let first = match stream.next().await {
        Some(Err(status)) => return status_response(&status),
        Some(Ok(bytes)) => Some(Ok(bytes)),
        None => None,
    };
    let body = futures::stream::iter(first).chain(stream).map(|chunk| {
        chunk
            .map(Bytes::from)
            .map_err(|status| std::io::Error::other(status.message().to_string()))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_query_and_body_make_one_request_message() {
        let schemas = Schemas::load().unwrap();
        let route = ROUTES.iter().find(|r| r.rpc == "ListNodeExecutions").unwrap();
        let path: BTreeMap<String, String> = [("project", "p"), ("domain", "development"), ("name", "a1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let request = request_json(route, &schemas, &path, Some("parent=chunks&limit=20"), b"").unwrap();
        let parsed: wire::ListNodeExecutionsRequest = serde_json::from_value(request).unwrap();
        assert_eq!(parsed.id.unwrap().name, "a1");
        assert_eq!(parsed.parent, "chunks");
        assert_eq!(parsed.limit, 20);
        let error = request_json(route, &schemas, &path, None, b"[1]").unwrap_err();
        assert!(error.to_string().contains("JSON object"), "{error}");
    }
}
