//! The built-in executors for tests and benchmarks: `noop` succeeds at once, `sleep` waits out its
//! duration, `echo` returns the inputs named like its outputs.

use std::time::Duration;

use aloft_core::events::Outputs;
use aloft_core::spec::TaskKind;
use aloft_core::types::parse_duration_millis;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::attempt::{kind_of, system_error, AttemptOutcome, AttemptRequest, TaskExecutor};

/// One of the built-in task kinds.
#[derive(Debug, Clone, Copy)]
pub enum BuiltinExecutor {
    Noop,
    Sleep,
    Echo,
}

impl BuiltinExecutor {
    pub fn all() -> [BuiltinExecutor; 3] {
        [
            BuiltinExecutor::Noop,
            BuiltinExecutor::Sleep,
            BuiltinExecutor::Echo,
        ]
    }
}

impl TaskExecutor for BuiltinExecutor {
    fn kind(&self) -> &'static str {
        match self {
            BuiltinExecutor::Noop => "noop",
            BuiltinExecutor::Sleep => "sleep",
            BuiltinExecutor::Echo => "echo",
        }
    }

    fn start(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, AttemptOutcome> {
        match &request.task.run {
            TaskKind::Echo => {
                let echoed: Outputs = request
                    .task
                    .interface
                    .outputs
                    .keys()
                    .filter_map(|name| request.inputs.get(name).map(|v| (name.clone(), v.clone())))
                    .collect();
                futures::future::ready(AttemptOutcome::Succeeded(echoed)).boxed()
            }
            TaskKind::Sleep { duration } => {
                let millis = parse_duration_millis(duration).unwrap_or(0).max(0) as u64;
                async move {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(millis)) => AttemptOutcome::Succeeded(Outputs::new()),
                        _ = cancel.cancelled() => AttemptOutcome::Cancelled,
                    }
                }
                .boxed()
            }
            TaskKind::Noop => futures::future::ready(AttemptOutcome::Succeeded(Outputs::new())).boxed(),
            TaskKind::Process { .. } | TaskKind::Container(_) => {
                futures::future::ready(system_error(format!(
                    "the {} executor cannot run a {} task",
                    self.kind(),
                    kind_of(&request.task)
                )))
                .boxed()
            }
        }
    }
}
