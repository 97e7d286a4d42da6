//! The input root a remote task gets (SPEC §11): its dependencies' outputs as they are on
//! disk, empty directories inside an output directory included, as a local run sees them.

use crate::cluster::Cluster;
use crate::support::{Workspace, manifest, nonce, task};

/// `d` makes an output directory holding only empty directories; `u`, on top of it, lists
/// it. Remotely it sees what it sees here (it used to get no `emptydir` at all).
#[test]
fn empty_directories_of_a_dependency_output_reach_the_worker() {
    let Some(c) = Cluster::shared() else { return };
    let body = r#"
[tasks.f]
run = "echo f > f.txt"
outputs = ["f.txt"]

[tasks.d]
run = "mkdir -p emptydir/sub emptydir/other/deeper"
outputs = ["emptydir"]

[tasks.u]
deps = ["f", "d"]
run = "find emptydir | sort > found.txt"
outputs = ["found.txt"]
"#;
    let n = nonce();
    let ws = Workspace::new(&manifest(c.url(), "", &n, body));
    ws.run(&[]).code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "u")["executed_on"], "remote");
    let local = Workspace::new(&manifest(c.url(), "", &n, body));
    local.run(&["--remote-exec", "off"]).code(0);
    let want = "emptydir\nemptydir/other\nemptydir/other/deeper\nemptydir/sub\n";
    assert_eq!(local.read("found.txt"), want);
    assert_eq!(ws.read("found.txt"), want);
}
