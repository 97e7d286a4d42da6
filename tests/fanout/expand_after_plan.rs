//! `plan` of a fan-out expanded after its producer (SPEC §9 "What is read when"): the
//! stand-in `clean[*] (expanded after unpack)` until the producer has run, and the instances
//! from the items on disk once the producer is cached with its outputs as recorded.

use crate::expand_after::{ran, unpack_workspace};
use crate::fault_server::Route;
use crate::served::Http;
use crate::support::{Workspace, entry};

#[test]
fn plan_and_check_show_the_stand_in_before_anything_ran() {
    let ws = unpack_workspace();
    ws.check().code(0);
    let text = ws.plan_text(&[]);
    text.code(0).says(&[
        "clean[*] (expanded after unpack)",
        "one instance per file matching unpacked/*.csv",
        "each: mkdir -p clean",
        "after: clean[*]",
    ]);
    let plan = ws.plan_json(&[]);
    let stand_in = entry(&plan, "clean[*]");
    assert_eq!(stand_in["task"], "clean");
    assert_eq!(stand_in["kind"], "command");
    assert_eq!(stand_in["expanded_after"], serde_json::json!(["unpack"]));
    assert_eq!(stand_in["deps"], serde_json::json!(["unpack"]));
    assert_eq!(
        entry(&plan, "report")["deps"],
        serde_json::json!(["clean[*]"])
    );
    assert!(!ws.exists("unpacked"), "plan ran nothing");
    assert!(!ws.exists(".taskrun/runs"), "plan ran nothing");
}

/// Once the producer is cached with its outputs on disk, the items there are the ones the
/// run will read: `plan` and a dry run expand the fan-out and predict each instance, and
/// nothing is left "to run" after a full run. `--force` and `--no-cache` keep the stand-in.
#[test]
fn plan_after_a_run_expands_the_fanout_from_the_items_on_disk() {
    let ws = unpack_workspace();
    ws.run(&["-q"]).code(0);
    assert_eq!(ran(&ws).len(), 4);
    let text = ws.plan_text(&[]);
    text.code(0).says(&[
        "4 tasks in 3 levels, 0 to run",
        "clean[*]  command   2 instances: clean[a.csv] … clean[b.csv]",
        "cache: 2 hit",
    ]);
    assert!(!text.stdout.contains("expanded after"), "{}", text.stdout);
    let plan = ws.plan_json(&[]);
    assert_eq!(
        entry(&plan, "clean[b.csv]")["cache"]["status"],
        "hit",
        "{plan}"
    );
    assert_eq!(entry(&plan, "report")["cache"]["status"], "hit", "{plan}");
    ws.run(&["-n"]).code(0).says(&["0 to run"]);
    ws.run(&["-n", "-k"]).code(0).says(&["0 to run"]);
    // A target naming one instance: it and its producer, both hits.
    let one = ws.plan_json(&["clean[b.csv]"]);
    assert_eq!(
        entry(&one, "clean[b.csv]")["cache"]["status"],
        "hit",
        "{one}"
    );
    assert_eq!(entry(&one, "unpack")["cache"]["status"], "hit", "{one}");
    for flag in ["--force", "--no-cache"] {
        ws.plan_text(&[flag])
            .code(0)
            .says(&["clean[*] (expanded after unpack)"]);
    }
    // What the plan predicted is what the run does: nothing.
    ws.run(&["-q"]).code(0);
    assert_eq!(ran(&ws), Vec::<String>::new());
}

/// When the producer will run again (its input changed) or restore its outputs (they were
/// edited), the items are not known yet: the stand-in stays, and its dependent's miss says
/// so, with no key, rather than made-up reasons (`dependency clean[*] added,
/// clean[a.csv] removed`) and a key the run would not use.
#[test]
fn plan_keeps_the_stand_in_while_the_producer_would_change_its_items() {
    let ws = unpack_workspace();
    ws.run(&["-q"]).code(0);
    ws.write("unpacked/a.csv", "edited\n");
    ws.plan_text(&[]).code(0).says(&[
        "clean[*] (expanded after unpack)",
        "cache: miss (dependency clean[*] will run)",
    ]);
    ws.run(&["-q"]).code(0);
    // A file the record does not hold in the producer's output directory: the run's restore
    // removes it, so the items on disk now are not the ones the run reads.
    ws.write("unpacked/c.csv", "c,3\n");
    ws.plan_text(&[]).code(0).says(&[
        "output unpacked/c.csv is not the task's: restore",
        "clean[*] (expanded after unpack)",
    ]);
    ws.run(&["-q"]).code(0);
    assert!(!ws.exists("unpacked/c.csv"));
    ws.write("src/b.csv", "b,3\n");
    let text = ws.plan_text(&[]);
    text.code(0).says(&[
        "clean[*] (expanded after unpack)",
        "cache: miss (dependency clean[*] will run)",
    ]);
    assert!(!text.stdout.contains("removed"), "{}", text.stdout);
    let plan = ws.plan_json(&[]);
    assert!(entry(&plan, "report")["cache"]["key"].is_null(), "{plan}");
}

/// A producer that is a `revalidate = true` download asks its origin again on a hit and
/// may download a new list: its fan-out stays a stand-in in the plan.
#[test]
fn a_revalidating_download_producer_keeps_the_stand_in() {
    let http = Http::start();
    http.route("/list.txt", Route::ok("a\nb\n").etag("\"v1\""));
    let ws = Workspace::new(&format!(
        "[tasks.getlist]\ndownload = {{ url = \"{}\", dest = \"list.txt\", revalidate = true }}\n\
         [tasks.proc]\ndeps = [\"getlist\"]\nfor_each = {{ lines = \"list.txt\" }}\n\
         outputs = [\"o/${{item.line}}\"]\nrun = \"mkdir -p o && echo ${{item.line}} > o/${{item.line}}\"\n",
        http.url("/list.txt")
    ));
    ws.run(&["-q"]).code(0);
    http.route("/list.txt", Route::ok("a\nb\nc\n").etag("\"v2\""));
    ws.plan_text(&[])
        .code(0)
        .says(&["proc[*] (expanded after getlist)"]);
    ws.run(&["-q"]).code(0);
    assert!(ws.exists("o/c"));
}

/// A target that names a fan-out expanded after its producer, whose items turn out to be
/// none (`allow_empty`): the producer ran for it, so the report, the summary and the plan
/// keep it (the run reported "0 tasks" and left it out).
#[test]
fn a_targeted_fanout_of_no_items_keeps_its_producer_in_the_report_and_plan() {
    let ws = Workspace::new(
        "[tasks.unpack]\nrun = \"mkdir -p unpacked\"\noutputs = [\"unpacked\"]\n\
         [tasks.proc]\ndeps = [\"unpack\"]\nfor_each = { glob = \"unpacked/*.txt\", allow_empty = true }\n\
         run = \"cat ${item.path}\"\n[tasks.other]\nrun = \"true\"\n",
    );
    let (_, report) = ws.run_report(&["proc"], 0);
    assert_eq!(
        crate::support::statuses(&report),
        [("unpack".to_string(), "succeeded".to_string())]
    );
    assert_eq!(report["summary"]["total"], 1);
    let (_, report) = ws.run_report(&["proc"], 0);
    assert_eq!(
        crate::support::statuses(&report),
        [("unpack".to_string(), "cached".to_string())]
    );
    let plan = ws.plan_json(&["proc"]);
    assert_eq!(crate::support::names(&plan), ["unpack"]);
}

/// Before the producer has run here (a fresh checkout), `explain` of a task after the
/// fan-out explains it with the stand-in, and one of the fan-out's instances is said to wait
/// for the producer; both called the manifest invalid (`gives task clean no items`, exit 2)
/// while `check` passed it.
#[test]
fn explain_before_the_producer_ran_keeps_the_stand_in() {
    let ws = unpack_workspace();
    ws.exec(&["explain", "taskrun.toml", "report"])
        .code(0)
        .says(&["report: miss (dependency clean[*] will run)"]);
    for task in ["clean[a.csv]", "clean"] {
        ws.exec(&["explain", "taskrun.toml", task]).code(2).says(&[
            &format!("`{task}` is expanded after `unpack` has run, and its items are not here yet"),
            "run them first: taskrun run taskrun.toml unpack",
        ]);
    }
    assert!(!ws.exists("unpacked"), "explain ran nothing");
    ws.run_report(&[], 0);
    ws.exec(&["explain", "taskrun.toml", "clean[a.csv]"])
        .code(0)
        .says(&["clean[a.csv]: hit"]);
}
