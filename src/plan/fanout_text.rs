//! The text plan of a fan-out task: shown once, with its instance count, first and last keys,
//! the action as written, and only the instances whose predicted status differs from the
//! rest (SPEC §9), so that a plan of 1,000 downloads stays readable. `plan --expand` and the
//! JSON plan list every instance instead.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Plan;
use super::json::PlanTask;
use super::predict::CacheStatus;
use super::render::plural;

/// Instances listed by name under a fan-out task before the rest are only counted.
const LISTED: usize = 10;

/// The selected instances of each fan-out task, by declared name.
pub struct Groups<'d> {
    members: HashMap<&'d str, Vec<&'d PlanTask>>,
}

impl<'d> Groups<'d> {
    /// Groups the plan's instances by their fan-out task.
    pub fn new(tasks: &'d [PlanTask]) -> Self {
        let mut members: HashMap<&str, Vec<&PlanTask>> = HashMap::new();
        for t in tasks.iter().filter(|t| t.item.is_some()) {
            members.entry(t.task.as_str()).or_default().push(t);
        }
        // One selected instance reads best as the task it is.
        members.retain(|_, m| m.len() > 1);
        Self { members }
    }

    /// An instance shown as part of its fan-out task's summary.
    pub fn is_grouped(&self, t: &PlanTask) -> bool {
        t.item.is_some() && self.members.contains_key(t.task.as_str())
    }

    /// The instance the summary is printed at (the first in plan order).
    pub fn is_first(&self, t: &PlanTask) -> bool {
        self.members
            .get(t.task.as_str())
            .and_then(|m| m.first())
            .is_some_and(|f| std::ptr::eq(*f, t))
    }

    /// Writes the summary of `first`'s fan-out task.
    pub fn write(&self, out: &mut String, plan: &Plan, first: &PlanTask, width: usize) {
        let Some(members) = self.members.get(first.task.as_str()) else {
            return;
        };
        let declared = plan.pipeline.fanouts.iter().find(|f| f.name == first.task);
        let n = members.len();
        let last = members.last().map_or("", |t| t.name.as_str());
        let span = if n == 1 {
            first.name.clone()
        } else {
            format!("{} … {last}", first.name)
        };
        let label = format!("{}[*]", first.task);
        let _ = writeln!(
            out,
            "  {label:width$}  {:8}  {} instance{}: {span}",
            first.kind.as_str(),
            thousands(n),
            plural(n),
        );
        let pad = " ".repeat(width + 4);
        if let Some(d) = declared.and_then(|f| f.description.as_deref()) {
            let _ = writeln!(out, "{pad}{d}");
        }
        match declared.map(|f| f.template.as_str()) {
            Some(t) if !t.is_empty() => {
                let mut lines = t.trim().lines();
                let first = lines.next().unwrap_or("");
                let more = if lines.next().is_some() { " …" } else { "" };
                let _ = writeln!(out, "{pad}each: {first}{more}");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{pad}each: {}",
                    super::render::action_line(&first.action, "")
                );
            }
        }
        let outside: Vec<&str> = first
            .deps
            .iter()
            .filter(|d| !members.iter().any(|m| m.name == **d))
            .map(String::as_str)
            .collect();
        if !outside.is_empty() {
            let _ = writeln!(out, "{pad}after: {} (first instance)", shorten(&outside));
        }
        if let Some(task) = plan.pipeline.tasks.get(first.name.as_str())
            && matches!(
                task.kind(),
                crate::model::TaskKind::Command | crate::model::TaskKind::Download
            )
        {
            let _ = writeln!(
                out,
                "{pad}retry: {}",
                super::json::schedule_words(&task.retry)
            );
        }
        write_pins(out, members, &pad, plan);
        write_placements(out, members, &pad);
        self.write_statuses(out, members, &pad);
    }

    fn write_statuses(&self, out: &mut String, members: &[&PlanTask], pad: &str) {
        let count = |s: CacheStatus| members.iter().filter(|t| t.cache.status == s).count();
        let counts = [
            (CacheStatus::Hit, count(CacheStatus::Hit)),
            (CacheStatus::Miss, count(CacheStatus::Miss)),
            (CacheStatus::Off, count(CacheStatus::Off)),
        ];
        // On a tie the instances that will run are the ones listed: they are what a reader
        // of the plan looks for.
        let Some(&(majority, _)) = counts
            .iter()
            .filter(|(s, _)| *s != CacheStatus::Miss)
            .chain(counts.iter().filter(|(s, _)| *s == CacheStatus::Miss))
            .rev()
            .max_by_key(|(_, n)| *n)
        else {
            return;
        };
        let words: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{} {}", thousands(*n), word(*s)))
            .collect();
        let reason = |t: &PlanTask| {
            t.cache
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        };
        let common = members.first().map(|t| reason(t)).unwrap_or_default();
        let same_reason = members.iter().all(|t| reason(t) == common);
        let _ = writeln!(
            out,
            "{pad}cache: {}{}",
            words.join(", "),
            if same_reason { common } else { String::new() }
        );
        // A hit that must restore outputs (its reason says which) differs from one that
        // leaves the files as they are: a reader wants to know what will be rewritten.
        let restores =
            |t: &PlanTask| t.cache.status == CacheStatus::Hit && t.cache.reason.is_some();
        let odd: Vec<&&PlanTask> = members
            .iter()
            .filter(|t| t.cache.status != majority || (!same_reason && restores(t)))
            .collect();
        if odd.is_empty() {
            return;
        }
        let runs = |s: CacheStatus| s != CacheStatus::Hit;
        let verb = if odd.iter().all(|t| restores(t)) {
            "are restored from the cache"
        } else if odd.iter().all(|t| runs(t.cache.status)) {
            "will run"
        } else if odd.iter().all(|t| !runs(t.cache.status)) {
            "are cached"
        } else {
            "differ"
        };
        let _ = writeln!(
            out,
            "{pad}{} of {} {verb}:",
            thousands(odd.len()),
            thousands(members.len())
        );
        for t in odd.iter().take(LISTED) {
            let _ = writeln!(
                out,
                "{pad}  {}  {}{}",
                t.name,
                word(t.cache.status),
                reason(t)
            );
        }
        if odd.len() > LISTED {
            let _ = writeln!(
                out,
                "{pad}  … and {} more (taskrun plan --expand lists every instance)",
                thousands(odd.len() - LISTED)
            );
        }
    }
}

/// Dependencies as the text plan lists them: every instance of a fan-out task as one
/// `name[*] (N instances)` entry, at the place of its first instance.
pub fn collapse_deps(plan: &Plan, deps: &[String]) -> String {
    let fanout_of = |d: &str| {
        plan.pipeline
            .tasks
            .get(d)
            .and_then(|t| t.origin.as_ref())
            .map(|o| o.task.as_str())
    };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for d in deps {
        if let Some(f) = fanout_of(d) {
            *counts.entry(f).or_default() += 1;
        }
    }
    let whole = |f: &str| {
        plan.pipeline
            .fanouts
            .iter()
            .find(|x| x.name == f)
            .is_some_and(|x| x.instances.len() == counts.get(f).copied().unwrap_or(0))
    };
    let mut shown: Vec<String> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for d in deps {
        match fanout_of(d) {
            Some(f) if whole(f) && counts[f] > 1 => {
                if !done.contains(&f) {
                    done.push(f);
                    shown.push(format!("{f}[*] ({} instances)", thousands(counts[f])));
                }
            }
            _ => shown.push(d.clone()),
        }
    }
    shown.join(", ")
}

/// Where the instances run, once for all when they agree (they mostly do: a secret or a
/// `remote = false` is written once for all), else counted per placement.
fn write_placements(out: &mut String, members: &[&PlanTask], pad: &str) {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for words in members
        .iter()
        .filter_map(|t| super::render::placement_words(t))
    {
        match counts.iter_mut().find(|(w, _)| *w == words) {
            Some((_, n)) => *n += 1,
            None => counts.push((words, 1)),
        }
    }
    let line = match counts.as_slice() {
        [] => return,
        [(words, _)] => words.clone(),
        _ => counts
            .iter()
            .map(|(w, n)| format!("{} {w}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let _ = writeln!(out, "{pad}runs: {line}");
}

/// Where the instances' sha256 pins come from, for a download fan-out.
fn write_pins(out: &mut String, members: &[&PlanTask], pad: &str, plan: &Plan) {
    use super::json::{PinOrigin, PlanAction};
    let (mut inline, mut locked, mut none) = (0, 0, 0);
    for t in members {
        match &t.action {
            PlanAction::Download {
                sha256_source: Some(PinOrigin::Lockfile),
                ..
            } => locked += 1,
            PlanAction::Download {
                sha256_source: Some(_),
                ..
            } => inline += 1,
            PlanAction::Download { .. } => none += 1,
            _ => return,
        }
    }
    let lockfile = crate::lockfile::file_name(&plan.pipeline.manifest_path);
    let mut parts = Vec::new();
    if inline > 0 {
        parts.push(format!("{} inline", thousands(inline)));
    }
    if locked > 0 {
        parts.push(format!("{} from {lockfile}", thousands(locked)));
    }
    if none > 0 {
        parts.push(format!(
            "{} not pinned yet (pinned on first download)",
            thousands(none)
        ));
    }
    let _ = writeln!(out, "{pad}sha256: {}", parts.join(", "));
}

fn word(s: CacheStatus) -> &'static str {
    match s {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
        CacheStatus::Off => "off",
    }
}

fn shorten(names: &[&str]) -> String {
    if names.len() <= 4 {
        return names.join(", ");
    }
    format!("{}, … ({} tasks)", names[..3].join(", "), names.len())
}

/// `1,000`: counts in a plan are read at a glance.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
