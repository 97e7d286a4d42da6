//! What ties instances to the rest of the manifest once every task is built: a dependency
//! on a fan-out task's bare name means all of its instances, and a fan-out whose items a
//! task produces waits for that task.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

use super::deferred::{Deferral, Deferrals};
use super::sources::{self, SourceKind};
use crate::manifest::diagnostic::Problem;
use crate::manifest::task::TaskSpans;
use crate::manifest::walk::Reader;
use crate::model::{FanOut, ItemSource, TaskMap};

/// Replaces each dependency on a fan-out task's bare name by its instances (none for an
/// empty fan-out), keeping the dependency's span for every instance. A task expanded only
/// after its producers stands as `NAME[*]` for its bare name and for any one instance.
pub fn expand_deps(tasks: &mut TaskMap, spans: &mut [TaskSpans], fanouts: &[FanOut]) {
    if fanouts.is_empty() {
        return;
    }
    let by_name: HashMap<&str, &Range<usize>> = fanouts
        .iter()
        .map(|f| (f.name.as_str(), &f.instances))
        .collect();
    let deferred: HashMap<&str, String> = fanouts
        .iter()
        .filter(|f| {
            f.instances.len() == 1
                && tasks
                    .get_index(f.instances.start)
                    .is_some_and(|(_, t)| t.expands.is_some())
        })
        .map(|f| (f.name.as_str(), super::deferred::stand_in_name(&f.name)))
        .collect();
    let stand_in = |dep: &str| -> Option<&String> {
        let (base, _) = crate::manifest::split_instance(dep)?;
        deferred.get(base).filter(|s| s.as_str() != dep)
    };
    let needs = |deps: &[String]| {
        deps.iter()
            .any(|d| by_name.contains_key(d.as_str()) || stand_in(d).is_some())
    };
    if !tasks.values().any(|t| needs(&t.deps)) {
        return;
    }
    let names: Vec<String> = tasks.keys().cloned().collect();
    for (task, s) in tasks.values_mut().zip(spans.iter_mut()) {
        if !needs(&task.deps) {
            continue;
        }
        let mut deps: Vec<String> = Vec::with_capacity(task.deps.len());
        let mut dep_spans = Vec::with_capacity(task.deps.len());
        // Each once: a stand-in may name a producer that a bare fan-out name also gives.
        let mut seen: HashSet<String> = HashSet::new();
        let mut push = |name: String, span: Range<usize>| {
            if seen.insert(name.clone()) {
                deps.push(name);
                dep_spans.push(span);
            }
        };
        let own = task.origin.as_ref().map(|o| o.task.clone());
        for (dep, span) in task.deps.drain(..).zip(s.deps.drain(..)) {
            match (by_name.get(dep.as_str()), stand_in(&dep)) {
                // Its own task's bare name: a cycle, said once through the instance itself
                // (all N instances each on all N would be N² edges and as many cycles).
                (Some(_), _) if own.as_deref() == Some(dep.as_str()) => {
                    push(task.name.clone(), span);
                }
                (Some(range), _) => {
                    for i in (*range).clone() {
                        push(names[i].clone(), span.clone());
                    }
                }
                (None, Some(stand_in)) => push(stand_in.clone(), span),
                (None, None) => push(dep, span),
            }
        }
        task.deps = deps;
        s.deps = dep_spans;
    }
}

/// An item file or glob a fan-out task reads, where it is written, and whose it is.
#[derive(Debug, Clone)]
pub struct SourceUse {
    /// The file or glob.
    pub source: ItemSource,
    /// Its place in the manifest.
    pub span: Range<usize>,
    /// The fan-out task's declared name.
    pub task: String,
    /// The tasks its instances wait for, by name (see [`super::deferred::waited_deps`]).
    pub after: Vec<String>,
}

/// Items must exist before the tasks that use them run. When an item file is written by a
/// task (or lies inside one of its outputs), or a glob matches a declared output, that task
/// is the items' producer. A fan-out task that depends on every producer (through its
/// `deps`, directly or not) waits for them: its instances are built once every producer is
/// in `finished` (it ran in this run), and until then the task is deferred (returned, to be
/// loaded as a stand-in), as it is while `held` names it. One that does not is an error naming the producer (SPEC §9), as is
/// a fan-out over its own outputs.
pub fn check_produced(
    r: &mut Reader<'_>,
    tasks: &mut TaskMap,
    spans: &mut [TaskSpans],
    fanouts: &[FanOut],
    sources: &[SourceUse],
    finished: &BTreeSet<String>,
    held: &BTreeSet<String>,
) -> Deferrals {
    let mut deferrals = Deferrals::new();
    for SourceUse {
        source,
        span,
        task,
        after: deps,
    } in sources
    {
        let producers = producers_of(tasks, source);
        if producers.is_empty() {
            continue;
        }
        let declared = |i: usize| {
            let t = &tasks[i];
            match (&t.origin, &t.expands) {
                (Some(o), _) => o.task.clone(),
                (None, Some(e)) => e.task.clone(),
                (None, None) => t.name.clone(),
            }
        };
        if let Some(&(i, ref out)) = producers.iter().find(|(i, _)| declared(*i) == *task) {
            r.push(
                Problem::at(span.clone(), format!("the items of `{}` would come from `{out}`, an output of task `{}` itself", source.path, declared(i)))
                    .label("produced by the task itself")
                    .help("a fan-out task cannot read its items from its own outputs: read them from files another task writes"),
            );
            continue;
        }
        let names: Vec<String> = producers
            .iter()
            .map(|&(i, _)| tasks[i].name.clone())
            .collect();
        let waited_for = reachable(tasks, fanouts, sources, deps);
        if let Some(&(i, ref out)) = producers
            .iter()
            .find(|(i, _)| !waited_for.contains(tasks[*i].name.as_str()))
        {
            // Missing or empty because nobody has run its producer yet: say only that.
            drop_superseded(r, span);
            let producer = declared(i);
            r.push(
                Problem::at(span.clone(), format!("the items of `{}` would come from `{out}`, an output of task `{producer}`", source.path))
                    .label("produced by another task")
                    .help(format!("add `deps = [\"{producer}\"]` to task `{task}`: it is then expanded once `{producer}` has run (`plan` shows `{task}[*] (expanded after {producer})`); or list the items in a file that exists")),
            );
            continue;
        }
        if !held.contains(task) && names.iter().all(|n| finished.contains(n)) {
            // The producers ran: the items are current. Each instance waits for them through
            // its deps; those that name a producer only order it (the item is in the key).
            let Some(f) = fanouts.iter().find(|f| f.name == *task) else {
                continue;
            };
            let producer: HashSet<&str> = names.iter().map(String::as_str).collect();
            for i in f.instances.clone() {
                let (Some((_, t)), Some(s)) = (tasks.get_index_mut(i), spans.get_mut(i)) else {
                    continue;
                };
                order_producers_last(t, s, &producer);
                // The matched file stands for its producers in the key.
                let path = t.origin.as_ref().and_then(|o| o.item.get("path"));
                if let (SourceKind::Glob, Some(path)) = (source.kind, path) {
                    let glob = crate::manifest::interpolate::glob_escape(path).into_owned();
                    if !t.inputs.iter().any(|i| i.glob == glob) {
                        t.inputs.push(crate::model::InputPattern {
                            glob,
                            optional: false,
                        });
                    }
                }
            }
            continue;
        }
        // Missing, empty or stale because its producers have not run yet: not a problem.
        drop_superseded(r, span);
        let mut after: Vec<String> = Vec::new();
        for &(i, _) in &producers {
            let d = declared(i);
            if !after.contains(&d) {
                after.push(d);
            }
        }
        deferrals.insert(
            task.clone(),
            Deferral {
                producers: names,
                after,
            },
        );
    }
    deferrals
}

/// Moves the deps of `t` that name a producer (and their spans) after the others, and counts
/// them as order-only (see [`crate::model::Task::order_only`]).
fn order_producers_last(t: &mut crate::model::Task, s: &mut TaskSpans, producer: &HashSet<&str>) {
    let (mut keyed, mut ordering) = (Vec::new(), Vec::new());
    for pair in t.deps.drain(..).zip(s.deps.drain(..)) {
        if producer.contains(pair.0.as_str()) {
            ordering.push(pair);
        } else {
            keyed.push(pair);
        }
    }
    t.order_only = ordering.len();
    (t.deps, s.deps) = keyed.into_iter().chain(ordering).unzip();
}

/// Drops the "no items" and "cannot read" problems of the source at `span`: its producer has
/// not run yet, which says all.
fn drop_superseded(r: &mut Reader<'_>, span: &Range<usize>) {
    r.problems.retain(|p| {
        p.span.as_ref() != Some(span)
            || !matches!(
                p.label.as_deref(),
                Some(super::NO_ITEMS | super::UNREADABLE)
            )
    });
}

/// Every task that `deps` (names as written: a fan-out task's bare name is all of its
/// instances) waits for, directly or through theirs. A fan-out whose items are not read yet
/// has no instances: what it waits for is taken from its `sources` entry.
fn reachable<'t>(
    tasks: &'t TaskMap,
    fanouts: &[FanOut],
    sources: &[SourceUse],
    deps: &[String],
) -> HashSet<&'t str> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut named: HashSet<&str> = HashSet::new();
    let mut names: Vec<&str> = deps.iter().map(String::as_str).collect();
    while let Some(d) = names.pop() {
        if !named.insert(d) {
            continue;
        }
        match fanouts.iter().find(|f| f.name == d) {
            Some(f) => {
                stack.extend(f.instances.clone());
                let declared = sources.iter().filter(|s| s.task == d);
                names.extend(declared.flat_map(|s| s.after.iter().map(String::as_str)));
            }
            None => stack.extend(tasks.get_index_of(d)),
        }
    }
    while let Some(i) = stack.pop() {
        let Some((name, task)) = tasks.get_index(i) else {
            continue;
        };
        if seen.insert(name.as_str()) {
            stack.extend(
                task.deps
                    .iter()
                    .filter_map(|d| tasks.get_index_of(d.as_str())),
            );
        }
    }
    seen
}

/// Every task that writes `source` (or a glob's match), with the output that does; a
/// stand-in counts for the directories its instances will write.
fn producers_of(tasks: &TaskMap, source: &ItemSource) -> Vec<(usize, String)> {
    let matcher = match source.kind {
        SourceKind::Glob => sources::compile(&source.path).ok(),
        _ => None,
    };
    let base = sources::literal_base(&source.path);
    let mut found = Vec::new();
    for (i, t) in tasks.values().enumerate() {
        let hit = t.outputs.iter().find_map(|out| {
            let o = out.as_str();
            let hit = match &matcher {
                None => out.contains(&source.path),
                // A matched output, or an output directory the walk starts inside.
                Some(m) => m.is_match(o) || (!base.is_empty() && out.contains(&base)),
            };
            hit.then(|| o.to_string())
        });
        let hit = hit.or_else(|| {
            let e = t.expands.as_deref()?;
            e.writes
                .iter()
                .find(|w| {
                    let dir = w.trim_end_matches('/');
                    let inside = |p: &str| p == dir || p.starts_with(&format!("{dir}/"));
                    inside(&source.path)
                        || (!base.is_empty()
                            && (inside(&base) || dir.starts_with(&format!("{base}/"))))
                })
                .cloned()
        });
        if let Some(o) = hit {
            found.push((i, o));
        }
    }
    found
}
