//! The cache per instance (SPEC §5, §9 "Cache"): each instance has its own key, so editing one
//! line of `urls.txt` reruns one instance and reordering reruns none; `--force`, `--no-cache`,
//! targets and `-k`; and a fan-out of downloads against a loopback server.

use crate::fault_server::Route;
use crate::served::Http;
use crate::support::{Workspace, entry, statuses, with_status};

/// One instance per line of `urls.txt`, each writing its line to `raw/<name>`.
const LINES: &str = r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo ${item.line} > raw/${item.name}"
outputs = ["raw/${item.name}"]
"#;

const URLS: &str = "http://one/a.csv\nhttp://one/b.csv\nhttp://one/c.csv\nhttp://one/d.csv\n";

fn lines_ws() -> Workspace {
    let ws = Workspace::new(LINES);
    ws.write("urls.txt", URLS);
    std::fs::create_dir_all(ws.path("raw")).unwrap();
    ws
}

const ALL: [&str; 4] = ["get[a.csv]", "get[b.csv]", "get[c.csv]", "get[d.csv]"];

fn all_with(report: &serde_json::Value, status: &str) {
    assert_eq!(with_status(report, status), ALL, "{:?}", statuses(report));
}

#[test]
fn editing_one_line_reruns_exactly_that_instance() {
    let ws = lines_ws();
    let (_, report) = ws.run_report(&[], 0);
    all_with(&report, "succeeded");
    let (_, report) = ws.run_report(&[], 0);
    all_with(&report, "cached");

    ws.write(
        "urls.txt",
        &URLS.replace("http://one/c.csv", "http://two/c.csv"),
    );
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(with_status(&report, "succeeded"), ["get[c.csv]"]);
    assert_eq!(
        with_status(&report, "cached"),
        ["get[a.csv]", "get[b.csv]", "get[d.csv]"]
    );
    assert_eq!(ws.read("raw/c.csv"), "http://two/c.csv\n");
}

#[test]
fn reordering_lines_comments_and_blanks_rerun_nothing() {
    let ws = lines_ws();
    ws.run_report(&[], 0);
    ws.write(
        "urls.txt",
        "# reordered\nhttp://one/d.csv\n\n  http://one/b.csv\nhttp://one/a.csv  \nhttp://one/c.csv\n",
    );
    let (_, report) = ws.run_report(&[], 0);
    all_with(&report, "cached");
}

#[test]
fn neither_the_instance_name_nor_the_item_file_enters_the_key() {
    let ws = lines_ws();
    ws.run_report(&[], 0);
    ws.write("list.txt", URLS);
    ws.manifest(
        &LINES
            .replace("urls.txt", "list.txt")
            .replace("[tasks.get]", "[tasks.get]\nkey = \"k-${item.stem}\""),
    );
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(
        with_status(&report, "cached"),
        ["get[k-a]", "get[k-b]", "get[k-c]", "get[k-d]"],
        "{:?}",
        statuses(&report)
    );
}

#[test]
fn a_new_line_adds_one_instance_and_a_removed_one_is_gone() {
    let ws = lines_ws();
    ws.run_report(&[], 0);
    ws.write(
        "urls.txt",
        "http://one/a.csv\nhttp://one/b.csv\nhttp://one/d.csv\nhttp://one/e.csv\n",
    );
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(with_status(&report, "succeeded"), ["get[e.csv]"]);
    assert_eq!(
        with_status(&report, "cached"),
        ["get[a.csv]", "get[b.csv]", "get[d.csv]"]
    );
    assert_eq!(report["summary"]["total"], 4);
}

#[test]
fn force_runs_every_instance_and_stores_the_results() {
    let ws = lines_ws();
    ws.run_report(&[], 0);
    let (_, report) = ws.run_report(&["--force"], 0);
    all_with(&report, "succeeded");
    let (_, report) = ws.run_report(&[], 0);
    all_with(&report, "cached");
}

#[test]
fn no_cache_runs_every_instance_and_stores_nothing() {
    let ws = lines_ws();
    let (_, report) = ws.run_report(&["--no-cache"], 0);
    all_with(&report, "succeeded");
    let (_, report) = ws.run_report(&["--no-cache"], 0);
    all_with(&report, "succeeded");
    // Nothing was stored: the first cached run still runs everything.
    let (_, report) = ws.run_report(&[], 0);
    all_with(&report, "succeeded");
    let (_, report) = ws.run_report(&["--no-cache"], 0);
    all_with(&report, "succeeded");
    let (_, report) = ws.run_report(&[], 0);
    all_with(&report, "cached");
}

#[test]
fn a_target_runs_only_the_selected_instance() {
    let ws = lines_ws();
    ws.run_report(&[], 0);
    ws.write(
        "urls.txt",
        &URLS
            .replace("one/b.csv", "two/b.csv")
            .replace("one/c.csv", "two/c.csv"),
    );
    let (_, report) = ws.run_report(&["get[b.csv]"], 0);
    assert_eq!(
        statuses(&report),
        [("get[b.csv]".to_string(), "succeeded".to_string())]
    );
    assert_eq!(ws.read("raw/c.csv"), "http://one/c.csv\n", "c was not run");
    let (_, report) = ws.run_report(&["get[b.csv]", "--force"], 0);
    assert_eq!(report["summary"]["total"], 1);
    let (_, report) = ws.run_report(&["get"], 0);
    assert_eq!(with_status(&report, "succeeded"), ["get[c.csv]"]);
    assert_eq!(report["summary"]["cached"], 3);
}

#[test]
fn keep_going_runs_the_other_instances_when_one_fails() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "test ${item.name} != b.csv && echo ${item.line} > raw/${item.name}"
outputs = ["raw/${item.name}"]

[tasks.after]
deps = ["get"]
run = "true"
"#,
    );
    ws.write("urls.txt", URLS);
    std::fs::create_dir_all(ws.path("raw")).unwrap();
    let (_, report) = ws.run_report(&["-k", "-j", "1"], 1);
    assert_eq!(report["status"], "failed");
    assert_eq!(with_status(&report, "failed"), ["get[b.csv]"]);
    assert_eq!(
        with_status(&report, "succeeded"),
        ["get[a.csv]", "get[c.csv]", "get[d.csv]"]
    );
    assert_eq!(with_status(&report, "skipped"), ["after"]);
    assert_eq!(entry(&report, "get[b.csv]")["exit_code"], 1);

    // The successes were cached: the next run retries only the failure.
    let (_, report) = ws.run_report(&["-k"], 1);
    assert_eq!(with_status(&report, "failed"), ["get[b.csv]"]);
    assert_eq!(
        with_status(&report, "cached"),
        ["get[a.csv]", "get[c.csv]", "get[d.csv]"]
    );
}

#[test]
fn fail_fast_cancels_the_instances_not_started() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "test ${item.name} != a.csv"
"#,
    );
    ws.write("urls.txt", URLS);
    let (_, report) = ws.run_report(&["-j", "1"], 1);
    assert_eq!(with_status(&report, "failed"), ["get[a.csv]"]);
    assert_eq!(
        with_status(&report, "cancelled"),
        ["get[b.csv]", "get[c.csv]", "get[d.csv]"]
    );
}

/// A download fan-out: one instance per line, each fetching its URL from the server.
fn downloads(http: &Http, names: &[&str]) -> Workspace {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
download = { url = "${item.line}", dest = "raw/${item.name}" }
retry = 1

[tasks.count]
deps = ["get"]
inputs = ["raw/*.csv"]
run = "cat raw/*.csv | wc -l > count.txt"
outputs = ["count.txt"]
"#,
    );
    let mut list = String::from("# the mirror\n");
    for n in names {
        http.route(&format!("/d/{n}"), Route::ok(format!("{n} v1\n")));
        list.push_str(&http.url(&format!("/d/{n}")));
        list.push('\n');
    }
    ws.write("urls.txt", &list);
    ws
}

#[test]
fn a_download_fanout_fetches_each_line_once_and_then_is_all_cached() {
    let http = Http::start();
    let files = ["a.csv", "b.csv", "c.csv", "d.csv", "e.csv"];
    let ws = downloads(&http, &files);
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["total"], 6);
    for f in files {
        assert_eq!(http.hits(&format!("/d/{f}")), 1, "{f}");
        assert_eq!(ws.read(&format!("raw/{f}")), format!("{f} v1\n"));
        let t = entry(&report, &format!("get[{f}]"));
        assert_eq!(t["status"], "succeeded");
        assert_eq!(t["kind"], "download");
        assert_eq!(t["task"], "get");
        assert_eq!(t["item"]["name"], f);
        assert_eq!(t["bytes"], 9);
    }
    assert_eq!(report["summary"]["bytes_downloaded"], 45);
    assert_eq!(ws.read("count.txt").trim(), "5");

    // Second run: everything cached, not one request.
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["cached"], 6, "{:?}", statuses(&report));
    for f in files {
        assert_eq!(http.hits(&format!("/d/{f}")), 1, "{f} fetched again");
    }
}

#[test]
fn editing_one_url_downloads_exactly_one_file() {
    let http = Http::start();
    let ws = downloads(&http, &["a.csv", "b.csv", "c.csv"]);
    ws.run_report(&[], 0);
    http.route("/e/b.csv", Route::ok("b v2\n"));
    let list = ws.read("urls.txt").replace("/d/b.csv", "/e/b.csv");
    ws.write("urls.txt", &list);
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(with_status(&report, "succeeded"), ["count", "get[b.csv]"]);
    assert_eq!(with_status(&report, "cached"), ["get[a.csv]", "get[c.csv]"]);
    assert_eq!(http.hits("/e/b.csv"), 1);
    assert_eq!(http.hits("/d/a.csv") + http.hits("/d/c.csv"), 2);
    assert_eq!(ws.read("raw/b.csv"), "b v2\n");

    // Reordered: nothing is fetched.
    let mut lines: Vec<&str> = list.lines().collect();
    lines.reverse();
    ws.write("urls.txt", &(lines.join("\n") + "\n"));
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["cached"], 4, "{:?}", statuses(&report));
    assert_eq!(http.hits("/e/b.csv"), 1);
}

#[test]
fn a_download_fanout_with_force_and_no_cache_fetches_every_line() {
    let http = Http::start();
    let files = ["a.csv", "b.csv", "c.csv"];
    let ws = downloads(&http, &files);
    ws.run_report(&["get"], 0);
    let (_, report) = ws.run_report(&["get", "--force"], 0);
    assert_eq!(report["summary"]["succeeded"], 3);
    let (_, report) = ws.run_report(&["get", "--no-cache"], 0);
    assert_eq!(report["summary"]["succeeded"], 3);
    let (_, report) = ws.run_report(&["get[c.csv]", "--force"], 0);
    assert_eq!(report["summary"]["total"], 1);
    assert_eq!(http.hits("/d/a.csv"), 3);
    assert_eq!(http.hits("/d/b.csv"), 3);
    assert_eq!(http.hits("/d/c.csv"), 4);
}

#[test]
fn each_download_instance_has_its_own_retries() {
    use crate::fault_server::Fault;
    let http = Http::start();
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
download = { url = "${item.line}", dest = "raw/${item.name}" }
retry = { max_attempts = 3, initial_delay = "10ms", jitter = "none" }
"#,
    );
    http.route("/a.csv", Route::ok("a"));
    http.route("/b.csv", Route::ok("b").times(2, Fault::Status(503)));
    http.route("/c.csv", Route::ok("c").times(3, Fault::Status(503)));
    ws.write(
        "urls.txt",
        &format!(
            "{}\n{}\n{}\n",
            http.url("/a.csv"),
            http.url("/b.csv"),
            http.url("/c.csv")
        ),
    );
    let (_, report) = ws.run_report(&["-k"], 1);
    let attempts = |n: &str| entry(&report, n)["attempts"].as_array().unwrap().len();
    assert_eq!(attempts("get[a.csv]"), 1);
    assert_eq!(attempts("get[b.csv]"), 3);
    assert_eq!(attempts("get[c.csv]"), 3);
    assert_eq!(entry(&report, "get[b.csv]")["status"], "succeeded");
    assert_eq!(entry(&report, "get[c.csv]")["status"], "failed");
    assert_eq!(http.hits("/c.csv"), 3);
    assert!(!ws.exists("raw/c.csv"), "no partial file at a dest");
    // The next run fetches only the failed instance.
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(with_status(&report, "succeeded"), ["get[c.csv]"]);
    assert_eq!(http.hits("/a.csv") + http.hits("/b.csv"), 4);
}

#[test]
fn a_pool_limits_the_instances_running_at_once() {
    use std::time::Duration;
    let http = Http::start();
    let ws = Workspace::new(
        r#"
[pipeline]
concurrency = 8

[pools]
net = 2

[tasks.get]
for_each = { lines = "urls.txt" }
download = { url = "${item.line}", dest = "raw/${item.name}" }
uses = { net = 1 }
"#,
    );
    let mut list = String::new();
    for i in 0..6 {
        let path = format!("/f{i}.csv");
        // Each answer is held until a third request is in flight (which the pool must
        // prevent) or 300 ms passed: requests overlap, so a broken pool would show three.
        http.route(
            &path,
            Route::ok(format!("{i}")).hold_until(3, 6, Duration::from_millis(300)),
        );
        list.push_str(&http.url(&path));
        list.push('\n');
    }
    ws.write("urls.txt", &list);
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["succeeded"], 6);
    assert_eq!(http.max_in_flight(), 2);
}

#[test]
fn keep_going_skips_only_the_partner_of_a_failed_instance() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "test ${item.name} != b.csv && echo ${item.line} > raw/${item.name}"
outputs = ["raw/${item.name}"]

[tasks.clean]
for_each = { lines = "urls.txt" }
deps = ["get[${item.name}]"]
run = "cp raw/${item.name} clean/${item.name}"
outputs = ["clean/${item.name}"]
"#,
    );
    ws.write("urls.txt", URLS);
    std::fs::create_dir_all(ws.path("raw")).unwrap();
    std::fs::create_dir_all(ws.path("clean")).unwrap();
    let (_, report) = ws.run_report(&["-k"], 1);
    assert_eq!(with_status(&report, "failed"), ["get[b.csv]"]);
    assert_eq!(with_status(&report, "skipped"), ["clean[b.csv]"]);
    assert_eq!(
        with_status(&report, "succeeded"),
        [
            "clean[a.csv]",
            "clean[c.csv]",
            "clean[d.csv]",
            "get[a.csv]",
            "get[c.csv]",
            "get[d.csv]"
        ]
    );
    assert_eq!(report["summary"]["skipped"], 1);
}
