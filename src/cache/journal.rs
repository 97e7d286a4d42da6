//! The last-results journal: one file per manifest (`<cache dir>/index/<id>.bin`) holding,
//! for each task, its most recent cache entry, what a hit needs from that entry (outputs,
//! digest, log, times), and the `stat` of the entry's `ac/` record file when it was taken.
//!
//! This is taskrun's `.ninja_log`: a no-op rerun reads it once instead of opening, parsing
//! and checksumming one action record per task. An entry stands for its record only while
//! the record file's size, mtime, ctime and inode are what the journal saw, and not racily
//! so (git's rule, [`super::stat::is_racy`]); a rewritten, corrupted or evicted record makes
//! the lookup read the record itself, verified as always. The journal also says which key a
//! task last had, for miss reasons ("input x changed") in `run`, `plan` and `explain`.

use std::collections::HashMap;

use rustc_hash::FxHashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::digest::{hash_bytes, to_hex};
use super::record::{ActionRecord, BlobRef, OutputFile, RECORD_VERSION};
use super::sealed::{MapState, SealedMap};
use super::stat::{FileStat, is_racy, now_ns};

const MAGIC: &[u8] = b"taskrun last results v1\n";

/// The `stat` of an action record file, and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The record file's identity.
    pub stat: FileStat,
    /// Wall-clock ns just after the `stat`.
    pub taken_ns: i64,
}

impl Stamp {
    /// Stamps the file at `path` now; `None` when it cannot be stat'ed.
    pub fn take(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self::of(&meta))
    }

    /// Stamps a `stat` the caller just took.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            stat: FileStat::of(meta),
            taken_ns: now_ns(),
        }
    }

    /// True when the file still has this identity and the stamp is not racy.
    fn holds_for(&self, now: &FileStat) -> bool {
        let same = self.stat.size == now.size
            && self.stat.mtime_ns == now.mtime_ns
            && self.stat.ctime_ns == now.ctime_ns
            && self.stat.ino == now.ino;
        same && !is_racy(now.mtime_ns, self.taken_ns)
    }
}

/// One task's latest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    key: String,
    stamp: Stamp,
    outputs: Vec<OutputFile>,
    output_dirs: Vec<String>,
    digest: String,
    log: Option<BlobRef>,
    created: String,
    last_used: String,
}

/// The journal of one manifest. Shared by the lookup threads (`&self`).
#[derive(Debug)]
pub struct Journal {
    map: SealedMap<String, Entry>,
    /// Keys this run used (hits and new entries), for the `.used` stamp ([`super::used`]).
    used: Mutex<FxHashSet<String>>,
}

/// The journal file of the manifest at `manifest` (absolute or as given; it is made
/// absolute against the current directory) in `cache_dir`.
pub fn journal_path(cache_dir: &Path, manifest: &Path) -> PathBuf {
    let abs = std::path::absolute(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let hex = to_hex(&hash_bytes(abs.as_os_str().as_encoded_bytes()));
    cache_dir.join("index").join(format!("{}.bin", &hex[..32]))
}

impl Journal {
    /// Loads the journal of `manifest` from `cache_dir`: missing is empty, damaged is ignored
    /// with a warning. `read_only`: never saved (`plan`, `explain`).
    pub fn open(cache_dir: &Path, manifest: &Path, read_only: bool) -> Self {
        let path = journal_path(cache_dir, manifest);
        let map = SealedMap::open(path, MAGIC, read_only, "journal");
        // A rerun uses about every entry: no rehashing on the way.
        let used =
            FxHashSet::with_capacity_and_hasher(map.lock().entries.len(), Default::default());
        Self {
            map,
            used: Mutex::new(used),
        }
    }

    /// A journal kept in memory only (tests, `--no-cache`).
    pub fn in_memory() -> Self {
        Self {
            map: SealedMap::in_memory(MAGIC),
            used: Mutex::default(),
        }
    }

    /// True when the journal file is still the one this was read from.
    pub fn is_current(&self) -> bool {
        self.map.is_current()
    }

    fn lock(&self) -> MutexGuard<'_, MapState<String, Entry>> {
        self.map.lock()
    }

    /// The key of `task`'s latest entry.
    pub fn last_key(&self, task: &str) -> Option<String> {
        self.lock().entries.get(task).map(|e| e.key.clone())
    }

    /// `task`'s entry for `key` as a record, when the record file is still the one the
    /// journal saw (`record_stat`: one `stat`, asked only for a task with an entry; no read). The record has no key parts and no
    /// checksum: it serves a hit and is never written back.
    pub fn record(
        &self,
        task: &str,
        key: &str,
        record_stat: impl FnOnce() -> Option<FileStat>,
    ) -> Option<ActionRecord> {
        let stamp = {
            let inner = self.lock();
            let e = inner.entries.get(task)?;
            if e.key != key {
                return None;
            }
            e.stamp
        };
        let now = record_stat()?;
        if !stamp.holds_for(&now) {
            return None;
        }
        let inner = self.lock();
        let e = inner.entries.get(task).filter(|e| e.key == key)?;
        Some(ActionRecord {
            format_version: RECORD_VERSION,
            key: e.key.clone(),
            task: task.to_string(),
            parts: Vec::new(),
            outputs: e.outputs.clone(),
            output_dirs: e.output_dirs.clone(),
            digest: e.digest.clone(),
            log: e.log.clone(),
            created: e.created.clone(),
            last_used: e.last_used.clone(),
            http: None,
            checksum: String::new(),
        })
    }

    /// This run used the entry with `key` (a hit, or a new entry).
    pub fn mark_used(&self, key: &str) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if !used.contains(key) {
            used.insert(key.to_string());
        }
    }

    /// Remembers `rec` (whose file had `stamp`) as `task`'s latest entry.
    pub fn remember(&self, task: &str, rec: &ActionRecord, stamp: Stamp) {
        self.mark_used(&rec.key);
        let entry = Entry {
            key: rec.key.clone(),
            stamp,
            outputs: rec.outputs.clone(),
            output_dirs: rec.output_dirs.clone(),
            digest: rec.digest.clone(),
            log: rec.log.clone(),
            created: rec.created.clone(),
            last_used: rec.last_used.clone(),
        };
        let mut inner = self.lock();
        if inner.entries.get(task) != Some(&entry) {
            inner.entries.insert(task.to_string(), entry);
            inner.dirty = true;
        }
    }

    /// Writes the journal when it changed, keeping only tasks for which `keep` holds (the
    /// manifest's current tasks); a no-op when read-only.
    pub fn save(&self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
        self.map.save(|task, _| keep(task))?;
        let Some(path) = self.map.writable_path() else {
            return Ok(());
        };
        let used = std::mem::take(&mut *self.used.lock().unwrap_or_else(PoisonError::into_inner));
        // Read under the lock, not copied out: the run is over, nothing else takes it.
        let journal = self.lock();
        let keys = journal.entries.values().map(|e| e.key.as_str());
        super::used::record(path, keys, &used, now_ns())
    }
}

/// When each entry of every journal in `index_dir` was last used, by key (see
/// `cache::used`); the latest use wins when journals share a key.
pub fn last_used_times(index_dir: &Path) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    let Ok(dir) = std::fs::read_dir(index_dir) else {
        return out;
    };
    for path in dir.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|x| x != "bin") {
            continue;
        }
        let Ok(Some(entries)) = super::sealed::read::<Vec<(String, Entry)>>(&path, MAGIC) else {
            continue;
        };
        let keys: Vec<String> = entries.into_iter().map(|(_, e)| e.key).collect();
        for (key, t) in super::used::times(&path, &keys) {
            let slot = out.entry(key).or_default();
            *slot = (*slot).max(t);
        }
    }
    out
}

impl Journal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::record::tests::sample;

    fn stat_of(path: &Path) -> Option<FileStat> {
        Some(FileStat::of(&std::fs::metadata(path).ok()?))
    }

    fn aged(path: &Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
    }

    #[test]
    fn entry_serves_while_the_record_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("taskrun.toml");
        let rec_path = dir.path().join("rec.json");
        std::fs::write(&rec_path, "{}").unwrap();
        aged(&rec_path);
        let rec = sample();
        let j = Journal::open(dir.path(), &manifest, false);
        j.remember("t", &rec, Stamp::take(&rec_path).unwrap());
        j.save(|_| true).unwrap();

        let j = Journal::open(dir.path(), &manifest, true);
        assert_eq!(j.last_key("t"), Some(rec.key.clone()));
        let got = j.record("t", &rec.key, || stat_of(&rec_path)).unwrap();
        assert_eq!(
            (got.outputs, got.digest),
            (rec.outputs.clone(), rec.digest.clone())
        );
        assert!(
            j.record("t", &"0".repeat(64), || stat_of(&rec_path))
                .is_none()
        );
        assert!(j.record("other", &rec.key, || stat_of(&rec_path)).is_none());

        // Rewritten in place (a corrupted record): the journal no longer stands for it.
        std::fs::write(&rec_path, "{}x").unwrap();
        assert!(j.record("t", &rec.key, || stat_of(&rec_path)).is_none());
        std::fs::remove_file(&rec_path).unwrap();
        assert!(j.record("t", &rec.key, || stat_of(&rec_path)).is_none());
    }

    #[test]
    fn fresh_record_is_racy_and_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let rec_path = dir.path().join("rec.json");
        std::fs::write(&rec_path, "{}").unwrap();
        let rec = sample();
        let j = Journal::in_memory();
        j.remember("t", &rec, Stamp::take(&rec_path).unwrap());
        assert!(j.record("t", &rec.key, || stat_of(&rec_path)).is_none());
    }

    #[test]
    fn save_drops_tasks_no_longer_in_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("taskrun.toml");
        let rec_path = dir.path().join("rec.json");
        std::fs::write(&rec_path, "{}").unwrap();
        let j = Journal::open(dir.path(), &manifest, false);
        let stamp = Stamp::take(&rec_path).unwrap();
        j.remember("kept", &sample(), stamp);
        j.remember("gone", &sample(), stamp);
        j.save(|t| t == "kept").unwrap();
        let j = Journal::open(dir.path(), &manifest, true);
        assert!(j.last_key("kept").is_some());
        assert!(j.last_key("gone").is_none());
        // Another manifest in the same cache dir has its own journal.
        let other = Journal::open(dir.path(), &dir.path().join("other.toml"), true);
        assert!(other.last_key("kept").is_none());
    }
}
