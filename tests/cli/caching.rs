//! The content-hash cache through the real binary (issue 5 points 2, 3, 4, 6, 7; SPEC §5):
//! commands count their runs in `runs.log` (outside their outputs) and the server counts
//! requests, so "cached" is checked by what did not happen.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::fault_server::Route;
use crate::http::{Http, files_under, sha};
use crate::support::{Workspace, task};

const RAW: &[u8] = b"raw data from the server\n";

const PIPELINE: &str = r#"
[tasks.fetch]
download = { url = "URL", dest = "data/raw.txt", sha256 = "SHA" }

[tasks.prep]
inputs = ["src/prep.txt"]
outputs = ["out/prep.txt"]
run = "echo prep >> runs.log; mkdir -p out; cp src/prep.txt out/prep.txt"

[tasks.merge]
deps = ["fetch", "prep"]
outputs = ["out/merged.txt"]
run = "echo merge >> runs.log; cat data/raw.txt out/prep.txt > out/merged.txt"

[tasks.side]
inputs = ["src/side.txt"]
outputs = ["out/side.txt"]
run = "echo side >> runs.log; mkdir -p out; cp src/side.txt out/side.txt"
"#;

fn pipeline(http: &Http) -> Workspace {
    http.route("/raw.txt", Route::ok(RAW.to_vec()));
    let ws = Workspace::new(
        &PIPELINE
            .replace("URL", &http.url("/raw.txt"))
            .replace("SHA", &sha(RAW)),
    );
    ws.write("src/prep.txt", "prep v1\n");
    ws.write("src/side.txt", "side v1\n");
    ws
}

/// The commands that ran, in order, over all runs so far.
fn ran(ws: &Workspace) -> Vec<String> {
    std::fs::read_to_string(ws.path("runs.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn want(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

/// Action records and blobs in the workspace's cache, with their contents.
fn store(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    files_under(ws.root())
        .into_iter()
        .filter(|f| f.starts_with(".taskrun/cache/ac/") || f.starts_with(".taskrun/cache/cas/"))
        .map(|f| {
            let bytes = std::fs::read(ws.path(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn action_records(ws: &Workspace) -> usize {
    store(ws)
        .keys()
        .filter(|f| f.starts_with(".taskrun/cache/ac/"))
        .count()
}

#[test]
fn an_unchanged_pipeline_reruns_nothing_and_makes_no_request() {
    let http = Http::start();
    let ws = pipeline(&http);
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[
            ("fetch", "succeeded"),
            ("prep", "succeeded"),
            ("merge", "succeeded"),
            ("side", "succeeded")
        ])
    );
    assert_eq!(ran(&ws).len(), 3);
    assert_eq!(http.hits("/raw.txt"), 1);
    assert_eq!(
        ws.read("out/merged.txt"),
        "raw data from the server\nprep v1\n"
    );

    ws.run(&[]).code(0);
    let report = ws.last_report();
    assert_eq!(
        statuses(&report),
        want(&[
            ("fetch", "cached"),
            ("prep", "cached"),
            ("merge", "cached"),
            ("side", "cached")
        ])
    );
    for name in ["fetch", "prep", "merge", "side"] {
        let t = task(&report, name);
        assert_eq!(t["cache_hit"], true, "{t:#}");
        assert_eq!(t["cache_source"], "local", "{t:#}");
        assert!(t["attempts"].as_array().unwrap().is_empty(), "{t:#}");
    }
    assert_eq!(report["summary"]["cached"], 4);
    assert_eq!(report["summary"]["bytes_downloaded"], 0);
    assert_eq!(ran(&ws).len(), 3, "a command ran again: {:?}", ran(&ws));
    assert_eq!(
        http.hits("/raw.txt"),
        1,
        "a pinned, cached download made a request"
    );
}

#[test]
fn a_pinned_download_in_the_cache_needs_no_server_even_when_its_file_is_gone() {
    let http = Http::start();
    let ws = pipeline(&http);
    ws.run(&["fetch"]).code(0);
    std::fs::remove_file(ws.path("data/raw.txt")).unwrap();
    ws.run(&["fetch"]).code(0);
    assert_eq!(task(&ws.last_report(), "fetch")["status"], "cached");
    assert_eq!(std::fs::read(ws.path("data/raw.txt")).unwrap(), RAW);
    assert_eq!(http.hits("/raw.txt"), 1);

    // Content-addressed by the pin: another URL and another dest with the same sha256 are
    // served from the store too.
    ws.write(
        "taskrun.toml",
        &format!(
            "[tasks.fetch]\ndownload = {{ url = \"{}\", dest = \"data/raw.txt\", sha256 = \"{sha}\" }}\n\n\
             [tasks.copy]\ndownload = {{ url = \"{}\", dest = \"data/copy.txt\", sha256 = \"{sha}\" }}\n",
            http.url("/moved/raw.txt"),
            http.url("/elsewhere.txt"),
            sha = sha(RAW),
        ),
    );
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[("fetch", "cached"), ("copy", "cached")])
    );
    assert_eq!(std::fs::read(ws.path("data/copy.txt")).unwrap(), RAW);
    assert_eq!(http.hits("/moved/raw.txt"), 0);
    assert_eq!(http.hits("/elsewhere.txt"), 0);
}

#[test]
fn editing_one_input_reruns_exactly_the_tasks_whose_keys_changed() {
    let http = Http::start();
    let ws = pipeline(&http);
    ws.run(&[]).code(0);
    assert_eq!(ran(&ws).len(), 3);

    ws.write("src/side.txt", "side v2\n");
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[
            ("fetch", "cached"),
            ("prep", "cached"),
            ("merge", "cached"),
            ("side", "succeeded")
        ])
    );
    assert_eq!(ran(&ws)[3..], ["side"]);
    assert_eq!(ws.read("out/side.txt"), "side v2\n");

    ws.write("src/prep.txt", "prep v2\n");
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[
            ("fetch", "cached"),
            ("prep", "succeeded"),
            ("merge", "succeeded"),
            ("side", "cached")
        ])
    );
    assert_eq!(ran(&ws)[4..], ["prep", "merge"]);
    assert_eq!(
        ws.read("out/merged.txt"),
        "raw data from the server\nprep v2\n"
    );
    assert_eq!(http.hits("/raw.txt"), 1);

    // Back to v1: both versions are in the store, so everything is a hit again.
    ws.write("src/prep.txt", "prep v1\n");
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()).values().collect::<Vec<_>>(),
        ["cached"; 4]
    );
    assert_eq!(ran(&ws).len(), 6);
    assert_eq!(
        ws.read("out/merged.txt"),
        "raw data from the server\nprep v1\n"
    );
}

#[test]
fn a_dependency_with_byte_identical_outputs_leaves_its_dependents_cached() {
    let ws = Workspace::new(
        r#"
[tasks.a]
inputs = ["a.in"]
outputs = ["a.out"]
run = "echo a >> runs.log; head -c 1 a.in > a.out"

[tasks.b]
deps = ["a"]
outputs = ["b.out"]
run = "echo b >> runs.log; cat a.out a.out > b.out"

[tasks.c]
deps = ["b"]
outputs = ["c.out"]
run = "echo c >> runs.log; cat b.out b.out > c.out"
"#,
    );
    ws.write("a.in", "xyz\n");
    ws.run(&[]).code(0);
    assert_eq!(ran(&ws), ["a", "b", "c"]);

    // The first byte stays "x": a's output is unchanged.
    ws.write("a.in", "x but the rest differs\n");
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[("a", "succeeded"), ("b", "cached"), ("c", "cached")])
    );
    assert_eq!(ran(&ws), ["a", "b", "c", "a"]);
    assert_eq!(ws.read("c.out"), "xxxx");

    // Now it changes, and so does everything downstream.
    ws.write("a.in", "y\n");
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")])
    );
    assert_eq!(ws.read("c.out"), "yyyy");
}

#[test]
fn deleted_or_modified_outputs_are_restored_without_running_keeping_the_mode() {
    let ws = Workspace::new(
        r#"
[tasks.tool]
outputs = ["bin/tool"]
run = "echo tool >> runs.log; mkdir -p bin; printf '#!/bin/sh\\necho hi\\n' > bin/tool; chmod 755 bin/tool"

[tasks.gen]
outputs = ["gen"]
run = "echo gen >> runs.log; mkdir -p gen/sub; echo one > gen/one.txt; echo two > gen/sub/two.txt"
"#,
    );
    ws.run(&[]).code(0);
    assert_eq!(ran(&ws).len(), 2);
    let tool = ws.path("bin/tool");
    let original = std::fs::read(&tool).unwrap();
    assert_eq!(original, b"#!/bin/sh\necho hi\n");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tool), 0o755);

    // Deleted.
    std::fs::remove_file(&tool).unwrap();
    std::fs::remove_file(ws.path("gen/sub/two.txt")).unwrap();
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[("tool", "cached"), ("gen", "cached")])
    );
    assert_eq!(ran(&ws).len(), 2, "restoring ran a command");
    assert_eq!(std::fs::read(&tool).unwrap(), original);
    assert_eq!(mode(&tool), 0o755, "the executable bit was lost");
    assert_eq!(ws.read("gen/sub/two.txt"), "two\n");
    assert_eq!(ws.read("gen/one.txt"), "one\n");

    // Modified (same length, then different length), and its mode changed.
    std::fs::write(&tool, b"#!/bin/sh\necho HI\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
    ws.write("gen/one.txt", "tampered with\n");
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[("tool", "cached"), ("gen", "cached")])
    );
    assert_eq!(ran(&ws).len(), 2);
    assert_eq!(std::fs::read(&tool).unwrap(), original);
    assert_eq!(mode(&tool), 0o755);
    assert_eq!(ws.read("gen/one.txt"), "one\n");
    let out = std::process::Command::new(&tool).output().unwrap();
    assert_eq!(out.stdout, b"hi\n");
}

#[test]
fn a_failed_task_leaves_no_cache_entry() {
    let ws = Workspace::new(
        r#"
[tasks.flaky]
outputs = ["f.out"]
run = "echo flaky >> runs.log; echo partial > f.out; test -e ok.flag"
"#,
    );
    ws.run(&[]).code(1);
    assert_eq!(task(&ws.last_report(), "flaky")["status"], "failed");
    assert!(store(&ws).is_empty(), "{:?}", store(&ws).keys());
    assert!(
        !ws.path("f.out").exists(),
        "a failed command's output is deleted"
    );

    ws.run(&[]).code(1);
    assert_eq!(ran(&ws).len(), 2, "the failure was cached");

    // ok.flag is no input: same key, and it was never stored, so the task runs.
    ws.write("ok.flag", "");
    ws.run(&[]).code(0);
    assert_eq!(task(&ws.last_report(), "flaky")["status"], "succeeded");
    assert_eq!(ran(&ws).len(), 3);
    assert_eq!(action_records(&ws), 1);
    ws.run(&[]).code(0);
    assert_eq!(task(&ws.last_report(), "flaky")["status"], "cached");
}

#[test]
fn force_runs_everything_again_and_stores_the_result() {
    let http = Http::start();
    let ws = pipeline(&http);
    ws.run(&[]).code(0);
    ws.run(&["--force"]).code(0);
    let report = ws.last_report();
    assert_eq!(
        statuses(&report).values().collect::<Vec<_>>(),
        ["succeeded"; 4]
    );
    assert_eq!(ran(&ws).len(), 6);
    assert_eq!(http.hits("/raw.txt"), 2, "--force downloads again");
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["cache_hit"], false, "{t:#}");
    }
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()).values().collect::<Vec<_>>(),
        ["cached"; 4]
    );
    assert_eq!(ran(&ws).len(), 6);
}

#[test]
fn no_cache_neither_reads_nor_writes_the_store() {
    let http = Http::start();
    let ws = pipeline(&http);
    ws.run(&["--no-cache"]).code(0);
    assert!(store(&ws).is_empty(), "{:?}", store(&ws).keys());
    assert_eq!(ran(&ws).len(), 3);

    // Nothing was written, so a normal run misses everywhere, then fills the store.
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()).values().collect::<Vec<_>>(),
        ["succeeded"; 4]
    );
    assert_eq!(ran(&ws).len(), 6);
    assert_eq!(http.hits("/raw.txt"), 2);
    let before = store(&ws);
    assert!(!before.is_empty());

    // A warm store is not read either, nor changed (no "last used" update, no new entry).
    ws.run(&["--no-cache"]).code(0);
    let report = ws.last_report();
    assert_eq!(
        statuses(&report).values().collect::<Vec<_>>(),
        ["succeeded"; 4]
    );
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["cache_hit"], false, "{t:#}");
    }
    assert_eq!(ran(&ws).len(), 9);
    assert_eq!(
        http.hits("/raw.txt"),
        3,
        "--no-cache must not use the pinned blob"
    );
    assert!(store(&ws) == before, "--no-cache changed the store");
}

#[test]
fn plan_names_the_changed_input_and_the_dependents_it_affects() {
    let http = Http::start();
    let ws = pipeline(&http);
    ws.run(&[]).code(0);
    let before = files_under(ws.root());
    ws.write("src/prep.txt", "prep v2\n");

    let plan = crate::support::Run::from(ws.cmd(&["plan", "taskrun.toml"]).output().unwrap());
    plan.code(0);
    assert!(
        plan.stdout.contains("input src/prep.txt changed"),
        "{}",
        plan.stdout
    );

    let json = crate::support::Run::from(
        ws.cmd(&["plan", "taskrun.toml", "--format", "json"])
            .output()
            .unwrap(),
    );
    json.code(0);
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    let tasks = plan["tasks"].as_array().unwrap();
    let get = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap().clone();
    let text = |v: &Value| v.to_string();
    assert!(
        text(&get("prep")).contains("input src/prep.txt changed"),
        "{:#}",
        get("prep")
    );
    assert!(text(&get("prep")).contains("\"miss\""), "{:#}", get("prep"));
    assert!(
        text(&get("merge")).contains("\"miss\""),
        "{:#}",
        get("merge")
    );
    assert!(text(&get("side")).contains("\"hit\""), "{:#}", get("side"));
    assert!(
        text(&get("fetch")).contains("\"hit\""),
        "{:#}",
        get("fetch")
    );

    // plan ran nothing and wrote nothing.
    assert_eq!(ran(&ws).len(), 3);
    assert_eq!(http.hits("/raw.txt"), 1);
    assert_eq!(files_under(ws.root()), before);
}

/// Many cached lookups finishing together, then dependents waiting on all of them: the lookup
/// threads batch their results, and a batch must never wait for work only it can release.
#[test]
fn a_wide_no_op_rerun_with_fan_in_finishes_and_runs_nothing() {
    let mut m = String::new();
    let mut names = Vec::new();
    for i in 0..200 {
        m.push_str(&format!(
            "[tasks.t{i}]\ninputs = [\"in/{i}.txt\"]\noutputs = [\"out/{i}.txt\"]\nrun = \"mkdir -p out && cp in/{i}.txt out/{i}.txt\"\n\n"
        ));
        names.push(format!("\"t{i}\""));
    }
    for j in 0..10 {
        m.push_str(&format!(
            "[tasks.join{j}]\ndeps = [{}]\noutputs = [\"join/{j}.txt\"]\nrun = \"mkdir -p join && echo {j} > join/{j}.txt\"\n\n",
            names.join(", ")
        ));
    }
    let ws = Workspace::new(&m);
    for i in 0..200 {
        ws.write(&format!("in/{i}.txt"), &format!("{i}\n"));
    }
    ws.run(&[]).code(0);
    for round in 0..3 {
        let out = assert_cmd::Command::from_std(ws.cmd(&["taskrun.toml"]))
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "round {round}: {out:?}");
        let s = &ws.last_report()["summary"];
        assert_eq!(s["cached"], 210, "round {round}: {s}");
    }
}

/// An unpinned download is hashed once, while it streams: the cache stores the blob under that
/// digest (which must be the content's), and a deleted file comes back from it with no request.
#[test]
fn an_unpinned_download_is_stored_under_its_content_digest_and_restored() {
    let http = Http::start();
    let small = b"a small file\n".to_vec();
    let large: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    http.route("/small", Route::ok(small.clone()));
    http.route("/large", Route::ok(large.clone()));
    let ws = Workspace::new(&format!(
        "[tasks.small]\ndownload = {{ url = \"{}\", dest = \"small\" }}\n\n\
         [tasks.large]\ndownload = {{ url = \"{}\", dest = \"large\" }}\n",
        http.url("/small"),
        http.url("/large"),
    ));
    ws.run(&[]).code(0);
    let blobs = store(&ws);
    for data in [&small, &large] {
        let blob = format!(".taskrun/cache/cas/{}/{}", &sha(data)[..2], sha(data));
        assert_eq!(blobs.get(&blob), Some(data), "no blob {blob}");
    }
    std::fs::remove_file(ws.path("small")).unwrap();
    std::fs::remove_file(ws.path("large")).unwrap();
    ws.run(&[]).code(0);
    assert_eq!(
        statuses(&ws.last_report()),
        want(&[("small", "cached"), ("large", "cached")])
    );
    assert_eq!(std::fs::read(ws.path("small")).unwrap(), small);
    assert_eq!(std::fs::read(ws.path("large")).unwrap(), large);
    assert_eq!(http.hits("/small") + http.hits("/large"), 2);
}

/// Issue 14 bug 4: `cache gc --max-size` evicts the least recently used entry, also when
/// every entry was used within the same hour (a record's own `last_used` moves hourly).
#[test]
fn gc_max_size_evicts_the_least_recently_used_within_the_hour() {
    let ws = Workspace::new(
        r#"
[tasks.a]
outputs = ["a.bin"]
run = "head -c 100000 /dev/zero | tr '\\0' a > a.bin"

[tasks.b]
outputs = ["b.bin"]
run = "head -c 100000 /dev/zero | tr '\\0' b > b.bin"
"#,
    );
    let gc = || {
        let out = ws
            .cmd(&["cache", "gc", "taskrun.toml", "--max-size", "150KiB"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let status = |report: &Value, name: &str| task(report, name)["status"].clone();
    // a made first, then b, then a used again: b is the least recently used.
    for target in ["a", "b", "a"] {
        ws.run(&[target]).code(0);
    }
    gc();
    ws.run(&[]).code(0);
    let report = ws.last_report();
    assert_eq!(
        status(&report, "a"),
        "cached",
        "the latest used was evicted"
    );
    assert_eq!(status(&report, "b"), "succeeded");
    // That run used both; now a, then b: a is the least recently used.
    for target in ["a", "b"] {
        ws.run(&[target]).code(0);
        assert_eq!(status(&ws.last_report(), target), "cached");
    }
    gc();
    ws.run(&[]).code(0);
    let report = ws.last_report();
    assert_eq!(
        status(&report, "b"),
        "cached",
        "the latest used was evicted"
    );
    assert_eq!(status(&report, "a"), "succeeded");
}
