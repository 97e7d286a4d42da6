//! The CLI binary's own helpers, on top of the shared harness (`tests/support/workspace.rs`):
//! processes (alive, dying), and the intervals tasks stamp to show what overlapped.

use std::path::Path;

pub use crate::workspace::{Run, Workspace, task};

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only probes for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Reads `[start, end]` nanosecond stamps written by tasks as `<dir>/<task>` files holding
/// "start end".
pub fn intervals(dir: &Path) -> Vec<(String, u128, u128)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let mut it = text.split_whitespace().map(|n| n.parse::<u128>().unwrap());
        let (s, e) = (it.next().unwrap(), it.next().unwrap());
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), s, e));
    }
    out
}

/// The most intervals overlapping at any instant.
pub fn max_overlap(iv: &[(String, u128, u128)]) -> usize {
    let mut points: Vec<(u128, i32)> = Vec::new();
    for (_, s, e) in iv {
        points.push((*s, 1));
        points.push((*e, -1));
    }
    // Ends sort before starts at the same instant.
    points.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// Whether `pid` is gone within a few seconds (SIGKILL is delivered asynchronously).
pub fn dies_soon(pid: i32) -> bool {
    dies_soon_within(pid, std::time::Duration::from_secs(5))
}

/// Whether `pid` is gone within `limit`.
pub fn dies_soon_within(pid: i32, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}
