//! Hand-built run reports for unit tests of the report renderers (times in ms from a fixed
//! run start, so every test knows its answer).

use crate::model::TaskKind;
use crate::report::{
    AttemptOutcome, AttemptReport, FORMAT_VERSION, RunReport, RunStatus, TaskReport, TaskStatus,
    rfc3339,
};

/// 2026-11-25T11:32:01Z.
pub fn origin() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_606_321)
}

/// The report time `ms` after the run started.
pub fn at(ms: u64) -> String {
    rfc3339(origin() + std::time::Duration::from_millis(ms))
}

/// A task that ran from `start` to `end` in one successful attempt.
pub fn task(name: &str, kind: TaskKind, start: u64, end: u64, deps: &[&str]) -> TaskReport {
    TaskReport {
        name: name.to_string(),
        task: name.split('[').next().unwrap_or(name).to_string(),
        item: None,
        kind,
        status: TaskStatus::Succeeded,
        started_at: Some(at(start)),
        finished_at: Some(at(end)),
        duration_ms: Some(end - start),
        cache_key: None,
        cache_hit: false,
        cache_source: None,
        bytes: None,
        exit_code: Some(0),
        error: None,
        attempts: vec![attempt(1, start, end, AttemptOutcome::Succeeded, None)],
        deps: deps.iter().map(|d| d.to_string()).collect(),
        uses: Default::default(),
        ready_at: None,
        executed_on: Some(crate::model::ExecutedOn::Local),
    }
}

/// A command that ran from `start` to `end`.
pub fn cmd(name: &str, start: u64, end: u64, deps: &[&str]) -> TaskReport {
    task(name, TaskKind::Command, start, end, deps)
}

/// An attempt from `start` to `end`.
pub fn attempt(
    number: u32,
    start: u64,
    end: u64,
    outcome: AttemptOutcome,
    wait_ms: Option<u64>,
) -> AttemptReport {
    AttemptReport {
        number,
        started_at: at(start),
        finished_at: at(end),
        duration_ms: end - start,
        outcome,
        exit_code: None,
        http_status: None,
        url: None,
        error: (outcome != AttemptOutcome::Succeeded).then(|| "exit code 1".to_string()),
        wait_ms,
    }
}

/// A run of `tasks` that took `wall` ms.
pub fn run(wall: u64, tasks: Vec<TaskReport>) -> RunReport {
    RunReport {
        format_version: FORMAT_VERSION,
        run_id: "20261125T113201Z-7f3a".into(),
        pipeline: "test".into(),
        manifest: "taskrun.toml".into(),
        started_at: at(0),
        finished_at: at(wall),
        duration_ms: wall,
        status: RunStatus::Succeeded,
        summary: RunReport::summarize(&tasks),
        tasks,
        concurrency: Some(4),
        pools: Vec::new(),
    }
}
