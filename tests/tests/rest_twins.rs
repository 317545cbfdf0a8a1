//! Every REST route against its gRPC twin, on one fleet with authentication on (Kafka + Postgres, and the
//! S3-compatible server for signed URLs, in CI): for each route a request that succeeds answers over REST
//! the JSON gRPC answered, and a request that fails answers the same code and message with the HTTP status
//! of the shared mapping. The test ends by checking that no operation of the OpenAPI document was left out,
//! so a route added later without its twin check fails here.
//!
//! Over 600 lines: one fleet, issuer and set of executions serve every route; the routes are grouped by
//! what they act on (tenants and identity, entities, executions, steering, data, access, the catalog).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
#![allow(clippy::result_large_err)] // gRPC's Status is what both edges answer with; it is compared, not passed on

use std::time::Duration;

use aloft_e2e::rest::{grpc_json, masked, renamed, OpenApiClient, Twins};
use aloft_e2e::*;
use aloft_proto::v1 as wire;
use serde_json::{json, Value};
use tonic::Status;

const SPECS: &str = r#"
kind: task
name: inc
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
run: {process: {command: ["sh", "-c", "echo adding one to $ALOFT_INPUT_N; echo $((ALOFT_INPUT_N + 1)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
---
kind: task
name: report
version: "1"
interface: {inputs: {n: integer}, outputs: {data: blob}}
run: {process: {command: ["sh", "-c", "seq 1 $ALOFT_INPUT_N > \"$ALOFT_OUTPUT_DIR/data\""]}}
---
kind: task
name: broken
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
run: {process: {command: ["sh", "-c", "echo no luck >&2; exit 3"]}}
---
kind: task
name: cached-inc
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
cache: {version: "1"}
run: {process: {command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
---
kind: workflow
name: steered
interface: {outputs: {n: integer}}
nodes:
  - {id: go, gate: {signal: {name: go, type: integer}}}
  - {id: review, gate: {approve: {timeout: 5m}}, after: [go]}
  - {id: ship, task: inc, inputs: {n: go.value}, after: [review]}
outputs: {n: ship.n}
---
kind: workflow
name: fan
interface: {inputs: {xs: "list<integer>"}}
nodes:
  - {id: each, map: {task: inc, over: n}, inputs: {n: inputs.xs}}
  - {id: last, task: inc, inputs: {n: {value: 1}}}
---
kind: launch_plan
name: nightly
version: "1"
workflow: steered
schedule: {cron: "0 3 * * *"}
"#;

const TENANT: [(&str, &str); 2] = [("project", PROJECT), ("domain", DOMAIN)];

fn with_tenant<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = TENANT.to_vec();
    params.extend_from_slice(more);
    params
}

/// A unary gRPC answer as the REST API writes it.
fn answered<T: serde::Serialize>(answer: Result<tonic::Response<T>, Status>) -> Result<Value, Status> {
    answer.map(|response| grpc_json(&response.into_inner()))
}

#[track_caller]
fn refused<T>(answer: Result<tonic::Response<T>, Status>) -> Status {
    match answer {
        Ok(_) => panic!("gRPC accepted a request the test meant to be refused"),
        Err(status) => status,
    }
}

/// A streamed gRPC answer's bytes: an error before the first chunk is the answer's error, as REST gives it.
async fn streamed<T>(
    answer: Result<tonic::Response<tonic::Streaming<T>>, Status>,
    bytes: impl Fn(T) -> Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut stream = answer?.into_inner();
    let mut all = Vec::new();
    let mut first = true;
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => all.extend(bytes(chunk)),
            Ok(None) => return Ok(all),
            Err(status) if first => return Err(status),
            Err(status) => panic!("the stream broke after its first chunk: {status}"),
        }
        first = false;
    }
}

fn id(name: &str) -> wire::ExecutionIdentifier {
    wire::ExecutionIdentifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    }
}

fn entity(name: &str, version: &str) -> wire::Identifier {
    wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
        version: version.into(),
    }
}

/// The calls a test makes through gRPC, as the root principal and as nobody.
struct Grpc {
    admin: AdminClient,
    anonymous: AdminClient,
    catalog: aloft_catalog_client::RawClient,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rest_route_answers_as_its_grpc_twin_on_success_and_on_error() {
    let Some(store) = real_s3_store() else {
        return;
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let issuer = aloft_testkit::oidc::TestIssuer::start("aloft", shutdown.clone())
        .await
        .unwrap();
    let auth: aloft_auth::AuthConfig = serde_yaml::from_str(&format!(
        "oidc: {{issuer: \"{}\", audience: aloft}}\nplatform_admins: [\"subject:root\"]\n",
        issuer.issuer
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet_with(dir.path(), |config| {
        config.auth = Some(auth);
        config.blob_store = store;
    })
    .await;
    let root = issuer.token("root", &[]);
    let mut grpc = Grpc {
        admin: client_as(&fleet.endpoint(), &root).await,
        anonymous: aloft_cli::client::connect_as(&fleet.endpoint(), None)
            .await
            .unwrap(),
        catalog: aloft_catalog_client::CatalogClient::connect(&fleet.catalog_endpoint())
            .await
            .unwrap()
            .with_credential(Some(&root))
            .unwrap()
            .raw(),
    };
    register_text(&mut grpc.admin, dir.path(), "twins.yaml", SPECS).await;
    let rest = OpenApiClient::load(&fleet.endpoint())
        .await
        .as_caller(Some(&root));
    let mut twins = Twins::new(rest);

    tenants_and_identity(&mut twins, &mut grpc).await;
    entities(&mut twins, &mut grpc).await;
    executions(&mut twins, &mut grpc).await;
    steering(&mut twins, &mut grpc).await;
    data(&mut twins, &mut grpc).await;
    access(&mut twins, &mut grpc).await;
    catalog(&mut twins, &mut grpc).await;
    deliveries(&mut twins, &mut grpc).await;

    twins.assert_every_route_twinned(&[(
        "GetAuthInfo",
        "public and without parameters: nothing a caller sends can make it fail",
    )]);
    fleet.stop().await.unwrap();
    shutdown.cancel();
}

async fn tenants_and_identity(twins: &mut Twins, grpc: &mut Grpc) {
    let project = |name: &str| wire::CreateProjectRequest {
        project: Some(wire::Project {
            name: name.into(),
            description: "twins".into(),
            domains: Vec::new(),
        }),
    };
    let answer = answered(grpc.admin.create_project(project("twin-g")).await);
    let body = json!({"project": {"name": "twin-r", "description": "twins"}});
    twins
        .same_after("CreateProject", &[], Some(body), answer, |v| {
            renamed(v, "twin-g", "twin-r")
        })
        .await;
    let answer = Err(refused(grpc.admin.create_project(project("Not A Name")).await));
    let body = json!({"project": {"name": "Not A Name"}});
    twins.same("CreateProject", &[], Some(body), answer).await;

    let answer = answered(grpc.admin.list_projects(wire::ListProjectsRequest {}).await);
    let listed = twins.same("ListProjects", &[], None, answer).await;
    assert!(listed.to_string().contains("twin-r"), "{listed}");
    let status = refused(grpc.anonymous.list_projects(wire::ListProjectsRequest {}).await);
    twins.same_refusal_of_anonymous("ListProjects", &[], status).await;

    // A quota set twice answers the same; the tenants list shows it.
    let quota = wire::SetTenantQuotaRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        weight: 3,
        max_running: 0,
    };
    let answer = answered(grpc.admin.set_tenant_quota(quota.clone()).await);
    let body = json!({"weight": 3});
    twins.same("SetTenantQuota", &TENANT, Some(body), answer).await;
    let answer = Err(refused(
        grpc.admin
            .set_tenant_quota(wire::SetTenantQuotaRequest { weight: 0, ..quota })
            .await,
    ));
    twins
        .same("SetTenantQuota", &TENANT, Some(json!({"weight": 0})), answer)
        .await;
    let pool = |limit| wire::DefinePoolRequest {
        name: "gpus".into(),
        limit,
    };
    let answer = answered(grpc.admin.define_pool(pool(2)).await);
    twins
        .same(
            "DefinePool",
            &[("name", "gpus")],
            Some(json!({"limit": 2})),
            answer,
        )
        .await;
    let answer = Err(refused(grpc.admin.define_pool(pool(0)).await));
    twins
        .same(
            "DefinePool",
            &[("name", "gpus")],
            Some(json!({"limit": 0})),
            answer,
        )
        .await;
    let answer = answered(grpc.admin.list_tenants(wire::ListTenantsRequest {}).await);
    let tenants = twins.same("ListTenants", &[], None, answer).await;
    let ours = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["project"] == PROJECT && t["domain"] == DOMAIN)
        .unwrap();
    assert_eq!(ours["weight"], 3, "{ours}");
    let status = refused(grpc.anonymous.list_tenants(wire::ListTenantsRequest {}).await);
    twins.same_refusal_of_anonymous("ListTenants", &[], status).await;

    let rules = |phase: &str| wire::SetNotificationDefaultsRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        rules_json: format!(r#"[{{"phases": ["{phase}"], "slack": {{"webhook_url": "env:PATH"}}}}]"#),
    };
    let answer = answered(grpc.admin.set_notification_defaults(rules("FAILED")).await);
    let body = json!({"rules_json": rules("FAILED").rules_json});
    let set = twins
        .same("SetNotificationDefaults", &TENANT, Some(body), answer)
        .await;
    assert_eq!(set["rules"], 1, "{set}");
    let answer = Err(refused(grpc.admin.set_notification_defaults(rules("DONE")).await));
    let body = json!({"rules_json": rules("DONE").rules_json});
    twins
        .same("SetNotificationDefaults", &TENANT, Some(body), answer)
        .await;
    // The deliveries the test checks are its own webhook's alone: the default rule goes again.
    let none = wire::SetNotificationDefaultsRequest {
        rules_json: "[]".into(),
        ..rules("FAILED")
    };
    grpc.admin.set_notification_defaults(none).await.unwrap();

    let answer = answered(grpc.admin.who_am_i(wire::WhoAmIRequest {}).await);
    let me = twins.same("WhoAmI", &[], None, answer).await;
    assert!(me.to_string().contains("root"), "{me}");
    let status = refused(grpc.anonymous.who_am_i(wire::WhoAmIRequest {}).await);
    twins.same_refusal_of_anonymous("WhoAmI", &[], status).await;
    let answer = answered(grpc.anonymous.get_auth_info(wire::GetAuthInfoRequest {}).await);
    twins.same("GetAuthInfo", &[], None, answer).await;
}

async fn entities(twins: &mut Twins, grpc: &mut Grpc) {
    let task = |name: &str| {
        json!({"name": name, "version": "1", "interface": {"inputs": {"n": "integer"}, "outputs": {"n": "integer"}},
               "run": {"process": {"command": ["sh", "-c", "cp $ALOFT_INPUT_DIR/n $ALOFT_OUTPUT_DIR/n"]}}})
        .to_string()
    };
    let flow = |name: &str, task: &str| {
        json!({"name": name, "interface": {"inputs": {"x": "integer"}, "outputs": {"y": "integer"}},
               "nodes": [{"id": "e", "task": task, "inputs": {"n": "inputs.x"}}], "outputs": {"y": "e.n"}})
        .to_string()
    };
    let plan = |name: &str, workflow: &str| {
        json!({"name": name, "version": "1", "workflow": workflow, "default_inputs": {"x": 1}}).to_string()
    };
    let register = |spec_json: String| wire::RegisterRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        spec_json,
    };
    let swap = |v| renamed(v, "-g", "-r");
    // A workflow's version is its content's digest, which holds its name.
    let swap_digest = |v| masked(renamed(v, "-g", "-r"), &["version"]);

    // Each kind registered under two names, once per edge; a refused spec the same way on both.
    let answer = answered(grpc.admin.register_task(register(task("echo-g"))).await);
    let body = json!({"spec_json": task("echo-r")});
    twins
        .same_after("RegisterTask", &TENANT, Some(body), answer, swap)
        .await;
    let bad = json!({"name": "echo-bad", "version": "1", "run": {"teleport": {}}}).to_string();
    let answer = Err(refused(grpc.admin.register_task(register(bad.clone())).await));
    twins
        .same("RegisterTask", &TENANT, Some(json!({"spec_json": bad})), answer)
        .await;
    let answer = answered(
        grpc.admin
            .register_workflow(register(flow("echoes-g", "echo-g")))
            .await,
    );
    let body = json!({"spec_json": flow("echoes-r", "echo-r")});
    twins
        .same_after("RegisterWorkflow", &TENANT, Some(body), answer, swap_digest)
        .await;
    let missing = flow("echoes-bad", "no-such-task");
    let answer = Err(refused(
        grpc.admin.register_workflow(register(missing.clone())).await,
    ));
    let body = json!({"spec_json": missing});
    twins.same("RegisterWorkflow", &TENANT, Some(body), answer).await;
    let answer = answered(
        grpc.admin
            .register_launch_plan(register(plan("daily-g", "echoes-g")))
            .await,
    );
    let body = json!({"spec_json": plan("daily-r", "echoes-r")});
    twins
        .same_after("RegisterLaunchPlan", &TENANT, Some(body), answer, swap)
        .await;
    let orphan = plan("daily-bad", "no-such-workflow");
    let answer = Err(refused(
        grpc.admin.register_launch_plan(register(orphan.clone())).await,
    ));
    let body = json!({"spec_json": orphan});
    twins
        .same("RegisterLaunchPlan", &TENANT, Some(body), answer)
        .await;
    let batch = |documents: Vec<(i32, String)>| wire::RegisterBatchRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        documents: documents
            .into_iter()
            .map(|(kind, spec_json)| wire::RegisterDocument { kind, spec_json })
            .collect(),
    };
    let (task_kind, flow_kind) = (wire::EntityKind::Task as i32, wire::EntityKind::Workflow as i32);
    let documents = |suffix: &str| {
        vec![
            (task_kind, task(&format!("batched{suffix}"))),
            (
                flow_kind,
                flow(&format!("batched-flow{suffix}"), &format!("batched{suffix}")),
            ),
        ]
    };
    let answer = answered(grpc.admin.register_batch(batch(documents("-g"))).await);
    let body = grpc_json(&batch(documents("-r")));
    twins
        .same_after("RegisterBatch", &TENANT, Some(body), answer, swap_digest)
        .await;
    let mut refused_batch = documents("-x");
    refused_batch.push((flow_kind, missing));
    let answer = Err(refused(
        grpc.admin.register_batch(batch(refused_batch.clone())).await,
    ));
    let body = grpc_json(&batch(refused_batch));
    twins.same("RegisterBatch", &TENANT, Some(body), answer).await;

    // Lists and gets, and the unknown ones.
    let list = |domain: &str| wire::ListEntitiesRequest {
        project: PROJECT.into(),
        domain: domain.into(),
        name: String::new(),
    };
    let get = |name: &str, version: &str| wire::GetEntityRequest {
        id: Some(entity(name, version)),
    };
    let elsewhere = [("project", PROJECT), ("domain", "nowhere")];
    let answer = answered(grpc.admin.list_tasks(list(DOMAIN)).await);
    twins.same("ListTasks", &TENANT, None, answer).await;
    let answer = Err(refused(grpc.admin.list_tasks(list("nowhere")).await));
    twins.same("ListTasks", &elsewhere, None, answer).await;
    let answer = answered(grpc.admin.list_workflows(list(DOMAIN)).await);
    twins.same("ListWorkflows", &TENANT, None, answer).await;
    let answer = Err(refused(grpc.admin.list_workflows(list("nowhere")).await));
    twins.same("ListWorkflows", &elsewhere, None, answer).await;
    let answer = answered(grpc.admin.list_launch_plans(list(DOMAIN)).await);
    twins.same("ListLaunchPlans", &TENANT, None, answer).await;
    let answer = Err(refused(grpc.admin.list_launch_plans(list("nowhere")).await));
    twins.same("ListLaunchPlans", &elsewhere, None, answer).await;

    let answer = answered(grpc.admin.get_task(get("inc", "")).await);
    twins
        .same("GetTask", &with_tenant(&[("name", "inc")]), None, answer)
        .await;
    let answer = Err(refused(grpc.admin.get_task(get("no-such-task", "")).await));
    twins
        .same("GetTask", &with_tenant(&[("name", "no-such-task")]), None, answer)
        .await;
    let answer = answered(grpc.admin.get_task(get("inc", "1")).await);
    let params = with_tenant(&[("name", "inc"), ("version", "1")]);
    twins.same("GetTaskVersion", &params, None, answer).await;
    let answer = Err(refused(grpc.admin.get_task(get("inc", "9")).await));
    let params = with_tenant(&[("name", "inc"), ("version", "9")]);
    twins.same("GetTaskVersion", &params, None, answer).await;

    let steered = grpc
        .admin
        .get_workflow(get("steered", ""))
        .await
        .unwrap()
        .into_inner();
    let version = steered.id.unwrap().version;
    let answer = answered(grpc.admin.get_workflow(get("steered", "")).await);
    twins
        .same("GetWorkflow", &with_tenant(&[("name", "steered")]), None, answer)
        .await;
    let answer = Err(refused(grpc.admin.get_workflow(get("no-such-flow", "")).await));
    twins
        .same(
            "GetWorkflow",
            &with_tenant(&[("name", "no-such-flow")]),
            None,
            answer,
        )
        .await;
    let answer = answered(grpc.admin.get_workflow(get("steered", &version)).await);
    let params = with_tenant(&[("name", "steered"), ("version", &version)]);
    twins.same("GetWorkflowVersion", &params, None, answer).await;
    let answer = Err(refused(grpc.admin.get_workflow(get("steered", "nope")).await));
    let params = with_tenant(&[("name", "steered"), ("version", "nope")]);
    twins.same("GetWorkflowVersion", &params, None, answer).await;

    let answer = answered(grpc.admin.get_launch_plan(get("nightly", "")).await);
    twins
        .same(
            "GetLaunchPlan",
            &with_tenant(&[("name", "nightly")]),
            None,
            answer,
        )
        .await;
    let answer = Err(refused(grpc.admin.get_launch_plan(get("no-such-plan", "")).await));
    let params = with_tenant(&[("name", "no-such-plan")]);
    twins.same("GetLaunchPlan", &params, None, answer).await;
    let nightly = with_tenant(&[("name", "nightly"), ("version", "1")]);
    let answer = answered(grpc.admin.get_launch_plan(get("nightly", "1")).await);
    twins.same("GetLaunchPlanVersion", &nightly, None, answer).await;
    let answer = Err(refused(grpc.admin.get_launch_plan(get("nightly", "7")).await));
    let params = with_tenant(&[("name", "nightly"), ("version", "7")]);
    twins.same("GetLaunchPlanVersion", &params, None, answer).await;

    // Activation is idempotent: the second edge answers what the first left.
    let answer = answered(grpc.admin.activate_launch_plan(get("nightly", "1")).await);
    let active = twins.same("ActivateLaunchPlan", &nightly, None, answer).await;
    assert_eq!(active["active"], true, "{active}");
    assert_ne!(active["next_fire_at_millis"], "0", "{active}");
    let answer = Err(refused(
        grpc.admin.activate_launch_plan(get("nightly", "7")).await,
    ));
    let params = with_tenant(&[("name", "nightly"), ("version", "7")]);
    twins.same("ActivateLaunchPlan", &params, None, answer).await;
    let answer = answered(grpc.admin.deactivate_launch_plan(get("nightly", "1")).await);
    let inactive = twins.same("DeactivateLaunchPlan", &nightly, None, answer).await;
    assert_eq!(inactive["active"], false, "{inactive}");
    let answer = Err(refused(
        grpc.admin.deactivate_launch_plan(get("nightly", "7")).await,
    ));
    twins.same("DeactivateLaunchPlan", &params, None, answer).await;
}

fn create_request(name: &str, n: &str) -> wire::CreateExecutionRequest {
    wire::CreateExecutionRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
        target: Some(task("inc", "1")),
        text_inputs: [("n".to_string(), n.to_string())].into(),
        ..Default::default()
    }
}

fn create_body(name: &str, n: &str) -> Value {
    json!({"name": name, "task": entity("inc", "1"), "text_inputs": {"n": n}, "labels": {"pair": "twins"}})
}

async fn executions(twins: &mut Twins, grpc: &mut Grpc) {
    let mut request = create_request("run-g", "4");
    request.labels = [("pair".to_string(), "twins".to_string())].into();
    let answer = answered(grpc.admin.create_execution(request).await);
    let body = create_body("run-r", "4");
    twins
        .same_after("CreateExecution", &TENANT, Some(body), answer, |v| {
            renamed(v, "run-g", "run-r")
        })
        .await;
    let answer = Err(refused(
        grpc.admin.create_execution(create_request("run-x", "four")).await,
    ));
    let body = create_body("run-x", "four");
    twins.same("CreateExecution", &TENANT, Some(body), answer).await;
    for name in ["run-r", "run-g"] {
        wait_succeeded(&mut grpc.admin, &id(name), Duration::from_secs(60)).await;
    }

    let get = |name: &str| wire::GetExecutionRequest {
        id: Some(id(name)),
        without_nodes: false,
    };
    let answer = answered(grpc.admin.get_execution(get("run-r")).await);
    let run = twins
        .same("GetExecution", &with_tenant(&[("name", "run-r")]), None, answer)
        .await;
    assert_eq!(run["labels"]["pair"], "twins", "{run}");
    let answer = Err(refused(grpc.admin.get_execution(get("no-such-run")).await));
    let missing = with_tenant(&[("name", "no-such-run")]);
    twins.same("GetExecution", &missing, None, answer).await;
    let answer = answered(grpc.admin.get_execution_data(get("run-r")).await);
    let data = twins
        .same(
            "GetExecutionData",
            &with_tenant(&[("name", "run-r")]),
            None,
            answer,
        )
        .await;
    assert_eq!(data["outputs"]["values"]["n"]["integer"], "5", "{data}");
    let answer = Err(refused(grpc.admin.get_execution_data(get("no-such-run")).await));
    twins.same("GetExecutionData", &missing, None, answer).await;
    let answer = answered(grpc.admin.get_execution_history(get("run-r")).await);
    twins
        .same(
            "GetExecutionHistory",
            &with_tenant(&[("name", "run-r")]),
            None,
            answer,
        )
        .await;
    let answer = Err(refused(
        grpc.admin.get_execution_history(get("no-such-run")).await,
    ));
    twins.same("GetExecutionHistory", &missing, None, answer).await;

    // Lists and counts, filtered by label; a domain that cannot exist is refused alike.
    let list = |domain: &str| wire::ListExecutionsRequest {
        project: PROJECT.into(),
        domain: domain.into(),
        labels: [("pair".to_string(), "twins".to_string())].into(),
        ..Default::default()
    };
    let labelled = with_tenant(&[("labels.pair", "twins")]);
    let answer = answered(grpc.admin.list_executions(list(DOMAIN)).await);
    let listed = twins.same("ListExecutions", &labelled, None, answer).await;
    assert_eq!(listed["executions"].as_array().unwrap().len(), 2, "{listed}");
    let elsewhere = [("project", PROJECT), ("domain", "nowhere")];
    let answer = Err(refused(grpc.admin.list_executions(list("nowhere")).await));
    twins.same("ListExecutions", &elsewhere, None, answer).await;
    let answer = answered(grpc.admin.count_executions(list(DOMAIN)).await);
    let counted = twins.same("CountExecutions", &labelled, None, answer).await;
    assert_eq!(counted["by_phase"]["SUCCEEDED"], "2", "{counted}");
    let answer = Err(refused(grpc.admin.count_executions(list("nowhere")).await));
    twins.same("CountExecutions", &elsewhere, None, answer).await;

    // Time travel, and an event past the end.
    let state = |at_index| wire::GetExecutionStateRequest {
        id: Some(id("run-r")),
        at_index,
    };
    let answer = answered(grpc.admin.get_execution_state(state(1)).await);
    let params = with_tenant(&[("name", "run-r"), ("at_index", "1")]);
    let first = twins.same("GetExecutionState", &params, None, answer).await;
    assert_eq!(first["phase"], "QUEUED", "{first}");
    let answer = Err(refused(grpc.admin.get_execution_state(state(9999)).await));
    let params = with_tenant(&[("name", "run-r"), ("at_index", "9999")]);
    twins.same("GetExecutionState", &params, None, answer).await;

    // The watch of an ended execution: every event, then the end.
    let watch = |name: &str| wire::WatchExecutionRequest {
        id: Some(id(name)),
        after_index: 0,
    };
    let mut events = Vec::new();
    let mut stream = grpc
        .admin
        .watch_execution(watch("run-r"))
        .await
        .unwrap()
        .into_inner();
    while let Some(event) = stream.message().await.unwrap() {
        events.push(grpc_json(&event));
    }
    assert!(events.len() > 3, "{events:?}");
    twins
        .same_events("WatchExecution", &with_tenant(&[("name", "run-r")]), Ok(events))
        .await;
    let status = match grpc.admin.watch_execution(watch("no-such-run")).await {
        Ok(response) => {
            let first = response.into_inner().message().await;
            first.expect_err("a watch of no execution streams nothing")
        }
        Err(status) => status,
    };
    twins.same_events("WatchExecution", &missing, Err(status)).await;
}

/// Waits until node `node` of `name` waits on its gate.
async fn wait_for_gate(grpc: &mut Grpc, name: &str, node: &str) {
    wait_until(&mut grpc.admin, &id(name), Duration::from_secs(60), |e| {
        e.nodes
            .iter()
            .any(|n| n.node_id == node && !n.wait_reason.is_empty())
    })
    .await;
}

async fn steering(twins: &mut Twins, grpc: &mut Grpc) {
    for name in ["steer-r", "steer-g", "stop-r", "stop-g"] {
        launch(&mut grpc.admin, workflow("steered"), name, &[])
            .await
            .unwrap();
    }
    let swap = |v| renamed(v, "-g", "-r");

    // A signal, then an approval, on each edge's own execution.
    let signal = |name: &str, signal: &str| wire::SignalExecutionRequest {
        id: Some(id(name)),
        signal: signal.into(),
        value: "41".into(),
    };
    for name in ["steer-r", "steer-g"] {
        wait_for_gate(grpc, name, "go").await;
    }
    let answer = answered(grpc.admin.signal_execution(signal("steer-g", "go")).await);
    let params = with_tenant(&[("name", "steer-r")]);
    let body = json!({"signal": "go", "value": "41"});
    twins.same("SignalExecution", &params, Some(body), answer).await;
    let answer = Err(refused(
        grpc.admin.signal_execution(signal("steer-r", "gone")).await,
    ));
    let body = json!({"signal": "gone", "value": "41"});
    twins.same("SignalExecution", &params, Some(body), answer).await;
    let approve = |name: &str, node: &str| wire::ApproveExecutionRequest {
        id: Some(id(name)),
        node: node.into(),
    };
    for name in ["steer-r", "steer-g"] {
        wait_for_gate(grpc, name, "review").await;
    }
    let answer = answered(grpc.admin.approve_execution(approve("steer-g", "review")).await);
    let body = json!({"node": "review"});
    twins.same("ApproveExecution", &params, Some(body), answer).await;
    let answer = Err(refused(
        grpc.admin.approve_execution(approve("steer-r", "ship")).await,
    ));
    let body = json!({"node": "ship"});
    twins.same("ApproveExecution", &params, Some(body), answer).await;
    for name in ["steer-r", "steer-g"] {
        let done = wait_succeeded(&mut grpc.admin, &id(name), Duration::from_secs(60)).await;
        assert_eq!(scalar_outputs(&done), ["n=42"], "{name}");
    }

    // Termination of a waiting execution; of an ended one, refused alike.
    let terminate = |name: &str| wire::TerminateExecutionRequest {
        id: Some(id(name)),
        reason: "twins".into(),
    };
    let answer = answered(grpc.admin.terminate_execution(terminate("stop-g")).await);
    let params = with_tenant(&[("name", "stop-r")]);
    let body = json!({"reason": "twins"});
    twins
        .same("TerminateExecution", &params, Some(body.clone()), answer)
        .await;
    for name in ["stop-r", "stop-g"] {
        let ended = wait_finished(&mut grpc.admin, &id(name), Duration::from_secs(60)).await;
        assert_eq!(ended.phase, wire::ExecutionPhase::Aborted as i32, "{name}");
    }
    let answer = Err(refused(
        grpc.admin.terminate_execution(terminate("steer-r")).await,
    ));
    let params = with_tenant(&[("name", "steer-r")]);
    twins
        .same("TerminateExecution", &params, Some(body), answer)
        .await;

    // Relaunch with a changed input; recovery of a failed execution; of a succeeded one, refused.
    let relaunch = |name: &str, n: &str| wire::RelaunchExecutionRequest {
        id: Some(id("run-r")),
        name: name.into(),
        text_inputs: [("n".to_string(), n.to_string())].into(),
    };
    let answer = answered(grpc.admin.relaunch_execution(relaunch("again-g", "6")).await);
    let params = with_tenant(&[("name", "run-r")]);
    let body = json!({"name": "again-r", "text_inputs": {"n": "6"}});
    twins
        .same_after("RelaunchExecution", &params, Some(body), answer, swap)
        .await;
    let answer = Err(refused(
        grpc.admin.relaunch_execution(relaunch("again-x", "six")).await,
    ));
    let body = json!({"name": "again-x", "text_inputs": {"n": "six"}});
    twins.same("RelaunchExecution", &params, Some(body), answer).await;
    let again = wait_succeeded(&mut grpc.admin, &id("again-r"), Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&again), ["n=7"]);

    launch(&mut grpc.admin, task("broken", "1"), "broken-1", &[("n", "1")])
        .await
        .unwrap();
    let failed = wait_finished(&mut grpc.admin, &id("broken-1"), Duration::from_secs(60)).await;
    assert_eq!(failed.phase, wire::ExecutionPhase::Failed as i32);
    let recover = |of: &str, name: &str| wire::RecoverExecutionRequest {
        id: Some(id(of)),
        name: name.into(),
    };
    let answer = answered(grpc.admin.recover_execution(recover("broken-1", "retry-g")).await);
    let params = with_tenant(&[("name", "broken-1")]);
    let body = json!({"name": "retry-r"});
    twins
        .same_after("RecoverExecution", &params, Some(body), answer, swap)
        .await;
    let answer = Err(refused(
        grpc.admin.recover_execution(recover("run-r", "retry-x")).await,
    ));
    let params = with_tenant(&[("name", "run-r")]);
    let body = json!({"name": "retry-x"});
    twins.same("RecoverExecution", &params, Some(body), answer).await;
}

async fn data(twins: &mut Twins, grpc: &mut Grpc) {
    // A node's inputs and outputs, its page of nodes, its log.
    let node_data = |node: &str| wire::GetNodeDataRequest {
        id: Some(id("steer-r")),
        node_id: node.into(),
    };
    let answer = answered(grpc.admin.get_node_data(node_data("ship")).await);
    let params = with_tenant(&[("name", "steer-r"), ("node_id", "ship")]);
    let ship = twins.same("GetNodeData", &params, None, answer).await;
    assert_eq!(ship["inputs"]["values"]["n"]["integer"], "41", "{ship}");
    let answer = Err(refused(grpc.admin.get_node_data(node_data("zz")).await));
    let params = with_tenant(&[("name", "steer-r"), ("node_id", "zz")]);
    twins.same("GetNodeData", &params, None, answer).await;
    let nodes = |name: &str| wire::ListNodeExecutionsRequest {
        id: Some(id(name)),
        limit: 2,
        ..Default::default()
    };
    let answer = answered(grpc.admin.list_node_executions(nodes("steer-r")).await);
    let params = with_tenant(&[("name", "steer-r"), ("limit", "2")]);
    let page = twins.same("ListNodeExecutions", &params, None, answer).await;
    assert_ne!(
        page["next_page_token"], "",
        "three nodes come two at a time: {page}"
    );
    // The graph's call: the workflow's own nodes, a map's items as counts by phase.
    let fan = launch(&mut grpc.admin, workflow("fan"), "fan-1", &[("xs", "[1, 2, 3]")])
        .await
        .unwrap();
    wait_succeeded(&mut grpc.admin, &fan, Duration::from_secs(60)).await;
    let top = wire::ListNodeExecutionsRequest {
        top_level: true,
        ..nodes("fan-1")
    };
    let answer = answered(grpc.admin.list_node_executions(top).await);
    let params = with_tenant(&[("name", "fan-1"), ("limit", "2"), ("top_level", "true")]);
    let page = twins.same("ListNodeExecutions", &params, None, answer).await;
    let ids: Vec<&str> = page["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["each", "last"], "{page}");
    assert_eq!(
        page["child_phase_counts"],
        json!({"each": {"by_phase": {"SUCCEEDED": "3"}}}),
        "{page}"
    );
    let answer = Err(refused(
        grpc.admin.list_node_executions(nodes("no-such-run")).await,
    ));
    let params = with_tenant(&[("name", "no-such-run"), ("limit", "2")]);
    twins.same("ListNodeExecutions", &params, None, answer).await;

    let run = get(&mut grpc.admin, &id("run-r")).await;
    let node = run.nodes[0].node_id.clone();
    let logs = |node: &str| wire::GetTaskLogsRequest {
        id: Some(id("run-r")),
        node_id: node.into(),
        ..Default::default()
    };
    let answer = streamed(grpc.admin.get_task_logs(logs(&node)).await, |c| c.data).await;
    let params = with_tenant(&[("name", "run-r"), ("node_id", &node)]);
    let log = twins.same_bytes("GetTaskLogs", &params, answer).await;
    assert!(log.contains("adding one to 4"), "{log}");
    let answer = streamed(grpc.admin.get_task_logs(logs("zz")).await, |c| c.data).await;
    let params = with_tenant(&[("name", "run-r"), ("node_id", "zz")]);
    twins.same_bytes("GetTaskLogs", &params, answer).await;

    // A blob output: its bytes, and a signed URL that reads them; a value is not a blob.
    let id_report = launch(&mut grpc.admin, task("report", "1"), "report-1", &[("n", "5")])
        .await
        .unwrap();
    wait_succeeded(&mut grpc.admin, &id_report, Duration::from_secs(60)).await;
    let download = |name: &str, output: &str| wire::DownloadDataRequest {
        id: Some(id(name)),
        name: output.into(),
        ..Default::default()
    };
    let answer = streamed(
        grpc.admin.download_data(download("report-1", "data")).await,
        |c| c.data,
    )
    .await;
    let params = with_tenant(&[("name", "report-1"), ("name", "data")]);
    let bytes = twins.same_bytes("DownloadData", &params, answer).await;
    assert_eq!(bytes, "1\n2\n3\n4\n5\n");
    let answer = streamed(
        grpc.admin.download_data(download("report-1", "nope")).await,
        |c| c.data,
    )
    .await;
    let params = with_tenant(&[("name", "report-1"), ("name", "nope")]);
    twins.same_bytes("DownloadData", &params, answer).await;
    let answer = answered(grpc.admin.get_data_url(download("report-1", "data")).await);
    let params = with_tenant(&[("name", "report-1"), ("name", "data")]);
    let signed = twins
        .same_after("GetDataUrl", &params, None, answer, |v| {
            masked(v, &["url", "expires_at_millis"])
        })
        .await;
    let url = signed["url"].as_str().unwrap();
    let fetched = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert_eq!(fetched, bytes, "the signed URL reads the blob's bytes");
    let answer = Err(refused(grpc.admin.get_data_url(download("run-r", "n")).await));
    let params = with_tenant(&[("name", "run-r"), ("name", "n")]);
    twins.same("GetDataUrl", &params, None, answer).await;
}

async fn access(twins: &mut Twins, grpc: &mut Grpc) {
    let key = |name: &str, role: &str| wire::CreateApiKeyRequest {
        project: PROJECT.into(),
        domain: String::new(),
        role: role.into(),
        name: name.into(),
        expires_in_seconds: 0,
    };
    let project = [("project", PROJECT)];
    let created = grpc
        .admin
        .create_api_key(key("key-g", "viewer"))
        .await
        .unwrap()
        .into_inner();
    let answer = Ok(grpc_json(&created));
    let body = json!({"name": "key-r", "role": "viewer"});
    let made = twins
        .same_after("CreateApiKey", &project, Some(body), answer, |v| {
            renamed(
                masked(v, &["id", "secret", "created_at_millis"]),
                "key-g",
                "key-r",
            )
        })
        .await;
    assert!(made["secret"].as_str().unwrap().starts_with("aloft_"), "{made}");
    let answer = Err(refused(grpc.admin.create_api_key(key("key-x", "wizard")).await));
    let body = json!({"name": "key-x", "role": "wizard"});
    twins.same("CreateApiKey", &project, Some(body), answer).await;
    let keys = |project: &str| wire::ListApiKeysRequest {
        project: project.into(),
    };
    let nobody = [("project", "nobody")];
    let answer = answered(grpc.admin.list_api_keys(keys(PROJECT)).await);
    let listed = twins.same("ListApiKeys", &project, None, answer).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "{listed}");
    let answer = Err(refused(grpc.admin.list_api_keys(keys("nobody")).await));
    twins.same("ListApiKeys", &nobody, None, answer).await;
    let revoke = |key: &str| wire::RevokeApiKeyRequest {
        project: PROJECT.into(),
        id: key.into(),
    };
    let key_g = created.key.unwrap().id;
    let key_r = made["key"]["id"].as_str().unwrap().to_string();
    let answer = answered(grpc.admin.revoke_api_key(revoke(&key_g)).await);
    let params = [("project", PROJECT), ("id", key_r.as_str())];
    twins.same("RevokeApiKey", &params, None, answer).await;
    let answer = Err(refused(grpc.admin.revoke_api_key(revoke("no-such-key")).await));
    let params = [("project", PROJECT), ("id", "no-such-key")];
    twins.same("RevokeApiKey", &params, None, answer).await;

    let bind = |member: &str| wire::BindRoleRequest {
        binding: Some(wire::RoleBinding {
            member: member.into(),
            project: PROJECT.into(),
            role: "viewer".into(),
            ..Default::default()
        }),
        remove: false,
    };
    let answer = answered(grpc.admin.bind_role(bind("group:twins")).await);
    let body = json!({"binding": {"member": "group:twins", "project": PROJECT, "role": "viewer"}});
    twins.same("BindRole", &project, Some(body), answer).await;
    let answer = Err(refused(grpc.admin.bind_role(bind("twins")).await));
    let body = json!({"binding": {"member": "twins", "project": PROJECT, "role": "viewer"}});
    twins.same("BindRole", &project, Some(body), answer).await;
    let bindings = |project: &str| wire::ListRoleBindingsRequest {
        project: project.into(),
    };
    let answer = answered(grpc.admin.list_role_bindings(bindings(PROJECT)).await);
    let bound = twins.same("ListRoleBindings", &project, None, answer).await;
    assert!(bound.to_string().contains("group:twins"), "{bound}");
    let answer = Err(refused(grpc.admin.list_role_bindings(bindings("nobody")).await));
    twins.same("ListRoleBindings", &nobody, None, answer).await;

    let audit = |project: &str| wire::ListAuditEventsRequest {
        project: project.into(),
        limit: 500,
        ..Default::default()
    };
    let answer = answered(grpc.admin.list_audit_events(audit(PROJECT)).await);
    let params = [("project", PROJECT), ("limit", "500")];
    let trail = twins.same("ListAuditEvents", &params, None, answer).await;
    assert!(trail.to_string().contains("RoleBindingSet"), "{trail}");
    let answer = Err(refused(grpc.admin.list_audit_events(audit("nobody")).await));
    let params = [("project", "nobody"), ("limit", "500")];
    twins.same("ListAuditEvents", &params, None, answer).await;
}

async fn catalog(twins: &mut Twins, grpc: &mut Grpc) {
    let cached = launch(
        &mut grpc.admin,
        task("cached-inc", "1"),
        "cached-1",
        &[("n", "1")],
    )
    .await
    .unwrap();
    wait_succeeded(&mut grpc.admin, &cached, Duration::from_secs(60)).await;
    let entries = |domain: &str| wire::ListCacheEntriesRequest {
        project: PROJECT.into(),
        domain: domain.into(),
        task_name: String::new(),
        limit: 0,
    };
    let answer = answered(grpc.catalog.list_cache_entries(entries(DOMAIN)).await);
    let listed = twins.same("ListCacheEntries", &TENANT, None, answer).await;
    assert_eq!(listed["entries"][0]["task_name"], "cached-inc", "{listed}");
    let elsewhere = [("project", PROJECT), ("domain", "Not_A_Domain")];
    let answer = Err(refused(
        grpc.catalog.list_cache_entries(entries("Not_A_Domain")).await,
    ));
    twins.same("ListCacheEntries", &elsewhere, None, answer).await;
    let lineage = |name: &str| wire::GetLineageRequest {
        execution: Some(id(name)),
        ..Default::default()
    };
    let answer = answered(grpc.catalog.get_lineage(lineage("cached-1")).await);
    let params = with_tenant(&[("name", "cached-1")]);
    let traced = twins.same("GetLineage", &params, None, answer).await;
    assert!(
        traced["artifacts"].as_array().is_some_and(|a| !a.is_empty()),
        "{traced}"
    );
    let answer = Err(refused(grpc.catalog.get_lineage(lineage("no-such-run")).await));
    let params = with_tenant(&[("name", "no-such-run")]);
    twins.same("GetLineage", &params, None, answer).await;
    // Evicting what nothing cached answers the same on both edges; a bad task name is refused alike.
    let evict = |task_name: &str| wire::EvictRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        task_name: task_name.into(),
        ..Default::default()
    };
    let answer = answered(grpc.catalog.evict(evict("inc")).await);
    let evicted = twins
        .same("Evict", &TENANT, Some(json!({"task_name": "inc"})), answer)
        .await;
    assert_eq!(evicted["evicted"], "0", "nothing of inc was cached: {evicted}");
    let answer = Err(refused(grpc.catalog.evict(evict("Not A Task")).await));
    let body = json!({"task_name": "Not A Task"});
    twins.same("Evict", &TENANT, Some(body), answer).await;
}

/// A failed execution's webhook, delivered to a receiver on loopback: its delivery events, once settled,
/// are the same on both edges.
async fn deliveries(twins: &mut Twins, grpc: &mut Grpc) {
    let receivers = tokio_util::sync::CancellationToken::new();
    let hooks = aloft_testkit::HttpSink::start(receivers.clone()).await.unwrap();
    let rules = json!([{"phases": ["FAILED"], "webhook": {"url": hooks.url("/hook"), "secret": "env:PATH"}}]);
    let request = wire::CreateExecutionRequest {
        name: "broken-notified".into(),
        target: Some(task("broken", "1")),
        text_inputs: [("n".to_string(), "1".to_string())].into(),
        notifications_json: rules.to_string(),
        ..create_request("", "")
    };
    grpc.admin.create_execution(request).await.unwrap();
    let list = |domain: &str| wire::ListDeliveriesRequest {
        project: PROJECT.into(),
        domain: domain.into(),
        limit: 0,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = grpc
            .admin
            .list_deliveries(list(DOMAIN))
            .await
            .unwrap()
            .into_inner()
            .events;
        if events
            .iter()
            .any(|e| e.execution == "broken-notified" && e.kind == "DeliveryDelivered")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook was never delivered: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(hooks.received("/hook").len(), 1);
    let answer = answered(grpc.admin.list_deliveries(list(DOMAIN)).await);
    let listed = twins.same("ListDeliveries", &TENANT, None, answer).await;
    assert!(listed.to_string().contains("broken-notified"), "{listed}");
    let answer = Err(refused(grpc.admin.list_deliveries(list("nowhere")).await));
    let elsewhere = [("project", PROJECT), ("domain", "nowhere")];
    twins.same("ListDeliveries", &elsewhere, None, answer).await;
    receivers.cancel();
}
