//! `--trace PATH` (SPEC §12): the run in the Chrome Trace Event format, for Perfetto and
//! `chrome://tracing`.
//!
//! Only complete events (`X`), counters (`C`), instants (`i`) and metadata (`M`): complete
//! events need no begin/end matching, and the format allows them in any order. Times are µs
//! from the run's start. The JSON is written by hand: 10,000 tasks are ~40,000 events, and
//! building a `serde_json::Value` for each would cost more than the rest of the work.

use std::fmt::Write;

use crate::report::RunReport;
use crate::report::timeline::{Timeline, TrackKind};

/// The process id every event carries (one run, one process).
const PID: u32 = 1;
/// The track of counters (Perfetto shows counters per process; `tid` is still required).
const COUNTER_TID: usize = 0;
/// Counter samples of download throughput over the run.
const THROUGHPUT_BINS: usize = 200;
/// A retry that starts this much later than its chosen wait says it waited for a slot
/// (less is the scheduler's own latency).
const SLOT_WAIT_SHOWN_MS: u64 = 20;

/// The whole trace as JSON text.
pub fn to_string(report: &RunReport) -> String {
    let tl = Timeline::new(report);
    let (tracks, [slots, downloads, others]) = tl.tracks();
    let mut w = Writer {
        out: String::with_capacity(4096 + report.tasks.len() * 400),
        first: true,
    };
    w.out.push_str("{\"traceEvents\":[\n");
    w.meta_process(&format!("taskrun {} ({})", report.pipeline, report.run_id));
    for s in 0..slots {
        w.meta_thread(s + 1, &format!("slot {}", s + 1));
    }
    for d in 0..downloads {
        w.meta_thread(slots + d + 1, &format!("download lane {}", d + 1));
    }
    for o in 0..others {
        let tid = slots + downloads + o + 1;
        w.meta_thread(tid, &format!("without a slot {}", o + 1));
    }
    for (i, task) in report.tasks.iter().enumerate() {
        let Some((kind, lane)) = tracks[i] else {
            continue;
        };
        let tid = match kind {
            TrackKind::Slot => lane + 1,
            TrackKind::Download => slots + lane + 1,
            TrackKind::Other => slots + downloads + lane + 1,
        };
        let times = &tl.times[i];
        let (Some(start), Some(finish)) = (times.start, times.finish) else {
            continue;
        };
        let name = task.name.as_str();
        let cached = task.cache_key.is_some();
        let Some(first) = times.attempts.first() else {
            // A cache hit (lookup and restore), a group, or a task stopped before running.
            let (cat, what) = if task.cache_hit {
                ("cache", "cache hit: restore")
            } else {
                ("task", task.status.as_str())
            };
            let args = format!("{{\"status\":{}}}", json_str(task.status.as_str()));
            w.complete(&format!("{name} ({what})"), cat, tid, start, finish, &args);
            continue;
        };
        if cached && first.0 > start {
            w.complete(
                &format!("{name} (cache lookup)"),
                "cache",
                tid,
                start,
                first.0,
                "{}",
            );
        }
        for (a, &(s, e)) in task.attempts.iter().zip(&times.attempts) {
            let mut args = format!(
                "{{\"attempt\":{},\"outcome\":{}",
                a.number,
                json_str(a.outcome.as_str())
            );
            if let Some(c) = a.exit_code {
                let _ = write!(args, ",\"exit_code\":{c}");
            }
            if let Some(h) = a.http_status {
                let _ = write!(args, ",\"http_status\":{h}");
            }
            if let Some(err) = &a.error {
                let _ = write!(args, ",\"error\":{}", json_str(err));
            }
            args.push('}');
            w.complete(name, "attempt", tid, s, e, &args);
        }
        // A retry wait holds no slot (another task may have the track meanwhile): a mark
        // where it begins, saying how long and why.
        for (pair, a) in times.attempts.windows(2).zip(&task.attempts) {
            if pair[1].0 > pair[0].1 {
                let reason = a.error.as_deref().unwrap_or(a.outcome.as_str());
                // The backoff chosen; a later start than that waited for a free slot.
                let gap = pair[1].0 - pair[0].1;
                let chosen = a.wait_ms.unwrap_or(gap);
                let wait = if gap > chosen + SLOT_WAIT_SHOWN_MS {
                    format!(
                        "{name} (retry in {chosen} ms: {reason}; started {gap} ms later, when a slot was free)"
                    )
                } else {
                    format!("{name} (retry in {chosen} ms: {reason})")
                };
                w.instant(&wait, "wait", tid, pair[0].1);
            }
        }
        let last_end = times.attempts.last().map_or(start, |a| a.1);
        if cached && finish > last_end && task.status == crate::report::TaskStatus::Succeeded {
            w.complete(
                &format!("{name} (cache store)"),
                "cache",
                tid,
                last_end,
                finish,
                "{}",
            );
        }
        if let Some(ready) = times.ready {
            w.instant(&format!("{name} ready"), "service", tid, ready);
        }
    }
    for (t, v) in tl.running() {
        w.counter("running tasks", t, &format!("{{\"running\":{v}}}"));
    }
    for pool in &report.pools {
        for (t, v) in tl.pool_use(&pool.name) {
            let args = format!("{{\"used\":{v},\"size\":{}}}", pool.size);
            w.counter(&format!("pool {}", pool.name), t, &args);
        }
    }
    if downloads > 0 {
        let bins = tl.throughput(THROUGHPUT_BINS);
        let width = tl.wall_ms as f64 / bins.len() as f64;
        for (b, bps) in bins.iter().enumerate() {
            let t = (b as f64 * width) as u64;
            w.counter("bytes/s", t, &format!("{{\"bytes/s\":{}}}", bps.round()));
        }
        w.counter("bytes/s", tl.wall_ms, "{\"bytes/s\":0}");
    }
    let _ = write!(
        w.out,
        "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{{\"run_id\":{},\"pipeline\":{},\"status\":{}}}}}\n",
        json_str(&report.run_id),
        json_str(&report.pipeline),
        json_str(report.status.as_str())
    );
    w.out
}

/// Writes the trace to `path` (atomically).
pub fn write(report: &RunReport, path: &std::path::Path) -> std::io::Result<()> {
    crate::report::json::write_atomic(path, to_string(report).trim_end().as_bytes())
}

struct Writer {
    out: String,
    first: bool,
}

impl Writer {
    fn sep(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push_str(",\n");
        }
    }

    fn meta_process(&mut self, name: &str) {
        self.sep();
        let _ = write!(
            self.out,
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{PID},\"tid\":0,\"args\":{{\"name\":{}}}}}",
            json_str(name)
        );
    }

    fn meta_thread(&mut self, tid: usize, name: &str) {
        self.sep();
        let _ = write!(
            self.out,
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{PID},\"tid\":{tid},\"args\":{{\"name\":{}}}}},\n\
             {{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{PID},\"tid\":{tid},\"args\":{{\"sort_index\":{tid}}}}}",
            json_str(name)
        );
    }

    fn complete(&mut self, name: &str, cat: &str, tid: usize, start: u64, end: u64, args: &str) {
        self.sep();
        let _ = write!(
            self.out,
            "{{\"ph\":\"X\",\"name\":{},\"cat\":\"{cat}\",\"pid\":{PID},\"tid\":{tid},\"ts\":{},\"dur\":{},\"args\":{args}}}",
            json_str(name),
            start * 1000,
            end.saturating_sub(start) * 1000
        );
    }

    fn instant(&mut self, name: &str, cat: &str, tid: usize, at: u64) {
        self.sep();
        let _ = write!(
            self.out,
            "{{\"ph\":\"i\",\"s\":\"t\",\"name\":{},\"cat\":{},\"pid\":{PID},\"tid\":{tid},\"ts\":{}}}",
            json_str(name),
            json_str(cat),
            at * 1000
        );
    }

    fn counter(&mut self, name: &str, at: u64, args: &str) {
        self.sep();
        let _ = write!(
            self.out,
            "{{\"ph\":\"C\",\"name\":{},\"pid\":{PID},\"tid\":{COUNTER_TID},\"ts\":{},\"args\":{args}}}",
            json_str(name),
            at * 1000
        );
    }
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
