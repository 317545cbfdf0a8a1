-- The link between a launch-plan node and the child execution it launched, both ways (a child runs in its
-- parent's project and domain, so names suffice): the child's parent execution and node, and the node's child.
ALTER TABLE executions ADD COLUMN parent_execution TEXT NOT NULL DEFAULT ''
;
ALTER TABLE executions ADD COLUMN parent_node TEXT NOT NULL DEFAULT ''
;
ALTER TABLE node_executions ADD COLUMN child_execution TEXT NOT NULL DEFAULT ''
