//! `taskrun plan` / `--dry-run`, `list`, `completions`: output, selection, and no side effects.

use std::net::TcpListener;

use predicates::prelude::*;

use crate::support::{Workspace, tree};

fn manifest(port: u16) -> String {
    format!(
        r#"version = 1
[pipeline]
name = "demo"
description = "A small pipeline"
concurrency = 3

[vars]
mirror = "http://127.0.0.1:{port}"

[pools]
net = 2

[defaults]
retry = {{ max_attempts = 3, initial_delay = "500ms", factor = 2.0 }}

[tasks.fetch]
description = "Raw data"
uses = {{ net = 1 }}
download = {{ url = "${{vars.mirror}}/a.csv", dest = "data/a.csv", sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", headers = {{ Authorization = "Bearer ${{secret.DEMO_TOKEN}}" }} }}

[tasks.merge]
deps = ["fetch"]
run = "cat data/a.csv > out/merged.csv"
inputs = ["data/*.csv"]
outputs = ["out/merged.csv"]
retry = 1
timeout = "30s"

[tasks.lint]
run = ["echo", "lint ok"]

[tasks.all]
deps = ["merge", "lint"]
"#
    )
}

#[test]
fn plan_formats_snapshot() {
    let ws = Workspace::new(&manifest(9));
    for format in ["text", "json", "dot", "mermaid"] {
        let out = ws
            .taskrun(&["plan", "taskrun.toml", "--format", format])
            .assert()
            .code(0)
            .get_output()
            .clone();
        insta::assert_snapshot!(
            format!("plan_{format}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn dry_run_prints_the_same_as_plan() {
    let ws = Workspace::new(&manifest(9));
    let plan = ws
        .taskrun(&["plan", "taskrun.toml", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let dry = ws
        .taskrun(&["taskrun.toml", "-n", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let dry2 = ws
        .taskrun(&["run", "taskrun.toml", "--dry-run", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(plan, dry);
    assert_eq!(plan, dry2);

    // The run's options show in the plan of a dry run.
    let out = ws
        .taskrun(&["taskrun.toml", "-n", "-j", "7", "-k", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (json["concurrency"].clone(), json["fail_fast"].clone()),
        (7.into(), false.into())
    );
    // `--format` without `-n` is a mistake, not a run.
    ws.taskrun(&["taskrun.toml", "--format", "json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--dry-run"));
    assert!(!ws.root().join(".taskrun").exists(), "nothing ran");
}

#[test]
fn plan_runs_nothing_connects_nowhere_writes_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ws = Workspace::new(&manifest(port).replace("echo\", \"lint ok\"", "touch\", \"ran.txt\""));
    let before = tree(ws.root());
    ws.taskrun(&["plan", "taskrun.toml"]).assert().code(0);
    ws.taskrun(&["taskrun.toml", "--dry-run"]).assert().code(0);
    assert_eq!(tree(ws.root()), before, "plan must not write any file");
    assert!(
        listener.accept().is_err(),
        "plan must not open a connection"
    );
}

#[test]
fn secrets_are_redacted_and_vars_overridable() {
    let ws = Workspace::new(&manifest(9));
    ws.taskrun(&[
        "plan",
        "taskrun.toml",
        "--format",
        "json",
        "--var",
        "mirror=http://127.0.0.1:7",
    ])
    .env("DEMO_TOKEN", "hunter2-very-secret")
    .assert()
    .code(0)
    .stdout(predicate::str::contains("Bearer ***"))
    .stdout(predicate::str::contains("http://127.0.0.1:7/a.csv"))
    .stdout(predicate::str::contains("hunter2").not());
}

#[test]
fn targets_select_their_dependencies_only() {
    let ws = Workspace::new(&manifest(9));
    let out = ws
        .taskrun(&["plan", "taskrun.toml", "merge", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let names: Vec<&str> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fetch", "merge"]);
    assert_eq!(doc["tasks"][1]["level"], 1);
    assert_eq!(
        doc["tasks"][0]["retry"]["schedule"],
        "3 attempts, waits up to 0.5s, 1s"
    );
}

#[test]
fn unknown_target_is_an_error_with_a_suggestion() {
    let ws = Workspace::new(&manifest(9));
    ws.taskrun(&["plan", "taskrun.toml", "mrege"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown task `mrege`: did you mean `merge`?",
        ));
    ws.taskrun(&["taskrun.toml", "mrege"]).assert().code(2);
}

#[test]
fn list_shows_tasks_with_descriptions() {
    let ws = Workspace::new(&manifest(9));
    ws.taskrun(&["list", "taskrun.toml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("fetch  download  Raw data"))
        .stdout(predicate::str::contains("demo: A small pipeline"));
}

#[test]
fn completions_help_and_version() {
    let ws = Workspace::new("");
    for shell in ["bash", "zsh", "fish"] {
        ws.taskrun(&["completions", shell])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("taskrun"));
    }
    ws.taskrun(&["--version"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    ws.taskrun(&["--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("plan"));
    ws.taskrun(&["run", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("--keep-going"));
    ws.taskrun(&["plan", "nonexistent.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read manifest"));
    ws.taskrun(&["plan"]).assert().code(2);
}
