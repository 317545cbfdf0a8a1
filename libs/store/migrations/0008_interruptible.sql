-- Whether the platform may interrupt an attempt (its task or node is interruptible and it is not the last
-- attempt the system retry budget allows): 1 or 0, as other flags here (sqlx's Any driver has no booleans).
ALTER TABLE task_attempts ADD COLUMN interruptible BIGINT NOT NULL DEFAULT 0
