//! What the cluster's ActionCache may answer for a task (SPEC §2, §5, §11): a result older
//! than the task's `cache_ttl` is a miss, executed again instead of serving stale outputs.

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
