//! Putting a record's outputs back on disk (a cache hit): only what the record may write,
//! only where it may write it, and the output directories made equal to their record.

use std::io;
use std::path::{Path, PathBuf};

use super::digest::from_hex;
use super::outputs::{Drift, drift_of, is_temp, is_the_file_recorded};
use super::record::ActionRecord;
use super::stat::StatCache;
use super::store::{BlobError, Store};
use crate::model::RelPath;
use crate::workspace::{Found, Workspace};

/// Why a record could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// It names a path its task does not declare (SPEC §13): rejected whole, nothing written.
    #[error("cache entry rejected: {0}")]
    Undeclared(String),
    /// A blob is missing or corrupt, or the disk failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl From<io::Error> for RestoreError {
    fn from(e: io::Error) -> Self {
        Self::Blob(BlobError::Io(e))
    }
}

/// Restores every recorded output that is missing or changed, each atomically with its
/// permission bits (`0o777` at most); matching files are left alone. Returns what was
/// restored.
///
/// The record must name only `declared` outputs (else nothing is touched); symlinks on the
/// way that lead outside the workspace are removed first (see [`crate::workspace`]).
pub fn restore(
    ws: &Workspace,
    record: &ActionRecord,
    declared: &[RelPath],
    stats: &StatCache,
    store: &Store,
) -> Result<Vec<(String, Drift)>, RestoreError> {
    record
        .check_declared(declared)
        .and_then(|()| record.check_shape())
        .map_err(RestoreError::Undeclared)?;
    let parse = |p: &str| {
        RelPath::parse(p).ok_or_else(|| RestoreError::Undeclared(format!("unsafe path {p}")))
    };
    for d in &record.output_dirs {
        let d = parse(d)?;
        remove_file_in_the_way(ws, d.as_str())?;
        if let Some(within) = declared.iter().find(|w| w.contains(d.as_str())) {
            clear_the_way_to_dir(ws, &d, within)?;
        }
        ws.open_dir(Some(d.as_str()), true)?;
    }
    let mut restored = Vec::new();
    // Directories written into: each is swept once of a killed restore's temp files.
    let mut swept = std::collections::HashSet::new();
    for o in &record.outputs {
        let rel = parse(&o.path)?;
        if is_the_file_recorded(ws, o, stats) {
            continue;
        }
        if let Some(within) = declared.iter().find(|d| d.contains(rel.as_str())) {
            clear_the_way(ws, &rel, within)?;
        }
        let found = Ok(ws.unlink_escapes(&rel)?);
        let Some(drift) = drift_of(ws, o, found, stats) else {
            continue;
        };
        let digest = from_hex(&o.sha256).ok_or_else(|| BlobError::Missing(o.sha256.clone()))?;
        let (dir, name) = ws.open_parent(&rel, true)?;
        if swept.insert(dir.path().to_path_buf()) {
            dir.remove_temp_files()?;
        }
        store.restore_blob(&digest, &dir, name, o.mode)?;
        stats.remember_written(&ws.root().join(&o.path), digest);
        restored.push((o.path.clone(), drift));
    }
    remove_unrecorded(ws, record);
    Ok(restored)
}

/// Makes the way from the declared output `within` to the recorded file `rel` one a restore
/// can write and may write. A record may write only inside its task's output, so a symlink
/// on the way that leads out of `within` (`out/g -> ../.git`, left by the user or by another
/// version of the task) is removed: the workspace's own check would let a restore through
/// it onto another place in the workspace. Links that stay inside the output are kept (the
/// snapshot followed them). A file where the record has a directory, or a directory where it
/// has a file, is in the task's own output and goes, as a run of the task would replace it.
fn clear_the_way(ws: &Workspace, rel: &RelPath, within: &RelPath) -> io::Result<()> {
    let mut parts = parts_below(rel, within);
    let Some(name) = parts.pop() else {
        return remove_dir_in_the_way(ws, &ws.root().join(within.as_str()));
    };
    match clear_dirs(ws, rel, within, &parts)? {
        Some(mut path) => {
            path.push(name);
            remove_dir_in_the_way(ws, &path)
        }
        None => Ok(()),
    }
}

/// [`clear_the_way`] for a recorded directory `dir` inside the output `within` (an empty
/// one, which the restore makes): every part of it must be a real directory or a link that
/// stays inside the output.
fn clear_the_way_to_dir(ws: &Workspace, dir: &RelPath, within: &RelPath) -> io::Result<()> {
    let parts = parts_below(dir, within);
    let Some((_, above)) = parts.split_last() else {
        return Ok(());
    };
    let Some(parent) = clear_dirs(ws, dir, within, above)? else {
        return Ok(());
    };
    // The record has a directory here: a link in its place (even one that stays inside the
    // output, whose target the sweep may remove) goes, and a real one is made.
    let path = parent.join(parts[parts.len() - 1]);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            tracing::debug!(
                "removed the symlink {}: the record has a directory there",
                show(ws, &path)
            );
            remove_entry(&path, false)
        }
        _ => Ok(()),
    }
}

/// The names of `rel` below the output `within` that contains it.
fn parts_below<'r>(rel: &'r RelPath, within: &RelPath) -> Vec<&'r str> {
    rel.as_str()
        .strip_prefix(within.as_str())
        .map(|b| b.trim_start_matches('/'))
        .unwrap_or_default()
        .split('/')
        .filter(|p| !p.is_empty())
        .collect()
}

/// Walks `parts` below `within`, removing a file where a directory must be and a link that
/// leads out of `within`. The path reached, when the walk got to its end through
/// directories that are there.
fn clear_dirs(
    ws: &Workspace,
    rel: &RelPath,
    within: &RelPath,
    parts: &[&str],
) -> io::Result<Option<PathBuf>> {
    let output = ws.root().join(within.as_str());
    let mut path = output.clone();
    // Resolved only when a link is met: most restores meet none, and pay no `realpath`.
    let mut real_within = None;
    for part in parts {
        path.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(None);
        };
        if meta.is_dir() {
            continue;
        }
        if !meta.file_type().is_symlink() {
            tracing::debug!(
                "removed the file {}: the record has a directory there",
                show(ws, &path)
            );
            return remove_entry(&path, false).map(|()| None);
        }
        let real = real_within.get_or_insert_with(|| std::fs::canonicalize(&output).ok());
        let stays = real
            .as_ref()
            .is_some_and(|real| std::fs::canonicalize(&path).is_ok_and(|t| t.starts_with(real)));
        if stays {
            continue;
        }
        let target = std::fs::read_link(&path).unwrap_or_default();
        remove_entry(&path, false)?;
        tracing::warn!(
            "removed the symlink {} (to {}): {rel} through it would land outside the output `{within}`",
            show(ws, &path),
            target.display()
        );
        return Ok(None);
    }
    Ok(Some(path))
}

/// Removes the real directory at `path`, where a recorded file goes.
fn remove_dir_in_the_way(ws: &Workspace, path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            tracing::debug!(
                "removed the directory {}: the record has a file there",
                show(ws, path)
            );
            remove_entry(path, true)
        }
        _ => Ok(()),
    }
}

/// Removes the real file at a recorded output directory's place.
fn remove_file_in_the_way(ws: &Workspace, dir: &str) -> io::Result<()> {
    let path = ws.root().join(dir);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {
            tracing::debug!("removed the file {dir}: the record has a directory there");
            remove_entry(&path, false)
        }
        _ => Ok(()),
    }
}

fn remove_entry(path: &Path, dir: bool) -> io::Result<()> {
    let removed = if dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn show(ws: &Workspace, path: &Path) -> String {
    path.strip_prefix(ws.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Deletes the files in a recorded output directory that the record does not hold: left by
/// another version of the task, they would make the directory differ from the result it
/// stands for (a fan-out over it would see them). Links are removed, never followed; a link
/// the recorded files lie under is kept.
fn remove_unrecorded(ws: &Workspace, record: &ActionRecord) {
    for entry in unrecorded(ws, record) {
        let shown = entry
            .path()
            .strip_prefix(ws.root())
            .unwrap_or(entry.path())
            .display();
        let removed = if entry.file_type().is_dir() {
            // Only an empty one: what is left in it is recorded (or a temp file).
            match std::fs::remove_dir(entry.path()) {
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => continue,
                other => other,
            }
        } else {
            std::fs::remove_file(entry.path())
        };
        match removed {
            Ok(()) => tracing::debug!("removed {shown}: not in the output directory's record"),
            Err(e) => {
                tracing::warn!("cannot remove {shown} from a restored output directory: {e}")
            }
        }
    }
}

/// What a restore of `record` sweeps from its output directories, deepest first: every
/// entry the record does not hold, nor lies under one it holds (temp files aside). An output
/// directory that is a link leads to what other people keep there, and is never swept.
/// `plan` asks too: a hit that would sweep something is not one with nothing to restore.
pub(crate) fn unrecorded(ws: &Workspace, record: &ActionRecord) -> Vec<walkdir::DirEntry> {
    let mut found = Vec::new();
    if record.output_dirs.is_empty() {
        return found;
    }
    let recorded: std::collections::HashSet<&str> =
        record.outputs.iter().map(|o| o.path.as_str()).collect();
    // Every directory a recorded file lies under (its parents), found in one pass.
    // Recorded directories (empty ones included) stay too.
    let parents: std::collections::HashSet<&str> = record
        .outputs
        .iter()
        .map(|o| o.path.as_str())
        .chain(record.output_dirs.iter().map(String::as_str))
        .flat_map(|p| p.match_indices('/').map(|(i, _)| &p[..i]))
        .chain(record.output_dirs.iter().map(String::as_str))
        .collect();
    let held = |rel: &str| recorded.contains(rel) || parents.contains(rel);
    // A directory inside another recorded one is walked with it, once.
    let nested = |d: &str| {
        let outer = record.output_dirs.iter();
        outer
            .filter(|o| o.as_str() != d)
            .any(|o| d.starts_with(&format!("{o}/")))
    };
    for d in record.output_dirs.iter().filter(|d| !nested(d)) {
        let Some(dir) = RelPath::parse(d) else {
            continue;
        };
        if !matches!(ws.look(&dir), Ok(Found::Entry(m)) if m.is_dir()) {
            continue;
        }
        let abs = ws.root().join(d);
        // The directory, or one it lies in, reached through a link: never swept.
        let linked = d
            .match_indices('/')
            .map(|(i, _)| &d[..i])
            .chain(std::iter::once(d.as_str()))
            .any(|p| {
                std::fs::symlink_metadata(ws.root().join(p))
                    .is_ok_and(|m| m.file_type().is_symlink())
            });
        if linked {
            tracing::debug!(
                "{d} is reached through a symlink: files the record does not hold are kept"
            );
            continue;
        }
        let walk = walkdir::WalkDir::new(&abs)
            .follow_links(false)
            .follow_root_links(false)
            .min_depth(1)
            .contents_first(true);
        for entry in walk.into_iter().flatten() {
            if is_temp(entry.file_name()) {
                continue;
            }
            // A name that is not UTF-8 is in no record (a run refuses to record one).
            let rel = entry
                .path()
                .strip_prefix(ws.root())
                .ok()
                .and_then(Path::to_str);
            if !rel.is_some_and(held) {
                found.push(entry);
            }
        }
    }
    found
}
