//! A small builder: a temp workspace with a manifest, and the `taskrun` binary run in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temp dir holding `taskrun.toml` (and whatever the test writes next to it).
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A workspace with this manifest text.
    pub fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("taskrun.toml"), manifest).unwrap();
        Self { dir }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file under the root.
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Reads a file under the root.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// `taskrun <args>` run in the root, with a plain (non-CI, non-GitHub) environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_taskrun"));
        c.current_dir(self.root())
            .args(args)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("TASKRUN_LOG")
            .env_remove("SSL_CERT_FILE")
            .env_remove("TASKRUN_REMOTE_EXECUTOR")
            .env("CI", "true");
        c
    }

    /// `taskrun taskrun.toml <args>`, waited for.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["taskrun.toml"];
        all.extend_from_slice(args);
        Run::from(self.cmd(&all).output().unwrap())
    }

    /// The newest `.taskrun/runs/*.json` report.
    pub fn last_report(&self) -> Value {
        let dir = self.path(".taskrun/runs");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        // Run ids sort by second only; two runs in one second are told apart by mtime.
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        let last = files.last().expect("no run report");
        serde_json::from_str(&std::fs::read_to_string(last).unwrap()).unwrap()
    }

    /// How many run reports exist (timings pages aside).
    pub fn report_count(&self) -> usize {
        std::fs::read_dir(self.path(".taskrun/runs"))
            .map(|d| {
                d.filter(|e| {
                    let e = e.as_ref().map(|e| e.path());
                    e.is_ok_and(|p| p.extension().is_some_and(|x| x == "json"))
                })
                .count()
            })
            .unwrap_or(0)
    }
}

/// A finished `taskrun` process.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code, want,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The report entry of task `name`.
pub fn task<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {report:#}"))
}

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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}
