//! `taskrun list`: the tasks with their kinds and descriptions.

use std::fmt::Write as _;

use crate::cli::ListArgs;

/// Prints one line per task.
pub fn run(args: ListArgs) -> Result<u8, super::Error> {
    let pipeline = super::load_pipeline(&args.manifest, &args.vars)?;
    // A fan-out task of more than 10 instances is one line (as in the run summary).
    let grouped = |name: &str| {
        pipeline
            .fanouts
            .iter()
            .find(|f| f.name == name)
            .is_some_and(|f| f.instances.len() > 10)
    };
    let width = pipeline
        .tasks
        .values()
        .map(|t| match &t.origin {
            Some(o) if grouped(&o.task) => o.task.len() + 3,
            _ => t.name.len(),
        })
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let _ = write!(out, "{}", pipeline.name);
    if let Some(d) = &pipeline.description {
        let _ = write!(out, ": {d}");
    }
    out.push('\n');
    for (i, task) in pipeline.tasks.values().enumerate() {
        if let Some(o) = &task.origin
            && grouped(&o.task)
        {
            let Some(f) = pipeline.fanouts.iter().find(|f| f.name == o.task) else {
                continue;
            };
            if f.instances.start == i {
                let last = pipeline
                    .tasks
                    .get_index(f.instances.end - 1)
                    .map_or("", |(n, _)| n.as_str());
                let _ = writeln!(
                    out,
                    "  {:width$}  {:8}  {} instances: {} … {last}{}",
                    format!("{}[*]", f.name),
                    task.kind().as_str(),
                    f.instances.len(),
                    task.name,
                    f.description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
            }
            continue;
        }
        let desc = task.description.as_deref().unwrap_or("");
        // A fan-out task whose items are not there yet: what it waits for.
        let (kind, desc) = match &task.expands {
            Some(e) => {
                let after = format!("expanded after {}", e.after.join(", "));
                let desc = if desc.is_empty() {
                    after
                } else {
                    format!("{desc} ({after})")
                };
                (e.kind, desc)
            }
            None => (task.kind(), desc.to_string()),
        };
        let _ = writeln!(out, "  {:width$}  {:8}  {desc}", task.name, kind.as_str());
    }
    Ok(super::print_stdout(&out))
}
