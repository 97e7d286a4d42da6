//! Retry classification exactly as SPEC §3 (issue 4 point 3).

use std::time::{Duration, SystemTime};

use taskrun::actions::download::FailureKind;

use crate::fault_server::{Fault, Route};
use crate::helpers::{Env, body, digest, sha};
use crate::refused::RefusedPort;

#[tokio::test]
async fn retryable_statuses_fail_retryably() {
    let env = Env::new().await;
    for code in [408, 425, 429, 500, 502, 503, 504] {
        let path = format!("/s{code}");
        env.server
            .route(&path, Route::ok(b"x".to_vec()).then(Fault::Status(code)));
        let fail = env.attempt(&env.download(&[&path], "f")).await.unwrap_err();
        assert!(fail.retryable, "{code}");
        assert_eq!(fail.http_status, Some(code));
        assert_eq!(fail.kind, FailureKind::HttpStatus);
        assert!(fail.message.contains(&code.to_string()), "{}", fail.message);
        assert!(env.files().is_empty());
    }
}

#[tokio::test]
async fn other_client_errors_fail_at_once_after_exactly_one_request() {
    let env = Env::new().await;
    for code in [400, 401, 403, 404, 405, 410, 416, 418, 451, 501, 505] {
        let path = format!("/s{code}");
        env.server
            .route(&path, Route::ok(b"x".to_vec()).then(Fault::Status(code)));
        let fail = env.attempt(&env.download(&[&path], "f")).await.unwrap_err();
        assert!(!fail.retryable, "{code}");
        assert_eq!(fail.http_status, Some(code));
        assert_eq!(env.server.hits(&path), 1, "{code}");
    }
    // An unknown path is a plain 404.
    let fail = env
        .attempt(&env.download(&["/missing"], "f"))
        .await
        .unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(env.server.hits("/missing"), 1);
    assert!(env.files().is_empty());
}

#[tokio::test]
async fn retry_after_in_seconds() {
    let env = Env::new().await;
    env.server.route(
        "/r",
        Route::ok(b"ok".to_vec()).then(Fault::RetryAfter(429, "7".into())),
    );
    let fail = env.attempt(&env.download(&["/r"], "r")).await.unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(fail.http_status, Some(429));
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    let env = Env::new().await;
    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    env.server.route(
        "/d",
        Route::ok(b"ok".to_vec()).then(Fault::RetryAfter(503, when)),
    );
    let fail = env.attempt(&env.download(&["/d"], "d")).await.unwrap_err();
    let wait = fail.retry_after.unwrap();
    // Whole-second dates: between 118 and 120 s from now, whatever the clock did meanwhile.
    assert!(
        wait <= Duration::from_secs(120) && wait >= Duration::from_secs(118),
        "{wait:?}"
    );
}

#[tokio::test]
async fn unavailable_first_n_times_then_served() {
    let env = Env::new().await;
    let data = body(5000);
    env.server
        .route("/u", Route::ok(data.clone()).times(2, Fault::Status(503)));
    let mut dl = env.download(&["/u"], "u");
    dl.sha256 = Some(sha(&data));
    assert!(env.attempt(&dl).await.unwrap_err().retryable);
    assert!(env.attempt(&dl).await.unwrap_err().retryable);
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(digest(&done), sha(&data));
    assert_eq!(env.server.hits("/u"), 3);
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let env = Env::new().await;
    let refused = RefusedPort::new(); // nothing listens there, nor will
    let addr = refused.addr();
    let dl = crate::helpers::download(vec![format!("http://{addr}/x")], "x");
    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.kind, FailureKind::Connection);
    assert_eq!(fail.http_status, None);
}

#[tokio::test]
async fn reset_without_answer_is_retryable() {
    let env = Env::new().await;
    env.server
        .route("/z", Route::ok(b"ok".to_vec()).then(Fault::Reset));
    let fail = env.attempt(&env.download(&["/z"], "z")).await.unwrap_err();
    assert!(fail.retryable, "{fail:?}");
    assert!(env.files().is_empty());
}

#[tokio::test]
async fn truncated_body_is_retryable_and_leaves_nothing_at_dest() {
    let env = Env::new().await;
    let data = body(300_000);
    env.server.route(
        "/t",
        Route::ok(data).etag("\"t\"").then(Fault::Truncate(120_000)),
    );
    let fail = env
        .attempt(&env.download(&["/t"], "t.bin"))
        .await
        .unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.kind, FailureKind::Truncated);
    assert_eq!(fail.bytes, 120_000);
    assert_eq!(fail.http_status, Some(200));
    assert_eq!(env.files(), vec!["t.bin.part", "t.bin.part.json"]);
}
