//! Paths a task may not write (SPEC §13): the manifest itself, its lockfile, anything under
//! `.taskrun/` or the cache dir. A `dest` or output there would let one task rewrite what
//! taskrun reads next time: the pipeline, the pins, the cache that decides what runs.

use std::ops::Range;
use std::path::Path;

use super::diagnostic::Problem;
use super::task::TaskSpans;
use super::walk::Reader;
use crate::model::{RelPath, TaskMap};

/// Records a problem for every output (a download's `dest` included) on a reserved path.
pub fn check(
    r: &mut Reader<'_>,
    tasks: &TaskMap,
    spans: &[TaskSpans],
    manifest: &Path,
    root: &Path,
    cache_dir: &Path,
) {
    let reserved = paths(manifest, root, cache_dir);
    // Compared as the file system resolves them: `ws/../ws` or a link to the workspace is
    // the workspace.
    let (root, cache_dir) = (&resolved(root), &resolved(cache_dir));
    if root.starts_with(cache_dir) {
        // Every file of the workspace would sit in the cache dir, where `cache clean` could
        // not tell the user's files from the store's.
        r.push(
            Problem::global(format!(
                "refusing the cache dir `{}`: it is the workspace itself, or holds it",
                cache_dir.display()
            ))
            .help("point TASKRUN_CACHE_DIR or `[cache] dir` at a directory of its own, e.g. .taskrun/cache"),
        );
    }
    for (task, s) in tasks.values().zip(spans) {
        for (out, span) in task.outputs.iter().zip(&s.outputs) {
            let o = out.as_str();
            if let Some((path, what)) = reserved.iter().find(|(p, _)| clashes(o, p)) {
                let name = task
                    .origin
                    .as_ref()
                    .map_or(task.name.as_str(), |x| x.task.as_str());
                r.push(problem(span, name, o, path, what));
            }
        }
    }
}

/// The paths of the workspace at `root` that taskrun reads itself, each with what it is,
/// relative to the root: what no `dest` or output may be, contain or lie in (the cache dir
/// when it is inside the workspace).
pub fn paths(manifest: &Path, root: &Path, cache_dir: &Path) -> Vec<(String, &'static str)> {
    let mut reserved: Vec<(String, &str)> = vec![(".taskrun".into(), "taskrun's state directory")];
    if let Some(name) = manifest.file_name().and_then(|n| n.to_str()) {
        reserved.push((name.to_string(), "the manifest itself"));
    }
    reserved.push((
        crate::lockfile::file_name(manifest),
        "the manifest's lockfile",
    ));
    let (root, cache_dir) = (&resolved(root), &resolved(cache_dir));
    if let Ok(rel) = cache_dir.strip_prefix(root)
        && let Some(rel) = rel.to_str()
        && !rel.is_empty()
    {
        reserved.push((rel.to_string(), "the cache dir"));
    }
    reserved
}

/// `path` with its symlinks and `..` resolved as far as it exists, the rest taken lexically
/// (a cache dir need not exist yet).
pub(crate) fn resolved(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut rest = Vec::new();
    let mut base = path;
    let mut real = loop {
        if let Ok(real) = base.canonicalize() {
            break real;
        }
        let Some(parent) = base.parent() else {
            return path.to_path_buf();
        };
        rest.push(base.components().next_back());
        base = parent;
    };
    for c in rest.into_iter().rev().flatten() {
        match c {
            Component::ParentDir => {
                real.pop();
            }
            Component::Normal(n) => real.push(n),
            _ => {}
        }
    }
    real
}

fn problem(span: &Range<usize>, task: &str, out: &str, path: &str, what: &str) -> Problem {
    let msg = if out == path {
        format!("task `{task}` would overwrite `{out}`, {what}")
    } else {
        format!("output `{out}` of task `{task}` overlaps `{path}`, {what}")
    };
    Problem::at(span.clone(), msg)
        .label("reserved path")
        .help("taskrun reads this path itself; write the task's results somewhere else")
}

/// Equal, inside, or containing (an output directory holding the reserved path would
/// delete or restore it). A cache dir that is the workspace is refused before this check.
/// The workspace root itself (`""`, where a link such as `out -> .` lands) holds them all.
pub fn clashes(out: &str, reserved: &str) -> bool {
    out.is_empty()
        || RelPath::parse(out).is_some_and(|o| o.contains(reserved))
        || RelPath::parse(reserved).is_some_and(|r| r.contains(out))
}

#[cfg(test)]
mod tests {
    use super::clashes;

    #[test]
    fn equal_inside_and_containing_clash() {
        assert!(clashes("taskrun.toml", "taskrun.toml"));
        assert!(clashes(".taskrun/cache/x", ".taskrun"));
        assert!(clashes("data", "data/cache"));
        assert!(!clashes("data2", "data"));
        assert!(!clashes("out/taskrun.toml", "taskrun.toml"));
    }
}
