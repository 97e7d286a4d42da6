//! Expanding a task's `inputs` globs when it is about to run (its deps may create the files).
//!
//! `*` stays within one path component and `**` crosses them, like gitignore. Each pattern
//! walks only from its literal prefix, so `data/*.csv` does not read the whole workspace.

use std::path::{Path, PathBuf};

use globset::GlobBuilder;

use crate::cache::CacheError;
use crate::model::InputPattern;

/// The workspace's own state dir, never an input.
const STATE_DIR: &str = ".taskrun";

/// Expands `patterns` under `root` into sorted, de-duplicated file paths relative to `root`.
///
/// A pattern that matches no file is an error unless it is optional (`?`-prefixed).
pub fn expand(root: &Path, patterns: &[InputPattern]) -> Result<Vec<PathBuf>, CacheError> {
    let mut found: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let before = found.len();
        expand_one(root, pattern, &mut found)?;
        if found.len() == before && !pattern.optional {
            return Err(CacheError(format!(
                "input pattern `{}` matches no file (prefix it with `?` if that is fine)",
                pattern.glob
            )));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn expand_one(
    root: &Path,
    pattern: &InputPattern,
    found: &mut Vec<PathBuf>,
) -> Result<(), CacheError> {
    let glob = GlobBuilder::new(&pattern.glob)
        .literal_separator(true)
        .build()
        .map_err(|e| CacheError(format!("bad input pattern `{}`: {e}", pattern.glob)))?
        .compile_matcher();
    let prefix = literal_prefix(&pattern.glob);
    let start = root.join(&prefix);
    if !start.exists() {
        return Ok(());
    }
    let walker = walkdir::WalkDir::new(&start)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            e.path()
                .strip_prefix(root)
                .map(|rel| rel != Path::new(STATE_DIR))
                .unwrap_or(true)
        });
    for entry in walker {
        let entry =
            entry.map_err(|e| CacheError(format!("reading inputs `{}`: {e}", pattern.glob)))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel_str: String = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if glob.is_match(&rel_str) {
            found.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// The directories before the first component holding a glob metacharacter.
fn literal_prefix(glob: &str) -> PathBuf {
    let mut prefix = PathBuf::new();
    let parts: Vec<&str> = glob.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last || part.contains(['*', '?', '[', '{', '\\']) {
            break;
        }
        prefix.push(part);
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(glob: &str, optional: bool) -> InputPattern {
        InputPattern {
            glob: glob.into(),
            optional,
        }
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    #[test]
    fn star_stays_in_one_dir_and_double_star_crosses() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "data/a.csv",
            "data/b.csv",
            "data/sub/c.csv",
            "scripts/x.py",
            "scripts/deep/y/z.py",
            ".taskrun/cache/q.py",
        ] {
            touch(d.path(), f);
        }
        let got = expand(d.path(), &[pat("data/*.csv", false), pat("**/*.py", false)]).unwrap();
        let got: Vec<String> = got.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            got,
            vec![
                "data/a.csv",
                "data/b.csv",
                "scripts/deep/y/z.py",
                "scripts/x.py"
            ]
        );
    }

    #[test]
    fn exact_file_and_overlaps_are_deduplicated() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "a.txt");
        let got = expand(d.path(), &[pat("a.txt", false), pat("*.txt", false)]).unwrap();
        assert_eq!(got, vec![PathBuf::from("a.txt")]);
    }

    #[test]
    fn nothing_matched_is_an_error_unless_optional() {
        let d = tempfile::tempdir().unwrap();
        let err = expand(d.path(), &[pat("missing/*.csv", false)]).unwrap_err();
        assert!(err.0.contains("missing/*.csv"), "{err}");
        assert!(
            expand(d.path(), &[pat("missing/*.csv", true)])
                .unwrap()
                .is_empty()
        );
    }
}
