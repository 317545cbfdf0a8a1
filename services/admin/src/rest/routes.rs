//! The REST routes, one per RPC of the AdminService and of the catalog's lineage and cache RPCs (which admin
//! forwards to the catalog with the caller's credentials): method, path, the RPC it calls and which request
//! fields its path sets. The router and the OpenAPI document are both made from this one table.

/// How a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The RPC's response message as JSON.
    Json,
    /// Server-sent events, one per streamed message (`WatchExecution`).
    EventStream,
    /// The streamed chunks' bytes as the body (`GetTaskLogs`, `DownloadData`).
    Bytes,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// OpenAPI's path syntax (`{name}`).
    pub path: &'static str,
    pub rpc: &'static str,
    pub request: &'static str,
    pub response: &'static str,
    /// Path parameter -> the request field it sets (dotted for nested fields).
    pub path_fields: &'static [(&'static str, &'static str)],
    pub answer: Answer,
    pub summary: &'static str,
}

const PROJECT: &[(&str, &str)] = &[("project", "project")];
const TENANT: &[(&str, &str)] = &[("project", "project"), ("domain", "domain")];
const ENTITY: &[(&str, &str)] = &[
    ("project", "id.project"),
    ("domain", "id.domain"),
    ("name", "id.name"),
];
const ENTITY_VERSION: &[(&str, &str)] = &[
    ("project", "id.project"),
    ("domain", "id.domain"),
    ("name", "id.name"),
    ("version", "id.version"),
];
const EXECUTION: &[(&str, &str)] = &[
    ("project", "id.project"),
    ("domain", "id.domain"),
    ("name", "id.name"),
];

const fn route(
    method: &'static str,
    path: &'static str,
    rpc: &'static str,
    request: &'static str,
    response: &'static str,
    path_fields: &'static [(&'static str, &'static str)],
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        rpc,
        request,
        response,
        path_fields,
        answer: Answer::Json,
        summary,
    }
}

const fn streamed(mut route: Route, answer: Answer) -> Route {
    route.answer = answer;
    route
}

macro_rules! under_domain {
    ($tail:literal) => {
        concat!("/api/v1/projects/{project}/domains/{domain}", $tail)
    };
}

pub const ROUTES: &[Route] = &[
    route(
        "POST",
        "/api/v1/projects",
        "CreateProject",
        "CreateProjectRequest",
        "CreateProjectResponse",
        &[],
        "Create a project (with the default domains unless it names its own).",
    ),
    route(
        "GET",
        "/api/v1/projects",
        "ListProjects",
        "ListProjectsRequest",
        "ListProjectsResponse",
        &[],
        "Every project.",
    ),
    route(
        "GET",
        "/api/v1/tenants",
        "ListTenants",
        "ListTenantsRequest",
        "ListTenantsResponse",
        &[],
        "Every project and domain with its quota and its attempts running and waiting, and the resource pools.",
    ),
    route(
        "POST",
        under_domain!("/tasks"),
        "RegisterTask",
        "RegisterRequest",
        "RegisterResponse",
        TENANT,
        "Register a task version (spec_json).",
    ),
    route(
        "GET",
        under_domain!("/tasks"),
        "ListTasks",
        "ListEntitiesRequest",
        "ListTasksResponse",
        TENANT,
        "The latest version of every task, or every version of one name.",
    ),
    route(
        "GET",
        under_domain!("/tasks/{name}"),
        "GetTask",
        "GetEntityRequest",
        "Task",
        ENTITY,
        "The latest version of a task.",
    ),
    route(
        "GET",
        under_domain!("/tasks/{name}/versions/{version}"),
        "GetTask",
        "GetEntityRequest",
        "Task",
        ENTITY_VERSION,
        "One version of a task.",
    ),
    route(
        "POST",
        under_domain!("/workflows"),
        "RegisterWorkflow",
        "RegisterRequest",
        "RegisterResponse",
        TENANT,
        "Register a workflow version (spec_json).",
    ),
    route(
        "GET",
        under_domain!("/workflows"),
        "ListWorkflows",
        "ListEntitiesRequest",
        "ListWorkflowsResponse",
        TENANT,
        "The latest version of every workflow, or every version of one name.",
    ),
    route(
        "GET",
        under_domain!("/workflows/{name}"),
        "GetWorkflow",
        "GetEntityRequest",
        "Workflow",
        ENTITY,
        "The latest version of a workflow.",
    ),
    route(
        "GET",
        under_domain!("/workflows/{name}/versions/{version}"),
        "GetWorkflow",
        "GetEntityRequest",
        "Workflow",
        ENTITY_VERSION,
        "One version of a workflow.",
    ),
    route(
        "POST",
        under_domain!("/launch_plans"),
        "RegisterLaunchPlan",
        "RegisterRequest",
        "RegisterResponse",
        TENANT,
        "Register a launch plan version (spec_json).",
    ),
    route(
        "POST",
        under_domain!("/registrations"),
        "RegisterBatch",
        "RegisterBatchRequest",
        "RegisterBatchResponse",
        TENANT,
        "Register tasks, workflows and launch plans together: all of them or, when one is refused, none.",
    ),
    route(
        "GET",
        under_domain!("/launch_plans"),
        "ListLaunchPlans",
        "ListEntitiesRequest",
        "ListLaunchPlansResponse",
        TENANT,
        "The latest version of every launch plan, or every version of one name.",
    ),
    route(
        "GET",
        under_domain!("/launch_plans/{name}"),
        "GetLaunchPlan",
        "GetEntityRequest",
        "LaunchPlan",
        ENTITY,
        "The latest version of a launch plan.",
    ),
    route(
        "GET",
        under_domain!("/launch_plans/{name}/versions/{version}"),
        "GetLaunchPlan",
        "GetEntityRequest",
        "LaunchPlan",
        ENTITY_VERSION,
        "One version of a launch plan.",
    ),
    route(
        "POST",
        under_domain!("/launch_plans/{name}/versions/{version}/activate"),
        "ActivateLaunchPlan",
        "GetEntityRequest",
        "LaunchPlan",
        ENTITY_VERSION,
        "Make this version the active one (its schedule fires).",
    ),
    route(
        "POST",
        under_domain!("/launch_plans/{name}/versions/{version}/deactivate"),
        "DeactivateLaunchPlan",
        "GetEntityRequest",
        "LaunchPlan",
        ENTITY_VERSION,
        "Deactivate this version.",
    ),
    route(
        "PUT",
        under_domain!("/notification_defaults"),
        "SetNotificationDefaults",
        "SetNotificationDefaultsRequest",
        "SetNotificationDefaultsResponse",
        TENANT,
        "Replace the notification rules of a domain (\"*\": every domain).",
    ),
    route(
        "PUT",
        under_domain!("/quota"),
        "SetTenantQuota",
        "SetTenantQuotaRequest",
        "SetTenantQuotaResponse",
        TENANT,
        "Set the tenant's weight and running limit.",
    ),
    route(
        "PUT",
        "/api/v1/pools/{name}",
        "DefinePool",
        "DefinePoolRequest",
        "DefinePoolResponse",
        &[("name", "name")],
        "Define or resize a resource pool.",
    ),
    route(
        "POST",
        under_domain!("/executions"),
        "CreateExecution",
        "CreateExecutionRequest",
        "CreateExecutionResponse",
        TENANT,
        "Launch a launch plan, workflow or task.",
    ),
    route(
        "GET",
        under_domain!("/executions"),
        "ListExecutions",
        "ListExecutionsRequest",
        "ListExecutionsResponse",
        TENANT,
        "Executions, newest first, filtered and paged (summaries without nodes).",
    ),
    route(
        "GET",
        under_domain!("/execution_counts"),
        "CountExecutions",
        "ListExecutionsRequest",
        "ExecutionCounts",
        TENANT,
        "How many executions match the filters, by phase.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}"),
        "GetExecution",
        "GetExecutionRequest",
        "Execution",
        EXECUTION,
        "One execution with its nodes and attempts.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/nodes"),
        "ListNodeExecutions",
        "ListNodeExecutionsRequest",
        "ListNodeExecutionsResponse",
        EXECUTION,
        "One page of an execution's nodes.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/data"),
        "GetExecutionData",
        "GetExecutionRequest",
        "ExecutionData",
        EXECUTION,
        "An execution's inputs and outputs, and its nodes' outputs.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/node_data"),
        "GetNodeData",
        "GetNodeDataRequest",
        "NodeData",
        EXECUTION,
        "One node's inputs and outputs (`?node_id=`).",
    ),
    route(
        "GET",
        under_domain!("/deliveries"),
        "ListDeliveries",
        "ListDeliveriesRequest",
        "ListDeliveriesResponse",
        TENANT,
        "The notification deliveries of a project and domain, newest first: each attempt and outcome.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/history"),
        "GetExecutionHistory",
        "GetExecutionRequest",
        "ExecutionHistory",
        EXECUTION,
        "Every event of an execution.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/state"),
        "GetExecutionState",
        "GetExecutionStateRequest",
        "Execution",
        EXECUTION,
        "The execution as it was right after one of its events (at_index).",
    ),
    streamed(
        route(
            "GET",
            under_domain!("/executions/{name}/watch"),
            "WatchExecution",
            "WatchExecutionRequest",
            "HistoryEvent",
            EXECUTION,
            "Server-sent events: the execution's events after after_index (or Last-Event-ID), live.",
        ),
        Answer::EventStream,
    ),
    route(
        "POST",
        under_domain!("/executions/{name}/terminate"),
        "TerminateExecution",
        "TerminateExecutionRequest",
        "TerminateExecutionResponse",
        EXECUTION,
        "Terminate a running execution.",
    ),
    route(
        "POST",
        under_domain!("/executions/{name}/signal"),
        "SignalExecution",
        "SignalExecutionRequest",
        "SignalExecutionResponse",
        EXECUTION,
        "Send a signal to the execution's signal gates.",
    ),
    route(
        "POST",
        under_domain!("/executions/{name}/approve"),
        "ApproveExecution",
        "ApproveExecutionRequest",
        "ApproveExecutionResponse",
        EXECUTION,
        "Approve a waiting approval gate.",
    ),
    route(
        "POST",
        under_domain!("/executions/{name}/relaunch"),
        "RelaunchExecution",
        "RelaunchExecutionRequest",
        "CreateExecutionResponse",
        EXECUTION,
        "Run the same workflow version again, some inputs replaced.",
    ),
    route(
        "POST",
        under_domain!("/executions/{name}/recover"),
        "RecoverExecution",
        "RecoverExecutionRequest",
        "CreateExecutionResponse",
        EXECUTION,
        "Run a failed execution again, reusing what succeeded.",
    ),
    streamed(
        route(
            "GET",
            under_domain!("/executions/{name}/logs"),
            "GetTaskLogs",
            "GetTaskLogsRequest",
            "TaskLogChunk",
            EXECUTION,
            "A task attempt's log as text (node_id, attempt, offset, follow).",
        ),
        Answer::Bytes,
    ),
    streamed(
        route(
            "GET",
            under_domain!("/executions/{name}/download"),
            "DownloadData",
            "DownloadDataRequest",
            "DataChunk",
            EXECUTION,
            "One input or output's bytes.",
        ),
        Answer::Bytes,
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/data_url"),
        "GetDataUrl",
        "DownloadDataRequest",
        "DataUrl",
        EXECUTION,
        "A signed URL for a blob, when the store can sign one.",
    ),
    route(
        "POST",
        "/api/v1/projects/{project}/apikeys",
        "CreateApiKey",
        "CreateApiKeyRequest",
        "CreateApiKeyResponse",
        PROJECT,
        "Create an API key (role, optional domain and expiry); its secret is in this answer only.",
    ),
    route(
        "GET",
        "/api/v1/projects/{project}/apikeys",
        "ListApiKeys",
        "ListApiKeysRequest",
        "ListApiKeysResponse",
        PROJECT,
        "The project's API keys, without their secrets.",
    ),
    route(
        "POST",
        "/api/v1/projects/{project}/apikeys/{id}/revoke",
        "RevokeApiKey",
        "RevokeApiKeyRequest",
        "RevokeApiKeyResponse",
        &[("project", "project"), ("id", "id")],
        "Revoke an API key: refused by every admin replica within seconds.",
    ),
    route(
        "POST",
        "/api/v1/projects/{project}/rolebindings",
        "BindRole",
        "BindRoleRequest",
        "BindRoleResponse",
        &[("project", "binding.project")],
        "Bind a role to a subject or group on the project (remove: true to unbind).",
    ),
    route(
        "GET",
        "/api/v1/projects/{project}/rolebindings",
        "ListRoleBindings",
        "ListRoleBindingsRequest",
        "ListRoleBindingsResponse",
        PROJECT,
        "The project's role bindings, from the config file and from the API.",
    ),
    route(
        "GET",
        "/api/v1/projects/{project}/audit",
        "ListAuditEvents",
        "ListAuditEventsRequest",
        "ListAuditEventsResponse",
        PROJECT,
        "Who did what in the project, oldest first.",
    ),
    route(
        "GET",
        under_domain!("/cache"),
        "ListCacheEntries",
        "ListCacheEntriesRequest",
        "ListCacheEntriesResponse",
        TENANT,
        "Stored results of cached tasks (task_name, limit); answered by the catalog.",
    ),
    route(
        "POST",
        under_domain!("/cache/evict"),
        "Evict",
        "EvictRequest",
        "EvictResponse",
        TENANT,
        "Drop stored results of a task (every cache version, one, or one key); answered by the catalog.",
    ),
    route(
        "GET",
        under_domain!("/executions/{name}/lineage"),
        "GetLineage",
        "GetLineageRequest",
        "GetLineageResponse",
        &[
            ("project", "execution.project"),
            ("domain", "execution.domain"),
            ("name", "execution.name"),
        ],
        "Upstream and downstream artifacts of an execution, a node or one output; answered by the catalog.",
    ),
    route(
        "GET",
        "/api/v1/whoami",
        "WhoAmI",
        "WhoAmIRequest",
        "WhoAmIResponse",
        &[],
        "The caller: its principal, groups and the projects it may read.",
    ),
    route(
        "GET",
        "/api/v1/auth",
        "GetAuthInfo",
        "GetAuthInfoRequest",
        "AuthInfo",
        &[],
        "How to log in (issuer, client id); answered without credentials.",
    ),
];

/// `path` in axum 0.7's syntax (`:name`).
pub fn axum_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_messages_that_exist_and_binds_every_path_parameter() {
        let schemas = super::super::schema::Schemas::load().unwrap();
        for route in ROUTES {
            assert!(
                schemas.has_message(route.request),
                "{}: {}",
                route.rpc,
                route.request
            );
            assert!(
                schemas.has_message(route.response),
                "{}: {}",
                route.rpc,
                route.response
            );
            let params: Vec<&str> = route
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let bound: Vec<&str> = route.path_fields.iter().map(|(p, _)| *p).collect();
            assert_eq!(params, bound, "{}", route.path);
        }
        assert_eq!(axum_path("/a/{b}/c"), "/a/:b/c");
    }
}
