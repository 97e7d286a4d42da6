//! Per-task run state kept by the run loop, and its conversion into the report.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cache::{CacheSource, Digest};
use crate::model::{ExecutedOn, TaskKind};
use crate::report::{AttemptReport, TaskReport, TaskStatus, rfc3339};
use crate::scheduler::pools::Need;

/// How many output lines are kept per task for failure messages and JUnit.
pub const LAST_LINES: usize = 20;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Some dependency has not finished.
    Waiting,
    /// In the ready queue, waiting for slots.
    Ready,
    /// A worker is on it (or a service is starting / up).
    Running,
    /// Between attempts, holding no slot.
    RetryWait,
    /// Looked up and missed; waiting (without slots) for the services it needs to be ready.
    WaitService,
    /// Final status reached.
    Done,
}

/// The concurrency a task holds while a worker is on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing (waiting, looking up, between attempts, done).
    Nothing,
    /// A global slot and its pools' slots: it runs here.
    Slots,
    /// A remote action in flight and its pools' slots, no global slot (SPEC §11).
    Remote,
}

/// Where a task's cache lookup on the lookup threads stands (see `Rec::lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupState {
    /// None is in flight.
    Idle,
    /// One is in flight.
    InFlight,
    /// One was in flight when an interrupt cancelled the task: its answer is dropped.
    Abandoned,
}

/// Everything the loop knows about one task.
pub struct Rec {
    pub name: Arc<str>,
    pub kind: TaskKind,
    pub stage: Stage,
    /// Selected dependencies not yet succeeded (or ready, for services).
    pub waiting_on: usize,
    /// Selected dependents that have not reached a final status.
    pub open_dependents: usize,
    pub need: Need,
    pub held: Held,
    pub next_attempt: u32,
    pub started: Option<(SystemTime, Instant)>,
    pub finished: Option<(SystemTime, Instant)>,
    pub attempts: Vec<AttemptReport>,
    pub key: Option<String>,
    pub cache_source: Option<CacheSource>,
    pub bytes: Option<u64>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub status: Option<TaskStatus>,
    pub digest: Digest,
    pub last_lines: VecDeque<String>,
    /// A service's own state; None for every other kind.
    pub service: Option<ServiceState>,
    /// Dependents were told this task is done (services tell them before they finish).
    pub notified: bool,
    /// The cache was asked already (a miss waiting for services is not asked again).
    pub looked_up: bool,
    /// A lookup thread is asking the cache for it now; `LookupAbandoned` once an interrupt
    /// cancelled it meanwhile (its late answer is then dropped).
    pub lookup: LookupState,
    /// `TaskStarted` was sent (at the first attempt that really runs).
    pub announced: bool,
    /// Where its last attempt ran; None while none did.
    pub executed_on: Option<ExecutedOn>,
    /// Some attempt of it really ran its command (a refused remote action did not).
    pub ran: bool,
    /// The timer that ends its retry wait, to stop when the run stops first.
    pub retry_timer: Option<tokio::task::AbortHandle>,
    /// Its report entry, built once when it finished: sent with `TaskFinished`, then moved
    /// into the run report.
    pub entry: Option<Box<TaskReport>>,
}

/// What only a service task has.
#[derive(Debug, Default)]
pub struct ServiceState {
    /// Its stop handle while it runs.
    pub release: Option<oneshot::Sender<()>>,
    /// It answered its probe.
    pub ready: bool,
    /// When it did (the critical path goes through a service's readiness, not its stop).
    pub ready_at: Option<SystemTime>,
    /// Its deps are done but nothing has needed it yet (not started).
    pub standby: bool,
}

impl Rec {
    /// The service state, made on first use (only service tasks ever use it).
    pub fn service_mut(&mut self) -> &mut ServiceState {
        self.service.get_or_insert_with(ServiceState::default)
    }

    /// A service that answered its probe.
    pub fn is_ready_service(&self) -> bool {
        self.service.as_ref().is_some_and(|s| s.ready)
    }

    /// A service waiting, not started, for something to need it.
    pub fn is_standby(&self) -> bool {
        self.service.as_ref().is_some_and(|s| s.standby)
    }

    /// A fresh record for a task.
    pub fn new(name: &str, kind: TaskKind, need: Need) -> Self {
        Self {
            name: Arc::from(name),
            kind,
            stage: Stage::Waiting,
            waiting_on: 0,
            open_dependents: 0,
            need,
            held: Held::Nothing,
            next_attempt: 1,
            started: None,
            finished: None,
            attempts: Vec::new(),
            key: None,
            cache_source: None,
            bytes: None,
            exit_code: None,
            error: None,
            status: None,
            digest: [0; 32],
            last_lines: VecDeque::new(),
            service: (kind == TaskKind::Service).then(ServiceState::default),
            notified: false,
            looked_up: false,
            lookup: LookupState::Idle,
            announced: false,
            executed_on: None,
            ran: false,
            retry_timer: None,
            entry: None,
        }
    }

    /// Keeps the last [`LAST_LINES`] lines of output.
    pub fn push_line(&mut self, line: &str) {
        if self.last_lines.len() == LAST_LINES {
            self.last_lines.pop_front();
        }
        self.last_lines.push_back(line.to_string());
    }

    /// It ended succeeded or cached: its dependents may run.
    pub fn succeeded(&self) -> bool {
        matches!(
            self.status,
            Some(TaskStatus::Succeeded | TaskStatus::Cached)
        )
    }

    /// Marks the start, once.
    pub fn mark_started(&mut self) {
        if self.started.is_none() {
            self.started = Some((SystemTime::now(), Instant::now()));
        }
    }

    /// The task's report entry; `i` is its index in `plan`.
    pub fn report(&self, plan: &crate::plan::Plan, i: usize) -> TaskReport {
        let task = plan.task(i);
        let duration_ms = match (self.started, self.finished) {
            (Some((_, a)), Some((_, b))) => Some(millis(b.saturating_duration_since(a))),
            _ => None,
        };
        let (declared, item) = task.instance_of();
        TaskReport {
            name: self.name.to_string(),
            task: declared,
            item,
            kind: self.kind,
            status: self.status.unwrap_or(TaskStatus::Cancelled),
            started_at: self.started.map(|(t, _)| rfc3339(t)),
            finished_at: self.started.and(self.finished).map(|(t, _)| rfc3339(t)),
            duration_ms,
            cache_key: self.key.clone(),
            cache_hit: self.status == Some(TaskStatus::Cached) && self.cache_source.is_some(),
            cache_source: self.cache_source,
            bytes: self.bytes,
            exit_code: self.exit_code,
            error: self.error.clone(),
            attempts: self.attempts.clone(),
            deps: plan.deps[i]
                .iter()
                .filter(|&&d| plan.selected[d])
                .map(|&d| plan.task(d).name.clone())
                .collect(),
            uses: task.uses.clone(),
            ready_at: self.service.as_ref().and_then(|s| s.ready_at).map(rfc3339),
            executed_on: self.executed_on,
        }
    }
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
