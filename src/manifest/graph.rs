//! Checks that span tasks: missing deps, cycles, clashing outputs, pool use.

use rustc_hash::FxHashMap;

use super::diagnostic::Problem;
use super::load::Pools;
use super::task::TaskSpans;
use super::walk::Reader;
use super::{suggest, suggest_task};
use crate::model::TaskMap;

/// A dep that names no task, in the index lists of [`check`].
const MISSING: usize = usize::MAX;

/// Runs every cross-task check; `spans[i]` belongs to `tasks[i]`. Returns each task's deps
/// as task indices (each looked up once; `MISSING` for a name that is no task).
pub fn check(
    r: &mut Reader<'_>,
    tasks: &TaskMap,
    spans: &[TaskSpans],
    pools: &Pools,
) -> Vec<Vec<usize>> {
    let deps: Vec<Vec<usize>> = tasks
        .values()
        .map(|t| {
            t.deps
                .iter()
                .map(|d| tasks.get_index_of(d.as_str()).unwrap_or(MISSING))
                .collect()
        })
        .collect();
    missing_deps(r, tasks, spans, &deps);
    cycles(r, tasks, spans, &deps);
    outputs(r, tasks, spans);
    pool_use(r, tasks, spans, pools);
    deps
}

/// Each `deps` entry that names no task, said once: a fan-out's instances share the entry,
/// and 1,000 copies of one mistake would bury the others.
fn missing_deps(r: &mut Reader<'_>, tasks: &TaskMap, spans: &[TaskSpans], found: &[Vec<usize>]) {
    // By the entry's place: the first problem, and how many instances share it.
    let mut by_entry: indexmap::IndexMap<(usize, usize), (Problem, usize)> = Default::default();
    for ((task, s), found) in tasks.values().zip(spans).zip(found) {
        for ((dep, span), &i) in task.deps.iter().zip(&s.deps).zip(found) {
            if i != MISSING {
                continue;
            }
            if let Some((_, n)) = by_entry.get_mut(&(span.start, span.end)) {
                *n += 1;
                continue;
            }
            let p = Problem::at(
                span.clone(),
                format!(
                    "task `{}` depends on `{dep}`, which does not exist",
                    task.name
                ),
            )
            .label("no such task");
            let p = match suggest_task(dep, tasks.keys().map(String::as_str)) {
                Some(s) => p.help(format!("did you mean `{s}`?")),
                None => p,
            };
            by_entry.insert((span.start, span.end), (p, 1));
        }
    }
    for (_, (mut p, n)) in by_entry {
        if n > 1 {
            p.message.push_str(&format!(
                " (this entry fails for {} more instances too)",
                n - 1
            ));
        }
        r.push(p);
    }
}

fn cycles(r: &mut Reader<'_>, tasks: &TaskMap, spans: &[TaskSpans], deps: &[Vec<usize>]) {
    let n = tasks.len();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; n];
    // One problem per dependency that closes a cycle: a fan-out's instances close many
    // cycles through the one `deps` entry, which is the one thing to fix.
    let mut closing: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        // Stack of (node, next dep position to look at).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut pos)) = stack.last_mut() {
            if let Some(&dep) = deps[node].get(*pos) {
                let dep_pos = *pos;
                *pos += 1;
                if dep == MISSING {
                    continue;
                }
                match state[dep] {
                    0 => {
                        state[dep] = 1;
                        stack.push((dep, 0));
                    }
                    1 => {
                        let span = spans[node].deps[dep_pos].clone();
                        if closing.insert((span.start, span.end)) {
                            let from = stack.iter().position(|&(t, _)| t == dep).unwrap_or(0);
                            let mut names: Vec<&str> = stack[from..]
                                .iter()
                                .map(|&(t, _)| tasks[t].name.as_str())
                                .collect();
                            names.push(&tasks[dep].name);
                            r.push(
                                Problem::at(
                                    span,
                                    format!("dependency cycle: {}", names.join(" -> ")),
                                )
                                .label("closes the cycle")
                                .help("remove one of these dependencies"),
                            );
                        }
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
}

fn outputs(r: &mut Reader<'_>, tasks: &TaskMap, spans: &[TaskSpans]) {
    // Exact output paths and every proper ancestor of one, each with its owner.
    // Paths come from the user's own manifest: FxHash is safe here and several times faster
    // than SipHash on 100,000 outputs.
    let mut exact: FxHashMap<&str, usize> = FxHashMap::default();
    let mut ancestors: FxHashMap<&str, usize> = FxHashMap::default();
    for (i, (task, s)) in tasks.values().zip(spans).enumerate() {
        for (out, span) in task.outputs.iter().zip(&s.outputs) {
            let path = out.as_str();
            let clash = exact
                .get(path)
                .map(|&o| {
                    (
                        o,
                        format!("`{path}` is also an output of task `{}`", tasks[o].name),
                    )
                })
                .or_else(|| {
                    ancestors.get(path).map(|&o| {
                        (
                            o,
                            format!(
                                "output `{path}` contains an output of task `{}`",
                                tasks[o].name
                            ),
                        )
                    })
                })
                .or_else(|| {
                    parents(path).find_map(|a| {
                        exact.get(a).map(|&o| {
                            (
                                o,
                                format!(
                                    "output `{path}` lies inside `{a}`, an output of task `{}`",
                                    tasks[o].name
                                ),
                            )
                        })
                    })
                });
            if let Some((owner, msg)) = clash
                && owner != i
            {
                r.push(Problem::at(span.clone(), msg).label("clashing output").help("two tasks may not write the same file or directory, nor one inside the other"));
                continue;
            }
            exact.entry(path).or_insert(i);
            for a in parents(path) {
                ancestors.entry(a).or_insert(i);
            }
        }
    }
}

fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

fn pool_use(r: &mut Reader<'_>, tasks: &TaskMap, spans: &[TaskSpans], pools: &Pools) {
    for (task, s) in tasks.values().zip(spans) {
        // Reported once for all the tasks that take `uses` from `[defaults]`.
        let who = match s.uses_from_defaults {
            true => "`[defaults]`".to_string(),
            false => format!("task `{}`", task.name),
        };
        for (pool, slots, span) in &s.uses {
            match pools.get(pool) {
                None => {
                    let p = Problem::at(
                        span.clone(),
                        format!("{who} uses pool `{pool}`, which is not declared"),
                    )
                    .label("unknown pool");
                    r.push(match suggest(pool, pools.keys().map(String::as_str)) {
                        Some(s) => p.help(format!("did you mean `{s}`?")),
                        None => p.help(format!("declare it: [pools] {pool} = N")),
                    });
                }
                Some((size, _)) if slots > size => {
                    r.push(
                        Problem::at(
                            span.clone(),
                            format!("{who} asks {slots} slots of pool `{pool}`, which has {size}"),
                        )
                        .label("more than the pool has")
                        .help("the task could never start; lower `uses` or raise the pool size"),
                    );
                }
                Some(_) => {}
            }
        }
    }
}
