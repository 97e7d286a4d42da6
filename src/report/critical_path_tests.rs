use super::*;
use crate::report::fixture::{attempt, cmd, run, task};
use crate::report::{AttemptOutcome, TaskStatus};

fn names(p: &CriticalPath) -> Vec<&str> {
    p.steps.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn the_longer_branch_decides() {
    let r = run(
        550,
        vec![
            cmd("fetch-jan", 0, 420, &[]),
            cmd("fetch-feb", 0, 100, &[]),
            cmd("summary", 430, 520, &["fetch-jan", "fetch-feb"]),
        ],
    );
    let p = critical_path(&r);
    assert_eq!(names(&p), ["fetch-jan", "summary"]);
    assert_eq!(p.total_ms(), 510);
    assert_eq!(
        p.line(),
        "critical path: fetch-jan 0.42s → summary 0.09s (0.51s of 0.55s)"
    );
    assert!(p.contains(0) && p.contains(2) && !p.contains(1));
}

#[test]
fn retries_and_their_waits_count() {
    // flaky: fails for 100 ms, waits 300 ms, succeeds in 100 ms; slow runs 400 ms.
    let mut flaky = cmd("flaky", 0, 500, &[]);
    flaky.attempts = vec![
        attempt(1, 0, 100, AttemptOutcome::Failed, Some(300)),
        attempt(2, 400, 500, AttemptOutcome::Succeeded, None),
    ];
    let r = run(
        620,
        vec![
            flaky,
            cmd("slow", 0, 450, &[]),
            cmd("report", 500, 600, &["flaky", "slow"]),
        ],
    );
    let p = critical_path(&r);
    assert_eq!(names(&p), ["flaky", "report"]);
    assert_eq!(p.steps[0].duration_ms, 500);
}

#[test]
fn a_cache_hit_counts_as_its_restore() {
    let mut built = cmd("build", 0, 30, &[]);
    built.status = TaskStatus::Cached;
    built.cache_hit = true;
    built.attempts.clear();
    let r = run(
        1200,
        vec![
            built,
            cmd("lint", 0, 20, &[]),
            cmd("test", 30, 1200, &["build", "lint"]),
        ],
    );
    let p = critical_path(&r);
    assert_eq!(names(&p), ["build", "test"]);
    assert_eq!(p.total_ms(), 30 + 1170);
}

#[test]
fn a_service_counts_until_ready_and_never_ends_the_path() {
    let mut db = task("db", TaskKind::Service, 0, 900, &[]);
    db.ready_at = Some(crate::report::fixture::at(200));
    let r = run(
        900,
        vec![
            db,
            cmd("migrate", 0, 150, &[]),
            cmd("test", 210, 700, &["db", "migrate"]),
        ],
    );
    let p = critical_path(&r);
    assert_eq!(names(&p), ["db", "test"]);
    assert_eq!(p.steps[0].duration_ms, 200);
    assert_eq!(p.steps[0].end_ms, 200);
}

#[test]
fn a_service_started_by_its_dependent_is_on_the_path() {
    // test takes its slot at 400 when flaky ends, starts db, and runs once db is ready.
    let mut db = task("db", TaskKind::Service, 400, 900, &[]);
    db.ready_at = Some(crate::report::fixture::at(450));
    let mut test = cmd("test", 400, 800, &["db", "flaky"]);
    test.attempts = vec![attempt(1, 452, 800, AttemptOutcome::Succeeded, None)];
    let r = run(900, vec![cmd("flaky", 0, 400, &[]), db, test]);
    let p = critical_path(&r);
    assert_eq!(names(&p), ["flaky", "db", "test"]);
    // test took its slot at 400 but waited for db until 450: only 450..800 is on the path.
    let durations: Vec<u64> = p.steps.iter().map(|s| s.duration_ms).collect();
    assert_eq!(durations, [400, 50, 350]);
    assert_eq!(p.total_ms(), 800);
}

#[test]
fn tasks_that_never_ran_are_not_on_it() {
    let mut skipped = cmd("publish", 0, 0, &["build"]);
    skipped.status = TaskStatus::Skipped;
    skipped.started_at = None;
    skipped.finished_at = None;
    skipped.duration_ms = None;
    let mut failed = cmd("build", 0, 300, &[]);
    failed.status = TaskStatus::Failed;
    let r = run(310, vec![failed, skipped, cmd("docs", 0, 100, &[])]);
    assert_eq!(names(&critical_path(&r)), ["build"]);
    assert!(critical_path(&run(0, vec![])).steps.is_empty());
}

#[test]
fn a_task_that_waited_for_a_slot_keeps_the_chain() {
    // b finished at 100 but c only got a slot at 300: the chain is still a → b → c.
    let r = run(
        400,
        vec![
            cmd("a", 0, 50, &[]),
            cmd("b", 50, 100, &["a"]),
            cmd("c", 300, 400, &["b"]),
        ],
    );
    let p = critical_path(&r);
    assert_eq!(names(&p), ["a", "b", "c"]);
    assert_eq!(
        p.line(),
        "critical path: a 0.05s → b 0.05s → c 0.10s (0.20s of 0.40s)"
    );
}

#[test]
fn a_long_chain_keeps_its_ends() {
    let names: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let tasks = (0..12)
        .map(|i| {
            let deps: Vec<&str> = if i == 0 {
                vec![]
            } else {
                vec![names[i - 1].as_str()]
            };
            cmd(&names[i], i as u64 * 100, i as u64 * 100 + 100, &deps)
        })
        .collect();
    let line = critical_path(&run(1200, tasks)).line();
    assert!(line.starts_with("critical path: t0 0.10s → t1"), "{line}");
    assert!(line.contains("→ … 4 more … →"), "{line}");
    assert!(line.ends_with("t11 0.10s (1.20s of 1.20s)"), "{line}");
}
