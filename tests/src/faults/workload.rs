//! The harness's steady workload: chains, diamonds (fan-out and join), maps, cached tasks, gates answered
//! by signals, tasks holding a shared resource pool, and a launch plan on a schedule. Every task run
//! appends a line to the runs file (`EXECUTION NODE ATTEMPT`; the pooled task also its start and end time),
//! which the checker reads to count runs independently of the log. Every launched execution carries a
//! signed webhook rule for its end, which the notifier delivers to the harness's HTTP receiver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aloft_proto::v1 as wire;

use crate::{register_text, workflow, AdminClient, DOMAIN, PROJECT};

/// Tokens of the pool the pooled task holds one of; the checker asserts no more ran at once.
pub const POOL_LIMIT: u32 = 2;
pub const POOL: &str = "fault-pool";

/// The kinds of execution the workload launches, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Chain,
    Diamond,
    Map,
    Cached,
    Gate,
    Pooled,
}

impl Kind {
    const ROTATION: [Kind; 6] = [
        Kind::Chain,
        Kind::Diamond,
        Kind::Map,
        Kind::Cached,
        Kind::Gate,
        Kind::Pooled,
    ];

    fn workflow(self) -> &'static str {
        match self {
            Kind::Chain => "fault-chain",
            Kind::Diamond => "fault-diamond",
            Kind::Map => "fault-map",
            Kind::Cached => "fault-cached",
            Kind::Gate => "fault-gate",
            Kind::Pooled => "fault-pooled",
        }
    }
}

fn specs(runs: &Path) -> String {
    let runs = runs.display();
    let record = format!("echo \\\"$ALOFT_EXECUTION $ALOFT_NODE $ALOFT_ATTEMPT\\\" >> {runs}");
    let step = |name: &str, extra: &str, body: &str| {
        format!(
            "kind: task\nname: {name}\nversion: \"1\"\n{extra}interface: {{inputs: {{n: integer}}, outputs: {{n: integer}}}}\n\
             run:\n  process:\n    command: [\"sh\", \"-c\", \"{record}; {body}echo $((ALOFT_INPUT_N + 1)) > $ALOFT_OUTPUT_DIR/n\"]\n"
        )
    };
    // An attempt stopped on purpose (its propeller lost the partition, the execution was aborted) gets
    // SIGTERM: it records that, so the checker counts its token as released then.
    let pool_line = |what: &str| {
        format!("echo \\\"pool $ALOFT_EXECUTION/$ALOFT_ATTEMPT {what} $(date +%s%3N)\\\" >> {runs}")
    };
    // A SIGKILLed attempt (its propeller cancels it so, or dies) records nothing at its end: it ticks every
    // 25 ms while it holds the token, and the checker takes its last tick as its end (a later guess would
    // count a token the propeller rightly handed on after the kill as held twice).
    let pooled_body = format!(
        "trap '{stopped}; exit 143' TERM INT; {start}; i=0; while [ $i -lt 40 ]; do sleep 0.025; {tick}; \
         i=$((i+1)); done; {end}; ",
        stopped = pool_line("stopped"),
        start = pool_line("start"),
        tick = pool_line("tick"),
        end = pool_line("end"),
    );
    [
        step("fault-step", "", "sleep 0.2; "),
        step("fault-cached-step", "cache: {version: \"1\"}\n", "sleep 0.2; "),
        step(
            "fault-pooled-step",
            &format!("resources: {{pools: {{{POOL}: 1}}}}\n"),
            &pooled_body,
        ),
        "kind: workflow\nname: fault-chain\ninterface: {inputs: {x: integer}, outputs: {n: integer}}\nnodes:\n  \
         - {id: a, task: fault-step, inputs: {n: inputs.x}}\n  - {id: b, task: fault-step, inputs: {n: a.n}}\n  \
         - {id: c, task: fault-step, inputs: {n: b.n}}\noutputs: {n: c.n}\n"
            .to_string(),
        "kind: workflow\nname: fault-diamond\ninterface: {inputs: {x: integer}, outputs: {n: integer}}\nnodes:\n  \
         - {id: a, task: fault-step, inputs: {n: inputs.x}}\n  - {id: b, task: fault-step, inputs: {n: a.n}}\n  \
         - {id: c, task: fault-step, inputs: {n: a.n}}\n  - {id: d, task: fault-step, inputs: {n: c.n}, after: [b]}\n\
         outputs: {n: d.n}\n"
            .to_string(),
        "kind: workflow\nname: fault-map\ninterface: {inputs: {x: integer}, outputs: {n: \"list<integer>\"}}\nnodes:\n  \
         - {id: first, task: fault-step, inputs: {n: inputs.x}}\n  \
         - {id: each, map: {task: fault-step, over: n}, inputs: {n: {value: [1, 2, 3]}}, after: [first]}\n\
         outputs: {n: each.n}\n"
            .to_string(),
        "kind: workflow\nname: fault-cached\ninterface: {inputs: {x: integer}, outputs: {n: integer}}\nnodes:\n  \
         - {id: a, task: fault-cached-step, inputs: {n: inputs.x}}\noutputs: {n: a.n}\n"
            .to_string(),
        "kind: workflow\nname: fault-gate\ninterface: {inputs: {x: integer}, outputs: {n: integer}}\nnodes:\n  \
         - {id: go, gate: {signal: {name: go}}}\n  - {id: a, task: fault-step, inputs: {n: inputs.x}, after: [go]}\n\
         outputs: {n: a.n}\n"
            .to_string(),
        "kind: workflow\nname: fault-pooled\ninterface: {inputs: {x: integer}, outputs: {n: integer}}\nnodes:\n  \
         - {id: a, task: fault-pooled-step, inputs: {n: inputs.x}}\noutputs: {n: a.n}\n"
            .to_string(),
        "kind: launch_plan\nname: fault-every-minute\nversion: \"1\"\nworkflow: fault-chain\n\
         default_inputs: {x: 1}\nschedule: {fixed_rate: 1m, catch_up: all}\n"
            .to_string(),
    ]
    .join("---\n")
}

/// What became of one launch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    Accepted,
    /// Refused with this gRPC code (UNAVAILABLE while a dependency is down is the expected answer).
    Refused(tonic::Code),
    /// No answer within the launch timeout: the execution may or may not exist (the checker looks).
    NoAnswer,
}

impl Launched {
    /// Whether the execution may exist: accepted, unanswered, or refused as UNAVAILABLE (admin answers so
    /// when the log does not acknowledge the write in time; the record may still land later).
    pub fn may_exist(&self) -> bool {
        match self {
            Launched::Accepted | Launched::NoAnswer => true,
            Launched::Refused(code) => matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ),
        }
    }
}

/// One execution the workload asked for.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    pub kind: Kind,
    pub at: Instant,
    /// Wall-clock milliseconds of the launch, comparable with the read model's times.
    pub at_millis: i64,
    pub outcome: Launched,
}

pub struct Workload {
    pub runs: PathBuf,
    /// The webhook rule every launch carries (JSON), or empty for none.
    notifications_json: String,
    pub launches: Vec<Launch>,
    /// Gate executions still to be signalled.
    unsignalled: Vec<String>,
    run_id: String,
}

/// A write answers within this or counts as a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable the notifier reads the webhook's signing key from.
pub const HOOK_SECRET_ENV: &str = "ALOFT_FAULTS_HOOK_SECRET";

impl Workload {
    /// Registers the specs and the pool; every launch will ask for a signed webhook to `hook_url` when it
    /// ends (`None`: no notifications).
    pub async fn register(client: &mut AdminClient, dir: &Path, hook_url: Option<&str>) -> Workload {
        let runs = dir.join("runs.txt");
        client
            .define_pool(wire::DefinePoolRequest {
                name: POOL.into(),
                limit: POOL_LIMIT,
            })
            .await
            .expect("define the pool");
        register_text(client, dir, "faults.yaml", &specs(&runs)).await;
        client
            .activate_launch_plan(wire::GetEntityRequest {
                id: Some(wire::Identifier {
                    project: PROJECT.into(),
                    domain: DOMAIN.into(),
                    name: "fault-every-minute".into(),
                    version: "1".into(),
                }),
            })
            .await
            .expect("activate the scheduled launch plan");
        let notifications_json = hook_url
            .map(|url| {
                serde_json::json!([{
                    "phases": ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"],
                    "webhook": {"url": url, "secret": format!("env:{HOOK_SECRET_ENV}")}
                }])
                .to_string()
            })
            .unwrap_or_default();
        Workload {
            runs,
            notifications_json,
            launches: Vec::new(),
            unsignalled: Vec::new(),
            run_id: uuid::Uuid::new_v4().simple().to_string()[..6].to_string(),
        }
    }

    /// Launches the next execution of the rotation.
    pub async fn launch_next(&mut self, client: &mut AdminClient) -> Launched {
        let index = self.launches.len();
        let kind = Kind::ROTATION[index % Kind::ROTATION.len()];
        let name = format!("f{}-{index}", self.run_id);
        let x = (index % 5).to_string();
        let at = Instant::now();
        let at_millis = chrono::Utc::now().timestamp_millis();
        let request = wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: name.clone(),
            target: Some(workflow(kind.workflow())),
            text_inputs: [("x".to_string(), x)].into_iter().collect(),
            notifications_json: self.notifications_json.clone(),
            ..Default::default()
        };
        let outcome = match tokio::time::timeout(CALL_TIMEOUT, client.create_execution(request)).await {
            Ok(Ok(_)) => Launched::Accepted,
            Ok(Err(status)) => {
                let refused = Launched::Refused(status.code());
                if status.code() != tonic::Code::Unavailable
                    && !self.launches.iter().any(|l| l.outcome == refused)
                {
                    eprintln!("launch {name} refused: {status}");
                }
                refused
            }
            Err(_) => Launched::NoAnswer,
        };
        if kind == Kind::Gate && outcome.may_exist() {
            self.unsignalled.push(name.clone());
        }
        self.launches.push(Launch {
            name,
            kind,
            at,
            at_millis,
            outcome: outcome.clone(),
        });
        outcome
    }

    /// Sends `go` to every gate execution not yet signalled (retried each round until accepted).
    pub async fn signal_gates(&mut self, client: &mut AdminClient) {
        let mut still = Vec::new();
        for name in std::mem::take(&mut self.unsignalled) {
            let request = wire::SignalExecutionRequest {
                id: Some(execution_id(&name)),
                signal: "go".into(),
                value: String::new(),
            };
            match tokio::time::timeout(CALL_TIMEOUT, client.signal_execution(request)).await {
                Ok(Ok(_)) => {}
                // Refused for good when the launch never happened; the checker reports it then.
                Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                    if self
                        .launches
                        .iter()
                        .any(|l| l.name == name && l.outcome.may_exist())
                    {
                        still.push(name);
                    }
                }
                _ => still.push(name),
            }
        }
        self.unsignalled = still;
    }

    pub fn has_unsignalled_gates(&self) -> bool {
        !self.unsignalled.is_empty()
    }

    /// How many launches got each answer.
    pub fn outcomes(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for launch in &self.launches {
            let key = match &launch.outcome {
                Launched::Accepted => "accepted".to_string(),
                Launched::Refused(code) => format!("refused {code:?}"),
                Launched::NoAnswer => "no answer within 10 s".to_string(),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }
}

pub fn execution_id(name: &str) -> wire::ExecutionIdentifier {
    wire::ExecutionIdentifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: name.into(),
    }
}
