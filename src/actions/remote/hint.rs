//! Telling an undeclared input apart from a real failure. A command that works here and
//! fails on the cluster most often reads a file nobody declared: the worker's input root
//! holds only the task's `inputs` and its dependencies' outputs. When the failed action's
//! stderr says a file was not found, and that file exists here but was not sent, say so.

use std::collections::BTreeSet;
use std::path::Path;

use crate::model::RelPath;

/// What shells and programs print about a missing file (`cat`, `sh`/`dash`, `bash`, Python,
/// `source`, `make`).
const MARKERS: &[&str] = &[
    "No such file or directory",
    "No such file",
    "can't open",
    "cannot open",
    "not found",
    "does not exist",
];

/// The workspace paths named in `stderr` next to a "not found" message that exist under
/// `root` but are not among `sent` (the input root's paths); `cwd` is the command's working
/// directory, which relative names in messages are relative to.
pub fn unsent_files(
    stderr: &str,
    root: &Path,
    cwd: Option<&RelPath>,
    sent: &BTreeSet<&str>,
) -> Vec<String> {
    let mut found = Vec::new();
    for line in stderr
        .lines()
        .filter(|l| MARKERS.iter().any(|m| l.contains(m)))
    {
        for word in line.split(|c: char| {
            c.is_whitespace() || matches!(c, ':' | '\'' | '"' | '`' | '(' | ')' | ',' | '[' | ']')
        }) {
            let Some(rel) = workspace_path(word, cwd) else {
                continue;
            };
            if sent.contains(rel.as_str()) || found.contains(&rel) {
                continue;
            }
            let here = std::fs::symlink_metadata(root.join(&rel));
            if here.is_ok_and(|m| m.is_file() || m.is_symlink()) {
                found.push(rel);
            }
        }
    }
    found
}

/// The message for one unsent file.
pub fn message(path: &str) -> String {
    format!(
        "`{path}` exists here but was not sent: declare it in `inputs` (remote actions see \
         only declared inputs and their dependencies' outputs)"
    )
}

/// `word` as a workspace-relative path (under `cwd`), when it can be one: relative, inside
/// the workspace, not in taskrun's own state.
fn workspace_path(word: &str, cwd: Option<&RelPath>) -> Option<String> {
    let word = word.trim_end_matches(['.', ';']);
    if word.is_empty() || word.starts_with('/') || word.starts_with('-') {
        return None;
    }
    let mut parts: Vec<&str> = cwd
        .map(|c| c.as_str().split('/').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    for part in word.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let rel = parts.join("/");
    let ours = rel == ".taskrun" || rel.starts_with(".taskrun/");
    (!rel.is_empty() && !ours).then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_files_that_exist_here_but_were_not_sent() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/table.csv"), "x").unwrap();
        std::fs::write(root.join("notes.txt"), "x").unwrap();
        std::fs::write(root.join("sent.txt"), "x").unwrap();
        let sent = BTreeSet::from(["sent.txt"]);
        let stderr = "cat: data/table.csv: No such file or directory\n\
                      sh: 1: cannot open notes.txt: No such file\n\
                      cat: sent.txt: No such file or directory\n\
                      cat: missing.txt: No such file or directory\n\
                      cat: data/table.csv: No such file or directory\n";
        assert_eq!(
            unsent_files(stderr, root, None, &sent),
            ["data/table.csv", "notes.txt"]
        );
        let py = "FileNotFoundError: [Errno 2] No such file or directory: 'table.csv'";
        let cwd = RelPath::parse("data").unwrap();
        assert_eq!(
            unsent_files(py, root, Some(&cwd), &sent),
            ["data/table.csv"]
        );
        assert_eq!(
            unsent_files("sh: 1: ../notes.txt: not found", root, Some(&cwd), &sent),
            ["notes.txt"]
        );
        // No marker, an absolute path, or a path above the workspace: nothing.
        assert!(unsent_files("cat: notes.txt: Permission denied", root, None, &sent).is_empty());
        let abs = format!("cat: {}: No such file", root.join("notes.txt").display());
        assert!(unsent_files(&abs, root, None, &sent).is_empty());
        assert!(unsent_files("cat: ../x: No such file", root, None, &sent).is_empty());
        assert!(message("a b").starts_with("`a b` exists here but was not sent"));
    }
}
