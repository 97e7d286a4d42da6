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
    // A task expanded after its producers: explained with the items as they are now.
    let mut plan = super::expansion::as_now(plan, &selection)?;
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
