//! Filtered, paged reads for the API and the console: executions by phase, workflow, launch plan, labels,
//! creation time, name prefix and parent, newest first, paged by a keyset cursor (so pages never repeat or
//! skip a row while new executions arrive); counts by phase; and one page of an execution's nodes, so a
//! 10,000-item map never travels as one answer.

use std::collections::BTreeMap;

use aloft_core::ExecutionId;
use sqlx::Row;

use crate::queries::{
    event_row, execution_row, node_row, EventRow, ExecutionRow, NodeRow, EVENT_COLUMNS, EXECUTION_COLUMNS,
    NODE_COLUMNS,
};
use crate::{Result, Store};

/// Which executions of one project and domain a list or count wants; every filter that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub project: String,
    pub domain: String,
    /// Any of these phases (their names, e.g. `RUNNING`); every phase when empty.
    pub phases: Vec<String>,
    /// Of the workflow of this name (any version).
    pub workflow: Option<String>,
    /// Launched from the launch plan of this name.
    pub launch_plan: Option<String>,
    /// Carrying each of these labels with this value.
    pub labels: BTreeMap<String, String>,
    /// Created at or after this time (ms).
    pub created_after: Option<i64>,
    /// Created before this time (ms).
    pub created_before: Option<i64>,
    pub name_prefix: Option<String>,
    /// Children of this execution (a name in the same project and domain).
    pub parent: Option<String>,
}

/// Where a page of executions starts: right after this one in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionCursor {
    pub created_at: i64,
    pub name: String,
}

/// Which of an execution's nodes a page wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeScope {
    Every,
    /// The workflow's own nodes: not map items, not nodes inside subworkflows.
    TopLevel,
    /// Every node below a top-level node: map items, nodes inside subworkflows and dynamic nodes.
    Nested,
    /// The direct children of one node: a map's items (`m[3]`), a subworkflow's nodes (`sub/x`).
    ChildrenOf(String),
}

/// A value bound to a numbered placeholder of a query built from filters.
enum Bound {
    Int(i64),
    Text(String),
}

/// A WHERE clause built from filters, with its values in placeholder order.
struct Conditions {
    clauses: Vec<String>,
    values: Vec<Bound>,
}

impl Conditions {
    fn new() -> Conditions {
        Conditions {
            clauses: Vec::new(),
            values: Vec::new(),
        }
    }

    /// The next placeholder, bound to `value`.
    fn bind(&mut self, value: Bound) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn text(&mut self, value: &str) -> String {
        self.bind(Bound::Text(value.to_string()))
    }

    fn int(&mut self, value: i64) -> String {
        self.bind(Bound::Int(value))
    }

    fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let placeholders: Vec<String> = values.iter().map(|v| self.text(v)).collect();
        self.push(format!("{column} IN ({})", placeholders.join(", ")));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn query<'q>(&'q self, sql: &'q str) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut query = sqlx::query(sql);
        for value in &self.values {
            query = match value {
                Bound::Int(v) => query.bind(*v),
                Bound::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }
}

/// `text` as a LIKE pattern matching itself literally (names may hold `_`), with `\` as the escape.
fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn execution_conditions(filter: &ExecutionFilter, with_phases: bool) -> Conditions {
    let mut c = Conditions::new();
    let project = c.text(&filter.project);
    let domain = c.text(&filter.domain);
    c.push(format!("e.project = {project} AND e.domain = {domain}"));
    if with_phases {
        c.any_of("e.phase", &filter.phases);
    }
    if let Some(workflow) = &filter.workflow {
        let p = c.text(workflow);
        c.push(format!("e.workflow_name = {p}"));
    }
    if let Some(launch_plan) = &filter.launch_plan {
        let p = c.text(launch_plan);
        c.push(format!("e.launch_plan_name = {p}"));
    }
    for (key, value) in &filter.labels {
        let (k, v) = (c.text(key), c.text(value));
        c.push(format!(
            "EXISTS (SELECT 1 FROM execution_labels l WHERE l.project = e.project AND l.domain = e.domain \
             AND l.execution = e.name AND l.label_key = {k} AND l.label_value = {v})"
        ));
    }
    if let Some(after) = filter.created_after {
        let p = c.int(after);
        c.push(format!("e.created_at >= {p}"));
    }
    if let Some(before) = filter.created_before {
        let p = c.int(before);
        c.push(format!("e.created_at < {p}"));
    }
    if let Some(prefix) = &filter.name_prefix {
        let p = c.text(&format!("{}%", like_literal(prefix)));
        c.push(format!("e.name LIKE {p} ESCAPE '\\'"));
    }
    if let Some(parent) = &filter.parent {
        let p = c.text(parent);
        c.push(format!("e.parent_execution = {p}"));
    }
    c
}

fn node_conditions(id: &ExecutionId, scope: &NodeScope) -> Conditions {
    let mut c = Conditions::new();
    let (project, domain, execution) = (c.text(&id.project), c.text(&id.domain), c.text(&id.name));
    c.push(format!(
        "project = {project} AND domain = {domain} AND execution = {execution}"
    ));
    match scope {
        NodeScope::Every => {}
        NodeScope::TopLevel => c.push("node_id NOT LIKE '%/%' AND node_id NOT LIKE '%[%'".to_string()),
        NodeScope::Nested => c.push("(node_id LIKE '%/%' OR node_id LIKE '%[%')".to_string()),
        NodeScope::ChildrenOf(parent) => {
            let items = c.text(&format!("{}[%", like_literal(parent)));
            let inner = c.text(&format!("{}/%", like_literal(parent)));
            // What follows `parent[` or `parent/` holds no further level.
            // CAST: Postgres has substr(text, integer) only, and a bound i64 arrives as bigint.
            let start = format!("CAST({} AS INTEGER)", c.int(parent.len() as i64 + 2));
            c.push(format!(
                "(node_id LIKE {items} ESCAPE '\\' OR node_id LIKE {inner} ESCAPE '\\') \
                 AND substr(node_id, {start}) NOT LIKE '%/%' AND substr(node_id, {start}) NOT LIKE '%[%'"
            ));
        }
    }
    c
}

impl Store {
    /// One page of the executions `filter` selects, newest first, starting after `after`; `limit + 1` rows are
    /// read so the caller knows whether another page follows.
    pub async fn list_executions_page(
        &self,
        filter: &ExecutionFilter,
        after: Option<&ExecutionCursor>,
        limit: u32,
    ) -> Result<Vec<ExecutionRow>> {
        let mut c = execution_conditions(filter, true);
        if let Some(cursor) = after {
            let (at, at_again, name) = (
                c.int(cursor.created_at),
                c.int(cursor.created_at),
                c.text(&cursor.name),
            );
            c.push(format!(
                "(e.created_at < {at} OR (e.created_at = {at_again} AND e.name > {name}))"
            ));
        }
        let limit = c.int(i64::from(limit));
        // Only the label subqueries name another table, and they qualify their columns.
        let sql = format!(
            "{EXECUTION_COLUMNS} e{} ORDER BY e.created_at DESC, e.name LIMIT {limit}",
            c.sql()
        );
        let rows = c.query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(execution_row).collect()
    }

    /// How many executions `filter` selects (its `phases` aside), by phase name.
    pub async fn count_executions(&self, filter: &ExecutionFilter) -> Result<BTreeMap<String, u64>> {
        let c = execution_conditions(filter, false);
        self.counts_by_phase("executions e", &c).await
    }

    /// One page of the nodes of execution `id` in `scope` and (when any are named) `phases`, in node order,
    /// after node index `after`.
    pub async fn list_nodes_page(
        &self,
        id: &ExecutionId,
        scope: &NodeScope,
        phases: &[String],
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<NodeRow>> {
        let mut c = node_conditions(id, scope);
        c.any_of("phase", phases);
        if let Some(after) = after {
            let p = c.int(i64::from(after));
            c.push(format!("node_index > {p}"));
        }
        let limit = c.int(i64::from(limit));
        let sql = format!("{NODE_COLUMNS}{} ORDER BY node_index LIMIT {limit}", c.sql());
        let rows = c.query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(node_row).collect()
    }

    /// The nodes of execution `id` in `scope`, by phase name.
    pub async fn count_nodes(&self, id: &ExecutionId, scope: &NodeScope) -> Result<BTreeMap<String, u64>> {
        let c = node_conditions(id, scope);
        self.counts_by_phase("node_executions", &c).await
    }

    /// The nested nodes of execution `id` (map items, nodes inside subworkflows and dynamic nodes), counted
    /// by the top-level node they are under and by phase name.
    pub async fn count_nested_nodes(
        &self,
        id: &ExecutionId,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
        let c = node_conditions(id, &NodeScope::Nested);
        // Grouped here rather than in SQL: where a node id's top-level part ends is written differently in
        // Postgres and SQLite, and the rows are two short strings each.
        let sql = format!("SELECT node_id, phase FROM node_executions{}", c.sql());
        let rows = c.query(&sql).fetch_all(self.pool()).await?;
        let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for row in &rows {
            let node: String = row.try_get("node_id")?;
            let phase: String = row.try_get("phase")?;
            let top = node.split(['/', '[']).next().unwrap_or_default().to_string();
            *counts.entry(top).or_default().entry(phase).or_default() += 1;
        }
        Ok(counts)
    }

    /// The rows of `from` that `c` selects, counted by their `phase`.
    async fn counts_by_phase(&self, from: &str, c: &Conditions) -> Result<BTreeMap<String, u64>> {
        let sql = format!(
            "SELECT phase, COUNT(*) AS n FROM {from}{} GROUP BY phase",
            c.sql()
        );
        let rows = c.query(&sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("phase")?, row.try_get::<i64, _>("n")?.max(0) as u64)))
            .collect()
    }

    /// The history events of execution `id` after the one at `after` (its record's partition, offset and
    /// index), in log order: an execution's events are all on one partition.
    pub async fn execution_events_after(
        &self,
        id: &ExecutionId,
        after: (u32, u64, u32),
    ) -> Result<Vec<EventRow>> {
        let (partition, offset, index) = after;
        let rows = sqlx::query(&format!(
            "{EVENT_COLUMNS} WHERE project = $1 AND domain = $2 AND execution = $3 AND log_partition = $4 \
             AND (log_offset > $5 OR (log_offset = $6 AND log_index > $7)) \
             ORDER BY log_partition, log_offset, log_index"
        ))
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .bind(i64::from(partition))
        .bind(offset as i64)
        .bind(offset as i64)
        .bind(i64::from(index))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn like_patterns_match_underscores_and_percents_literally() {
        assert_eq!(like_literal("etl_daily"), "etl\\_daily");
        assert_eq!(like_literal("100%"), "100\\%");
        assert_eq!(like_literal("plain"), "plain");
    }
}
