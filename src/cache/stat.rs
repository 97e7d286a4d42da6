//! Stat records: a file's (size, mtime ns, ctime ns, inode) stands in for its sha256 until
//! the file changes, so a no-op rerun costs a `stat` per file, like ninja, not a re-hash.
//!
//! Racy timestamps (git's rule): a file modified at about the time its record was taken could
//! change again within the same clock tick without its stat changing. Such a record is not
//! trusted: the file is re-hashed until its mtime is safely older than the record.
//! File systems with whole-second timestamps get a wider margin.
//!
//! All records live in one sealed binary file, `<cache dir>/stat.bin` (see [`super::sealed`]),
//! read once when the cache opens and written atomically by [`StatCache::save`] (at the end
//! of a run). `plan` and `explain` open it read-only: they use the records and never write
//! them.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Digest;
use super::digest::hash_file;
use super::sealed::{MapState, SealedMap};

/// The file's name inside the cache dir.
pub const STAT_FILE: &str = "stat.bin";
/// The JSON file earlier versions kept; removed on the first save.
const LEGACY_STAT_FILE: &str = "stat.json";
const MAGIC: &[u8] = b"taskrun stat records v2\n";
/// A record is trusted only for files whose mtime is at least this much older than the
/// record: covers the kernel's coarse file clock lagging the wall clock by a tick.
const RACY_MARGIN_NS: i64 = 100_000_000;
/// The margin for file systems that store whole seconds (mtime's nanoseconds all zero).
const RACY_MARGIN_COARSE_NS: i64 = 2_000_000_000;
/// Records not used by a run and older than this are dropped on save, so the file does not
/// grow forever with files that no longer exist.
const PRUNE_AFTER_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;

/// One file's identity and hash, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    /// Wall-clock time (ns) when the file was stat'ed just before hashing.
    taken_ns: i64,
    sha256: Digest,
    /// Used by this process (not stored).
    #[serde(skip)]
    used: bool,
}

/// The identity of a file right now, from `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Permission bits.
    pub mode: u32,
}

impl FileStat {
    /// Reads the parts of `stat` that identify a file's content.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode() & 0o7777,
        }
    }

    /// [`FileStat::of`] for a `stat` taken with rustix (relative to a directory descriptor).
    // The `stat` field types differ between platforms: casts that are no-ops here are not
    // everywhere.
    #[allow(clippy::unnecessary_cast)]
    pub fn of_raw(st: &rustix::fs::Stat) -> Self {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Self {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            ino: st.st_ino as u64,
            mode: st.st_mode as u32 & 0o7777,
        }
    }
}

/// The stat records of one cache dir. Shared by the scheduler's blocking tasks (`&self`).
#[derive(Debug)]
pub struct StatCache {
    /// Keyed by the absolute path as UTF-8 (hashed as plain bytes; a path that is not
    /// UTF-8 has no record and is always hashed).
    map: SealedMap<String, Entry>,
}

/// Wall-clock nanoseconds since the epoch (the "taken" time of a stat record).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `stat` for the hot paths of a no-op run (inputs, outputs, records): a path under the
/// working directory is passed relative to it, so the kernel walks two or three components
/// instead of the whole absolute path (a third of a no-op rerun's system time went to path
/// walks). taskrun never changes its working directory, so both name the same file.
pub fn metadata(path: &Path) -> io::Result<Metadata> {
    std::fs::metadata(short(path))
}

/// [`metadata`] without following a final symlink: the workspace's symlink checks
/// ([`crate::workspace`]) walk every output this way on each cache hit.
pub fn symlink_metadata(path: &Path) -> io::Result<Metadata> {
    std::fs::symlink_metadata(short(path))
}

/// `path` relative to the working directory when it lies under it.
fn short(path: &Path) -> &Path {
    static CWD: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    match CWD.get_or_init(|| std::env::current_dir().ok()) {
        Some(cwd) => under(cwd, path),
        None => path,
    }
}

/// `path` relative to `dir` when it lies strictly under it, else `path`. A byte comparison:
/// `Path::strip_prefix` parses both paths into components on every call (4% of a no-op
/// rerun).
fn under<'a>(dir: &Path, path: &'a Path) -> &'a Path {
    use std::os::unix::ffi::OsStrExt;
    let rest = path
        .as_os_str()
        .as_bytes()
        .strip_prefix(dir.as_os_str().as_bytes());
    match rest.and_then(|r| r.strip_prefix(b"/")) {
        // Not `dir` itself, nor a longer name it prefixes, nor `dir//x` (that would be `/x`).
        Some(rel) if !rel.is_empty() && !rel.starts_with(b"/") => {
            Path::new(std::ffi::OsStr::from_bytes(rel))
        }
        _ => path,
    }
}

/// Git's racy-timestamp rule: a record taken at `taken_ns` of a file last modified at
/// `mtime_ns` is not trusted when the file could have changed again within the same clock
/// tick (whole-second file systems get a wider margin).
pub fn is_racy(mtime_ns: i64, taken_ns: i64) -> bool {
    let margin = if mtime_ns % 1_000_000_000 == 0 {
        RACY_MARGIN_COARSE_NS
    } else {
        RACY_MARGIN_NS
    };
    mtime_ns.saturating_add(margin) >= taken_ns
}

impl StatCache {
    /// Loads `<cache_dir>/stat.bin`; a missing file is empty, an unreadable one is ignored
    /// with a warning (records are only an optimisation). `read_only`: never saved.
    pub fn open(cache_dir: &Path, read_only: bool) -> Self {
        let path = cache_dir.join(STAT_FILE);
        Self {
            map: SealedMap::open(path, MAGIC, read_only, "stat records"),
        }
    }

    /// Records kept in memory only (tests, `--no-cache`).
    pub fn in_memory() -> Self {
        Self {
            map: SealedMap::in_memory(MAGIC),
        }
    }

    /// True when `stat.bin` is still the file these records were read from.
    pub fn is_current(&self) -> bool {
        self.map.is_current()
    }

    fn lock(&self) -> MutexGuard<'_, MapState<String, Entry>> {
        self.map.lock()
    }

    /// The sha256 of the file at `path` (absolute), from its record when the file is unchanged
    /// and not racy, else by hashing it (and remembering the result).
    pub fn digest(&self, path: &Path) -> io::Result<(Digest, FileStat)> {
        self.digest_with(path, &metadata(path)?)
    }

    /// [`Self::digest`] for a file whose `stat` the caller already has (one `stat`, not two).
    pub fn digest_with(&self, path: &Path, meta: &Metadata) -> io::Result<(Digest, FileStat)> {
        let st = FileStat::of(meta);
        if let Some(d) = self.cached(path, &st) {
            return Ok((d, st));
        }
        let taken_ns = now_ns();
        let (digest, _) = hash_file(path)?;
        self.insert(path, st, taken_ns, digest);
        Ok((digest, st))
    }

    /// The recorded digest when `st` matches the record and the record is not racy.
    pub fn cached(&self, path: &Path, st: &FileStat) -> Option<Digest> {
        let key = path.to_str()?;
        let mut inner = self.lock();
        let e = inner.entries.get_mut(key)?;
        let same = e.size == st.size
            && e.mtime_ns == st.mtime_ns
            && e.ctime_ns == st.ctime_ns
            && e.ino == st.ino;
        if same && !is_racy(st.mtime_ns, e.taken_ns) {
            e.used = true;
            Some(e.sha256)
        } else {
            None
        }
    }

    /// Remembers that the file with stat `st` (taken before its content was read at
    /// `taken_ns`) hashes to `digest`.
    pub fn insert(&self, path: &Path, st: FileStat, taken_ns: i64, digest: Digest) {
        let entry = Entry {
            size: st.size,
            mtime_ns: st.mtime_ns,
            ctime_ns: st.ctime_ns,
            ino: st.ino,
            taken_ns,
            sha256: digest,
            used: true,
        };
        let mut inner = self.lock();
        let Some(key) = path.to_str() else {
            return;
        };
        if inner.entries.get(key) != Some(&entry) {
            inner.entries.insert(key.to_string(), entry);
            inner.dirty = true;
        }
    }

    /// Remembers the digest of a file this process just wrote from known content.
    pub fn remember_written(&self, path: &Path, digest: Digest) {
        let taken_ns = now_ns();
        if let Ok(meta) = std::fs::metadata(path) {
            self.insert(path, FileStat::of(&meta), taken_ns, digest);
        }
    }

    /// Writes the records (temp file + rename) when they changed; a no-op when read-only.
    /// Records neither used by this run nor taken in the last 30 days are dropped.
    pub fn save(&self) -> io::Result<()> {
        let cutoff = now_ns().saturating_sub(PRUNE_AFTER_NS);
        let written = self.map.save(|_, e| e.used || e.taken_ns >= cutoff)?;
        if written && let Some(dir) = self.map.path().and_then(Path::parent) {
            let _ = std::fs::remove_file(dir.join(LEGACY_STAT_FILE));
        }
        Ok(())
    }

    /// Number of records (for tests and stats).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_working_directory_are_made_relative_by_bytes() {
        let dir = Path::new("/work/main");
        let cases = [
            ("/work/main/out/a.txt", "out/a.txt"),
            ("/work/main", "/work/main"),
            ("/work/mainx/a", "/work/mainx/a"),
            ("/work/main//etc", "/work/main//etc"),
            ("/elsewhere/a", "/elsewhere/a"),
        ];
        for (path, want) in cases {
            assert_eq!(under(dir, Path::new(path)), Path::new(want), "{path}");
        }
        assert_eq!(under(Path::new("/"), Path::new("/a")), Path::new("/a"));
    }
    use crate::cache::digest::hash_bytes;

    fn old_mtime(path: &Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
    }

    #[test]
    fn unchanged_file_is_served_from_its_record_and_survives_save() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        old_mtime(&f);
        let sc = StatCache::open(dir.path(), false);
        let (d, st) = sc.digest(&f).unwrap();
        assert_eq!(d, hash_bytes(b"one"));
        assert_eq!(sc.cached(&f, &st), Some(d));
        sc.save().unwrap();

        let again = StatCache::open(dir.path(), true);
        assert_eq!(again.cached(&f, &st), Some(d));
    }

    #[test]
    fn changed_content_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        old_mtime(&f);
        let sc = StatCache::open(dir.path(), false);
        sc.digest(&f).unwrap();
        std::fs::write(&f, "two").unwrap();
        assert_eq!(sc.digest(&f).unwrap().0, hash_bytes(b"two"));
    }

    #[test]
    fn racy_record_is_not_trusted_even_when_stat_is_identical() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let sc = StatCache::in_memory();
        let (d, st) = sc.digest(&f).unwrap();
        assert_eq!(d, hash_bytes(b"one"));
        // Modified just now: the record was taken within the racy window.
        assert_eq!(sc.cached(&f, &st), None);
        // A lying record with the same stat but an old taken time would be trusted, so the
        // only thing protecting fresh files is the racy check above.
        let old = FileStat {
            mtime_ns: st.mtime_ns - 10_000_000_000,
            ..st
        };
        sc.insert(&f, old, now_ns(), [9; 32]);
        assert_eq!(sc.cached(&f, &old), Some([9; 32]));
    }

    #[test]
    fn read_only_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let sc = StatCache::open(dir.path(), true);
        sc.digest(&f).unwrap();
        sc.save().unwrap();
        assert!(!dir.path().join(STAT_FILE).exists());
    }

    #[test]
    fn corrupt_stat_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STAT_FILE), "{not a stat file").unwrap();
        assert!(StatCache::open(dir.path(), false).is_empty());
    }
}
