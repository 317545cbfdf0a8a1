//! Filtered and paged reads: executions (filters, page tokens, counts by phase) and one page of an
//! execution's nodes (by phase and parent node, with the counts a collapsed map shows).

use aloft_store::listing::{ExecutionCursor, ExecutionFilter, NodeScope};
use base64::Engine as _;

use super::reads::{execution_to_wire, node_to_wire};
use super::*;

const DEFAULT_EXECUTIONS_PAGE: u32 = 50;
const MAX_EXECUTIONS_PAGE: u32 = 1000;
const DEFAULT_NODES_PAGE: u32 = 200;
const MAX_NODES_PAGE: u32 = 500;

/// Page tokens are opaque to callers: URL-safe base64 of the position the next page starts after.
fn encode_token(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

fn decode_token(token: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad_token(token))
}

fn bad_token(token: &str) -> ApiError {
    invalid(format!(
        "page_token {token:?} is not one this API gave out; pass the previous answer's next_page_token unchanged"
    ))
}

fn page_size(requested: u32, default: u32, max: u32) -> u32 {
    if requested == 0 {
        default
    } else {
        requested.min(max)
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// What a list request selects, validated (phases must be phases, names names).
fn execution_filter(request: &wire::ListExecutionsRequest) -> ApiResult<ExecutionFilter> {
    validate_name("project", &request.project).map_err(|e| invalid(e.to_string()))?;
    validate_name("domain", &request.domain).map_err(|e| invalid(e.to_string()))?;
    let phases = request
        .phases
        .iter()
        .map(|&phase| match wire::ExecutionPhase::try_from(phase) {
            Ok(wire::ExecutionPhase::Unspecified) | Err(_) => {
                Err(invalid(format!("phases: {phase} is not an execution phase")))
            }
            Ok(phase) => Ok(aloft_core::state::ExecutionPhase::try_from(phase)
                .map_err(|e| invalid(format!("phases: {e}")))?
                .as_str()
                .to_string()),
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let labels: BTreeMap<String, String> = request.labels.clone().into_iter().collect();
    aloft_core::ids::validate_labels(&labels).map_err(|e| invalid(e.to_string()))?;
    if request.created_after_millis < 0 || request.created_before_millis < 0 {
        return Err(invalid(
            "created_after_millis and created_before_millis must not be negative",
        ));
    }
    Ok(ExecutionFilter {
        project: request.project.clone(),
        domain: request.domain.clone(),
        phases,
        workflow: non_empty(&request.workflow),
        launch_plan: non_empty(&request.launch_plan),
        labels,
        created_after: (request.created_after_millis > 0).then_some(request.created_after_millis),
        created_before: (request.created_before_millis > 0).then_some(request.created_before_millis),
        name_prefix: non_empty(&request.name_prefix),
        parent: non_empty(&request.parent),
    })
}

fn execution_cursor(token: &str) -> ApiResult<Option<ExecutionCursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let position = decode_token(token)?;
    let (created_at, name) = position.split_once(':').ok_or_else(|| bad_token(token))?;
    Ok(Some(ExecutionCursor {
        created_at: created_at.parse().map_err(|_| bad_token(token))?,
        name: name.to_string(),
    }))
}

fn node_phases(phases: &[i32]) -> ApiResult<Vec<String>> {
    phases
        .iter()
        .map(|&phase| {
            let wire_phase = wire::NodePhase::try_from(phase)
                .ok()
                .filter(|p| *p != wire::NodePhase::Unspecified)
                .ok_or_else(|| invalid(format!("phases: {phase} is not a node phase")))?;
            Ok(aloft_core::state::NodePhase::try_from(wire_phase)
                .map_err(|e| invalid(format!("phases: {e}")))?
                .as_str()
                .to_string())
        })
        .collect()
}

impl AdminApi {
    pub(super) async fn list_executions_rpc(
        &self,
        request: wire::ListExecutionsRequest,
    ) -> ApiResult<wire::ListExecutionsResponse> {
        let filter = execution_filter(&request)?;
        self.require_domain(&request.project, &request.domain).await?;
        let after = execution_cursor(&request.page_token)?;
        let limit = page_size(request.limit, DEFAULT_EXECUTIONS_PAGE, MAX_EXECUTIONS_PAGE);
        let mut rows = self
            .store
            .list_executions_page(&filter, after.as_ref(), limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => encode_token(&format!("{}:{}", last.created_at, last.id.name)),
            _ => String::new(),
        };
        Ok(wire::ListExecutionsResponse {
            executions: rows
                .into_iter()
                .map(execution_to_wire)
                .collect::<ApiResult<_>>()?,
            next_page_token,
        })
    }

    pub(super) async fn count_executions_rpc(
        &self,
        request: wire::ListExecutionsRequest,
    ) -> ApiResult<wire::ExecutionCounts> {
        let filter = execution_filter(&request)?;
        self.require_domain(&request.project, &request.domain).await?;
        let by_phase: HashMap<String, u64> =
            self.store.count_executions(&filter).await?.into_iter().collect();
        Ok(wire::ExecutionCounts {
            total: by_phase.values().sum(),
            by_phase,
        })
    }

    pub(super) async fn list_node_executions_rpc(
        &self,
        request: wire::ListNodeExecutionsRequest,
    ) -> ApiResult<wire::ListNodeExecutionsResponse> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        // NOT_FOUND for an unknown execution, not an empty page.
        self.execution_row(&id).await?;
        let scope = if !request.parent.is_empty() {
            NodeScope::ChildrenOf(request.parent.clone())
        } else if request.top_level {
            NodeScope::TopLevel
        } else {
            NodeScope::Every
        };
        let phases = node_phases(&request.phases)?;
        let after = if request.page_token.is_empty() {
            None
        } else {
            let position = decode_token(&request.page_token)?;
            Some(
                position
                    .parse::<u32>()
                    .map_err(|_| bad_token(&request.page_token))?,
            )
        };
        let limit = page_size(request.limit, DEFAULT_NODES_PAGE, MAX_NODES_PAGE);
        let mut rows = self
            .store
            .list_nodes_page(&id, &scope, &phases, after, limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => encode_token(&last.node_index.to_string()),
            _ => String::new(),
        };
        let nodes = rows
            .into_iter()
            .map(|node| node_to_wire(&id, node))
            .collect::<ApiResult<_>>()?;
        let phase_counts = self.store.count_nodes(&id, &scope).await?.into_iter().collect();
        // Once per listing, not per page: it reads every nested node of the execution.
        let first_page = request.page_token.is_empty();
        let child_phase_counts = if first_page && matches!(scope, NodeScope::TopLevel) {
            self.store
                .count_nested_nodes(&id)
                .await?
                .into_iter()
                .map(|(top, by_phase)| {
                    let by_phase = by_phase.into_iter().collect();
                    (top, wire::NodePhaseCounts { by_phase })
                })
                .collect()
        } else {
            HashMap::new()
        };
        Ok(wire::ListNodeExecutionsResponse {
            nodes,
            next_page_token,
            phase_counts,
            child_phase_counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_and_a_forged_one_is_refused_by_name() {
        let token = encode_token("1700000000000:a1b2");
        assert_eq!(
            execution_cursor(&token).unwrap(),
            Some(ExecutionCursor {
                created_at: 1_700_000_000_000,
                name: "a1b2".to_string()
            })
        );
        let error = execution_cursor("not-a-token!").unwrap_err().to_string();
        assert!(error.contains("page_token \"not-a-token!\""), "{error}");
        let no_time = encode_token("yesterday:a1");
        assert!(execution_cursor(&no_time).is_err());
    }

    #[test]
    fn a_list_filter_refuses_an_unknown_phase_and_a_bad_label() {
        let mut request = wire::ListExecutionsRequest {
            project: "p".into(),
            domain: "development".into(),
            phases: vec![42],
            ..Default::default()
        };
        let error = execution_filter(&request).unwrap_err().to_string();
        assert!(error.contains("42 is not an execution phase"), "{error}");
        request.phases = vec![wire::ExecutionPhase::Running as i32];
        request.labels.insert("team".into(), "ml ops".into());
        let error = execution_filter(&request).unwrap_err().to_string();
        assert!(error.contains("label \"team\""), "{error}");
    }
}
