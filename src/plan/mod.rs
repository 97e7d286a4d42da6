//! The frozen DAG: task indices, dependency edges, topological levels and target selection.
//!
//! Tasks are addressed by their index in [`Pipeline::tasks`]; every later stage uses these
//! indices so no stage looks tasks up by name on a hot path.

mod fanout_text;
pub mod json;
pub mod placement;
pub mod predict;
pub mod render;

use crate::model::{Pipeline, Task};

/// A validated pipeline with its graph, restricted to the selected targets.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The whole pipeline (unselected tasks included, so indices stay stable).
    pub pipeline: Pipeline,
    /// `deps[i]`: indices of task i's dependencies, in manifest order.
    pub deps: Vec<Vec<usize>>,
    /// `dependents[i]`: indices of the tasks that depend on i.
    pub dependents: Vec<Vec<usize>>,
    /// `level[i]`: 0 for tasks without deps, else 1 + the highest dep level.
    pub level: Vec<usize>,
    /// Selected task indices in a topological order (by level, then manifest order).
    pub order: Vec<usize>,
    /// `selected[i]`: task i is a target or a transitive dependency of one.
    pub selected: Vec<bool>,
}

/// A TARGET that names no task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget {
    /// What the user typed.
    pub name: String,
    /// The closest task name, if any is close.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown task `{}`", self.name)?;
        if let Some(s) = &self.suggestion {
            write!(f, ": did you mean `{s}`?")?;
        }
        Ok(())
    }
}

impl Plan {
    /// Builds the graph. The pipeline must be validated (deps exist, no cycles).
    pub fn build(mut pipeline: Pipeline, targets: &[String]) -> Result<Plan, Vec<UnknownTarget>> {
        let n = pipeline.tasks.len();
        // The loader's lookups, unless they do not fit (then each name is looked up again).
        let deps: Vec<Vec<usize>> = match pipeline.dep_indices.take() {
            Some(d) if d.len() == n && d.iter().flatten().all(|&i| i < n) => d,
            _ => pipeline
                .tasks
                .values()
                .map(|task| {
                    task.deps
                        .iter()
                        .filter_map(|d| pipeline.tasks.get_index_of(d.as_str()))
                        .collect()
                })
                .collect(),
        };
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }

        let mut unknown = Vec::new();
        let mut roots = Vec::new();
        for t in targets {
            // A fan-out task's bare name selects every instance (SPEC §9); so does `NAME[*]`,
            // as the plan shows a task expanded later.
            let base = t.strip_suffix("[*]").unwrap_or(t);
            let fanout = pipeline.fanouts.iter().find(|f| f.name == base);
            match (pipeline.tasks.get_index_of(t.as_str()), fanout) {
                (Some(i), _) => roots.push(i),
                (None, Some(f)) => roots.extend(f.instances.clone()),
                // An instance of a task expanded later: its stand-in until then.
                (None, None) if let Some(i) = stand_in_for(&pipeline, t) => roots.push(i),
                (None, None) => unknown.push(UnknownTarget {
                    name: t.clone(),
                    suggestion: crate::manifest::suggest_task(
                        t,
                        pipeline
                            .tasks
                            .keys()
                            .map(|k| k.as_str())
                            .chain(pipeline.fanouts.iter().map(|f| f.name.as_str())),
                    ),
                }),
            }
        }
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let mut selected = vec![targets.is_empty(); n];
        let mut stack = roots;
        while let Some(i) = stack.pop() {
            if !selected[i] {
                selected[i] = true;
                stack.extend(deps[i].iter().copied());
            }
        }

        // Kahn's algorithm gives levels in O(V + E).
        let mut level = vec![0usize; n];
        let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut frontier: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
        let mut topo = Vec::with_capacity(n);
        while let Some(i) = frontier.pop() {
            topo.push(i);
            for &j in &dependents[i] {
                level[j] = level[j].max(level[i] + 1);
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    frontier.push(j);
                }
            }
        }
        let mut order: Vec<usize> = topo.into_iter().filter(|&i| selected[i]).collect();
        order.sort_by_key(|&i| (level[i], i));
        Ok(Plan {
            pipeline,
            deps,
            dependents,
            level,
            order,
            selected,
        })
    }

    /// The task at index `i`.
    pub fn task(&self, i: usize) -> &Task {
        &self.pipeline.tasks[i]
    }

    /// Number of selected tasks.
    pub fn selected_count(&self) -> usize {
        self.order.len()
    }
}

/// The stand-in of the fan-out task whose instance `target` (`clean[a.csv]`) would be, when
/// that task is expanded only after its producers run (SPEC §9).
fn stand_in_for(pipeline: &Pipeline, target: &str) -> Option<usize> {
    let (base, _) = crate::manifest::split_instance(target)?;
    let name = crate::manifest::fanout::deferred::stand_in_name(base);
    let i = pipeline.tasks.get_index_of(name.as_str())?;
    pipeline.tasks[i].expands.is_some().then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader's dep indices give the same graph as looking the names up, and indices
    /// that do not fit the tasks are not trusted.
    #[test]
    fn loader_indices_match_a_fresh_lookup() {
        let text = "[tasks.c]\ndeps = [\"b\", \"a\"]\n[tasks.a]\n[tasks.b]\ndeps = [\"a\"]\n";
        let path = std::path::Path::new("taskrun.toml");
        let opts = crate::manifest::LoadOptions::default();
        let loaded = crate::manifest::load_str(path, text.into(), &opts, &|_| None).unwrap();
        assert_eq!(loaded.dep_indices, Some(vec![vec![2, 1], vec![], vec![1]]));
        let graph = |p: &Plan| (p.deps.clone(), p.dependents.clone(), p.order.clone());
        let from_loader = Plan::build(loaded.clone(), &[]).unwrap();
        for indices in [
            None,
            Some(vec![vec![2, 1]]),
            Some(vec![vec![9], vec![], vec![]]),
        ] {
            let mut p = loaded.clone();
            p.dep_indices = indices;
            assert_eq!(graph(&Plan::build(p, &[]).unwrap()), graph(&from_loader));
        }
        assert_eq!(from_loader.deps, vec![vec![2, 1], vec![], vec![1]]);
    }
}
