//! Sealed binary state files: the stat records and the last-results journal are read on
//! every run, so they are compact postcard bytes (not JSON) behind a magic line, and end in
//! the sha256 of everything before it, so a truncated or altered file is noticed and ignored
//! (both files only save work; losing one costs a slower run, never a wrong result).

use std::hash::Hash;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::digest::hash_bytes;
use super::store::write_atomic;

const DIGEST_LEN: usize = 32;

/// Why a sealed file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// Reading failed (other than "not found").
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Wrong magic (another format or version), bad checksum or undecodable content.
    #[error("{0}")]
    Invalid(String),
}

/// Reads the value sealed at `path` with `magic`; `Ok(None)` when there is no file.
pub fn read<T: DeserializeOwned>(path: &Path, magic: &[u8]) -> Result<Option<T>, SealedError> {
    read_with(path, magic, &hash_bytes)
}

/// [`read`] of a file sealed by [`write_keyed`] with `key`: one anybody else sealed (who
/// could write the file but not read the key) is refused as altered.
pub fn read_keyed<T: DeserializeOwned>(
    path: &Path,
    magic: &[u8],
    key: &[u8],
) -> Result<Option<T>, SealedError> {
    read_with(path, magic, &|payload| super::digest::hmac(key, payload))
}

fn read_with<T: DeserializeOwned>(
    path: &Path,
    magic: &[u8],
    seal: &dyn Fn(&[u8]) -> super::Digest,
) -> Result<Option<T>, SealedError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // A file where a parent directory should be: there is no such file either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(body) = bytes.strip_prefix(magic) else {
        return Err(SealedError::Invalid("unknown format or version".into()));
    };
    if body.len() < DIGEST_LEN {
        return Err(SealedError::Invalid("truncated".into()));
    }
    let (payload, digest) = body.split_at(body.len() - DIGEST_LEN);
    if seal(payload).as_slice() != digest {
        return Err(SealedError::Invalid("checksum mismatch".into()));
    }
    postcard::from_bytes(payload)
        .map(Some)
        .map_err(|e| SealedError::Invalid(e.to_string()))
}

/// Writes `value` sealed with `magic`, atomically (temp file + rename).
pub fn write<T: Serialize>(path: &Path, magic: &[u8], value: &T) -> io::Result<()> {
    write_with(path, magic, value, &hash_bytes)
}

/// [`write()`] with an HMAC under `key` for a seal (see [`read_keyed`]).
pub fn write_keyed<T: Serialize>(
    path: &Path,
    magic: &[u8],
    key: &[u8],
    value: &T,
) -> io::Result<()> {
    write_with(path, magic, value, &|payload| {
        super::digest::hmac(key, payload)
    })
}

fn write_with<T: Serialize>(
    path: &Path,
    magic: &[u8],
    value: &T,
    seal: &dyn Fn(&[u8]) -> super::Digest,
) -> io::Result<()> {
    let mut bytes = magic.to_vec();
    bytes = postcard::to_extend(value, bytes).map_err(io::Error::other)?;
    let digest = seal(&bytes[magic.len()..]);
    bytes.extend_from_slice(&digest);
    write_atomic(path, &bytes)
}

/// A map kept in one sealed file: read whole when opened, used and changed in memory by the
/// lookup threads, written back (atomically) only when it changed.
#[derive(Debug)]
pub struct SealedMap<K, V> {
    path: Option<PathBuf>,
    read_only: bool,
    magic: &'static [u8],
    /// The file's identity when it was read (`None`: there was none).
    read_from: Option<FileId>,
    state: Mutex<MapState<K, V>>,
}

/// What tells one version of a file from the next (every write is a rename of a new file).
type FileId = super::stat::FileStat;

fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path)
        .ok()
        .map(|m| super::stat::FileStat::of(&m))
}

/// The entries of a [`SealedMap`], and whether they changed since it was read or saved.
#[derive(Debug)]
pub struct MapState<K, V> {
    /// The entries.
    pub entries: FxHashMap<K, V>,
    /// Set by whoever changes `entries`.
    pub dirty: bool,
}

impl<K, V> SealedMap<K, V>
where
    K: Eq + Hash + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Reads the map at `path`: a missing file is empty, a damaged one is ignored with a
    /// warning naming `what`. `read_only`: never saved.
    pub fn open(path: PathBuf, magic: &'static [u8], read_only: bool, what: &str) -> Self {
        let read_from = file_id(&path);
        // A map is stored as its length and pairs, the same bytes as a sequence of pairs:
        // read it as one, so the table is sized once instead of grown while decoding.
        let entries = match read::<Vec<(K, V)>>(&path, magic) {
            Ok(found) => {
                let pairs = found.unwrap_or_default();
                let mut map = FxHashMap::with_capacity_and_hasher(pairs.len(), Default::default());
                map.extend(pairs);
                map
            }
            Err(e) => {
                tracing::warn!("ignoring unreadable {what} {}: {e}", path.display());
                FxHashMap::default()
            }
        };
        Self {
            path: Some(path),
            read_only,
            magic,
            read_from,
            state: Mutex::new(MapState {
                entries,
                dirty: false,
            }),
        }
    }

    /// True when the file is still the one this map was read from (read ahead of taking
    /// the cache lock, a map must be read again if another run has saved since).
    pub fn is_current(&self) -> bool {
        self.path
            .as_deref()
            .is_none_or(|p| file_id(p) == self.read_from)
    }

    /// A map with no file (tests, `--no-cache`).
    pub fn in_memory(magic: &'static [u8]) -> Self {
        Self {
            path: None,
            read_only: true,
            magic,
            read_from: None,
            state: Mutex::new(MapState {
                entries: FxHashMap::default(),
                dirty: false,
            }),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file, when this map may write it.
    pub fn writable_path(&self) -> Option<&Path> {
        self.path.as_deref().filter(|_| !self.read_only)
    }

    /// The entries, for reading or changing (set `dirty` when changing).
    pub fn lock(&self) -> MutexGuard<'_, MapState<K, V>> {
        // A panic while holding the lock cannot leave an entry half-written; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the entries `keep` accepts and writes the file when anything changed; returns
    /// whether it wrote. A no-op when read-only or in memory.
    pub fn save(&self, keep: impl FnMut(&K, &mut V) -> bool) -> io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        if self.read_only {
            return Ok(false);
        }
        let mut state = self.lock();
        let before = state.entries.len();
        state.entries.retain(keep);
        if !state.dirty && state.entries.len() == before {
            return Ok(false);
        }
        write(path, self.magic, &state.entries)?;
        state.dirty = false;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8] = b"test v1\n";

    #[test]
    fn a_map_knows_when_its_file_was_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.bin");
        let m: SealedMap<String, u32> = SealedMap::open(p.clone(), MAGIC, false, "test map");
        assert!(m.is_current(), "no file then, none now");
        m.lock().entries.insert("a".into(), 1);
        m.lock().dirty = true;
        assert!(m.save(|_, _| true).unwrap());
        assert!(!m.is_current(), "saved since it was read");
        let again: SealedMap<String, u32> = SealedMap::open(p.clone(), MAGIC, true, "test map");
        assert_eq!(again.lock().entries.get("a"), Some(&1));
        assert!(again.is_current());
        write(&p, MAGIC, &FxHashMap::<String, u32>::default()).unwrap();
        assert!(!again.is_current());
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        assert!(read::<Vec<String>>(&p, MAGIC).unwrap().is_none());
        let v = vec!["a".to_string(), "bc".to_string()];
        write(&p, MAGIC, &v).unwrap();
        assert_eq!(read::<Vec<String>>(&p, MAGIC).unwrap(), Some(v));

        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(read::<Vec<String>>(&p, MAGIC).is_err());

        std::fs::write(&p, &bytes[..MAGIC.len() + 3]).unwrap();
        assert!(read::<Vec<String>>(&p, MAGIC).is_err());
        assert!(read::<Vec<String>>(&p, b"other v1\n").is_err());
    }
}
