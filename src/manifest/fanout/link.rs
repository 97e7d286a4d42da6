//! What ties instances to the rest of the manifest once every task is built: a dependency
//! on a fan-out task's bare name means all of its instances, and no task may produce the
//! items a fan-out reads when the manifest loads.

use std::collections::HashMap;
use std::ops::Range;

use super::sources::{self, SourceKind};
use crate::manifest::diagnostic::Problem;
use crate::manifest::task::TaskSpans;
use crate::manifest::walk::Reader;
use crate::model::{FanOut, ItemSource, TaskMap};

/// Replaces each dependency on a fan-out task's bare name by its instances (none for an
/// empty fan-out), keeping the dependency's span for every instance.
pub fn expand_deps(tasks: &mut TaskMap, spans: &mut [TaskSpans], fanouts: &[FanOut]) {
    if fanouts.is_empty() {
        return;
    }
    let by_name: HashMap<&str, &Range<usize>> = fanouts
        .iter()
        .map(|f| (f.name.as_str(), &f.instances))
        .collect();
    let needs = |deps: &[String]| deps.iter().any(|d| by_name.contains_key(d.as_str()));
    if !tasks.values().any(|t| needs(&t.deps)) {
        return;
    }
    let names: Vec<String> = tasks.keys().cloned().collect();
    for (task, s) in tasks.values_mut().zip(spans.iter_mut()) {
        if !needs(&task.deps) {
            continue;
        }
        let mut deps = Vec::with_capacity(task.deps.len());
        let mut dep_spans = Vec::with_capacity(task.deps.len());
        for (dep, span) in task.deps.drain(..).zip(s.deps.drain(..)) {
            match by_name.get(dep.as_str()) {
                Some(range) => {
                    for i in (*range).clone() {
                        deps.push(names[i].clone());
                        dep_spans.push(span.clone());
                    }
                }
                None => {
                    deps.push(dep);
                    dep_spans.push(span);
                }
            }
        }
        task.deps = deps;
        s.deps = dep_spans;
    }
}

/// Items must exist before the run: an item file that a task writes (or lies inside one of
/// its outputs), or a glob that matches a declared output, is an error naming that task, in
/// place of the source's being missing or empty.
pub fn check_produced(r: &mut Reader<'_>, tasks: &TaskMap, sources: &[(ItemSource, Range<usize>)]) {
    for (source, span) in sources {
        let matcher = match source.kind {
            SourceKind::Glob => sources::compile(&source.path).ok(),
            _ => None,
        };
        let base = sources::literal_base(&source.path);
        let producer = tasks.values().find_map(|t| {
            t.outputs.iter().find_map(|out| {
                let o = out.as_str();
                let hit = match &matcher {
                    None => out.contains(&source.path),
                    // A matched output, or an output directory the walk starts inside.
                    Some(m) => m.is_match(o) || (!base.is_empty() && out.contains(&base)),
                };
                hit.then_some((t, o))
            })
        });
        if let Some((task, out)) = producer {
            // Missing or empty because nobody has run its producer yet: say only that.
            r.problems.retain(|p| {
                p.span.as_ref() != Some(span)
                    || !matches!(
                        p.label.as_deref(),
                        Some(super::NO_ITEMS | super::UNREADABLE)
                    )
            });
            let producer_name = task
                .origin
                .as_ref()
                .map_or(task.name.as_str(), |o| o.task.as_str());
            r.push(
                Problem::at(span.clone(), format!("the items of `{}` would come from `{out}`, an output of task `{producer_name}`", source.path))
                    .label("produced by another task")
                    .help("items are read when the manifest loads, before any task runs: list them in a file that exists, or run the producing pipeline first"),
            );
        }
    }
}
