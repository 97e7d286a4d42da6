//! `taskrun explain MANIFEST TASK`: why TASK is or is not cached — its key's parts beside the
//! last run's. Reads the cache, never writes it, takes no lock.

use crate::cache::predict::{CacheView, PredictOptions, predict};
use crate::cli::ExplainArgs;

use super::Error;

/// Runs `taskrun explain`.
pub fn run(args: ExplainArgs) -> Result<u8, Error> {
    let selection = crate::cli::Selection {
        manifest: args.manifest.clone(),
        targets: vec![args.task.clone()],
        vars: args.vars.clone(),
    };
    let plan = super::load_plan(&args.manifest, &args.vars, &selection.targets)?;
    // A task expanded after its producers: explained with the items as they are now. Items
    // not there yet (the producers have not run here) leave the stand-ins as they are, which
    // is enough for any other task.
    let mut plan = match super::expansion::as_now(plan.clone(), &selection) {
        Ok(expanded) => expanded,
        Err(e) => match stand_in_of(&plan, &args.task) {
            None => plan,
            Some(stand_in) => return Err(not_expanded_yet(&args, stand_in, &e)),
        },
    };
    // Keys as `run` computes them: with the lockfile's pins.
    super::apply_lockfile(&mut plan, &|_| false)?;
    let Some(index) = plan.pipeline.tasks.get_index_of(args.task.as_str()) else {
        return Err(not_one_task(&plan.pipeline, &args));
    };
    let view = CacheView::open(&plan.pipeline);
    let options = PredictOptions {
        keep_parts: true,
        ..PredictOptions::default()
    };
    let predictions = predict(&plan, &view, options);
    let text = crate::cache::explain::explain_text(&plan, &view, index, &predictions[index]);
    Ok(super::print_stdout(&text))
}

/// The stand-in `NAME[*]` that `task` (`NAME`, `NAME[*]` or `NAME[KEY]`) stands for, if any.
fn stand_in_of<'p>(plan: &'p crate::plan::Plan, task: &str) -> Option<&'p crate::model::Task> {
    let base = crate::manifest::split_instance(task).map_or(task, |(base, _)| base);
    let name = crate::manifest::fanout::deferred::stand_in_name(base);
    plan.pipeline
        .tasks
        .get(name.as_str())
        .filter(|t| t.expands.is_some())
}

/// An instance of a fan-out whose items its producers have not made here yet: said as such,
/// not as the invalid manifest the items' absence would make it.
fn not_expanded_yet(args: &ExplainArgs, stand_in: &crate::model::Task, why: &Error) -> Error {
    let after: &[String] = stand_in.expands.as_ref().map_or(&[], |e| &e.after);
    let named: Vec<String> = after.iter().map(|a| format!("`{a}`")).collect();
    Error::usage_with_hint(
        format!(
            "`{}` is expanded after {} has run, and its items are not here yet: {}",
            args.task,
            named.join(", "),
            super::expansion::first_line(why)
        ),
        format!(
            "run them first: taskrun run {} {}",
            args.manifest.display(),
            after.join(" ")
        ),
    )
}

/// Why `args.task`, a target the plan took, is not one task to explain: a fan-out task's
/// bare name (each instance has its own key).
fn not_one_task(p: &crate::model::Pipeline, args: &ExplainArgs) -> Error {
    match p.fanouts.iter().find(|f| f.name == args.task) {
        Some(f) => match p.tasks.get_index(f.instances.start) {
            Some((first, _)) => Error::usage(format!(
                "`{}` is a fan-out task of {} instances, each with its own key: explain one of them, e.g. taskrun explain {} '{first}'",
                args.task,
                f.instances.len(),
                args.manifest.display()
            )),
            None => Error::usage(format!("fan-out task `{}` has no instances", args.task)),
        },
        None => Error::UnknownTargets {
            manifest: args.manifest.clone(),
            unknown: vec![crate::plan::UnknownTarget {
                name: args.task.clone(),
                suggestion: crate::manifest::suggest_task(
                    &args.task,
                    p.tasks.keys().map(String::as_str),
                ),
            }],
        },
    }
}
