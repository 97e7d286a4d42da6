//! The run loop: one task owns the run state (ready queue, slots, statuses) and `select!`s
//! over worker reports and signals. Workers only run one job and report back; nothing else
//! mutates the state, so there are no locks and no per-node waiters.
//!
//! Groups complete inside the loop (no process, no thread), services take no slot, and a
//! task waiting between retries holds nothing.

mod attempts;
mod earlier;
mod ending;
mod entry;
mod failure;
mod io;
mod lanes;
mod lookup;
pub mod pools;
mod remote;
mod remote_job;
pub mod retry;
mod services;
mod signals;
mod state;
mod stopping;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};

use crate::actions::{Progress, Stop};
use crate::cache::{Digest, Produced};
use crate::events::{Event, Sink};
use crate::lockfile::standing::NewPin;
use crate::model::{Action, ExecutedOn};
use crate::plan::Plan;
use crate::report::TaskStatus;
use pools::Slots;
use signals::Signals;
use state::{Held, Rec, Stage};
use worker::{Done, Job, Shared};

pub use earlier::Earlier;
pub use entry::{finish_then, run, run_phase, run_then};
pub use io::{RunOptions, RunResult};
pub use retry::retry_wait_ms;
pub use signals::{Signal, wait_until};
pub use worker::log_file_name;

struct Loop<'a> {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    recs: Vec<Rec>,
    ready: VecDeque<usize>,
    instant: Vec<usize>,
    /// Ready tasks whose cache lookup has not been sent yet.
    to_lookup: Vec<usize>,
    /// Started on the first lookup (a run of groups needs none).
    lookups: Option<lookup::LookupPool>,
    /// Where download jobs run; started with the first download.
    lanes: Option<lanes::Lanes>,
    /// Remote execution, when some selected task is placed on the cluster.
    remote: Option<remote::Remote>,
    slots: Slots,
    active: usize,
    stopping: bool,
    interrupted: Option<Signal>,
    keep_going: bool,
    replay: bool,
    run_id: String,
    /// The running-task limit, for the report.
    concurrency: usize,
    started: (SystemTime, tokio::time::Instant),
    sink: &'a mut dyn Sink,
    stop_tx: watch::Sender<Stop>,
    rng: StdRng,
    /// See [`RunResult::new_pins`].
    new_pins: Vec<NewPin>,
    /// The phases before this one, whose failures this one carries on.
    earlier: Option<Arc<earlier::Earlier>>,
    /// Tasks that cannot run in this phase (see [`earlier::parked`]): they need no service.
    parked: Vec<bool>,
    /// Stand-ins that fail once ready, with why (see [`Earlier::fail_expansion`]).
    failed_expansions: Vec<(String, String)>,
}

impl<'a> Loop<'a> {
    fn new(
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        opts: &RunOptions,
        sink: &'a mut dyn Sink,
        stop_tx: watch::Sender<Stop>,
    ) -> Self {
        let p = &plan.pipeline;
        let concurrency = opts.jobs.unwrap_or(p.concurrency).max(1);
        let slots = Slots::new(concurrency, &p.pools);
        let mut recs: Vec<Rec> = p
            .tasks
            .values()
            .map(|t| Rec::new(&t.name, t.kind(), slots.need(&t.uses)))
            .collect();
        let seeded = opts
            .earlier
            .as_deref()
            .map(|e| earlier::seed(&plan, e, &mut recs))
            .unwrap_or_default();
        let is_seeded = |i: usize| seeded.get(i).copied().unwrap_or(false);
        let parked = earlier::parked(&plan);
        for &i in &plan.order {
            recs[i].waiting_on = plan.deps[i]
                .iter()
                .filter(|&&d| plan.selected[d] && !(is_seeded(d) && recs[d].succeeded()))
                .count();
            // What cannot run in this phase does not keep a service up.
            recs[i].open_dependents = plan.dependents[i]
                .iter()
                .filter(|&&d| plan.selected[d] && !is_seeded(d) && !parked[d])
                .count();
        }
        let earlier = opts.earlier.as_deref();
        Self {
            keep_going: opts.keep_going || !p.fail_fast,
            plan,
            shared,
            recs,
            ready: VecDeque::new(),
            instant: Vec::new(),
            to_lookup: Vec::new(),
            lookups: None,
            lanes: None,
            remote: None,
            slots,
            active: 0,
            stopping: earlier.is_some_and(|e| e.stopping),
            interrupted: earlier.and_then(|e| e.interrupted),
            replay: opts.replay_cached_output,
            run_id: opts.run_id.clone(),
            concurrency,
            started: earlier.map_or_else(
                || (SystemTime::now(), tokio::time::Instant::now()),
                |e| e.started,
            ),
            sink,
            stop_tx,
            rng: StdRng::from_os_rng(),
            new_pins: earlier.map(|e| e.new_pins.clone()).unwrap_or_default(),
            failed_expansions: earlier
                .map(|e| e.failed_expansions.clone())
                .unwrap_or_default(),
            earlier: opts.earlier.clone(),
            parked,
        }
    }

    async fn run(
        &mut self,
        mut progress: mpsc::Receiver<(usize, Progress)>,
        mut done: mpsc::UnboundedReceiver<Done>,
        handle_signals: bool,
        interrupted_before: Option<Signal>,
    ) -> RunResult {
        let total = self.plan.order.len();
        // A later phase of the same run only makes it longer.
        self.sink.event(&match self.earlier {
            Some(_) => Event::Expanded { total },
            None => Event::RunStarted {
                run_id: self.run_id.clone(),
                pipeline: self.plan.pipeline.name.clone(),
                total,
            },
        });
        let mut signals = Signals::new(handle_signals);
        if let Some(sig) = interrupted_before {
            self.on_signal(sig);
        }
        if let Some(e) = self.earlier.take() {
            self.carry_on(&e);
        }
        let order = self.plan.order.clone();
        for i in order {
            if self.recs[i].waiting_on == 0 {
                self.make_ready(i);
            }
        }
        self.schedule();
        while self.active > 0 {
            tokio::select! {
                biased;
                Some((task, p)) = progress.recv() => self.on_progress(task, p),
                Some(d) = done.recv() => self.on_done(d),
                Some(sig) = signals.next() => self.on_signal(sig),
            }
            self.schedule();
        }
        // Output sent just before the last report may still be queued.
        while let Ok((task, p)) = progress.try_recv() {
            self.on_progress(task, p);
        }
        self.finish()
    }

    fn make_ready(&mut self, i: usize) {
        if self.recs[i].stage != Stage::Waiting || self.stand_in_ready(i) {
            return;
        }
        let services_ready = self.services_ready(i);
        let rec = &mut self.recs[i];
        rec.stage = Stage::Ready;
        match &self.plan.task(i).action {
            Action::Group | Action::Service(_) => self.instant.push(i),
            // Revalidation is an async request: that lookup stays with the job.
            Action::Download(d) if d.asks_origin_on_hit() => self.enqueue(i, false),
            // Nothing to look up or expand: straight to the slots (unless a service it needs
            // is on standby: the lookup path starts it).
            _ if !self.shared.cache.can_hit()
                && self.plan.task(i).inputs.is_empty()
                && services_ready =>
            {
                rec.looked_up = true;
                self.enqueue(i, false);
            }
            // Never a hit, and its key is computation only: the job looks it up inline.
            _ if !self.shared.cache.lookup_needs_io(self.plan.task(i)) => self.enqueue(i, false),
            _ => self.to_lookup.push(i),
        }
    }

    /// Starts everything that may start now.
    fn schedule(&mut self) {
        if self.stopping {
            return;
        }
        while let Some(i) = self.instant.pop() {
            if self.recs[i].stage != Stage::Ready {
                continue;
            }
            match self.plan.task(i).action {
                Action::Service(_) => self.standby_service(i),
                _ => self.complete_group(i),
            }
            if self.stopping {
                return;
            }
        }
        self.dispatch_lookups();
        self.dispatch_remote();
        if self.stopping || self.slots.saturated() {
            return;
        }
        let mut idx = 0;
        while idx < self.ready.len() && !self.slots.saturated() {
            let i = self.ready[idx];
            if self.recs[i].stage != Stage::Ready {
                self.ready.remove(idx);
                continue;
            }
            if self.slots.try_take(&self.recs[i].need) {
                self.ready.remove(idx);
                self.start_job(i);
            } else {
                idx += 1;
            }
        }
    }

    fn dep_digests(&self, i: usize) -> Vec<Digest> {
        self.plan.deps[i]
            .iter()
            .map(|&d| self.recs[d].digest)
            .collect()
    }

    /// Marks task `i` running, holding `held`, and describes the job that runs it (locally
    /// or on the remote executor).
    pub(super) fn begin_job(&mut self, i: usize, held: Held) -> Job {
        let needs_services = !self.services_ready(i);
        let dep_digests = self.dep_digests(i);
        let rec = &mut self.recs[i];
        rec.held = held;
        rec.stage = Stage::Running;
        rec.mark_started();
        let lookup = !std::mem::replace(&mut rec.looked_up, true);
        self.active += 1;
        Job {
            task: i,
            attempt: rec.next_attempt,
            lookup,
            needs_services,
            key: rec.key.clone(),
            dep_digests,
        }
    }

    fn start_job(&mut self, i: usize) {
        // "started" is announced by the worker once an attempt really begins (after a cache
        // miss), so a hit shows as `cached` alone.
        let job = self.begin_job(i, Held::Slots);
        let work = worker::run_job(self.shared.clone(), job);
        if matches!(self.plan.task(i).action, Action::Download(_)) {
            self.lanes
                .get_or_insert_with(|| lanes::Lanes::start(lanes::count()))
                .spawn(work);
        } else {
            tokio::spawn(work);
        }
    }

    /// An attempt is about to run: the first one announces the task.
    fn on_attempt_started(&mut self, i: usize, number: u32, remote: bool) {
        let rec = &mut self.recs[i];
        rec.executed_on = Some(if remote {
            ExecutedOn::Remote
        } else {
            ExecutedOn::Local
        });
        let (name, kind) = (rec.name.clone(), rec.kind);
        if !std::mem::replace(&mut rec.announced, true) {
            self.sink.event(&Event::TaskStarted {
                name: name.clone(),
                kind,
            });
        }
        self.sink.event(&Event::AttemptStarted { name, number });
    }

    fn complete_group(&mut self, i: usize) {
        let deps = &self.plan.deps[i];
        let all_cached = !deps.is_empty()
            && deps
                .iter()
                .all(|&d| self.recs[d].status == Some(TaskStatus::Cached));
        // Digesting the deps' digests is pure computation: no need for a blocking thread.
        let digests = self.dep_digests(i);
        match self
            .shared
            .cache
            .record_success(&self.plan, i, None, &digests, Produced::default())
        {
            Ok(d) => {
                let rec = &mut self.recs[i];
                rec.mark_started();
                rec.digest = d;
                let status = if all_cached {
                    TaskStatus::Cached
                } else {
                    rec.executed_on = Some(ExecutedOn::Local);
                    TaskStatus::Succeeded
                };
                self.complete(i, status);
            }
            Err(e) => self.fail(i, format!("cache: {e}")),
        }
    }

    fn on_progress(&mut self, task: usize, p: Progress) {
        let name = self.recs[task].name.clone();
        match p {
            Progress::Line { stream, line } => {
                let rec = &mut self.recs[task];
                rec.push_line(&line);
                let remote = rec.executed_on == Some(ExecutedOn::Remote);
                self.sink.event(&Event::OutputLine {
                    name,
                    stream,
                    line,
                    remote,
                });
            }
            Progress::Started { attempt, remote } => {
                self.on_attempt_started(task, attempt, remote);
            }
            Progress::Download { bytes, total } => {
                self.sink
                    .event(&Event::DownloadProgress { name, bytes, total });
            }
        }
    }

    fn on_done(&mut self, done: Done) {
        if let Some(task) = done.looked_up_task() {
            let rec = &mut self.recs[task];
            match std::mem::replace(&mut rec.lookup, state::LookupState::Idle) {
                // Cancelled by an interrupt while the cache was slow to answer: counted then.
                state::LookupState::Abandoned => return,
                state::LookupState::InFlight | state::LookupState::Idle => {}
            }
        }
        match done {
            Done::Batch(all) => {
                for d in all {
                    self.on_done(d);
                }
            }
            Done::Looked { task, key } => {
                self.active -= 1;
                self.on_looked(task, key);
            }
            Done::Miss { task, key } => {
                self.active -= 1;
                self.release_slots(task);
                self.on_miss_needing_services(task, key);
            }
            Done::Failed { task, error } => {
                self.active -= 1;
                self.release_slots(task);
                // Announced as a remote attempt, then failed before any command ran (a
                // cluster's cached result that cannot be recorded): it ran nowhere.
                let rec = &mut self.recs[task];
                if !rec.ran && rec.executed_on == Some(ExecutedOn::Remote) {
                    rec.executed_on = None;
                }
                self.fail(task, error.to_string());
            }
            Done::Hit {
                task,
                key,
                source,
                digest,
                output,
            } => {
                self.active -= 1;
                self.release_slots(task);
                let name = self.recs[task].name.clone();
                self.sink.event(&Event::CacheHit {
                    name: name.clone(),
                    source,
                });
                if self.replay
                    && let Some(out) = output
                {
                    for line in String::from_utf8_lossy(&out).lines() {
                        self.sink.event(&Event::OutputLine {
                            name: name.clone(),
                            stream: crate::events::Stream::Stdout,
                            line: line.to_string(),
                            remote: false,
                        });
                    }
                }
                let rec = &mut self.recs[task];
                rec.key = Some(key);
                rec.cache_source = Some(source);
                rec.digest = digest;
                // A remote ActionCache hit was announced as a remote attempt; nothing ran.
                rec.executed_on = None;
                self.complete(task, TaskStatus::Cached);
            }
            Done::Attempt {
                task,
                key,
                started,
                finished,
                result,
                digest,
            } => {
                self.active -= 1;
                self.release_slots(task);
                self.on_attempt(task, key, (started, finished), result, digest);
            }
            Done::RetryDue { task } => {
                if self.recs[task].stage != Stage::RetryWait {
                    // Cancelled during its wait: the timer's late word.
                } else if self.stopping {
                    // A run that stops cancels its waits at once; this is only a safety net.
                    self.cancel_retry_wait(task);
                } else {
                    self.active -= 1;
                    self.recs[task].stage = Stage::Ready;
                    self.recs[task].retry_timer = None;
                    // Retries go first: the task already started.
                    self.enqueue(task, true);
                }
            }
            Done::RemoteUnreachable { task, key, error } => {
                self.active -= 1;
                self.release_slots(task);
                self.on_remote_unreachable(task, key, error);
            }
            Done::ServiceReady { task } => self.on_service_ready(task),
            Done::ServiceEnded {
                task,
                end,
                started,
                finished,
            } => {
                self.active -= 1;
                self.on_service_ended(task, end, started, finished);
            }
        }
    }

    fn dep_finished_ok(&mut self, d: usize) {
        if !self.plan.selected[d] {
            return;
        }
        let rec = &mut self.recs[d];
        rec.waiting_on = rec.waiting_on.saturating_sub(1);
        if rec.waiting_on == 0 {
            self.make_ready(d);
        }
    }

    /// Records a final status and lets the graph move on.
    fn complete(&mut self, i: usize, status: TaskStatus) {
        let rec = &mut self.recs[i];
        if rec.stage == Stage::Done {
            return;
        }
        let notified = std::mem::replace(&mut rec.notified, true);
        rec.stage = Stage::Done;
        rec.status = Some(status);
        rec.finished = Some((SystemTime::now(), tokio::time::Instant::now()));
        let finished = Event::TaskFinished {
            task: Box::new(rec.report(&self.plan, i)),
            last_lines: rec.last_lines.iter().cloned().collect(),
        };
        self.sink.event(&finished);
        if let Event::TaskFinished { task, .. } = finished {
            rec.entry = Some(task);
        }
        let dependents = self.plan.dependents[i].clone();
        match status {
            TaskStatus::Succeeded | TaskStatus::Cached => {
                if !notified {
                    for d in dependents {
                        self.dep_finished_ok(d);
                    }
                }
            }
            TaskStatus::Failed | TaskStatus::Skipped => {
                let why = format!("dependency `{}` {}", self.recs[i].name, status.as_str());
                for d in dependents {
                    self.skip_downstream(d, &why);
                }
            }
            TaskStatus::Cancelled => {}
        }
        for d in self.plan.deps[i].clone() {
            if self.plan.task(d).kind() == crate::model::TaskKind::Service {
                let rec = &mut self.recs[d];
                rec.open_dependents = rec.open_dependents.saturating_sub(1);
                self.release_unneeded_service(d);
                self.settle_standby_service(d);
            }
        }
    }

    fn skip_downstream(&mut self, i: usize, why: &str) {
        if !self.plan.selected[i] {
            return;
        }
        if matches!(
            self.recs[i].stage,
            Stage::Waiting | Stage::Ready | Stage::WaitService
        ) {
            self.recs[i].error = Some(format!("skipped: {why}"));
            self.complete(i, TaskStatus::Skipped);
        }
    }
}

#[cfg(test)]
mod tests;
