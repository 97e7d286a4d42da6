//! SIGINT / SIGTERM / SIGHUP: no new task, every process group stopped, report `interrupted`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Workspace, dies_soon, dies_soon_within, task};

const TREE: &str = r#"
[pipeline]
concurrency = 4

[tasks.tree]
run = "sleep 60 & echo $! > tree-grandchild.pid; echo $$$$ > tree.pid; wait"

[tasks.other]
run = ["sh", "-c", "sleep 60 & echo $! > other-grandchild.pid; wait"]

[tasks.after]
deps = ["tree"]
run = "touch after.ran"
"#;

fn wait_for_files(root: &Path, files: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !files
        .iter()
        .all(|f| std::fs::read_to_string(root.join(f)).is_ok_and(|s| s.ends_with('\n')))
    {
        assert!(Instant::now() < deadline, "tasks never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid(root: &Path, f: &str) -> i32 {
    std::fs::read_to_string(root.join(f))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Runs TREE with `args`, sends `sig` once every task runs, checks the run stopped as it
/// must; returns what taskrun printed.
fn interrupt_with(sig: i32, want_code: i32, args: &[&str]) -> String {
    let ws = Workspace::new(TREE);
    let child = ws
        .cmd(&["taskrun.toml"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids = ["tree.pid", "tree-grandchild.pid", "other-grandchild.pid"];
    wait_for_files(ws.root(), &pids);
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(want_code), "{out:?}");
    for f in pids {
        let p = pid(ws.root(), f);
        assert!(dies_soon(p), "{f} ({p}) survived");
    }
    let report = ws.last_report();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(task(&report, "tree")["status"], "cancelled");
    assert_eq!(task(&report, "other")["status"], "cancelled");
    assert_eq!(task(&report, "after")["status"], "cancelled");
    assert_eq!(task(&report, "tree")["attempts"][0]["outcome"], "cancelled");
    assert!(!ws.path("after.ran").exists());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sigint_stops_every_process_group_and_writes_the_report() {
    interrupt_with(libc::SIGINT, 130, &[]);
}

/// The live view holds the lines it prints above itself for a moment: an interrupted run
/// still prints every one of them, then its summary.
#[test]
fn sigint_under_the_live_view_prints_its_lines_and_the_summary() {
    let out = interrupt_with(libc::SIGINT, 130, &["--progress", "always"]);
    assert!(out.contains("=> SIGINT: stopping running tasks"), "{out}");
    assert!(out.contains("=> tree: cancelled"), "{out}");
    assert!(out.contains("interrupted: 3 tasks"), "{out}");
}

#[test]
fn sigterm_exits_143() {
    interrupt_with(libc::SIGTERM, 143, &[]);
}

/// A closed terminal (or `kill -HUP`) stops the run as SIGTERM does (issue 13, SPEC §8).
#[test]
fn sighup_stops_every_process_group_and_exits_129() {
    interrupt_with(libc::SIGHUP, 129, &[]);
}

#[test]
fn a_second_sigint_kills_at_once() {
    // The task ignores SIGTERM (and so does its sleep), so only SIGKILL stops it.
    let ws = Workspace::new(
        "[tasks.stubborn]\nrun = \"trap '' TERM; sleep 60 & echo $! > g.pid; wait; wait\"\n",
    );
    let mut child = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_files(ws.root(), &["g.pid"]);
    let stdout = child.stdout.take().unwrap();
    signal(&child, libc::SIGINT);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("SIGINT: stopping") {
            break;
        }
    }
    let sent = Instant::now();
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    // Well under the 5 s grace period the first SIGINT would have waited.
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert!(dies_soon(pid(ws.root(), "g.pid")));
    assert_eq!(ws.last_report()["status"], "interrupted");
}

/// SPEC §13: even a kill -9 of taskrun stops the commands it started (PR_SET_PDEATHSIG), so
/// nothing it ran keeps writing into the workspace after it is gone.
#[test]
fn a_kill_9_of_taskrun_stops_its_children() {
    let ws = Workspace::new(
        r#"
[pipeline]
concurrency = 2

[tasks.shell]
run = "echo $$$$ > shell.pid; exec sleep 60"

[tasks.argv]
run = ["sh", "-c", "echo $$$$ > argv.pid; exec sleep 60"]
"#,
    );
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids = ["shell.pid", "argv.pid"];
    wait_for_files(ws.root(), &pids);
    signal(&child, libc::SIGKILL);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed by a signal");
    for f in pids {
        let p = pid(ws.root(), f);
        assert!(dies_soon(p), "{f} ({p}) outlived taskrun");
    }
}

/// A remote cache that accepts a connection and never answers holds a lookup for as long as
/// its timeout (30 s): an interrupt does not wait for it. The tasks are `cancelled`, the run
/// is reported, and taskrun exits 130 at once.
#[test]
fn an_interrupt_does_not_wait_for_a_remote_cache_that_never_answers() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let ws = Workspace::new(&format!(
        "[cache]\nremote = \"http://{addr}/h\"\n\n[tasks.a]\noutputs = [\"a.txt\"]\nrun = \"echo a > a.txt\"\n"
    ));
    let mut child = ws
        .cmd(&["taskrun.toml", "--report", "r.json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the lookup is on the wire (held connections are never answered).
    let (held, _) = silent.accept().unwrap();
    signal(&child, libc::SIGINT);
    let sent = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "waited for the remote"
    );
    assert_eq!(status.code(), Some(130));
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(task(&report, "a")["status"], "cancelled");
    drop(held);
}

/// Ctrl-C while another taskrun holds the cache lock: the run ends as an interrupted run,
/// with its report (every task cancelled, not started), exit 130, at once.
#[test]
fn an_interrupt_while_waiting_for_the_cache_lock_is_reported() {
    let ws = Workspace::new("[tasks.t]\noutputs = [\"t.txt\"]\nrun = \"echo t > t.txt\"\n");
    let cache = ws.path("shared-cache");
    // Held by this test as another process would hold it.
    let held = taskrun::cache::lock::CacheLock::acquire(&cache).unwrap();
    let mut child = ws
        .cmd(&["taskrun.toml", "--report", "r.json"])
        .env("TASKRUN_CACHE_DIR", &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("waiting for another taskrun"), "{line}");
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(task(&report, "t")["status"], "cancelled");
    assert!(!ws.exists("t.txt"), "nothing ran");
    drop(held);
}

/// A service whose `run` needs no shell is exec'd directly, as a command is: the server is
/// taskrun's own child, which a kill -9 of taskrun stops (behind `sh -c` it outlived it).
#[test]
fn a_kill_9_of_taskrun_stops_a_service_started_from_plain_text() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "python3 -m http.server {port} --bind 127.0.0.1", ready = {{ tcp = "127.0.0.1:{port}" }} }}

[tasks.use]
deps = ["svc"]
run = "echo $PPID > use.pid; exec sleep 60"
"#
    ));
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_files(ws.root(), &["use.pid"]);
    signal(&child, libc::SIGKILL);
    child.wait_with_output().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "the service outlived taskrun");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A service that exits on its own once ready takes what it started with it (`server &
/// sleep 1`): its children do not outlive the run (SPEC §13), as they did.
#[test]
fn what_a_service_started_goes_when_it_exits_on_its_own() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ws = Workspace::new(&format!(
        "[tasks.svc]\nservice = {{ run = \"sleep 60 & echo $! > s.pid; sleep 0.3\", ready = {{ tcp = \"127.0.0.1:{port}\" }} }}\n\
         [tasks.d]\ndeps = [\"svc\"]\nrun = \"sleep 1\"\n"
    ));
    ws.run(&["-k"]).code(1);
    let p = pid(ws.root(), "s.pid");
    assert!(dies_soon(p), "s.pid ({p}) outlived its service");
    drop(listener);
}

/// What a command leaves running in its group (`cmd &`) is stopped when the command ends:
/// it would go on changing the outputs after they were recorded, and outlive the run.
#[test]
fn a_background_process_a_command_leaves_is_stopped_when_it_ends() {
    let ws = Workspace::new(
        r#"
[tasks.a]
run = "echo early > x.txt; (sleep 2; echo late >> x.txt) & echo $! > bg.pid"
outputs = ["x.txt"]

[tasks.f]
run = "sleep 60 & echo $! > f.pid; exit 1"
"#,
    );
    ws.run(&["-k"]).code(1);
    for f in ["bg.pid", "f.pid"] {
        let p = pid(ws.root(), f);
        assert!(dies_soon(p), "{f} ({p}) outlived its task");
    }
    assert_eq!(ws.read("x.txt"), "early\n");
    // A process that left the group (`setsid`) is not the task's: it outlives it.
    ws.write(
        "taskrun.toml",
        "[tasks.d]\nrun = \"setsid sh -c 'echo $$$$ > d.pid; exec sleep 30' > /dev/null 2>&1 & \
         while [ ! -s d.pid ]; do sleep 0.01; done\"\n",
    );
    ws.run(&[]).code(0);
    let daemon = pid(ws.root(), "d.pid");
    assert!(
        !dies_soon_within(daemon, Duration::from_millis(500)),
        "setsid's process was killed"
    );
    // SAFETY: stopping the test's own stray process.
    unsafe {
        libc::kill(daemon, libc::SIGKILL);
    }
}

/// An interrupt while a service waits to become ready stops it, and it is `cancelled` (SPEC
/// §6: stopped because the run stopped), as is its dependent, which never started (§8): not
/// `failed` and `skipped`, and the run counts no failure.
#[test]
fn an_interrupt_while_a_service_starts_cancels_it_and_its_dependent() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let nobody = crate::refused::RefusedPort::new();
        let ws = Workspace::new(&format!(
            r#"
[tasks.svc]
service = {{ run = "echo $$$$ > svc.pid; exec sleep 48", ready = {{ tcp = "{}" }}, ready_timeout = "60s" }}

[tasks.user]
deps = ["svc"]
run = "touch user.ran"
"#,
            nobody.addr()
        ));
        let child = ws
            .cmd(&["taskrun.toml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_files(ws.root(), &["svc.pid"]);
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let report = ws.last_report();
        assert_eq!(report["status"], "interrupted");
        let svc = task(&report, "svc");
        assert_eq!(svc["status"], "cancelled", "{svc:#}");
        let error = svc["error"].as_str().unwrap_or_default();
        assert!(error.contains("interrupted before it was ready"), "{svc:#}");
        assert_eq!(task(&report, "user")["status"], "cancelled");
        let s = &report["summary"];
        assert_eq!(
            (s["failed"].as_u64(), s["cancelled"].as_u64()),
            (Some(0), Some(2))
        );
        assert!(!ws.exists("user.ran"));
        assert!(dies_soon(pid(ws.root(), "svc.pid")), "the service survived");
    }
}
