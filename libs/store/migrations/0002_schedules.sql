-- Launch plan activation (one active version per name) and the schedule time of scheduled executions.
ALTER TABLE launch_plans ADD COLUMN active BIGINT NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN scheduled_at BIGINT
