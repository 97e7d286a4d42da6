//! `${secret.*}` values reach the server and nothing else (issue 4 point 6).

use std::sync::Once;

use taskrun::actions::download::FailureKind;
use taskrun::template::{Segment, Template};

use crate::fault_server::{Fault, Route};
use crate::helpers::{Env, body};
use crate::refused::RefusedPort;

const TOKEN: &str = "tok-9f8e7d6c5b4a";
const KEY: &str = "key/with spaces&=";

fn set_secrets() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any test of this binary reads these variables; no other
        // code in this process reads or writes them.
        unsafe {
            std::env::set_var("TASKRUN_DL_TEST_TOKEN", TOKEN);
            std::env::set_var("TASKRUN_DL_TEST_KEY", KEY);
        }
    });
}

fn secret(prefix: &str, name: &str) -> Template {
    Template::from_segments([
        Segment::Literal(prefix.into()),
        Segment::Secret(name.into()),
    ])
}

fn encoded(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn assert_clean(text: &str) {
    for s in [TOKEN, KEY, &encoded(KEY)] {
        assert!(!text.contains(s), "secret leaked: {text}");
    }
}

#[tokio::test]
async fn secrets_are_sent_but_never_shown_or_written() {
    set_secrets();
    let env = Env::new().await;
    let data = body(100_000);
    env.server.route(
        "/s",
        Route::ok(data.clone())
            .etag("\"s\"")
            .then(Fault::Truncate(1000)),
    );
    env.server.route(
        "/gone",
        Route::ok(b"x".to_vec()).times(2, Fault::Status(503)),
    );
    let mut dl = env.download(&[], "out/s.bin");
    dl.urls = vec![
        Template::from_segments([
            Segment::Literal(env.server.url("/gone?key=")),
            Segment::Secret("TASKRUN_DL_TEST_KEY".into()),
        ]),
        secret(&env.server.url("/s?token="), "TASKRUN_DL_TEST_TOKEN"),
    ];
    dl.headers.insert(
        "Authorization".into(),
        secret("Bearer ", "TASKRUN_DL_TEST_TOKEN"),
    );

    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(fail.retryable);
    assert_clean(&fail.message);
    assert_clean(&format!("{fail:?}"));
    assert_clean(fail.url.as_deref().unwrap());
    assert!(fail.url.as_deref().unwrap().ends_with("token=***"));
    // The resume metadata holds the redacted URL only.
    let meta = std::fs::read_to_string(env.dest("out/s.bin.part.json")).unwrap();
    assert_clean(&meta);

    let done = env.attempt(&dl).await.unwrap();
    assert_clean(&done.url);
    assert_clean(&format!("{done:?}"));
    assert_eq!(done.url, env.server.url("/s?token=***"));
    let req = &env.server.requests("/s")[1];
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(req.target, format!("/s?token={TOKEN}"));
    // Every file written under the workspace is free of secrets.
    for file in env.files() {
        if file.ends_with(".json") {
            assert_clean(&std::fs::read_to_string(env.dest(&file)).unwrap());
        }
    }
    assert_eq!(env.files(), vec!["out/s.bin"]);
}

#[tokio::test]
async fn a_connection_error_does_not_leak_the_url_secret() {
    set_secrets();
    let env = Env::new().await;
    let refused = RefusedPort::new(); // nothing listens there, nor will
    let addr = refused.addr();
    let mut dl = env.download(&[], "x");
    dl.urls = vec![secret(
        &format!("http://{addr}/x?token="),
        "TASKRUN_DL_TEST_TOKEN",
    )];
    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(fail.retryable);
    assert_clean(&fail.message);
    assert_clean(&format!("{fail:?}"));
}

#[tokio::test]
async fn a_missing_secret_fails_at_once_with_a_clear_message() {
    let env = Env::new().await;
    env.server.route("/m", Route::ok(b"m".to_vec()));
    let mut dl = env.download(&["/m"], "m");
    dl.headers.insert(
        "Authorization".into(),
        secret("Bearer ", "TASKRUN_DL_TEST_UNSET_XYZ"),
    );
    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::MissingSecret);
    assert!(
        fail.message.contains("TASKRUN_DL_TEST_UNSET_XYZ"),
        "{}",
        fail.message
    );
    assert_eq!(env.server.hits("/m"), 0);
}
