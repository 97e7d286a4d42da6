//! `taskrun run` end to end against the in-process remote: the binary, its report and its
//! warnings, with the remote given by `TASKRUN_REMOTE_CACHE`.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use crate::server::CacheServer;
use crate::workspace::Workspace;

const MANIFEST: &str = r#"
[pipeline]
name = "t"

[tasks.merge]
inputs = ["data/*.csv"]
outputs = ["out/merged.csv"]
run = "mkdir -p out && cat data/*.csv > out/merged.csv"

[tasks.count]
deps = ["merge"]
inputs = ["out/merged.csv"]
outputs = ["out/count.txt"]
run = "wc -l < out/merged.csv > out/count.txt"
"#;

fn workspace() -> Workspace {
    let ws = Workspace::new(MANIFEST);
    ws.write("data/a.csv", "1\n2\n");
    ws
}

/// `taskrun ARGS` in `root` with `TASKRUN_REMOTE_CACHE=remote`.
fn taskrun(root: &Path, remote: &str, args: &[&str]) -> Output {
    crate::workspace::taskrun()
        .args(args)
        .current_dir(root)
        .env("TASKRUN_REMOTE_CACHE", remote)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn taskrun_run_reports_remote_hits_on_a_second_machine() {
    let server = CacheServer::new();
    let a = workspace();
    let out = taskrun(a.root(), &server.url(), &["run", "taskrun.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        server
            .paths()
            .iter()
            .filter(|p| p.starts_with("/ac/"))
            .count(),
        2
    );

    let b = workspace();
    let out = taskrun(b.root(), &server.url(), &["run", "taskrun.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("(remote)").count(), 2, "{}", text(&out));
    assert_eq!(
        fs::read(b.root().join("out/count.txt")).unwrap(),
        fs::read(a.root().join("out/count.txt")).unwrap()
    );

    // `plan` on a third machine touches no network and says what it can.
    let c = workspace();
    server.clear_log();
    let out = taskrun(c.root(), &server.url(), &["plan", "taskrun.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the remote may have it"),
        "{}",
        text(&out)
    );
    assert!(server.log().is_empty());
}

#[test]
fn taskrun_run_with_a_dead_remote_warns_once_and_succeeds() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ws = workspace();
    let out = taskrun(
        ws.root(),
        &format!("http://{addr}"),
        &["run", "taskrun.toml"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert_eq!(all.matches("unreachable").count(), 1, "{all}");
    assert!(all.contains("continuing with the local cache"), "{all}");
    assert!(ws.root().join("out/count.txt").is_file());
}

#[test]
fn taskrun_run_no_cache_uses_neither_store() {
    let server = CacheServer::new();
    let ws = workspace();
    let out = taskrun(
        ws.root(),
        &server.url(),
        &["run", "--no-cache", "taskrun.toml"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.log().is_empty(), "{:?}", server.log());
    assert!(!ws.root().join(".taskrun/cache/ac").exists());
}

/// Issue 13 (SPEC §13): a remote record, correctly sealed, that also names the manifest and a
/// git hook (their blob on the remote too) is rejected whole with a warning before any of its
/// blobs is fetched; the task runs, and nothing outside its declared outputs is written.
#[test]
fn a_remote_record_naming_undeclared_paths_is_rejected_and_the_task_runs() {
    use taskrun::cache::digest::{hash_bytes, to_hex};
    use taskrun::cache::record::{ActionRecord, OutputFile};

    let server = CacheServer::new();
    let a = workspace();
    let out = taskrun(a.root(), &server.url(), &["run", "taskrun.toml"]);
    assert!(out.status.success(), "{}", text(&out));

    let evil = b"#!/bin/sh\necho pwned\n".to_vec();
    let evil_hex = to_hex(&hash_bytes(&evil));
    server.put(&format!("/cas/{evil_hex}"), evil.clone());
    let (path, mut rec) = server
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/ac/"))
        .map(|p| {
            let rec: ActionRecord = serde_json::from_slice(&server.get(&p).unwrap()).unwrap();
            (p, rec)
        })
        .find(|(_, rec)| rec.task == "merge")
        .unwrap();
    for (p, mode) in [("taskrun.toml", 0o644), (".git/hooks/pre-commit", 0o755)] {
        rec.outputs.push(OutputFile {
            path: p.into(),
            sha256: evil_hex.clone(),
            size: evil.len() as u64,
            mode,
        });
    }
    rec.seal();
    server.put(&path, serde_json::to_vec_pretty(&rec).unwrap());
    server.clear_log();

    let b = workspace();
    let out = taskrun(b.root(), &server.url(), &["run", "taskrun.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(b.root().join("taskrun.toml")).unwrap(),
        MANIFEST
    );
    assert!(!b.root().join(".git").exists());
    assert!(text(&out).contains("rejected"), "{}", text(&out));
    assert!(b.root().join("out/merged.csv").is_file());
    let fetched = format!("/cas/{evil_hex}");
    assert!(
        !server
            .log()
            .iter()
            .any(|(m, p)| m == "GET" && *p == fetched),
        "{:?}",
        server.log()
    );
}
