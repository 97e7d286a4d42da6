//! `[execution]`, `remote` and `platform` (SPEC §11): their validation, and where `plan` says
//! each task would run (text and JSON), with `TASKRUN_REMOTE_EXECUTOR` and `--remote-exec`.

use predicates::prelude::*;
use serde_json::Value;

use crate::support::Workspace;

const BROKEN: &str = r#"[execution]
remote = "http://rbe.internal:50051"
instanse = "main"
platform = { OSFamily = "linux", gpu = 1 }
headers = { Authorization = "Bearer ${secret.RBE_TOKEN}", grpc-timeout = "1s" }
jobs = 0
fallback_local = "yes"

[tasks.fetch]
download = { url = "http://127.0.0.1:1/x", dest = "x" }
remote = true
platform = { gpu = "1" }

[tasks.build]
run = "make"
remote = "no"
platform = { image = "${secret.IMG}" }
"#;

fn check_stderr(ws: &Workspace) -> String {
    let out = ws
        .taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn every_execution_mistake_is_reported_with_its_place() {
    let ws = Workspace::new(BROKEN);
    insta::assert_snapshot!(check_stderr(&ws));
}

#[test]
fn executor_urls_are_checked_for_scheme_host_port_and_nothing_else() {
    let cases = [
        ("grpc://rbe", "a grpc:// URL needs a port"),
        ("rbe:50051", "`rbe://` is not a gRPC scheme"),
        ("grpc://me:pw@rbe:1", "a user or password in the URL"),
        ("grpc://rbe:1/main", "a gRPC endpoint has no path (`/main`)"),
        ("grpcs://rbe?x=1", "no query or fragment"),
        ("not a url", "not a URL"),
    ];
    for (url, message) in cases {
        let ws = Workspace::new(&format!(
            "[execution]\nremote = \"{url}\"\n[tasks.a]\nrun = \"true\"\n"
        ));
        let stderr = check_stderr(&ws);
        assert!(stderr.contains(message), "{url}: {stderr}");
        assert!(stderr.contains("[taskrun.toml:2:10]"), "{url}: {stderr}");
    }
    let ws = Workspace::new("[execution]\nremote = \"grpc://me:pw@rbe:1\"\n");
    assert!(check_stderr(&ws).contains("headers = { authorization"));
    for good in [
        "grpc://127.0.0.1:50051",
        "grpcs://rbe.example.com",
        "grpc://[::1]:8980/",
    ] {
        let ws = Workspace::new(&format!("[execution]\nremote = \"{good}\"\n"));
        ws.taskrun(&["check", "taskrun.toml"]).assert().code(0);
    }
}

#[test]
fn header_names_are_lowercased_once_and_checked() {
    let ws = Workspace::new(
        "[execution]\nheaders = { Authorization = \"a\", authorization = \"b\", \"x y\" = \"c\", key-bin = \"d\", ok = \"tab\\there\" }\n",
    );
    let stderr = check_stderr(&ws);
    for want in [
        "header `authorization` is given twice (as `Authorization` before)",
        "header name `x y` holds ` `",
        "header name `key-bin` is a binary (`-bin`) key",
        "header `ok` holds a character that is not printable ASCII",
        "has 4 problems",
    ] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
}

#[test]
fn a_bad_executor_variable_is_a_usage_error_that_never_shows_its_value() {
    let ws = Workspace::new("[tasks.a]\nrun = \"touch ran\"\n");
    for cmd in [
        &["check", "taskrun.toml"][..],
        &["plan", "taskrun.toml"],
        &["taskrun.toml"],
    ] {
        ws.taskrun(cmd)
            .env("TASKRUN_REMOTE_EXECUTOR", "https://me:hunter2@rbe:1")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "TASKRUN_REMOTE_EXECUTOR is not a usable executor URL: `https://` is not a gRPC scheme",
            ))
            .stderr(predicate::str::contains("hunter2").not());
    }
    assert!(!ws.path("ran").exists());
}

/// One task for each reason a task stays here, and one that goes remote.
const PLACED: &str = r#"[pipeline]
name = "placed"
concurrency = 2

[execution]
remote = "grpc://127.0.0.1:1"
instance = "main"
headers = { authorization = "Bearer ${secret.RBE_TOKEN}" }

[tasks.db]
service = { run = "sleep 60", ready = { tcp = "127.0.0.1:1" } }

[tasks.get]
download = { url = "http://127.0.0.1:1/x", dest = "x" }

[tasks.build]
run = "make"

[tasks.pinned]
run = "make pinned"
remote = false

[tasks.query]
run = "psql"
deps = ["db"]

[tasks.signed]
run = "sign --token ${secret.SIGN_TOKEN}"

[tasks.all]
deps = ["get", "build", "pinned", "query", "signed"]
"#;

fn plan_json(ws: &Workspace, args: &[&str], executor: Option<&str>) -> Value {
    let mut all = vec!["plan", "taskrun.toml", "--format", "json"];
    all.extend_from_slice(args);
    let mut cmd = ws.taskrun(&all);
    if let Some(e) = executor {
        cmd.env("TASKRUN_REMOTE_EXECUTOR", e);
    }
    let out = cmd.assert().code(0).get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

fn placements(doc: &Value) -> Vec<(String, String)> {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let on = t["executed_on"].as_str().unwrap_or("-");
            let why = t["local_reason"].as_str().map(|r| format!(" ({r})"));
            (
                t["name"].as_str().unwrap().to_string(),
                format!("{on}{}", why.unwrap_or_default()),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn plan_json_places_each_task_with_its_reason() {
    let ws = Workspace::new(PLACED);
    let doc = plan_json(&ws, &[], None);
    assert_eq!(doc["remote_executor"], "grpc://127.0.0.1:1");
    assert_eq!(
        placements(&doc),
        pairs(&[
            ("db", "local (service)"),
            ("get", "local (download)"),
            ("build", "remote"),
            ("pinned", "local (remote = false)"),
            ("signed", "local (holds secret SIGN_TOKEN)"),
            ("query", "local (depends on service db)"),
            ("all", "local (group)"),
        ])
    );
    let remote = doc["tasks"].as_array().unwrap()[2].clone();
    assert!(remote.get("local_reason").is_none(), "{remote:#}");

    let off = plan_json(&ws, &["--remote-exec", "off"], None);
    assert!(
        placements(&off)
            .iter()
            .all(|(_, p)| p == "local (--remote-exec off)"),
        "{off:#}"
    );
    let on = plan_json(&ws, &["--remote-exec", "on"], None);
    assert_eq!(placements(&on), placements(&doc));
}

#[test]
fn plan_text_says_where_each_task_runs() {
    let ws = Workspace::new(PLACED);
    let out = ws
        .taskrun(&["plan", "taskrun.toml"])
        .env("RBE_TOKEN", "hunter2-rbe-token")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("remote executor grpc://127.0.0.1:1 (instance main): 1 task remote, 6 local"),
        "{text}"
    );
    for want in [
        "runs: local (service)",
        "runs: local (download)",
        "runs: remote",
        "runs: local (remote = false)",
        "runs: local (depends on service db)",
        "runs: local (holds secret SIGN_TOKEN)",
        "runs: local (group)",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    // `runs:` sits under its task, before the cache line.
    let build = text.find("  build ").unwrap();
    let after = &text[build..];
    let runs = after.find("runs: remote").unwrap();
    assert!(runs < after.find("cache:").unwrap(), "{text}");
}

#[test]
fn the_variable_names_an_executor_without_an_execution_table_and_wins_over_it() {
    let ws = Workspace::new("[tasks.a]\nrun = \"make\"\n");
    let doc = plan_json(&ws, &[], Some("grpcs://rbe.example.com"));
    assert_eq!(doc["remote_executor"], "grpcs://rbe.example.com");
    assert_eq!(placements(&doc), pairs(&[("a", "remote")]));
    // An empty variable is no variable.
    let doc = plan_json(&ws, &[], Some(""));
    assert!(doc.get("remote_executor").is_none());

    let ws = Workspace::new(PLACED);
    let doc = plan_json(&ws, &[], Some("grpc://10.0.0.9:8980"));
    assert_eq!(doc["remote_executor"], "grpc://10.0.0.9:8980");
}

#[test]
fn without_an_executor_the_plan_says_nothing_about_placement() {
    let manifest = "[tasks.a]\nrun = \"make\"\n[tasks.b]\ndeps = [\"a\"]\n";
    let ws = Workspace::new(manifest);
    let doc = plan_json(&ws, &[], None);
    assert!(doc.get("remote_executor").is_none());
    for t in doc["tasks"].as_array().unwrap() {
        assert!(t.get("executed_on").is_none() && t.get("local_reason").is_none());
    }
    // `[execution]` without `remote` configures no executor either.
    let with_table = format!("[execution]\ninstance = \"main\"\n{manifest}");
    let plain = |m: &str| {
        let ws = Workspace::new(m);
        let out = ws.taskrun(&["plan", "taskrun.toml"]).assert().code(0);
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    let text = plain(manifest);
    assert!(
        !text.contains("runs:") && !text.contains("remote"),
        "{text}"
    );
    assert_eq!(plain(&with_table), text);
    ws.taskrun(&["plan", "taskrun.toml", "--remote-exec", "off"])
        .assert()
        .code(0);
}

#[test]
fn remote_exec_on_without_an_executor_is_a_usage_error() {
    let ws = Workspace::new("[tasks.a]\nrun = \"touch ran\"\n");
    for cmd in [
        &["plan", "taskrun.toml", "--remote-exec", "on"][..],
        &["taskrun.toml", "--dry-run", "--remote-exec", "on"],
        &["taskrun.toml", "--remote-exec", "on"],
    ] {
        ws.taskrun(cmd)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "error: --remote-exec on, but no remote executor is configured for taskrun.toml",
            ))
            .stderr(predicate::str::contains("TASKRUN_REMOTE_EXECUTOR"));
    }
    assert!(!ws.path("ran").exists());
    ws.taskrun(&["plan", "taskrun.toml", "--remote-exec", "sometimes"])
        .assert()
        .code(2);
}

#[test]
fn a_fan_out_is_placed_once_and_may_fill_its_platform_from_the_matrix() {
    let ws = Workspace::new(
        r#"[execution]
remote = "grpc://127.0.0.1:1"
platform = { OSFamily = "linux" }

[tasks.db]
service = { run = "sleep 60", ready = { tcp = "127.0.0.1:1" } }

[tasks.test]
matrix = { py = ["3.11", "3.12", "3.13"] }
run = "pytest"
platform = { container-image = "docker://python:${matrix.py}" }

[tasks.load]
matrix = { part = ["a", "b"] }
run = "load ${matrix.part}"
deps = ["db"]

[tasks.mixed]
matrix = { part = ["a", "b", "c"] }
run = "load ${matrix.part}"
deps = ["${matrix.part}-dep"]

[tasks.a-dep]
run = "true"
[tasks.b-dep]
run = "true"
[tasks.c-dep]
service = { run = "sleep 60", ready = { tcp = "127.0.0.1:1" } }
"#,
    );
    let out = ws.taskrun(&["plan", "taskrun.toml"]).assert().code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let test = text.find("test[*]").unwrap();
    let block = &text[test..text[test..].find("cache:").unwrap() + test];
    assert_eq!(block.matches("runs: remote").count(), 1, "{text}");
    assert!(
        text.contains("runs: local (depends on service db)"),
        "{text}"
    );
    assert!(
        text.contains("runs: 2 remote, 1 local (depends on service c-dep)"),
        "{text}"
    );
    ws.taskrun(&["plan", "taskrun.toml", "--expand"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("runs: remote").count(7));
    let doc = plan_json(&ws, &[], None);
    let instances: Vec<&Value> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task"] == "test")
        .collect();
    assert_eq!(instances.len(), 3);
    assert!(instances.iter().all(|t| t["executed_on"] == "remote"));
}

#[test]
fn a_fan_out_platform_may_not_hold_a_secret_and_is_only_for_commands() {
    let ws = Workspace::new(
        r#"[tasks.test]
matrix = { py = ["3.11", "3.12"] }
run = "pytest"
platform = { image = "${secret.IMG}", py = "${matrix.nope}" }

[tasks.get]
for_each = { lines = "urls.txt" }
download = { url = "${item.line}", dest = "d/${item.name}" }
platform = { x = "y" }
"#,
    );
    ws.write("urls.txt", "http://127.0.0.1:1/a\nhttp://127.0.0.1:1/b\n");
    let stderr = check_stderr(&ws);
    for want in [
        "platform property `image` may not contain a secret",
        "unknown matrix axis",
        "`platform` applies only to a `run` task, and `get` is a download",
    ] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    // Shared by every instance: each problem once.
    assert_eq!(
        stderr.matches("may not contain a secret").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn defaults_may_keep_every_task_here_and_a_task_opts_back_in() {
    let ws = Workspace::new(
        r#"[execution]
remote = "grpc://127.0.0.1:1"

[defaults]
remote = false
platform = { pool = "small" }

[tasks.small]
run = "make small"

[tasks.big]
run = "make big"
remote = true
platform = { pool = "large" }

[tasks.get]
download = { url = "http://127.0.0.1:1/x", dest = "x" }
"#,
    );
    let doc = plan_json(&ws, &[], None);
    assert_eq!(
        placements(&doc),
        pairs(&[
            ("small", "local (remote = false)"),
            ("big", "remote"),
            ("get", "local (download)"),
        ])
    );
}
