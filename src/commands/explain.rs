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
        eprintln!("error: unknown task `{}`", args.task);
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
