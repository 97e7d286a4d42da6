//! A task's `timeout` bounds its remote attempt from when a worker takes the action (SPEC
//! §2, §11): one whose worker is lost mid-run no longer makes the run wait forever (a
//! timed-out attempt), while time in a busy cluster's queue is not held against the task.

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

/// One bot and four 1-second actions with a 2-second timeout: the last ones wait in the
/// queue for longer than their timeout. The queue is not their time: all run on the
/// cluster and succeed (they were cancelled as cluster failures, the cluster was judged
/// down and its other actions abandoned).
#[test]
fn time_in_a_busy_clusters_queue_is_not_the_tasks_timeout() {
    let Some(c) = Cluster::start(1) else { return };
    let body = "[tasks.m]\nmatrix = { i = [\"1\", \"2\", \"3\", \"4\"] }\ntimeout = \"2s\"\n\
                outputs = [\"o/${matrix.i}\"]\nrun = \"sleep 1; mkdir -p o; echo ${matrix.i} > o/${matrix.i}\"\n";
    let extra = "fallback_local = false";
    let ws = Workspace::new(&manifest(c.url(), extra, &nonce(), body));
    let run = bounded_run(&ws, &[]);
    run.code(0);
    assert!(!run.stdout.contains("warning:"), "{}", run.stdout);
    let report = ws.last_report();
    for i in 1..=4 {
        let t = task(&report, &format!("m[{i}]"));
        assert_eq!(t["status"], "succeeded", "{t:#}");
        assert_eq!(t["executed_on"], "remote", "{t:#}");
        assert_eq!(ws.read(&format!("o/{i}")), format!("{i}\n"));
    }
}

/// The only worker dies while it runs the action: the cluster keeps the operation
/// executing (then queued, with no bot left); the task's timeout ends the wait as a
/// timed-out attempt (after a short grace for the worker's report), reported as a local
/// timeout is.
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

/// SIGINT while one action runs on the only bot and another waits in the cluster's queue:
/// both are `cancelled`, the running one `executed_on: "remote"`, the queued one nowhere
/// (`null`: it never ran; it was reported as remote).
#[test]
fn an_interrupt_in_the_queue_is_not_a_remote_execution() {
    let Some(c) = Cluster::start(1) else { return };
    let state = tempfile::tempdir().unwrap();
    let began = |t: &str| state.path().join(format!("began-{t}"));
    let body = format!(
        "[tasks.x]\nrun = \"touch {}; sleep 30\"\n[tasks.y]\nrun = \"touch {}; sleep 30\"\n",
        began("x").display(),
        began("y").display()
    );
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    let child = ws
        .cmd(&["taskrun.toml", "-j2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        if let Some(t) = ["x", "y"].into_iter().find(|t| began(t).exists()) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "never started: {}",
            c.worker_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let queued = if running == "x" { "y" } else { "x" };
    // The other one was submitted with it (-j2) and waits for the only bot.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!began(queued).exists(), "{}", c.worker_log());
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = output_within_wait(child);
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let report = ws.last_report();
    let (ran, waited) = (task(&report, running), task(&report, queued));
    assert_eq!(ran["status"], "cancelled", "{ran:#}");
    assert_eq!(ran["executed_on"], "remote", "{ran:#}");
    assert_eq!(waited["status"], "cancelled", "{waited:#}");
    assert!(waited["executed_on"].is_null(), "{waited:#}");
}

/// Waits for `child`, killing it (and failing) after [`HANG_LIMIT`].
fn output_within_wait(mut child: std::process::Child) -> std::process::Output {
    let deadline = Instant::now() + HANG_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the interrupted run did not end within {HANG_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
