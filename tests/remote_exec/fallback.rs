//! The scheduler with a cluster of its own (SPEC §11): remote actions in parallel beyond
//! `-j`; the server stopped while tasks wait (fallback here, one warning, nothing lost); and
//! an executor that never answers, with and without `fallback_local`.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Options};
use crate::support::{Workspace, manifest, nonce, task};

/// Ten `sleep 1` actions on four bots with `-j 1`: remote actions are not held to the local
/// limit, so four run at once (from the cluster's own record, not a stopwatch).
#[test]
fn ten_sleeps_over_four_bots_run_four_at_a_time_whatever_j_says() {
    let Some(c) = Cluster::start(4) else { return };
    let mut body = String::new();
    for i in 0..10 {
        body.push_str(&format!(
            "[tasks.s{i}]\nrun = \"sleep 1 && echo {i} > s{i}.txt\"\noutputs = [\"s{i}.txt\"]\n"
        ));
    }
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    let t = Instant::now();
    let run = ws.run(&["-j", "1"]);
    let wall = t.elapsed();
    run.code(0);
    let runs = c.executions();
    let busy: f64 = runs.iter().map(|e| e.end - e.start).sum();
    eprintln!(
        "10 x sleep 1 on 4 bots, -j 1: {:.2} s wall, {:.2} s of bot time, max parallel {}",
        wall.as_secs_f64(),
        busy,
        c.max_parallel()
    );
    assert_eq!(runs.len(), 10, "{}", c.worker_log());
    assert!(c.max_parallel() >= 4, "{runs:?}");
    let report = ws.last_report();
    assert_eq!(report["summary"]["remote"], 10);
    for i in 0..10 {
        assert_eq!(ws.read(&format!("s{i}.txt")), format!("{i}\n"));
    }
}

/// More actions in flight than the server has threads for streams: BuildGrid serves every
/// call on a thread of a fixed pool and refuses calls beyond it, its bots' included. With a
/// stream per action (the old behaviour: `streams = 12` against 8 threads) this run fails
/// within seconds, the bots and the streams refused. With `streams = 3` the other actions
/// are polled, the bots keep being served and every action runs there.
#[test]
fn actions_beyond_the_open_streams_are_polled_and_the_bots_keep_their_threads() {
    let Some(c) = Cluster::start_with(Options {
        threads: 8,
        ..Options::new(2)
    }) else {
        return;
    };
    let n = 12;
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&format!(
            "[tasks.s{i}]\nrun = \"sleep 0.2 && echo {i} > s{i}.txt\"\noutputs = [\"s{i}.txt\"]\n"
        ));
    }
    let extra = format!("jobs = {n}\nstreams = 3");
    let ws = Workspace::new(&manifest(c.url(), &extra, &nonce(), &body));
    let mut child = ws
        .cmd(&["taskrun.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!(
                "not done after 90 s: the bots were starved\n{}",
                c.worker_log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "{n} actions, 3 streams, 8 server threads, 2 bots: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("warning"), "{said}");
    let report = ws.last_report();
    assert_eq!(report["summary"]["remote"], n);
    for i in 0..n {
        assert_eq!(task(&report, &format!("s{i}"))["executed_on"], "remote");
        assert_eq!(ws.read(&format!("s{i}.txt")), format!("{i}\n"));
    }
    // Each action ran; a second run of one is the cluster's only when a bot lost its session
    // (the server refused it under load, RESOURCE_EXHAUSTED, and BuildGrid leased the
    // action again), never a second submission by taskrun.
    let runs = c.executions();
    let log = c.worker_log();
    let distinct: std::collections::BTreeSet<&str> =
        runs.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(distinct.len(), n, "{log}");
    let restarts = log.matches("starting a new session").count();
    assert!(runs.len() - n <= restarts, "{log}");
}

/// The server stops while remote tasks wait on a local gate: they fall back here once the
/// cluster is judged unreachable, with one warning for the run, and every output is made.
#[test]
fn a_cluster_stopped_mid_run_leaves_the_rest_to_this_machine_with_one_warning() {
    let Some(c) = Cluster::start(2) else { return };
    let mut body = String::from(
        r#"
[tasks.first]
run = "echo first > first.txt"
outputs = ["first.txt"]

[tasks.gate]
run = "while [ ! -e go ]; do sleep 0.02; done"
remote = false
deps = ["first"]
"#,
    );
    for i in 0..4 {
        body.push_str(&format!(
            "[tasks.r{i}]\nrun = \"echo {i} > r{i}.txt\"\ndeps = [\"gate\"]\noutputs = [\"r{i}.txt\"]\n"
        ));
    }
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ws.path("first.txt").exists() {
        assert!(Instant::now() < deadline, "first never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.stop_server();
    let t = Instant::now();
    std::fs::write(ws.path("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "gate open to the end of a fallback run: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(
        warnings[0].contains(&format!("the remote executor {} is unreachable", c.url()))
            && warnings[0].contains("the remaining remote tasks run here"),
        "{stdout}"
    );
    let report = ws.last_report();
    assert_eq!(task(&report, "first")["executed_on"], "remote");
    for i in 0..4 {
        let t = task(&report, &format!("r{i}"));
        assert_eq!(t["status"], "succeeded", "{t:#}");
        assert_eq!(t["executed_on"], "local", "{t:#}");
        assert_eq!(t["attempts"].as_array().unwrap().len(), 1, "{t:#}");
        assert_eq!(ws.read(&format!("r{i}.txt")), format!("{i}\n"));
    }
    assert_eq!(report["summary"]["remote"], 1);
}

const TWO: &str = "[tasks.a]\nrun = \"echo a > a.txt\"\noutputs = [\"a.txt\"]\n\
                   [tasks.b]\nrun = \"echo b > b.txt\"\noutputs = [\"b.txt\"]\n";

/// Nothing listens at the executor: with `fallback_local` (the default) every task runs here
/// after one warning.
#[test]
fn an_executor_that_never_answers_means_a_local_run_with_one_warning() {
    let ws = Workspace::new(&manifest("grpc://127.0.0.1:1", "", &nonce(), TWO));
    let run = ws.run(&[]);
    run.code(0);
    let warnings = run.stdout.matches("warning: the remote executor").count();
    assert_eq!(warnings, 1, "{}", run.stdout);
    // Each layer of the error said once.
    assert!(
        !run.stdout.contains("tcp connect error: tcp connect error"),
        "{}",
        run.stdout
    );
    let report = ws.last_report();
    for name in ["a", "b"] {
        assert_eq!(task(&report, name)["executed_on"], "local");
    }
    assert_eq!(ws.read("b.txt"), "b\n");
}

/// Something takes the connection and never answers (not even HTTP/2): the first call gives
/// up after 10 s, the tasks waiting behind it with it, and after the cluster retries the
/// tasks run here. Without the limit the run waited forever.
#[test]
fn an_executor_that_takes_the_connection_and_never_answers_is_left_for_a_local_run() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("grpc://{}", hole.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        // Every connection accepted and kept open, never read from.
        let mut open = Vec::new();
        for conn in hole.incoming().take(16) {
            match conn {
                Ok(c) => open.push(c),
                Err(_) => break,
            }
        }
        open
    });
    let ws = Workspace::new(&manifest(&url, "", &nonce(), TWO));
    let run = ws.run(&[]);
    run.code(0);
    assert!(
        run.stdout.contains("no answer within 10 s"),
        "{}",
        run.stdout
    );
    let report = ws.last_report();
    for name in ["a", "b"] {
        assert_eq!(task(&report, name)["executed_on"], "local");
    }
    drop(held);
}

/// Without `fallback_local`, the tasks fail saying the cluster is unreachable.
#[test]
fn without_fallback_an_unreachable_executor_fails_the_tasks() {
    let ws = Workspace::new(&manifest(
        "grpc://127.0.0.1:1",
        "fallback_local = false",
        &nonce(),
        TWO,
    ));
    let run = ws.run(&["-k"]);
    run.code(1);
    let report = ws.last_report();
    for name in ["a", "b"] {
        let t = task(&report, name);
        assert_eq!(t["status"], "failed", "{t:#}");
        let error = t["error"].as_str().unwrap();
        assert!(
            error.contains("the remote executor grpc://127.0.0.1:1 is unreachable"),
            "{error}"
        );
    }
    assert!(!ws.path("a.txt").exists());
    assert!(!run.stdout.contains("warning:"), "{}", run.stdout);
    // They never reached the cluster: they ran nowhere.
    for name in ["a", "b"] {
        assert!(task(&report, name)["executed_on"].is_null());
    }
    assert_eq!(report["summary"]["remote"], 0);
}
