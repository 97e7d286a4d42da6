//! Sealed binary state files: the stat records and the last-results journal are read on
//! every run, so they are compact postcard bytes (not JSON) behind a magic line, and end in
//! the sha256 of everything before it, so a truncated or altered file is noticed and ignored
//! (both files only save work; losing one costs a slower run, never a wrong result).

use std::io;
use std::path::Path;

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
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(body) = bytes.strip_prefix(magic) else {
        return Err(SealedError::Invalid("unknown format or version".into()));
    };
    if body.len() < DIGEST_LEN {
        return Err(SealedError::Invalid("truncated".into()));
    }
    let (payload, digest) = body.split_at(body.len() - DIGEST_LEN);
    if hash_bytes(payload).as_slice() != digest {
        return Err(SealedError::Invalid("checksum mismatch".into()));
    }
    postcard::from_bytes(payload)
        .map(Some)
        .map_err(|e| SealedError::Invalid(e.to_string()))
}

/// Writes `value` sealed with `magic`, atomically (temp file + rename).
pub fn write<T: Serialize>(path: &Path, magic: &[u8], value: &T) -> io::Result<()> {
    let mut bytes = magic.to_vec();
    bytes = postcard::to_extend(value, bytes).map_err(io::Error::other)?;
    let digest = hash_bytes(&bytes[magic.len()..]);
    bytes.extend_from_slice(&digest);
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8] = b"test v1\n";

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
