//! Expanding a task's `inputs` globs when it is about to run (its deps may create the files).
//!
//! `*` stays within one path component and `**` crosses them, like gitignore. Each pattern
//! walks only from its literal prefix, so `data/*.csv` does not read the whole workspace.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use globset::GlobBuilder;

use crate::cache::CacheError;
use crate::model::InputPattern;
use crate::workspace::TEMP_PREFIX;

/// The workspace's own state dir, never an input.
const STATE_DIR: &str = ".taskrun";

/// The result of expanding a task's input patterns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expanded {
    /// Matching files, root-relative with `/` separators, sorted, unique.
    pub files: Vec<String>,
    /// Required (non-`?`) patterns that matched nothing.
    pub unmatched: Vec<String>,
}

/// One input file of a task about to run: its root-relative path, and its `stat` when
/// expanding took one (a literal path), so the cache does not `stat` it a second time.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Root-relative path.
    pub path: PathBuf,
    /// The file's metadata, taken while expanding.
    pub meta: Option<Metadata>,
}

impl Expanded {
    /// The matched files as a lookup takes them (no `stat` kept: the cache takes its own).
    pub fn into_inputs(self) -> Vec<InputFile> {
        self.files
            .into_iter()
            .map(|f| InputFile::from(PathBuf::from(f)))
            .collect()
    }
}

impl From<PathBuf> for InputFile {
    fn from(path: PathBuf) -> Self {
        Self { path, meta: None }
    }
}

/// Expands `patterns` under `root` into sorted, de-duplicated files relative to `root`.
/// Neither `.taskrun/` nor the cache dir (`cache_dir`, wherever `[cache] dir` puts it) is
/// ever walked: the store changes with every run, and as an input it would make every run
/// a miss.
///
/// A pattern that matches no file is an error unless it is optional (`?`-prefixed).
pub fn expand(
    root: &Path,
    cache_dir: &Path,
    patterns: &[InputPattern],
) -> Result<Vec<InputFile>, CacheError> {
    let (mut found, unmatched) = collect(root, cache_dir, patterns, std::iter::empty())?;
    if let Some(glob) = unmatched.first() {
        if root.join(glob).is_dir() {
            return Err(CacheError::InputIsDir(glob.clone()));
        }
        return Err(CacheError::NoInputMatch(glob.clone()));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    Ok(found
        .into_iter()
        .map(|(path, meta)| InputFile {
            path: PathBuf::from(path),
            meta,
        })
        .collect())
}

/// Expands `patterns`, also matching `extra` root-relative paths that do not exist yet but
/// will when the task runs (`plan` passes the outputs a predicted hit will restore).
pub fn expand_with<'a>(
    root: &Path,
    cache_dir: &Path,
    patterns: &[InputPattern],
    extra: impl Iterator<Item = &'a str> + Clone,
) -> Result<Expanded, CacheError> {
    let (found, unmatched) = collect(root, cache_dir, patterns, extra)?;
    let mut files: Vec<String> = found.into_iter().map(|(path, _)| path).collect();
    files.sort();
    files.dedup();
    Ok(Expanded { files, unmatched })
}

type Found = Vec<(String, Option<Metadata>)>;

/// Every match of every pattern (unsorted), and the required patterns that matched nothing.
fn collect<'a>(
    root: &Path,
    cache_dir: &Path,
    patterns: &[InputPattern],
    extra: impl Iterator<Item = &'a str> + Clone,
) -> Result<(Found, Vec<String>), CacheError> {
    let mut files: Found = Vec::new();
    let mut unmatched = Vec::new();
    for pattern in patterns {
        let before = files.len();
        if is_literal(&pattern.glob) {
            // A plain path (the common case) is one stat, not a directory walk.
            match super::stat::metadata(&root.join(&pattern.glob)) {
                Ok(meta) if meta.is_file() => files.push((pattern.glob.clone(), Some(meta))),
                _ if extra.clone().any(|e| e == pattern.glob) => {
                    files.push((pattern.glob.clone(), None));
                }
                _ => {}
            }
        } else {
            let glob = GlobBuilder::new(&pattern.glob)
                .literal_separator(true)
                .build()
                .map_err(|e| CacheError::BadPattern {
                    glob: pattern.glob.clone(),
                    reason: e.to_string(),
                })?
                .compile_matcher();
            walk(root, cache_dir, pattern, &glob, &mut files)?;
            files.extend(
                extra
                    .clone()
                    .filter(|e| glob.is_match(e))
                    .map(|e| (e.to_string(), None)),
            );
        }
        if files.len() == before && !pattern.optional {
            unmatched.push(pattern.glob.clone());
        }
    }
    Ok((files, unmatched))
}

fn is_literal(glob: &str) -> bool {
    !glob.contains(['*', '?', '[', '{', '\\'])
}

/// `cache_dir` with its links resolved, found once per process: a run of 10,000 tasks with
/// globs walks 10,000 times, always beside the same cache dir.
fn resolved_cache_dir(cache_dir: &Path) -> Option<PathBuf> {
    static FOUND: std::sync::Mutex<Option<(PathBuf, Option<PathBuf>)>> =
        std::sync::Mutex::new(None);
    let mut found = FOUND
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*found {
        Some((dir, real)) if dir == cache_dir => real.clone(),
        _ => {
            let real = std::fs::canonicalize(cache_dir).ok();
            *found = Some((cache_dir.to_path_buf(), real.clone()));
            real
        }
    }
}

fn walk(
    root: &Path,
    cache_dir: &Path,
    pattern: &InputPattern,
    glob: &globset::GlobMatcher,
    found: &mut Found,
) -> Result<(), CacheError> {
    let start = root.join(literal_prefix(&pattern.glob));
    if !start.exists() {
        return Ok(());
    }
    // The cache dir as it is spelled and as it resolves (`[cache] dir` may name a link).
    let real_cache = resolved_cache_dir(cache_dir);
    let is_cache = |e: &walkdir::DirEntry| {
        e.path() == cache_dir
            || real_cache.as_ref().is_some_and(|real| {
                e.path() == real
                    || (e.path_is_symlink()
                        && std::fs::canonicalize(e.path()).is_ok_and(|p| p == *real))
            })
    };
    let walker = walkdir::WalkDir::new(&start)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            let state = e.file_type().is_dir()
                && (is_cache(e)
                    || e.path()
                        .strip_prefix(root)
                        .is_ok_and(|rel| rel == Path::new(STATE_DIR)));
            // An interrupted write's temp file is never an input (SPEC §13, leftovers).
            let temp = e
                .file_name()
                .as_encoded_bytes()
                .starts_with(TEMP_PREFIX.as_bytes());
            !state && !temp
        });
    for entry in walker {
        let entry = entry.map_err(|e| CacheError::ReadingInputs {
            glob: pattern.glob.clone(),
            reason: e.to_string(),
        })?;
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
            found.push((rel_str, None));
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

    /// A cache dir outside the tree walked.
    const NO_CACHE_DIR: &str = "/nonexistent-cache";

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
            "scripts/.taskrun-tmp-0123456789abcdef.py",
        ] {
            touch(d.path(), f);
        }
        let got = expand(
            d.path(),
            Path::new(NO_CACHE_DIR),
            &[pat("data/*.csv", false), pat("**/*.py", false)],
        )
        .unwrap();
        let got: Vec<String> = got.iter().map(|p| p.path.display().to_string()).collect();
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
        let got = expand(
            d.path(),
            Path::new(NO_CACHE_DIR),
            &[pat("a.txt", false), pat("*.txt", false)],
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, PathBuf::from("a.txt"));
        assert!(
            got[0].meta.is_some(),
            "a literal path keeps the stat it was found with"
        );
    }

    #[test]
    fn nothing_matched_is_an_error_unless_optional() {
        let d = tempfile::tempdir().unwrap();
        let err = expand(
            d.path(),
            Path::new(NO_CACHE_DIR),
            &[pat("missing/*.csv", false)],
        )
        .unwrap_err();
        assert!(
            matches!(&err, CacheError::NoInputMatch(glob) if glob == "missing/*.csv"),
            "{err}"
        );
        assert!(
            expand(
                d.path(),
                Path::new(NO_CACHE_DIR),
                &[pat("missing/*.csv", true)]
            )
            .unwrap()
            .is_empty()
        );
    }

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
        let e = expand_with(
            r,
            Path::new(NO_CACHE_DIR),
            &pats(&["data/*.csv", "scripts/**/*.py", "?none/*", "gone/*"]),
            ["data/new.csv"].into_iter(),
        )
        .unwrap();
        assert_eq!(
            e.files,
            vec!["data/a.csv", "data/b.csv", "data/new.csv", "scripts/x/y.py"]
        );
        assert_eq!(e.unmatched, vec!["gone/*".to_string()]);
        let all = expand_with(
            r,
            Path::new(NO_CACHE_DIR),
            &pats(&["**/*.csv"]),
            std::iter::empty(),
        )
        .unwrap();
        assert_eq!(all.files.len(), 3, "{:?}", all.files);
    }
}
