//! `taskrun plan` and `taskrun run --dry-run`: what would run and why. Runs nothing, opens no
//! connection, writes no file.

use crate::cli::{PlanArgs, PlanFormat, RemoteExec, Selection};
use crate::plan::Plan;
use crate::plan::placement::place;
use crate::plan::predict::Prediction;
use crate::plan::render::{PlanView, render};

/// How the plan is shown and predicted.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// Output format.
    pub format: PlanFormat,
    /// Text: every instance of a fan-out task instead of one summary per fan-out task.
    pub expand: bool,
    /// Predict as if run with --force.
    pub force: bool,
    /// Predict as if run with --no-cache.
    pub no_cache: bool,
    /// Exit 2 unless the lockfile pins every selected download.
    pub locked: bool,
    /// `--remote-exec on|off`.
    pub remote_exec: Option<RemoteExec>,
    /// `-j N` of a dry run: the concurrency the plan shows.
    pub jobs: Option<u32>,
    /// `-k` of a dry run: the plan shows fail-fast off.
    pub keep_going: bool,
}

/// `taskrun plan`.
pub fn run(args: PlanArgs) -> Result<u8, super::Error> {
    let view = View {
        format: args.format,
        expand: args.expand,
        force: args.force,
        no_cache: args.no_cache,
        locked: args.locked,
        remote_exec: args.remote_exec,
        jobs: None,
        keep_going: false,
    };
    print_plan(&args.selection, view)
}

/// Loads, plans (with the lockfile's pins), predicts the cache and prints the plan.
pub fn print_plan(sel: &Selection, view: View) -> Result<u8, super::Error> {
    let mut plan = super::load_plan(&sel.manifest, &sel.vars, &sel.targets)?;
    // What the run with these options would do (`taskrun M -n -j 4 -k`).
    if let Some(jobs) = view.jobs {
        plan.pipeline.concurrency = jobs as usize;
    }
    plan.pipeline.fail_fast &= !view.keep_going;
    let off = super::remote_exec_off(&plan.pipeline, view.remote_exec)?;
    let (_, unpinned) = super::apply_lockfile(&mut plan, &|_| false)?;
    if view.locked {
        super::refuse_unlocked(&plan, &unpinned, &sel.vars)?;
    }
    let predictions = predict(&plan, view.force, view.no_cache);
    let placements = place(&plan, off);
    let text = render(
        &plan,
        &sel.targets,
        &predictions,
        &placements,
        PlanView {
            format: view.format,
            expand: view.expand,
        },
    );
    // The process ends next: freeing every task one by one is time a large plan need not pay.
    std::mem::forget(plan);
    Ok(super::print_stdout(&text))
}

/// Reads the cache (never writes it) to predict hit / miss for each task.
fn predict(plan: &Plan, force: bool, no_cache: bool) -> Vec<Prediction> {
    crate::cache::plan_predictions(plan, force, no_cache)
}
