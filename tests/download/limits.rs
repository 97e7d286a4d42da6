//! max_bytes, per-host limit, redirects, User-Agent and headers (issue 4 points 6-7).

use std::time::Duration;

use taskrun::actions::download::FailureKind;
use taskrun::model::HttpConfig;
use taskrun::template::Template;

use crate::fault_server::Route;
use crate::helpers::{Env, body};

#[tokio::test]
async fn max_bytes_refuses_a_larger_content_length_without_retry() {
    let env = Env::new().await;
    env.server.route("/big", Route::ok(body(10_001)));
    let mut dl = env.download(&["/big"], "big");
    dl.max_bytes = Some(10_000);
    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::TooLarge);
    assert!(fail.message.contains("max_bytes"), "{}", fail.message);
    assert!(fail.bytes < 10_001, "the body is not read: {}", fail.bytes);
    assert!(env.files().is_empty());
}

#[tokio::test]
async fn max_bytes_counts_received_bytes_when_no_length_is_announced() {
    let env = Env::new().await;
    env.server.route("/big", Route::ok(body(300_000)).chunked());
    let mut dl = env.download(&["/big"], "big");
    dl.max_bytes = Some(100_000);
    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::TooLarge);
    assert!(env.files().is_empty(), "{:?}", env.files());
}

#[tokio::test]
async fn max_bytes_allows_exactly_the_limit() {
    let env = Env::new().await;
    env.server.route("/ok", Route::ok(body(10_000)).chunked());
    let mut dl = env.download(&["/ok"], "ok");
    dl.max_bytes = Some(10_000);
    env.attempt(&dl).await.unwrap();
}

/// Six downloads from one host, each answer held until three requests are in flight (or all
/// six arrived, or a while passed). Returns the peak the server saw.
async fn peak_in_flight(max_per_host: usize, max_wait: Duration) -> usize {
    let cfg = HttpConfig {
        max_per_host,
        ..HttpConfig::default()
    };
    let env = Env::with_http(cfg).await;
    let mut dls = Vec::new();
    for i in 0..6 {
        let path = format!("/f{i}");
        env.server
            .route(&path, Route::ok(body(20_000)).hold_until(3, 6, max_wait));
        dls.push(env.download(&[&path], &format!("f{i}")));
    }
    let results = futures_join(dls.iter().map(|dl| env.attempt(dl))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    env.server.max_in_flight()
}

#[tokio::test]
async fn per_host_limit_is_enforced() {
    // With the limit a third request never arrives while two are held: the peak is exactly 2
    // however slow the machine (the hold only ends early for the last pair).
    assert_eq!(peak_in_flight(2, Duration::from_millis(300)).await, 2);
}

#[tokio::test]
async fn without_the_limit_the_same_server_sees_more() {
    // Proves the test above can fail: with room for 8, the held requests pile up.
    assert!(peak_in_flight(8, Duration::from_secs(10)).await >= 3);
}

async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out = Vec::new();
    // Poll all of them concurrently on this task.
    let mut pending: Vec<_> = set.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn follows_up_to_ten_redirects() {
    let env = Env::new().await;
    for i in 0..11 {
        env.server
            .route(&format!("/h{i}"), Route::redirect(format!("/h{}", i + 1)));
    }
    env.server.route("/h11", Route::ok(b"end".to_vec()));
    // /h1 -> ... -> /h11: ten redirects.
    let done = env.attempt(&env.download(&["/h1"], "r")).await.unwrap();
    assert_eq!(std::fs::read(env.dest("r")).unwrap(), b"end");
    assert_eq!(done.url, env.server.url("/h1"));
    // /h0 -> ... -> /h11: eleven.
    let fail = env
        .attempt(&env.download(&["/h0"], "r0"))
        .await
        .unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::Invalid);
    assert!(!env.dest("r0").exists());
}

#[tokio::test]
async fn sends_the_default_user_agent_and_task_headers() {
    let cfg = HttpConfig {
        user_agent: "taskrun-test/9".into(),
        ..HttpConfig::default()
    };
    let env = Env::with_http(cfg).await;
    env.server.route("/h", Route::ok(b"h".to_vec()));
    let mut dl = env.download(&["/h"], "h");
    dl.headers
        .insert("X-Thing".into(), Template::literal("one"));
    env.attempt(&dl).await.unwrap();
    let req = &env.server.requests("/h")[0];
    assert_eq!(req.header("user-agent"), Some("taskrun-test/9"));
    assert_eq!(req.header("x-thing"), Some("one"));
    // No Accept-Encoding: the bytes on disk are the bytes the pin is about.
    assert_eq!(req.header("accept-encoding"), None);
}

#[tokio::test]
async fn a_task_user_agent_wins() {
    let env = Env::new().await;
    env.server.route("/h", Route::ok(b"h".to_vec()));
    let mut dl = env.download(&["/h"], "h");
    dl.headers
        .insert("User-Agent".into(), Template::literal("mine/1"));
    env.attempt(&dl).await.unwrap();
    let req = &env.server.requests("/h")[0];
    assert_eq!(req.header("user-agent"), Some("mine/1"));
    assert_eq!(
        req.headers
            .iter()
            .filter(|(n, _)| n == "user-agent")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_default_user_agent_names_taskrun() {
    let env = Env::new().await;
    env.server.route("/h", Route::ok(b"h".to_vec()));
    env.attempt(&env.download(&["/h"], "h")).await.unwrap();
    let ua = env.server.requests("/h")[0]
        .header("user-agent")
        .unwrap()
        .to_string();
    assert!(ua.starts_with("taskrun/"), "{ua}");
}

#[tokio::test]
async fn the_timeout_bounds_waiting_for_headers_too() {
    let env = Env::new().await;
    // Holds until 5 requests are in flight (never): the answer is late by 5 s.
    env.server.route(
        "/slow",
        Route::ok(b"x".to_vec()).hold_until(5, 5, Duration::from_secs(5)),
    );
    let fail = env
        .attempt_with(
            &env.download(&["/slow"], "s"),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.kind, FailureKind::Timeout);
    assert!(env.files().is_empty());
}
