//! Mirrors: tried in order within one attempt (issue 4 point 4).

use taskrun::actions::download::FailureKind;

use crate::fault_server::{Fault, Route};
use crate::helpers::{Env, body, sha};

#[tokio::test]
async fn falls_through_failing_mirrors_and_says_which_served() {
    let env = Env::new().await;
    let data = body(10_000);
    env.server
        .route("/m1", Route::ok(data.clone()).then(Fault::Status(404)));
    env.server
        .route("/m2", Route::ok(data.clone()).then(Fault::Status(503)));
    env.server.route("/m3", Route::ok(data.clone()));
    let mut dl = env.download(&["/m1", "/m2", "/m3"], "m");
    dl.sha256 = Some(sha(&data));
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(done.url, env.server.url("/m3"));
    assert_eq!(
        (
            env.server.hits("/m1"),
            env.server.hits("/m2"),
            env.server.hits("/m3")
        ),
        (1, 1, 1)
    );
    assert_eq!(env.files(), vec!["m"]);
}

#[tokio::test]
async fn a_wrong_checksum_from_one_mirror_passes_to_the_next() {
    let env = Env::new().await;
    let data = body(10_000);
    env.server
        .route("/bad", Route::ok(data.clone()).then(Fault::WrongBytes));
    env.server.route("/good", Route::ok(data.clone()));
    let mut dl = env.download(&["/bad", "/good"], "m");
    dl.sha256 = Some(sha(&data));
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(done.url, env.server.url("/good"));
    assert_eq!(
        done.bytes, 20_000,
        "bytes count every mirror of the attempt"
    );
}

#[tokio::test]
async fn the_first_mirror_serves_when_it_can() {
    let env = Env::new().await;
    env.server.route("/a", Route::ok(b"a".to_vec()));
    env.server.route("/b", Route::ok(b"b".to_vec()));
    let done = env
        .attempt(&env.download(&["/a", "/b"], "m"))
        .await
        .unwrap();
    assert_eq!(done.url, env.server.url("/a"));
    assert_eq!(env.server.hits("/b"), 0);
}

#[tokio::test]
async fn all_failing_is_retryable_if_any_was() {
    let env = Env::new().await;
    env.server
        .route("/a", Route::ok(b"a".to_vec()).then(Fault::Status(404)));
    env.server.route(
        "/b",
        Route::ok(b"b".to_vec()).then(Fault::RetryAfter(503, "3".into())),
    );
    env.server
        .route("/c", Route::ok(b"c".to_vec()).then(Fault::Status(403)));
    let fail = env
        .attempt(&env.download(&["/a", "/b", "/c"], "m"))
        .await
        .unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.retry_after, Some(std::time::Duration::from_secs(3)));
    // Described by the mirror that makes it worth retrying.
    assert_eq!(fail.url.as_deref(), Some(env.server.url("/b").as_str()));
    assert_eq!(fail.http_status, Some(503));
    assert_eq!(fail.kind, FailureKind::HttpStatus);
    for p in ["/a", "/b", "/c"] {
        assert!(
            fail.message.contains(&env.server.url(p)),
            "{}",
            fail.message
        );
    }
    assert!(env.files().is_empty());
}

#[tokio::test]
async fn all_failing_permanently_is_not_retryable() {
    let env = Env::new().await;
    let fail = env
        .attempt(&env.download(&["/nope1", "/nope2"], "m"))
        .await
        .unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::HttpStatus);
    assert_eq!(fail.http_status, Some(404));
}
