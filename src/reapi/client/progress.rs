//! What an execution's caller has seen of its operation so far (its name, whether and when
//! a worker started it), and the deadline the task's `timeout` sets on its execution (SPEC
//! §2: `timeout` bounds an attempt). Time in the cluster's queue is not the task's: a busy
//! cluster must not fail tasks that never got a worker, nor be judged down for it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prost::Message;

use crate::reapi::error::ReapiError;
use crate::reapi::proto;
use bazel_remote_apis::google::longrunning::Operation;

/// Beyond the task's timeout, what a worker may take to report (its own timeout answer,
/// the outputs' upload) before taskrun stops waiting for it (a lost worker).
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// How often the wait looks whether a worker has taken the action.
const START_POLL: Duration = Duration::from_millis(50);

/// When an execution must be done by: the task's `timeout` (plus `REPORT_GRACE`),
/// counted from when the cluster first reported a worker executing the action.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The timeout it stands for.
    pub timeout: Duration,
}

impl Deadline {
    /// The deadline of a task with this `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// Resolves once a worker has had the action for longer than the timeout and the grace
    /// (never while it is queued, never without a deadline).
    pub(super) async fn reached(deadline: Option<Self>, seen: &Mutex<Seen>) {
        let Some(d) = deadline else {
            return std::future::pending().await;
        };
        let started = loop {
            if let Some(at) = Seen::started_at(seen) {
                break at;
            }
            tokio::time::sleep(START_POLL).await;
        };
        tokio::time::sleep_until(started + d.timeout + REPORT_GRACE).await;
    }

    /// The error for an execution a worker did not finish in time: the action's timeout.
    pub(super) fn missed(&self) -> ReapiError {
        ReapiError::TimedOut(format!(
            "the action was not done within the task's timeout ({}) after a worker took it; cancelled",
            humantime::format_duration(self.timeout)
        ))
    }
}

/// The operation as seen so far, shared between the waiting future and whoever cancels it.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Its name, once the server gave one (cleared when nothing is left to cancel).
    pub name: Option<String>,
    /// When a worker was first seen with it (stage EXECUTING or later, even if it went back
    /// to the queue since: a lost worker's action is requeued).
    pub started: Option<tokio::time::Instant>,
}

impl Seen {
    /// Notes what `op` says: its name and stage.
    pub fn note(cell: &Mutex<Seen>, op: &Operation) {
        let started = op.done || stage_started(op);
        let mut seen = cell.lock().unwrap_or_else(PoisonError::into_inner);
        seen.name = Some(op.name.clone());
        if started && seen.started.is_none() {
            seen.started = Some(tokio::time::Instant::now());
        }
    }

    /// The name, disarming whoever would cancel it.
    pub fn take(cell: &Mutex<Seen>) -> Option<String> {
        cell.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .name
            .take()
    }

    /// When a worker was first seen with it.
    pub fn started_at(cell: &Mutex<Seen>) -> Option<tokio::time::Instant> {
        cell.lock().unwrap_or_else(PoisonError::into_inner).started
    }

    /// The name, if any.
    pub fn name(cell: &Mutex<Seen>) -> Option<String> {
        cell.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .name
            .clone()
    }
}

/// Whether the operation's metadata says a worker has it (EXECUTING or COMPLETED). Metadata
/// that is absent or not an `ExecuteOperationMetadata` says nothing.
fn stage_started(op: &Operation) -> bool {
    let Some(any) = op.metadata.as_ref() else {
        return false;
    };
    let Ok(meta) = proto::ExecuteOperationMetadata::decode(&*any.value) else {
        return false;
    };
    meta.stage >= proto::execution_stage::Value::Executing as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::protobuf::Any;

    fn at(stage: proto::execution_stage::Value) -> Operation {
        let meta = proto::ExecuteOperationMetadata {
            stage: stage as i32,
            ..Default::default()
        };
        Operation {
            name: "op".into(),
            metadata: Some(Any {
                type_url: String::new(),
                value: meta.encode_to_vec(),
            }),
            done: false,
            result: None,
        }
    }

    #[test]
    fn executing_once_seen_stays_seen() {
        use proto::execution_stage::Value;
        let cell = Mutex::new(Seen::default());
        Seen::note(&cell, &at(Value::Queued));
        assert_eq!(Seen::name(&cell).as_deref(), Some("op"));
        assert!(Seen::started_at(&cell).is_none());
        Seen::note(&cell, &at(Value::Executing));
        let first = Seen::started_at(&cell);
        assert!(first.is_some());
        Seen::note(&cell, &at(Value::Queued));
        Seen::note(&cell, &at(Value::Executing));
        assert_eq!(Seen::started_at(&cell), first);
        assert_eq!(Seen::take(&cell), Some("op".into()));
        assert_eq!(Seen::take(&cell), None);
    }

    /// The queue is not the task's time: the deadline runs from the worker's start.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_the_workers_start_not_the_queue() {
        use proto::execution_stage::Value;
        let cell = Mutex::new(Seen::default());
        let deadline = Deadline::new(Duration::from_secs(3));
        let d = Some(deadline);
        let queued = tokio::time::timeout(Duration::from_secs(600), Deadline::reached(d, &cell));
        assert!(queued.await.is_err(), "a queued action has no deadline");
        Seen::note(&cell, &at(Value::Executing));
        let t0 = tokio::time::Instant::now();
        Deadline::reached(d, &cell).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(3) + REPORT_GRACE);
        let missed = deadline.missed();
        assert_eq!(missed.kind(), crate::reapi::ErrorKind::Action);
        assert!(
            missed
                .to_string()
                .contains("timeout (3s) after a worker took it")
        );
    }
}
