//! What an execution's caller has seen of its operation so far (its name, whether a worker
//! started it), and the deadline the task's `timeout` sets on the whole wait (SPEC §2:
//! `timeout` bounds an attempt; a remote attempt's wait includes the cluster's queue).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prost::Message;

use crate::reapi::error::ReapiError;
use crate::reapi::proto;
use bazel_remote_apis::google::longrunning::Operation;

/// When an execution must be done by: the task's `timeout`, counted from when the action
/// was first sent for execution.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The instant the wait ends.
    pub at: tokio::time::Instant,
    /// The timeout it stands for (for messages).
    pub timeout: Duration,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self {
            at: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    /// Resolves at the deadline, or never without one.
    pub(super) async fn reached(deadline: Option<Self>) {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.at).await,
            None => std::future::pending().await,
        }
    }

    /// The error for an execution not done by the deadline: the action's own timeout once
    /// a worker had started it, the cluster's failure while it still waited for one.
    pub(super) fn missed(&self, started: bool) -> ReapiError {
        let limit = humantime::format_duration(self.timeout);
        if started {
            ReapiError::TimedOut(format!(
                "the action was not done within the task's timeout ({limit}); cancelled"
            ))
        } else {
            ReapiError::Cluster(format!(
                "the action was still queued after the task's timeout ({limit}); cancelled"
            ))
        }
    }
}

/// The operation as seen so far, shared between the waiting future and whoever cancels it.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Its name, once the server gave one (cleared when nothing is left to cancel).
    pub name: Option<String>,
    /// A worker started it (stage EXECUTING or later seen, even if it went back to the
    /// queue since: a lost worker's action is requeued).
    pub started: bool,
}

impl Seen {
    /// Notes what `op` says: its name and stage.
    pub fn note(cell: &Mutex<Seen>, op: &Operation) {
        let started = op.done || stage_started(op);
        let mut seen = cell.lock().unwrap_or_else(PoisonError::into_inner);
        seen.name = Some(op.name.clone());
        seen.started |= started;
    }

    /// The name (disarming whoever would cancel it) and whether a worker started it.
    pub fn take(cell: &Mutex<Seen>) -> (Option<String>, bool) {
        let mut seen = cell.lock().unwrap_or_else(PoisonError::into_inner);
        (seen.name.take(), seen.started)
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
        assert!(!cell.lock().unwrap().started);
        Seen::note(&cell, &at(Value::Executing));
        Seen::note(&cell, &at(Value::Queued));
        assert_eq!(Seen::take(&cell), (Some("op".into()), true));
        assert_eq!(Seen::take(&cell), (None, true));
    }

    #[test]
    fn a_missed_deadline_is_a_timeout_only_once_started() {
        let d = Deadline::after(Duration::from_secs(3));
        assert_eq!(d.missed(true).kind(), crate::reapi::ErrorKind::Action);
        let queued = d.missed(false);
        assert!(queued.is_cluster_failure());
        assert!(
            queued
                .to_string()
                .contains("still queued after the task's timeout (3s)")
        );
    }
}
