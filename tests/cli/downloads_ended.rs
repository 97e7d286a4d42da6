//! How a download attempt that got an answer ends in the report and the run (SPEC §3, §4,
//! §6): the HTTP status of a body cut short by the task's `timeout`, and `revalidate = true`
//! when the origin answers the revalidation with an error.

use crate::fault_server::{Fault, Route};
use crate::http::{Http, body};
use crate::support::{Workspace, task};

/// A 200 whose body the task's `timeout` cuts short: the attempt is `timed_out` with the
/// status that arrived (it was null), as one cut by `read_timeout` is.
#[test]
fn a_body_cut_by_the_task_timeout_keeps_its_http_status() {
    let http = Http::start();
    http.route(
        "/slow.bin",
        Route::ok(body(1_000_000)).then(Fault::Stall(300_000)),
    );
    let ws = Workspace::new(&format!(
        "[tasks.get]\ntimeout = \"1s\"\nretry = 1\ndownload = {{ url = \"{}\", dest = \"slow.bin\" }}\n",
        http.url("/slow.bin")
    ));
    ws.run(&[]).code(1);
    let report = ws.last_report();
    let attempt = &task(&report, "get")["attempts"][0];
    assert_eq!(attempt["outcome"], "timed_out", "{attempt}");
    assert_eq!(attempt["http_status"], 200, "{attempt}");
    assert!(!ws.path("slow.bin").exists());
}

/// Revalidation (SPEC §4): 304 reuses the file, 200 downloads anew. An origin that cannot
/// say (5xx) leaves the cached file in use with a line saying so; one that answers that the
/// file is gone (404) fails the task like any 4xx (SPEC §3), where it was `cached`, exit 0.
#[test]
fn revalidation_answered_with_404_fails_and_with_503_keeps_the_cached_file() {
    let http = Http::start();
    http.route("/r.csv", Route::ok(&b"v1\n"[..]).etag("\"one\""));
    let ws = Workspace::new(&format!(
        "[tasks.get]\nretry = 1\ndownload = {{ url = \"{}\", dest = \"r.csv\", revalidate = true }}\n",
        http.url("/r.csv")
    ));
    ws.run(&[]).code(0);
    http.route(
        "/r.csv",
        Route::ok(&b"v1\n"[..]).times(5, Fault::Status(503)),
    );
    let r = ws.run(&[]);
    r.code(0);
    assert!(
        r.all()
            .contains("revalidation failed, using the cached file"),
        "{}",
        r.all()
    );
    assert_eq!(task(&ws.last_report(), "get")["status"], "cached");
    http.route("/r.csv", Route::ok(&b""[..]).times(5, Fault::Status(404)));
    let r = ws.run(&[]);
    r.code(1);
    let report = ws.last_report();
    let get = task(&report, "get");
    assert_eq!(get["status"], "failed", "{get}");
    assert_eq!(get["attempts"][0]["http_status"], 404, "{get}");
    assert!(get["error"].as_str().unwrap().contains("404"), "{get}");
}
