-- Resource pools as defined on the registry (admin's read model): task registration checks the pools a
-- task declares against it.
CREATE TABLE resource_pools (
    name TEXT PRIMARY KEY,
    pool_limit BIGINT NOT NULL,
    defined_at BIGINT NOT NULL
);
