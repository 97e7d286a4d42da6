use super::*;
use crate::model::TaskKind;
use crate::report::AttemptOutcome;
use crate::report::fixture::{at, attempt, cmd, run, task};

fn sample() -> RunReport {
    let mut flaky = cmd("flaky", 0, 500, &[]);
    flaky.attempts = vec![
        attempt(1, 0, 100, AttemptOutcome::Failed, Some(300)),
        attempt(2, 400, 500, AttemptOutcome::Succeeded, None),
    ];
    let mut db = task("db", TaskKind::Service, 0, 900, &[]);
    db.ready_at = Some(at(200));
    let mut inst = cmd("fetch[a <b>]", 0, 50, &[]);
    inst.item = Some(
        [("line".to_string(), "a <b>".to_string())]
            .into_iter()
            .collect(),
    );
    run(
        900,
        vec![flaky, db, inst, cmd("test", 500, 800, &["db", "flaky"])],
    )
}

#[test]
fn the_page_is_self_contained_and_marks_the_path() {
    let html = render(&sample());
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external asset"
    );
    assert!(!html.contains("<script src") && !html.contains("<link"));
    // flaky 2 + db 1 + fetch[a] 1 + test 1
    assert_eq!(html.matches("class=\"att ").count(), 5);
    assert_eq!(html.matches("class=\"wait\"").count(), 1);
    assert!(html.contains("<details class=\"fan\" data-task=\"fetch\">"));
    assert!(html.contains("a &lt;b&gt;"), "instance values are escaped");
    assert!(html.contains("<li data-crit=\"flaky\">") && html.contains("<li data-crit=\"test\">"));
}

#[test]
fn ticks_are_round() {
    assert_eq!(tick_step(550, 10), 100);
    assert_eq!(tick_step(12_000, 10), 2000);
    assert_eq!(tick_step(1, 10), 1);
}

/// A report is read from disk: times up to u64::MAX draw a page, they do not loop forever.
#[test]
fn absurd_times_in_a_report_still_draw_a_page() {
    assert_eq!(tick_step(u64::MAX, 10), 2_000_000_000_000_000_000);
    assert_eq!(tick_step(u64::MAX, 1), u64::MAX);
    let mut report = sample();
    report.duration_ms = u64::MAX;
    let html = render(&report);
    assert!(html.contains("flaky"));
    report.duration_ms = 900;
    report.tasks[0].duration_ms = Some(u64::MAX);
    report.tasks[0].attempts[1].duration_ms = u64::MAX;
    let html = render(&report);
    assert!(html.contains("flaky"));
}
