//! What the cluster's ActionCache may answer for a task (SPEC §2, §5, §11): a result older
//! than the task's `cache_ttl` is a miss, and so is a cached success the task cannot use
//! (a declared output missing, an output the local cache refuses); each is executed again
//! instead of failing the task, or serving stale outputs, on every later run.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::support::{Workspace, manifest, nonce, task};

/// How many times the cluster ran `action` (`HASH/SIZE`).
fn runs_of(c: &Cluster, action: &str) -> usize {
    c.executions().iter().filter(|e| e.action == action).count()
}

/// Past its `cache_ttl` the cluster's result is not taken: the action runs again (a fresh
/// output), though its local record and the ActionCache both still hold the old one.
#[test]
fn a_cluster_result_older_than_cache_ttl_is_run_again() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.t]\ncache_ttl = \"2s\"\noutputs = [\"t.txt\"]\n\
                run = \"date +%s.%N > t.txt\"\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    ws.run(&[]).code(0);
    assert_eq!(task(&ws.last_report(), "t")["executed_on"], "remote");
    let first = ws.read("t.txt");
    // Past the ttl of the local record and of the cluster's entry (whose worker finished
    // before the first run ended).
    std::thread::sleep(Duration::from_secs(3));
    let plan = ws.cmd(&["plan", "taskrun.toml"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("expired (cache_ttl 2s)"), "{plan}");
    ws.run(&[]).code(0);
    let report = ws.last_report();
    let t = task(&report, "t");
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["executed_on"], "remote", "{t:#}");
    assert!(t["cache_source"].is_null(), "{t:#}");
    assert_ne!(ws.read("t.txt"), first, "the old result was served");
    assert_eq!(runs_of(c, &ws.action_digest("t")), 2, "{}", c.worker_log());
}

/// A cluster result copied into a fresh local cache keeps its age: `cache_ttl` counts from
/// when the worker made it, not from the copy (which doubled the ttl).
#[test]
fn a_cluster_result_copied_here_keeps_its_age() {
    let Some(c) = Cluster::shared() else { return };
    let body = "[tasks.t]\ncache_ttl = \"3s\"\noutputs = [\"t.txt\"]\n\
                run = \"date +%s.%N > t.txt\"\n";
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), body));
    ws.run(&[]).code(0);
    let first = ws.read("t.txt");
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_dir_all(ws.path(".taskrun/cache")).unwrap();
    ws.run(&[]).code(0);
    let t = &task(&ws.last_report(), "t").clone();
    assert_eq!(t["cache_source"], "remote", "{t:#}");
    // Past the ttl of the result, though not of its copy.
    std::thread::sleep(Duration::from_millis(2000));
    ws.run(&[]).code(0);
    let t = &task(&ws.last_report(), "t").clone();
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_ne!(ws.read("t.txt"), first, "the old result was served");
}

/// A command that exits 0 without its declared output the first time (the cluster caches
/// that success) and makes it the next: the first run fails as a local one does, the second
/// runs the action again (the cached result lacks the output) and succeeds.
#[test]
fn a_cached_success_missing_a_declared_output_is_run_again() {
    let Some(c) = Cluster::shared() else { return };
    let state = tempfile::tempdir().unwrap();
    let flag = state.path().join("flag");
    let body = format!(
        "[tasks.flaky]\nretry = {{ max_attempts = 3, initial_delay = \"50ms\" }}\n\
         outputs = [\"o.txt\"]\n\
         run = \"if [ -e {f} ]; then echo good > o.txt; else touch {f}; echo glitch; fi\"\n",
        f = flag.display()
    );
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    ws.run(&[]).code(1);
    let report = ws.last_report();
    let t = task(&report, "flaky");
    let error = t["error"].as_str().unwrap();
    assert!(
        error.contains("declared output o.txt was not created"),
        "{t:#}"
    );
    assert_eq!(t["executed_on"], "remote", "{t:#}");

    let run = ws.run(&[]);
    run.code(0);
    let report = ws.last_report();
    let t = task(&report, "flaky");
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["executed_on"], "remote", "{t:#}");
    assert_eq!(t["attempts"].as_array().unwrap().len(), 1, "{t:#}");
    assert_eq!(ws.read("o.txt"), "good\n");
    assert_eq!(
        runs_of(c, &ws.action_digest("flaky")),
        2,
        "{}",
        c.worker_log()
    );
}

/// The same with an output directory whose links lead outside the workspace once resolved
/// (`d/x -> up/..` with `d/up -> ..`: inside by its text, outside on disk): the local cache
/// refuses to record it, so the cluster's cached copy is unusable and the action runs again.
#[test]
fn a_cached_success_the_local_cache_refuses_is_run_again() {
    let Some(c) = Cluster::shared() else { return };
    let state = tempfile::tempdir().unwrap();
    let flag = state.path().join("flag");
    let body = format!(
        "[tasks.links]\noutputs = [\"d\"]\n\
         run = \"mkdir -p d; if [ -e {f} ]; then echo good > d/f; \
         else touch {f}; ln -s .. d/up; ln -s up/.. d/x; fi\"\n",
        f = flag.display()
    );
    let ws = Workspace::new(&manifest(c.url(), "", &nonce(), &body));
    ws.run(&[]).code(1);
    assert!(!ws.path("d").exists(), "the refused output stayed");

    let run = ws.run(&[]);
    run.code(0);
    let report = ws.last_report();
    let t = task(&report, "links");
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["executed_on"], "remote", "{t:#}");
    assert_eq!(ws.read("d/f"), "good\n");
    assert!(!ws.path("d/up").exists() && !ws.path("d/x").exists());
    assert_eq!(
        runs_of(c, &ws.action_digest("links")),
        2,
        "{}",
        c.worker_log()
    );
}
