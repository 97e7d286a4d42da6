//! Declared outputs before and after an attempt, so a failed attempt's leftovers can be
//! deleted (like make's `.DELETE_ON_ERROR`) without touching what it did not write.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::model::RelPath;
use crate::workspace::Workspace;

/// Removes every symlink at a declared output, or at one of its parent directories, that
/// leads outside the workspace (SPEC §13), so that the attempt about to run cannot write
/// through it. The warning names each one removed.
///
/// It also deletes the temp files a killed restore left beside an output or inside an output
/// directory ([`crate::workspace::TEMP_PREFIX`]): the command is about to write there, and a
/// stray file would otherwise stay in the user's tree (a restore sweeps the directories it
/// writes into; a command that runs instead must too).
pub fn unlink_escapes(root: &Path, outputs: &[RelPath]) -> Result<(), String> {
    let ws = Workspace::new(root);
    for out in outputs {
        let found = ws
            .unlink_escapes(out)
            .map_err(|e| format!("cannot check output {out} for symlinks: {e}"))?;
        remove_temp_files(&ws, out, &found);
    }
    Ok(())
}

/// Best effort: a temp file that cannot be removed is left for the next restore's sweep.
fn remove_temp_files(ws: &Workspace, out: &RelPath, found: &crate::workspace::Found) {
    if let Ok((parent, _)) = ws.open_parent(out, false) {
        let _ = parent.remove_temp_files();
    }
    if let crate::workspace::Found::Entry(m) = found
        && m.is_dir()
    {
        let dir = ws.root().join(out.as_str());
        for entry in walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            let temp = entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(crate::workspace::TEMP_PREFIX.as_bytes());
            if temp && entry.file_type().is_file() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// What one declared output looked like before an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    exists: bool,
    is_dir: bool,
    modified: Option<SystemTime>,
    len: u64,
}

fn state(path: &Path) -> State {
    match std::fs::symlink_metadata(path) {
        Ok(m) => State {
            exists: true,
            is_dir: m.is_dir(),
            modified: m.modified().ok(),
            len: m.len(),
        },
        Err(_) => State {
            exists: false,
            is_dir: false,
            modified: None,
            len: 0,
        },
    }
}

/// The entries inside an output directory that existed before the attempt, by path.
type Contents = std::collections::HashMap<PathBuf, State>;

/// Every entry under `dir` (links not followed).
fn contents(dir: &Path) -> Contents {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = state(e.path());
            (e.into_path(), s)
        })
        .collect()
}

/// The declared outputs' states before an attempt.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The workspace.
    root: PathBuf,
    /// The declared outputs, as declared.
    outputs: Vec<RelPath>,
    /// Each output, its state and, for a directory, what was in it.
    entries: Vec<(PathBuf, State, Option<Contents>)>,
}

impl Snapshot {
    /// Records each output's existence, size and mtime, and those of everything inside an
    /// output directory.
    pub fn take(root: &Path, outputs: &[RelPath]) -> Self {
        Self {
            root: root.to_path_buf(),
            outputs: outputs.to_vec(),
            entries: outputs
                .iter()
                .map(|o| {
                    let p = root.join(o.as_str());
                    let s = state(&p);
                    let inside = s.is_dir.then(|| contents(&p));
                    (p, s, inside)
                })
                .collect(),
        }
    }

    /// Deletes what the attempt created or modified at the outputs; returns what was deleted.
    ///
    /// A file is deleted when it is new or its size or mtime changed. A directory the attempt
    /// created goes whole; in one that was there before, only the entries the attempt added
    /// or changed go: the others may be the user's, or the last good result's.
    ///
    /// A symlink the attempt left at an output or on the way to one, leading outside the
    /// workspace, is removed, never followed (SPEC §13): `ln -s /elsewhere out; ...; exit 1`
    /// must not cost a file that was there.
    pub fn delete_changed(&self) -> Vec<PathBuf> {
        let ws = Workspace::new(&self.root);
        let mut deleted = Vec::new();
        for (out, (path, before, inside)) in self.outputs.iter().zip(&self.entries) {
            if let Err(e) = ws.unlink_escapes(out) {
                tracing::warn!("not deleting output {out}: cannot check it for symlinks: {e}");
                continue;
            }
            let after = state(path);
            if !after.exists {
                continue;
            }
            if let (true, Some(inside)) = (after.is_dir, inside) {
                delete_changed_inside(path, inside, &mut deleted);
                continue;
            }
            let created = !before.exists;
            let changed = created || (!after.is_dir && after != *before);
            if !changed {
                continue;
            }
            if remove(path, after.is_dir).is_ok() {
                deleted.push(path.clone());
            }
        }
        deleted
    }
}

fn remove(path: &Path, is_dir: bool) -> std::io::Result<()> {
    if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Deletes the entries of `dir` that are not in `before` or whose file changed.
fn delete_changed_inside(dir: &Path, before: &Contents, deleted: &mut Vec<PathBuf>) {
    let mut walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .into_iter();
    while let Some(Ok(entry)) = walk.next() {
        let is_dir = entry.file_type().is_dir();
        let stale = match before.get(entry.path()) {
            None => true,
            Some(was) => was.is_dir != is_dir || (!is_dir && state(entry.path()) != *was),
        };
        if !stale {
            continue;
        }
        if is_dir {
            walk.skip_current_dir();
        }
        if remove(entry.path(), is_dir).is_ok() {
            deleted.push(entry.into_path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_new_and_modified_files_but_keeps_untouched_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("kept"), "old").unwrap();
        std::fs::write(root.join("modified"), "old").unwrap();
        let outs: Vec<RelPath> = ["kept", "modified", "new", "newdir", "absent"]
            .iter()
            .map(|s| RelPath::parse(s).unwrap())
            .collect();
        let snap = Snapshot::take(root, &outs);
        std::fs::write(root.join("modified"), "new longer").unwrap();
        std::fs::write(root.join("new"), "x").unwrap();
        std::fs::create_dir(root.join("newdir")).unwrap();
        std::fs::write(root.join("newdir/f"), "x").unwrap();
        let mut deleted = snap.delete_changed();
        deleted.sort();
        assert_eq!(
            deleted,
            vec![root.join("modified"), root.join("new"), root.join("newdir")]
        );
        assert!(root.join("kept").exists());
    }

    #[test]
    fn in_a_directory_that_was_there_only_what_the_attempt_wrote_goes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("out/keep")).unwrap();
        std::fs::write(root.join("out/a.txt"), "a").unwrap();
        std::fs::write(root.join("out/b.txt"), "b").unwrap();
        std::fs::write(root.join("out/keep/k.txt"), "k").unwrap();
        let snap = Snapshot::take(root, &[RelPath::parse("out").unwrap()]);
        std::fs::write(root.join("out/a.txt"), "a3 longer").unwrap();
        std::fs::write(root.join("out/c.txt"), "half").unwrap();
        std::fs::create_dir_all(root.join("out/new/deep")).unwrap();
        std::fs::write(root.join("out/new/deep/x"), "x").unwrap();
        // A file the attempt replaced with a directory goes too.
        std::fs::remove_file(root.join("out/b.txt")).unwrap();
        std::fs::create_dir(root.join("out/b.txt")).unwrap();
        let mut deleted = snap.delete_changed();
        deleted.sort();
        let out = root.join("out");
        assert_eq!(
            deleted,
            vec![
                out.join("a.txt"),
                out.join("b.txt"),
                out.join("c.txt"),
                out.join("new")
            ]
        );
        assert!(!out.join("b.txt").exists());
        assert!(out.join("keep/k.txt").exists());
    }
}
