//! Declared outputs on disk: snapshot them into the store after a success, check them against
//! a record, restore the missing or changed ones.

use std::fs;
use std::io;
use std::path::Path;

use super::digest::{from_hex, to_hex};
use super::record::{ActionRecord, OutputFile};
use super::stat::{FileStat, StatCache};
use super::store::{BlobError, Store};
use crate::model::RelPath;

/// What a task produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every produced file (directory outputs expanded), sorted by path.
    pub files: Vec<OutputFile>,
    /// Declared outputs that are directories.
    pub dirs: Vec<String>,
}

fn rel_string(root: &Path, abs: &Path) -> Result<String, String> {
    abs.strip_prefix(root)
        .ok()
        .and_then(|p| p.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "output path {} is not valid UTF-8 under the workspace",
                abs.display()
            )
        })
}

/// Hashes every declared output and, with a `store`, copies it in (one read per file that
/// is new to the store). A declared output that does not exist is an error: the task said
/// it would produce it.
pub fn snapshot(
    root: &Path,
    declared: &[RelPath],
    stats: &StatCache,
    store: Option<&Store>,
) -> Result<Snapshot, String> {
    let mut snap = Snapshot::default();
    for out in declared {
        let abs = root.join(out.as_str());
        let meta = match fs::metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!("declared output {out} was not created"));
            }
            Err(e) => return Err(format!("output {out}: {e}")),
        };
        if meta.is_dir() {
            snap.dirs.push(out.as_str().to_string());
            for entry in walkdir::WalkDir::new(&abs)
                .follow_links(true)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| format!("output {out}: {e}"))?;
                if entry.file_type().is_file() {
                    let rel = rel_string(root, entry.path())?;
                    snap.files
                        .push(snapshot_file(entry.path(), rel, stats, store)?);
                }
            }
        } else {
            snap.files
                .push(snapshot_file(&abs, out.as_str().to_string(), stats, store)?);
        }
    }
    snap.files.sort_by(|a, b| a.path.cmp(&b.path));
    snap.files.dedup_by(|a, b| a.path == b.path);
    Ok(snap)
}

fn snapshot_file(
    abs: &Path,
    rel: String,
    stats: &StatCache,
    store: Option<&Store>,
) -> Result<OutputFile, String> {
    let err = |e: io::Error| format!("output {rel}: {e}");
    let meta = fs::metadata(abs).map_err(err)?;
    let st = FileStat::of(&meta);
    let known = stats.cached(abs, &st);
    let digest = match (store, known) {
        (Some(store), known) => {
            let taken = crate::cache::stat::now_ns();
            let (d, _) = store.put_file(abs, known).map_err(err)?;
            if known.is_none() {
                stats.insert(abs, st, taken, d);
            }
            d
        }
        (None, Some(d)) => d,
        (None, None) => stats.digest(abs).map_err(err)?.0,
    };
    Ok(OutputFile {
        path: rel,
        sha256: to_hex(&digest),
        size: st.size,
        mode: st.mode,
    })
}

/// Why an output must be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// Not on disk.
    Missing,
    /// On disk with other content or executable bit.
    Changed,
}

impl Drift {
    /// `missing` / `changed`, as used in reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Drift::Missing => "missing",
            Drift::Changed => "changed",
        }
    }
}

fn drift(root: &Path, o: &OutputFile, stats: &StatCache) -> Option<Drift> {
    let abs = root.join(&o.path);
    let meta = match super::stat::metadata(&abs) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Some(Drift::Changed),
        Err(_) => return Some(Drift::Missing),
    };
    let exec_same = (FileStat::of(&meta).mode & 0o111 != 0) == (o.mode & 0o111 != 0);
    match stats.digest_with(&abs, &meta) {
        Ok((d, _)) if exec_same && to_hex(&d) == o.sha256 => None,
        _ => Some(Drift::Changed),
    }
}

/// Recorded outputs that differ from the disk (read-only; for `plan` and `explain`).
pub fn check(root: &Path, record: &ActionRecord, stats: &StatCache) -> Vec<(String, Drift)> {
    record
        .outputs
        .iter()
        .filter_map(|o| drift(root, o, stats).map(|d| (o.path.clone(), d)))
        .collect()
}

/// Restores every recorded output that is missing or changed, each atomically with its
/// permission bits; matching files are left alone. Returns what was restored.
pub fn restore(
    root: &Path,
    record: &ActionRecord,
    stats: &StatCache,
    store: &Store,
) -> Result<Vec<(String, Drift)>, BlobError> {
    for d in &record.output_dirs {
        fs::create_dir_all(root.join(d))?;
    }
    let mut restored = Vec::new();
    for o in &record.outputs {
        let Some(drift) = drift(root, o, stats) else {
            continue;
        };
        let digest = from_hex(&o.sha256).ok_or_else(|| BlobError::Missing(o.sha256.clone()))?;
        let abs = root.join(&o.path);
        store.restore_blob(&digest, &abs, o.mode)?;
        stats.remember_written(&abs, digest);
        restored.push((o.path.clone(), drift));
    }
    Ok(restored)
}
