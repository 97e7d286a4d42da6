//! A run that stops (fail-fast after a task failed for good, or an interrupt) starts nothing
//! more, not even another attempt (SPEC §8); and since a task waiting to retry holds nothing
//! (SPEC §3), its wait is not sat out: it is cancelled at once.

use super::Loop;
use super::state::Stage;
use crate::report::TaskStatus;

impl Loop<'_> {
    /// The task failed for good: without `--keep-going` the run stops.
    pub(super) fn fail(&mut self, i: usize, error: String) {
        self.recs[i].error = Some(error);
        let stops = !self.keep_going && !self.stopping;
        // Before its failure settles what it leaves unneeded (a service only its skipped
        // dependents needed): that is cancelled by a run that stops.
        if stops {
            self.stopping = true;
        }
        self.complete(i, TaskStatus::Failed);
        if stops {
            self.cancel_retry_waits();
            self.release_all_unneeded_services();
        }
    }

    /// Why a task the stopped run never started is cancelled.
    pub(super) fn not_started_why(&self) -> String {
        match self.interrupted {
            Some(_) => "not started: the run was interrupted".to_string(),
            None => "not started: the run stopped after a failure (fail-fast)".to_string(),
        }
    }

    /// Cancels every task waiting to retry (the run stopped).
    pub(super) fn cancel_retry_waits(&mut self) {
        for i in self.plan.order.clone() {
            if self.recs[i].stage == Stage::RetryWait {
                self.cancel_retry_wait(i);
            }
        }
    }

    /// Cancels task `i`, waiting to retry: it ran, so it is not "not started"; and its last
    /// attempt's `wait_ms`, the wait before the next attempt (SPEC §6), goes back to null,
    /// as there is none.
    pub(super) fn cancel_retry_wait(&mut self, i: usize) {
        self.active -= 1;
        let why = match self.interrupted {
            Some(_) => "interrupted while waiting to retry",
            None => STOPPED_BEFORE_RETRY,
        };
        let rec = &mut self.recs[i];
        if let Some(timer) = rec.retry_timer.take() {
            timer.abort();
        }
        let last = rec.attempts.last_mut();
        let reason = last.as_ref().and_then(|a| a.error.clone());
        if let Some(a) = last {
            a.wait_ms = None;
        }
        rec.error = Some(match reason {
            Some(r) => format!("{why} ({r})"),
            None => why.to_string(),
        });
        self.complete(i, TaskStatus::Cancelled);
    }
}

/// Why a task that would have been retried was cancelled by fail-fast.
pub(super) const STOPPED_BEFORE_RETRY: &str =
    "the run stopped after a failure (fail-fast) before its next attempt";
