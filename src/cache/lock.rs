//! The cache dir lock: `run`, `gc` and `clean` hold it for their whole duration, so two
//! taskrun processes never write one store at once; `plan`, `explain` and `stats` only read
//! and take none.
//!
//! An advisory `flock` on `<cache dir>/lock` (std's `File::lock`): the kernel drops it when the
//! process dies, so a crashed run never leaves a stale lock behind.

use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the cache dir.
pub const LOCK_FILE: &str = "lock";

/// Holds the exclusive lock until dropped.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
    path: PathBuf,
}

impl CacheLock {
    /// Takes the lock on `dir` (created if needed). When another process holds it, prints
    /// "waiting for another taskrun using `<dir>`..." to stderr once, then blocks.
    pub fn acquire(dir: &Path) -> io::Result<Self> {
        Self::acquire_with(dir, &mut io::stderr())
    }

    /// [`CacheLock::acquire`], printing the waiting notice to `notice` (for tests).
    pub fn acquire_with(dir: &Path, notice: &mut dyn Write) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = writeln!(
                    notice,
                    "waiting for another taskrun using {}...",
                    dir.display()
                );
                let _ = notice.flush();
                file.lock()?;
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        Ok(Self { _file: file, path })
    }

    /// Takes the lock only if it is free right now.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<Self>> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file, path })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn second_holder_waits_and_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = CacheLock::acquire(dir.path()).unwrap();
        assert!(CacheLock::try_acquire(dir.path()).unwrap().is_none());
        let (tx, rx) = mpsc::channel();
        let d = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let mut notice = Vec::new();
            let lock = CacheLock::acquire_with(&d, &mut notice).unwrap();
            tx.send(()).unwrap();
            drop(lock);
            String::from_utf8(notice).unwrap()
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "must wait"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let notice = waiter.join().unwrap();
        assert_eq!(
            notice.matches("waiting for another taskrun using").count(),
            1
        );
        assert!(CacheLock::try_acquire(dir.path()).unwrap().is_some());
    }
}
