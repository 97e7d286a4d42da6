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

/// The declared outputs' states before an attempt.
#[derive(Debug, Clone)]
pub struct Snapshot {
    entries: Vec<(PathBuf, State)>,
}

impl Snapshot {
    /// Records each output's existence, size and mtime.
    pub fn take(root: &Path, outputs: &[RelPath]) -> Self {
        Self {
            entries: outputs
                .iter()
                .map(|o| {
                    let p = root.join(o.as_str());
                    let s = state(&p);
                    (p, s)
                })
                .collect(),
        }
    }

    /// Deletes the outputs the attempt created or modified; returns what was deleted.
    ///
    /// A file is deleted when it is new or its size or mtime changed. A directory is deleted
    /// only when the attempt created it: a changed directory may hold files the user keeps.
    pub fn delete_changed(&self) -> Vec<PathBuf> {
        let mut deleted = Vec::new();
        for (path, before) in &self.entries {
            let after = state(path);
            if !after.exists {
                continue;
            }
            let created = !before.exists;
            let changed = created || (!after.is_dir && after != *before);
            if !changed {
                continue;
            }
            let res = if after.is_dir {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if res.is_ok() {
                deleted.push(path.clone());
            }
        }
        deleted
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
}
