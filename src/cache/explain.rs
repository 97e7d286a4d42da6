//! Why a key missed: its parts against the last entry of the same task.

use std::fmt::Write as _;

use super::digest::to_hex;
use super::key::KeyPart;
use super::predict::{CacheView, KeyPrediction, PredictedStatus};
use super::reason::Reason;
use super::record::RecordPart;
use super::store::Store;
use crate::plan::Plan;

/// How one key part compares with the last run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartDiff {
    /// Part name (`command`, `input data/a.csv`, `dep fetch-a`).
    pub name: String,
    /// Hex digest now, if the part exists now.
    pub now: Option<String>,
    /// Hex digest in the last run, if it existed then.
    pub last: Option<String>,
}

impl PartDiff {
    /// Whether the part differs.
    pub fn changed(&self) -> bool {
        self.now != self.last
    }

    /// The reason phrase: "command changed", "input x added", "dependency y output changed".
    pub fn describe(&self) -> String {
        let what = match (&self.now, &self.last) {
            (Some(_), None) => "added",
            (None, Some(_)) => "removed",
            _ => "changed",
        };
        match self.name.strip_prefix("dep ") {
            Some(dep) if what == "changed" => format!("dependency {dep} output changed"),
            Some(dep) => format!("dependency {dep} {what}"),
            None => format!("{} {what}", self.name),
        }
    }
}

/// Every part of either list, in the current key's order (then parts that were removed).
pub fn diff_parts(last: &[RecordPart], now: &[KeyPart]) -> Vec<PartDiff> {
    let mut out: Vec<PartDiff> = now
        .iter()
        .map(|p| PartDiff {
            name: p.name.clone(),
            now: Some(to_hex(&p.digest)),
            last: last
                .iter()
                .find(|l| l.name == p.name)
                .map(|l| l.digest.clone()),
        })
        .collect();
    for l in last {
        if !now.iter().any(|p| p.name == l.name) {
            out.push(PartDiff {
                name: l.name.clone(),
                now: None,
                last: Some(l.digest.clone()),
            });
        }
    }
    out
}

/// Joins the first few changes: "input a changed, command changed and 2 more".
pub fn summarize(diffs: &[PartDiff]) -> Option<String> {
    let changed: Vec<String> = diffs
        .iter()
        .filter(|d| d.changed())
        .map(PartDiff::describe)
        .collect();
    match changed.len() {
        0 => None,
        1..=3 => Some(changed.join(", ")),
        n => Some(format!("{} and {} more", changed[..3].join(", "), n - 3)),
    }
}

/// The reason a key has no entry, from the task's last entry (its key from the journal):
/// what changed since, or no entry when there is none to compare with.
pub fn miss_reason(store: &Store, last_key: Option<String>, parts: &[KeyPart]) -> Reason {
    last_key
        .and_then(|k| store.read_record(&k))
        .and_then(|rec| summarize(&diff_parts(&rec.parts, parts)))
        .map_or(Reason::NoEntry, Reason::Changed)
}

fn short(hex: &Option<String>) -> String {
    hex.as_deref()
        .map_or_else(|| "-".into(), |h| h.get(..12).unwrap_or(h).to_string())
}

/// `taskrun explain`: the task's status and reason, then its key parts beside the last run's.
pub fn explain_text(
    plan: &Plan,
    view: &CacheView,
    task: usize,
    prediction: &KeyPrediction,
) -> String {
    let t = plan.task(task);
    let mut out = String::new();
    let status = match prediction.status {
        PredictedStatus::Hit => "hit",
        PredictedStatus::Miss => "miss",
        PredictedStatus::Off => "off",
    };
    let _ = write!(out, "{}: {status}", t.name);
    if let Some(r) = &prediction.reason {
        let _ = write!(out, " ({r})");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "key:      {}",
        prediction.key.as_deref().unwrap_or("-")
    );
    let last = view
        .journal
        .last_key(&t.name)
        .and_then(|k| view.store.read_record(&k));
    match &last {
        Some(rec) => {
            let _ = writeln!(
                out,
                "last run: {} (created {}, last used {})",
                rec.key, rec.created, rec.last_used
            );
        }
        None => {
            let _ = writeln!(out, "last run: none");
        }
    }
    if prediction.parts.is_empty() && last.is_none() {
        return out;
    }
    let last_parts = last.as_ref().map(|r| r.parts.as_slice()).unwrap_or(&[]);
    let diffs = diff_parts(last_parts, &prediction.parts);
    let width = diffs
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(4)
        .max(10);
    let _ = writeln!(out, "\n{:width$}  {:12}  last run", "ingredient", "now");
    // Deps that will run first: their digest is not known, which is not "removed". Those
    // waited for only (a fan-out's producers) are not part of the key.
    let order_only = plan.task(task).order_only_deps();
    let mut unknown: Vec<String> = plan.deps[task]
        .iter()
        .map(|&dep| &plan.task(dep).name)
        .filter(|name| !order_only.contains(name))
        .map(|name| format!("dep {name}"))
        .filter(|part| !prediction.parts.iter().any(|p| p.name == *part))
        .collect();
    let will_run = "(will run first; its digest is not known yet)";
    for d in &diffs {
        let mark = if let Some(at) = unknown.iter().position(|u| *u == d.name) {
            unknown.swap_remove(at);
            let line = format!(
                "{:width$}  {:12}  {:12}  {will_run}",
                d.name,
                "?",
                short(&d.last)
            );
            let _ = writeln!(out, "{line}");
            continue;
        } else if last.is_none() {
            String::new()
        } else if d.changed() {
            format!("  {}", d.describe())
        } else {
            String::new()
        };
        let line = format!(
            "{:width$}  {:12}  {:12}{mark}",
            d.name,
            short(&d.now),
            short(&d.last)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for name in unknown {
        let _ = writeln!(out, "{name:width$}  {:12}  {will_run}", "?");
    }
    out
}
