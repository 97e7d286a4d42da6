//! Service tasks: started before dependents, ready by probe, stopped when no longer needed.

use std::net::TcpListener;

use crate::refused::RefusedPort;
use crate::support::{Workspace, dies_soon, task};

/// The tests' listener is "ready" before the service's shell has run its first line, and a
/// service is stopped as soon as its last dependent ends: dependents that look at what the
/// service wrote first wait (up to 5 s) for it, as they would for a real server's socket.
const WAIT_PID: &str = "for i in $(seq 500); do [ -s svc.pid ] && break; sleep 0.01; done; ";
const WAIT_STARTS: &str = "for i in $(seq 500); do [ -s svc.starts ] && break; sleep 0.01; done; ";

/// The service's readiness is served by the test itself (a bound listener), so no port is
/// picked and bound later.
#[test]
fn a_service_is_ready_before_dependents_and_stopped_after_them() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "echo $$$$ > svc.pid; exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}

[tasks.use1]
deps = ["svc"]
run = "{WAIT_PID}kill -0 $(cat svc.pid) && touch use1.ok"

[tasks.use2]
deps = ["svc", "use1"]
run = "{WAIT_PID}kill -0 $(cat svc.pid) && touch use2.ok"
"#
    ));
    ws.run(&[]).code(0);
    assert!(ws.path("use1.ok").exists() && ws.path("use2.ok").exists());
    let pid: i32 = ws.read("svc.pid").trim().parse().unwrap();
    assert!(dies_soon(pid), "service {pid} still running");
    let report = ws.last_report();
    assert_eq!(task(&report, "svc")["status"], "succeeded");
    assert_eq!(task(&report, "svc")["kind"], "service");
    drop(listener);
}

#[test]
fn a_service_that_exits_early_fails_and_its_dependents_are_skipped() {
    let refused = RefusedPort::new(); // nothing listens there, nor will
    let addr = refused.addr();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "exit 3", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}

[tasks.user]
deps = ["svc"]
run = "touch user.ran"
"#
    ));
    ws.run(&[]).code(1);
    let report = ws.last_report();
    let svc = task(&report, "svc");
    assert_eq!(svc["status"], "failed");
    assert!(
        svc["error"]
            .as_str()
            .unwrap()
            .contains("exited before it was ready"),
        "{svc}"
    );
    // SPEC §6: the attempt has the exit code the message names.
    assert_eq!(svc["attempts"][0]["exit_code"], 3, "{svc}");
    assert_eq!(svc["exit_code"], 3, "{svc}");
    let user = task(&report, "user");
    assert_eq!(user["status"], "skipped");
    assert!(user["error"].as_str().unwrap().contains("svc"), "{user}");
    assert!(!ws.path("user.ran").exists());
}

#[test]
fn a_service_never_ready_fails_after_its_ready_timeout() {
    let refused = RefusedPort::new(); // nothing listens there, nor will
    let addr = refused.addr();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "echo $$$$ > svc.pid; exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "300ms" }}

[tasks.user]
deps = ["svc"]
run = "true"
"#
    ));
    ws.run(&[]).code(1);
    let report = ws.last_report();
    assert!(
        task(&report, "svc")["error"]
            .as_str()
            .unwrap()
            .contains("not ready within 300ms")
    );
    assert_eq!(task(&report, "user")["status"], "skipped");
    let pid: i32 = ws.read("svc.pid").trim().parse().unwrap();
    assert!(dies_soon(pid));
}

#[test]
fn a_url_probe_accepts_any_status_below_500() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // Answer a few probes with 404, which counts as ready.
        for stream in listener.incoming().take(1) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "exec sleep 60", ready = {{ url = "http://{addr}/health" }} }}

[tasks.user]
deps = ["svc"]
run = "touch user.ran"
"#
    ));
    ws.run(&[]).code(0);
    assert!(ws.path("user.ran").exists());
    server.join().unwrap();
}

/// SPEC §2: a service is not started when every dependent is cached; it is then `cached`.
/// When one dependent misses, the service starts for it and the hits never wait for it.
#[test]
fn a_service_starts_only_when_a_dependent_misses_the_cache() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "echo started >> svc.starts; exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}

[tasks.a]
deps = ["svc"]
inputs = ["a.in"]
outputs = ["a.out"]
run = "{WAIT_STARTS}cp a.in a.out"

[tasks.b]
deps = ["svc"]
inputs = ["b.in"]
outputs = ["b.out"]
run = "{WAIT_STARTS}cp b.in b.out"
"#
    ));
    ws.write("a.in", "a1").write("b.in", "b1");
    ws.run(&[]).code(0);
    assert_eq!(ws.read("svc.starts").lines().count(), 1);

    // The plan counts it as the run will find it: nothing to run.
    let plan = ws.exec(&["plan", "taskrun.toml"]);
    plan.code(0).says(&["3 tasks in 2 levels, 0 to run"]);
    ws.run(&[]).code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "svc")["status"], "cached");
    assert_eq!(task(&report, "a")["status"], "cached");
    assert_eq!(
        ws.read("svc.starts").lines().count(),
        1,
        "all dependents hit: no start"
    );

    ws.write("b.in", "b2");
    ws.run(&[]).code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "svc")["status"], "succeeded");
    assert_eq!(task(&report, "a")["status"], "cached");
    assert_eq!(task(&report, "b")["status"], "succeeded");
    assert_eq!(ws.read("b.out"), "b2");
    assert_eq!(
        ws.read("svc.starts").lines().count(),
        2,
        "b missed: the service started"
    );
    drop(listener);
}

/// Issue 14: with `--no-cache` or `--force` a dependent is not looked up in the cache, and
/// the service it needs must start all the same (it was left on standby: "connection
/// refused", and the service reported `cached`).
#[test]
fn no_cache_and_force_still_start_the_services_their_tasks_need() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "echo $$$$ > svc.pid; exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}

[tasks.user]
deps = ["svc"]
outputs = ["user.out"]
run = "{WAIT_PID}kill -0 $(cat svc.pid) && echo ran > user.out"
"#
    ));
    for flags in [&["--no-cache"][..], &["--force"], &[]] {
        std::fs::remove_file(ws.path("svc.pid")).ok();
        ws.run(flags).code(0);
        let report = ws.last_report();
        let want = if flags.is_empty() {
            "cached"
        } else {
            "succeeded"
        };
        assert_eq!(task(&report, "svc")["status"], want, "{flags:?}");
        assert_eq!(task(&report, "user")["status"], want, "{flags:?}");
    }
    assert_eq!(ws.read("user.out"), "ran\n");
    drop(listener);
}

/// A probe server that says "not ready" (503) until `marker` exists: the service decides
/// when it is up, with no port picked and bound later.
fn ready_when(marker: std::path::PathBuf) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let status = if marker.exists() {
                "200 OK"
            } else {
                "503 Busy"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    addr
}

/// Issue 14 bug 2: a task's time (and a download's rate) starts when the task starts, not
/// when it asked the cache and then waited for its service to come up.
#[test]
fn a_tasks_duration_does_not_include_its_services_start_up() {
    let http = crate::http::Http::start();
    http.route(
        "/small.bin",
        crate::fault_server::Route::ok(vec![7u8; 3072]),
    );
    let dir = tempfile::tempdir().unwrap();
    let addr = ready_when(dir.path().join("up"));
    let marker = dir.path().join("up");
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "sleep 1.2; touch '{}'; exec sleep 60", ready = {{ url = "http://{addr}/" }}, ready_timeout = "10s" }}

[tasks.get]
deps = ["svc"]
download = {{ url = "{}", dest = "small.bin" }}

[tasks.cmd]
deps = ["svc"]
run = "true"
"#,
        marker.display(),
        http.url("/small.bin")
    ));
    ws.run(&[]).code(0);
    let report = ws.last_report();
    let svc_ms = task(&report, "svc")["duration_ms"].as_u64().unwrap();
    assert!(svc_ms >= 1200, "service took {svc_ms} ms");
    for name in ["get", "cmd"] {
        let ms = task(&report, name)["duration_ms"].as_u64().unwrap();
        assert!(ms < 1000, "{name} reports {ms} ms: the service's start-up");
    }
}

/// A revalidating download served by a service asks its origin on a cache hit, so the
/// service is started for it (an all-cached run would otherwise never start it, the
/// revalidation would fail, and the stale file would be kept as `cached`).
#[test]
fn a_revalidating_download_starts_the_service_that_serves_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new(&format!(
        r#"
[tasks.srv]
service = {{ run = "exec python3 -m http.server {port} --bind 127.0.0.1 --directory www", ready = {{ url = "http://127.0.0.1:{port}/" }}, ready_timeout = "20s" }}

[tasks.get]
deps = ["srv"]
download = {{ url = "http://127.0.0.1:{port}/a.txt", dest = "raw/a.txt", revalidate = true }}

[tasks.use]
deps = ["get"]
inputs = ["raw/a.txt"]
outputs = ["u.txt"]
run = "cat raw/a.txt > u.txt"
"#
    ));
    ws.write("www/a.txt", "v1\n");
    ws.run(&["-q"]).code(0);
    // The hit asks its origin: the plan counts the service it needs as to run.
    ws.exec(&["plan", "taskrun.toml"])
        .code(0)
        .says(&["1 to run"]);
    ws.run(&["-q"]).code(0);
    assert_eq!(task(&ws.last_report(), "get")["status"], "cached", "304");
    // A new version with a later Last-Modified (http.server's validator, in seconds).
    ws.write("www/a.txt", "v2\n");
    std::fs::File::options()
        .write(true)
        .open(ws.path("www/a.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
    ws.run(&["-q"]).code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "srv")["status"], "succeeded");
    assert_eq!(task(&report, "get")["status"], "succeeded");
    assert_eq!(ws.read("u.txt"), "v2\n");
}

/// A service none of whose dependents ran (its one dependent was skipped: the dependent's
/// other dependency failed) never started, and nothing came from the cache: it is not
/// `cached` (SPEC §2: only when every dependent is). Under fail-fast it is `cancelled`, as
/// every task the stopped run never started (SPEC §8); under `--keep-going` the run did not
/// stop, and it is `skipped`: the failure is why nothing needed it. Also when the service's
/// own dependency ends after its dependent was skipped.
#[test]
fn a_service_whose_dependents_did_not_run_is_not_cached() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let service = format!(
        r#"service = {{ run = "echo started >> svc.starts; exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}"#
    );
    let plain = format!("[tasks.svc]\n{service}\n");
    let after_slow =
        format!("[tasks.slow]\nrun = \"sleep 0.5\"\n\n[tasks.svc]\ndeps = [\"slow\"]\n{service}\n");
    for head in [plain, after_slow] {
        let ws = Workspace::new(&format!(
            "{head}\n[tasks.bad]\nrun = \"exit 1\"\n\n[tasks.x]\ndeps = [\"svc\", \"bad\"]\nrun = \"touch x.ran\"\n"
        ));
        for (flags, want) in [(&["-k"][..], "skipped"), (&[], "cancelled")] {
            ws.run(flags).code(1);
            let report = ws.last_report();
            let svc = task(&report, "svc");
            assert_eq!(svc["status"], want, "{flags:?} {head}\n{svc:#}");
            assert_eq!(svc["cache_hit"], false);
            assert!(svc["error"].is_string(), "it says why: {svc:#}");
            assert_eq!(task(&report, "x")["status"], "skipped");
            assert_eq!(report["summary"]["cached"], 0, "{flags:?} {head}");
            assert!(!ws.exists("svc.starts") && !ws.exists("x.ran"));
        }
    }
    drop(listener);
}

/// A URL probe says what it last got: a server that takes the connection and never answers
/// "got no answer" (it did not answer "no status below 500"), and one that answers 503 says
/// so.
#[test]
fn a_url_probe_says_whether_it_got_no_answer_or_a_5xx() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let quiet = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        // Takes every connection and holds it, unanswered.
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let dir = tempfile::tempdir().unwrap();
    let busy = ready_when(dir.path().join("never"));
    let ws = Workspace::new(&format!(
        r#"
[tasks.quiet]
service = {{ run = "exec sleep 60", ready = {{ url = "http://{quiet}/health" }}, ready_timeout = "2s" }}

[tasks.busy]
service = {{ run = "exec sleep 60", ready = {{ url = "http://{busy}/health" }}, ready_timeout = "2s" }}

[tasks.user]
deps = ["quiet", "busy"]
run = "true"
"#
    ));
    ws.run(&["-k"]).code(1);
    let report = ws.last_report();
    let error = |name: &str| task(&report, name)["error"].as_str().unwrap().to_string();
    let quiet = error("quiet");
    assert!(quiet.contains("not ready within 2s"), "{quiet}");
    assert!(quiet.contains("got no answer"), "{quiet}");
    assert!(!quiet.contains("status below 500"), "{quiet}");
    let busy = error("busy");
    assert!(busy.contains("answered 503"), "{busy}");
}

/// A service named as the only TARGET is run for itself (started, ready, stopped), as one
/// that no task needs is: it was left unstarted and reported as stopped by fail-fast in a
/// run that succeeded.
#[test]
fn a_service_selected_without_its_dependents_runs_for_itself() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ws = Workspace::new(&format!(
        r#"
[tasks.svc]
service = {{ run = "echo $$$$ > svc.pid; exec sleep 60", ready = {{ tcp = "{addr}" }}, ready_timeout = "5s" }}

[tasks.use]
deps = ["svc"]
run = "touch use.ran"
"#
    ));
    let r = ws.run(&["svc"]);
    r.code(0);
    assert_eq!(
        task(&ws.last_report(), "svc")["status"],
        "succeeded",
        "{}",
        r.stdout
    );
    assert!(!ws.path("use.ran").exists());
    assert!(!r.stdout.contains("fail-fast"), "{}", r.stdout);
    drop(listener);
}
