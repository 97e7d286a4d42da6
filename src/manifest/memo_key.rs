//! The key that seals the manifest memo (see [`super::memo`]): 32 random bytes in
//! `${XDG_CACHE_HOME:-$HOME/.cache}/taskrun/memo.key`, this user's only. The memo lies in
//! the workspace, which others may write (a shared checkout, a repository that commits
//! `.taskrun/`). A plain checksum they can recompute; sealed with a key they cannot read, a
//! memo they wrote is refused and the manifest is read as usual, so a memo never makes `run`
//! do what the manifest does not say (SPEC §13).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes of a key.
const KEY_LEN: usize = 32;

/// This user's memo key, made on first use; `None` when there is no private place for one
/// (then nothing is remembered: every run reads its manifest).
pub fn memo_key() -> Option<[u8; KEY_LEN]> {
    let dir = key_dir()?;
    let path = dir.join("memo.key");
    if let Some(key) = read_key(&path) {
        return Some(key);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ok()?;
    make_key(&dir, &path);
    read_key(&path)
}

/// `$XDG_CACHE_HOME/taskrun`, or `$HOME/.cache/taskrun` (absolute paths only).
fn key_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("taskrun"))
}

/// The key at `path` if it is one: a regular file of [`KEY_LEN`] bytes that this user owns
/// and nobody else may read or write (else another user could know or set it).
fn read_key(path: &Path) -> Option<[u8; KEY_LEN]> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let private = meta.is_file() && meta.uid() == me && meta.mode() & 0o077 == 0;
    if !private {
        return None;
    }
    std::fs::read(path).ok()?.try_into().ok()
}

/// Writes a new random key to `path` unless another process got there first: written whole
/// to a temp file, then linked into place (a link never replaces a file).
fn make_key(dir: &Path, path: &Path) {
    let temp = dir.join(format!(".memo.key.{}", std::process::id()));
    let key: [u8; KEY_LEN] = rand::random();
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    if written.is_ok() {
        let _ = std::fs::hard_link(&temp, path);
    }
    let _ = std::fs::remove_file(&temp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_one_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.key");
        make_key(dir.path(), &path);
        let key = read_key(&path).unwrap();
        make_key(dir.path(), &path);
        assert_eq!(
            read_key(&path),
            Some(key),
            "a second make keeps the first key"
        );
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "no temp file left");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_key(&path), None, "readable by others: no key");
    }
}
