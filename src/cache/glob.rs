//! Input glob expansion for `plan`/`explain` predictions.
//!
//! Stand-in until the scheduler's `crate::cache::inputs::expand` lands; then this file goes
//! and [`expand`] calls that. Each glob is walked from its literal prefix (`data/*.csv` walks
//! `data/` only); `.taskrun/` is never an input.

use std::collections::BTreeSet;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::model::InputPattern;

/// The result of expanding a task's input patterns.
#[derive(Debug, Default)]
pub struct Expanded {
    /// Matching files, root-relative, sorted, unique.
    pub files: Vec<String>,
    /// Required (non-`?`) patterns that matched nothing.
    pub unmatched: Vec<String>,
}

fn matcher(glob: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("input pattern `{glob}`: {e}"))
}

fn literal_prefix(glob: &str) -> String {
    let mut parts = Vec::new();
    let comps: Vec<&str> = glob.split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        if i + 1 == comps.len() || c.contains(['*', '?', '[', '{']) {
            break;
        }
        parts.push(*c);
    }
    parts.join("/")
}

/// Expands `patterns` against the files under `root`, plus `extra` root-relative paths that
/// will exist by the time the task runs (outputs a predicted hit will restore).
pub fn expand<'a>(
    root: &Path,
    patterns: &[InputPattern],
    extra: impl Iterator<Item = &'a str> + Clone,
) -> Result<Expanded, String> {
    let mut files = BTreeSet::new();
    let mut unmatched = Vec::new();
    for pat in patterns {
        let m = matcher(&pat.glob)?;
        let before = files.len();
        let mut found = false;
        let start = root.join(literal_prefix(&pat.glob));
        let walker = walkdir::WalkDir::new(&start)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".taskrun");
        for entry in walker.flatten() {
            if !entry.file_type().is_file() {
                continue;
            }
            if let Some(rel) = entry
                .path()
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                && m.is_match(rel)
            {
                found = true;
                files.insert(rel.to_string());
            }
        }
        for e in extra.clone() {
            if m.is_match(e) {
                found = true;
                files.insert(e.to_string());
            }
        }
        if !found && files.len() == before && !pat.optional {
            unmatched.push(pat.glob.clone());
        }
    }
    Ok(Expanded {
        files: files.into_iter().collect(),
        unmatched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_from_the_literal_prefix_and_reports_unmatched() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "data/a.csv",
            "data/b.csv",
            "data/sub/c.csv",
            "scripts/x/y.py",
            ".taskrun/cache/z.csv",
        ] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), "x").unwrap();
        }
        let pats = |gs: &[&str]| -> Vec<InputPattern> {
            gs.iter()
                .map(|g| InputPattern {
                    glob: g.trim_start_matches('?').into(),
                    optional: g.starts_with('?'),
                })
                .collect()
        };
        let e = expand(
            r,
            &pats(&["data/*.csv", "scripts/**/*.py", "?none/*", "gone/*"]),
            ["data/new.csv"].into_iter(),
        )
        .unwrap();
        assert_eq!(
            e.files,
            vec!["data/a.csv", "data/b.csv", "data/new.csv", "scripts/x/y.py"]
        );
        assert_eq!(e.unmatched, vec!["gone/*".to_string()]);
        let all = expand(r, &pats(&["**/*.csv"]), std::iter::empty()).unwrap();
        assert_eq!(all.files.len(), 3, "{:?}", all.files);
    }
}
