//! A run report on one clock: every time as ms from the run's start, the spans in which each
//! task held a slot, the tracks it is drawn on, and the curves over time that the trace and
//! the timings page both draw (running tasks, a pool's use, download throughput).
//!
//! The report does not say which slot or download lane a task had, so tracks are rebuilt by
//! packing: each task goes on the lowest track free when it started.

use crate::model::TaskKind;
use crate::report::RunReport;
use crate::report::critical_path::offset_ms;

/// One task's times, in ms from the start of the run.
#[derive(Debug, Clone, Default)]
pub struct Times {
    /// When it took its slots (null: it never started).
    pub start: Option<u64>,
    /// When it reached its final status.
    pub finish: Option<u64>,
    /// A service's readiness.
    pub ready: Option<u64>,
    /// Each attempt's start and end.
    pub attempts: Vec<(u64, u64)>,
}

impl Times {
    /// The spans in which the task ran: its attempts. A task takes its slots only for an
    /// attempt: its cache lookup, a wait for a service and the waits between attempts hold
    /// none.
    pub fn busy(&self) -> Vec<(u64, u64)> {
        self.attempts.clone()
    }

    /// The spans it is drawn in on its track: from its start to its end, less the waits
    /// between attempts (no slot is held then, so another task may take the track).
    fn occupied(&self) -> Vec<(u64, u64)> {
        let (start, finish) = (self.start.unwrap_or(0), self.finish.unwrap_or(0));
        let mut spans = self.attempts.clone();
        match spans.first_mut() {
            None => return vec![(start, finish)],
            Some(first) => first.0 = first.0.min(start),
        }
        if let Some(last) = spans.last_mut() {
            last.1 = last.1.max(finish);
        }
        spans
    }
}

/// Which kind of track a task is drawn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// A concurrency slot (commands, services, groups).
    Slot,
    /// A download lane.
    Download,
    /// What runs without a slot: services, cache hits, groups.
    Other,
}

/// A run report with its times read once.
#[derive(Debug)]
pub struct Timeline<'a> {
    /// The report.
    pub report: &'a RunReport,
    /// The run's wall time (at least the last time in the report).
    pub wall_ms: u64,
    /// Parallel to `report.tasks`.
    pub times: Vec<Times>,
}

impl<'a> Timeline<'a> {
    /// Reads every time of `report` (unreadable times count as never).
    pub fn new(report: &'a RunReport) -> Self {
        let origin = humantime::parse_rfc3339_weak(&report.started_at).ok();
        let at = |s: &str| origin.and_then(|o| offset_ms(o, s));
        let times: Vec<Times> = report
            .tasks
            .iter()
            .map(|t| {
                let start = t.started_at.as_deref().and_then(at);
                let finish = t
                    .finished_at
                    .as_deref()
                    .and_then(at)
                    .map(|f| f.max(start.unwrap_or(0)));
                Times {
                    start,
                    finish,
                    ready: t.ready_at.as_deref().and_then(at),
                    attempts: t
                        .attempts
                        .iter()
                        .filter_map(|a| {
                            let s = at(&a.started_at)?;
                            Some((s, at(&a.finished_at)?.max(s)))
                        })
                        .collect(),
                }
            })
            .collect();
        let last = times.iter().filter_map(|t| t.finish).max().unwrap_or(0);
        Self {
            report,
            wall_ms: report.duration_ms.max(last),
            times,
        }
    }

    /// Whether task `i` held a slot: it ran an attempt and is no service (services, cache
    /// hits and groups take none).
    pub fn holds_slot(&self, i: usize) -> bool {
        !self.times[i].attempts.is_empty() && self.report.tasks[i].kind != TaskKind::Service
    }

    /// Each task's track (`None`: it never started), and how many tracks of each kind
    /// (slots, download lanes, others).
    pub fn tracks(&self) -> (Vec<Option<(TrackKind, usize)>>, [usize; 3]) {
        let mut order: Vec<usize> = (0..self.times.len())
            .filter(|&i| self.times[i].start.is_some())
            .collect();
        order.sort_by_key(|&i| (self.times[i].start, i));
        // Per track, the spans of its tasks that may still meet a later one.
        let mut lanes_of: [Vec<Vec<(u64, u64)>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut out = vec![None; self.times.len()];
        for i in order {
            let kind = match self.report.tasks[i].kind {
                _ if !self.holds_slot(i) => TrackKind::Other,
                TaskKind::Download => TrackKind::Download,
                _ => TrackKind::Slot,
            };
            let spans = self.times[i].occupied();
            let start = spans.first().map_or(0, |s| s.0);
            let lanes = &mut lanes_of[kind as usize];
            // A task that starts the millisecond another ends takes its track: it took that
            // task's slot, and one more track than the limit would show a slot that was not.
            // Tasks come by start: what ended before this one began meets none after it.
            for taken in lanes.iter_mut() {
                taken.retain(|t| t.1 > start);
            }
            let meets = |a: &(u64, u64), b: &(u64, u64)| a.0 < b.1 && b.0 < a.1;
            let lane = match lanes
                .iter()
                .position(|taken| !taken.iter().any(|t| spans.iter().any(|s| meets(t, s))))
            {
                Some(l) => l,
                None => {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                }
            };
            lanes[lane].extend(spans);
            out[i] = Some((kind, lane));
        }
        (out, lanes_of.map(|l| l.len()))
    }

    /// A step curve: `(time, value)` at each change, of the busy spans weighted by `weight`.
    pub fn busy_curve(&self, weight: impl Fn(usize) -> u32) -> Vec<(u64, u32)> {
        let mut edges: Vec<(u64, i64)> = Vec::new();
        for (i, t) in self.times.iter().enumerate() {
            let w = i64::from(weight(i));
            if w == 0 {
                continue;
            }
            for (s, e) in t.busy() {
                if e > s {
                    edges.push((s, w));
                    edges.push((e, -w));
                }
            }
        }
        edges.sort_unstable();
        let mut out: Vec<(u64, u32)> = vec![(0, 0)];
        let mut level: i64 = 0;
        for (t, d) in edges {
            level += d;
            let v = u32::try_from(level.max(0)).unwrap_or(u32::MAX);
            match out.last_mut() {
                Some(last) if last.0 == t => last.1 = v,
                _ => out.push((t, v)),
            }
        }
        out
    }

    /// Running tasks over time.
    pub fn running(&self) -> Vec<(u64, u32)> {
        self.busy_curve(|i| u32::from(self.holds_slot(i)))
    }

    /// Slots of `pool` in use over time.
    pub fn pool_use(&self, pool: &str) -> Vec<(u64, u32)> {
        self.busy_curve(|i| match self.holds_slot(i) {
            true => self.report.tasks[i].uses.get(pool).copied().unwrap_or(0),
            false => 0,
        })
    }

    /// Download throughput in bytes/s, in `bins` equal bins over the run: each download's
    /// bytes spread evenly over its last attempt (the report has no finer record).
    pub fn throughput(&self, bins: usize) -> Vec<f64> {
        let bins = bins.max(1);
        let width = (self.wall_ms.max(1) as f64) / bins as f64;
        let mut out = vec![0.0; bins];
        for (t, times) in self.report.tasks.iter().zip(&self.times) {
            let (Some(bytes), Some(&(s, e))) = (t.bytes, times.attempts.last()) else {
                continue;
            };
            if t.kind != TaskKind::Download || bytes == 0 || t.cache_hit {
                continue;
            }
            let (s, e) = (s as f64, (e as f64).max(s as f64 + 1.0));
            let rate = bytes as f64 / (e - s); // bytes per ms
            let first = ((s / width) as usize).min(bins - 1);
            let last = ((e / width) as usize).min(bins - 1);
            for (b, slot) in out.iter_mut().enumerate().take(last + 1).skip(first) {
                let lo = s.max(b as f64 * width);
                let hi = e.min((b + 1) as f64 * width);
                if hi > lo {
                    *slot += rate * (hi - lo);
                }
            }
        }
        let secs = width / 1000.0;
        out.iter().map(|b| b / secs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::AttemptOutcome;
    use crate::report::fixture::{attempt, cmd, run, task};

    #[test]
    fn waits_between_attempts_hold_no_slot() {
        let mut flaky = cmd("flaky", 0, 500, &[]);
        flaky.attempts = vec![
            attempt(1, 0, 100, AttemptOutcome::Failed, Some(300)),
            attempt(2, 400, 500, AttemptOutcome::Succeeded, None),
        ];
        let r = run(500, vec![flaky, cmd("other", 50, 450, &[])]);
        let tl = Timeline::new(&r);
        assert_eq!(tl.times[0].busy(), [(0, 100), (400, 500)]);
        // other's attempt: 50..450
        assert_eq!(
            tl.running(),
            [(0, 1), (50, 2), (100, 1), (400, 2), (450, 1), (500, 0)]
        );
        let (tracks, counts) = tl.tracks();
        assert_eq!(counts, [2, 0, 0]);
        assert_eq!(tracks[1], Some((TrackKind::Slot, 1)));
    }

    #[test]
    fn a_task_starting_as_another_ends_takes_its_track() {
        let r = run(
            300,
            vec![
                cmd("a", 0, 100, &[]),
                cmd("b", 0, 200, &[]),
                cmd("c", 100, 300, &[]),
            ],
        );
        let (tracks, counts) = Timeline::new(&r).tracks();
        assert_eq!(counts, [2, 0, 0]);
        assert_eq!(tracks[2], Some((TrackKind::Slot, 0)));
    }

    #[test]
    fn a_task_waiting_to_retry_leaves_its_track_to_another() {
        let mut flaky = cmd("flaky", 0, 900, &[]);
        flaky.attempts = vec![
            attempt(1, 0, 100, AttemptOutcome::Failed, Some(500)),
            attempt(2, 600, 900, AttemptOutcome::Succeeded, None),
        ];
        // Runs in flaky's wait, on the one slot.
        let r = run(900, vec![flaky, cmd("side", 100, 600, &[])]);
        let (tracks, counts) = Timeline::new(&r).tracks();
        assert_eq!(counts, [1, 0, 0]);
        assert_eq!(tracks[1], Some((TrackKind::Slot, 0)));
    }

    #[test]
    fn throughput_spreads_bytes_over_the_attempt() {
        let mut d = task("get", TaskKind::Download, 0, 1000, &[]);
        d.bytes = Some(2000);
        let r = run(2000, vec![d]);
        let bps = Timeline::new(&r).throughput(2);
        assert_eq!(bps, [2000.0, 0.0]);
    }
}
