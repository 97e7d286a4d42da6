//! The loopback test server ([`Http`]), plus small helpers shared by the HTTP tests.

use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::bytes::{body, sha};
pub use crate::served::Http;

/// Every regular file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after 20 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
