//! `taskrun run`: ordering, limits, retries, failure modes, reports and console output.

use crate::support::{Workspace, intervals, max_overlap, task};

/// A shell snippet recording the task's start and end (ns) into `stamps/<name>`.
fn stamped(name: &str, deps: &[&str], extra: &str) -> String {
    let deps = deps
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[tasks.{name}]\ndeps = [{deps}]\n{extra}\nrun = \"s=$(date +%s%N); sleep 0.2; echo $s $(date +%s%N) > stamps/{name}\"\n\n"
    )
}

#[test]
fn global_limit_is_never_exceeded_and_deps_finish_first() {
    let mut m = String::from("[pipeline]\nconcurrency = 8\n\n");
    for i in 0..6 {
        m.push_str(&stamped(&format!("t{i}"), &[], ""));
    }
    m.push_str(&stamped("last", &["t0", "t1", "t2", "t3", "t4", "t5"], ""));
    let ws = Workspace::new(&m);
    ws.write("stamps/.keep", "");
    std::fs::remove_file(ws.path("stamps/.keep")).unwrap();
    ws.run(&["-j", "2"]).code(0);
    let iv = intervals(&ws.path("stamps"));
    assert_eq!(iv.len(), 7);
    assert_eq!(max_overlap(&iv), 2, "{iv:?}");
    let last_start = iv.iter().find(|t| t.0 == "last").unwrap().1;
    for (name, _, end) in &iv {
        if name != "last" {
            assert!(*end <= last_start, "{name} ended after `last` started");
        }
    }
}

#[test]
fn pools_limit_their_users_without_deadlock() {
    let mut m = String::from("[pipeline]\nconcurrency = 4\n\n[pools]\nnet = 2\ndb = 1\n\n");
    for i in 0..4 {
        m.push_str(&stamped(&format!("net{i}"), &[], "uses = { net = 1 }"));
    }
    for i in 0..3 {
        m.push_str(&stamped(
            &format!("both{i}"),
            &[],
            "uses = { net = 1, db = 1 }",
        ));
    }
    for i in 0..3 {
        m.push_str(&stamped(&format!("free{i}"), &[], ""));
    }
    let ws = Workspace::new(&m);
    std::fs::create_dir(ws.path("stamps")).unwrap();
    ws.run(&[]).code(0);
    let iv = intervals(&ws.path("stamps"));
    assert_eq!(iv.len(), 10);
    let net: Vec<_> = iv
        .iter()
        .filter(|t| !t.0.starts_with("free"))
        .cloned()
        .collect();
    let db: Vec<_> = iv
        .iter()
        .filter(|t| t.0.starts_with("both"))
        .cloned()
        .collect();
    assert!(max_overlap(&net) <= 2, "net pool exceeded: {net:?}");
    assert_eq!(max_overlap(&db), 1, "db pool: {db:?}");
    assert!(max_overlap(&iv) <= 4, "global limit exceeded: {iv:?}");
}

#[test]
fn commands_get_env_cwd_and_argv() {
    let ws = Workspace::new(
        r#"
[env]
GREETING = "hello"
WHO = "pipeline"

[tasks.shell]
cwd = "sub"
env = { WHO = "task" }
run = "echo $GREETING $WHO $CALLER_VAR > out.txt; pwd >> out.txt"

[tasks.argv]
run = ["sh", "-c", "echo \"$1\" > argv.txt", "x", "two words"]
"#,
    );
    ws.write("sub/.keep", "");
    let mut c = ws.cmd(&["taskrun.toml"]);
    c.env("CALLER_VAR", "from-caller");
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = ws.read("sub/out.txt");
    assert!(text.starts_with("hello task from-caller\n"), "{text}");
    assert!(text.trim_end().ends_with("/sub"), "{text}");
    assert_eq!(ws.read("argv.txt"), "two words\n");
}

#[test]
fn output_is_prefixed_and_logged_per_task() {
    let ws = Workspace::new("[tasks.talk]\nrun = \"echo one; echo two >&2\"\n");
    let r = ws.run(&[]);
    r.code(0);
    assert!(r.stdout.contains("talk | one"), "{}", r.stdout);
    assert!(r.stdout.contains("talk ! two"), "{}", r.stdout);
    assert!(!r.stdout.contains('\x1b'), "escape codes in plain output");
    let report = ws.last_report();
    let id = report["run_id"].as_str().unwrap();
    let log = ws.read(&format!(".taskrun/logs/{id}/talk.log"));
    assert!(log.contains("one\n") && log.contains("two\n"), "{log}");

    // A run in which nothing prints leaves no log dir behind.
    ws.write("taskrun.toml", "[tasks.quiet]\nrun = \"true\"\n");
    ws.run(&[]).code(0);
    let id = ws.last_report()["run_id"].as_str().unwrap().to_string();
    assert!(!ws.path(&format!(".taskrun/logs/{id}")).exists());
}

/// `--color always` colours the plain lines (as `ls` and `cargo` do when asked): each
/// finished task's line in its status's colour, with `-q` too; task output is left as the
/// task printed it, and without the flag a pipe gets no escape codes.
#[test]
fn color_always_colours_the_finished_lines_of_the_plain_console() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo hi\"\n[tasks.b]\nrun = \"exit 3\"\n");
    let r = ws.run(&["-k", "--color", "always"]);
    r.code(1);
    assert!(r.stdout.contains("\x1b[32m=> a: succeeded"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("\x1b[31m=> b: failed: exit code 3\x1b[0m"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\na | hi\n"), "{}", r.stdout);
    let r = ws.run(&["-k", "-q", "--color", "always"]);
    r.code(1);
    assert!(r.stdout.contains("\x1b[31m=> b: failed"), "{}", r.stdout);
    for args in [&["-k"][..], &["-k", "--color", "never"]] {
        let r = ws.run(args);
        r.code(1);
        assert!(!r.stdout.contains('\x1b'), "{args:?}: {}", r.stdout);
    }
}

#[test]
fn secrets_are_redacted_from_output() {
    let ws = Workspace::new("[tasks.s]\nrun = \"echo token=${secret.TR_TEST_TOKEN}\"\n");
    let out = ws
        .cmd(&["taskrun.toml"])
        .env("TR_TEST_TOKEN", "hunter2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("s | token=***"), "{stdout}");
    assert!(!stdout.contains("hunter2"));
    let id = ws.last_report()["run_id"].as_str().unwrap().to_string();
    assert!(
        !ws.read(&format!(".taskrun/logs/{id}/s.log"))
            .contains("hunter2")
    );
}

#[test]
fn missing_secret_fails_only_the_task_that_needs_it() {
    let ws = Workspace::new("[tasks.s]\nrun = \"echo ${secret.TR_TEST_NOT_SET}\"\n");
    let r = ws.run(&[]);
    r.code(1);
    let report = ws.last_report();
    let err = task(&report, "s")["error"].as_str().unwrap();
    assert!(err.contains("TR_TEST_NOT_SET"), "{err}");
}

#[test]
fn a_command_failing_twice_then_succeeding_shows_three_attempts() {
    let ws = Workspace::new(
        r#"
[tasks.flaky]
run = "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; [ $n -ge 3 ]"
retry = { max_attempts = 4, initial_delay = "50ms", jitter = "none" }
"#,
    );
    let r = ws.run(&[]);
    r.code(0);
    assert!(
        r.stdout
            .contains("flaky: attempt 1 failed (exit code 1); retrying in 50ms"),
        "{}",
        r.stdout
    );
    let report = ws.last_report();
    let t = task(&report, "flaky");
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    assert_eq!(attempts[0]["wait_ms"], 50);
    assert_eq!(attempts[1]["wait_ms"], 100);
    assert!(attempts[2]["wait_ms"].is_null());
    assert_eq!(t["status"], "succeeded");
}

#[test]
fn exit_codes_not_listed_are_not_retried() {
    let ws = Workspace::new(
        "[tasks.x]\nrun = \"exit 4\"\nretry = { max_attempts = 3, initial_delay = \"10ms\", exit_codes = [75] }\n",
    );
    ws.run(&[]).code(1);
    let report = ws.last_report();
    assert_eq!(task(&report, "x")["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(task(&report, "x")["exit_code"], 4);
    let error = task(&report, "x")["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("not retried: exit code 4 is not in retry.exit_codes"),
        "{error}"
    );

    // A signal is no exit code: with `exit_codes` listed, it is not retried either.
    ws.manifest(
        "[tasks.x]\nrun = \"kill -TERM $$$$\"\nretry = { max_attempts = 3, initial_delay = \"10ms\", exit_codes = [75] }\n",
    );
    ws.run(&[]).code(1);
    let report = ws.last_report();
    assert_eq!(task(&report, "x")["attempts"].as_array().unwrap().len(), 1);
    let error = task(&report, "x")["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("killed by signal 15 (not retried: killed by a signal"),
        "{error}"
    );
}

#[test]
fn a_timeout_is_a_failed_retryable_attempt() {
    let ws = Workspace::new(
        "[tasks.slow]\nrun = \"sleep 5\"\ntimeout = \"200ms\"\nretry = { max_attempts = 2, initial_delay = \"10ms\" }\n",
    );
    ws.run(&[]).code(1);
    let report = ws.last_report();
    let t = task(&report, "slow");
    let outcomes: Vec<_> = t["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["timed_out", "timed_out"]);
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 200ms")
    );
}

pub const DIAMOND: &str = r#"
[tasks.bad]
run = "sleep 0.1; exit 1"

[tasks.after-bad]
deps = ["bad"]
run = "touch after-bad.ran"

[tasks.slow]
run = "sleep 0.5; touch slow.ran"

[tasks.after-slow]
deps = ["slow"]
run = "touch after-slow.ran"
"#;

#[test]
fn fail_fast_lets_running_tasks_finish_and_cancels_the_rest() {
    let ws = Workspace::new(DIAMOND);
    ws.run(&["-j", "2"]).code(1);
    let report = ws.last_report();
    assert_eq!(report["status"], "failed");
    assert_eq!(task(&report, "bad")["status"], "failed");
    assert_eq!(task(&report, "after-bad")["status"], "skipped");
    assert_eq!(task(&report, "slow")["status"], "succeeded");
    assert_eq!(task(&report, "after-slow")["status"], "cancelled");
    assert!(ws.path("slow.ran").exists());
    assert!(!ws.path("after-slow.ran").exists());
    let s = &report["summary"];
    assert_eq!(
        (
            s["failed"].as_u64(),
            s["skipped"].as_u64(),
            s["cancelled"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
}

#[test]
fn keep_going_runs_everything_not_downstream_of_a_failure() {
    let ws = Workspace::new(DIAMOND);
    ws.run(&["-j", "2", "--keep-going"]).code(1);
    let report = ws.last_report();
    assert_eq!(task(&report, "after-bad")["status"], "skipped");
    assert_eq!(task(&report, "after-slow")["status"], "succeeded");
    assert!(ws.path("after-slow.ran").exists());
}

#[test]
fn failed_outputs_are_deleted_unless_kept() {
    let ws = Workspace::new(
        r#"
[tasks.w]
run = "echo partial > out/w.txt; exit 1"
outputs = ["out/w.txt"]

[tasks.k]
run = "echo partial > out/k.txt; exit 1"
outputs = ["out/k.txt"]
keep_failed_outputs = true
"#,
    );
    ws.write("out/.keep", "");
    ws.run(&["-k"]).code(1);
    assert!(!ws.path("out/w.txt").exists());
    assert_eq!(ws.read("out/k.txt"), "partial\n");
}

#[test]
fn input_globs_are_expanded_when_the_task_starts() {
    let ws = Workspace::new(
        r#"
[tasks.make-data]
run = "mkdir -p data && echo 1 > data/a.csv"

[tasks.use-data]
deps = ["make-data"]
inputs = ["data/*.csv", "?extra/**/*.txt"]
run = "cat data/a.csv"

[tasks.no-data]
inputs = ["missing/*.csv"]
run = "touch no-data.ran"
"#,
    );
    ws.run(&["-k"]).code(1);
    let report = ws.last_report();
    assert_eq!(task(&report, "use-data")["status"], "succeeded");
    let err = task(&report, "no-data")["error"].as_str().unwrap();
    assert!(err.contains("missing/*.csv"), "{err}");
    assert!(!ws.path("no-data.ran").exists());
}

#[test]
fn targets_select_only_them_and_their_deps() {
    let ws = Workspace::new(
        "[tasks.a]\nrun = \"true\"\n[tasks.b]\ndeps = [\"a\"]\nrun = \"true\"\n[tasks.c]\nrun = \"touch c.ran\"\n",
    );
    ws.run(&["b"]).code(0);
    let report = ws.last_report();
    let names: Vec<_> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(!ws.path("c.ran").exists());
}

#[test]
fn usage_errors_exit_2_and_write_no_report() {
    let ws = Workspace::new("[tasks.a]\nrun = \"touch a.ran\"\n");
    let r = ws.run(&["nope"]);
    r.code(2);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    assert_eq!(ws.report_count(), 0);
    ws.run(&["--dry-run"]).code(0);
    assert_eq!(ws.report_count(), 0);
    assert!(!ws.path("a.ran").exists());
}

#[test]
fn a_rerun_is_cached_and_restores_outputs_and_force_reruns() {
    let ws = Workspace::new(
        "[tasks.gen]\nrun = \"echo generated > out.txt; echo run >> runs.log\"\noutputs = [\"out.txt\"]\n",
    );
    ws.run(&[]).code(0);
    std::fs::remove_file(ws.path("out.txt")).unwrap();
    ws.run(&[]).code(0);
    let report = ws.last_report();
    let gen_task = task(&report, "gen");
    assert_eq!(gen_task["status"], "cached");
    assert_eq!(gen_task["cache_hit"], true);
    assert_eq!(gen_task["cache_source"], "local");
    assert!(gen_task["cache_key"].is_string());
    assert_eq!(ws.read("out.txt"), "generated\n");
    assert_eq!(ws.read("runs.log"), "run\n");
    ws.run(&["--force"]).code(0);
    assert_eq!(ws.read("runs.log"), "run\nrun\n");
    ws.run(&["--no-cache"]).code(0);
    assert_eq!(ws.read("runs.log"), "run\nrun\nrun\n");
}

#[test]
fn the_remembered_manifest_is_used_only_while_the_manifest_and_its_env_are_unchanged() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo ${env.GREETING} > out.txt\"\n");
    let run = |greeting: &str| {
        let out = ws
            .cmd(&["taskrun.toml"])
            .env("GREETING", greeting)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        ws.read("out.txt")
    };
    assert_eq!(run("hello"), "hello\n");
    let memos = std::fs::read_dir(ws.path(".taskrun/manifest"))
        .unwrap()
        .count();
    assert_eq!(memos, 1, "run remembers the loaded manifest");
    assert_eq!(run("hello"), "hello\n");
    assert_eq!(
        run("bonjour"),
        "bonjour\n",
        "an env change reloads the manifest"
    );

    ws.write(
        "taskrun.toml",
        "version = 1\n[tasks.a]\nrun = \"echo edited ${env.GREETING} > out.txt\"\n",
    );
    assert_eq!(run("bonjour"), "edited bonjour\n");

    ws.write("taskrun.toml", "version = 1\n[tasks.a]\nrun = 3\n");
    let bad = ws.run(&[]);
    bad.code(2);
    assert!(bad.stderr.contains("taskrun.toml:3"), "{}", bad.stderr);
}

/// A task that does not make a declared output fails, whatever the cache flags: with the
/// cache on, `--force`, `cache = "off"` and `--no-cache` alike (it succeeded under
/// `--no-cache`, and its dependent ran); the message is the task's, not the cache's.
#[test]
fn a_missing_declared_output_fails_the_task_also_without_the_cache() {
    let ws = Workspace::new(
        "[tasks.a]\noutputs = [\"never.txt\"]\nrun = \"true\"\n\
         [tasks.b]\ndeps = [\"a\"]\nrun = \"touch b.ran\"\n",
    );
    for flags in [&[][..], &["--force"], &["--no-cache"]] {
        let r = ws.run(flags);
        r.code(1);
        r.says(&["a: failed: declared output never.txt was not created"]);
        assert!(
            !r.all().contains("cache: declared"),
            "{flags:?}: {}",
            r.all()
        );
        assert!(!ws.path("b.ran").exists(), "{flags:?}: the dependent ran");
    }
    ws.write(
        "taskrun.toml",
        "[tasks.a]\noutputs = [\"never.txt\"]\ncache = \"off\"\nrun = \"true\"\n",
    );
    ws.run(&["--no-cache"])
        .code(1)
        .says(&["declared output never.txt was not created"]);
    // Each missing one is named, and the attempt failed in the report too (it said
    // `succeeded` under a failed task); exit code 0 is no failure to retry (SPEC §3).
    ws.write(
        "taskrun.toml",
        "[tasks.a]\noutputs = [\"x.txt\", \"never.txt\", \"made.txt\"]\n\
         retry = { max_attempts = 3, initial_delay = \"10ms\" }\nrun = \"touch made.txt\"\n",
    );
    for flags in [&[][..], &["--no-cache"]] {
        let r = ws.run(flags);
        r.code(1);
        let said = "declared outputs never.txt, x.txt were not created";
        r.says(&[said]);
        let a = &ws.last_report()["tasks"][0];
        assert_eq!(
            a["attempts"].as_array().unwrap().len(),
            1,
            "{flags:?}: {a:#}"
        );
        assert_eq!(a["attempts"][0]["outcome"], "failed", "{flags:?}: {a:#}");
        assert_eq!(a["attempts"][0]["error"], said, "{flags:?}: {a:#}");
        assert_eq!(a["attempts"][0]["exit_code"], 0, "{flags:?}: {a:#}");
        assert!(
            !ws.path("made.txt").exists(),
            "{flags:?}: the attempt's output stayed"
        );
    }
}

/// A declared output that is a FIFO is no file to keep: the task fails at once (the cache
/// opened it to hash it and waited forever, deaf to SIGTERM).
#[test]
fn a_declared_output_that_is_a_fifo_fails_the_task() {
    let ws = Workspace::new("[tasks.f]\noutputs = [\"f.fifo\"]\nrun = \"mkfifo f.fifo\"\n");
    let out = crate::workspace::output_within(
        &mut ws.cmd(&["taskrun.toml"]),
        std::time::Duration::from_secs(30),
    );
    let r = crate::support::Run::from(out);
    r.code(1);
    r.says(&["declared output f.fifo is not a regular file or a directory"]);
}
