//! The cache dir lock: `run`, `gc` and `clean` hold it for their whole duration, so two
//! taskrun processes never write one store at once; `plan`, `explain` and `stats` only read
//! and take none.
//!
//! An advisory `flock` on `<cache dir>/lock` (std's `File::lock`): the kernel drops it when the
//! process dies, so a crashed run never leaves a stale lock behind.
//!
//! A run tells the processes it starts which cache dir it holds ([`HELD_ENV`]): a task that
//! runs taskrun on the same cache dir (a sub-pipeline) shares its parent's lock rather than
//! waiting forever for a parent that waits for it.

use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Name of the lock file inside the cache dir.
pub const LOCK_FILE: &str = "lock";

/// Set in the environment of the processes a run starts: the cache dir whose lock the run
/// holds for them.
pub const HELD_ENV: &str = "TASKRUN_CACHE_LOCK_HELD";

/// The cache dir this process took the lock of for a run, for its children's environment.
static HELD: OnceLock<OsString> = OnceLock::new();

/// `(HELD_ENV, "PID:DIR")` for a child's environment, when this process holds a run's lock.
pub fn held_for_children() -> Option<(String, String)> {
    HELD.get().map(|dir| {
        let value = format!("{}:{}", std::process::id(), dir.to_string_lossy());
        (HELD_ENV.to_string(), value)
    })
}

/// How often a run sharing its parent's lock checks that the parent still holds it.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Stops this run (as a SIGTERM would) once process `pid` no longer holds the lock it
/// shares: killed, it left this run writing the store with no lock at all, beside whatever
/// run takes the lock next.
fn watch_the_holder(pid: u32, dir: PathBuf) {
    static WATCHING: OnceLock<()> = OnceLock::new();
    if WATCHING.set(()).is_err() {
        return;
    }
    let watch = move || {
        while holds(pid, &dir) {
            std::thread::sleep(WATCH_EVERY);
        }
        eprintln!(
            "taskrun: the run whose cache lock this one shared (process {pid}) is gone; stopping"
        );
        // SAFETY: a signal to this very process; the run handles SIGTERM as an interrupt.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    };
    let _ = std::thread::Builder::new()
        .name("lock-holder-watch".into())
        .spawn(watch);
}

/// Whether process `pid` holds the `flock` of `dir`'s lock file (`/proc/locks`: "N: FLOCK
/// ADVISORY WRITE PID MAJ:MIN:INODE ...").
fn holds(pid: u32, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(dir.join(LOCK_FILE)) else {
        return false;
    };
    let Ok(locks) = fs::read_to_string("/proc/locks") else {
        return false;
    };
    let (pid, inode) = (pid.to_string(), meta.ino().to_string());
    locks.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.get(1) == Some(&"FLOCK")
            && f.get(4) == Some(&pid.as_str())
            && f.get(5).and_then(|d| d.rsplit(':').next()) == Some(inode.as_str())
    })
}

/// Whether `pid` is this process's parent, grandparent, ...: the variable is taken only
/// from the run that started this process and is still waiting for it, never from a user's
/// shell or by a process that outlived (or left) that run.
fn is_ancestor(pid: u32) -> bool {
    if pid <= 1 {
        return false;
    }
    let mut at = std::os::unix::process::parent_id();
    for _ in 0..64 {
        if at == pid {
            return true;
        }
        if at <= 1 {
            return false;
        }
        // `/proc/PID/stat`: "PID (COMM) STATE PPID ...", COMM may hold spaces and `)`.
        let Ok(stat) = fs::read_to_string(format!("/proc/{at}/stat")) else {
            return false;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        match ppid {
            Some(p) => at = p,
            None => return false,
        }
    }
    false
}

/// Holds the exclusive lock until dropped (or shares the lock of the run that started this
/// process: see the module doc).
#[derive(Debug)]
pub struct CacheLock {
    _file: Option<File>,
    path: PathBuf,
}

impl CacheLock {
    /// Takes the lock on `dir` (created if needed) for a run. When another process holds it,
    /// prints "waiting for another taskrun using `<dir>`..." to stderr once, then blocks.
    pub fn acquire(dir: &Path) -> io::Result<Self> {
        Self::acquire_with(dir, &mut io::stderr())
    }

    /// [`CacheLock::acquire`], printing the waiting notice to `notice` (for tests).
    pub fn acquire_with(dir: &Path, notice: &mut dyn Write) -> io::Result<Self> {
        if let Some(shared) = Self::inherited(dir) {
            return Ok(shared);
        }
        let lock = Self::acquire_exclusive_with(dir, notice)?;
        lock.announce(dir);
        Ok(lock)
    }

    /// Takes the lock on `dir` for this process alone, even under a run of the same cache
    /// (`gc` and `clean` must not delete what a parent run is using).
    pub fn acquire_exclusive(dir: &Path) -> io::Result<Self> {
        Self::acquire_exclusive_with(dir, &mut io::stderr())
    }

    fn acquire_exclusive_with(dir: &Path, notice: &mut dyn Write) -> io::Result<Self> {
        let (file, path) = Self::open(dir)?;
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
        Ok(Self {
            _file: Some(file),
            path,
        })
    }

    /// Takes the lock for a run only if it is free right now (or held by the parent run).
    pub fn try_acquire(dir: &Path) -> io::Result<Option<Self>> {
        if let Some(shared) = Self::inherited(dir) {
            return Ok(Some(shared));
        }
        let (file, path) = Self::open(dir)?;
        match file.try_lock() {
            Ok(()) => {
                let lock = Self {
                    _file: Some(file),
                    path,
                };
                lock.announce(dir);
                Ok(Some(lock))
            }
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn open(dir: &Path) -> io::Result<(File, PathBuf)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Ok((file, path))
    }

    /// The lock of `dir` as the run that started this process holds it, if it does.
    fn inherited(dir: &Path) -> Option<Self> {
        let held = std::env::var(HELD_ENV).ok()?;
        let (pid, held_dir) = held.split_once(':')?;
        let same = match (fs::canonicalize(held_dir), fs::canonicalize(dir)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let pid: u32 = pid.parse().ok()?;
        if !(same && is_ancestor(pid) && holds(pid, dir)) {
            return None;
        }
        watch_the_holder(pid, dir.to_path_buf());
        Some(Self {
            _file: None,
            path: dir.join(LOCK_FILE),
        })
    }

    /// Remembers `dir` for the environment of the processes this run starts.
    fn announce(&self, dir: &Path) {
        let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let _ = HELD.set(dir.into_os_string());
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
