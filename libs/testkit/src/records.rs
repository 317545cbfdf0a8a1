//! The records a propeller would write for an execution that fails at once.

/// The records of an execution that is requested and fails at `at` with `rules` as its own notification
/// rules, as `(partition key, encoded envelopes)`: what a propeller would have written, for the kill test
/// and `aloft-bench notify`, which exercise the notifier without running tasks.
pub fn failed_execution_records(
    id: &aloft_core::ExecutionId,
    rules: &[aloft_core::notify::NotificationRule],
    at: i64,
) -> Result<(String, Vec<Vec<u8>>), aloft_eventlog::Error> {
    use aloft_core::events::ExecutionEvent;
    use aloft_eventlog::{Envelope, Payload};
    let task = aloft_core::Identifier {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: "noop".into(),
        version: "1".into(),
    };
    let spec = aloft_core::TaskSpec {
        name: "noop".into(),
        version: None,
        interface: Default::default(),
        run: aloft_core::spec::TaskKind::Noop,
        retries: Default::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    };
    let requested = ExecutionEvent::ExecutionRequested {
        execution: id.clone(),
        request_id: id.name.clone(),
        workflow: Box::new(aloft_core::CompiledWorkflow::for_single_task(task, spec)),
        inputs: Default::default(),
        launch_plan: None,
        requested_at: at,
        scheduled_at: None,
        overwrite_cache: false,
        notifications: Some(rules.to_vec()),
        recovery: None,
        parent: None,
        labels: Default::default(),
    };
    let finished = ExecutionEvent::ExecutionFinished {
        execution: id.clone(),
        phase: aloft_core::ExecutionPhase::Failed,
        outputs: Default::default(),
        error: Some("simulated failure".into()),
        at,
    };
    let key = id.partition_key();
    let request = Envelope::unsequenced(
        aloft_core::StreamId::request(id, id.name.as_str()).to_string(),
        at,
        Payload::Execution(requested),
    );
    // The first decision of the execution's stream, by a writer of epoch 0 (no partition was ever claimed).
    let decision = Envelope {
        stream: aloft_core::StreamId::Execution(id.clone()).to_string(),
        seq: 1,
        writer_epoch: 0,
        occurred_at: at,
        traceparent: String::new(),
        payload: Payload::Execution(finished),
        principal: None,
    };
    Ok((key, vec![request.encode()?, decision.encode()?]))
}
