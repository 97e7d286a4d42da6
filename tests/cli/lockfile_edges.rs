//! The lockfile's edges (SPEC §10) through the real binary: a malformed or deleted
//! lockfile, one edited behind a remembered manifest, a `dest` on it, `lock` starting the
//! services its downloads need, and pins served from the remote cache.

use crate::fault_server::Route;
use crate::http::{Http, sha};
use crate::lockfile::{download, lock, taskrun, two_downloads};
use crate::support::{Workspace, task};

#[test]
fn a_malformed_lockfile_is_an_error_with_its_place() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.write(
        "taskrun.lock",
        "version = 1\n[[download]]\ntask = \"a\"\nsha256 = 3\n",
    );
    for args in [
        vec!["taskrun.toml"],
        vec!["plan", "taskrun.toml"],
        vec!["lock", "taskrun.toml"],
    ] {
        let run = taskrun(&ws, &args, &[]);
        run.code(2);
        assert!(
            run.stderr.contains("taskrun.lock:4:"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(http.hits("/a.csv"), 0);
}

#[test]
fn a_dest_may_not_be_the_lockfile() {
    let ws = Workspace::new(
        "[tasks.x]\ndownload = { url = \"http://127.0.0.1:9/x\", dest = \"taskrun.lock\" }\n",
    );
    let run = taskrun(&ws, &["check", "taskrun.toml"], &[]);
    run.code(2);
    assert!(
        run.stderr
            .contains("would overwrite `taskrun.lock`, the manifest's lockfile"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("taskrun.toml:2:"), "{}", run.stderr);
}

#[test]
fn lock_starts_the_services_its_downloads_depend_on() {
    let http = Http::start();
    http.route("/a.csv", Route::ok(&b"alpha\n"[..]));
    let ws = Workspace::new(&format!(
        "[tasks.mirror]\nservice = {{ run = \"echo started >> svc.starts; exec sleep 60\", ready = {{ tcp = \"{}\" }}, ready_timeout = \"5s\" }}\n{}deps = [\"mirror\"]\n",
        http.addr(),
        download("a", &http.url("/a.csv"), "data/a.csv"),
    ));
    lock(&ws, &[]).code(0);
    assert_eq!(ws.read("svc.starts"), "started\n");
    assert!(ws.read("taskrun.lock").contains("task = \"a\""));
    // The pinned file is in the cache: the next run needs neither the service nor the server.
    ws.run(&["--locked"]).code(0);
    assert_eq!(ws.read("svc.starts"), "started\n");
    assert_eq!(http.hits("/a.csv"), 1);
}

#[test]
fn a_deleted_lockfile_is_pinned_again_from_the_cache_without_a_request() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.run(&[]).code(0);
    let pinned = ws.read("taskrun.lock");
    std::fs::remove_file(ws.path("taskrun.lock")).unwrap();
    let run = ws.run(&[]);
    run.code(0);
    assert!(
        run.stdout.contains("pinned 2 new downloads"),
        "{}",
        run.stdout
    );
    assert_eq!(ws.read("taskrun.lock"), pinned);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
}

#[test]
fn an_edited_lockfile_is_read_even_when_the_manifest_is_remembered() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.run(&[]).code(0);
    // Same manifest (its memo is used), another pin in the lockfile.
    let other = sha(b"something else\n");
    ws.write(
        "taskrun.lock",
        &ws.read("taskrun.lock").replace(&sha(b"alpha\n"), &other),
    );
    let run = ws.run(&[]);
    run.code(1);
    assert!(
        run.stdout.contains(&format!(
            "sha256 mismatch: taskrun.lock has {}…, the server sent {}…",
            &other[..4],
            &sha(b"alpha\n")[..4]
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn a_lock_pinned_download_comes_from_the_remote_cache_without_asking_its_origin() {
    let http = Http::start();
    let remote = crate::remote_server::CacheServer::new();
    let url = format!("{}/taskrun", remote.url());
    let env = [("TASKRUN_REMOTE_CACHE", url.as_str())];
    // CI pins and uploads.
    let ci = two_downloads(&http);
    taskrun(&ci, &["taskrun.toml"], &env).code(0);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
    // A laptop with the committed lockfile and an empty cache: everything from the remote.
    let laptop = Workspace::new(&ci.read("taskrun.toml"));
    laptop.write("taskrun.lock", &ci.read("taskrun.lock"));
    taskrun(&laptop, &["taskrun.toml", "--locked"], &env).code(0);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
    assert_eq!(laptop.read("data/b.csv"), "beta\n");
    let report = laptop.last_report();
    assert_eq!(task(&report, "a")["cache_source"], "remote");
}
