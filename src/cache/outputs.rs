//! Declared outputs on disk: snapshot them into the store after a success, check them against
//! a record, restore the missing or changed ones.

use std::io;
use std::path::{Path, PathBuf};

use super::Digest;
use super::digest::{from_hex, hash_file, to_hex};
use super::record::{ActionRecord, OutputFile};
use super::stat::{FileStat, StatCache};
use super::store::Store;
use crate::model::RelPath;
use crate::workspace::{Found, TEMP_PREFIX, Workspace};

pub use super::restore::{RestoreError, restore};

/// What a task produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every produced file (directory outputs expanded), sorted by path.
    pub files: Vec<OutputFile>,
    /// Declared outputs that are directories.
    pub dirs: Vec<String>,
    /// Why the store could not take every file (full, read-only): the outputs are still
    /// hashed, but the result must not be recorded.
    pub unstored: Option<String>,
}

/// The store files go to, until one write fails: then the rest are only hashed.
struct Storing<'a> {
    store: Option<&'a Store>,
    failed: Option<String>,
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

/// An output file whose writer hashed it on the way (a download's streamed sha256), so the
/// snapshot need not read it back. Trusted only while the file's `stat` is still the one
/// taken when the writer put it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenOutput<'a> {
    /// Absolute path, as the workspace root joined with the declared output.
    pub path: &'a Path,
    /// sha256 of the content written.
    pub digest: Digest,
    /// The file's `stat` right after it was written and moved into place.
    pub stat: FileStat,
}

/// [`WrittenOutput`] with its path owned, to travel from the action to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Absolute path.
    pub path: PathBuf,
    /// sha256 of the content written.
    pub digest: Digest,
    /// The file's `stat` right after it was written and moved into place.
    pub stat: FileStat,
}

impl WrittenFile {
    /// The borrowed form `snapshot` takes.
    pub fn as_output(&self) -> WrittenOutput<'_> {
        WrittenOutput {
            path: &self.path,
            digest: self.digest,
            stat: self.stat,
        }
    }
}

/// The error for declared outputs a task did not make, naming each.
pub fn not_created(missing: &[&RelPath]) -> String {
    match missing {
        [one] => format!("declared output {one} was not created"),
        many => {
            let names: Vec<&str> = many.iter().map(|m| m.as_str()).collect();
            format!("declared outputs {} were not created", names.join(", "))
        }
    }
}

/// Hashes every declared output and, with a `store`, copies it in (one read per file that
/// is new to the store; none to hash a `written` file that is unchanged since its writer
/// hashed it). A declared output that does not exist is an error: the task said it would
/// produce it. So is one reached through a symlink that leads outside the workspace: it is
/// never read into the cache (SPEC §13). Modes are kept as `0o777` bits at most.
pub fn snapshot(
    ws: &Workspace,
    declared: &[RelPath],
    stats: &StatCache,
    store: Option<&Store>,
    written: Option<WrittenOutput<'_>>,
) -> Result<Snapshot, String> {
    let root = ws.root();
    let mut snap = Snapshot::default();
    let mut storing = Storing {
        store,
        failed: None,
    };
    let mut missing = Vec::new();
    for out in declared {
        let abs = root.join(out.as_str());
        let meta = match ws.look(out) {
            Ok(Found::Entry(m)) => m,
            Ok(Found::Missing) => {
                missing.push(out);
                continue;
            }
            Ok(Found::Escape(link)) => return Err(escapes(root, out.as_str(), &link)),
            Err(e) => return Err(format!("output {out}: {e}")),
        };
        // A FIFO, socket or device is no file to keep: opening a FIFO would wait forever.
        if !meta.is_dir() && !meta.is_file() {
            return Err(format!(
                "declared output {out} is not a regular file or a directory"
            ));
        }
        if meta.is_dir() {
            snap.dirs.push(out.as_str().to_string());
            let first_file = snap.files.len();
            let mut inner_dirs = Vec::new();
            let walk = walkdir::WalkDir::new(&abs)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| !is_temp(e.file_name()));
            for entry in walk {
                let entry = entry.map_err(|e| format!("output {out}: {e}"))?;
                if entry.path_is_symlink() && !ws.leads_inside(entry.path()) {
                    let rel = rel_string(root, entry.path())?;
                    return Err(escapes(root, &rel, entry.path()));
                }
                if entry.file_type().is_file() {
                    let rel = rel_string(root, entry.path())?;
                    let meta = entry.metadata().map_err(|e| format!("output {rel}: {e}"))?;
                    let file =
                        snapshot_file(entry.path(), &meta, rel, stats, &mut storing, written)?;
                    snap.files.push(file);
                } else if entry.file_type().is_dir() && entry.depth() > 0 {
                    inner_dirs.push(rel_string(root, entry.path())?);
                }
            }
            snap.dirs
                .extend(empty_dirs(inner_dirs, &snap.files[first_file..]));
        } else {
            let rel = out.as_str().to_string();
            snap.files.push(snapshot_file(
                &abs,
                &meta,
                rel,
                stats,
                &mut storing,
                written,
            )?);
        }
    }
    if !missing.is_empty() {
        return Err(not_created(&missing));
    }
    snap.unstored = storing.failed;
    snap.files.sort_by(|a, b| a.path.cmp(&b.path));
    snap.files.dedup_by(|a, b| a.path == b.path);
    Ok(snap)
}

/// The directories of `dirs` that no file of `files` lies under: recorded with the output
/// directory, a restore makes them (a `site/uploads/` the task creates empty is part of its
/// result).
fn empty_dirs(dirs: Vec<String>, files: &[OutputFile]) -> Vec<String> {
    let parents: std::collections::HashSet<&str> = files
        .iter()
        .flat_map(|f| f.path.match_indices('/').map(|(i, _)| &f.path[..i]))
        .collect();
    dirs.into_iter()
        .filter(|d| !parents.contains(d.as_str()))
        .collect()
}

fn escapes(root: &Path, out: &str, link: &Path) -> String {
    let shown = link.strip_prefix(root).unwrap_or(link);
    format!(
        "output {out} is reached through the symlink {}, which leads outside the workspace; \
         it is not read into the cache",
        shown.display()
    )
}

/// A temp file of an interrupted write ([`TEMP_PREFIX`]): never part of an output.
pub(super) fn is_temp(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

fn snapshot_file(
    abs: &Path,
    meta: &std::fs::Metadata,
    rel: String,
    stats: &StatCache,
    storing: &mut Storing<'_>,
    written: Option<WrittenOutput<'_>>,
) -> Result<OutputFile, String> {
    let err = |e: io::Error| format!("output {rel}: {e}");
    let st = FileStat::of(meta);
    let recorded = stats.cached(abs, &st);
    let known = recorded.or_else(|| {
        written
            .filter(|w| w.path == abs && w.stat == st)
            .map(|w| w.digest)
    });
    let taken = crate::cache::stat::now_ns();
    let stored = match storing.store {
        Some(store) => match store.put_file(abs, known) {
            Ok((d, _)) => Some(d),
            Err(e) => {
                // A write into the store failed, or reading the output did: hashing it
                // alone tells which (only the latter fails the task).
                storing.store = None;
                storing.failed = Some(format!("output {rel}: {e}"));
                None
            }
        },
        None => None,
    };
    let digest = match (stored, known) {
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => hash_file(abs).map_err(err)?.0,
    };
    if recorded.is_none() {
        stats.insert(abs, st, taken, digest);
    }
    Ok(OutputFile {
        path: rel,
        sha256: to_hex(&digest),
        size: st.size,
        mode: st.mode & 0o777,
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

fn drift(ws: &Workspace, o: &OutputFile, stats: &StatCache) -> Option<Drift> {
    match RelPath::parse(&o.path) {
        Some(rel) => drift_of(ws, o, ws.look(&rel), stats),
        None => Some(Drift::Changed),
    }
}

/// The fast path of a cache hit: one `stat` finds at `o`'s path the very file taskrun last
/// hashed there (same inode, size, mtime and ctime in the stat cache), with the recorded
/// digest and executable bit. Nothing is read and nothing written, so the `lstat` of each
/// path component that judges symlinks (see [`crate::workspace`]) is skipped: the stat cache
/// only ever holds a file taskrun found inside the workspace, and a symlink that leads out
/// cannot reach that inode without changing its ctime (a new hard link) or moving it whole,
/// when the content is still exactly the recorded one. Anything else takes the full walk,
/// which removes such a symlink before a restore.
pub(super) fn is_the_file_recorded(ws: &Workspace, o: &OutputFile, stats: &StatCache) -> bool {
    let path = ws.root().join(&o.path);
    let Ok(meta) = super::stat::metadata(&path) else {
        return false;
    };
    let st = FileStat::of(&meta);
    meta.is_file()
        && (st.mode & 0o111 != 0) == (o.mode & 0o111 != 0)
        && stats
            .cached(&path, &st)
            .is_some_and(|d| from_hex(&o.sha256) == Some(d))
}

/// How the output `o`, found on disk as `found`, differs from the record.
pub(super) fn drift_of(
    ws: &Workspace,
    o: &OutputFile,
    found: io::Result<Found>,
    stats: &StatCache,
) -> Option<Drift> {
    let meta = match found {
        Ok(Found::Entry(m)) if m.is_file() => m,
        Ok(Found::Entry(_) | Found::Escape(_)) => return Some(Drift::Changed),
        Ok(Found::Missing) | Err(_) => return Some(Drift::Missing),
    };
    let exec_same = (FileStat::of(&meta).mode & 0o111 != 0) == (o.mode & 0o111 != 0);
    match stats.digest_with(&ws.root().join(&o.path), &meta) {
        Ok((d, _)) if exec_same && to_hex(&d) == o.sha256 => None,
        _ => Some(Drift::Changed),
    }
}

/// Recorded outputs that differ from the disk (read-only; for `plan` and `explain`). An
/// output behind a symlink that leads outside the workspace counts as changed: a restore
/// replaces it, and it is not read.
pub fn check(ws: &Workspace, record: &ActionRecord, stats: &StatCache) -> Vec<(String, Drift)> {
    record
        .outputs
        .iter()
        .filter_map(|o| drift(ws, o, stats).map(|d| (o.path.clone(), d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn setup() -> (tempfile::TempDir, StatCache, Store, PathBuf, FileStat) {
        let d = tempfile::tempdir().unwrap();
        let stats = StatCache::open(&d.path().join("cache"), false);
        let store = Store::new(d.path().join("cache"), false);
        let file = d.path().join("out.bin");
        fs::write(&file, b"downloaded bytes").unwrap();
        let stat = FileStat::of(&fs::metadata(&file).unwrap());
        (d, stats, store, file, stat)
    }

    fn declared() -> Vec<RelPath> {
        vec![RelPath::parse("out.bin").unwrap()]
    }

    /// The writer's digest is taken as it is (the file is not read back) while the stat is
    /// the one it saw; the blob is stored under that digest.
    #[test]
    fn a_written_file_with_its_stat_is_not_rehashed() {
        let (d, stats, store, file, stat) = setup();
        let claimed = [7u8; 32];
        let written = WrittenOutput {
            path: &file,
            digest: claimed,
            stat,
        };
        let snap = snapshot(
            &Workspace::new(d.path()),
            &declared(),
            &stats,
            Some(&store),
            Some(written),
        )
        .unwrap();
        assert_eq!(snap.files[0].sha256, to_hex(&claimed));
        assert_eq!(
            fs::read(store.blob_path(&claimed)).unwrap(),
            b"downloaded bytes"
        );
    }

    /// Another stat (the file changed after its writer hashed it) or another path: hashed.
    #[test]
    fn a_changed_or_other_file_is_hashed() {
        let (d, _stats, _store, file, stat) = setup();
        let real = to_hex(&hash_file(&file).unwrap().0);
        let other = d.path().join("other");
        for written in [
            WrittenOutput {
                path: &file,
                digest: [7; 32],
                stat: FileStat {
                    mtime_ns: stat.mtime_ns - 1,
                    ..stat
                },
            },
            WrittenOutput {
                path: &other,
                digest: [7; 32],
                stat,
            },
        ] {
            // Fresh stat records each time: only `written` could spare the hashing.
            let stats = StatCache::in_memory();
            let snap = snapshot(
                &Workspace::new(d.path()),
                &declared(),
                &stats,
                None,
                Some(written),
            )
            .unwrap();
            assert_eq!(snap.files[0].sha256, real);
        }
    }
}
