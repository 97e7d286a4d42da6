//! Checks, before a run starts, that the files it was asked to write at its end (`--report`,
//! `--junit`, `--trace`) can be written, and may be: a typo in a CI job's path should stop
//! the job at once, not after an hour of work whose report then goes nowhere, and a report
//! must not take the place of the manifest or of a task's output. The check changes nothing
//! on disk: a missing directory is made only when the report is written.

use std::path::{Path, PathBuf};

use crate::model::Pipeline;

/// The workspace paths a report may not be written over, each with what it is.
pub struct Taken {
    root: PathBuf,
    paths: Vec<(String, String)>,
    /// The cache dir, resolved: wherever it is (`TASKRUN_CACHE_DIR` may put it outside).
    cache_dir: PathBuf,
}

impl Taken {
    /// The manifest, its lockfile, `.taskrun/`, the cache dir and every declared output.
    pub fn of(pipeline: &Pipeline) -> Self {
        let reserved = crate::manifest::reserved::paths(
            &pipeline.manifest_path,
            &pipeline.root,
            &pipeline.cache.dir,
        );
        let mut paths: Vec<(String, String)> = reserved
            .into_iter()
            .map(|(p, what)| (p, what.to_string()))
            .collect();
        for task in pipeline.tasks.values() {
            for out in &task.outputs {
                paths.push((
                    out.as_str().to_string(),
                    format!("an output of task `{}`", task.name),
                ));
            }
            // A fan-out expanded later: its instances' outputs are not known yet, the
            // directories they write into are.
            if let Some(e) = &task.expands {
                let dirs = e.writes.iter().map(|w| w.trim_end_matches('/'));
                for dir in dirs.filter(|w| !w.is_empty()) {
                    let what = format!("the output directory of fan-out task `{}`", e.task);
                    paths.push((dir.to_string(), what));
                }
            }
        }
        Self {
            root: crate::manifest::reserved::resolved(&pipeline.root),
            paths,
            cache_dir: crate::manifest::reserved::resolved(&pipeline.cache.dir),
        }
    }

    /// Only what the manifest's path alone tells: the manifest, its lockfile, `.taskrun/`
    /// and the default cache dir (for a manifest that does not load).
    pub fn reserved(manifest: &Path, root: &Path) -> Self {
        let cache_dir = root.join(".taskrun").join("cache");
        let paths = crate::manifest::reserved::paths(manifest, root, &cache_dir)
            .into_iter()
            .map(|(p, what)| (p, what.to_string()))
            .collect();
        Self {
            root: crate::manifest::reserved::resolved(root),
            paths,
            cache_dir: crate::manifest::reserved::resolved(&cache_dir),
        }
    }

    /// What `path` would overwrite or lie inside, if anything, in words: "it is the manifest
    /// itself", "it lies in taskrun's state directory".
    fn clash(&self, path: &Path) -> Option<String> {
        let abs = std::path::absolute(path).ok()?;
        let resolved = crate::manifest::reserved::resolved(&abs);
        if resolved.starts_with(&self.cache_dir) {
            return Some("it is in the cache dir".into());
        }
        let rel = resolved.strip_prefix(&self.root).ok()?.to_str()?;
        let (p, what) = self
            .paths
            .iter()
            .find(|(p, _)| crate::manifest::reserved::clashes(rel, p))?;
        let exact = crate::model::RelPath::parse(rel) == crate::model::RelPath::parse(p);
        Some(if exact {
            format!("it is {what}")
        } else {
            format!("it lies in {what}")
        })
    }
}

/// Why `path` (given with `flag`) cannot or may not take the file, or `Ok`.
pub fn check(flag: &str, path: &Path, taken: &Taken) -> Result<(), String> {
    let why = |e: &dyn std::fmt::Display| format!("cannot write {flag} {}: {e}", path.display());
    if path.as_os_str().is_empty() {
        return Err(format!("{flag} needs a file name"));
    }
    if path == Path::new("-") {
        return Err(why(&"`-` is not a file here (stdout is the console's)"));
    }
    if path.is_dir() {
        return Err(why(&"it is a directory"));
    }
    // A path under a file is said as such, before what the file is.
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let existing = nearest_existing_parent(&target);
    if !existing.is_dir() {
        return Err(why(&format_args!(
            "{} is not a directory",
            existing.display()
        )));
    }
    if let Some(what) = taken.clash(path) {
        return Err(why(&what));
    }
    let access = rustix::fs::Access::WRITE_OK;
    let denied = |at: &Path, e: rustix::io::Errno| {
        why(&format_args!(
            "{}: {}",
            at.display(),
            std::io::Error::from(e)
        ))
    };
    // What is not a regular file (`/dev/stdout`, a FIFO) is written into as it is.
    if std::fs::metadata(&target).is_ok_and(|m| !m.is_file()) {
        return rustix::fs::access(&target, access).map_err(|e| denied(&target, e));
    }
    // Else a temp file is renamed onto it: the nearest part of the path that exists must be
    // a directory this user may write.
    rustix::fs::access(existing, access | rustix::fs::Access::EXEC_OK)
        .map_err(|e| denied(existing, e))?;
    // Permissions do not bind root, and say nothing of a read-only file system: a temp file
    // made and dropped at once proves the directory takes one (nothing stays behind).
    tempfile::Builder::new()
        .prefix(crate::workspace::TEMP_PREFIX)
        .tempfile_in(existing)
        .map(drop)
        .map_err(|e| why(&format_args!("{}: {e}", existing.display())))
}

/// The nearest ancestor of `target` that exists (or is a link), `.` for a relative path
/// none of whose parts exists.
fn nearest_existing_parent(target: &Path) -> &Path {
    target
        .ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.exists() || a.is_symlink())
        .unwrap_or(Path::new("."))
}

/// Two flags given one file: the second would overwrite the first's file without a word.
/// What is not a regular file (`/dev/stdout`, a FIFO) takes both.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if std::fs::metadata(a).is_ok_and(|m| !m.is_file()) {
        return false;
    }
    let resolve = |p: &Path| {
        let abs = std::path::absolute(p).ok()?;
        // A dangling link is written through to its target: that is the file it names.
        let abs = match std::fs::read_link(&abs) {
            Ok(to) if !abs.exists() => abs.parent().map_or(to.clone(), |dir| dir.join(&to)),
            _ => abs,
        };
        Some(crate::manifest::reserved::resolved(&abs))
    };
    resolve(a).is_some_and(|ra| resolve(b).is_some_and(|rb| ra == rb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing_taken(root: &Path) -> Taken {
        Taken {
            root: root.to_path_buf(),
            paths: vec![("taskrun.toml".into(), "the manifest itself".into())],
            cache_dir: root.join(".taskrun/cache"),
        }
    }

    #[test]
    fn a_new_file_in_a_new_directory_is_fine_and_nothing_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/run.json");
        assert_eq!(check("--report", &path, &nothing_taken(dir.path())), Ok(()));
        assert!(!dir.path().join("reports").exists());
    }

    #[test]
    fn a_directory_a_path_under_a_file_stdout_and_the_manifest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::manifest::reserved::resolved(dir.path());
        let taken = nothing_taken(&root);
        let err = check("--junit", &root, &taken).unwrap_err();
        assert!(
            err.contains("--junit") && err.contains("is a directory"),
            "{err}"
        );
        let file = root.join("f");
        std::fs::write(&file, "x").unwrap();
        let err = check("--trace", &file.join("t.json"), &taken).unwrap_err();
        assert!(err.ends_with("f is not a directory"), "{err}");
        let err = check("--report", Path::new("-"), &taken).unwrap_err();
        assert!(err.contains("stdout"), "{err}");
        let err = check("--report", &root.join("taskrun.toml"), &taken).unwrap_err();
        assert!(err.ends_with("it is the manifest itself"), "{err}");
    }
}
