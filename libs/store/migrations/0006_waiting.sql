-- Why a node's attempt waits for the propeller's resources (executor capacity, the tenant's quota or a
-- resource pool), shown while the node is WAITING_FOR_RESOURCES and empty otherwise.
ALTER TABLE node_executions ADD COLUMN wait_reason TEXT NOT NULL DEFAULT ''
-- (Until the notifier owned its migrations, this one also gave notifier_deliveries its traceparent column.)
