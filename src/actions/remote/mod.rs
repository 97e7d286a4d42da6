//! One attempt of a command task on the remote executor (SPEC §11), ending the way a local
//! attempt ends: its output in the task's log and on the console, its outputs in the
//! workspace (or, when it failed, the workspace as it was), an [`AttemptResult`] for the
//! scheduler's retry rule. What is the cluster's fault is kept apart ([`RemoteEnd::Cluster`]):
//! the scheduler retries that without using an attempt, then runs the task here.

pub mod hint;
pub mod spec;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

use crate::actions::outputs::{self, Snapshot};
use crate::actions::{AttemptResult, Stop, TaskOutput};
use crate::events::Stream;
use crate::model::{Pipeline, Task};
use crate::reapi::{ActionSpec, Client, ReapiError, RemoteOutcome, RunOptions, run_action_noting};
use crate::report::AttemptOutcome;

/// How a remote attempt ended.
#[derive(Debug)]
pub enum RemoteEnd {
    /// The command ran on the cluster (or was stopped): a normal attempt result, its output
    /// already sent to the task's sink.
    Ran(AttemptResult),
    /// The cluster's ActionCache had a successful result: its outputs are in the workspace;
    /// the command did not run. `output` is its stdout then stderr, for the local record.
    Cached {
        /// stdout followed by stderr.
        output: Vec<u8>,
        /// The declared outputs before the result was written: if the local cache refuses
        /// to record it, what it wrote is taken back before the action runs again.
        before: Snapshot,
        /// When the cluster made the result (its worker finished), as far as it says.
        made: Option<std::time::SystemTime>,
    },
    /// The cluster failed (unreachable, lost the action, overloaded): not the task's fault.
    Cluster(ReapiError),
}

/// Everything one remote attempt needs.
pub struct RemoteCtx<'a> {
    /// The connection to the executor.
    pub client: &'a Client,
    /// The Action to run.
    pub spec: &'a ActionSpec,
    /// The pipeline (its root is the input root and where outputs land).
    pub pipeline: &'a Pipeline,
    /// The task.
    pub task: &'a Task,
    /// Where its output goes (log file, console).
    pub output: &'a TaskOutput,
    /// The run's stop request: cancels the remote operation.
    pub stop: watch::Receiver<Stop>,
    /// Set once the scheduler judges the cluster down: the operation is abandoned and the
    /// task goes to the local fallback.
    pub down: watch::Receiver<bool>,
    /// `--force`, or a cached result found unusable: do not take the ActionCache's result.
    pub skip_cache_lookup: bool,
}

/// Runs the task's Action once on the cluster.
pub async fn attempt(ctx: RemoteCtx<'_>) -> RemoteEnd {
    let root = &ctx.pipeline.root;
    if let Err(e) = outputs::unlink_escapes(root, &ctx.task.outputs) {
        return RemoteEnd::Ran(AttemptResult::failed(e, false));
    }
    let snapshot = Snapshot::take(root, &ctx.task.outputs);
    let options = RunOptions {
        keep_failed_outputs: ctx.task.keep_failed_outputs,
        skip_cache_lookup: ctx.skip_cache_lookup,
        max_age: ctx.task.cache_ttl,
        ..RunOptions::default()
    };
    let (mut stop, mut down) = (ctx.stop.clone(), ctx.down.clone());
    let cancel = async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s != Stop::No) => {}
            _ = down.wait_for(|d| *d) => {}
        }
    };
    let executed = AtomicBool::new(false);
    let run = run_action_noting(ctx.client, ctx.spec, root, &options, cancel, &executed);
    let end = match run.await {
        Ok(o) if o.cached && o.exit_code == 0 => {
            let mut output = o.stdout;
            output.extend_from_slice(&o.stderr);
            // The cluster's word, never later than now: a time to come would keep the local
            // copy from ever expiring.
            let made = o.info.made().map(|t| t.min(std::time::SystemTime::now()));
            return RemoteEnd::Cached {
                output,
                before: snapshot,
                made,
            };
        }
        Ok(o) => RemoteEnd::Ran(ran(&ctx, &o).await),
        Err(e) => ended(&ctx, e, executed.load(Ordering::Relaxed)),
    };
    let failed = match &end {
        RemoteEnd::Ran(r) => r.outcome != AttemptOutcome::Succeeded,
        RemoteEnd::Cached { .. } => false,
        RemoteEnd::Cluster(_) => true,
    };
    if ctx.task.keep_failed_outputs {
        return end;
    }
    if failed {
        for path in snapshot.delete_changed() {
            tracing::info!(task = %ctx.task.name, path = %path.display(), "deleted output of failed remote attempt");
        }
        return end;
    }
    match end {
        // Kept in case its outputs cannot be recorded, as a local run's (see
        // `AttemptResult::before`).
        RemoteEnd::Ran(mut r) => {
            r.before = Some(std::sync::Arc::new(snapshot));
            RemoteEnd::Ran(r)
        }
        other => other,
    }
}

/// The command ran: its output to the sink, its exit code to a result.
async fn ran(ctx: &RemoteCtx<'_>, o: &RemoteOutcome) -> AttemptResult {
    let sink = ctx.output;
    for (stream, bytes) in [(Stream::Stdout, &o.stdout), (Stream::Stderr, &o.stderr)] {
        // Line by line as a local run's pipes are read: the log gets the bytes as printed.
        for read in bytes.split_inclusive(|b| *b == b'\n') {
            let (line, ending) = crate::actions::process::split_ending(read);
            sink.printed(stream, line, ending).await;
        }
    }
    if o.logs_truncated {
        sink.line_held(Stream::Stderr, b"(output cut: it was longer than 64 MiB)")
            .await;
    }
    if o.exit_code == 0 {
        sink.flush_log();
        return AttemptResult::succeeded().with_exit_code(Some(0));
    }
    let mut error = format!("exit code {}", o.exit_code);
    let sent: BTreeSet<&str> = ctx.spec.inputs.iter().map(|f| f.path.as_str()).collect();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let cwd = ctx.spec.working_directory.as_ref();
    for path in hint::unsent_files(&stderr, &ctx.pipeline.root, cwd, &sent) {
        let why = hint::message(&path);
        sink.line_held(Stream::Stderr, why.as_bytes()).await;
        error.push_str("; ");
        error.push_str(&why);
    }
    sink.flush_log();
    AttemptResult::failed(error, true).with_exit_code(Some(o.exit_code))
}

/// A run that ended in an error: the cluster's, the action's timeout, an interrupt, or a
/// failure no retry cures (`executed`: after the command ran, else it never did).
fn ended(ctx: &RemoteCtx<'_>, e: ReapiError, executed: bool) -> RemoteEnd {
    match e {
        ReapiError::Cancelled if *ctx.down.borrow() => RemoteEnd::Cluster(ReapiError::Cluster(
            "abandoned: the remote executor is unreachable".into(),
        )),
        ReapiError::Cancelled => {
            let mut result =
                AttemptResult::failed("interrupted", false).with_outcome(AttemptOutcome::Cancelled);
            // Interrupted in the cluster's queue: it ran nowhere.
            result.not_run = !executed;
            RemoteEnd::Ran(result)
        }
        e if e.is_cluster_failure() => RemoteEnd::Cluster(e),
        ReapiError::TimedOut(why) => {
            tracing::debug!(task = %ctx.task.name, "remote timeout: {why}");
            // Worded as a local timeout is; the cluster's own limit when the task has none.
            let error = match ctx.task.timeout {
                Some(limit) => format!("timed out after {}", humantime::format_duration(limit)),
                None => format!("timed out on the remote executor ({why})"),
            };
            RemoteEnd::Ran(
                AttemptResult::failed(error, true).with_outcome(AttemptOutcome::TimedOut),
            )
        }
        e => {
            let mut result = AttemptResult::failed(format!("remote execution: {e}"), false);
            result.not_run = !executed;
            RemoteEnd::Ran(result)
        }
    }
}
