//! The cache end to end: a manifest on disk, the library playing the scheduler's part
//! (lookup / run / record_success), and the `taskrun cache|explain|plan` commands.

mod support;
#[path = "../support/workspace.rs"]
mod workspace;

use std::fs;
use std::time::Duration;

use support::{Workspace, set_last_used};
use taskrun::cache::lock::CacheLock;
use taskrun::cache::{PredictedStatus, plan_predictions};

const MANIFEST: &str = r#"
[pipeline]
name = "t"

[tasks.merge]
inputs = ["data/*.csv"]
outputs = ["out/merged.csv"]
run = "cat data/*.csv > out/merged.csv"

[tasks.count]
deps = ["merge"]
inputs = ["out/merged.csv"]
outputs = ["out/count.txt"]
run = "wc -l out/merged.csv > out/count.txt"
"#;

#[test]
fn unchanged_pipeline_is_all_hits_and_an_edit_reruns_only_what_changed() {
    let ws = Workspace::new(MANIFEST);
    ws.write("data/a.csv", "1\n");
    assert_eq!(ws.run_all(), vec![false, false]);
    assert_eq!(ws.run_all(), vec![true, true]);
    // A new input reruns merge; its output changes, so count reruns too.
    ws.write("data/b.csv", "2\n");
    assert_eq!(ws.run_all(), vec![false, false]);
    assert_eq!(ws.run_all(), vec![true, true]);
}

#[test]
fn plan_predicts_hits_misses_and_reasons_without_writing() {
    let ws = Workspace::new(MANIFEST);
    ws.write("data/a.csv", "1\n");
    let p = plan_predictions(&ws.plan(), false, false);
    assert_eq!(p[0].status, PredictedStatus::Miss);
    assert_eq!(p[0].reason.as_deref(), Some("no entry"));
    assert_eq!(p[1].reason.as_deref(), Some("dependency merge will run"));
    assert!(
        !ws.root().join(".taskrun").exists(),
        "predicting writes nothing"
    );

    ws.run_all();
    let p = plan_predictions(&ws.plan(), false, false);
    assert_eq!(
        (p[0].status, p[1].status),
        (PredictedStatus::Hit, PredictedStatus::Hit)
    );
    ws.write("data/a.csv", "changed\n");
    let p = plan_predictions(&ws.plan(), false, false);
    assert_eq!(p[0].reason.as_deref(), Some("input data/a.csv changed"));
    let p = plan_predictions(&ws.plan(), true, false);
    assert_eq!(p[0].reason.as_deref(), Some("--force"));
    let p = plan_predictions(&ws.plan(), false, true);
    assert_eq!(p[0].status, PredictedStatus::Off);
}

/// A dependency without outputs hands on its key (SPEC §5), known before it runs: its
/// dependents are predicted as the run will find them, not "dependency will run".
#[test]
fn a_dependency_without_outputs_that_runs_leaves_its_dependents_hits() {
    let ws = Workspace::new(
        r#"
[tasks.check]
run = "true"

[tasks.build]
deps = ["check"]
outputs = ["out/b.txt"]
run = "mkdir -p out && echo b > out/b.txt"

[tasks.log]
deps = ["build"]
run = "true"
"#,
    );
    ws.run_all();
    let p = plan_predictions(&ws.plan(), false, false);
    assert_eq!(p[0].status, PredictedStatus::Off);
    assert_eq!(p[1].status, PredictedStatus::Hit, "{:?}", p[1]);
    // Never cached: that is why it runs, whatever its deps do.
    assert_eq!(
        p[2].reason.as_deref().map(|r| r.starts_with("no outputs")),
        Some(true),
        "{:?}",
        p[2]
    );
    ws.write("out/b.txt", "changed\n");
    let p = plan_predictions(&ws.plan(), true, false);
    assert_eq!(p[1].reason.as_deref(), Some("--force"));
    assert!(
        p[2].reason
            .as_deref()
            .is_some_and(|r| r.starts_with("no outputs")),
        "{:?}",
        p[2]
    );
}

#[test]
fn explain_prints_parts_beside_the_last_run() {
    let ws = Workspace::new(MANIFEST);
    ws.write("data/a.csv", "1\n");
    ws.run_all();
    ws.write("data/a.csv", "2\n");
    ws.write("data/c.csv", "3\n");
    let out = ws.taskrun(&["explain", "taskrun.toml", "merge"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("merge: miss (input data/a.csv changed, input data/c.csv added)"),
        "{text}"
    );
    assert!(text.contains("command "), "{text}");
    assert!(text.contains("input data/c.csv"), "{text}");

    let out = ws.taskrun(&["explain", "taskrun.toml", "count"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dependency merge will run"), "{text}");
    // Its digest is unknown, not removed: one row, with the last run's value beside it.
    assert!(!text.contains("removed"), "{text}");
    let row: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("dep merge"))
        .collect();
    assert_eq!(row.len(), 1, "{text}");
    assert!(
        row[0].contains(" ? ") && row[0].contains("will run first"),
        "{text}"
    );
    assert!(
        !ws.root()
            .join(".taskrun/cache")
            .join(taskrun::cache::stat::STAT_FILE)
            .exists()
            || ws.stat_unchanged_by(|| {
                ws.taskrun(&["explain", "taskrun.toml", "merge"]);
            })
    );

    let out = ws.taskrun(&["explain", "taskrun.toml", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stats_counts_entries_and_reads_the_last_run_report() {
    let ws = Workspace::new(MANIFEST);
    ws.write("data/a.csv", "1\n");
    ws.run_all();
    ws.write(
        ".taskrun/runs/20260101T000000Z-aaaa.json",
        r#"{"manifest":"taskrun.toml","summary":{"cached":0,"total":2}}"#,
    );
    ws.write(
        ".taskrun/runs/20260102T000000Z-bbbb.json",
        r#"{"manifest":"taskrun.toml","summary":{"cached":3,"total":4}}"#,
    );
    let out = ws.taskrun(&["cache", "stats", "taskrun.toml"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("entries:   2\n"), "{text}");
    assert!(text.contains("3/4 tasks cached (75%)"), "{text}");

    // Without a manifest: TASKRUN_CACHE_DIR.
    let out = workspace::taskrun()
        .args(["cache", "stats"])
        .env("TASKRUN_CACHE_DIR", ws.root().join(".taskrun/cache"))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("entries:   2\n"));
}

#[test]
fn gc_needs_a_limit_and_evicts_least_recently_used_first() {
    let ws = Workspace::new(MANIFEST);
    let out = ws.taskrun(&["cache", "gc", "taskrun.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a limit"));
    let out = ws.taskrun(&["cache", "gc", "taskrun.toml", "--max-size", "12 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
    // The limits are gc's alone: the other subcommands refuse them, changing nothing.
    for sub in ["stats", "clean"] {
        let out = ws.taskrun(&["cache", sub, "taskrun.toml", "--max-size", "1B"]);
        assert_eq!(out.status.code(), Some(2), "{sub}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--max-size'"),
            "{sub}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Three generations of merge's output; the middle one used most recently.
    let mut keys = Vec::new();
    for generation in ["one\n", "two\n", "three\n"] {
        ws.write("data/a.csv", generation);
        ws.run_all();
        keys.push(ws.last_key("merge"));
    }
    set_last_used(&ws, &keys[0], "2020-01-01T00:00:00Z");
    set_last_used(&ws, &keys[2], "2021-01-01T00:00:00Z");
    set_last_used(&ws, &keys[1], "2099-01-01T00:00:00Z");
    // The runs' use stamps (exact LRU, issue 14) say keys[2] was used just now, which is
    // true: drop them so the records' faked times decide.
    for f in std::fs::read_dir(ws.root().join(".taskrun/cache/index")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|x| x == "used") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let out = ws.taskrun(&["cache", "gc", "taskrun.toml", "--max-age", "30d"]);
    assert!(out.status.success(), "{out:?}");
    let store = ws.store();
    assert!(store.read_record(&keys[0]).is_none());
    assert!(store.read_record(&keys[2]).is_none());
    assert!(store.read_record(&keys[1]).is_some());
    // Blobs of evicted entries are gone; those of the kept one remain.
    let blobs = store.blob_files().len();
    assert!(blobs > 0);
    let rec = store.read_record(&keys[1]).unwrap();
    for o in &rec.outputs {
        assert!(store.blob_files().iter().any(|b| b.ends_with(&o.sha256)));
    }

    let out = ws.taskrun(&["cache", "gc", "taskrun.toml", "--max-size", "1B"]);
    assert!(out.status.success(), "{out:?}");
    assert!(ws.store().record_files().is_empty());
    assert!(ws.store().blob_files().is_empty());
}

#[test]
fn clean_waits_for_the_lock_and_deletes_the_store() {
    let ws = Workspace::new(MANIFEST);
    ws.write("data/a.csv", "1\n");
    ws.run_all();
    let dir = ws.root().join(".taskrun/cache");
    let lock = CacheLock::acquire(&dir).unwrap();
    let child = ws
        .cmd(&["cache", "clean", "taskrun.toml"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(dir.join("ac").exists(), "clean must wait for the lock");
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("waiting for another taskrun using").count(),
        1,
        "{err}"
    );
    assert!(!dir.join("ac").exists() && !dir.join("cas").exists());
    assert_eq!(ws.run_all(), vec![false, false]);
    fs::remove_dir_all(ws.root().join("out")).unwrap();
    assert_eq!(ws.run_all(), vec![true, true], "outputs restored");
}
