//! How a run ends: an interrupt, and the report once nothing runs any more.

use std::sync::Arc;
use std::time::SystemTime;

use super::signals::Signal;
use super::state::{Stage, millis};
use super::{Loop, RunResult};
use crate::actions::Stop;
use crate::events::Event;
use crate::exit_code;
use crate::report::{FORMAT_VERSION, RunReport, RunStatus, TaskStatus, rfc3339};

impl Loop<'_> {
    /// The first SIGINT/SIGTERM/SIGHUP stops the run (children get SIGTERM, waits end); a
    /// second one kills every child process group at once.
    pub(super) fn on_signal(&mut self, sig: Signal) {
        let name = sig.name();
        if self.interrupted.is_some() {
            let _ = self.stop_tx.send(Stop::Kill);
            self.sink.event(&Event::Interrupted {
                signal: name,
                forced: true,
            });
            return;
        }
        self.interrupted = Some(sig);
        self.stopping = true;
        let _ = self.stop_tx.send(Stop::Terminate);
        self.sink.event(&Event::Interrupted {
            signal: name,
            forced: false,
        });
        self.cancel_retry_waits();
        for i in self.plan.order.clone() {
            // A lookup a slow remote cache holds up: the run does not wait for its answer.
            if self.recs[i].lookup == super::state::LookupState::InFlight {
                self.active -= 1;
                self.recs[i].lookup = super::state::LookupState::Abandoned;
                self.recs[i].error = Some("interrupted during its cache lookup".into());
                self.complete(i, TaskStatus::Cancelled);
            }
        }
    }

    /// Everything not finished is cancelled; builds the report and tells the sinks.
    pub(super) fn finish(&mut self) -> RunResult {
        let why = self.not_started_why();
        // Parked for the next phase of the run: nothing to tell about them yet.
        let parked = (!self.stopping).then(|| super::earlier::parked(&self.plan));
        for i in self.plan.order.clone() {
            if self.recs[i].stage == Stage::Done {
                continue;
            }
            if parked.as_ref().is_some_and(|p| p[i]) {
                self.recs[i].error = Some("not started: waits for its items".into());
                continue;
            }
            // On standby for what is parked: the next phase settles it.
            if parked.is_some() && self.recs[i].is_standby() && self.serves_parked(i) {
                continue;
            }
            self.recs[i].error.get_or_insert_with(|| why.clone());
            self.complete(i, TaskStatus::Cancelled);
        }
        let tasks: Vec<_> = self
            .plan
            .order
            .iter()
            .map(|&i| match self.recs[i].entry.take() {
                Some(entry) => *entry,
                None => self.recs[i].report(&self.plan, i),
            })
            .collect();
        let summary = RunReport::summarize(&tasks);
        let (status, code) = match self.interrupted {
            Some(Signal::Int) => (RunStatus::Interrupted, exit_code::SIGINT),
            Some(Signal::Term) => (RunStatus::Interrupted, exit_code::SIGTERM),
            Some(Signal::Hup) => (RunStatus::Interrupted, exit_code::SIGHUP),
            None if summary.failed > 0 => (RunStatus::Failed, exit_code::TASK_FAILED),
            None => (RunStatus::Succeeded, exit_code::SUCCESS),
        };
        let finished = SystemTime::now();
        let p = &self.plan.pipeline;
        let report = Arc::new(RunReport {
            format_version: FORMAT_VERSION,
            run_id: self.run_id.clone(),
            pipeline: p.name.clone(),
            manifest: p.manifest_path.display().to_string(),
            started_at: rfc3339(self.started.0),
            finished_at: rfc3339(finished),
            duration_ms: millis(self.started.1.elapsed()),
            status,
            summary,
            tasks,
            concurrency: Some(self.concurrency),
            pools: p
                .pools
                .iter()
                .map(|(name, &size)| crate::report::PoolReport {
                    name: name.clone(),
                    size,
                })
                .collect(),
        });
        self.sink.event(&Event::RunFinished {
            report: report.clone(),
        });
        let end = super::earlier::PhaseEnd {
            digests: self
                .plan
                .order
                .iter()
                .map(|&i| self.recs[i].digest)
                .collect(),
            interrupted: self.interrupted,
            stopping: self.stopping,
            started: self.started,
        };
        RunResult {
            report,
            exit_code: code,
            new_pins: std::mem::take(&mut self.new_pins),
            end,
        }
    }
}
