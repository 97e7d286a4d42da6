//! Services in the run loop: started lazily, when a dependent that must run needs them;
//! stopped once no dependent is pending or running.
//!
//! A service whose deps are done goes on standby: its digest (its definition) is known, so its
//! dependents can ask the cache. Only a dependent that misses starts it; when every dependent
//! hits, the service never starts and is reported `cached` (SPEC §2).

use std::time::SystemTime;

use tokio::sync::oneshot;

use super::state::{Stage, millis};
use super::{Loop, worker};
use crate::cache::Produced;
use crate::events::Event;
use crate::model::TaskKind;
use crate::report::{AttemptOutcome, AttemptReport, TaskStatus, rfc3339};

impl Loop<'_> {
    /// The service's deps are done: its digest is its definition, so dependents may ask the
    /// cache now; the process starts only when one of them misses.
    pub(super) fn standby_service(&mut self, i: usize) {
        // Selected on its own (or nothing selected needs it): just run it. One that only
        // tasks parked for the next phase need waits on standby for them.
        if self.recs[i].open_dependents == 0 && !self.serves_parked(i) {
            return self.start_service(i);
        }
        let digests = self.dep_digests(i);
        match self
            .shared
            .cache
            .record_success(&self.plan, i, None, &digests, Produced::default())
        {
            Ok(d) => self.recs[i].digest = d,
            Err(e) => return self.fail(i, format!("cache: {e}")),
        }
        let rec = &mut self.recs[i];
        rec.service_mut().standby = true;
        rec.notified = true;
        rec.stage = Stage::Running;
        for d in self.plan.dependents[i].clone() {
            self.dep_finished_ok(d);
        }
    }

    /// True when every service `i` depends on is up.
    pub(super) fn services_ready(&self, i: usize) -> bool {
        self.plan.deps[i].iter().all(|&d| {
            self.plan.task(d).kind() != TaskKind::Service || self.recs[d].is_ready_service()
        })
    }

    /// Starts the standby services `i` depends on; true when all of them are ready.
    fn ensure_services(&mut self, i: usize) -> bool {
        for d in self.plan.deps[i].clone() {
            if self.recs[d].is_standby() {
                self.recs[d].service_mut().standby = false;
                self.start_service(d);
            }
        }
        self.services_ready(i)
    }

    /// A task missed the cache and needs services: start them, run it once they are up.
    /// The task's clock restarts when it runs: the services' start-up is theirs, not its
    /// (a 3 KiB download must not report the mirror's 180 ms start as its own time and rate).
    pub(super) fn on_miss_needing_services(&mut self, task: usize, key: Option<String>) {
        self.recs[task].key = key;
        self.recs[task].started = None;
        // A revalidating download looks up (and asks its origin) again once they are up.
        if let crate::model::Action::Download(d) = &self.plan.task(task).action
            && d.asks_origin_on_hit()
        {
            self.recs[task].looked_up = false;
        }
        self.recs[task].stage = Stage::WaitService;
        if !self.stopping && self.ensure_services(task) {
            self.resume_after_services(task);
        }
    }

    fn resume_after_services(&mut self, task: usize) {
        self.recs[task].stage = Stage::Ready;
        if self.plan.task(task).kind() == TaskKind::Service {
            self.start_service(task);
        } else {
            // It already started (and asked the cache): it goes first.
            self.enqueue(task, true);
        }
    }

    /// A standby service whose dependents are all done was never needed: see
    /// [`Self::settle_unneeded_service`].
    pub(super) fn settle_standby_service(&mut self, s: usize) {
        if self.recs[s].is_standby() {
            self.settle_unneeded_service(s);
        }
    }

    /// A service that never started, whose selected dependents are all done (none parked
    /// for the next phase of the run), was not needed. It is `cached` when no dependent
    /// failed, was skipped or cancelled (they were all hits, SPEC §2); else `cancelled` when
    /// the run stopped (SPEC §8), and under `--keep-going` `skipped`: the failure that kept
    /// its dependents from running is why nothing needed it.
    fn settle_unneeded_service(&mut self, s: usize) {
        let rec = &self.recs[s];
        if rec.open_dependents > 0 || rec.stage == Stage::Done || self.serves_parked(s) {
            return;
        }
        let mut dependents = self.plan.dependents[s]
            .iter()
            .filter(|&&d| self.plan.selected[d])
            .peekable();
        // Selected on its own: it is run for itself.
        if dependents.peek().is_none() {
            return;
        }
        let did_not_run = dependents.find(|&&d| {
            matches!(
                self.recs[d].status,
                Some(TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled)
            )
        });
        let (status, error) = match did_not_run {
            None => (TaskStatus::Cached, None),
            Some(_) if self.stopping => (TaskStatus::Cancelled, Some(self.not_started_why())),
            Some(&d) => {
                let dep = &self.recs[d];
                let what = dep.status.map_or("cancelled", |s| s.as_str());
                let why = format!(
                    "skipped: not started, since no task that needs it ran (`{}` {what})",
                    dep.name
                );
                (TaskStatus::Skipped, Some(why))
            }
        };
        let rec = &mut self.recs[s];
        rec.service_mut().standby = false;
        rec.error = error;
        self.complete(s, status);
    }

    /// Starts the service process (after the services it depends on are up).
    pub(super) fn start_service(&mut self, i: usize) {
        // Selected without any task that needs it (`taskrun M svc`): it is run for itself.
        let on_its_own = !self.plan.dependents[i]
            .iter()
            .any(|&d| self.plan.selected[d]);
        let needed = self.recs[i].open_dependents > 0 || on_its_own;
        if !needed {
            // Every dependent already reached a final status: nothing needs it.
            self.recs[i].stage = Stage::Waiting;
            return self.settle_unneeded_service(i);
        }
        if !self.ensure_services(i) {
            self.recs[i].stage = Stage::WaitService;
            return;
        }
        let (tx, rx) = oneshot::channel();
        let rec = &mut self.recs[i];
        rec.stage = Stage::Running;
        rec.service_mut().release = Some(tx);
        rec.mark_started();
        rec.executed_on = Some(crate::model::ExecutedOn::Local);
        self.sink.event(&Event::TaskStarted {
            name: rec.name.clone(),
            kind: rec.kind,
        });
        self.active += 1;
        tokio::spawn(worker::run_service(self.shared.clone(), i, rx));
    }

    pub(super) fn on_service_ready(&mut self, task: usize) {
        let digests = self.dep_digests(task);
        let digest =
            self.shared
                .cache
                .record_success(&self.plan, task, None, &digests, Produced::default());
        let rec = &mut self.recs[task];
        let service = rec.service_mut();
        service.ready = true;
        service.ready_at = Some(SystemTime::now());
        if let Ok(d) = digest {
            rec.digest = d;
        }
        let notified = std::mem::replace(&mut rec.notified, true);
        self.sink.event(&Event::ServiceReady {
            name: rec.name.clone(),
        });
        let dependents = self.plan.dependents[task].clone();
        for &d in &dependents {
            if !notified {
                self.dep_finished_ok(d);
            }
            if self.recs[d].stage == Stage::WaitService && !self.stopping && self.ensure_services(d)
            {
                self.resume_after_services(d);
            }
        }
        self.release_unneeded_service(task);
    }

    pub(super) fn on_service_ended(
        &mut self,
        task: usize,
        end: crate::actions::service::ServiceEnd,
        started: SystemTime,
        finished: SystemTime,
    ) {
        use crate::actions::service::ServiceEnd;
        let ready = self.recs[task].is_ready_service();
        // Stopped before it was ready: the run stopped, and nothing it would serve may start.
        let unready = match self.interrupted {
            Some(_) => "interrupted before it was ready",
            None => "the run stopped after a failure (fail-fast) before it was ready",
        };
        let (outcome, error, exit_code) = match &end {
            ServiceEnd::Stopped if ready => (AttemptOutcome::Succeeded, None, None),
            ServiceEnd::Stopped => (AttemptOutcome::Cancelled, Some(unready.to_string()), None),
            ServiceEnd::Failed(e, code) => (AttemptOutcome::Failed, Some(e.clone()), *code),
        };
        let rec = &mut self.recs[task];
        rec.service_mut().release = None;
        // The task's exit code is its last attempt's, as for a command.
        rec.exit_code = exit_code;
        rec.attempts.push(AttemptReport {
            number: 1,
            started_at: rfc3339(started),
            finished_at: rfc3339(finished),
            duration_ms: millis(finished.duration_since(started).unwrap_or_default()),
            outcome,
            exit_code,
            http_status: None,
            url: None,
            error: error.clone(),
            wait_ms: None,
        });
        match outcome {
            AttemptOutcome::Succeeded => self.complete(task, TaskStatus::Succeeded),
            AttemptOutcome::Cancelled => {
                rec.error = error;
                self.complete(task, TaskStatus::Cancelled)
            }
            _ => {
                let msg = error.unwrap_or_default();
                self.fail(task, format!("service {msg}"));
            }
        }
    }

    /// Stops a running service once no dependent is pending or running, and one still
    /// starting once the run stops (no dependent of it can have started; none will now).
    pub(super) fn release_unneeded_service(&mut self, s: usize) {
        let Some(service) = self.recs[s].service.as_ref() else {
            return;
        };
        if service.release.is_none() {
            return;
        }
        let needed = if !service.ready {
            !self.stopping
        } else {
            self.plan.dependents[s].iter().any(|&d| {
                self.plan.selected[d]
                    && !self.parked[d]
                    && match self.recs[d].stage {
                        Stage::Running | Stage::RetryWait | Stage::WaitService => true,
                        Stage::Waiting | Stage::Ready => !self.stopping,
                        Stage::Done => false,
                    }
            })
        };
        if !needed && let Some(tx) = self.recs[s].service_mut().release.take() {
            let _ = tx.send(());
        }
    }

    /// Some task parked for the next phase of the run depends on service `s`.
    pub(super) fn serves_parked(&self, s: usize) -> bool {
        self.plan.dependents[s]
            .iter()
            .any(|&d| self.plan.selected[d] && self.parked[d])
    }

    pub(super) fn release_all_unneeded_services(&mut self) {
        for i in self.plan.order.clone() {
            if self.recs[i]
                .service
                .as_ref()
                .is_some_and(|x| x.release.is_some())
            {
                self.release_unneeded_service(i);
            }
        }
    }
}
