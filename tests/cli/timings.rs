//! The timings page, trace and critical path (SPEC §12) of a real run: a retry, a failure
//! under `-k`, a cache hit, a service and a 200-instance fan-out. The page is opened in
//! headless Chromium when one is on PATH (`.ci/run` installs Debian's); the rendered DOM must
//! hold a bar per attempt and the critical path's tasks marked, with no script error.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Run, Workspace};

fn pipeline(addr: std::net::SocketAddr) -> Workspace {
    let ws = Workspace::new(&format!(
        r#"
[pipeline]
name = "timings"
concurrency = 4

[pools]
io = 2

[tasks.db]
service = {{ run = "exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}

[tasks.flaky]
run = "sleep 0.1; n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; [ $n -ge 2 ]"
retry = {{ max_attempts = 3, initial_delay = "200ms", jitter = "none" }}
cache = "off"

[tasks.broken]
run = "exit 3"

[tasks.built]
run = "echo built > built.txt"
outputs = ["built.txt"]

[tasks.fetch]
for_each = {{ lines = "items.txt" }}
key = "${{item.line}}"
run = "true"
uses = {{ io = 1 }}
cache = "off"

[tasks.test]
deps = ["db", "flaky", "built"]
run = "sleep 0.8"

[tasks.summary]
deps = ["fetch", "test"]
run = "true"
"#
    ));
    let items: Vec<String> = (1..=200).map(|i| format!("item-{i:03}")).collect();
    ws.write("items.txt", &(items.join("\n") + "\n"));
    ws
}

/// The second run of the pipeline (the first one fills the cache for `built`).
fn second_run(ws: &Workspace, extra: &[&str]) -> Run {
    ws.run(&["-k", "-q"]).code(1);
    std::fs::remove_file(ws.path("n")).unwrap();
    let mut args = vec!["-k", "-q"];
    args.extend_from_slice(extra);
    let run = ws.run(&args);
    run.code(1);
    run
}

#[test]
fn timings_trace_and_critical_path_of_a_real_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ws = pipeline(listener.local_addr().unwrap());
    let run = second_run(&ws, &["--timings", "--trace", "trace.json"]);
    let report = ws.last_report();
    let id = report["run_id"].as_str().unwrap();
    let page = ws.path(&format!(".taskrun/runs/{id}.html"));
    assert!(
        run.stdout.contains(&format!("timings: {}", page.display())),
        "{}",
        run.stdout
    );
    // SPEC §12: the summary ends with the critical path of a run over a second.
    let last = run
        .stdout
        .lines()
        .rfind(|l| !l.starts_with("timings:"))
        .unwrap();
    assert!(
        last.starts_with("critical path: flaky ") && last.contains(" → test "),
        "{}",
        run.stdout
    );
    assert_eq!(report["tasks"].as_array().unwrap().len(), 206);
    let t = |n: &str| crate::support::task(&report, n).clone();
    assert_eq!(t("built")["status"], "cached");
    assert_eq!(t("flaky")["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(
        t("test")["deps"],
        serde_json::json!(["db", "flaky", "built"])
    );
    assert!(t("db")["ready_at"].is_string());
    assert_eq!(
        report["pools"],
        serde_json::json!([{"name": "io", "size": 2}])
    );

    let trace: Value = serde_json::from_str(&ws.read("trace.json")).unwrap();
    check_trace(&trace);

    // The stored run renders to the same page.
    let again = ws.path("again.html");
    let out = ws
        .cmd(&[
            "timings",
            "taskrun.toml",
            "latest",
            "-o",
            again.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&page).unwrap()
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("<link"),
        "self-contained"
    );
    browser_check(&report, &page);
}

#[test]
fn timings_of_a_stored_run_by_id_or_path_and_errors() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n");
    ws.run(&["-q"]).code(0);
    let id = ws.last_report()["run_id"].as_str().unwrap().to_string();
    let out = ws.cmd(&["timings", &id]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(ws.path(&format!(".taskrun/runs/{id}.html")).is_file());
    let json = format!(".taskrun/runs/{id}.json");
    let out = ws
        .cmd(&["timings", &json, "-o", "p.html"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && ws.path("p.html").is_file(),
        "{out:?}"
    );
    let out = ws
        .cmd(&["timings", "taskrun.toml", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `nope`"));
    let out = ws
        .cmd(&["timings", "taskrun.toml", "../x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // `-o -`: the page on standard output.
    let out = ws.cmd(&["timings", &id, "-o", "-"]).output().unwrap();
    assert!(
        out.status.success() && out.stdout.starts_with(b"<!DOCTYPE html>"),
        "{out:?}"
    );
    assert!(!ws.exists("-"));

    // A workspace directory names its own runs, never its parent's; a missing manifest is
    // said.
    let child = Workspace::new("[tasks.b]\nrun = \"true\"\n");
    let out = ws
        .cmd(&["timings", child.root().to_str().unwrap(), "latest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no runs there: {out:?}");
    let out = ws
        .cmd(&["timings", "nope.toml", "latest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest nope.toml"));

    // A service whose `ready_at` a foreign report puts before its start: a page, no panic.
    let mut report = ws.last_report();
    report["tasks"][0]["kind"] = "service".into();
    report["tasks"][0]["ready_at"] = "2000-01-01T00:00:00Z".into();
    ws.write("odd.json", &report.to_string());
    let out = ws
        .cmd(&["timings", "odd.json", "-o", "odd.html"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    ws.write(".taskrun/runs/29990101T000000Z-ffff.json", "{ not json");
    let out = ws.cmd(&["timings"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a broken report is an error, not a panic"
    );
}

/// A download queued behind others for the one slot starts when it takes the slot: its
/// duration is its transfer's, not the queue's (as a command's is).
#[test]
fn a_queued_download_starts_when_it_takes_its_slot() {
    use crate::fault_server::Route;
    let http = crate::http::Http::start();
    let mut manifest = String::from("[pipeline]\nconcurrency = 1\n");
    for i in 1..=3 {
        http.route(&format!("/f{i}"), Route::ok(vec![7u8; 4 << 20]));
        manifest.push_str(&format!(
            "[tasks.d{i}]\ndownload = {{ url = \"{}\", dest = \"o/f{i}\" }}\n",
            http.url(&format!("/f{i}"))
        ));
    }
    let ws = Workspace::new(&manifest);
    ws.run(&["-q", "--trace", "t.json"]).code(0);
    let report = ws.last_report();
    let at = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let mut spans: Vec<_> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (at(&t["started_at"]), at(&t["finished_at"])))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "one slot, yet the tasks overlap: {spans:?}"
        );
    }
    let trace: Value = serde_json::from_str(&ws.read("t.json")).unwrap();
    let lanes = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["ph"] == "M"
                && e["args"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("download lane"))
        })
        .count();
    assert_eq!(lanes, 1, "one lane for one slot");
}

/// The Trace Event format's rules: known phases, integer pid/tid, integer µs timestamps,
/// `dur` on complete events, numeric counters, B/E matched per track, named tracks.
fn check_trace(v: &Value) {
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let mut open: std::collections::HashMap<(u64, u64), usize> = Default::default();
    let mut named = std::collections::HashSet::new();
    let mut used = std::collections::HashSet::new();
    let mut attempts = 0;
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        let key = (
            e["pid"].as_u64().expect("integer pid"),
            e["tid"].as_u64().expect("integer tid"),
        );
        assert!(ph == "M" || e["ts"].is_u64(), "µs ts: {e}");
        match ph {
            "X" => {
                assert!(e["dur"].is_u64(), "{e}");
                used.insert(key);
                attempts += usize::from(e["cat"] == "attempt");
            }
            "B" => *open.entry(key).or_default() += 1,
            "E" => {
                let n = open.entry(key).or_default();
                assert!(*n > 0, "E without B: {e}");
                *n -= 1;
            }
            "C" => assert!(
                e["args"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(Value::is_number)
            ),
            "i" => assert!(e["s"].is_string()),
            "M" => {
                if e["name"] == "thread_name" {
                    named.insert(key);
                }
            }
            other => panic!("phase {other}"),
        }
    }
    assert!(open.values().all(|&n| n == 0));
    assert!(used.is_subset(&named), "every track is named");
    // 205 tasks ran one attempt each, flaky two, built none (cached).
    assert_eq!(attempts, 206);
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn browser_check(report: &Value, page: &Path) {
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED the browser check: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/timings-test.png");
    let browse = |extra: &[&str]| {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args([
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1400,1200",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (dom, log) = browse(&["--dump-dom"]);
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Uncaught") || l.contains(":CONSOLE"))
        .collect();
    assert!(errors.is_empty(), "console: {errors:?}");
    assert!(
        dom.contains("data-js=\"ok\""),
        "the page's script ran to its end"
    );
    let attempts: usize = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        dom.matches("class=\"att ").count(),
        attempts,
        "a bar per attempt"
    );
    for name in ["flaky", "test"] {
        assert!(
            dom.contains(&format!("<li data-crit=\"{name}\">")),
            "{name} listed"
        );
        let row = "class=\"row crit\" id=\"";
        assert!(
            dom.split(row)
                .skip(1)
                .any(|r| r.contains(&format!("data-task=\"{name}\" data-crit=\"1\""))),
            "{name} marked in the chart"
        );
    }
    let shot_arg = format!("--screenshot={}", shot.display());
    browse(&[&shot_arg]);
    assert!(shot.is_file(), "screenshot kept at {}", shot.display());
}

/// Manifests of one directory share its `.taskrun/runs`: `timings M latest` and `cache
/// stats M` pick M's newest run, not whichever pipeline ran last there.
#[test]
fn latest_of_a_named_manifest_is_its_own_newest_run() {
    let ws = Workspace::new("[pipeline]\nname = \"first\"\n[tasks.a]\nrun = \"true\"\n");
    ws.write(
        "other.toml",
        "[pipeline]\nname = \"second\"\n[tasks.b]\nrun = \"true\"\n[tasks.c]\nrun = \"true\"\n",
    );
    ws.run(&[]).code(0);
    ws.exec(&["other.toml"]).code(0);
    let page = ws.exec(&["timings", "taskrun.toml", "latest", "-o", "-"]);
    page.code(0);
    assert!(page.stdout.contains("first"), "{}", page.stdout);
    assert!(!page.stdout.contains("second"), "the other pipeline's run");
    let stats = ws.exec(&["cache", "stats", "taskrun.toml"]);
    stats.code(0);
    assert!(stats.stdout.contains("/1 tasks"), "{}", stats.stdout);
    let stats = ws.exec(&["cache", "stats", "other.toml"]);
    assert!(stats.stdout.contains("/2 tasks"), "{}", stats.stdout);
    // A newer report that cannot be read may be this manifest's: passed by with a word.
    ws.write(".taskrun/runs/29990101T000000Z-ffff.json", "{ not json");
    let page = ws.exec(&["timings", "taskrun.toml", "latest", "-o", "-"]);
    page.code(0);
    assert!(
        page.stderr.contains("warning: skipping")
            && page.stderr.contains("29990101T000000Z-ffff.json"),
        "{}",
        page.stderr
    );
}

/// `timings -o` is refused, as `run --report` is, where the page would take the place of
/// the manifest, a task's output or the run report it is drawn from; the run stays
/// readable afterwards.
#[test]
fn timings_o_does_not_overwrite_the_manifest_an_output_or_the_report() {
    let ws = Workspace::new("[tasks.p]\nrun = \"echo x > p.txt\"\noutputs = [\"p.txt\"]\n");
    ws.run(&["--report", "r.json"]).code(0);
    let manifest = ws.read("taskrun.toml");
    for (args, says) in [
        (
            vec!["taskrun.toml", "-o", "taskrun.toml"],
            "it is the manifest itself",
        ),
        (
            vec!["taskrun.toml", "-o", "p.txt"],
            "it is an output of task `p`",
        ),
        (
            vec!["r.json", "-o", "./r.json"],
            "it is the run report the page is drawn from",
        ),
        (
            vec!["taskrun.toml", "-o", ".taskrun/p.html"],
            "it lies in taskrun's state directory",
        ),
        (
            vec!["taskrun.toml", "-o", "p.txt/t.html"],
            "p.txt is not a directory",
        ),
    ] {
        let mut all = vec!["timings"];
        all.extend(args);
        let r = ws.exec(&all);
        r.code(2);
        assert!(r.stderr.contains(says), "{all:?}: {}", r.stderr);
    }
    assert_eq!(ws.read("taskrun.toml"), manifest);
    assert_eq!(ws.read("p.txt"), "x\n");
    assert!(ws.read("r.json").contains("\"run_id\""));
    ws.exec(&["timings", "taskrun.toml", "-o", "page.html"])
        .code(0);
    assert!(ws.read("page.html").contains("<svg"));
}
