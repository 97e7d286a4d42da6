//! A cache store that cannot be written (full, read-only) after a command succeeded: the
//! task succeeds with a warning (its result is just not cached) and keeps its log (issue 14
//! bug 6, SPEC §5, §8).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Workspace, task};

/// A command that succeeds, writes 1 MiB of output and says something for its log.
const MANIFEST: &str = r#"
[cache]
dir = "CACHE"

[tasks.big]
outputs = ["out/big.bin", "out/dir"]
run = "echo making big; mkdir -p out/dir; head -c 1048576 /dev/zero > out/big.bin; echo small > out/dir/a.txt; echo done making"

[tasks.after]
deps = ["big"]
run = "cat out/dir/a.txt"
"#;

fn log_of(ws: &Workspace, name: &str) -> String {
    let logs = ws.path(".taskrun/logs");
    let run = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_to_string(run.join(format!("{name}.log"))).unwrap_or_default()
}

fn assert_succeeds_uncached(ws: &Workspace) {
    let run = ws.run(&[]);
    run.code(0);
    assert!(
        run.stderr.contains("not cached") || run.stdout.contains("not cached"),
        "no warning\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
    let report = ws.last_report();
    assert_eq!(task(&report, "big")["status"], "succeeded", "{report}");
    assert_eq!(task(&report, "after")["status"], "succeeded", "{report}");
    assert_eq!(
        std::fs::metadata(ws.path("out/big.bin")).unwrap().len(),
        1 << 20
    );
    let log = log_of(ws, "big");
    assert!(
        log.contains("making big") && log.contains("done making"),
        "log: {log:?}"
    );
}

/// The store's `cas/` is a file: every blob write fails (ENOTDIR), whoever runs the test.
#[test]
fn a_store_that_cannot_be_written_is_a_warning_not_a_failure() {
    let ws = Workspace::new(&MANIFEST.replace("CACHE", "cache"));
    std::fs::create_dir_all(ws.path("cache")).unwrap();
    std::fs::write(ws.path("cache/cas"), "not a directory").unwrap();
    assert_succeeds_uncached(&ws);
}

/// A tmpfs mount, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `options`: `size=64k`, `ro,size=64k`, ...
    fn mount(at: &Path, options: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// ENOSPC while storing: the cache dir is a 64 KiB tmpfs and the output is 1 MiB. Needs
/// permission to mount (root in CI); elsewhere it says so and passes.
#[test]
fn a_full_store_is_a_warning_not_a_failure() {
    let ws = Workspace::new(&MANIFEST.replace("CACHE", "cache"));
    let Some(_fs) = Tmpfs::mount(&ws.path("cache"), "size=64k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    assert_succeeds_uncached(&ws);
}

/// The issue's case: `.taskrun/` itself (logs, reports and the cache) on a small file system
/// that the outputs would overflow; the logs, written first, are kept.
#[test]
fn a_full_state_dir_keeps_the_log_and_the_result() {
    let ws = Workspace::new(&MANIFEST.replace("CACHE", ".taskrun/cache"));
    let Some(_fs) = Tmpfs::mount(&ws.path(".taskrun"), "size=256k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    assert_succeeds_uncached(&ws);
}

/// A read-only cache dir (a read-only mount: root ignores permission bits): the run goes on
/// without the cache, says so, and keeps the log.
#[test]
fn a_read_only_cache_dir_runs_without_the_cache() {
    let ws = Workspace::new(&MANIFEST.replace("CACHE", "cache"));
    let Some(_fs) = Tmpfs::mount(&ws.path("cache"), "ro,size=64k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let run = ws.run(&[]);
    run.code(0);
    assert!(run.stderr.contains("without the cache"), "{}", run.stderr);
    let report = ws.last_report();
    assert_eq!(task(&report, "big")["status"], "succeeded");
    let log = log_of(&ws, "big");
    assert!(
        log.contains("making big") && log.contains("done making"),
        "log: {log:?}"
    );
}
