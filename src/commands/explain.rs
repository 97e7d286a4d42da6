//! `taskrun explain MANIFEST TASK`: why TASK is or is not cached — its key's parts beside the
//! last run's. Reads the cache, never writes it, takes no lock.

use crate::cache::predict::{CacheView, PredictOptions, predict};
use crate::cli::{ExplainArgs, When};

/// Runs `taskrun explain`.
pub fn run(args: ExplainArgs) -> u8 {
    let color = super::stderr_color(When::Auto);
    let mut plan = match super::load_plan(
        &args.manifest,
        &args.vars,
        std::slice::from_ref(&args.task),
        color,
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Keys as `run` computes them: with the lockfile's pins.
    if let Err(code) = super::apply_lockfile(&mut plan, color, &|_| false) {
        return code;
    }
    let Some(index) = plan.pipeline.tasks.get_index_of(args.task.as_str()) else {
        let p = &plan.pipeline;
        match p.fanouts.iter().find(|f| f.name == args.task) {
            // Each instance has its own key: explain names one.
            Some(f) => match p.tasks.get_index(f.instances.start) {
                Some((first, _)) => eprintln!(
                    "error: `{}` is a fan-out task of {} instances, each with its own key: explain one of them, e.g. taskrun explain {} '{first}'",
                    args.task,
                    f.instances.len(),
                    args.manifest.display()
                ),
                None => eprintln!("error: fan-out task `{}` has no instances", args.task),
            },
            None => {
                match crate::manifest::suggest_task(&args.task, p.tasks.keys().map(String::as_str))
                {
                    Some(s) => {
                        eprintln!("error: unknown task `{}`: did you mean `{s}`?", args.task)
                    }
                    None => eprintln!("error: unknown task `{}`", args.task),
                }
            }
        }
        return crate::exit_code::USAGE;
    };
    let view = CacheView::open(&plan.pipeline);
    let options = PredictOptions {
        keep_parts: true,
        ..PredictOptions::default()
    };
    let predictions = predict(&plan, &view, options);
    let text = crate::cache::explain::explain_text(&plan, &view, index, &predictions[index]);
    super::print_stdout(&text)
}
