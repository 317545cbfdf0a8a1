//! Tenant quotas at the API: a tenant's weight and concurrency limit, validated and recorded on the
//! registry, where every propeller picks them up without a restart.

use super::*;

impl AdminApi {
    /// Records a tenant's weight and concurrency quota; propellers apply it from the registry.
    pub(super) async fn set_tenant_quota(
        &self,
        request: wire::SetTenantQuotaRequest,
    ) -> ApiResult<wire::SetTenantQuotaResponse> {
        self.require_domain(&request.project, &request.domain).await?;
        let max_running = (request.max_running > 0).then_some(request.max_running);
        aloft_fairq::TenantPolicy {
            weight: request.weight,
            max_running,
        }
        .validate()
        .map_err(|e| invalid(format!("quota of {}/{}: {e}", request.project, request.domain)))?;
        self.append_registry(RegistryEvent::TenantQuotaSet {
            project: request.project,
            domain: request.domain,
            weight: request.weight,
            max_running,
            at: now_millis(),
        })
        .await?;
        Ok(wire::SetTenantQuotaResponse {})
    }
}
