//! `taskrun run` with an executor (SPEC §11), through the real binary against the shared
//! BuildGrid cluster: what runs remotely, what comes back, the caches, failures and retries,
//! the hint about undeclared inputs, secrets kept here, `--remote-exec off`, an interrupt.

use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::support::{Workspace, manifest, nonce, task};

/// How many times the cluster ran `action` (`HASH/SIZE`).
fn runs_of(c: &Cluster, action: &str) -> usize {
    c.executions().iter().filter(|e| e.action == action).count()
}

const PIPELINE: &str = r#"
[tasks.gen]
run = "mkdir -p out/deep && tr a-z A-Z < src/a.txt > out/up.txt && cp tool.sh out/tool.sh && printf 'x\\0y' > out/deep/bin.dat && echo gen says hi && echo to stderr >&2"
inputs = ["src/*.txt", "tool.sh"]
outputs = ["out"]

[tasks.use]
run = "./out/tool.sh > used.txt && cat out/up.txt >> used.txt && echo $NONCE-$GREETING >> used.txt"
deps = ["gen"]
outputs = ["used.txt"]
env = { GREETING = "hello" }

[tasks.in-sub]
cwd = "sub"
run = "cat ../out/up.txt > here.txt && pwd | sed 's|.*/||' >> here.txt"
deps = ["gen"]
outputs = ["sub/here.txt"]
"#;

fn seeded(url: &str, nonce: &str) -> Workspace {
    let ws = Workspace::new(&manifest(url, "", nonce, PIPELINE));
    ws.write_mode("src/a.txt", "hello remote\n", 0o644)
        .write_mode("tool.sh", "#!/bin/sh\necho tool ran\n", 0o755)
        .write_mode("sub/.keep", "", 0o644);
    ws
}

const OUTPUTS: &[&str] = &["out", "used.txt", "sub/here.txt"];

/// Outputs made remotely are byte for byte (and mode for mode) what a local run makes; the
/// report, the console and the log say remote; a rerun hits the local cache without asking
/// the cluster; a second workspace with an empty cache is served by the cluster's
/// ActionCache without a new execution.
#[test]
fn remote_outputs_equal_local_ones_and_both_caches_answer_later_runs() {
    let Some(c) = Cluster::shared() else { return };
    let n = nonce();
    let remote = seeded(c.url(), &n);
    let t = Instant::now();
    let run = remote.run(&[]);
    eprintln!(
        "3 remote tasks (2 levels): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    run.code(0);
    assert!(
        run.stdout.contains("gen [remote] | gen says hi"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("gen [remote] ! to stderr"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("=> use: succeeded remotely"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("3 ran remotely"), "{}", run.stdout);
    let report = remote.last_report();
    for name in ["gen", "use", "in-sub"] {
        let t = task(&report, name);
        assert_eq!(t["executed_on"], "remote", "{name}: {t:#}");
        assert_eq!(t["status"], "succeeded", "{name}: {t:#}");
        assert_eq!(t["exit_code"], 0, "{name}: {t:#}");
    }
    assert_eq!(report["summary"]["remote"], 3, "{report:#}");
    let run_id = report["run_id"].as_str().unwrap();
    let log = remote.read(&format!(".taskrun/logs/{run_id}/gen.log"));
    assert!(
        log.contains("gen says hi") && log.contains("to stderr"),
        "{log}"
    );

    let local = seeded(c.url(), &n);
    local.run(&["--remote-exec", "off"]).code(0);
    let report = local.last_report();
    assert_eq!(task(&report, "gen")["executed_on"], "local");
    assert_eq!(report["summary"]["remote"], 0);
    let made = remote.files(OUTPUTS);
    assert_eq!(made, local.files(OUTPUTS));
    assert_eq!(made["out/tool.sh"].1, 0o755, "the executable bit came back");
    assert_eq!(made["out/deep/bin.dat"].0, b"x\0y");
    let used = String::from_utf8_lossy(&made["used.txt"].0).into_owned();
    assert_eq!(used, format!("tool ran\nHELLO REMOTE\n{n}-hello\n"));
    assert_eq!(
        String::from_utf8_lossy(&made["sub/here.txt"].0),
        "HELLO REMOTE\nsub\n"
    );

    let actions: Vec<String> = ["gen", "use", "in-sub"]
        .iter()
        .map(|t| remote.action_digest(t))
        .collect();
    let counts = || actions.iter().map(|a| runs_of(c, a)).collect::<Vec<_>>();
    assert_eq!(counts(), [1, 1, 1], "{}", c.worker_log());

    // Again here: the local cache answers.
    remote.run(&[]).code(0);
    let report = remote.last_report();
    for name in ["gen", "use", "in-sub"] {
        let t = task(&report, name);
        assert_eq!(
            (&t["status"], &t["cache_source"]),
            (&"cached".into(), &"local".into())
        );
    }

    // Another workspace, empty local cache: the cluster's ActionCache answers, nothing runs.
    let other = seeded(c.url(), &n);
    let t = Instant::now();
    other.run(&[]).code(0);
    eprintln!(
        "3 remote ActionCache hits: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let report = other.last_report();
    for name in ["gen", "use", "in-sub"] {
        let t = task(&report, name);
        assert_eq!(t["status"], "cached", "{name}: {t:#}");
        assert_eq!(t["cache_source"], "remote", "{name}: {t:#}");
        assert!(t["executed_on"].is_null(), "{name}: {t:#}");
    }
    assert_eq!(report["summary"]["cached"], 3);
    assert_eq!(other.files(OUTPUTS), made);
    assert_eq!(counts(), [1, 1, 1], "no new execution");
    // And recorded locally: a third run asks nobody.
    other.run(&[]).code(0);
    assert_eq!(task(&other.last_report(), "gen")["cache_source"], "local");
}

/// A file the command reads but the manifest does not declare is not on the worker: the
/// remote run fails and says which file to declare; declared, it runs.
/// A remote command that exits 0 without one of its outputs has failed, as a local one: what
/// it wrote goes (SPEC §8), what it did not touch stays.
#[test]
fn a_remote_task_missing_an_output_leaves_only_what_was_there() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.pre]\nrun = \"mkdir -p out && echo hi > out/n.txt\"\n\
                outputs = [\"out/n.txt\", \"out/missing.txt\", \"mine.txt\"]\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    ws.write_mode("mine.txt", "mine\n", 0o644);
    let run = ws.run(&[]);
    run.code(1);
    let t = task(&ws.last_report(), "pre").clone();
    assert!(
        t["error"].as_str().unwrap().contains("out/missing.txt"),
        "{t:#}"
    );
    assert_eq!(t["executed_on"], "remote");
    assert!(
        !ws.path("out/n.txt").exists(),
        "written by the failed attempt"
    );
    assert_eq!(ws.read("mine.txt"), "mine\n");
}

#[test]
fn an_undeclared_input_fails_remotely_with_a_hint() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.notes]\nrun = \"cat data/notes.txt > out.txt\"\noutputs = [\"out.txt\"]\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    ws.write_mode("data/notes.txt", "n\n", 0o644);
    let run = ws.run(&[]);
    run.code(1);
    let hint = "`data/notes.txt` exists here but was not sent: declare it in `inputs` \
                (remote actions see only declared inputs and their dependencies' outputs)";
    assert!(run.stdout.contains(hint), "{}", run.stdout);
    let t = task(&ws.last_report(), "notes").clone();
    assert_eq!(t["status"], "failed");
    assert_eq!(t["executed_on"], "remote");
    assert!(t["error"].as_str().unwrap().contains(hint), "{t:#}");
    assert!(
        !ws.path("out.txt").exists(),
        "a failed remote run leaves no output"
    );

    let declared = body.replace("run =", "inputs = [\"data/*.txt\"]\nrun =");
    std::fs::write(
        ws.path("taskrun.toml"),
        manifest(c.url(), "", &nonce(), &declared),
    )
    .unwrap();
    ws.run(&[]).code(0);
    assert_eq!(ws.read("out.txt"), "n\n");
}

/// A non-zero exit is a failed attempt retried by `retry`, like a local one; a flaky command
/// succeeds on its second attempt; a remote timeout is reported as a local one is.
#[test]
fn exit_codes_retries_and_timeouts_are_those_of_local_attempts() {
    let Some(c) = Cluster::shared() else { return };
    // State kept outside the workspace, where the workers (on this machine) find it: the
    // one way a hermetic action can fail once and then succeed.
    let state = tempfile::tempdir().unwrap();
    let counter = state.path().join("count");
    let body = format!(
        r#"
[tasks.bad]
run = "echo failing; exit 3"
retry = {{ max_attempts = 2, initial_delay = "10ms" }}

[tasks.flaky]
run = "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; [ $n -ge 1 ] && echo ok > flaky.txt"
outputs = ["flaky.txt"]
retry = {{ max_attempts = 3, initial_delay = "10ms" }}

[tasks.slow]
run = "sleep 10"
timeout = "1s"
"#,
        c = counter.display()
    );
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    let run = ws.run(&["-k"]);
    run.code(1);
    assert!(
        run.stdout
            .contains("=> bad: attempt 1 failed (exit code 3); retrying"),
        "{}",
        run.stdout
    );
    let report = ws.last_report();
    let bad = task(&report, "bad");
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["exit_code"], 3);
    assert_eq!(bad["attempts"].as_array().unwrap().len(), 2, "{bad:#}");
    assert_eq!(bad["error"], "exit code 3 (after 2 attempts)");
    let flaky = task(&report, "flaky");
    assert_eq!(flaky["status"], "succeeded", "{flaky:#}");
    assert_eq!(flaky["executed_on"], "remote");
    assert_eq!(flaky["attempts"][0]["exit_code"], 1, "{flaky:#}");
    assert_eq!(flaky["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(ws.read("flaky.txt"), "ok\n");
    let slow = task(&report, "slow");
    assert_eq!(slow["status"], "failed");
    assert_eq!(slow["attempts"][0]["outcome"], "timed_out", "{slow:#}");
    assert_eq!(slow["error"], "timed out after 1s");
    assert_eq!(
        runs_of(c, &ws.action_digest("bad")),
        2,
        "{}",
        c.worker_log()
    );
}

/// A task whose command or env holds a secret runs here, and `plan` says why; the others
/// still go to the cluster.
#[test]
fn a_task_holding_a_secret_runs_here_and_plan_says_why() {
    let Some(c) = Cluster::shared() else { return };
    let body = r#"
[tasks.signed]
run = "echo signed > signed.txt"
env = { TOKEN = "${secret.SIGN_TOKEN}" }
outputs = ["signed.txt"]

[tasks.plain]
run = "echo plain > plain.txt"
outputs = ["plain.txt"]
"#;
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    let plan = ws.cmd(&["plan", "taskrun.toml"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("local (holds secret SIGN_TOKEN)"), "{plan}");
    assert!(plan.contains("1 task remote, 1 local"), "{plan}");
    let out = ws
        .cmd(&["taskrun.toml"])
        .env("SIGN_TOKEN", "s3cr3t-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = ws.last_report();
    assert_eq!(task(&report, "signed")["executed_on"], "local");
    assert_eq!(task(&report, "plain")["executed_on"], "remote");
}

/// `--remote-exec off` runs every task here, and says nothing about the cluster.
#[test]
fn remote_exec_off_runs_everything_here() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.a]\nrun = \"echo a > a.txt\"\noutputs = [\"a.txt\"]\n\
                [tasks.b]\nrun = \"cat a.txt > b.txt\"\ndeps = [\"a\"]\noutputs = [\"b.txt\"]\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    let plan = ws
        .cmd(&["plan", "taskrun.toml", "--remote-exec", "off"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("local (--remote-exec off)"), "{plan}");
    let run = ws.run(&["--remote-exec", "off"]);
    run.code(0);
    assert!(!run.stdout.contains("[remote]"), "{}", run.stdout);
    assert!(!run.stdout.contains("remotely"), "{}", run.stdout);
    let report = ws.last_report();
    assert_eq!(task(&report, "a")["executed_on"], "local");
    assert_eq!(task(&report, "b")["executed_on"], "local");
    assert_eq!(report["summary"]["remote"], 0);
    assert_eq!(runs_of(c, &ws.action_digest("a")), 0);
}

/// SIGINT while an action runs on the cluster: the operation is cancelled, the task is
/// `cancelled`, no output is left, the exit code is 130, and the bot is told to stop.
#[test]
fn an_interrupt_cancels_the_remote_operation() {
    interrupt_cancels_the_operation("");
}

/// The same for an action that waits without a stream (`streams = 1`: the only stream is
/// given up as soon as the operation is named, and the operation is polled).
#[test]
fn an_interrupt_cancels_a_polled_remote_operation() {
    interrupt_cancels_the_operation("streams = 1");
}

fn interrupt_cancels_the_operation(execution: &str) {
    let Some(c) = Cluster::shared() else { return };
    // The command marks its start outside the workspace, where this test (on the workers'
    // machine) sees that a bot is running it.
    let state = tempfile::tempdir().unwrap();
    let began = state.path().join("began");
    let body = format!(
        "[tasks.long]\nrun = \"echo partial > out.txt; touch {}; sleep 30; echo done > out.txt\"\noutputs = [\"out.txt\"]\n",
        began.display()
    );
    let ws = Workspace::new(&manifest(c.url(), execution, &nonce(), &body));
    let action = ws.action_digest("long");
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !began.exists() {
        assert!(
            Instant::now() < deadline,
            "never started: {}",
            c.worker_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    eprintln!("interrupt to exit: {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let report = ws.last_report();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(task(&report, "long")["status"], "cancelled");
    // A worker had it (a polled operation's stage is asked for on the interrupt).
    assert_eq!(task(&report, "long")["executed_on"], "remote");
    assert!(!ws.path("out.txt").exists());
    // The bot learns of the cancellation at its next call-in and stops the command.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .executions()
        .iter()
        .any(|e| e.action == action && e.cancelled)
    {
        assert!(
            Instant::now() < deadline,
            "not cancelled on the cluster: {}",
            c.worker_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--no-cache` uses neither cache: a second workspace runs the action again on the
/// cluster instead of taking the first one's result.
#[test]
fn no_cache_leaves_the_clusters_action_cache_alone() {
    let Some(c) = Cluster::shared() else { return };
    let n = nonce();
    let body = "[tasks.a]\nrun = \"echo $NONCE > a.txt\"\noutputs = [\"a.txt\"]\n";
    let first = Workspace::new(&manifest(c.url(), "", &n, body));
    first.run(&["--no-cache"]).code(0);
    let second = Workspace::new(&manifest(c.url(), "", &n, body));
    second.run(&["--no-cache"]).code(0);
    let t = task(&second.last_report(), "a").clone();
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["executed_on"], "remote", "{t:#}");
    assert_eq!(second.read("a.txt"), format!("{n}\n"));
}
