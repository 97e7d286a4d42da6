//! `taskrun plan` and `taskrun run --dry-run`: what would run and why. Runs nothing, opens no
//! connection, writes no file.

use std::path::Path;

use crate::cli::{PlanArgs, When};
use crate::plan::Plan;
use crate::plan::predict::Prediction;
use crate::plan::render::{PlanView, render};

/// `taskrun plan`.
pub fn run(args: PlanArgs) -> u8 {
    print_plan(
        &args.manifest,
        &args.targets,
        &args.vars,
        PlanView {
            format: args.format,
            expand: args.expand,
        },
        args.color,
        args.force,
        args.no_cache,
    )
}

/// Loads, plans, predicts the cache and prints the plan.
pub fn print_plan(
    manifest: &Path,
    targets: &[String],
    vars: &[String],
    view: PlanView,
    color: When,
    force: bool,
    no_cache: bool,
) -> u8 {
    let plan = match super::load_plan(manifest, vars, targets, super::stderr_color(color)) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let predictions = predict(&plan, force, no_cache);
    super::print_stdout(&render(&plan, targets, &predictions, view))
}

/// Reads the cache (never writes it) to predict hit / miss for each task.
fn predict(plan: &Plan, force: bool, no_cache: bool) -> Vec<Prediction> {
    crate::cache::plan_predictions(plan, force, no_cache)
}
