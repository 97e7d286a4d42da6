//! `taskrun plan` and `taskrun run --dry-run`: what would run and why. Runs nothing, opens no
//! connection, writes no file.

use crate::cli::{PlanArgs, PlanFormat, RemoteExec, Selection};
use crate::lockfile::standing::Unpinned;
use crate::plan::Plan;
use crate::plan::placement::place;
use crate::plan::predict::{CacheStatus, Prediction};
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
    let (mut unpinned, mut predictions) = prepare(&mut plan, view)?;
    // A stand-in whose producers are cached and on disk expands as the run will expand it.
    for _ in 0..super::expansion::MAX_PHASES {
        if !super::expansion::has_stand_ins(&plan) {
            break;
        }
        let settled = plan
            .order
            .iter()
            .filter(|&&i| {
                predictions[i].status == CacheStatus::Hit && predictions[i].reason.is_none()
            })
            // A hit that asks its origin again may download anew.
            .filter(|&&i| {
                !matches!(&plan.task(i).action, crate::model::Action::Download(d) if d.asks_origin_on_hit())
            })
            .map(|&i| plan.task(i).name.clone())
            .collect();
        let Some(next) = super::expansion::as_settled(&plan, settled, sel) else {
            break;
        };
        plan = next;
        (unpinned, predictions) = prepare(&mut plan, view)?;
    }
    let off = super::remote_exec_off(&plan.pipeline, view.remote_exec)?;
    if view.locked {
        super::refuse_unlocked(&plan, &unpinned, &sel.vars)?;
    }
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

/// Applies the run's options and the lockfile's pins to `plan`, and predicts its cache:
/// the downloads left unpinned and each task's prediction.
fn prepare(plan: &mut Plan, view: View) -> Result<(Vec<Unpinned>, Vec<Prediction>), super::Error> {
    // What the run with these options would do (`taskrun M -n -j 4 -k`).
    if let Some(jobs) = view.jobs {
        plan.pipeline.concurrency = jobs as usize;
    }
    plan.pipeline.fail_fast &= !view.keep_going;
    let (_, unpinned) = super::apply_lockfile(plan, &|_| false)?;
    let predictions = predict(plan, view.force, view.no_cache);
    Ok((unpinned, predictions))
}

/// Reads the cache (never writes it) to predict hit / miss for each task.
fn predict(plan: &Plan, force: bool, no_cache: bool) -> Vec<Prediction> {
    crate::cache::plan_predictions(plan, force, no_cache)
}
