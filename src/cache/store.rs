//! The local content-addressed store: `cas/<2 hex>/<sha256>` blobs and
//! `ac/<2 hex>/<key>.json` action records under the cache dir.
//!
//! Every write goes to a temp file in the destination's directory (for blobs whose digest is
//! not known in advance, in `cas/`, the same file system) and is renamed into place, so a
//! reader never sees half a file. Every read verifies the content against its digest (but
//! for a blob this process has just fetched and verified, see `Store::fresh`); a
//! corrupt or truncated entry is deleted (unless read-only) and reported as absent with a
//! warning: a miss, never a wrong output. Files are not fsync'ed: after a crash a damaged
//! entry is caught by the same verification.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustix::fs::{Mode, OFlags};

use tempfile::NamedTempFile;

use super::Digest;
use super::digest::{hash_bytes, hash_copy, to_hex};
use super::journal::Stamp;
use super::owned;
use super::record::ActionRecord;
use super::stat::{self, FileStat};

/// Writes `bytes` to `path` atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = temp_in(path.parent().unwrap_or(Path::new(".")))?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temp file in `dir`, which is created only when missing: the directories of a store
/// exist after its first writes, so asking first would cost every write a system call.
fn temp_in(dir: &Path) -> io::Result<NamedTempFile> {
    let builder = || tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir);
    match builder() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            builder()
        }
        other => other,
    }
}

/// Moves `tmp` to `dest`, creating `dest`'s directory only when missing (see [`temp_in`]).
fn persist(tmp: NamedTempFile, dest: &Path) -> io::Result<()> {
    match tmp.persist(dest) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            e.file.persist(dest).map(drop).map_err(|e| e.error)
        }
        Err(e) => Err(e.error),
    }
}

/// Why a blob could not be copied out of the store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Not in the store.
    #[error("blob {0} is not in the cache")]
    Missing(String),
    /// Its content did not match its digest; it was removed.
    #[error("blob {0} was corrupt and has been removed")]
    Corrupt(String),
    /// Reading the blob or writing the destination failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The `ac/` shards of a store that exist, from [`Store::record_shards`].
#[derive(Debug, Clone)]
pub struct RecordShards([bool; 256]);

impl RecordShards {
    /// Whether a record with this hex key may exist (its shard directory does).
    pub fn may_hold(&self, key: &str) -> bool {
        key.get(..2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .is_some_and(|i| self.0[usize::from(i)])
    }
}

/// A local store rooted at a cache dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    read_only: bool,
    /// Blobs this process fetched from a remote and verified on the way in
    /// ([`Store::put_verified`]): restoring one of them (the remote hit's outputs, at once)
    /// copies it without hashing it a second time.
    fresh: Arc<Mutex<HashSet<Digest>>>,
    /// `ac/`, for [`Store::record_stat`].
    ac: Arc<OnceLock<OwnedFd>>,
}

impl Store {
    /// A store at `dir` (created lazily on the first write). `read_only`: never writes or
    /// deletes anything (`plan`, `explain`, `stats`).
    pub fn new(dir: impl Into<PathBuf>, read_only: bool) -> Self {
        Self {
            dir: dir.into(),
            read_only,
            fresh: Arc::default(),
            ac: Arc::default(),
        }
    }

    /// The cache dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = to_hex(d);
        self.dir.join("cas").join(&hex[..2]).join(hex)
    }

    /// Where a key's record lives (`key` is 64 hex digits).
    pub fn record_path(&self, key: &str) -> PathBuf {
        let prefix = key.get(..2).unwrap_or("xx");
        self.dir.join("ac").join(prefix).join(format!("{key}.json"))
    }

    /// The `stat` of a key's record file, taken relative to `ac/` (opened once): a no-op
    /// rerun stats every task's record, and the kernel's walk of `ab/<key>.json` from there
    /// costs a fraction of the walk from the working directory. `None` when it is absent.
    pub fn record_stat(&self, key: &str) -> Option<FileStat> {
        let prefix = key.get(..2)?;
        let Some(ac) = self.ac_dir() else {
            return Some(FileStat::of(&stat::metadata(&self.record_path(key)).ok()?));
        };
        let name = format!("{prefix}/{key}.json");
        let st = rustix::fs::statat(ac, name.as_str(), rustix::fs::AtFlags::empty()).ok()?;
        Some(FileStat::of_raw(&st))
    }

    /// `ac/`, opened for path lookups the first time it is found.
    fn ac_dir(&self) -> Option<&OwnedFd> {
        if let Some(fd) = self.ac.get() {
            return Some(fd);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(self.dir.join("ac"), flags, Mode::empty()).ok()?;
        Some(self.ac.get_or_init(|| fd))
    }

    /// Whether a blob is present (not verified: reads verify).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Copies a file into the store, hashing it in the same pass unless the caller already
    /// knows its digest; skips the copy when that blob exists. Returns (digest, size).
    pub fn put_file(&self, src: &Path, known: Option<Digest>) -> io::Result<(Digest, u64)> {
        if let Some(d) = known
            && self.has_blob(&d)
        {
            return Ok((d, fs::metadata(src)?.len()));
        }
        let mut tmp = temp_in(&self.dir.join("cas"))?;
        let mut f = File::open(src)?;
        let (digest, size) = match known {
            // Known from the stat records or from the writer's own hash: a plain copy (in the
            // kernel where it can), no second hashing pass.
            Some(d) => (d, io::copy(&mut f, tmp.as_file_mut())?),
            None => hash_copy(&mut f, Some(tmp.as_file_mut()))?,
        };
        // A blob that is already there is replaced by the same bytes, atomically.
        persist(tmp, &self.blob_path(&digest))?;
        Ok((digest, size))
    }

    /// Streams a blob whose digest is known in advance (a remote's `cas/<sha256>`) into the
    /// store: temp file in `cas/`, hashed on the way, renamed into place only when the content
    /// matches `expected`, so a damaged transfer never becomes a blob. At most `max_len` bytes
    /// are read when given (one more would already be a mismatch).
    pub fn put_verified(
        &self,
        reader: &mut impl Read,
        expected: &Digest,
        max_len: Option<u64>,
    ) -> Result<u64, BlobError> {
        let mut tmp = temp_in(&self.dir.join("cas"))?;
        let (got, size) = match max_len {
            Some(n) => hash_copy(
                &mut reader.take(n.saturating_add(1)),
                Some(tmp.as_file_mut()),
            )?,
            None => hash_copy(reader, Some(tmp.as_file_mut()))?,
        };
        if got != *expected || max_len.is_some_and(|n| size > n) {
            return Err(BlobError::Corrupt(to_hex(expected)));
        }
        persist(tmp, &self.blob_path(expected))?;
        self.mark_fresh(*expected);
        Ok(size)
    }

    /// Stores bytes as a blob; returns their digest.
    pub fn put_bytes(&self, data: &[u8]) -> io::Result<Digest> {
        let d = hash_bytes(data);
        let path = self.blob_path(&d);
        if !path.is_file() {
            write_atomic(&path, data)?;
        }
        Ok(d)
    }

    /// Reads a whole blob, verified. `Ok(None)` when absent or corrupt (then removed, warned).
    pub fn read_blob(&self, d: &Digest) -> io::Result<Option<Vec<u8>>> {
        let path = self.blob_path(d);
        match fs::read(&path) {
            Ok(data) if hash_bytes(&data) == *d => Ok(Some(data)),
            Ok(_) => {
                self.drop_corrupt(&path, "blob content does not match its digest");
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Copies blob `d` to `name` in `dir` atomically with permission bits `mode` (never
    /// above `0o777`: no setuid, setgid or sticky bit from a record), verifying the content
    /// on the way. The copy is made in the store's temp area (never beside `name`, where an
    /// input glob or a directory snapshot would see it if the copy were interrupted) and
    /// renamed into place.
    pub fn restore_blob(
        &self,
        d: &Digest,
        dir: &crate::workspace::Dir,
        name: &str,
        mode: u32,
    ) -> Result<(), BlobError> {
        let src = self.blob_path(d);
        let mut f = match File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::Missing(to_hex(d)));
            }
            Err(e) => return Err(e.into()),
        };
        let mut tmp = temp_in(&self.dir.join("cas"))?;
        if self.is_fresh(d) {
            io::copy(&mut f, tmp.as_file_mut())?;
        } else {
            let (got, _) = hash_copy(&mut f, Some(tmp.as_file_mut()))?;
            if got != *d {
                self.drop_corrupt(&src, "blob content does not match its digest");
                return Err(BlobError::Corrupt(to_hex(d)));
            }
        }
        let mode = mode & 0o777;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
        dir.replace_with(tmp.into_temp_path(), name, mode)?;
        Ok(())
    }

    /// A temp file in the store's `cas/` for a blob a remote streams in (see
    /// [`Store::adopt_verified`]); gc removes it if the process dies before that.
    pub fn blob_temp(&self) -> io::Result<NamedTempFile> {
        temp_in(&self.dir.join("cas"))
    }

    /// Moves a [`Store::blob_temp`] file whose content the caller has verified to be `d`
    /// into place (restoring it later copies without hashing it again).
    pub fn adopt_verified(&self, tmp: NamedTempFile, d: &Digest) -> io::Result<()> {
        persist(tmp, &self.blob_path(d))?;
        self.mark_fresh(*d);
        Ok(())
    }

    fn mark_fresh(&self, d: Digest) {
        self.fresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(d);
    }

    fn is_fresh(&self, d: &Digest) -> bool {
        self.fresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(d)
    }

    fn drop_corrupt(&self, path: &Path, why: &str) {
        tracing::warn!(
            "cache entry {} is corrupt ({why}); treating it as a miss",
            path.display()
        );
        if !self.read_only {
            let _ = fs::remove_file(path);
        }
    }

    /// The verified record for `key`; `None` when absent or corrupt (then removed, warned).
    pub fn read_record(&self, key: &str) -> Option<ActionRecord> {
        self.read_record_stamped(key).map(|(rec, _)| rec)
    }

    /// Which `ac/<2 hex>/` shards exist, read with one listing: a prediction of 100,000 new
    /// tasks then opens no record file that cannot exist (each failed `open` walks the path).
    pub fn record_shards(&self) -> RecordShards {
        let mut present = [false; 256];
        if let Ok(entries) = std::fs::read_dir(self.dir.join("ac")) {
            for e in entries.flatten() {
                let name = e.file_name();
                if let Some(i) = name.to_str().and_then(|n| u8::from_str_radix(n, 16).ok())
                    && name.len() == 2
                {
                    present[usize::from(i)] = true;
                }
            }
        }
        RecordShards(present)
    }

    /// [`Self::read_record`], with the record file's [`Stamp`] for the journal.
    pub fn read_record_stamped(&self, key: &str) -> Option<(ActionRecord, Stamp)> {
        let path = self.record_path(key);
        let mut file = File::open(&path).ok()?;
        let stamp = Stamp::of(&file.metadata().ok()?);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        let rec = self.parse_record(&path, key, &bytes)?;
        Some((rec, stamp))
    }

    fn parse_record(&self, path: &Path, key: &str, bytes: &[u8]) -> Option<ActionRecord> {
        match serde_json::from_slice::<ActionRecord>(bytes) {
            Ok(r) => match r.verify(key) {
                Ok(()) => Some(r),
                Err(why) => {
                    self.drop_corrupt(path, &why);
                    None
                }
            },
            Err(e) => {
                self.drop_corrupt(path, &e.to_string());
                None
            }
        }
    }

    /// Seals and writes a record atomically; returns the new file's [`Stamp`] (`None` when
    /// read-only or when it cannot be stat'ed).
    pub fn write_record(&self, record: &mut ActionRecord) -> io::Result<Option<Stamp>> {
        if self.read_only {
            return Ok(None);
        }
        record.seal();
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        let path = self.record_path(&record.key);
        write_atomic(&path, &bytes)?;
        Ok(Stamp::take(&path))
    }

    /// Paths of every record file (`ac/<2 hex>/<key>.json`), for stats and gc; a file under
    /// another name is not the store's (see [`super::owned`]).
    pub fn record_files(&self) -> Vec<PathBuf> {
        list_sharded(&self.dir.join("ac"), owned::is_record_name)
    }

    /// Paths of every blob (`cas/<2 hex>/<sha256>`), for stats and gc.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        list_sharded(&self.dir.join("cas"), owned::is_blob_name)
    }
}

/// Files in the two-hex-digit shard directories under `top`.
fn list_sharded(top: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(top) else {
        return out;
    };
    for shard in shards.flatten() {
        if !shard.file_name().to_str().is_some_and(owned::is_shard_name) {
            continue;
        }
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_name().to_str().is_some_and(&keep) {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
