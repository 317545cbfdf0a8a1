//! Authentication, per-project authorization and the audit trail on a deployment (Kafka + Postgres in CI),
//! against a real OIDC issuer on loopback (`aloft_testkit::oidc`: discovery, a JWKS it serves, tokens it
//! signs): a role x operation matrix over every REST route (so every RPC), the tokens an attacker would
//! try, API keys revoked on two admin replicas, isolation between projects, the approver policy, who did
//! what in the history and the audit trail (equal after a replay into a fresh database), and no secret in
//! the log, the tables or the service logs.
//!
//! Over 600 lines: those scenarios share one fleet, issuer and set of principals, which take longest to
//! start; one file keeps them on one deployment.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aloft_cli::client::connect_as;
use aloft_e2e::rest::OpenApiClient;
use aloft_e2e::*;
use aloft_proto::v1 as wire;
use aloft_testkit::oidc::{now_seconds, TestIssuer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const OTHER: &str = "other";

/// What the issue says each role may do (independent of admin's own table): the permission of every RPC.
fn expected_permission(rpc: &str) -> &'static str {
    match rpc {
        "CreateProject" | "DefinePool" => "platform",
        "ListProjects" | "ListTenants" | "WhoAmI" => "authenticated",
        "GetAuthInfo" => "public",
        "RegisterTask"
        | "RegisterWorkflow"
        | "RegisterLaunchPlan"
        | "RegisterBatch"
        | "ActivateLaunchPlan"
        | "DeactivateLaunchPlan" => "register",
        "CreateExecution" | "TerminateExecution" | "SignalExecution" | "RelaunchExecution"
        | "RecoverExecution" => "execute",
        "ApproveExecution" => "approve",
        "SetNotificationDefaults"
        | "SetTenantQuota"
        | "CreateApiKey"
        | "ListApiKeys"
        | "RevokeApiKey"
        | "BindRole"
        | "ListRoleBindings"
        | "ListAuditEvents"
        | "Evict" => "administer",
        _ => "read",
    }
}

fn role_grants(role: &str, permission: &str) -> bool {
    match permission {
        "public" | "authenticated" => true,
        "read" => role != "none",
        "execute" => matches!(role, "operator" | "admin"),
        "approve" => matches!(role, "approver" | "admin"),
        "register" => matches!(role, "publisher" | "admin"),
        "administer" => role == "admin",
        _ => false,
    }
}

/// The REST API as the matrix calls it: by method and path, with or without a credential.
struct Rest(OpenApiClient);

impl Rest {
    async fn load(base: &str) -> Rest {
        Rest(OpenApiClient::load(base).await)
    }

    /// Every route: (rpc, method, path with the parameters filled for `project`).
    fn routes(&self, project: &str) -> Vec<(String, String, String)> {
        let mut routes = Vec::new();
        for operation_id in self.0.operation_ids() {
            let (method, path, _) = self.0.operation(&operation_id);
            let filled = path
                .replace("{project}", project)
                .replace("{domain}", DOMAIN)
                .replace("{name}", "no-such-thing")
                .replace("{version}", "1")
                .replace("{id}", "no-such-key");
            // `GetTaskVersion` is the route of GetTask that names a version.
            routes.push((
                operation_id
                    .strip_suffix("Version")
                    .unwrap_or(&operation_id)
                    .to_string(),
                method.to_uppercase(),
                filled,
            ));
        }
        routes
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let body = (method != "GET").then_some(body);
        let (status, text) = self.0.as_caller(token).send(method, path, &[], body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn auth_config(issuer: &TestIssuer, distinct_approver: &str, service_token: &str) -> String {
    let mut bindings = String::new();
    for role in ["viewer", "operator", "approver", "publisher", "admin"] {
        bindings.push_str(&format!(
            "  - {{member: \"group:{role}s\", project: {PROJECT}, role: {role}}}\n"
        ));
    }
    format!(
        "oidc:\n  issuer: {}\n  audience: aloft\nplatform_admins: [\"subject:root\"]\nbindings:\n{bindings}\
         require_distinct_approver: {distinct_approver}\nservice_tokens:\n  - {{name: propeller, sha256: {}}}\n",
        issuer.issuer,
        aloft_auth::apikey::hash_secret(service_token)
    )
}

const RELEASE: &str = r#"
kind: task
name: inc
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
run: {process: {command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
---
kind: workflow
name: guarded
interface: {inputs: {x: integer}, outputs: {n: integer}}
nodes:
  - {id: review, gate: {approve: {timeout: 5m}}}
  - {id: ship, task: inc, inputs: {n: inputs.x}, after: [review]}
outputs: {n: ship.n}
"#;

const CACHED: &str = r#"
kind: task
name: cached-inc
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
cache: {version: "1"}
run: {process: {command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_are_authenticated_authorized_per_project_and_audited() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let shutdown = CancellationToken::new();
    let issuer = TestIssuer::start("aloft", shutdown.clone()).await.unwrap();
    let deployment = Deployment::new(&brokers, &database).await;
    let config_path = deployment.scratch.path().join("auth.yaml");
    let service_token = format!("svc-{}", uuid::Uuid::new_v4().simple());
    // The approver policy holds in the default project only.
    std::fs::write(
        &config_path,
        auth_config(&issuer, &format!("[{PROJECT}]"), &service_token),
    )
    .unwrap();
    let second_port = free_port();
    let auth_env = ("ALOFT_AUTH_CONFIG", config_path.display().to_string());
    let mut services = vec![
        deployment.start_with_env("aloft-admin", "admin", std::slice::from_ref(&auth_env)),
        deployment.start_with_env(
            "aloft-admin",
            "admin-2",
            &[
                auth_env.clone(),
                ("ALOFT_ADMIN_LISTEN", format!("127.0.0.1:{second_port}")),
            ],
        ),
        deployment.start_with_env("aloft-catalog", "catalog", std::slice::from_ref(&auth_env)),
        deployment.start_with_env(
            "aloft-propeller",
            "p1",
            &[
                ("ALOFT_MEMBER_ID", "p1".to_string()),
                ("ALOFT_SERVICE_TOKEN", service_token.clone()),
            ],
        ),
    ];
    let url = format!("http://127.0.0.1:{}", deployment.admin_port);
    let url_2 = format!("http://127.0.0.1:{second_port}");
    let root_token = issuer.token("root", &[]);
    let mut root = client_as(&url, &root_token).await;
    client_as(&url_2, &root_token).await;
    root.create_project(wire::CreateProjectRequest {
        project: Some(wire::Project {
            name: OTHER.into(),
            description: String::new(),
            domains: Vec::new(),
        }),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    register_text(&mut root, dir.path(), "guarded.yaml", RELEASE).await;

    // No credential: 401 / UNAUTHENTICATED, saying how to authenticate.
    let rest = Rest::load(&url).await;
    let (status, body) = rest
        .call(
            "GET",
            &format!("/api/v1/projects/{PROJECT}/domains/{DOMAIN}/executions"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("authorization"),
        "{body}"
    );
    let mut anonymous = connect_as(&url, None).await.unwrap();
    let refused = anonymous
        .list_projects(wire::ListProjectsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // How to log in is public.
    let (status, info) = rest.call("GET", "/api/v1/auth", None, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(info["issuer"], issuer.issuer);

    // The matrix: every route (so every RPC) as each role, on the project the role is bound to.
    let routes = rest.routes(PROJECT);
    assert!(routes.len() >= 44, "{} routes", routes.len());
    for role in ["none", "viewer", "operator", "approver", "publisher", "admin"] {
        let group = format!("{role}s");
        let token = issuer.token(&format!("user-{role}"), &[group.as_str()]);
        for (rpc, method, path) in &routes {
            let permission = expected_permission(rpc);
            let (status, body) = rest.call(method, path, Some(&token), json!({})).await;
            if role_grants(role, permission) {
                assert!(
                    status != 401 && status != 403,
                    "{role} must be let through to {rpc} ({method} {path}): {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{role} must be refused {rpc}: {status} {body}");
                let message = body["message"].as_str().unwrap();
                assert!(
                    message.contains(&format!("`{permission}`")) && message.contains(rpc),
                    "the refusal names the RPC and the missing permission: {message}"
                );
            }
        }
    }
    // The same on gRPC: PERMISSION_DENIED naming the permission.
    let viewer_token = issuer.token("vera", &["viewers"]);
    let mut viewer = client_as(&url, &viewer_token).await;
    let refused = launch(&mut viewer, workflow("guarded"), "by-viewer", &[("x", "1")])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("`execute`"), "{}", refused.message());

    // Tokens an attacker would try are all refused; a rotated key is fetched and accepted.
    let mut claims = issuer.claims("mallory");
    claims["groups"] = json!(["admins"]);
    let mut expired = claims.clone();
    expired["exp"] = json!(now_seconds() - 600);
    let mut not_yet = claims.clone();
    not_yet["nbf"] = json!(now_seconds() + 600);
    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("http://127.0.0.1:1/evil");
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("someone-else");
    let bad_tokens = [
        ("expired", issuer.sign(&expired), "expired"),
        ("not yet valid", issuer.sign(&not_yet), "not valid yet"),
        ("another issuer", issuer.sign(&other_issuer), "another issuer"),
        (
            "another audience",
            issuer.sign(&other_audience),
            "another audience",
        ),
        (
            "a bad signature",
            issuer.sign_unpublished("key-1", &claims).unwrap(),
            "signature",
        ),
        ("alg none", issuer.unsigned(&claims), "none"),
        (
            "HMAC keyed with the public key",
            issuer.hmac_with_public_key(&claims),
            "HS256",
        ),
        (
            "an unknown key id",
            issuer.sign_unpublished("key-404", &claims).unwrap(),
            "key-404",
        ),
    ];
    let who = "/api/v1/whoami";
    for (what, token, says) in &bad_tokens {
        let (status, body) = rest.call("GET", who, Some(token), json!({})).await;
        assert_eq!(status, 401, "a token with {what} must be refused: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{what}: {body}");
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.is_empty() || !body.to_string().contains(signature),
            "the refusal echoes the token: {body}"
        );
    }
    let fetches = issuer.jwks_fetches();
    tokio::time::sleep(Duration::from_secs(6)).await; // past the refresh guard after key-404's fetch
    let new_kid = issuer.rotate().unwrap();
    let (status, me) = rest
        .call("GET", who, Some(&issuer.token("rita", &["viewers"])), json!({}))
        .await;
    assert_eq!(status, 200, "a token of the rotated key {new_kid}: {me}");
    assert!(
        issuer.jwks_fetches() > fetches,
        "the unknown key id made admin fetch the JWKS again"
    );
    assert_eq!(me["principal"]["subject"], "rita");
    assert_eq!(me["projects"], json!([PROJECT]));

    // Isolation: a viewer of the default project sees nothing of the other one, and cannot tell whether
    // an execution there exists.
    let mut admin_of_other = {
        root.bind_role(wire::BindRoleRequest {
            binding: Some(wire::RoleBinding {
                member: "subject:otto".into(),
                project: OTHER.into(),
                domain: String::new(),
                role: "admin".into(),
                source: String::new(),
            }),
            remove: false,
        })
        .await
        .unwrap();
        client_as(&url, &issuer.token("otto", &[])).await
    };
    register_process_task(&mut root, DOMAIN, "noop", "true").await;
    let projects = viewer
        .list_projects(wire::ListProjectsRequest {})
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(
        projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec![PROJECT]
    );
    let other_execution = |name: &str| wire::ExecutionIdentifier {
        project: OTHER.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    };
    let other_projects = admin_of_other
        .list_projects(wire::ListProjectsRequest {})
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(
        other_projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec![OTHER]
    );
    let refusals: Vec<String> = futures::future::join_all(["does-not-exist", "also-not"].map(|name| {
        let mut viewer = viewer.clone();
        let id = other_execution(name);
        async move {
            viewer
                .get_execution(wire::GetExecutionRequest {
                    id: Some(id),
                    without_nodes: false,
                })
                .await
                .unwrap_err()
                .message()
                .replace(name, "NAME")
        }
    }))
    .await;
    assert_eq!(refusals[0], refusals[1]);
    assert!(refusals[0].contains("`read`"), "{}", refusals[0]);
    for path in [
        format!("/api/v1/projects/{OTHER}/domains/{DOMAIN}/executions"),
        format!("/api/v1/projects/{OTHER}/domains/{DOMAIN}/executions/x/history"),
        format!("/api/v1/projects/{OTHER}/domains/{DOMAIN}/executions/x/logs?node_id=a"),
        format!("/api/v1/projects/{OTHER}/domains/{DOMAIN}/executions/x/download?name=a"),
        format!("/api/v1/projects/{OTHER}/audit"),
    ] {
        let (status, body) = rest.call("GET", &path, Some(&viewer_token), json!({})).await;
        assert_eq!(status, 403, "{path}: {body}");
    }

    // API keys: made by the project's admin, shown once, work on both replicas, revoked on one and
    // refused by both within seconds.
    let admin_token = issuer.token("adam", &["admins"]);
    let mut project_admin = client_as(&url, &admin_token).await;
    let created = project_admin
        .create_api_key(wire::CreateApiKeyRequest {
            project: PROJECT.into(),
            domain: String::new(),
            role: "operator".into(),
            name: "ci-bot".into(),
            expires_in_seconds: 3600,
        })
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret.clone();
    let key_id = created.key.as_ref().unwrap().id.clone();
    assert!(secret.starts_with("aloft_"));
    let mut bot = client_as(&url, &secret).await;
    let mut bot_2 = client_as(&url_2, &secret).await;
    let launched = launch(&mut bot, task("noop", "1"), "by-bot", &[]).await.unwrap();
    wait_succeeded(&mut root, &launched, Duration::from_secs(60)).await;
    let refused = bot
        .create_project(wire::CreateProjectRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let listed = project_admin
        .list_api_keys(wire::ListApiKeysRequest {
            project: PROJECT.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "ci-bot");
    assert_eq!(listed[0].created_by, "adam");
    project_admin
        .revoke_api_key(wire::RevokeApiKeyRequest {
            project: PROJECT.into(),
            id: key_id.clone(),
        })
        .await
        .unwrap();
    let revoked_at = Instant::now();
    for (replica, client) in [("replica 1", &mut bot), ("replica 2", &mut bot_2)] {
        loop {
            match client
                .list_executions(wire::ListExecutionsRequest {
                    project: PROJECT.into(),
                    domain: DOMAIN.into(),
                    ..Default::default()
                })
                .await
            {
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    assert!(status.message().contains("revoked"), "{}", status.message());
                    break;
                }
                _ => {
                    assert!(
                        revoked_at.elapsed() < Duration::from_secs(5),
                        "{replica} still accepts the revoked key after 5 s"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    eprintln!(
        "the revoked key was refused by both replicas {:?} after the revocation",
        revoked_at.elapsed()
    );

    // The approver policy: the launcher may not approve its own execution; another approver may.
    let ada_token = issuer.token("ada", &["operators", "approvers"]);
    let mut ada = client_as(&url, &ada_token).await;
    let mut bob = client_as(&url, &issuer.token("bob", &["approvers"])).await;
    let id = launch(&mut ada, workflow("guarded"), "needs-review", &[("x", "41")])
        .await
        .unwrap();
    let approve = wire::ApproveExecutionRequest {
        id: Some(id.clone()),
        node: "review".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let own = loop {
        match ada.approve_execution(approve.clone()).await {
            Err(status) if status.code() == tonic::Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => break other,
        }
    };
    let own = own.unwrap_err();
    assert_eq!(own.code(), tonic::Code::PermissionDenied);
    assert!(
        own.message().contains("require_distinct_approver"),
        "{}",
        own.message()
    );
    // Bob approves once the gate waits (the launcher's refusal came before it did).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match bob.approve_execution(approve.clone()).await {
            Err(status) if status.code() == tonic::Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => {
                other.unwrap();
                break;
            }
        }
    }
    let finished = wait_succeeded(&mut root, &id, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), vec!["n=42"]);
    assert_eq!(finished.launched_by.as_ref().unwrap().subject, "ada");
    let history = root
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(id.clone()),
            without_nodes: false,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let by_kind: BTreeMap<String, String> = history
        .iter()
        .filter_map(|e| {
            e.principal
                .as_ref()
                .map(|p| (e.kind.clone(), format!("{}/{}", p.subject, p.via)))
        })
        .collect();
    assert_eq!(
        by_kind.get("ExecutionRequested").map(String::as_str),
        Some("ada/oidc")
    );
    assert_eq!(
        by_kind.get("SignalReceived").map(String::as_str),
        Some("bob/oidc")
    );
    assert!(
        history
            .iter()
            .filter(|e| e.kind == "NodeSucceeded")
            .all(|e| e.principal.is_none()),
        "the engine's own decisions carry no principal"
    );

    // The audit trail says who did what; a fresh admin replaying the log into a new database says the same.
    let audit = |events: Vec<wire::AuditEvent>| -> Vec<String> {
        events
            .into_iter()
            .map(|e| {
                let p = e.principal.unwrap_or_default();
                format!("{} {} {} {}", e.occurred_at_millis, p.subject, e.action, e.target)
            })
            .collect()
    };
    let audit_request = wire::ListAuditEventsRequest {
        project: PROJECT.into(),
        ..Default::default()
    };
    let trail = audit(
        project_admin
            .list_audit_events(audit_request.clone())
            .await
            .unwrap()
            .into_inner()
            .events,
    );
    for wanted in [
        "adam ApiKeyCreated",
        "adam ApiKeyRevoked",
        &format!("apikey:{key_id} ExecutionRequested"),
        "ada ExecutionRequested",
        "bob SignalReceived",
        "root WorkflowRegistered",
    ] {
        assert!(
            trail.iter().any(|line| line.contains(wanted)),
            "{wanted} in the audit trail: {trail:#?}"
        );
    }
    let replay_database = aloft_store::create_scratch_postgres_database(&database)
        .await
        .unwrap();
    let replay_port = free_port();
    services.push(deployment.start_with_env(
        "aloft-admin",
        "admin-replay",
        &[
            auth_env.clone(),
            ("ALOFT_ADMIN_LISTEN", format!("127.0.0.1:{replay_port}")),
            ("ALOFT_DATABASE_URL", replay_database),
        ],
    ));
    let mut replayed = client_as(&format!("http://127.0.0.1:{replay_port}"), &admin_token).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let again = audit(
            replayed
                .list_audit_events(audit_request.clone())
                .await
                .unwrap()
                .into_inner()
                .events,
        );
        if again == trail {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replayed audit trail differs:\n{again:#?}\n{trail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // No secret anywhere: not on any topic, not in the tables, not in a service log.
    let log = deployment.open_log(4).await;
    let secret_part = secret.rsplit('_').next().unwrap().to_string();
    let topics = aloft_eventlog::Topics::with_prefix(&deployment.topic_prefix);
    for topic in [
        &topics.registry,
        &topics.executions,
        &topics.deliveries,
        &topics.schedules,
    ] {
        for record in read_topic(log.as_ref(), topic).await {
            let bytes = String::from_utf8_lossy(&record.payload);
            assert!(
                !bytes.contains(&secret_part),
                "the API key's secret is on topic {topic}"
            );
            assert!(!bytes.contains(&root_token), "a bearer token is on topic {topic}");
            assert!(
                !bytes.contains(&service_token),
                "the service token is on topic {topic}"
            );
        }
    }
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let keys = store.api_keys(PROJECT).await.unwrap();
    assert!(keys.iter().all(|k| !k.secret_hash.contains(&secret_part)));
    for name in ["admin", "admin-2", "p1", "catalog"] {
        let text = deployment.log(name);
        assert!(
            !text.contains(&secret_part),
            "the API key's secret is in {name}'s log"
        );
        assert!(!text.contains(&admin_token), "a bearer token is in {name}'s log");
    }
    // The catalog: the propeller's service token reserves and stores results (the second run is a hit); people
    // list and trace what their project may read, evict as its admin, and never reserve or store.
    register_text(&mut root, dir.path(), "cached.yaml", CACHED).await;
    let mut statuses = Vec::new();
    for name in ["cached-1", "cached-2"] {
        let id = launch(&mut root, task("cached-inc", "1"), name, &[("n", "4")])
            .await
            .unwrap();
        let done = wait_succeeded(&mut root, &id, Duration::from_secs(60)).await;
        statuses.push(done.nodes[0].cache_status.clone());
    }
    assert_eq!(
        statuses,
        vec!["POPULATED", "HIT"],
        "the propeller's service token is accepted by the catalog"
    );
    let catalog_as = |token: Option<String>| {
        let url = deployment.catalog_url();
        async move {
            aloft_catalog_client::CatalogClient::connect(&url)
                .await
                .unwrap()
                .with_credential(token.as_deref())
                .unwrap()
                .raw()
        }
    };
    let list = |project: &str| wire::ListCacheEntriesRequest {
        project: project.into(),
        domain: DOMAIN.into(),
        task_name: String::new(),
        limit: 10,
    };
    let mut catalog_viewer = catalog_as(Some(viewer_token.clone())).await;
    let entries = catalog_viewer
        .list_cache_entries(list(PROJECT))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1);
    let refused = catalog_viewer.list_cache_entries(list(OTHER)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::PermissionDenied,
        "{}",
        refused.message()
    );
    let refused = catalog_as(None)
        .await
        .list_cache_entries(list(PROJECT))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = catalog_viewer
        .get_or_reserve(wire::GetOrReserveRequest {
            key: entries[0].key.clone(),
            reserve: true,
            owner: "mallory".into(),
            reservation_ttl_millis: 60_000,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("`service`"), "{}", refused.message());
    let lineage = catalog_viewer
        .get_lineage(wire::GetLineageRequest {
            execution: Some(wire::ExecutionIdentifier {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                name: "cached-2".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!lineage.artifacts.is_empty());
    let refused = catalog_viewer
        .get_lineage(wire::GetLineageRequest {
            execution: Some(other_execution("cached-2")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let evict = wire::EvictRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        task_name: "cached-inc".into(),
        cache_version: String::new(),
        key: String::new(),
    };
    let refused = catalog_viewer.evict(evict.clone()).await.unwrap_err();
    assert!(
        refused.message().contains("`administer`"),
        "{}",
        refused.message()
    );
    let evicted = catalog_as(Some(admin_token.clone()))
        .await
        .evict(evict)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evicted.evicted, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let trail = audit(
            project_admin
                .list_audit_events(audit_request.clone())
                .await
                .unwrap()
                .into_inner()
                .events,
        );
        if trail.iter().any(|line| line.contains("adam CacheEvicted")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the eviction is not in the audit trail: {trail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `aloft login`: authorization code + PKCE through a "browser" (this test following the URL the CLI
    // prints), the code answered on the CLI's loopback port; the token kept for later commands.
    issuer.set_login("lena", &["viewers"]);
    let config_home = tempfile::tempdir().unwrap();
    let mut login = std::process::Command::new(binary("aloft"))
        .args(["--admin", &url, "login"])
        .env("XDG_CONFIG_HOME", config_home.path())
        .env_remove("ALOFT_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = login.stderr.take().unwrap();
    let (url_sender, url_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("http") {
                let _ = url_sender.send(line);
            }
        }
    });
    let login_url = url_receiver.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(login_url.contains("code_challenge_method=S256"), "{login_url}");
    let page = reqwest::get(&login_url).await.unwrap();
    assert!(
        page.status().is_success(),
        "the CLI's callback answered {}",
        page.status()
    );
    assert!(page.text().await.unwrap().contains("Logged in"));
    assert!(login.wait().unwrap().success());
    let stored = std::fs::read_to_string(config_home.path().join("aloft/credential")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(config_home.path().join("aloft/credential"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the stored token is readable by others: {mode:o}"
    );
    let whoami = std::process::Command::new(binary("aloft"))
        .args(["--admin", &url, "whoami"])
        .env("XDG_CONFIG_HOME", config_home.path())
        .env_remove("ALOFT_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&whoami.stdout);
    assert!(
        whoami.status.success() && text.contains("lena") && text.contains(PROJECT),
        "{text}"
    );
    assert!(!stored.trim().is_empty());

    for service in &mut services {
        service.sigkill();
    }
    shutdown.cancel();
}

/// Admin on its embedded backends (no broker needed): a service that would listen beyond loopback without
/// authentication refuses to start, and each caller has its own rate as well as each tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_to_serve_the_network_unauthenticated_and_limits_each_caller() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let admin = |env: &[(&str, String)]| {
        let mut command = std::process::Command::new(binary("aloft-admin"));
        command
            .env("ALOFT_DATA_DIR", dir.path().join("data"))
            .env("ALOFT_BOOTSTRAP_PROJECT", PROJECT)
            .env_remove("ALOFT_KAFKA_BROKERS")
            .env_remove("ALOFT_DATABASE_URL")
            .stdin(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        command
    };
    let refused = admin(&[("ALOFT_ADMIN_LISTEN", format!("0.0.0.0:{}", free_port()))])
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        message.contains("not a loopback address") && message.contains("--insecure-no-auth"),
        "{message}"
    );

    let shutdown = CancellationToken::new();
    let issuer = TestIssuer::start("aloft", shutdown.clone()).await.unwrap();
    let config = dir.path().join("auth.yaml");
    std::fs::write(
        &config,
        format!(
            "oidc: {{issuer: \"{}\", audience: aloft}}\nbindings:\n  - {{member: \"group:ml\", project: {PROJECT}, role: viewer}}\n",
            issuer.issuer
        ),
    )
    .unwrap();
    let port = free_port();
    let mut server = admin(&[
        ("ALOFT_ADMIN_LISTEN", format!("127.0.0.1:{port}")),
        ("ALOFT_AUTH_CONFIG", config.display().to_string()),
        ("ALOFT_CALLER_RATE_PER_SECOND", "2".to_string()),
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let busy = issuer.token("busy", &["ml"]);
    let mut client = client_as(&url, &busy).await;
    let mut limited = 0;
    for _ in 0..12 {
        if let Err(status) = client.who_am_i(wire::WhoAmIRequest {}).await {
            assert_eq!(
                status.code(),
                tonic::Code::ResourceExhausted,
                "{}",
                status.message()
            );
            assert!(status.message().contains("per-caller"), "{}", status.message());
            assert!(status.metadata().get("retry-after").is_some());
            limited += 1;
        }
    }
    assert!(
        limited >= 6,
        "12 calls at once with a rate of 2/s (burst 4): {limited} refused"
    );
    // Another caller has its own budget.
    let mut calm = client_as(&url, &issuer.token("calm", &["ml"])).await;
    calm.who_am_i(wire::WhoAmIRequest {}).await.unwrap();
    server.kill().unwrap();
    let _ = server.wait();
    shutdown.cancel();
}
