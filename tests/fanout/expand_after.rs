//! A fan-out over items that another task produces (SPEC §9 "What is read when", issue 12
//! point 4): `plan` shows it as `clean[*] (expanded after unpack)`; `run` runs the producer,
//! reads the items as they are then, and runs each instance, with the cache per instance,
//! `--force`, `--no-cache`, targets, `-k`, `--locked` and the lockfile, through the binary.

use crate::fault_server::Route;
use crate::served::Http;
use crate::support::{Workspace, entry, statuses, with_status};

/// `unpack` copies `src/*.csv` into `unpacked/`; `clean` runs once per unpacked file;
/// `report` joins the cleaned files. Each task appends its name to `runs.log`.
const UNPACK: &str = r#"
[tasks.unpack]
inputs = ["src/*.csv"]
outputs = ["unpacked"]
run = "rm -rf unpacked && mkdir -p unpacked && cp src/*.csv unpacked/ && echo unpack >> runs.log"

[tasks.clean]
deps = ["unpack"]
for_each = { glob = "unpacked/*.csv" }
outputs = ["clean/${item.stem}.txt"]
run = "mkdir -p clean && tr , ' ' < ${item.path} > clean/${item.stem}.txt && echo clean-${item.stem} >> runs.log"

[tasks.report]
deps = ["clean"]
inputs = ["clean/*.txt"]
outputs = ["report.txt"]
run = "cat clean/*.txt > report.txt && echo report >> runs.log"
"#;

pub fn unpack_workspace() -> Workspace {
    let ws = Workspace::new(UNPACK);
    ws.write("src/a.csv", "a,1\n").write("src/b.csv", "b,2\n");
    ws
}

/// What ran since the log was last emptied, sorted (instances run in any order).
pub fn ran(ws: &Workspace) -> Vec<String> {
    let text = if ws.exists("runs.log") {
        ws.read("runs.log")
    } else {
        String::new()
    };
    ws.write("runs.log", "");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn run_expands_after_the_producer_and_the_cache_is_per_instance() {
    let ws = unpack_workspace();
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(
        statuses(&report),
        [
            ("clean[a.csv]", "succeeded"),
            ("clean[b.csv]", "succeeded"),
            ("report", "succeeded"),
            ("unpack", "succeeded"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let a = entry(&report, "clean[a.csv]");
    assert_eq!(a["task"], "clean");
    assert_eq!(a["item"]["path"], "unpacked/a.csv");
    assert_eq!(report["summary"]["total"], 4);
    assert_eq!(ws.read("report.txt"), "a 1\nb 2\n");
    assert_eq!(ran(&ws), ["clean-a", "clean-b", "report", "unpack"]);

    // Nothing changed: everything is cached, nothing runs.
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(with_status(&report, "cached").len(), 4);
    assert!(ran(&ws).is_empty());

    // One new file: the producer, that one instance and the report run; the others are
    // cached although the producer's output changed as a whole.
    ws.write("src/c.csv", "c,3\n");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(
        with_status(&report, "succeeded"),
        ["clean[c.csv]", "report", "unpack"]
    );
    assert_eq!(ran(&ws), ["clean-c", "report", "unpack"]);
    assert_eq!(ws.read("report.txt"), "a 1\nb 2\nc 3\n");

    // One file edited: its instance reruns (the matched file is in its key).
    ws.write("src/a.csv", "a,9\n");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(
        with_status(&report, "succeeded"),
        ["clean[a.csv]", "report", "unpack"]
    );
    assert_eq!(ws.read("clean/a.txt"), "a 9\n");
    assert_eq!(ran(&ws), ["clean-a", "report", "unpack"]);

    // A file gone: its instance is gone too (its old output stays, as with make).
    std::fs::remove_file(ws.path("src/b.csv")).unwrap();
    let (_, report) = ws.run_report(&[], 0);
    let names: Vec<String> = statuses(&report).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["clean[a.csv]", "clean[c.csv]", "report", "unpack"]);
    assert_eq!(ran(&ws), ["report", "unpack"]);
}

#[test]
fn force_and_no_cache_run_the_producer_once_and_every_instance() {
    let ws = unpack_workspace();
    ws.run(&["-q"]).code(0);
    ran(&ws);
    for flag in ["--force", "--no-cache"] {
        let (_, report) = ws.run_report(&[flag], 0);
        assert_eq!(with_status(&report, "succeeded").len(), 4, "{flag}");
        assert_eq!(
            ran(&ws),
            ["clean-a", "clean-b", "report", "unpack"],
            "{flag}: the producer runs once"
        );
    }
}

#[test]
fn targets_select_the_fanout_or_one_instance_of_it() {
    let ws = unpack_workspace();
    let (_, report) = ws.run_report(&["clean"], 0);
    assert_eq!(
        statuses(&report).len(),
        3,
        "unpack and both instances, no report"
    );
    assert_eq!(ran(&ws), ["clean-a", "clean-b", "unpack"]);

    let (_, report) = ws.run_report(&["clean[b.csv]", "--force"], 0);
    let names: Vec<String> = statuses(&report).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["clean[b.csv]", "unpack"]);
    assert_eq!(ran(&ws), ["clean-b", "unpack"]);

    // An instance that the items do not have: the stand-in fails with the did-you-mean, and
    // the exit code is an unknown TARGET's (the producer ran: the run is reported).
    let r = ws.run(&["clean[z.csv]"]);
    r.code(2).says(&["clean[z.csv]"]);
    assert_eq!(ws.last_report()["status"], "failed");
}

#[test]
fn a_failed_producer_skips_the_stand_in_and_keep_going_expands_the_rest() {
    let ws = Workspace::new(&format!(
        "{UNPACK}\n[tasks.broken]\nrun = \"exit 3\"\n\n[tasks.late]\ndeps = [\"gen\"]\nfor_each = {{ lines = \"gen/list.txt\" }}\nrun = \"echo ${{item.line}} >> runs.log\"\n\n[tasks.gen]\ndeps = [\"broken\"]\noutputs = [\"gen/list.txt\"]\nrun = \"mkdir -p gen && echo x > gen/list.txt\"\n"
    ));
    ws.write("src/a.csv", "a,1\n");
    // Fail-fast: nothing new starts after the failure; the stand-ins never expand.
    let (_, report) = ws.run_report(&["-j1"], 1);
    assert_eq!(entry(&report, "broken")["status"], "failed");
    assert_eq!(entry(&report, "late[*]")["status"], "skipped");
    assert!(!ran(&ws).iter().any(|l| l.starts_with("clean-")));

    // Keep going: `clean` expands after `unpack`; `late` stays skipped behind `broken`.
    let (_, report) = ws.run_report(&["-k"], 1);
    assert_eq!(entry(&report, "clean[a.csv]")["status"], "succeeded");
    assert_eq!(entry(&report, "report")["status"], "succeeded");
    assert_eq!(entry(&report, "gen")["status"], "skipped");
    assert_eq!(entry(&report, "late[*]")["status"], "skipped");
}

#[test]
fn items_that_turn_out_invalid_fail_the_stand_in_with_their_place() {
    let ws = Workspace::new(
        r#"
[tasks.list]
outputs = ["gen/list.txt"]
run = "mkdir -p gen && printf 'x\ny\nx\n' > gen/list.txt"

[tasks.each]
deps = ["list"]
for_each = { lines = "gen/list.txt" }
run = "echo ${item.line}"
"#,
    );
    ws.check().code(0);
    let (r, report) = ws.run_report(&[], 1);
    r.says(&["gen/list.txt:1", "gen/list.txt:3", "taskrun.toml:6:"]);
    assert_eq!(entry(&report, "list")["status"], "succeeded");
    let each = entry(&report, "each[*]");
    assert_eq!(each["status"], "failed");
    assert!(
        each["error"].as_str().unwrap().contains("the key `x`"),
        "{each}"
    );
    // Keep going: the failed expansion is not tried again (said once, no more phases).
    let (r, report) = ws.run_report(&["-k"], 1);
    assert_eq!(
        r.stderr.matches("have the key `x`").count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(entry(&report, "each[*]")["status"], "failed");
}

#[test]
fn one_fanouts_invalid_items_fail_only_it_and_keep_going_expands_the_others() {
    let ws = Workspace::new(
        r#"
[tasks.list]
outputs = ["gen/list.txt", "gen/other.txt"]
run = "mkdir -p gen && printf 'x\ny\nx\n' > gen/list.txt && printf 'p\nq\n' > gen/other.txt"

[tasks.each]
deps = ["list"]
for_each = { lines = "gen/list.txt" }
run = "echo ${item.line}"

[tasks.fine]
deps = ["list"]
for_each = { lines = "gen/other.txt" }
outputs = ["out/${item.line}"]
run = "mkdir -p out && echo ${item.line} > out/${item.line}"

[tasks.then]
deps = ["fine"]
for_each = { glob = "out/*" }
run = "echo then ${item.name}"
"#,
    );
    let (r, report) = ws.run_report(&["-k"], 1);
    assert_eq!(entry(&report, "each[*]")["status"], "failed");
    for ok in ["fine[p]", "fine[q]", "then[p]", "then[q]"] {
        assert_eq!(entry(&report, ok)["status"], "succeeded", "{ok}");
    }
    assert_eq!(
        r.stderr.matches("have the key `x`").count(),
        1,
        "{}",
        r.stderr
    );
    // Fail-fast: the failure stops the run; the others' instances never start.
    let (_, report) = ws.run_report(&["--force"], 1);
    assert_eq!(entry(&report, "each[*]")["status"], "failed");
    assert_eq!(entry(&report, "fine[p]")["status"], "cancelled");
}

/// Downloads listed in a file that a download fetches: `--locked` cannot see them before
/// the list is there, so it refuses once they are known, before any of them runs; a run pins
/// them; `lock` keeps their entries and `lock --check` passes.
#[test]
fn downloads_of_a_produced_list_are_pinned_and_checked_by_locked() {
    let http = Http::start();
    http.route(
        "/list.txt",
        Route::ok(format!("{}\n{}\n", http.url("/a.csv"), http.url("/b.csv"))),
    );
    http.route("/a.csv", Route::ok("a"));
    http.route("/b.csv", Route::ok("b"));
    let ws = Workspace::new(&format!(
        r#"
[tasks.list]
download = {{ url = "{}", dest = "list.txt", sha256 = "{}" }}

[tasks.get]
deps = ["list"]
for_each = {{ lines = "list.txt" }}
download = {{ url = "${{item.line}}", dest = "raw/${{item.name}}" }}
"#,
        http.url("/list.txt"),
        sha256_hex(format!("{}\n{}\n", http.url("/a.csv"), http.url("/b.csv")).as_bytes()),
    ));
    ws.plan_text(&["--locked"])
        .code(0)
        .says(&["get[*] (expanded after list)"]);
    let r = ws.run(&["--locked"]);
    r.code(2)
        .says(&["--locked", "get[a.csv]: no entry", "get[b.csv]: no entry"]);
    assert_eq!(http.hits("/list.txt"), 1);
    assert_eq!(
        http.hits("/a.csv") + http.hits("/b.csv"),
        0,
        "no instance ran"
    );

    // Keep going changes nothing: refused once.
    let r = ws.run(&["--locked", "-k"]);
    r.code(2);
    assert_eq!(r.stderr.matches("does not pin").count(), 1, "{}", r.stderr);

    ws.run(&[])
        .code(0)
        .says(&["pinned 2 new downloads in taskrun.lock"]);
    let lock = ws.read("taskrun.lock");
    assert!(lock.contains("task = \"get[a.csv]\""), "{lock}");
    assert!(lock.contains("task = \"get[b.csv]\""), "{lock}");

    let (_, report) = ws.run_report(&["--locked"], 0);
    assert_eq!(with_status(&report, "cached").len(), 3);
    assert_eq!(
        http.hits("/a.csv") + http.hits("/b.csv"),
        2,
        "no new request"
    );

    // `lock` reads the list as it is now (the run left it): current, nothing to do.
    ws.exec(&["lock", "taskrun.toml", "--check"])
        .code(0)
        .says(&["taskrun.lock is current"]);
    ws.exec(&["lock", "taskrun.toml"]).code(0);
    assert_eq!(ws.read("taskrun.lock"), lock, "entries kept");
    // Without the list, `lock` cannot know the downloads: it says so and keeps their
    // entries; with it back, `lock` pins them from scratch.
    std::fs::rename(ws.path("list.txt"), ws.path("list.away")).unwrap();
    ws.exec(&["lock", "taskrun.toml", "--check"])
        .code(0)
        .says(&["known only once list has run"]);
    ws.exec(&["lock", "taskrun.toml"]).code(0);
    assert_eq!(ws.read("taskrun.lock"), lock, "entries kept");
    std::fs::rename(ws.path("list.away"), ws.path("list.txt")).unwrap();
    std::fs::remove_file(ws.path("taskrun.lock")).unwrap();
    ws.exec(&["lock", "taskrun.toml"])
        .code(0)
        .says(&["get[a.csv]", "get[b.csv]"]);
    assert_eq!(ws.read("taskrun.lock"), lock, "the same pins again");

    // Tampered content behind a pin from the lockfile fails with the mismatch.
    http.route("/b.csv", Route::ok("evil"));
    let r = ws.run(&["--force"]);
    r.code(1).says(&["get[b.csv]", "sha256"]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ctrl-C while the expanded instances run: exit 130, one report for the whole run with the
/// producer's result and the instances cancelled; a run after it finishes the job.
#[test]
fn an_interrupt_after_the_expansion_stops_the_run_with_one_report() {
    let ws = Workspace::new(
        r#"
[tasks.unpack]
outputs = ["unpacked"]
run = "mkdir -p unpacked && echo 1 > unpacked/a.csv"

[tasks.slow]
deps = ["unpack"]
for_each = { glob = "unpacked/*.csv" }
run = "if [ ! -e go ]; then echo $$ > slow.pid; sleep 60; fi"
"#,
    );
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(ws.path("slow.pid")).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "the instance never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let report = ws.last_report();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(entry(&report, "unpack")["status"], "succeeded");
    assert_eq!(entry(&report, "slow[a.csv]")["status"], "cancelled");
    assert_eq!(ws.report_count(), 1, "one run, one report");

    ws.write("go", "");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(entry(&report, "unpack")["status"], "cached");
    assert_eq!(entry(&report, "slow[a.csv]")["status"], "succeeded");
}

/// A fan-out over the outputs of another that is expanded later waits for it in turn: three
/// phases, one run; `list` and `explain` know both tasks; the JSON log says the run grew.
#[test]
fn a_chain_of_expansions_runs_in_one_run_and_list_and_explain_know_it() {
    let ws = Workspace::new(&format!(
        "{UNPACK}\n[tasks.stats]\ndeps = [\"clean\"]\nfor_each = {{ glob = \"clean/*.txt\" }}\noutputs = [\"stats/${{item.stem}}.n\"]\nrun = \"mkdir -p stats && wc -c < ${{item.path}} > stats/${{item.stem}}.n\"\n"
    ));
    ws.write("src/a.csv", "a,1\n").write("src/b.csv", "b,22\n");
    ws.plan_text(&[])
        .code(0)
        .says(&["stats[*] (expanded after clean)", "after: clean[*]"]);
    ws.exec(&["list", "taskrun.toml"]).code(0).says(&[
        "clean[*]  command   expanded after unpack",
        "stats[*]  command   expanded after clean",
    ]);
    let r = ws.exec(&["taskrun.toml", "--log-format", "json"]);
    r.code(0);
    assert_eq!(
        r.stdout.matches("\"run_started\"").count(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("\"run_expanded\"").count(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(ws.read("stats/b.n").trim(), "5");
    let report = ws.last_report();
    assert_eq!(report["summary"]["total"], 6);
    assert_eq!(with_status(&report, "succeeded").len(), 6);

    // `explain` reads the items as they are now; the producer is not in the key.
    let e = ws.exec(&["explain", "taskrun.toml", "stats[a.txt]"]);
    e.code(0).says(&["stats[a.txt]: hit", "input clean/a.txt"]);
    assert!(!e.stdout.contains("dep clean"), "{}", e.stdout);
    ws.exec(&["explain", "taskrun.toml", "clean"])
        .code(2)
        .says(&["explain one of them", "clean[a.csv]"]);
}

/// A service that the producer and the instances both use is stopped when the producer is
/// done (the parked stand-in does not hold it up) and started again for the instances.
#[test]
fn a_service_the_instances_need_is_up_again_for_them() {
    let http = Http::start();
    http.route("/list.txt", Route::ok(format!("{}\n", http.url("/a.csv"))));
    http.route("/a.csv", Route::ok("a"));
    let ws = Workspace::new(&format!(
        r#"
[tasks.mirror]
service = {{ run = "echo started >> svc.starts; exec sleep 60", ready = {{ tcp = "{}" }}, ready_timeout = "5s" }}

[tasks.list]
deps = ["mirror"]
download = {{ url = "{}", dest = "list.txt" }}

[tasks.get]
deps = ["mirror", "list"]
for_each = {{ lines = "list.txt" }}
download = {{ url = "${{item.line}}", dest = "raw/${{item.name}}" }}
"#,
        http.addr(),
        http.url("/list.txt"),
    ));
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(entry(&report, "get[a.csv]")["status"], "succeeded");
    assert_eq!(entry(&report, "mirror")["status"], "succeeded");
    assert_eq!(ws.read("svc.starts"), "started\nstarted\n");
    assert_eq!(ws.read("raw/a.csv"), "a");

    // All cached: the service is never started, and settled once, in the last phase.
    let (r, report) = ws.run_report(&[], 0);
    assert_eq!(with_status(&report, "cached").len(), 3);
    assert_eq!(
        r.stdout.matches("=> mirror: cached").count(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(ws.read("svc.starts"), "started\nstarted\n");
}

/// Nine fan-outs, each over the files the last one wrote: eight are expanded one after
/// another in the run; the ninth fails (it is not left waiting, silently, forever).
#[test]
fn a_chain_longer_than_the_phases_allowed_fails_its_last_link() {
    let mut manifest =
        String::from("[tasks.t0]\noutputs = [\"d0\"]\nrun = \"mkdir -p d0 && echo x > d0/a\"\n");
    for k in 1..=9 {
        let prev = k - 1;
        manifest.push_str(&format!(
            "\n[tasks.f{k}]\ndeps = [\"{}\"]\nfor_each = {{ glob = \"d{prev}/*\" }}\noutputs = [\"d{k}/${{item.name}}\"]\nrun = \"mkdir -p d{k} && cp ${{item.path}} d{k}/${{item.name}}\"\n",
            if k == 1 { "t0".to_string() } else { format!("f{prev}") }
        ));
    }
    let ws = Workspace::new(&manifest);
    ws.plan_text(&[])
        .code(0)
        .says(&["f9[*] (expanded after f8)"]);
    let (_, report) = ws.run_report(&[], 1);
    assert_eq!(entry(&report, "f8[a]")["status"], "succeeded");
    let last = entry(&report, "f9[*]");
    assert_eq!(last["status"], "failed");
    assert!(
        last["error"].as_str().unwrap().contains("more than 8"),
        "{last}"
    );
    assert!(ws.exists("d8/a"));
}

/// The shape of `pipelines/urls.toml`: the downloads of a produced list also depend on a
/// service. It waits on standby for them (no `cancelled` line before it starts), and
/// `--locked` refuses them once, failing the stand-in, with exit 2.
#[test]
fn a_service_the_instances_of_a_produced_list_need_waits_for_them_and_locked_refuses_once() {
    let http = Http::start();
    http.route("/a.csv", Route::ok("alpha\n"));
    let ready = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ws = Workspace::new(&format!(
        r#"
[tasks.mirror]
service = {{ run = "exec sleep 60", ready = {{ tcp = "{}" }}, ready_timeout = "10s" }}

[tasks.mklist]
outputs = ["list.txt"]
run = "echo {} > list.txt"

[tasks.get]
deps = ["mklist", "mirror"]
for_each = {{ lines = "list.txt" }}
download = {{ url = "${{item.line}}", dest = "raw/${{item.name}}" }}
"#,
        ready.local_addr().unwrap(),
        http.url("/a.csv")
    ));
    let (r, report) = ws.run_report(&["--locked"], 2);
    assert_eq!(
        r.stderr
            .matches("--locked: taskrun.lock does not pin")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(entry(&report, "get[*]")["status"], "failed");
    assert_eq!(report["status"], "failed");
    assert_eq!(http.hits("/a.csv"), 0);

    let (r, report) = ws.run_report(&["--force"], 0);
    assert!(!r.stdout.contains("mirror: cancelled"), "{}", r.stdout);
    assert_eq!(entry(&report, "mirror")["status"], "succeeded");
    assert_eq!(entry(&report, "get[a.csv]")["status"], "succeeded");
    assert_eq!(ws.read("raw/a.csv"), "alpha\n");
}
