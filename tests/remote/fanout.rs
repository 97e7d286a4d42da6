//! Fan-out instances through the remote cache (SPEC §9, §5): each instance has its own key,
//! made of what it does and never of its name or the list file, so a second machine whose
//! list is reordered and one line longer gets every shared instance from the remote.

use std::fs;
use std::path::Path;

use crate::server::CacheServer;
use crate::workspace::Workspace;

const MANIFEST: &str = r#"
[tasks.shout]
for_each = { lines = "words.txt" }
outputs = ["out/${item.line}.txt"]
run = "mkdir -p out && echo ${item.line} | tr a-z A-Z > out/${item.line}.txt"
"#;

fn machine(words: &str) -> Workspace {
    let ws = Workspace::new(MANIFEST);
    ws.write("words.txt", words);
    ws
}

/// Runs with a report; the report's tasks by name → (status, cache_source).
fn run(root: &Path, remote: &str) -> Vec<(String, String, String)> {
    let out = crate::workspace::taskrun()
        .args(["taskrun.toml", "--report", "r.json"])
        .current_dir(root)
        .env("TASKRUN_REMOTE_CACHE", remote)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("r.json")).unwrap()).unwrap();
    let mut tasks: Vec<(String, String, String)> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["cache_source"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    tasks.sort();
    tasks
}

#[test]
fn instances_are_shared_through_the_remote_whatever_the_list_order() {
    let server = CacheServer::new();
    let a = machine("alpha\nbeta\ngamma\n");
    let first = run(a.root(), &server.url());
    assert!(first.iter().all(|(_, s, _)| s == "succeeded"), "{first:?}");
    let records = server
        .paths()
        .iter()
        .filter(|p| p.starts_with("/ac/"))
        .count();
    assert_eq!(records, 3, "one record per instance");

    let b = machine("# reordered, and one more\ngamma\ndelta\nalpha\nbeta\n");
    let second = run(b.root(), &server.url());
    let expect = |name: &str, status: &str, source: &str| {
        (name.to_string(), status.to_string(), source.to_string())
    };
    assert_eq!(
        second,
        [
            expect("shout[alpha]", "cached", "remote"),
            expect("shout[beta]", "cached", "remote"),
            expect("shout[delta]", "succeeded", "-"),
            expect("shout[gamma]", "cached", "remote"),
        ]
    );
    assert_eq!(
        fs::read_to_string(b.root().join("out/gamma.txt")).unwrap(),
        "GAMMA\n"
    );
}
