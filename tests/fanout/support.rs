//! The fan-out binary's own helpers, on top of the shared harness
//! (`tests/support/workspace.rs`, whose `taskrun` has a clean environment: no `TASKRUN_*`,
//! `GITHUB_*` or `SSL_CERT_FILE` from the caller; `CI=true`, `NO_COLOR=1`): `check`, `plan`
//! and a run with its report, and readers for the plan JSON and the run report.
#![allow(dead_code)]

use serde_json::Value;

pub use crate::workspace::task as entry;
pub use crate::workspace::{Run, Workspace};

impl Workspace {
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

/// The `name` of every task in a plan or report, in order.
pub fn names(doc: &Value) -> Vec<String> {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
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
