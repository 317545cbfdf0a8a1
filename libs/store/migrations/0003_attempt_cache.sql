-- Until the catalog owned its migrations, this
-- migration also made the catalog's tables; they are its own now (services/catalog/migrations).
-- What the cache did for each succeeded attempt (admin's read model), for `aloft get`.
ALTER TABLE task_attempts ADD COLUMN cache_status TEXT NOT NULL DEFAULT '';
ALTER TABLE task_attempts ADD COLUMN cache_source TEXT NOT NULL DEFAULT ''
