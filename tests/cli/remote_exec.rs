//! The run side of SPEC §11's configuration: `executed_on` in the report, `--remote-exec`
//! and `TASKRUN_REMOTE_EXECUTOR` on `run`, and secrets in `[execution] headers` never
//! written anywhere.

use crate::support::{Workspace, task};

const MANIFEST: &str = r#"[pipeline]
concurrency = 2

[tasks.build]
run = "mkdir -p out && echo built > out/b.txt"
outputs = ["out/b.txt"]

[tasks.always]
run = "true"

[tasks.bad]
run = "exit 3"

[tasks.after-bad]
run = "true"
deps = ["bad"]

[tasks.all]
deps = ["build", "always"]
"#;

#[test]
fn the_report_says_where_each_task_ran_and_null_when_it_did_not() {
    let ws = Workspace::new(MANIFEST);
    ws.run(&["-k"]).code(1);
    let report = ws.last_report();
    for (name, want) in [
        ("build", "local"),
        ("always", "local"),
        ("bad", "local"),
        ("all", "local"),
    ] {
        assert_eq!(
            task(&report, name)["executed_on"],
            want,
            "{name}: {report:#}"
        );
    }
    assert!(task(&report, "after-bad")["executed_on"].is_null());

    // Cached: not run, so nowhere.
    ws.run(&["build"]).code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "build")["status"], "cached");
    assert!(task(&report, "build")["executed_on"].is_null());
}

#[test]
fn remote_exec_on_needs_an_executor_and_off_runs_here() {
    let ws = Workspace::new("[tasks.a]\nrun = \"touch ran\"\n");
    let run = ws.run(&["--remote-exec", "on"]);
    run.code(2);
    assert!(
        run.stderr
            .contains("--remote-exec on, but no remote executor is configured"),
        "{}",
        run.stderr
    );
    assert!(!ws.path("ran").exists());
    assert_eq!(ws.report_count(), 0);

    ws.run(&["--remote-exec", "off"]).code(0);
    assert!(ws.path("ran").exists());
    assert_eq!(task(&ws.last_report(), "a")["executed_on"], "local");
}

#[test]
fn an_executor_nobody_answers_at_means_a_local_run_after_one_warning() {
    // Nothing listens on the executor: after the cluster retries the task runs here
    // (`fallback_local` is on by default) and says so.
    let ws = Workspace::new("[tasks.a]\nrun = \"touch ran\"\n");
    let out = ws
        .cmd(&["taskrun.toml", "--remote-exec", "on"])
        .env("TASKRUN_REMOTE_EXECUTOR", "grpc://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .matches("warning: the remote executor grpc://127.0.0.1:1 is unreachable")
            .count(),
        1,
        "{stdout}"
    );
    assert!(ws.path("ran").exists());
    assert_eq!(task(&ws.last_report(), "a")["executed_on"], "local");
}

#[test]
fn secrets_in_execution_headers_are_never_printed_nor_written() {
    let secret = "hunter2-rbe-token-value";
    let ws = Workspace::new(
        r#"[execution]
remote = "grpc://127.0.0.1:1"
headers = { authorization = "Bearer ${secret.RBE_TOKEN}", x-team = "data" }

[tasks.a]
run = "mkdir -p out && echo ok > out/a.txt"
outputs = ["out/a.txt"]
"#,
    );
    let mut outputs = String::new();
    for args in [
        &["taskrun.toml"][..],
        &["taskrun.toml", "-v"],
        &["plan", "taskrun.toml"],
        &["plan", "taskrun.toml", "--format", "json"],
        &["check", "taskrun.toml"],
        &["taskrun.toml", "--log-format", "json", "--force"],
    ] {
        let out = ws.cmd(args).env("RBE_TOKEN", secret).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        outputs.push_str(&String::from_utf8_lossy(&out.stdout));
        outputs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(!outputs.contains(secret), "{outputs}");
    // Nor in any file of the state dir: reports, logs, the cache, the remembered manifest.
    for entry in walkdir::WalkDir::new(ws.path(".taskrun")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds the secret", entry.path().display());
        }
    }
    assert!(
        ws.path(".taskrun/manifest").exists(),
        "the memo was written"
    );
}

#[test]
fn the_remembered_manifest_is_not_used_once_the_variable_changes() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n");
    ws.run(&[]).code(0);
    assert!(ws.path(".taskrun/manifest").exists());
    let out = ws
        .cmd(&["taskrun.toml"])
        .env("TASKRUN_REMOTE_EXECUTOR", "grpc://rbe-without-port")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a grpc:// URL needs a port"), "{stderr}");
}
