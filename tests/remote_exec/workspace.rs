//! A temp workspace with a manifest, the `taskrun` binary run in it (with none of the
//! caller's `TASKRUN_*` or `GITHUB_*` variables), and what a run left there: reports, output
//! files with their modes, the Action digests taskrun sends for its tasks.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temp dir holding `taskrun.toml`.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// How a run ended.
pub struct Run {
    /// The exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// stdout as text.
    pub stdout: String,
    /// stderr as text.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code; returns self.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(want),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The manifest `body` with `[execution] remote = url` (and `extra` lines in that table)
/// and an `[env]` NONCE that makes its Actions this test's own.
pub fn manifest(url: &str, extra: &str, nonce: &str, body: &str) -> String {
    format!("[execution]\nremote = \"{url}\"\n{extra}\n[env]\nNONCE = \"{nonce}\"\n\n{body}")
}

/// A marker unique to this process and call, so another test's (or run's) results in the
/// cluster's cache never answer.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{t:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
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

    /// Writes a file under the root (parents created), with `mode`.
    pub fn write(&self, rel: &str, text: &str, mode: u32) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Reads a file under the root.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// `taskrun <args>` in the root: plain output (`CI`), no colour, none of the caller's
    /// `TASKRUN_*`/`GITHUB_*` variables (a developer's cache dir or executor never leaks in).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_taskrun"));
        c.current_dir(self.root()).args(args);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("TASKRUN_") || k.starts_with("GITHUB_") || k == "SSL_CERT_FILE" {
                c.env_remove(&*k);
            }
        }
        c.env("CI", "true").env("NO_COLOR", "1");
        c
    }

    /// `taskrun taskrun.toml <args>`, waited for.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["taskrun.toml"];
        all.extend_from_slice(args);
        Run::from(self.cmd(&all).output().unwrap())
    }

    /// The newest run report.
    pub fn last_report(&self) -> Value {
        let dir = self.path(".taskrun/runs");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        let last = files.last().expect("no run report");
        serde_json::from_str(&std::fs::read_to_string(last).unwrap()).unwrap()
    }

    /// Every file under `rels` (files or directories): relative path → (bytes, mode bits).
    pub fn files(&self, rels: &[&str]) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        for rel in rels {
            for e in walkdir::WalkDir::new(self.path(rel)) {
                let e = e.unwrap();
                if !e.file_type().is_file() {
                    continue;
                }
                let name = e.path().strip_prefix(self.root()).unwrap();
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                out.insert(
                    name.to_string_lossy().into_owned(),
                    (std::fs::read(e.path()).unwrap(), mode),
                );
            }
        }
        out
    }

    /// The Action digest (`HASH/SIZE`, as the cluster's worker log names it) taskrun sends
    /// for `task` now, for a server speaking REAPI 2.2 (BuildGrid 0.9.1).
    pub fn action_digest(&self, task: &str) -> String {
        let path = self.path("taskrun.toml");
        let opts = taskrun::manifest::LoadOptions::default();
        let pipeline = taskrun::manifest::load(&path, &opts).unwrap();
        let plan = taskrun::plan::Plan::build(pipeline, &[]).unwrap();
        let i = plan.pipeline.tasks.get_index_of(task).unwrap();
        let spec = taskrun::actions::remote::spec::build(&plan, i).unwrap();
        let prepared =
            taskrun::reapi::action::prepare(&spec, taskrun::reapi::ApiVersion::V2_2).unwrap();
        let d = prepared.digest();
        format!("{}/{}", d.hex(), d.size)
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
