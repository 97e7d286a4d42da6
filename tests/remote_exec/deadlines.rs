//! A task's `timeout` bounds its whole remote attempt (SPEC §2, §11): an action no bot takes
//! (it stays queued) or one whose worker is lost mid-run no longer makes the run wait
//! forever. Queued past the timeout is the cluster's failure (retried, then the local
//! fallback or a failure saying so); started and not done is a timed-out attempt.

use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::support::{Workspace, manifest, nonce, task};
use crate::workspace::output_within;

/// Far longer than any of these runs takes once bounded; without the bound they never end.
const HANG_LIMIT: Duration = Duration::from_secs(90);

/// `taskrun taskrun.toml ARGS` in `ws`, killed (failing the test) after [`HANG_LIMIT`].
fn bounded_run(ws: &Workspace, args: &[&str]) -> crate::workspace::Run {
    let mut all = vec!["taskrun.toml"];
    all.extend_from_slice(args);
    crate::workspace::Run::from(output_within(&mut ws.cmd(&all), HANG_LIMIT))
}

/// No bot offers `OSFamily = windows`, so the action stays queued on the cluster.
const QUEUED: &str = "platform = { OSFamily = \"windows\" }";
const TASK: &str = "[tasks.q]\ntimeout = \"1s\"\noutputs = [\"q.txt\"]\nrun = \"echo q > q.txt\"\n";

/// Queued past its timeout: cancelled, retried as a cluster failure, then run here with one
/// warning that says why.
#[test]
fn an_action_left_queued_past_the_timeout_runs_here_with_a_warning() {
    let Some(c) = Cluster::shared() else { return };
    let ws = Workspace::new(&manifest(c.url(), QUEUED, &nonce(), TASK));
    let t = Instant::now();
    let run = bounded_run(&ws, &[]);
    eprintln!(
        "queued 4 x 1 s, then local: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    run.code(0);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(
        warnings[0].contains("is unreachable")
            && warnings[0].contains("still queued after the task's timeout (1s)"),
        "{}",
        run.stdout
    );
    let report = ws.last_report();
    let q = task(&report, "q");
    assert_eq!(q["status"], "succeeded", "{q:#}");
    assert_eq!(q["executed_on"], "local", "{q:#}");
    assert_eq!(q["attempts"].as_array().unwrap().len(), 1, "{q:#}");
    assert_eq!(ws.read("q.txt"), "q\n");
}

/// Without `fallback_local` the task fails saying the cluster did not take it in time; it
/// ran nowhere.
#[test]
fn without_fallback_an_action_left_queued_fails_the_task() {
    let Some(c) = Cluster::shared() else { return };
    let extra = format!("{QUEUED}\nfallback_local = false");
    let ws = Workspace::new(&manifest(c.url(), &extra, &nonce(), TASK));
    let run = bounded_run(&ws, &[]);
    run.code(1);
    let report = ws.last_report();
    let q = task(&report, "q");
    assert_eq!(q["status"], "failed", "{q:#}");
    let error = q["error"].as_str().unwrap();
    assert!(
        error.contains("is unreachable") && error.contains("still queued"),
        "{error}"
    );
    assert!(q["executed_on"].is_null(), "{q:#}");
    assert!(!ws.path("q.txt").exists());
}

/// The only worker dies while it runs the action: the cluster keeps the operation
/// executing (then queued, with no bot left); the task's timeout ends the wait as a
/// timed-out attempt, reported as a local timeout is.
#[test]
fn an_action_whose_worker_is_lost_times_out_with_the_task() {
    let Some(c) = Cluster::start(1) else { return };
    let state = tempfile::tempdir().unwrap();
    let began = state.path().join("began");
    let body = format!(
        "[tasks.lost]\ntimeout = \"5s\"\noutputs = [\"l.txt\"]\n\
         run = \"touch {}; sleep 60; echo l > l.txt\"\n",
        began.display()
    );
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    // The worker is killed as soon as the command runs, while the run waits on it.
    let run = std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !began.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            c.kill_workers();
        });
        bounded_run(&ws, &[])
    });
    assert!(began.exists(), "never started: {}", c.worker_log());
    // The worker died before it could report anything: the end came from taskrun's bound.
    assert!(c.executions().is_empty(), "{}", c.worker_log());
    run.code(1);
    let report = ws.last_report();
    let lost = task(&report, "lost");
    assert_eq!(lost["status"], "failed", "{lost:#}");
    assert_eq!(lost["attempts"][0]["outcome"], "timed_out", "{lost:#}");
    assert_eq!(lost["error"], "timed out after 5s", "{lost:#}");
    assert_eq!(lost["executed_on"], "remote", "{lost:#}");
}
