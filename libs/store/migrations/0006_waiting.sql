-- Why a node's attempt waits for the propeller's resources (executor capacity, the tenant's quota or a
-- resource pool), shown while the node is WAITING_FOR_RESOURCES and empty otherwise.
ALTER TABLE node_executions ADD COLUMN wait_reason TEXT NOT NULL DEFAULT ''
;
-- The trace context of the event that created a delivery: its sending joins the execution's trace.
ALTER TABLE notifier_deliveries ADD COLUMN traceparent TEXT NOT NULL DEFAULT ''
