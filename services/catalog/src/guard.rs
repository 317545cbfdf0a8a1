//! The access layer in front of the CatalogService, as admin's: every RPC mapped to its permission in
//! `RPCS`, the caller authenticated and checked on the request's project before the handler runs. Cache
//! reservations and results are for Aloft's services only (a service token); people list cache entries and
//! read lineage of projects they may read, and evict as the project's admin. Lineage answers keep only
//! artifacts of projects the caller may read.

use std::sync::Arc;

use aloft_auth::access::{AccessControl, CALLER};
use aloft_auth::{Identity, Permission, Scope, ScopeError};
use aloft_proto::v1 as wire;
use aloft_proto::v1::catalog_service_server::CatalogService;
use tonic::{Request, Response, Status};

use crate::api::CatalogApi;

pub struct Guarded {
    api: CatalogApi,
    access: Arc<AccessControl>,
}

impl Guarded {
    pub fn new(api: CatalogApi, access: Arc<AccessControl>) -> Guarded {
        Guarded { api, access }
    }

    async fn admit<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
        permission: Permission,
        scope: impl FnOnce(&T) -> Result<Scope, ScopeError>,
    ) -> Result<Identity, Status> {
        self.access
            .admit(
                aloft_auth::access::authorization(request.metadata()),
                rpc,
                permission,
                || scope(request.get_ref()),
            )
            .await
            .map_err(|refusal| aloft_proto::status::grpc_status(&refusal))
    }
}

fn tenant(project: &str, domain: &str) -> Result<Scope, ScopeError> {
    if project.is_empty() || domain.is_empty() {
        return Err(ScopeError::ProjectAndDomain);
    }
    Ok(Scope::Domain(project.to_string(), domain.to_string()))
}

fn platform<T>(_: &T) -> Result<Scope, ScopeError> {
    Ok(Scope::Platform)
}

/// Every RPC of the CatalogService and the permission it needs: the one place this is said.
pub const RPCS: &[(&str, Permission)] = &[
    ("GetOrReserve", Permission::Service),
    ("Put", Permission::Service),
    ("ReleaseReservation", Permission::Service),
    ("Evict", Permission::Administer),
    ("ListCacheEntries", Permission::Read),
    ("GetLineage", Permission::Read),
];

fn permission(rpc: &str) -> Permission {
    RPCS.iter()
        .find(|(name, _)| *name == rpc)
        .map(|(_, permission)| *permission)
        .unwrap_or(Permission::Platform)
}

#[tonic::async_trait]
impl CatalogService for Guarded {
    async fn get_or_reserve(
        &self,
        request: Request<wire::GetOrReserveRequest>,
    ) -> Result<Response<wire::GetOrReserveResponse>, Status> {
        let rpc = "GetOrReserve";
        let caller = self.admit(&request, rpc, permission(rpc), platform).await?;
        CALLER.scope(caller, self.api.get_or_reserve(request)).await
    }

    async fn put(&self, request: Request<wire::PutRequest>) -> Result<Response<wire::PutResponse>, Status> {
        let rpc = "Put";
        let caller = self.admit(&request, rpc, permission(rpc), platform).await?;
        CALLER.scope(caller, self.api.put(request)).await
    }

    async fn release_reservation(
        &self,
        request: Request<wire::ReleaseReservationRequest>,
    ) -> Result<Response<wire::ReleaseReservationResponse>, Status> {
        let rpc = "ReleaseReservation";
        let caller = self.admit(&request, rpc, permission(rpc), platform).await?;
        CALLER.scope(caller, self.api.release_reservation(request)).await
    }

    async fn evict(
        &self,
        request: Request<wire::EvictRequest>,
    ) -> Result<Response<wire::EvictResponse>, Status> {
        let rpc = "Evict";
        let caller = self
            .admit(&request, rpc, permission(rpc), |r| tenant(&r.project, &r.domain))
            .await?;
        CALLER.scope(caller, self.api.evict(request)).await
    }

    async fn list_cache_entries(
        &self,
        request: Request<wire::ListCacheEntriesRequest>,
    ) -> Result<Response<wire::ListCacheEntriesResponse>, Status> {
        let rpc = "ListCacheEntries";
        let caller = self
            .admit(&request, rpc, permission(rpc), |r| tenant(&r.project, &r.domain))
            .await?;
        CALLER.scope(caller, self.api.list_cache_entries(request)).await
    }

    async fn get_lineage(
        &self,
        request: Request<wire::GetLineageRequest>,
    ) -> Result<Response<wire::GetLineageResponse>, Status> {
        let rpc = "GetLineage";
        let caller = self
            .admit(&request, rpc, permission(rpc), |r| {
                let execution = r.execution.as_ref().ok_or(ScopeError::missing("execution"))?;
                tenant(&execution.project, &execution.domain)
            })
            .await?;
        let mut answer = CALLER
            .scope(caller.clone(), self.api.get_lineage(request))
            .await?;
        if !caller.unrestricted {
            let policy = self
                .access
                .policy()
                .await
                .map_err(|e| Status::unavailable(format!("role bindings: {e}")))?;
            keep_readable(answer.get_mut(), |project, domain| {
                caller.allows(
                    &policy,
                    Permission::Read,
                    &Scope::Domain(project.to_string(), domain.to_string()),
                )
            });
        }
        Ok(answer)
    }
}

/// Drops the artifacts of projects the caller may not read, and every edge that touches one.
fn keep_readable(lineage: &mut wire::GetLineageResponse, readable: impl Fn(&str, &str) -> bool) {
    lineage.artifacts.retain(|artifact| {
        artifact
            .execution
            .as_ref()
            .is_some_and(|e| readable(&e.project, &e.domain))
    });
    let kept: std::collections::HashSet<&str> = lineage.artifacts.iter().map(|a| a.id.as_str()).collect();
    lineage
        .edges
        .retain(|edge| kept.contains(edge.from.as_str()) && kept.contains(edge.to.as_str()));
    lineage.selected.retain(|id| kept.contains(id.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(id: &str, project: &str) -> wire::Artifact {
        wire::Artifact {
            id: id.into(),
            execution: Some(wire::ExecutionIdentifier {
                project: project.into(),
                domain: "development".into(),
                name: "e".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn lineage_keeps_only_readable_projects_and_their_edges() {
        let mut lineage = wire::GetLineageResponse {
            selected: vec!["a/1".into()],
            artifacts: vec![artifact("a/1", "a"), artifact("b/1", "b"), artifact("a/2", "a")],
            edges: vec![
                wire::LineageEdge {
                    from: "b/1".into(),
                    to: "a/1".into(),
                    relation: "cache".into(),
                },
                wire::LineageEdge {
                    from: "a/1".into(),
                    to: "a/2".into(),
                    relation: "input x".into(),
                },
            ],
            ..Default::default()
        };
        keep_readable(&mut lineage, |project, _| project == "a");
        let ids: Vec<&str> = lineage.artifacts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec!["a/1", "a/2"]);
        assert_eq!(lineage.edges.len(), 1);
        assert_eq!(lineage.edges[0].from, "a/1");
    }
}
