//! What the run loop does when an attempt ends: record it, then succeed, retry or give up.

use std::time::SystemTime;

use super::failure::TaskFailure;
use super::state::{Stage, millis};
use super::worker::Done;
use super::{Loop, retry};
use crate::cache::Digest;
use crate::events::Event;
use crate::lockfile::standing::NewPin;
use crate::report::{AttemptOutcome, AttemptReport, TaskStatus, rfc3339};

impl Loop<'_> {
    pub(super) fn on_attempt(
        &mut self,
        task: usize,
        key: Option<String>,
        (started, finished): (SystemTime, SystemTime),
        result: crate::actions::AttemptResult,
        digest: Option<Result<Digest, TaskFailure>>,
    ) {
        let rec = &mut self.recs[task];
        rec.key = key;
        rec.exit_code = result.exit_code;
        // Announced as a remote attempt when it was sent; it ran nowhere if the cluster
        // refused it (and no earlier attempt ran).
        rec.ran |= !result.not_run;
        if !rec.ran {
            rec.executed_on = None;
        }
        if let Some(bytes) = result.bytes() {
            rec.bytes = Some(rec.bytes.unwrap_or(0) + bytes);
        }
        let number = rec.next_attempt;
        rec.attempts.push(AttemptReport {
            number,
            started_at: rfc3339(started),
            finished_at: rfc3339(finished),
            duration_ms: millis(finished.duration_since(started).unwrap_or_default()),
            outcome: result.outcome,
            exit_code: result.exit_code,
            http_status: result.download.as_ref().and_then(|d| d.http_status),
            url: result.download.as_ref().and_then(|d| d.url.clone()),
            error: result.error.clone(),
            wait_ms: None,
        });
        match (result.outcome, digest) {
            (AttemptOutcome::Succeeded, Some(Ok(d))) => {
                rec.digest = d;
                self.collect_pin(task, &result);
                self.complete(task, TaskStatus::Succeeded);
            }
            (AttemptOutcome::Succeeded, Some(Err(e))) => {
                // Its outputs could not be recorded (one missing, one a link out): it failed
                // after all, and what it wrote goes, as after a failed attempt (SPEC §8).
                let unrecorded =
                    matches!(e, TaskFailure::Cache(crate::cache::CacheError::Outputs(_)));
                if unrecorded && let Some(attempt) = rec.attempts.last_mut() {
                    // The attempt did not do what the task declares: it failed, in the
                    // report too. Not retried: its exit code, 0, is no failure to retry (§3).
                    attempt.outcome = AttemptOutcome::Failed;
                    attempt.error = Some(e.to_string());
                }
                if let (true, Some(before)) = (unrecorded, &result.before) {
                    let t = self.plan.task(task);
                    for path in before.delete_changed() {
                        tracing::info!(task = %t.name, path = %path.display(), "deleted output of failed task");
                    }
                }
                self.fail(task, e.to_string())
            }
            (AttemptOutcome::Succeeded, None) => {
                self.collect_pin(task, &result);
                self.complete(task, TaskStatus::Succeeded);
            }
            (AttemptOutcome::Cancelled, _) => {
                rec.error = result.error;
                self.complete(task, TaskStatus::Cancelled);
            }
            (AttemptOutcome::Failed | AttemptOutcome::TimedOut, _) => {
                self.after_failed_attempt(task, number, result)
            }
        }
    }

    /// A download the lockfile does not pin yet succeeded: keep its content's digest and
    /// size (hashed while streaming) for the lockfile.
    fn collect_pin(&mut self, task: usize, result: &crate::actions::AttemptResult) {
        if let Some(w) = result.download.as_ref().and_then(|d| d.written.as_ref())
            && crate::lockfile::standing::lockable(self.plan.task(task)).is_some()
        {
            self.new_pins.push(NewPin {
                task,
                sha256: w.digest,
                size: w.stat.size,
            });
        }
    }

    pub(super) fn after_failed_attempt(
        &mut self,
        task: usize,
        number: u32,
        result: crate::actions::AttemptResult,
    ) {
        let reason = result.error.clone().unwrap_or_else(|| "failed".into());
        let interrupted = self.interrupted.is_some();
        let policy = &self.plan.task(task).retry;
        let task_def = self.plan.task(task);
        let failure = retry::Failure {
            attempt: number,
            retryable: result.retryable,
            exit_code: result.exit_code,
            by_signal: task_def.kind() == crate::model::TaskKind::Command
                && result.exit_code.is_none()
                && result.outcome == crate::report::AttemptOutcome::Failed,
            retry_after: result.retry_after,
        };
        // Given up before the attempts ran out: the policy's reason is worth saying.
        let early = result.retryable && number < policy.max_attempts;
        let elapsed = self.recs[task]
            .started
            .map(|(_, t)| t.elapsed())
            .unwrap_or_default();
        match retry::decide(policy, &failure, elapsed, &mut self.rng) {
            retry::Decision::Retry { .. } if self.stopping => {
                // It would have been retried: the interrupt or fail-fast, not the task,
                // stopped it. No retry is announced, nor a wait claimed, for one not coming.
                let why = if interrupted {
                    "interrupted before a retry"
                } else {
                    super::stopping::STOPPED_BEFORE_RETRY
                };
                self.recs[task].error = Some(format!("{why} ({reason})"));
                self.complete(task, TaskStatus::Cancelled);
            }
            retry::Decision::Retry { next, wait } => {
                let rec = &mut self.recs[task];
                if let Some(a) = rec.attempts.last_mut() {
                    a.wait_ms = Some(millis(wait));
                }
                rec.next_attempt = next;
                rec.stage = Stage::RetryWait;
                self.sink.event(&Event::RetryScheduled {
                    name: rec.name.clone(),
                    failed_attempt: number,
                    reason,
                    wait,
                });
                self.active += 1;
                let tx = self.shared.done.clone();
                let timer = tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Done::RetryDue { task });
                });
                self.recs[task].retry_timer = Some(timer.abort_handle());
            }
            retry::Decision::GiveUp { why } => {
                let msg = match (number > 1, early) {
                    (true, true) => format!("{reason} (after {number} attempts; {why})"),
                    (false, true) => format!("{reason} (not retried: {why})"),
                    (true, false) => format!("{reason} (after {number} attempts)"),
                    (false, false) => reason,
                };
                self.fail(task, msg);
            }
        }
    }
}
