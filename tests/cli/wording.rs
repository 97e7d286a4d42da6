//! Download errors in plain words through the real binary (issue 14 bug 9): the server and
//! what happened, not hyper's chain; the retry decision is unchanged.

use serde_json::Value;

use crate::fault_server::{Fault, Route};
use crate::http::{Http, body};
use crate::refused::RefusedPort;
use crate::support::{Workspace, task};

/// Fast, deterministic retries: waits of 20 ms then 40 ms.
const FAST_RETRY: &str =
    r#"retry = { max_attempts = 3, initial_delay = "20ms", factor = 2.0, jitter = "none" }"#;

fn errors(t: &Value) -> Vec<&str> {
    t["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["error"].as_str())
        .collect()
}

/// No hyper chain in a message: "connection refused by 127.0.0.1:PORT", not "client error
/// (Connect): tcp connect error: Connection refused (os error 111)".
fn assert_plain(error: &str) {
    for jargon in [
        "client error",
        "tcp connect error",
        "os error",
        "hyper",
        "(Connect)",
    ] {
        assert!(!error.contains(jargon), "{jargon:?} in {error:?}");
    }
}

#[test]
fn a_refused_connection_is_said_plainly_and_still_retried() {
    let refused = RefusedPort::new(); // nothing listens there, nor will
    let addr = refused.addr();
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"http://{addr}/x\", dest = \"x\" }}\n{FAST_RETRY}\n"
    ));
    let run = ws.run(&[]);
    run.code(1);
    let t = task(&ws.last_report(), "get").clone();
    assert_eq!(
        t["attempts"].as_array().unwrap().len(),
        3,
        "still retried: {t}"
    );
    for e in errors(&t) {
        assert!(e.contains(&format!("connection refused by {addr}")), "{e}");
        assert_plain(e);
    }
    assert!(
        run.stdout
            .contains(&format!("connection refused by {addr}"))
    );
}

#[test]
fn a_reset_and_a_cut_body_are_said_plainly_and_still_retried() {
    let http = Http::start();
    let data = body(200_000);
    http.route(
        "/r.bin",
        Route::ok(data.clone())
            .then(Fault::Reset)
            .then(Fault::Truncate(50_000)),
    );
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"r.bin\" }}\n{FAST_RETRY}\n",
        http.url("/r.bin")
    ));
    ws.run(&[]).code(0);
    let t = task(&ws.last_report(), "get").clone();
    let errors = errors(&t);
    assert_eq!(errors.len(), 2, "{t}");
    let addr = http.addr();
    assert!(
        errors[0].contains(&format!("{addr} closed the connection")),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("after 50000 bytes"), "{}", errors[1]);
    for e in errors {
        assert_plain(e);
    }
}
