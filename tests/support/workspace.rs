//! The one harness for running the real `taskrun` binary, shared by every test binary that
//! runs it: [`taskrun()`] (the command with a clean, fixed environment), [`Workspace`] (a temp
//! dir holding `taskrun.toml`, with taskrun run in it) and [`Run`] (how a run ended).
//!
//! [`taskrun()`] removes every `TASKRUN_*` and `GITHUB_*` variable and `SSL_CERT_FILE` of the
//! caller (a developer's cache dir, remote cache or executor, log filter or CA bundle never
//! leaks in, and a GitHub runner's variables never turn on annotations) and sets `CI=true`
//! and `NO_COLOR=1`, so output is plain in every binary. A test that needs one of them sets it
//! on the command it gets.
//!
//! Include it from any test binary with
//! `#[path = "../support/workspace.rs"] mod workspace;`; a binary's own helpers build on it in
//! its `support.rs`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

/// The longest a test waits for one `taskrun` through [`Workspace::exec`]: far more than any
/// run here takes on a slow 2-core machine, far less than CI's own timeout.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `cmd`'s output, as `Command::output` gives it, but killed after `limit`: a run that hangs
/// fails its test, naming the command, instead of stalling the whole suite.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    use std::process::Stdio;
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (done, finished) = channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let late = matches!(finished.recv_timeout(limit), Err(RecvTimeoutError::Timeout));
        if late {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        late
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    let late = watchdog.join().unwrap();
    assert!(!late, "{cmd:?} did not end within {limit:?}; killed");
    out
}

/// Whether the caller's variable `name` is kept from taskrun.
pub fn cleared(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"TASKRUN_") || b.starts_with(b"GITHUB_") || b == b"SSL_CERT_FILE"
}

/// `taskrun` with none of the caller's `TASKRUN_*`, `GITHUB_*` or `SSL_CERT_FILE`, and with
/// `CI=true` and `NO_COLOR=1`; no arguments, no working directory yet.
pub fn taskrun() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taskrun"));
    scrub(&mut c, std::env::vars_os().map(|(k, _)| k));
    c
}

/// Removes the variables of `names` that [`cleared`] names and sets `CI` and `NO_COLOR`.
fn scrub(c: &mut Command, names: impl Iterator<Item = std::ffi::OsString>) {
    for k in names.filter(|k| cleared(k)) {
        c.env_remove(k);
    }
    c.env("CI", "true").env("NO_COLOR", "1");
}

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

    /// Writes a file under the root (parents created).
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Writes a file under the root (parents created), with `mode`.
    pub fn write_mode(&self, rel: &str, text: &str, mode: u32) -> &Self {
        self.write(rel, text);
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Replaces the manifest.
    pub fn manifest(&self, text: &str) -> &Self {
        self.write("taskrun.toml", text)
    }

    /// Reads a file under the root.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Whether a file exists under the root.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// `taskrun ARGS` in the root (see [`taskrun()`] for its environment).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = taskrun();
        c.current_dir(self.root()).args(args);
        c
    }

    /// `taskrun ARGS`, waited for (at most [`RUN_LIMIT`]).
    pub fn exec(&self, args: &[&str]) -> Run {
        Run::from(output_within(&mut self.cmd(args), RUN_LIMIT))
    }

    /// `taskrun taskrun.toml ARGS` (a run), waited for.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["taskrun.toml"];
        all.extend_from_slice(args);
        self.exec(&all)
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
    /// The exit code; -1 when killed by a signal.
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
    #[track_caller]
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code, want,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts that the combined output holds every one of `parts`.
    #[track_caller]
    pub fn says(&self, parts: &[&str]) -> &Self {
        let all = self.all();
        for p in parts {
            assert!(all.contains(p), "output lacks {p:?}:\n{all}");
        }
        self
    }
}

/// The entry of task `name` in a plan or report.
pub fn task<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {doc:#}"))
}

#[test]
fn a_command_that_outlives_its_limit_is_killed_and_fails_the_test() {
    let started = std::time::Instant::now();
    let hung = std::panic::catch_unwind(|| {
        output_within(Command::new("sleep").arg("30"), Duration::from_millis(200))
    });
    assert!(hung.is_err(), "a hang must fail the test");
    assert!(started.elapsed() < Duration::from_secs(10), "it was killed");
    let quick = output_within(Command::new("echo").arg("hi"), Duration::from_secs(30));
    assert_eq!(quick.stdout, b"hi\n");
}

#[test]
fn taskrun_clears_the_callers_taskrun_github_and_ssl_variables_and_sets_ci_and_no_color() {
    let mut c = Command::new("true");
    let names = [
        "TASKRUN_CACHE_DIR",
        "TASKRUN_REMOTE_CACHE",
        "TASKRUN_REMOTE_EXECUTOR",
        "TASKRUN_LOG",
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "SSL_CERT_FILE",
        "PATH",
        "HOME",
        "MY_TASKRUN_X",
        "SSL_CERT_DIR",
    ];
    scrub(&mut c, names.iter().map(Into::into));
    let mut envs: Vec<(String, Option<String>)> = c
        .get_envs()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.map(|v| v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    envs.sort();
    let set = |v: &str| Some(v.to_string());
    assert_eq!(
        envs,
        [
            ("CI".to_string(), set("true")),
            ("GITHUB_ACTIONS".into(), None),
            ("GITHUB_STEP_SUMMARY".into(), None),
            ("NO_COLOR".into(), set("1")),
            ("SSL_CERT_FILE".into(), None),
            ("TASKRUN_CACHE_DIR".into(), None),
            ("TASKRUN_LOG".into(), None),
            ("TASKRUN_REMOTE_CACHE".into(), None),
            ("TASKRUN_REMOTE_EXECUTOR".into(), None),
        ]
    );
    // And the real builder clears whatever the caller has.
    let real = taskrun();
    for (k, _) in std::env::vars_os().filter(|(k, _)| cleared(k)) {
        assert!(
            real.get_envs().any(|(n, v)| n == k && v.is_none()),
            "{k:?} leaks into taskrun"
        );
    }
}
