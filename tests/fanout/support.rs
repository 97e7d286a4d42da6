//! A temp workspace holding `taskrun.toml`, and the real `taskrun` binary run in it with a
//! clean environment (no `TASKRUN_*`, `GITHUB_*` or `SSL_CERT_FILE` from the caller; `CI=1`,
//! `NO_COLOR=1`), plus readers for the plan JSON and the run report.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// A temp dir holding `taskrun.toml` and whatever files a test writes.
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

    /// `taskrun ARGS` in the root, with nothing of the caller's environment that could change
    /// what taskrun does.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_taskrun"));
        for (k, _) in std::env::vars_os() {
            let Some(k) = k.to_str() else { continue };
            if k.starts_with("TASKRUN_") || k.starts_with("GITHUB_") || k == "SSL_CERT_FILE" {
                c.env_remove(k);
            }
        }
        c.current_dir(self.root())
            .args(args)
            .env("CI", "1")
            .env("NO_COLOR", "1");
        c
    }

    /// `taskrun ARGS`, waited for.
    pub fn exec(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    /// `taskrun taskrun.toml ARGS` (a run), waited for.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["taskrun.toml"];
        all.extend_from_slice(args);
        self.exec(&all)
    }

    /// `taskrun check taskrun.toml`.
    pub fn check(&self) -> Run {
        self.exec(&["check", "taskrun.toml"])
    }

    /// `taskrun plan taskrun.toml ARGS` (text).
    pub fn plan_text(&self, args: &[&str]) -> Run {
        let mut all = vec!["plan", "taskrun.toml"];
        all.extend_from_slice(args);
        self.exec(&all)
    }

    /// `taskrun plan taskrun.toml ARGS --format json`, which must succeed, parsed.
    pub fn plan_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["plan", "taskrun.toml"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "json"]);
        let r = self.exec(&all);
        r.code(0);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", r.stdout))
    }

    /// A run with `--report fanout-report.json`, and that report (which must exist).
    pub fn run_report(&self, args: &[&str], code: i32) -> (Run, Value) {
        let report = self.path("fanout-report.json");
        let _ = std::fs::remove_file(&report);
        let mut all = vec!["taskrun.toml", "--report", "fanout-report.json"];
        all.extend_from_slice(args);
        let r = self.exec(&all);
        r.code(code);
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("no report: {e}\n{}\n{}", r.stdout, r.stderr));
        (r, serde_json::from_str(&text).unwrap())
    }
}

/// A finished `taskrun` process.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(o: std::process::Output) -> Self {
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

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts that the combined output holds every one of `parts`.
    pub fn says(&self, parts: &[&str]) -> &Self {
        let all = self.all();
        for p in parts {
            assert!(all.contains(p), "output lacks {p:?}:\n{all}");
        }
        self
    }
}

/// The `name` of every task in a plan or report, in order.
pub fn names(doc: &Value) -> Vec<String> {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The entry of task `name` in a plan or report.
pub fn entry<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {doc:#}"))
}

/// `(name, status)` of every task in a report, sorted by name.
pub fn statuses(report: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The names of the report's tasks with this status, sorted.
pub fn with_status(report: &Value, status: &str) -> Vec<String> {
    statuses(report)
        .into_iter()
        .filter(|(_, s)| s == status)
        .map(|(n, _)| n)
        .collect()
}

/// `item` of a plan or report entry as (field, value) pairs, sorted by field (a JSON object
/// has no order).
pub fn item(t: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = t["item"]
        .as_object()
        .unwrap_or_else(|| panic!("no item object in {t:#}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

/// `[("a","1"),...]` from string pairs, sorted, for comparing with [`item`].
pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}
