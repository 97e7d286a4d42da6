//! What `taskrun run` writes and prints: the report and its schema, JUnit, the console
//! summary, `-q`, GitHub Actions groups and the step summary, and JSON log lines.

use crate::run::DIAMOND;
use crate::support::{Workspace, task};

#[test]
fn report_follows_the_schema_and_is_also_written_to_report_path() {
    let ws = Workspace::new(DIAMOND);
    ws.run(&["--report", "r/report.json", "-k"]).code(1);
    let report: serde_json::Value = serde_json::from_str(&ws.read("r/report.json")).unwrap();
    assert_eq!(report, ws.last_report());
    assert_eq!(report["format_version"], 1);
    let id = report["run_id"].as_str().unwrap();
    assert_eq!(id.len(), "20261125T113201Z-7f3a".len(), "{id}");
    for key in [
        "pipeline",
        "manifest",
        "started_at",
        "finished_at",
        "duration_ms",
        "status",
        "summary",
        "tasks",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    for key in [
        "name",
        "kind",
        "status",
        "started_at",
        "finished_at",
        "duration_ms",
        "cache_key",
        "cache_hit",
        "cache_source",
        "bytes",
        "exit_code",
        "error",
        "attempts",
    ] {
        assert!(
            task(&report, "bad").get(key).is_some(),
            "task is missing {key}"
        );
    }
    let attempt = &task(&report, "bad")["attempts"][0];
    for key in [
        "number",
        "started_at",
        "finished_at",
        "duration_ms",
        "outcome",
        "exit_code",
        "http_status",
        "url",
        "error",
        "wait_ms",
    ] {
        assert!(attempt.get(key).is_some(), "attempt is missing {key}");
    }
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn junit_has_one_testcase_per_task_with_failure_details() {
    let ws = Workspace::new(
        "[tasks.ok]\nrun = \"true\"\n[tasks.boom]\nrun = \"echo 'bad <thing>'; exit 2\"\n",
    );
    ws.run(&["-k", "--junit", "junit.xml"]).code(1);
    let xml = ws.read("junit.xml");
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert!(xml.contains("<failure message=\"exit code 2\""), "{xml}");
    assert!(xml.contains("bad &lt;thing&gt;"), "{xml}");
}

#[test]
fn quiet_shows_only_failures_and_the_totals_line() {
    let ws = Workspace::new("[tasks.ok]\nrun = \"echo chatty\"\n[tasks.boom]\nrun = \"exit 2\"\n");
    let r = ws.run(&["-q", "-k"]);
    r.code(1);
    assert!(!r.stdout.contains("chatty"), "{}", r.stdout);
    assert!(
        r.stdout.contains("=> boom: failed: exit code 2"),
        "{}",
        r.stdout
    );
    let last = r.stdout.lines().last().unwrap();
    assert!(
        last.contains("2 tasks, 1 succeeded, 0 cached, 1 failed"),
        "{last}"
    );
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
}

#[test]
fn summary_table_ends_the_run() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n[tasks.g]\ndeps = [\"a\"]\n");
    let r = ws.run(&[]);
    r.code(0);
    let tail: Vec<&str> = r.stdout.lines().rev().take(4).collect();
    assert!(
        tail[3].starts_with("TASK")
            && tail[3].contains("STATUS")
            && tail[3].contains("ATTEMPTS")
            && tail[3].contains("DURATION")
            && tail[3].contains("BYTES"),
        "{}",
        r.stdout
    );
    assert!(tail[0].contains("2 tasks, 2 succeeded"), "{}", r.stdout);
}

#[test]
fn github_actions_groups_errors_and_step_summary() {
    let ws = Workspace::new(
        "[tasks.ok]\nrun = \"echo hi; echo '::error::fake'; echo '::endgroup::'\"\n\
         [tasks.\"x::y\"]\nrun = \"exit 2\"\n",
    );
    let summary = ws.path("step-summary.md");
    let out = ws
        .cmd(&["taskrun.toml", "-k"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("::group::=> ok: succeeded"), "{stdout}");
    // The output is shown, never obeyed: commands stop around it, with a token it cannot know.
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| *l == "hi").expect("output shown");
    let token = lines[at - 1]
        .strip_prefix("::stop-commands::")
        .expect("stopped");
    assert!(token.len() >= 32, "{token}");
    assert_eq!(
        lines[at + 1..at + 4],
        ["::error::fake", "::endgroup::", &format!("::{token}::")]
    );
    assert_eq!(lines[at + 4], "::endgroup::");
    // A property holding `:` is escaped, so the title is not cut at the task's `::`.
    assert!(
        stdout.contains("::error title=taskrun%3A task x%3A%3Ay failed::exit code 2"),
        "{stdout}"
    );
    let md = ws.read("step-summary.md");
    assert!(md.contains(r"| <code>x\:\:y</code> | failed | 1 |"), "{md}");

    // `-q`: the failure and the summary line, no table (SPEC §7).
    let out = ws
        .cmd(&["taskrun.toml", "-k", "-q"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout.contains("STATUS"), "{stdout}");
    assert!(!stdout.contains("=> ok"), "{stdout}");
    assert!(
        stdout.contains("::error title=taskrun%3A task x%3A%3Ay"),
        "{stdout}"
    );
    assert!(stdout.contains("failed: 2 tasks, 1 succeeded"), "{stdout}");

    // A usage error is annotated too.
    let out = ws
        .cmd(&["taskrun.toml", "nope"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("::error::"), "{stdout}");
    assert!(stdout.contains("nope"), "{stdout}");
}

#[test]
fn log_format_json_emits_json_lines() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo hi\"\n");
    // `--timings` too: its page's path is a JSON line like the rest.
    let r = ws.run(&["--log-format", "json", "--timings"]);
    r.code(0);
    let mut events = Vec::new();
    let mut page = None;
    for line in r.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        events.push(v["event"].as_str().unwrap_or("").to_string());
        if v["event"] == "timings_written" {
            page = v["timings"].as_str().map(str::to_string);
        }
    }
    let page = page.unwrap_or_else(|| panic!("no timings line: {}", r.stdout));
    assert!(std::path::Path::new(&page).is_file(), "{page}");
    for want in [
        "run_started",
        "task_started",
        "output",
        "task_finished",
        "run_finished",
    ] {
        assert!(
            events.iter().any(|e| e == want),
            "{want} missing from {events:?}"
        );
    }
}

/// `-q` with `--log-format json` (SPEC §7): the failure and the run's end, not every event.
#[test]
fn log_format_json_quiet_keeps_failures_and_the_end() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo hi\"\n[tasks.b]\nrun = \"exit 3\"\n");
    let r = ws.run(&["--log-format", "json", "-q", "-k"]);
    r.code(1);
    let events: Vec<(String, String)> = r
        .stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (field("event"), field("task"))
        })
        .collect();
    assert_eq!(
        events,
        [
            ("task_finished".to_string(), "b".to_string()),
            ("run_finished".to_string(), String::new())
        ],
        "{}",
        r.stdout
    );
}
