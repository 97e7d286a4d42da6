//! Fail-fast (SPEC §8): once a task fails for good, what waits (a retry, a service coming
//! up) gives up at once instead of being sat out, and says truly why it stopped.

use std::time::{Duration, Instant};

use crate::fault_server::{Fault, Route};
use crate::support::{Workspace, task};

/// How long the retry waits below are: a run that sits one out takes at least this long.
const WAIT: Duration = Duration::from_secs(8);

/// Asserts that `name` was cancelled between two attempts: after one real attempt, for
/// fail-fast's sake, with no wait claimed before an attempt that never came.
#[track_caller]
fn cancelled_before_its_next_attempt(report: &serde_json::Value, name: &str) {
    let t = task(report, name);
    assert_eq!(t["status"], "cancelled", "{t:#}");
    let error = t["error"].as_str().unwrap_or_default();
    assert!(!error.contains("not started"), "it ran an attempt: {t:#}");
    assert!(
        error.contains("fail-fast") && error.contains("before its next attempt"),
        "{t:#}"
    );
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{t:#}");
    assert_eq!(attempts[0]["outcome"], "failed", "{t:#}");
    assert!(attempts[0]["wait_ms"].is_null(), "no wait happened: {t:#}");
}

/// A download sitting out an 8 s `Retry-After` and a command sitting out an 8 s retry delay
/// are cancelled as soon as another task fails (they held no slot, SPEC §3, and no new
/// attempt may start, SPEC §8); the run ended only once both waits were over.
#[test]
fn fail_fast_cancels_the_tasks_waiting_to_retry_at_once() {
    let http = crate::http::Http::start();
    http.route(
        "/busy",
        Route::ok(b"late".to_vec()).times(3, Fault::RetryAfter(503, "8".into())),
    );
    let ws = Workspace::new(&format!(
        r#"
[tasks.dl]
download = {{ url = "{}", dest = "d/x.txt" }}

[tasks.flaky]
run = "exit 1"
retry = {{ max_attempts = 3, initial_delay = "8s", jitter = "none" }}

[tasks.bad]
run = "sleep 1; exit 1"
"#,
        http.url("/busy")
    ));
    let started = Instant::now();
    let run = ws.run(&["-j", "3"]);
    let took = started.elapsed();
    run.code(1);
    assert!(took < WAIT, "the run sat out a retry wait: {took:?}");
    let report = ws.last_report();
    assert_eq!(task(&report, "bad")["status"], "failed");
    cancelled_before_its_next_attempt(&report, "dl");
    cancelled_before_its_next_attempt(&report, "flaky");
    assert_eq!(http.hits("/busy"), 1, "no second request");
    assert!(!ws.exists("d/x.txt"));
}

/// An attempt that fails once fail-fast has stopped the run is not retried: no "retrying
/// in" for a retry that will not happen, and no wait sat out before the run ends.
#[test]
fn an_attempt_failing_after_fail_fast_began_is_not_retried() {
    let ws = Workspace::new(
        r#"
[tasks.late]
run = "sleep 2; exit 1"
retry = { max_attempts = 3, initial_delay = "8s", jitter = "none" }

[tasks.bad]
run = "exit 1"
"#,
    );
    let started = Instant::now();
    let run = ws.run(&["-j", "2"]);
    let took = started.elapsed();
    run.code(1);
    assert!(!run.all().contains("retrying in"), "{}", run.all());
    assert!(took < WAIT, "the run sat out a retry wait: {took:?}");
    let report = ws.last_report();
    assert_eq!(task(&report, "bad")["status"], "failed");
    cancelled_before_its_next_attempt(&report, "late");
    let error = task(&report, "late")["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("exit code 1"),
        "its own failure is said: {error}"
    );
}

/// A service still waiting to become ready when fail-fast stops the run is stopped at once,
/// not waited on for its whole `ready_timeout`: nothing will start that needs it. It and its
/// dependent (not downstream of the failure) are `cancelled`, not `failed` and `skipped`.
#[test]
fn fail_fast_stops_a_service_still_starting() {
    let nobody = crate::refused::RefusedPort::new();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "echo $$$$ > svc.pid; exec sleep 48", ready = {{ tcp = "{}" }}, ready_timeout = "20s" }}

[tasks.a]
deps = ["svc"]
run = "touch a.ran"

[tasks.bad]
run = "sleep 1; exit 1"
"#,
        nobody.addr()
    ));
    let started = Instant::now();
    let run = ws.run(&[]);
    let took = started.elapsed();
    run.code(1);
    assert!(
        took < Duration::from_secs(12),
        "waited for the service: {took:?}"
    );
    let report = ws.last_report();
    assert_eq!(task(&report, "bad")["status"], "failed");
    let svc = task(&report, "svc");
    assert_eq!(svc["status"], "cancelled", "{svc:#}");
    let error = svc["error"].as_str().unwrap_or_default();
    assert!(error.contains("fail-fast"), "{svc:#}");
    assert_eq!(task(&report, "a")["status"], "cancelled");
    let s = &report["summary"];
    assert_eq!(
        (s["failed"].as_u64(), s["cancelled"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(!ws.exists("a.ran"));
    let pid: i32 = ws.read("svc.pid").trim().parse().unwrap();
    assert!(
        crate::support::dies_soon(pid),
        "service {pid} still running"
    );
}
