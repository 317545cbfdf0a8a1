-- Tenant quotas as set on the registry (admin's read model): the console's tenants page shows them. The
-- propellers fold the registry themselves to enforce them.
CREATE TABLE tenant_quotas (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    weight BIGINT NOT NULL,
    max_running BIGINT,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain)
)
