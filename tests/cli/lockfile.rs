//! The lockfile (SPEC §10, issue 12 points 6 and 8) through the real binary, against a real
//! HTTP server on 127.0.0.1 that counts requests: trust on first use, verification,
//! `--locked`, `taskrun lock` with `--check`, `--update`, pruning and targets.

use crate::fault_server::{Fault, Route};
use crate::http::{Http, sha};
use crate::support::{Run, Workspace, task};

const HEADER: &str =
    "# Written by taskrun: the sha256 of every download without an inline pin. Commit this file.";

/// One attempt, so a mismatch fails at once.
pub const ONE: &str = "retry = 1";

pub fn download(name: &str, url: &str, dest: &str) -> String {
    format!("[tasks.{name}]\ndownload = {{ url = \"{url}\", dest = \"{dest}\" }}\n{ONE}\n")
}

/// `taskrun <args...>` in the workspace, with `env` set.
pub fn taskrun(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = ws.cmd(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

pub fn lock(ws: &Workspace, extra: &[&str]) -> Run {
    let mut args = vec!["lock", "taskrun.toml"];
    args.extend_from_slice(extra);
    taskrun(ws, &args, &[])
}

fn entry(task: &str, url: &str, body: &[u8]) -> String {
    format!(
        "[[download]]\ntask = \"{task}\"\nurl = \"{url}\"\nsha256 = \"{}\"\nsize = {}\n",
        sha(body),
        body.len()
    )
}

fn statuses(ws: &Workspace) -> Vec<(String, String)> {
    let report = ws.last_report();
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Two downloads, `a` and `b`, from `http`; returns the workspace.
pub fn two_downloads(http: &Http) -> Workspace {
    http.route("/a.csv", Route::ok(&b"alpha\n"[..]));
    http.route("/b.csv", Route::ok(&b"beta\n"[..]));
    Workspace::new(&format!(
        "{}{}",
        download("a", &http.url("/a.csv"), "data/a.csv"),
        download("b", &http.url("/b.csv"), "data/b.csv")
    ))
}

#[test]
fn first_run_pins_then_every_run_is_cached_without_a_request() {
    let http = Http::start();
    let ws = two_downloads(&http);
    let first = ws.run(&[]);
    first.code(0);
    assert!(
        first
            .stdout
            .contains("pinned 2 new downloads in taskrun.lock"),
        "{}",
        first.stdout
    );
    let want = format!(
        "{HEADER}\nversion = 1\n{}{}",
        entry("a", &http.url("/a.csv"), b"alpha\n"),
        entry("b", &http.url("/b.csv"), b"beta\n")
    );
    assert_eq!(ws.read("taskrun.lock"), want);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));

    let second = ws.run(&[]);
    second.code(0);
    assert!(!second.stdout.contains("pinned"), "{}", second.stdout);
    assert_eq!(
        statuses(&ws),
        [("a".into(), "cached".into()), ("b".into(), "cached".into())]
    );
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
    assert_eq!(ws.read("taskrun.lock"), want);

    // Even with the local files gone, the pinned blobs restore them without a request.
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    ws.run(&[]).code(0);
    assert_eq!(ws.read("data/a.csv"), "alpha\n");
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));

    // The plan says where the pin comes from.
    let plan = taskrun(&ws, &["plan", "taskrun.toml"], &[]);
    let short = &sha(b"alpha\n")[..12];
    assert!(
        plan.stdout
            .contains(&format!("sha256 {short}… (taskrun.lock)")),
        "{}",
        plan.stdout
    );
    let json = taskrun(&ws, &["plan", "taskrun.toml", "--format", "json"], &[]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(task(&doc, "a")["action"]["sha256_source"], "lockfile");
}

#[test]
fn changed_content_fails_like_an_inline_pin_naming_the_lockfile() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.run(&[]).code(0);
    http.route("/a.csv", Route::ok(&b"tampered\n"[..]));
    let (old, new) = (sha(b"alpha\n"), sha(b"tampered\n"));
    let message = format!(
        "sha256 mismatch: taskrun.lock has {}…, the server sent {}…; if the new content is \
         expected, run taskrun lock --update taskrun.toml a",
        &old[..4],
        &new[..4]
    );

    // The pinned content is in the store: no request at all, the run stays green.
    ws.run(&[]).code(0);
    assert_eq!(http.hits("/a.csv"), 1);

    // --force downloads again and verifies against the lockfile; so does --no-cache.
    for flag in ["--force", "--no-cache"] {
        let before = http.hits("/a.csv");
        let run = ws.run(&[flag]);
        run.code(1);
        assert_eq!(http.hits("/a.csv"), before + 1, "{flag}");
        let report = ws.last_report();
        let a = task(&report, "a");
        assert_eq!(a["status"], "failed", "{flag}");
        assert!(
            a["error"].as_str().unwrap().contains(&message),
            "{flag}: {a:#}"
        );
        assert!(run.stdout.contains(&message), "{}", run.stdout);
        // The verified file stays; the lockfile keeps its pin.
        assert_eq!(ws.read("data/a.csv"), "alpha\n");
        assert!(ws.read("taskrun.lock").contains(&old));
    }

    // Unchanged content under --force: downloaded again, verified, fine.
    http.route("/a.csv", Route::ok(&b"alpha\n"[..]));
    let before = http.hits("/a.csv");
    ws.run(&["--force"]).code(0);
    assert_eq!(http.hits("/a.csv"), before + 1);
}

#[test]
fn locked_refuses_missing_and_stale_entries_before_anything_runs() {
    let http = Http::start();
    http.route("/v1/a.csv", Route::ok(&b"alpha\n"[..]));
    http.route("/v2/a.csv", Route::ok(&b"alpha\n"[..]));
    http.route("/b.csv", Route::ok(&b"beta\n"[..]));
    let manifest = format!(
        "[vars]\ndir = \"v1\"\n{}{}[tasks.report]\ndeps = [\"a\", \"b\"]\nrun = \"echo ran > ran.txt\"\n",
        download("a", &http.url("/${vars.dir}/a.csv"), "data/a.csv"),
        download("b", &http.url("/b.csv"), "data/b.csv"),
    );
    let ws = Workspace::new(&manifest);
    // Only `a` is pinned.
    lock(&ws, &["a"]).code(0);
    assert_eq!(http.hits("/v1/a.csv"), 1);
    assert_eq!(http.hits("/b.csv"), 0);
    let pinned = ws.read("taskrun.lock");

    let stale = ["--var", "dir=v2", "--locked"];
    for args in [
        vec!["taskrun.toml", "--locked"],
        [&["taskrun.toml"][..], &stale[..]].concat(),
        vec!["plan", "taskrun.toml", "--locked"],
        vec!["check", "--locked", "taskrun.toml"],
    ] {
        let run = taskrun(&ws, &args, &[]);
        run.code(2);
        assert!(
            run.stderr.contains("--locked: taskrun.lock does not pin"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("  b: no entry"), "{}", run.stderr);
        // With the run's `--var`s: they decide the URLs the pins are for.
        let lock_cmd = match args.contains(&"dir=v2") {
            true => "hint: run `taskrun lock taskrun.toml --var dir=v2`",
            false => "hint: run `taskrun lock taskrun.toml`",
        };
        assert!(run.stderr.contains(lock_cmd), "{}", run.stderr);
    }
    let run = taskrun(&ws, &[&["taskrun.toml"][..], &stale[..]].concat(), &[]);
    assert!(
        run.stderr.contains(&format!(
            "  a: stale entry: it pins {}, the manifest now gives {}",
            http.url("/v1/a.csv"),
            http.url("/v2/a.csv")
        )),
        "{}",
        run.stderr
    );
    // Nothing ran, nothing was requested or written.
    assert_eq!(http.hits("/v1/a.csv") + http.hits("/v2/a.csv"), 1);
    assert_eq!(http.hits("/b.csv"), 0);
    assert!(!ws.path("ran.txt").exists());
    assert_eq!(ws.report_count(), 0);
    assert_eq!(ws.read("taskrun.lock"), pinned);

    // A target whose downloads are pinned passes --locked.
    ws.run(&["a", "--locked"]).code(0);
    assert_eq!(ws.read("taskrun.lock"), pinned);

    // Once everything is locked, CI's run passes and leaves the lockfile alone.
    lock(&ws, &[]).code(0);
    let locked = ws.read("taskrun.lock");
    ws.run(&["--locked"]).code(0);
    assert!(ws.path("ran.txt").exists());
    assert_eq!(ws.read("taskrun.lock"), locked);
    taskrun(&ws, &["check", "--locked", "taskrun.toml"], &[]).code(0);
}

#[test]
fn lock_check_exits_1_when_the_lockfile_would_change_and_0_when_current() {
    let http = Http::start();
    let ws = two_downloads(&http);
    let check = lock(&ws, &["--check"]);
    check.code(1);
    assert!(
        check.stdout.contains("would add    a: no entry"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("would add    b: no entry"));
    assert!(
        check
            .stdout
            .contains("taskrun.lock would change (2 entries); run `taskrun lock taskrun.toml`"),
        "{}",
        check.stdout
    );
    assert!(!ws.path("taskrun.lock").exists(), "--check writes nothing");
    assert_eq!(
        http.hits("/a.csv") + http.hits("/b.csv"),
        0,
        "--check downloads nothing"
    );

    let out = lock(&ws, &[]);
    out.code(0);
    assert!(
        out.stdout
            .contains(&format!("added   a {} (6 bytes)", &sha(b"alpha\n")[..12])),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("taskrun.lock: 2 added, 0 changed, 0 removed")
    );
    let check = lock(&ws, &["--check"]);
    check.code(0);
    assert!(
        check.stdout.contains("taskrun.lock is current"),
        "{}",
        check.stdout
    );
    // A second lock changes nothing and downloads nothing.
    let again = lock(&ws, &[]);
    again.code(0);
    assert!(
        again.stdout.contains("taskrun.lock is current (2 entries)"),
        "{}",
        again.stdout
    );
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
}

#[test]
fn lock_update_downloads_again_and_prints_old_and_new() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.run(&[]).code(0);
    http.route("/a.csv", Route::ok(&b"alpha v2\n"[..]));
    let out = lock(&ws, &["--update", "a"]);
    out.code(0);
    let (old, new) = (sha(b"alpha\n"), sha(b"alpha v2\n"));
    assert_eq!(
        out.stdout,
        format!(
            "changed a {} → {}\ntaskrun.lock: 0 added, 1 changed, 0 removed (2 entries)\n",
            &old[..12],
            &new[..12]
        )
    );
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (2, 1));
    assert!(ws.read("taskrun.lock").contains(&new));
    // The new content went into the cache: the next run restores it without a request.
    let run = ws.run(&[]);
    run.code(0);
    assert_eq!(ws.read("data/a.csv"), "alpha v2\n");
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (2, 1));
    assert!(!run.stdout.contains("pinned"), "{}", run.stdout);
    // An origin that fails the new download: exit 1, and the lockfile is not called current
    // (it could not be checked); its entry stands.
    http.route("/a.csv", Route::ok(&b""[..]).times(10, Fault::Status(404)));
    let out = lock(&ws, &["--update", "a"]);
    out.code(1);
    assert_eq!(
        out.stdout,
        "taskrun.lock: 1 download failed, its entry left as it was\n\
         taskrun.lock: 0 added, 0 changed, 0 removed (2 entries)\n"
    );
    assert!(ws.read("taskrun.lock").contains(&new));
}

#[test]
fn lock_prunes_entries_of_removed_tasks_and_inline_pins_win() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.run(&[]).code(0);
    // `b` goes away; `a` gets an inline pin of other content than its entry.
    http.route("/a.csv", Route::ok(&b"inline\n"[..]));
    ws.write(
        "taskrun.toml",
        &format!(
            "[tasks.a]\ndownload = {{ url = \"{}\", dest = \"data/a.csv\", sha256 = \"{}\" }}\n{ONE}\n",
            http.url("/a.csv"),
            sha(b"inline\n")
        ),
    );
    // The inline pin wins over the lockfile's entry.
    ws.run(&[]).code(0);
    assert_eq!(ws.read("data/a.csv"), "inline\n");
    let check = lock(&ws, &["--check"]);
    check.code(1);
    assert!(
        check
            .stdout
            .contains("would remove a: pinned inline in the manifest"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("would remove b: no such task"));

    // With a TARGET, only that task's entry is looked at: `b` stays.
    let out = lock(&ws, &["a"]);
    out.code(0);
    assert!(out.stdout.contains("removed a "), "{}", out.stdout);
    assert!(!out.stdout.contains("removed b"), "{}", out.stdout);
    assert!(ws.read("taskrun.lock").contains("task = \"b\""));

    let out = lock(&ws, &[]);
    out.code(0);
    assert!(
        out.stdout.contains(&format!(
            "removed b {} (no such task)",
            &sha(b"beta\n")[..12]
        )),
        "{}",
        out.stdout
    );
    // Nothing left to pin: no lockfile at all.
    assert!(!ws.path("taskrun.lock").exists());
}

#[test]
fn a_new_url_makes_the_entry_stale_also_through_var() {
    let http = Http::start();
    http.route("/v1/a.csv", Route::ok(&b"one\n"[..]));
    http.route("/v2/a.csv", Route::ok(&b"two\n"[..]));
    let ws = Workspace::new(&format!(
        "[vars]\ndir = \"v1\"\n{}",
        download("a", &http.url("/${vars.dir}/a.csv"), "data/a.csv")
    ));
    ws.run(&[]).code(0);
    assert!(ws.read("taskrun.lock").contains(&http.url("/v1/a.csv")));
    let run = ws.run(&["--var", "dir=v2"]);
    run.code(0);
    assert!(
        run.stdout.contains("pinned 1 new download in taskrun.lock"),
        "{}",
        run.stdout
    );
    assert_eq!(ws.read("data/a.csv"), "two\n");
    let lockfile = ws.read("taskrun.lock");
    assert!(lockfile.contains(&http.url("/v2/a.csv")), "{lockfile}");
    assert!(lockfile.contains(&sha(b"two\n")), "{lockfile}");
    assert!(!lockfile.contains(&http.url("/v1/a.csv")), "{lockfile}");

    // What to run next carries the `--var`: without it the pins would be another URL's.
    let check = lock(&ws, &["--check", "--var", "dir=v1"]);
    check.code(1);
    assert!(
        check
            .stdout
            .contains("run `taskrun lock taskrun.toml --var dir=v1`"),
        "{}",
        check.stdout
    );
    let refused = ws.run(&["--locked", "--var", "dir=v1 x"]);
    refused
        .code(2)
        .says(&["taskrun lock taskrun.toml --var 'dir=v1 x'"]);
}

#[test]
fn a_secret_in_the_url_is_kept_as_written_never_its_value() {
    let http = Http::start();
    http.route("/s.csv", Route::ok(&b"secret data\n"[..]));
    let ws = Workspace::new(&download(
        "s",
        &http.url("/s.csv?token=${secret.LOCK_TEST_TOKEN}"),
        "data/s.csv",
    ));
    let env = [("LOCK_TEST_TOKEN", "hunter2-value")];
    taskrun(&ws, &["taskrun.toml"], &env).code(0);
    assert!(http.requests("/s.csv")[0].target.contains("hunter2-value"));
    let lockfile = ws.read("taskrun.lock");
    assert!(
        lockfile.contains(&format!(
            "url = \"{}\"",
            http.url("/s.csv?token=${secret.LOCK_TEST_TOKEN}")
        )),
        "{lockfile}"
    );
    assert!(!lockfile.contains("hunter2"), "{lockfile}");
    // Another value of the secret is the same entry: still current, still cached.
    let env = [("LOCK_TEST_TOKEN", "other-value")];
    taskrun(&ws, &["taskrun.toml", "--locked"], &env).code(0);
    assert_eq!(http.hits("/s.csv"), 1);
}

#[test]
fn targets_pin_only_the_selected_downloads() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.run(&["a"]).code(0);
    let lockfile = ws.read("taskrun.lock");
    assert!(lockfile.contains("task = \"a\""));
    assert!(!lockfile.contains("task = \"b\""), "{lockfile}");
    let out = lock(&ws, &["b"]);
    out.code(0);
    assert!(out.stdout.starts_with("added   b "), "{}", out.stdout);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
}

#[test]
fn lock_stores_what_it_downloads_so_the_next_run_makes_no_request() {
    let http = Http::start();
    let ws = two_downloads(&http);
    ws.write(
        "taskrun.toml",
        &format!(
            "{}[tasks.both]\ndeps = [\"a\", \"b\"]\nrun = \"cat data/a.csv data/b.csv > both.txt\"\n",
            ws.read("taskrun.toml")
        ),
    );
    lock(&ws, &[]).code(0);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
    assert!(!ws.path("both.txt").exists(), "lock runs no command");
    assert_eq!(ws.report_count(), 0, "lock is not a run");
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    let run = ws.run(&["--locked"]);
    run.code(0);
    assert_eq!((http.hits("/a.csv"), http.hits("/b.csv")), (1, 1));
    assert_eq!(ws.read("both.txt"), "alpha\nbeta\n");
    let report = ws.last_report();
    assert_eq!(task(&report, "a")["status"], "cached");
}

#[test]
fn no_lockfile_without_anything_to_pin_and_a_failed_download_is_not_pinned() {
    let http = Http::start();
    http.route("/ok.csv", Route::ok(&b"ok\n"[..]));
    let ws = Workspace::new(&format!(
        "[tasks.p]\ndownload = {{ url = \"{}\", dest = \"data/p.csv\", sha256 = \"{}\" }}\n[tasks.c]\nrun = \"true\"\n",
        http.url("/ok.csv"),
        sha(b"ok\n")
    ));
    ws.run(&[]).code(0);
    assert!(!ws.path("taskrun.lock").exists());

    let ws = Workspace::new(&format!(
        "{}{}[pipeline]\nfail_fast = false\n",
        download("ok", &http.url("/ok.csv"), "data/ok.csv"),
        download("gone", &http.url("/missing.csv"), "data/gone.csv")
    ));
    http.route(
        "/missing.csv",
        Route::default().then(crate::fault_server::Fault::Status(404)),
    );
    let run = ws.run(&[]);
    run.code(1);
    assert!(
        run.stdout.contains("pinned 1 new download in taskrun.lock"),
        "{}",
        run.stdout
    );
    let lockfile = ws.read("taskrun.lock");
    assert!(lockfile.contains("task = \"ok\""));
    assert!(!lockfile.contains("gone"), "{lockfile}");
}
