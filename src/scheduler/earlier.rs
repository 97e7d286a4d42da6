//! A run in phases (SPEC §9): a fan-out task whose items other tasks produce is expanded
//! once they have run, so `run` runs what it can with the task's stand-in parked, loads the
//! manifest again and runs the rest. [`Earlier`] carries one phase into the next: what ended
//! is not run again, is reported as it ended, and gives its digest to its dependents.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use tokio::time::Instant;

use super::signals::Signal;
use super::state::{Rec, Stage};
use super::{Loop, RunResult};
use crate::cache::Digest;
use crate::lockfile::standing::NewPin;
use crate::model::TaskKind;
use crate::plan::Plan;
use crate::report::{TaskReport, TaskStatus};

/// What the phases before this one of the same run left.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub(super) started: (SystemTime, Instant),
    /// Tasks that reached a final status, by name (a cancelled one may still run).
    pub(super) ended: HashMap<String, Ended>,
    pub(super) interrupted: Option<Signal>,
    pub(super) stopping: bool,
    pub(super) new_pins: Vec<NewPin>,
    /// Stand-ins whose instances could not be read, with why: they fail in the next phase,
    /// once their deps are done.
    pub(super) failed_expansions: Vec<(String, String)>,
}

/// A task as an earlier phase ended it.
#[derive(Debug, Clone)]
pub(super) struct Ended {
    pub(super) entry: TaskReport,
    pub(super) digest: Digest,
}

/// How a phase of the loop ended, beyond its report.
#[derive(Debug, Clone)]
pub(crate) struct PhaseEnd {
    /// Aligned with the report's tasks.
    pub(super) digests: Vec<Digest>,
    pub(super) interrupted: Option<Signal>,
    pub(super) stopping: bool,
    pub(super) started: (SystemTime, Instant),
}

impl Earlier {
    /// What `result`'s phase (which carried the phases before it) leaves for the next.
    pub fn after(result: &RunResult) -> Self {
        let end = &result.end;
        let ended = result
            .report
            .tasks
            .iter()
            .zip(&end.digests)
            .filter(|(t, _)| t.status != TaskStatus::Cancelled)
            .map(|(t, &digest)| {
                let ended = Ended {
                    entry: t.clone(),
                    digest,
                };
                (t.name.clone(), ended)
            })
            .collect();
        Self {
            started: end.started,
            ended,
            interrupted: end.interrupted,
            stopping: end.stopping,
            new_pins: result.new_pins.clone(),
            failed_expansions: Vec::new(),
        }
    }

    /// The tasks whose outputs are there: they succeeded or were restored.
    pub fn finished(&self) -> BTreeSet<String> {
        self.ended
            .iter()
            .filter(|(_, e)| matches!(e.entry.status, TaskStatus::Succeeded | TaskStatus::Cached))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The task `name` reached a final status in an earlier phase (a stand-in: it failed
    /// or was skipped, and is not expanded again).
    pub fn has_ended(&self, name: &str) -> bool {
        self.ended.contains_key(name)
    }

    /// No new task may start: the run was interrupted, or stopped after a failure.
    pub fn stopped(&self) -> bool {
        self.stopping
    }

    /// The stand-in `name` cannot be expanded (`why`): the next phase fails it.
    pub fn fail_expansion(&mut self, name: String, why: String) {
        if !self.failed_expansions.iter().any(|(n, _)| *n == name) {
            self.failed_expansions.push((name, why));
        }
    }
}

/// Marks the tasks `earlier` ended as done in `recs`; returns which (by index). A service
/// that a task still to run depends on is not: it starts again when needed.
pub(super) fn seed(plan: &Plan, earlier: &Earlier, recs: &mut [Rec]) -> Vec<bool> {
    let mut ended: Vec<Option<&Ended>> = vec![None; recs.len()];
    for &i in &plan.order {
        ended[i] = earlier.ended.get(plan.task(i).name.as_str());
    }
    let seeded: Vec<bool> = (0..recs.len())
        .map(|i| {
            ended[i].is_some()
                && (plan.task(i).kind() != TaskKind::Service
                    || plan.dependents[i]
                        .iter()
                        .all(|&d| !plan.selected[d] || ended[d].is_some()))
        })
        .collect();
    for (i, rec) in recs.iter_mut().enumerate() {
        let Some(ended) = ended[i].filter(|_| seeded[i]) else {
            continue;
        };
        rec.stage = Stage::Done;
        rec.status = Some(ended.entry.status);
        rec.digest = ended.digest;
        rec.key = ended.entry.cache_key.clone();
        rec.cache_source = ended.entry.cache_source;
        rec.notified = true;
        rec.entry = Some(Box::new(ended.entry.clone()));
    }
    seeded
}

/// The selected tasks that cannot run in this phase: stand-ins and what depends on them.
pub(super) fn parked(plan: &Plan) -> Vec<bool> {
    let mut parked = vec![false; plan.pipeline.tasks.len()];
    // Dependencies come first in `order`.
    for &i in &plan.order {
        parked[i] = plan.task(i).expands.is_some() || plan.deps[i].iter().any(|&d| parked[d]);
    }
    parked
}

impl Loop<'_> {
    /// A stand-in whose deps are done (`i` is one: true): it waits for the next phase,
    /// which expands it, or fails now when its expansion did.
    pub(super) fn stand_in_ready(&mut self, i: usize) -> bool {
        if self.plan.task(i).expands.is_none() {
            return false;
        }
        let name = &self.plan.task(i).name;
        if let Some(at) = self.failed_expansions.iter().position(|(n, _)| n == name) {
            let (_, why) = self.failed_expansions.swap_remove(at);
            self.fail(i, why);
        }
        true
    }

    /// What the earlier phases' failures mean now: what depends on a failed or skipped task
    /// is skipped.
    pub(super) fn carry_on(&mut self, earlier: &Earlier) {
        for i in self.plan.order.clone() {
            let rec = &self.recs[i];
            if rec.stage != Stage::Done || !earlier.ended.contains_key(&*rec.name) {
                continue;
            }
            let status = rec.status.unwrap_or(TaskStatus::Cancelled);
            if matches!(status, TaskStatus::Failed | TaskStatus::Skipped) {
                let why = format!("dependency `{}` {}", rec.name, status.as_str());
                for d in self.plan.dependents[i].clone() {
                    self.skip_downstream(d, &why);
                }
            }
        }
    }
}
