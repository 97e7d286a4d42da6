//! Service tasks: started before dependents, ready by probe, stopped when no longer needed.

use std::net::TcpListener;

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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens: the service exits before it is ready
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
    let user = task(&report, "user");
    assert_eq!(user["status"], "skipped");
    assert!(user["error"].as_str().unwrap().contains("svc"), "{user}");
    assert!(!ws.path("user.ran").exists());
}

#[test]
fn a_service_never_ready_fails_after_its_ready_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
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
