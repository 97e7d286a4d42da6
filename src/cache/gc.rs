//! `taskrun cache stats|gc|clean` at the library level: they take a cache dir, so they work
//! with or without a manifest. `gc` and `clean` expect the caller to hold the cache lock.
//!
//! All three see only the files taskrun wrote ([`super::owned`]): a cache dir shared with
//! other files keeps those, and their bytes do not count.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::owned::{self, Kind};
use super::record::ActionRecord;
use super::store::Store;

/// What `cache stats` prints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Action records.
    pub entries: usize,
    /// Content blobs.
    pub blobs: usize,
    /// Bytes of taskrun's files in the cache dir.
    pub bytes: u64,
    /// The last run's summary: (cached, total, report file).
    pub last_run: Option<(u64, u64, PathBuf)>,
}

/// Counts the store at `cache_dir`; reads the newest run report in `runs_dir`, if given.
pub fn stats(
    cache_dir: &Path,
    runs_dir: Option<&Path>,
    manifest: Option<&std::ffi::OsStr>,
) -> StoreStats {
    let store = Store::new(cache_dir, true);
    StoreStats {
        entries: store.record_files().len(),
        blobs: store.blob_files().len(),
        bytes: owned::size(cache_dir),
        last_run: runs_dir.and_then(|runs| last_run_summary(runs, manifest)),
    }
}

/// `summary.cached` and `summary.total` of the newest `<run-id>.json` (run ids sort by time),
/// of the manifest named `manifest` when given.
pub fn last_run_summary(
    runs_dir: &Path,
    manifest: Option<&std::ffi::OsStr>,
) -> Option<(u64, u64, PathBuf)> {
    let newest = crate::report::newest_run(runs_dir, manifest)?;
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&newest).ok()?).ok()?;
    let summary = v.get("summary")?;
    Some((
        summary.get("cached")?.as_u64()?,
        summary.get("total")?.as_u64()?,
        newest,
    ))
}

/// `cache gc` limits; at least one must be set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcLimits {
    /// Keep the whole store under this many bytes.
    pub max_size: Option<u64>,
    /// Drop entries not used for this long.
    pub max_age: Option<Duration>,
}

/// What `cache gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcOutcome {
    /// Records evicted (corrupt ones included).
    pub records_removed: usize,
    /// Blobs deleted (no remaining record referred to them).
    pub blobs_removed: usize,
    /// Store size before.
    pub bytes_before: u64,
    /// Store size after.
    pub bytes_after: u64,
}

struct Entry {
    path: PathBuf,
    size: u64,
    last_used: SystemTime,
    blobs: Vec<String>,
}

/// Evicts whole records least-recently-used first (those unused for longer than `max_age`,
/// then more until the store fits `max_size`), then deletes blobs no remaining record uses.
pub fn gc(cache_dir: &Path, limits: GcLimits, now: SystemTime) -> io::Result<GcOutcome> {
    let store = Store::new(cache_dir, false);
    let bytes_before = owned::size(cache_dir);
    // Not part of any entry: they go first, and the limits count what is left.
    remove_temp_files(cache_dir);
    let mut total = owned::size(cache_dir);
    let mut outcome = GcOutcome {
        bytes_before,
        ..GcOutcome::default()
    };

    // Exact to the run (a record's own `last_used` moves at most hourly).
    let used = super::journal::last_used_times(&cache_dir.join("index"));
    let mut entries = Vec::new();
    for path in store.record_files() {
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let key = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let rec = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ActionRecord>(&b).ok())
            .filter(|r| r.verify(&key).is_ok());
        match rec {
            Some(r) => entries.push(Entry {
                last_used: r
                    .last_used_time()
                    .or_else(|| r.created_time())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
                    .max(
                        used.get(&key)
                            .map_or(SystemTime::UNIX_EPOCH, |ns| from_ns(*ns)),
                    ),
                blobs: r.blobs().map(str::to_string).collect(),
                path,
                size,
            }),
            None => {
                tracing::warn!("removing corrupt cache record {}", path.display());
                fs::remove_file(&path)?;
                total = total.saturating_sub(size);
                outcome.records_removed += 1;
            }
        }
    }

    let mut blob_sizes: HashMap<String, (PathBuf, u64)> = HashMap::new();
    for path in store.blob_files() {
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            blob_sizes.insert(name.to_string(), (path.clone(), size));
        }
    }
    // Ties (never used since the stamps began) go by path, not by directory order.
    entries.sort_by(|a, b| (a.last_used, &a.path).cmp(&(b.last_used, &b.path)));
    let mut refs: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        for b in &e.blobs {
            *refs.entry(b.as_str()).or_default() += 1;
        }
    }
    // Blobs nothing refers to (e.g. left by an interrupted run) go first.
    for (name, (_, size)) in &blob_sizes {
        if !refs.contains_key(name.as_str()) {
            total = total.saturating_sub(*size);
        }
    }

    let mut evicted = Vec::new();
    for e in &entries {
        let too_old = limits
            .max_age
            .is_some_and(|age| now.duration_since(e.last_used).unwrap_or_default() > age);
        let too_big = limits.max_size.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            continue;
        }
        total = total.saturating_sub(e.size);
        for b in &e.blobs {
            if let Some(n) = refs.get_mut(b.as_str()) {
                *n -= 1;
                if *n == 0 {
                    total = total.saturating_sub(blob_sizes.get(b).map_or(0, |s| s.1));
                }
            }
        }
        evicted.push(&e.path);
    }
    for path in evicted {
        fs::remove_file(path)?;
        outcome.records_removed += 1;
    }
    for (name, (path, _)) in &blob_sizes {
        if refs.get(name.as_str()).copied().unwrap_or(0) == 0 {
            fs::remove_file(path)?;
            outcome.blobs_removed += 1;
        }
    }
    owned::remove_empty_dirs(cache_dir);
    outcome.bytes_after = owned::size(cache_dir);
    Ok(outcome)
}

fn from_ns(ns: i64) -> SystemTime {
    let ns = u64::try_from(ns).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Deletes the store's temp files (see [`owned::is_temp_name`]) in the store's own
/// directories; nothing else in the cache dir is looked at. gc's caller holds the cache lock
/// that every writer takes, so each of them was left by a process that died mid-write.
fn remove_temp_files(cache_dir: &Path) {
    for f in owned::files(cache_dir) {
        if f.kind == Kind::Temp
            && let Err(e) = fs::remove_file(&f.path)
        {
            tracing::warn!("cannot remove {}: {e}", f.path.display());
        }
    }
}

/// Deletes taskrun's files in the cache dir (blobs, records, journals, stat records, temp
/// files) but the lock, held by the caller; the user's files stay. Returns the bytes freed.
pub fn clean(cache_dir: &Path) -> io::Result<u64> {
    owned::remove_all(cache_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_removes_the_temp_files_a_dead_process_left_before_it_sizes_the_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cas/ab")).unwrap();
        let old = dir.path().join("cas/ab/.tmp-old123");
        let fresh = dir.path().join(".tmp-fresh1");
        let user = dir.path().join("notes.txt");
        std::fs::write(&old, vec![0u8; 4096]).unwrap();
        std::fs::write(&fresh, b"y").unwrap();
        std::fs::write(&user, b"mine").unwrap();
        let limits = GcLimits {
            max_size: Some(1024),
            max_age: None,
        };
        let outcome = gc(dir.path(), limits, SystemTime::now()).unwrap();
        assert!(!old.exists() && !fresh.exists());
        assert!(user.exists(), "not taskrun's");
        assert!(outcome.bytes_before >= 4097, "{outcome:?}");
        assert!(outcome.bytes_after < 1024, "{outcome:?}");
    }
}
