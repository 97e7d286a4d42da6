//! Streaming to a part file, the sha256 pin, parent dirs, progress (issue 4 points 1-2).

use taskrun::actions::download::{AttemptRequest, FailureKind, attempt};
use taskrun::cache::stat::FileStat;

use crate::fault_server::{Fault, Route};
use crate::helpers::{Env, ProgressLog, body, digest, sha};

#[tokio::test]
async fn streams_verifies_and_renames_into_place() {
    let env = Env::new().await;
    let data = body(3 * 1024 * 1024 + 17);
    env.server
        .route("/a.bin", Route::ok(data.clone()).etag("\"v1\""));
    let mut dl = env.download(&["/a.bin"], "deep/er/a.bin");
    dl.sha256 = Some(sha(&data));

    let done = env.attempt(&dl).await.unwrap();

    assert_eq!(std::fs::read(env.dest("deep/er/a.bin")).unwrap(), data);
    assert_eq!(digest(&done), sha(&data));
    assert_eq!(done.size, data.len() as u64);
    assert_eq!(done.bytes, data.len() as u64);
    assert_eq!(done.http_status, 200);
    assert_eq!(done.url, env.server.url("/a.bin"));
    assert_eq!(done.etag.as_deref(), Some("\"v1\""));
    assert_eq!(done.resumed_from, 0);
    // Only the file: no part files left behind.
    assert_eq!(env.files(), vec!["deep/er/a.bin"]);
    // The digest handed to the cache comes with the stat of the file in place.
    let written = done.written.unwrap();
    assert_eq!(written.path, env.dest("deep/er/a.bin"));
    let meta = std::fs::metadata(env.dest("deep/er/a.bin")).unwrap();
    assert_eq!(written.stat, FileStat::of(&meta));
}

/// Nobody needs the digest of an unpinned download that the cache will not record: the body
/// is only written. A pin is checked all the same.
#[tokio::test]
async fn without_pin_or_cache_nothing_is_handed_on_and_a_pin_still_checks() {
    let env = Env::new().await;
    let data = body(300_000);
    env.server.route("/u", Route::ok(data.clone()));
    let noop = |_| {};
    let request = |dl| AttemptRequest {
        download: dl,
        root: env.root(),
        attempt: 1,
        timeout: None,
        progress: &noop,
        keep_digest: false,
    };
    let dl = env.download(&["/u"], "u");
    let done = attempt(&env.client, request(&dl)).await.unwrap();
    assert_eq!(done.written, None);
    assert_eq!(std::fs::read(env.dest("u")).unwrap(), data);

    let mut pinned = env.download(&["/u"], "p");
    pinned.sha256 = Some(sha(b"other bytes"));
    let fail = attempt(&env.client, request(&pinned)).await.unwrap_err();
    assert_eq!(fail.kind, FailureKind::Checksum);
    assert!(fail.message.contains(&sha(&data)), "{}", fail.message);
    assert!(!env.dest("p").exists());
}

#[tokio::test]
async fn unpinned_chunked_body_without_length() {
    let env = Env::new().await;
    let data = body(200_000);
    env.server.route("/c", Route::ok(data.clone()).chunked());
    let done = env.attempt(&env.download(&["/c"], "c")).await.unwrap();
    assert_eq!(digest(&done), sha(&data));
    assert_eq!(std::fs::read(env.dest("c")).unwrap(), data);
}

#[tokio::test]
async fn progress_reports_growing_counts_up_to_the_total() {
    let env = Env::new().await;
    let data = body(1024 * 1024);
    env.server.route("/p", Route::ok(data.clone()));
    let dl = env.download(&["/p"], "p");
    let log = ProgressLog::default();
    let progress = |p| log.record(p);
    let req = AttemptRequest {
        download: &dl,
        root: env.root(),
        attempt: 1,
        timeout: None,
        progress: &progress,
        keep_digest: false,
    };
    attempt(&env.client, req).await.unwrap();
    let seen = log.0.lock().unwrap().clone();
    assert!(seen.len() >= 2);
    assert!(seen.windows(2).all(|w| w[0].received <= w[1].received));
    let last = seen.last().unwrap();
    assert_eq!(last.received, data.len() as u64);
    assert!(seen.iter().all(|p| p.total == Some(data.len() as u64)));
}

#[tokio::test]
async fn checksum_mismatch_is_retryable_names_both_digests_and_leaves_nothing() {
    let env = Env::new().await;
    let data = body(100_000);
    env.server.route(
        "/x",
        Route::ok(data.clone())
            .etag("\"e\"")
            .then(Fault::WrongBytes),
    );
    let mut dl = env.download(&["/x"], "x.bin");
    dl.sha256 = Some(sha(&data));

    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.kind, FailureKind::Checksum);
    let wrong: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
    assert!(fail.message.contains(&sha(&data)), "{}", fail.message);
    assert!(fail.message.contains(&sha(&wrong)), "{}", fail.message);
    assert_eq!(fail.bytes, data.len() as u64);
    // A mismatch discards the part file and its metadata too.
    assert!(env.files().is_empty(), "{:?}", env.files());

    // The next attempt starts from zero (no Range) and succeeds.
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(digest(&done), sha(&data));
    assert_eq!(env.server.requests("/x")[1].header("range"), None);
    assert_eq!(env.files(), vec!["x.bin"]);
}

#[tokio::test]
async fn success_replaces_an_existing_dest_atomically() {
    let env = Env::new().await;
    std::fs::write(env.dest("old"), b"old content").unwrap();
    env.server.route("/n", Route::ok(b"new content".to_vec()));
    env.attempt(&env.download(&["/n"], "old")).await.unwrap();
    assert_eq!(std::fs::read(env.dest("old")).unwrap(), b"new content");
}

#[tokio::test]
async fn the_attempt_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let env = Env::new().await;
    let dl = env.download(&["/nothing"], "n");
    let noop = |_| {};
    let fut = attempt(
        &env.client,
        AttemptRequest {
            download: &dl,
            root: env.root(),
            attempt: 1,
            timeout: None,
            progress: &noop,
            keep_digest: false,
        },
    );
    assert_send(&fut);
    drop(fut);
}
