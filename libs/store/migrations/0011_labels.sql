-- Execution labels (set at creation), one row per label so lists filter by them with an index, each
-- node's upstream node ids (the graph's edges, from the compiled workflow), and the indexes the console's
-- filtered, paged lists need.
ALTER TABLE executions ADD COLUMN labels_json TEXT NOT NULL DEFAULT '{}'
;
ALTER TABLE node_executions ADD COLUMN upstream_json TEXT NOT NULL DEFAULT '[]'
;
CREATE TABLE execution_labels (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    label_key TEXT NOT NULL,
    label_value TEXT NOT NULL,
    PRIMARY KEY (project, domain, execution, label_key)
)
;
CREATE INDEX execution_labels_by_value ON execution_labels (project, domain, label_key, label_value, execution)
;
CREATE INDEX executions_by_phase ON executions (project, domain, phase, created_at)
;
CREATE INDEX executions_by_workflow ON executions (project, domain, workflow_name, created_at)
;
CREATE INDEX executions_by_parent ON executions (project, domain, parent_execution)
