//! The critical path of a run (SPEC §12): the chain of dependencies that decided its wall
//! time, read from the report alone (what happened, not what the plan predicted).
//!
//! The walk starts at the task that finished last (services aside: they are stopped at the
//! end of a run, after everything that needed them) and steps back, each time to the
//! dependency that released the task last: a task's finish, or a service's readiness. A
//! task's span covers all its attempts and the waits between them, so retries count; a cache
//! hit counts as its lookup and restore.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::model::TaskKind;
use crate::report::RunReport;

/// One task on the critical path, with times in ms from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The task's name.
    pub name: String,
    /// Its index in the report's `tasks`.
    pub index: usize,
    /// When it started.
    pub start_ms: u64,
    /// When it released its dependents (a service: when it was ready).
    pub end_ms: u64,
    /// How long it held the path: its duration (a service: until ready).
    pub duration_ms: u64,
}

/// The critical path, first task first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriticalPath {
    /// The chain, in the order it ran.
    pub steps: Vec<Step>,
    /// The run's wall time.
    pub wall_ms: u64,
}

impl CriticalPath {
    /// The time the path's tasks took, summed.
    pub fn total_ms(&self) -> u64 {
        self.steps.iter().map(|s| s.duration_ms).sum()
    }

    /// Whether task `index` of the report is on the path.
    pub fn contains(&self, index: usize) -> bool {
        self.steps.iter().any(|s| s.index == index)
    }

    /// `critical path: fetch-jan 0.42s → summary 0.09s (0.51s of 0.55s)`; a long chain keeps
    /// its ends and says how many steps it leaves out.
    pub fn line(&self) -> String {
        const KEEP: usize = 4;
        let step = |s: &Step| format!("{} {}", s.name, secs(s.duration_ms));
        let parts: Vec<String> = if self.steps.len() <= 2 * KEEP + 1 {
            self.steps.iter().map(step).collect()
        } else {
            let n = self.steps.len();
            let mut p: Vec<String> = self.steps[..KEEP].iter().map(step).collect();
            p.push(format!("… {} more …", n - 2 * KEEP));
            p.extend(self.steps[n - KEEP..].iter().map(step));
            p
        };
        format!(
            "critical path: {} ({} of {})",
            parts.join(" → "),
            secs(self.total_ms()),
            secs(self.wall_ms)
        )
    }
}

/// Seconds with two decimals (`0.42s`), or minutes and seconds past a minute.
pub fn secs(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        crate::report::summary::human_ms(ms)
    }
}

/// Milliseconds from `origin` to an RFC 3339 time (0 when before it or unreadable).
pub fn offset_ms(origin: SystemTime, at: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    let ms = t.duration_since(origin).map(|d| d.as_millis()).unwrap_or(0);
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A task's times on the run's clock.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    /// When dependents could go on.
    release: u64,
    /// When it finished for good (a service: when it was stopped).
    finish: u64,
    duration: u64,
    service: bool,
}

/// The critical path of `report` (empty when nothing ran).
pub fn critical_path(report: &RunReport) -> CriticalPath {
    let wall_ms = report.duration_ms;
    let Ok(origin) = humantime::parse_rfc3339_weak(&report.started_at) else {
        return CriticalPath {
            steps: Vec::new(),
            wall_ms,
        };
    };
    let spans: Vec<Option<Span>> = report
        .tasks
        .iter()
        .map(|t| {
            let start = offset_ms(origin, t.started_at.as_deref()?)?;
            let finish = offset_ms(origin, t.finished_at.as_deref()?)?.max(start);
            let service = t.kind == TaskKind::Service;
            let ready = t.ready_at.as_deref().and_then(|r| offset_ms(origin, r));
            let release = match (service, ready) {
                (true, Some(r)) => r.clamp(start, finish),
                _ => finish,
            };
            let duration = match (service, t.duration_ms) {
                (false, Some(d)) => d,
                _ => release - start,
            };
            Some(Span {
                start,
                release,
                finish,
                duration,
                service,
            })
        })
        .collect();
    let index: HashMap<&str, usize> = report
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    // The last to finish; services only when nothing else ran.
    let last = spans
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .max_by_key(|(i, s)| (!s.service, s.finish, s.duration, std::cmp::Reverse(*i)));
    let mut steps = Vec::new();
    let mut cur = last.map(|(i, _)| i);
    while let Some(i) = cur {
        let Some(span) = spans[i] else { break };
        if steps.len() > report.tasks.len() {
            break; // a report whose deps loop: not from a run, stop rather than spin
        }
        steps.push(Step {
            name: report.tasks[i].name.clone(),
            index: i,
            start_ms: span.start,
            end_ms: span.start + span.duration,
            duration_ms: span.duration,
        });
        // The dependency that let it run: released last, and not after its first attempt
        // began (a task may take its slot and then wait for a service it started; 1 ms of
        // slack for the rounding of report times).
        let begin = report.tasks[i]
            .attempts
            .first()
            .and_then(|a| offset_ms(origin, &a.started_at))
            .map_or(span.start, |a| a.max(span.start));
        // A service starts when a dependent that needs it is ready to run: what released
        // that dependent released the service too.
        let dependent = match span.service {
            true => steps.len().checked_sub(2).map(|k| steps[k].index),
            false => None,
        };
        let deps = report.tasks[i]
            .deps
            .iter()
            .chain(dependent.iter().flat_map(|&d| report.tasks[d].deps.iter()));
        cur = deps
            .filter_map(|d| index.get(d.as_str()).copied())
            .filter(|&d| d != i)
            .filter_map(|d| spans[d].map(|s| (d, s)))
            .filter(|(_, s)| s.release <= begin + 1)
            .max_by_key(|(d, s)| (s.release, s.duration, std::cmp::Reverse(*d)))
            .map(|(d, _)| d);
    }
    steps.reverse();
    // A task may start (look up the cache, start a service and wait for it) before the step
    // before it ends: only its time past that end is on the path.
    let mut prev_end = 0;
    for s in &mut steps {
        s.duration_ms = s.end_ms.saturating_sub(s.start_ms.max(prev_end));
        prev_end = prev_end.max(s.end_ms);
    }
    CriticalPath { steps, wall_ms }
}

#[cfg(test)]
#[path = "critical_path_tests.rs"]
mod tests;
