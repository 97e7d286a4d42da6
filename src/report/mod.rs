//! The run report (SPEC §6) and the event sinks that show a run: console, plain lines,
//! GitHub Actions, JSON report, JUnit XML, the summary table.
//!
//! The report types here are the contract of `.taskrun/runs/<run-id>.json`; their field
//! names must not change (see `schema/report.schema.json`, generated from them).

pub mod console;
pub mod critical_path;
pub mod destination;
#[cfg(test)]
pub(crate) mod fixture;
pub mod github;
pub mod json;
pub mod junit;
pub mod plain;
pub mod summary;
pub mod timeline;
pub mod timings;
pub mod trace;
pub mod tracing_sink;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cache::CacheSource;
use crate::model::{ExecutedOn, TaskKind};

/// The version of the report format; bumped only on an incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// `.taskrun/runs/<run-id>.json`: everything a run did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    /// Always 1 for this layout.
    pub format_version: u32,
    /// UTC start time plus a random suffix, e.g. `20261125T113201Z-7f3a`.
    pub run_id: String,
    /// `[pipeline] name`.
    pub pipeline: String,
    /// The manifest path as given.
    pub manifest: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Overall outcome.
    pub status: RunStatus,
    /// Counts per status.
    pub summary: Summary,
    /// The selected tasks, in plan order.
    pub tasks: Vec<TaskReport>,
    /// The running-task limit of this run (`-j` or `[pipeline] concurrency`); null in
    /// reports written before it was recorded.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// The declared `[pools]` and their sizes, so timings can show each pool's use.
    #[serde(default)]
    pub pools: Vec<PoolReport>,
}

/// A concurrency pool of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PoolReport {
    /// The pool's name under `[pools]`.
    pub name: String,
    /// Its size in slots.
    pub size: u32,
}

/// Overall outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every selected task succeeded or was cached.
    Succeeded,
    /// A task failed.
    Failed,
    /// SIGINT, SIGTERM or SIGHUP stopped the run.
    Interrupted,
}

impl RunStatus {
    /// The word used in text output and logs, as in the report's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Counts per task status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Selected tasks.
    pub total: usize,
    /// Ran and succeeded.
    pub succeeded: usize,
    /// Not run: the cache had the result.
    pub cached: usize,
    /// Ran and failed for good.
    pub failed: usize,
    /// Not run because a dependency failed.
    pub skipped: usize,
    /// Not run, or stopped, because the run stopped.
    pub cancelled: usize,
    /// Bytes received by downloads in this run.
    pub bytes_downloaded: u64,
    /// Tasks whose command ran on the remote executor (SPEC §11), whatever their status.
    #[serde(default)]
    pub remote: usize,
}

/// A task's final status (live views also know pending and running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Ran and succeeded.
    Succeeded,
    /// The cache had the result.
    Cached,
    /// Ran and failed for good.
    Failed,
    /// A dependency failed.
    Skipped,
    /// The run stopped (fail-fast or an interrupt).
    Cancelled,
}

impl TaskStatus {
    /// The word used in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Cached => "cached",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// One task in the report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskReport {
    /// The task's name (`fetch[2023,01]` for an instance of a fan-out task).
    pub name: String,
    /// The declared task: the fan-out task of an instance, else the name itself.
    pub task: String,
    /// An instance's matrix values by axis and item fields by name; null otherwise.
    pub item: Option<crate::model::ItemValues>,
    /// command, download, service or group.
    pub kind: TaskKind,
    /// Final status.
    pub status: TaskStatus,
    /// When it started (null when it never did).
    pub started_at: Option<String>,
    /// When it finished (null when it never started).
    pub finished_at: Option<String>,
    /// Wall time from start to finish, waits between attempts included.
    pub duration_ms: Option<u64>,
    /// Hex cache key, when the task is cacheable.
    pub cache_key: Option<String>,
    /// Whether the result came from the cache.
    pub cache_hit: bool,
    /// Where a hit came from.
    pub cache_source: Option<CacheSource>,
    /// Bytes received (downloads), else null.
    pub bytes: Option<u64>,
    /// The last attempt's exit code (commands).
    pub exit_code: Option<i32>,
    /// Why it failed, was skipped or cancelled.
    pub error: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptReport>,
    /// The names of its (selected) dependencies: the critical path is walked along them.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Pool slots it held while running (`uses`), by pool name.
    #[serde(default)]
    pub uses: std::collections::BTreeMap<String, u32>,
    /// When a service answered its readiness probe (its dependents could start), else null.
    #[serde(default)]
    pub ready_at: Option<String>,
    /// Where it ran: `local` (this machine) or `remote` (the remote executor, SPEC §11);
    /// null when it did not run (cached, skipped, cancelled before starting).
    #[serde(default)]
    pub executed_on: Option<ExecutedOn>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It worked.
    Succeeded,
    /// It failed (non-zero exit, HTTP error, ...).
    Failed,
    /// It ran past the task's `timeout`.
    TimedOut,
    /// An interrupt stopped it.
    Cancelled,
}

impl AttemptOutcome {
    /// The word used in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

/// One attempt of a task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AttemptReport {
    /// 1-based.
    pub number: u32,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
    /// Wall time of the attempt.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// A command's exit code (null when killed by a signal or not a command).
    pub exit_code: Option<i32>,
    /// A download's HTTP status.
    pub http_status: Option<u16>,
    /// The URL a download attempt ended on.
    pub url: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// The wait chosen before the next attempt, or null.
    pub wait_ms: Option<u64>,
}

impl RunReport {
    /// Counts the tasks' statuses into a [`Summary`].
    pub fn summarize(tasks: &[TaskReport]) -> Summary {
        let mut s = Summary {
            total: tasks.len(),
            ..Summary::default()
        };
        for t in tasks {
            match t.status {
                TaskStatus::Succeeded => s.succeeded += 1,
                TaskStatus::Cached => s.cached += 1,
                TaskStatus::Failed => s.failed += 1,
                TaskStatus::Skipped => s.skipped += 1,
                TaskStatus::Cancelled => s.cancelled += 1,
            }
            if t.kind == TaskKind::Download {
                s.bytes_downloaded += t.bytes.unwrap_or(0);
            }
            if t.executed_on == Some(ExecutedOn::Remote) {
                s.remote += 1;
            }
        }
        s
    }
}

/// An RFC 3339 UTC timestamp with milliseconds, as every report time is written.
///
/// A run formats three times per task, and thousands of tasks share a second: the date and
/// time of the last second formatted (per thread) is kept, and only the milliseconds are
/// written afresh.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    use std::fmt::Write;
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    // A clock outside years 1970-9999 (which humantime cannot write) is written clamped.
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs().min(LAST_SECOND_OF_9999);
    SECOND.with_borrow_mut(|(last, prefix)| {
        if *last != secs {
            let second = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            // "YYYY-MM-DDTHH:MM:SSZ" without its "Z".
            *prefix = humantime::format_rfc3339_seconds(second).to_string();
            prefix.pop();
            *last = secs;
        }
        let mut text = String::with_capacity(prefix.len() + 5);
        text.push_str(prefix);
        let _ = write!(text, ".{:03}Z", since.subsec_millis());
        text
    })
}

/// The newest run report in `runs` (run ids sort by start time), of the manifest named
/// `manifest` when given: the manifests of one directory share its `.taskrun/runs`, and
/// "the latest run" of `pipelines/urls.toml` is not that of `pipelines/download.toml`.
pub fn newest_run(
    runs: &std::path::Path,
    manifest: Option<&std::ffi::OsStr>,
) -> Option<std::path::PathBuf> {
    #[derive(Deserialize)]
    struct Named {
        manifest: String,
    }
    let mut reports: Vec<std::path::PathBuf> = std::fs::read_dir(runs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    reports.sort();
    let Some(name) = manifest else {
        return reports.pop();
    };
    reports.into_iter().rev().find(|p| {
        let named = std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Named>(&b).map_err(|e| e.to_string()));
        match named {
            Ok(r) => std::path::Path::new(&r.manifest).file_name() == Some(name),
            Err(e) => {
                // A newer run, maybe this manifest's: say so rather than pass it by unseen.
                eprintln!(
                    "warning: skipping {}, which cannot be read as a run report: {e}",
                    p.display()
                );
                false
            }
        }
    })
}

/// A new run id: the UTC start second plus a four-hex-digit suffix, without colons. The
/// suffix holds the millisecond (times 16) and a random digit, so ids sort by start time
/// also within one second: `latest` and the pruning of old runs go by that order.
pub fn new_run_id(start: std::time::SystemTime) -> String {
    let stamp = rfc3339(start);
    // "YYYY-MM-DDTHH:MM:SS" of "YYYY-MM-DDTHH:MM:SS.mmmZ".
    let second = stamp.get(..19).unwrap_or(&stamp);
    let compact: String = second.chars().filter(|c| *c != '-' && *c != ':').collect();
    let millis = start
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    let suffix = millis * 16 + u32::from(rand::random::<u8>() % 16);
    format!("{compact}Z-{suffix:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_the_second_and_write_the_milliseconds() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_606_321_123);
        let us = std::time::Duration::from_micros;
        assert_eq!(rfc3339(t), "2026-11-25T11:32:01.123Z");
        assert_eq!(rfc3339(t + us(999)), "2026-11-25T11:32:01.123Z");
        assert_eq!(rfc3339(t + us(1000)), "2026-11-25T11:32:01.124Z");
        assert_eq!(rfc3339(t), "2026-11-25T11:32:01.123Z");
        // Across the second (and the day): the kept second is replaced.
        let ms = std::time::Duration::from_millis;
        assert_eq!(rfc3339(t + ms(877)), "2026-11-25T11:32:02.000Z");
        assert_eq!(rfc3339(t + ms(44_878_876)), "2026-11-25T23:59:59.999Z");
        assert_eq!(rfc3339(t + ms(44_878_877)), "2026-11-26T00:00:00.000Z");
        assert_eq!(rfc3339(t - ms(124)), "2026-11-25T11:32:00.999Z");
        // A clock before the epoch or past 9999 is clamped, not a panic.
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH - ms(1)),
            "1970-01-01T00:00:00.000Z"
        );
        let far = std::time::UNIX_EPOCH + std::time::Duration::from_secs(300_000_000_000);
        assert!(rfc3339(far).starts_with("9999-12-31T23:59:59."));
    }

    #[test]
    fn run_id_looks_like_the_spec() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_606_321);
        let id = new_run_id(t);
        assert_eq!(id.len(), "20261125T113201Z-7f3a".len(), "{id}");
        assert!(id.starts_with("20261125T"), "{id}");
        assert!(id.contains("Z-"), "{id}");
        assert!(!id.contains(':'));
        // Within one second, a later start sorts later.
        let ms = std::time::Duration::from_millis;
        let ids: Vec<String> = [0, 1, 500, 998, 999]
            .into_iter()
            .map(|m| new_run_id(t + ms(m)))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(ids[4].len(), id.len(), "{ids:?}");
    }
}
