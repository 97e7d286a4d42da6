//! Resume state: `<dest>.part` holds the bytes so far, `<dest>.part.json` the validator.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `<dest>.part.json` records, so a later attempt or run can send `Range` + `If-Range`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartMeta {
    /// Format of this file.
    pub version: u32,
    /// The mirror the bytes came from, secrets redacted.
    pub url: String,
    /// The server's `ETag` for the representation being downloaded.
    pub etag: Option<String>,
    /// The server's `Last-Modified`, used when there is no strong `ETag`.
    pub last_modified: Option<String>,
    /// Bytes in the part file when this was last written.
    pub bytes: u64,
    /// The full size, when the server said.
    pub total: Option<u64>,
}

impl PartMeta {
    /// The `If-Range` value: a strong `ETag`, else `Last-Modified` (weak tags are not allowed).
    pub fn validator(&self) -> Option<&str> {
        match (&self.etag, &self.last_modified) {
            (Some(tag), _) if !tag.starts_with("W/") => Some(tag),
            (_, Some(date)) => Some(date),
            _ => None,
        }
    }
}

/// `<dest>.part`.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part")
}

/// `<dest>.part.json`.
pub(crate) fn meta_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part.json")
}

fn temp_beside(dest: &Path) -> PathBuf {
    let mut name = OsString::from(crate::workspace::TEMP_PREFIX);
    name.push(dest.file_name().unwrap_or_default());
    name.push(".part.json");
    dest.with_file_name(name)
}

fn with_suffix(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(dest.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// The length of `<dest>.part`, if it exists: what was really flushed, which wins over the
/// count recorded in the metadata. `<dest>.part.json` never exists without it
/// (it is written after the part file and removed before it), so `None` also means there is
/// no metadata to clean up.
///
/// A part file that is a symlink is removed with its metadata, never followed: appending to
/// it would write wherever it points (SPEC §13).
pub(crate) fn part_len(dest: &Path) -> Option<u64> {
    let meta = std::fs::symlink_metadata(part_path(dest)).ok()?;
    if !meta.is_file() {
        tracing::warn!(part = %part_path(dest).display(), "removing a partial download that is not a plain file");
        discard(dest);
        return None;
    }
    Some(meta.len())
}

/// Opens `path` without following a symlink at it (the open fails instead).
pub(crate) fn no_follow() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW);
    o
}

/// `<dest>.part.json`, if it exists and is readable.
pub(crate) fn read_meta(dest: &Path) -> Option<PartMeta> {
    let mut text = Vec::new();
    no_follow()
        .read(true)
        .open(meta_path(dest))
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut text))
        .ok()?;
    let meta: PartMeta = serde_json::from_slice(&text).ok()?;
    (meta.version == 1).then_some(meta)
}

/// Writes `<dest>.part.json` atomically (temp file + rename).
pub(crate) fn store(dest: &Path, meta: &PartMeta) -> io::Result<()> {
    let path = meta_path(dest);
    // Named like every interrupted write's temp file, so a kill -9 before the rename leaves
    // nothing that input globs or an output snapshot would see.
    let tmp = temp_beside(dest);
    let text = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    // A new file: never written through a symlink left at the temp name.
    remove_quietly(&tmp);
    let mut file = no_follow().write(true).create_new(true).open(&tmp)?;
    io::Write::write_all(&mut file, &text)?;
    std::fs::rename(&tmp, &path)
}

/// Removes both resume files (the metadata first, see [`part_len`]); missing files are fine.
pub(crate) fn discard(dest: &Path) {
    remove_quietly(&meta_path(dest));
    remove_quietly(&part_path(dest));
}

/// Removes only the metadata (before the part file is renamed onto `dest`, or rewritten from
/// zero).
pub(crate) fn remove_meta(dest: &Path) {
    remove_quietly(&meta_path(dest));
}

fn remove_quietly(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %err, "cannot remove download temp file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: Option<&str>, lm: Option<&str>) -> PartMeta {
        PartMeta {
            version: 1,
            url: "u".into(),
            etag: etag.map(Into::into),
            last_modified: lm.map(Into::into),
            bytes: 0,
            total: None,
        }
    }

    #[test]
    fn validator_prefers_strong_etag() {
        assert_eq!(meta(Some("\"a\""), Some("d")).validator(), Some("\"a\""));
        assert_eq!(meta(Some("W/\"a\""), Some("d")).validator(), Some("d"));
        assert_eq!(meta(Some("W/\"a\""), None).validator(), None);
        assert_eq!(meta(None, None).validator(), None);
    }

    #[test]
    fn store_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        assert!(part_len(&dest).is_none() && read_meta(&dest).is_none());
        std::fs::write(part_path(&dest), b"abc").unwrap();
        let m = meta(Some("\"x\""), None);
        store(&dest, &m).unwrap();
        assert_eq!((read_meta(&dest), part_len(&dest)), (Some(m), Some(3)));
        discard(&dest);
        assert!(!part_path(&dest).exists() && !meta_path(&dest).exists());
    }
}
