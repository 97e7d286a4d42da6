//! `run` in phases (SPEC §9): a fan-out task whose items other tasks produce stands as
//! `NAME[*]` until they have run. Each phase runs what it can with the stand-ins parked;
//! then the manifest is loaded again with the finished tasks known, which expands every
//! stand-in whose producers all finished, and the next phase runs the instances. What ended
//! earlier is carried over ([`Earlier`]), so nothing runs twice and the report, the summary
//! and the lockfile cover the whole run.

use std::collections::BTreeSet;

use crate::cli::Selection;
use crate::commands::{Error, load_plan_after};
use crate::events::{Event, Sink};
use crate::model::TaskKind;
use crate::plan::Plan;
use crate::scheduler::Earlier;

/// Phases of one run at most (a chain of fan-outs each over the last one's outputs).
pub const MAX_PHASES: usize = 8;

/// True when some selected task of `plan` waits to be expanded.
pub fn has_stand_ins(plan: &Plan) -> bool {
    plan.order.iter().any(|&i| plan.task(i).expands.is_some())
}

/// What follows a phase that left `earlier`.
pub enum Next {
    /// Nothing more can run: the phase's report is the run's.
    Done,
    /// The plan of the next phase, with some stand-ins expanded; those in `invalid` are not:
    /// their own items are invalid (each with its error), and they fail.
    Phase {
        plan: Box<Plan>,
        invalid: Vec<(String, Error)>,
    },
    /// The manifest, loaded again, is invalid now that the items exist, and not through the
    /// items of one stand-in: `error` says why; the stand-ins that were due (by name) fail.
    Invalid { error: Error, due: Vec<String> },
    /// Loaded again, the stand-ins that were due are still stand-ins: they fail (they would
    /// wait forever).
    Stuck(Vec<String>),
}

/// Loads the next phase's plan when a selected stand-in's producers have all finished and
/// the run goes on (not interrupted, not stopped by a failure).
pub fn next(plan: &Plan, earlier: &Earlier, selection: &Selection) -> Next {
    if earlier.stopped() {
        return Next::Done;
    }
    let finished = earlier.finished();
    let due: Vec<String> = plan
        .order
        .iter()
        .filter(|&&i| plan.task(i).expands.is_some() && !earlier.has_ended(&plan.task(i).name))
        .filter(|&&i| {
            // A service it needs is started for its instances (it may be on standby now).
            plan.deps[i].iter().all(|&d| {
                let dep = plan.task(d);
                finished.contains(dep.name.as_str()) || dep.kind() == TaskKind::Service
            })
        })
        .map(|&i| plan.task(i).name.clone())
        .collect();
    if due.is_empty() {
        return Next::Done;
    }
    // Stand-ins that failed in an earlier phase stay stand-ins.
    let held: BTreeSet<String> = plan
        .order
        .iter()
        .filter_map(|&i| plan.task(i).expands.as_ref().map(|e| (i, e)))
        .filter(|(i, _)| earlier.has_ended(&plan.task(*i).name))
        .map(|(_, e)| e.task.clone())
        .collect();
    let kept = selected(plan);
    let load = |held: BTreeSet<String>, remember| {
        let (manifest, vars, targets) = (&selection.manifest, &selection.vars, &selection.targets);
        load_plan_after(
            manifest,
            vars,
            targets,
            &kept,
            finished.clone(),
            held,
            remember,
        )
    };
    let (next, invalid) = match load(held.clone(), true) {
        Ok(next) => (next, Vec::new()),
        Err(error) => match blame(plan, &due, &held, &load) {
            Some((next, invalid)) => (next, invalid),
            None => return Next::Invalid { error, due },
        },
    };
    if due
        .iter()
        .all(|d| next.pipeline.tasks.contains_key(d.as_str()))
        && invalid.is_empty()
    {
        return Next::Stuck(due);
    }
    Next::Phase {
        plan: Box::new(next),
        invalid,
    }
}

/// The load of the next phase failed: finds the stand-ins of `due` whose own items are
/// invalid (each loaded with the others held back), each with its own error, and loads the
/// phase without them. `None` when the failure is not theirs (none fails alone, or the load
/// fails with all of them held back).
fn blame(
    plan: &Plan,
    due: &[String],
    held: &BTreeSet<String>,
    load: &dyn Fn(BTreeSet<String>, bool) -> Result<Plan, Error>,
) -> Option<(Plan, Vec<(String, Error)>)> {
    let declared = |name: &str| {
        let task = plan.pipeline.tasks.get(name)?;
        task.expands.as_ref().map(|e| e.task.clone())
    };
    let mut invalid = Vec::new();
    let mut bad = held.clone();
    for d in due {
        let others = due.iter().filter(|o| *o != d).filter_map(|o| declared(o));
        if let Err(e) = load(held.iter().cloned().chain(others).collect(), false) {
            bad.extend(declared(d));
            invalid.push((d.clone(), e));
        }
    }
    if invalid.is_empty() {
        return None;
    }
    load(bad, false).ok().map(|next| (next, invalid))
}

/// `plan` with every stand-in expanded from its items as they are on disk now, as if its
/// producers had just run: for the commands that read without running (`explain`, `lock`).
/// An error when some items cannot be read (their producers have not run here yet).
pub fn as_now(mut plan: Plan, selection: &Selection) -> Result<Plan, Error> {
    for _ in 0..MAX_PHASES {
        if !has_stand_ins(&plan) {
            break;
        }
        let all = plan.pipeline.tasks.keys().cloned().collect();
        let next = load_plan_after(
            &selection.manifest,
            &selection.vars,
            &selection.targets,
            &selected(&plan),
            all,
            BTreeSet::new(),
            false,
        )?;
        // Nothing more expanded (a stand-in that needs itself): as far as it goes.
        if next.pipeline.tasks.keys().eq(plan.pipeline.tasks.keys()) {
            break;
        }
        plan = next;
    }
    Ok(plan)
}

/// `plan`'s view of the stand-ins a run would expand at once: those whose producers are all
/// predicted to stay as they are on disk (`settled`: a hit with nothing to restore), so their
/// items are the ones there now. `None` when no more expands, or when the items do not load
/// (the run fails that stand-in when it expands it; the plan keeps it).
pub fn as_settled(plan: &Plan, settled: BTreeSet<String>, selection: &Selection) -> Option<Plan> {
    if settled.is_empty() {
        return None;
    }
    let next = load_plan_after(
        &selection.manifest,
        &selection.vars,
        &selection.targets,
        &selected(plan),
        settled,
        BTreeSet::new(),
        false,
    )
    .ok()?;
    let expanded = !next.pipeline.tasks.keys().eq(plan.pipeline.tasks.keys());
    expanded.then_some(next)
}

/// The selected tasks of `plan` other than stand-ins (a stand-in's name would select every
/// instance of its task, where a target may have named one).
fn selected(plan: &Plan) -> Vec<String> {
    let tasks = plan.order.iter().map(|&i| plan.task(i));
    tasks
        .filter(|t| t.expands.is_none())
        .map(|t| t.name.clone())
        .collect()
}

/// The first line of `error`'s message, for the report entry of a stand-in it fails (the
/// whole message is printed above).
pub fn first_line(error: &Error) -> String {
    let text = error.to_string();
    text.lines()
        .map(|l| l.trim().trim_start_matches('×').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("invalid manifest")
        .trim_start_matches("error: ")
        .trim_end_matches(':')
        .to_string()
}

/// The stand-ins of `plan` that `next` expands.
pub fn expanded(plan: &Plan, next: &Plan) -> Vec<String> {
    plan.order
        .iter()
        .map(|&i| plan.task(i))
        .filter(|t| t.expands.is_some() && !next.pipeline.tasks.contains_key(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect()
}

/// Passes a phase's events on, holding back its `RunFinished` until the command knows
/// whether the phase was the run's last.
pub struct HoldFinish<'s> {
    sink: &'s mut dyn Sink,
    held: Option<Event>,
}

impl<'s> HoldFinish<'s> {
    /// Wraps `sink` for one phase.
    pub fn new(sink: &'s mut dyn Sink) -> Self {
        Self { sink, held: None }
    }

    /// The phase was the last: its `RunFinished` goes out (the summary is printed).
    pub fn release(mut self) {
        if let Some(e) = self.held.take() {
            self.sink.event(&e);
        }
    }
}

impl Sink for HoldFinish<'_> {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunFinished { .. } => self.held = Some(event.clone()),
            _ => self.sink.event(event),
        }
    }

    fn wants_download_progress(&self) -> bool {
        self.sink.wants_download_progress()
    }
}
