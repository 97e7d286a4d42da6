//! `taskrun list`: the tasks with their kinds and descriptions.

use std::fmt::Write as _;

use crate::cli::ListArgs;

/// Prints one line per task.
pub fn run(args: ListArgs) -> u8 {
    let pipeline = match super::load_pipeline(
        &args.manifest,
        &args.vars,
        super::stderr_color(crate::cli::When::Auto),
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let width = pipeline.tasks.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    let _ = write!(out, "{}", pipeline.name);
    if let Some(d) = &pipeline.description {
        let _ = write!(out, ": {d}");
    }
    out.push('\n');
    for task in pipeline.tasks.values() {
        let desc = task.description.as_deref().unwrap_or("");
        let _ = writeln!(
            out,
            "  {:width$}  {:8}  {desc}",
            task.name,
            task.kind().as_str()
        );
    }
    super::print_stdout(&out)
}
