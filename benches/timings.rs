//! Writing the trace and the timings page of a 10,000-task run (SPEC §12 budgets: the trace
//! in under 100 ms, the page under 5 MB).
//!
//! `cargo bench --bench timings` prints the median of several runs. The report is synthetic
//! but shaped like a real one: a 10,000-instance fan-out on 8 slots, one task in 50 retried
//! once, one in 10 a download, one in 5 a cache hit, and a summary task depending on all.

use std::time::{Duration, Instant, UNIX_EPOCH};

use taskrun::model::{ExecutedOn, TaskKind};
use taskrun::report::{
    AttemptOutcome, AttemptReport, RunReport, RunStatus, TaskReport, TaskStatus, rfc3339,
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SLOTS: u64 = 8;

fn at(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_606_321) + Duration::from_millis(ms))
}

fn attempt(number: u32, start: u64, end: u64, ok: bool, wait: Option<u64>) -> AttemptReport {
    AttemptReport {
        number,
        started_at: at(start),
        finished_at: at(end),
        duration_ms: end - start,
        outcome: if ok {
            AttemptOutcome::Succeeded
        } else {
            AttemptOutcome::Failed
        },
        exit_code: Some(if ok { 0 } else { 1 }),
        http_status: None,
        url: None,
        error: (!ok).then(|| "exit code 1".to_string()),
        wait_ms: wait,
    }
}

/// A report of `n` fan-out instances and a summary task.
pub fn report(n: usize) -> RunReport {
    let mut tasks = Vec::with_capacity(n + 1);
    let mut names = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let start = (i / SLOTS) * 40;
        let name = format!("fetch[{i:05}]");
        let download = i % 10 == 0;
        let cached = i % 5 == 1;
        let attempts = if cached {
            vec![]
        } else if i % 50 == 3 {
            vec![
                attempt(1, start + 2, start + 10, false, Some(10)),
                attempt(2, start + 20, start + 38, true, None),
            ]
        } else {
            vec![attempt(1, start + 2, start + 38, true, None)]
        };
        tasks.push(TaskReport {
            name: name.clone(),
            task: "fetch".into(),
            item: Some(
                [("line".to_string(), format!("item-{i}"))]
                    .into_iter()
                    .collect(),
            ),
            kind: if download {
                TaskKind::Download
            } else {
                TaskKind::Command
            },
            status: if cached {
                TaskStatus::Cached
            } else {
                TaskStatus::Succeeded
            },
            started_at: Some(at(start)),
            finished_at: Some(at(start + if cached { 3 } else { 39 })),
            duration_ms: Some(if cached { 3 } else { 39 }),
            cache_key: Some(format!("{i:064x}")),
            cache_hit: cached,
            cache_source: None,
            bytes: download.then_some(1 << 20),
            exit_code: Some(0),
            error: None,
            attempts,
            deps: Vec::new(),
            uses: Default::default(),
            ready_at: None,
            executed_on: Some(ExecutedOn::Local),
        });
        names.push(name);
    }
    let end = (n as u64 / SLOTS + 1) * 40;
    tasks.push(TaskReport {
        name: "summary".into(),
        task: "summary".into(),
        item: None,
        kind: TaskKind::Command,
        status: TaskStatus::Succeeded,
        started_at: Some(at(end)),
        finished_at: Some(at(end + 90)),
        duration_ms: Some(90),
        cache_key: None,
        cache_hit: false,
        cache_source: None,
        bytes: None,
        exit_code: Some(0),
        error: None,
        attempts: vec![attempt(1, end, end + 90, true, None)],
        deps: names,
        uses: Default::default(),
        ready_at: None,
        executed_on: Some(ExecutedOn::Local),
    });
    RunReport {
        format_version: 1,
        run_id: "20261125T113201Z-7f3a".into(),
        pipeline: "bench".into(),
        manifest: "bench.toml".into(),
        started_at: at(0),
        finished_at: at(end + 100),
        duration_ms: end + 100,
        status: RunStatus::Succeeded,
        summary: RunReport::summarize(&tasks),
        tasks,
        concurrency: Some(SLOTS as usize),
        pools: Vec::new(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(what: &str, runs: usize, f: impl Fn() -> usize) {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = f();
        times.push(t.elapsed());
    }
    println!(
        "{what:<28} {:>8.1} ms  {:>8.2} MB",
        median(times).as_secs_f64() * 1000.0,
        size as f64 / 1e6
    );
}

fn main() {
    let r = report(10_000);
    println!("10,000 tasks (median of 9 runs)");
    measure("trace (--trace)", 9, || {
        taskrun::report::trace::to_string(&r).len()
    });
    measure("page (--timings)", 9, || {
        taskrun::report::timings::render(&r).len()
    });
    measure("critical path", 9, || {
        taskrun::report::critical_path::critical_path(&r)
            .steps
            .len()
    });
}
