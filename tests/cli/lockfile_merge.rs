//! SPEC §10: a run records its new pins into the lockfile as it is when the run ends, not
//! as it was when the run started: another run (targeted, on other tasks) may have pinned
//! its downloads in between, and they must stay.

use crate::fault_server::Route;
use crate::http::{Http, sha};
use crate::support::Workspace;

#[test]
fn pins_another_run_wrote_meanwhile_are_kept() {
    let http = Http::start();
    http.route("/s", Route::ok("slow one\n"));
    http.route("/b", Route::ok("bee\n"));
    let (s_url, b_url) = (http.url("/s"), http.url("/b"));
    let ws = Workspace::new(&format!(
        "[tasks.s]\ndownload = {{ url = \"{s_url}\", dest = \"raw/s\" }}\n\
         [tasks.b]\ndownload = {{ url = \"{b_url}\", dest = \"raw/b\" }}\n\
         [tasks.other]\ndeps = [\"b\"]\nrun = \"cat other.lock > taskrun.lock\"\n"
    ));
    // What a run of `s` alone, beside this one, writes while this one runs `b`.
    ws.write(
        "other.lock",
        &format!(
            "version = 1\n[[download]]\ntask = \"s\"\nurl = \"{s_url}\"\nsha256 = \"{}\"\nsize = 9\n",
            sha(b"slow one\n")
        ),
    );
    ws.run(&["b", "other"]).code(0);
    let lock = ws.read("taskrun.lock");
    assert!(lock.contains("task = \"s\""), "{lock}");
    assert!(lock.contains("task = \"b\""), "{lock}");
    ws.run(&["--locked"]).code(0);
}

/// A lockfile edited into something unreadable during the run is left as the user made it
/// (with a warning that the new pins were not recorded); one deleted during the run gets
/// only the run's new pins.
#[test]
fn a_lockfile_broken_or_deleted_during_the_run_is_not_overwritten_with_old_entries() {
    let http = Http::start();
    http.route("/a", Route::ok("aye\n"));
    http.route("/b", Route::ok("bee\n"));
    let (a_url, b_url) = (http.url("/a"), http.url("/b"));
    let manifest = |edit: &str| {
        format!(
            "[tasks.a]\ndownload = {{ url = \"{a_url}\", dest = \"raw/a\" }}\n\
             [tasks.b]\ndownload = {{ url = \"{b_url}\", dest = \"raw/b\" }}\n\
             [tasks.edit]\ndeps = [\"b\"]\nrun = \"{edit}\"\n"
        )
    };
    let ws = Workspace::new(&manifest("true"));
    ws.run(&["a"]).code(0);
    let pinned_a = ws.read("taskrun.lock");
    assert!(pinned_a.contains("task = \"a\""));

    ws.manifest(&manifest("echo garbage [[[ > taskrun.lock"));
    let r = ws.run(&["b", "edit"]);
    r.code(0);
    assert!(r.stderr.contains("changed during the run"), "{}", r.stderr);
    assert_eq!(ws.read("taskrun.lock"), "garbage [[[\n");

    ws.manifest(&manifest("rm taskrun.lock"));
    ws.write("taskrun.lock", &pinned_a);
    std::fs::remove_dir_all(ws.path(".taskrun")).unwrap();
    ws.run(&["b", "edit"]).code(0);
    let lock = ws.read("taskrun.lock");
    assert!(
        lock.contains("task = \"b\"") && !lock.contains("task = \"a\""),
        "{lock}"
    );
}

/// `taskrun lock` merges as a run does: pins a run recorded while `lock` was downloading
/// stay (it wrote back the file as it had read it at its start).
#[test]
fn taskrun_lock_keeps_pins_written_while_it_downloads() {
    let http = Http::start();
    http.route("/s", Route::ok("slow one\n"));
    // Held (up to 3 s) so the test can write the lockfile while `lock` waits for it.
    http.route(
        "/o",
        Route::ok("other\n").hold_until(2, 2, std::time::Duration::from_secs(3)),
    );
    let (s_url, o_url) = (http.url("/s"), http.url("/o"));
    let ws = Workspace::new(&format!(
        "[tasks.s]\ndownload = {{ url = \"{s_url}\", dest = \"raw/s\" }}\n\
         [tasks.o]\ndownload = {{ url = \"{o_url}\", dest = \"raw/o\" }}\n"
    ));
    let child = ws
        .cmd(&["lock", "taskrun.toml", "o"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::http::wait_until("lock's request", || http.hits("/o") >= 1);
    ws.write(
        "taskrun.lock",
        &format!(
            "version = 1\n[[download]]\ntask = \"s\"\nurl = \"{s_url}\"\nsha256 = \"{}\"\nsize = 9\n",
            sha(b"slow one\n")
        ),
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = ws.read("taskrun.lock");
    assert!(
        lock.contains("task = \"s\"") && lock.contains("task = \"o\""),
        "{lock}"
    );
}

/// SPEC §10: a manifest with nothing to pin gets no lockfile, and `lock` says so rather
/// than that a file which does not exist "is current".
#[test]
fn lock_says_a_manifest_with_nothing_to_pin_needs_no_lockfile() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n");
    for args in [
        &["lock", "taskrun.toml", "--check"][..],
        &["lock", "taskrun.toml"][..],
    ] {
        let r = ws.exec(args);
        r.code(0);
        assert!(
            r.stdout
                .contains("nothing to pin: no taskrun.lock is needed"),
            "{}",
            r.stdout
        );
    }
    assert!(!ws.path("taskrun.lock").exists());
}
