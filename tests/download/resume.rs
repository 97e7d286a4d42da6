//! Resume with Range + If-Range, restarts, interrupts and timeouts (issue 4 points 1 and 5).

use std::time::Duration;

use taskrun::actions::download::{FailureKind, HttpClient};
use taskrun::model::HttpConfig;

use crate::fault_server::{Fault, Route};
use crate::helpers::{Env, body, digest, sha};

fn part_json(env: &Env, dest: &str) -> serde_json::Value {
    let text = std::fs::read(env.dest(&format!("{dest}.part.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn part_json_bytes(env: &Env, dest: &str) -> Option<serde_json::Value> {
    let text = std::fs::read(env.dest(&format!("{dest}.part.json"))).ok()?;
    serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .map(|v| v["bytes"].clone())
}

#[tokio::test]
async fn truncated_transfer_continues_with_range_and_if_range() {
    let env = Env::new().await;
    let data = body(500_000);
    env.server.route(
        "/r",
        Route::ok(data.clone())
            .etag("\"v7\"")
            .then(Fault::Truncate(200_000)),
    );
    let mut dl = env.download(&["/r"], "r.bin");
    dl.sha256 = Some(sha(&data));

    let fail = env.attempt(&dl).await.unwrap_err();
    assert!(fail.retryable);
    assert!(!env.dest("r.bin").exists());
    let meta = part_json(&env, "r.bin");
    assert_eq!(meta["etag"], "\"v7\"");
    assert_eq!(meta["bytes"], 200_000);
    assert_eq!(meta["url"], env.server.url("/r"));

    let done = env.attempt(&dl).await.unwrap();
    let second = &env.server.requests("/r")[1];
    assert_eq!(second.header("range"), Some("bytes=200000-"));
    assert_eq!(second.header("if-range"), Some("\"v7\""));
    assert_eq!(done.http_status, 206);
    assert_eq!(done.resumed_from, 200_000);
    assert_eq!(done.bytes, 300_000, "only this attempt's bytes");
    assert_eq!(digest(&done), sha(&data));
    assert_eq!(std::fs::read(env.dest("r.bin")).unwrap(), data);
    assert_eq!(env.files(), vec!["r.bin"]);
}

#[tokio::test]
async fn last_modified_is_the_validator_without_an_etag() {
    let env = Env::new().await;
    let data = body(50_000);
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    env.server.route(
        "/l",
        Route::ok(data.clone())
            .last_modified(date)
            .then(Fault::Truncate(10)),
    );
    let dl = env.download(&["/l"], "l");
    env.attempt(&dl).await.unwrap_err();
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(env.server.requests("/l")[1].header("if-range"), Some(date));
    assert_eq!(done.http_status, 206);
    assert_eq!(std::fs::read(env.dest("l")).unwrap(), data);
}

#[tokio::test]
async fn a_server_answering_200_to_a_range_restarts_cleanly() {
    let env = Env::new().await;
    let data = body(400_000);
    env.server.route(
        "/i",
        Route::ok(data.clone())
            .etag("\"a\"")
            .ignore_ranges()
            .then(Fault::Truncate(150_000)),
    );
    let mut dl = env.download(&["/i"], "i");
    dl.sha256 = Some(sha(&data));
    env.attempt(&dl).await.unwrap_err();
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(
        env.server.requests("/i")[1].header("range"),
        Some("bytes=150000-")
    );
    assert_eq!(done.http_status, 200);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(env.dest("i")).unwrap(), data);
}

#[tokio::test]
async fn a_changed_resource_fails_if_range_and_is_fetched_whole() {
    let env = Env::new().await;
    let old = body(100_000);
    env.server.route(
        "/c",
        Route::ok(old).etag("\"old\"").then(Fault::Truncate(60_000)),
    );
    let dl = env.download(&["/c"], "c");
    env.attempt(&dl).await.unwrap_err();
    let new = body(70_000).into_iter().rev().collect::<Vec<u8>>();
    env.server
        .route("/c", Route::ok(new.clone()).etag("\"new\""));
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(done.http_status, 200);
    assert_eq!(std::fs::read(env.dest("c")).unwrap(), new);
}

/// Version 1 (`v1` sets its validators) is cut after `abc`; then version 2 answers the
/// resume with 206 whatever `If-Range` names.
async fn resume_against_another_version(env: &Env, v1: fn(Route) -> Route, v2: fn(Route) -> Route) {
    let first = v1(Route::ok(b"abcdefghij".to_vec())).then(Fault::Truncate(3));
    env.server.route("/v", first);
    env.attempt(&env.download(&["/v"], "v")).await.unwrap_err();
    assert_eq!(std::fs::read(env.dest("v.part")).unwrap(), b"abc");
    let second = v2(Route::ok(b"newXYZWXYZ".to_vec())).ignore_if_range();
    env.server.route("/v", second);
}

/// The resume was answered by a 206 of version 2, and the file was fetched whole, from
/// version 2 alone.
async fn assert_restarted_whole(env: &Env, validator: &str) {
    let done = env.attempt(&env.download(&["/v"], "v")).await.unwrap();
    let file = std::fs::read(env.dest("v")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&file),
        "newXYZWXYZ",
        "not abc + version 2"
    );
    let reqs = env.server.requests("/v");
    assert_eq!(reqs.len(), 3, "no restart after the 206 of version 2");
    assert_eq!(reqs[1].header("range"), Some("bytes=3-"));
    assert_eq!(reqs[1].header("if-range"), Some(validator));
    assert_eq!(reqs[2].header("range"), None);
    assert_eq!(reqs[2].header("if-range"), None);
    assert_eq!(done.http_status, 200);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(env.files(), vec!["v"]);
}

const DAY1: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const DAY2: &str = "Thu, 22 Oct 2015 07:28:00 GMT";

#[tokio::test]
async fn a_206_with_another_etag_than_if_range_restarts_instead_of_splicing() {
    let env = Env::new().await;
    resume_against_another_version(&env, |r| r.etag("\"v1\""), |r| r.etag("\"v2\"")).await;
    assert_restarted_whole(&env, "\"v1\"").await;
}

#[tokio::test]
async fn a_206_with_another_last_modified_than_if_range_restarts_instead_of_splicing() {
    let env = Env::new().await;
    resume_against_another_version(&env, |r| r.last_modified(DAY1), |r| r.last_modified(DAY2))
        .await;
    assert_restarted_whole(&env, DAY1).await;
}

/// Only the validator that was sent decides: with the same `ETag`, a new `Last-Modified`
/// (another node of a mirror, say) is the same version, and the part is continued.
#[tokio::test]
async fn a_206_with_the_same_etag_continues_whatever_its_last_modified() {
    let env = Env::new().await;
    resume_against_another_version(
        &env,
        |r| r.etag("\"v1\"").last_modified(DAY1),
        |r| r.etag("\"v1\"").last_modified(DAY2),
    )
    .await;
    let done = env.attempt(&env.download(&["/v"], "v")).await.unwrap();
    assert_eq!(done.http_status, 206);
    assert_eq!(done.resumed_from, 3);
    assert_eq!(env.server.hits("/v"), 2);
}

#[tokio::test]
async fn range_not_satisfiable_discards_the_part_and_restarts() {
    let env = Env::new().await;
    let data = body(1000);
    env.server
        .route("/s", Route::ok(data.clone()).etag("\"s\""));
    // A part file as long as the whole resource (e.g. killed right after the last byte).
    std::fs::write(env.dest("s.part"), &data).unwrap();
    let meta = serde_json::json!({"version": 1, "url": env.server.url("/s"), "etag": "\"s\"",
        "last_modified": null, "bytes": 1000, "total": 1000});
    std::fs::write(env.dest("s.part.json"), meta.to_string()).unwrap();
    let done = env.attempt(&env.download(&["/s"], "s")).await.unwrap();
    let reqs = env.server.requests("/s");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), Some("bytes=1000-"));
    assert_eq!(reqs[1].header("range"), None);
    assert_eq!(done.http_status, 200);
    assert_eq!(std::fs::read(env.dest("s")).unwrap(), data);
    assert_eq!(env.files(), vec!["s"]);
}

/// Two files with one validator (nginx's ETag is mtime and size): the part of the one is
/// never continued with the other's bytes, when the manifest's URL changes between runs.
#[tokio::test]
async fn a_part_from_another_url_is_not_continued() {
    let env = Env::new().await;
    let first = body(100_000);
    let second: Vec<u8> = first.iter().rev().copied().collect();
    env.server.route(
        "/w1.tar",
        Route::ok(first)
            .etag("\"same\"")
            .then(Fault::Truncate(50_000)),
    );
    env.server
        .route("/w2.tar", Route::ok(second.clone()).etag("\"same\""));
    env.attempt(&env.download(&["/w1.tar"], "pkg.tar"))
        .await
        .unwrap_err();
    assert_eq!(part_json(&env, "pkg.tar")["url"], env.server.url("/w1.tar"));

    let done = env
        .attempt(&env.download(&["/w2.tar"], "pkg.tar"))
        .await
        .unwrap();
    assert_eq!(env.server.requests("/w2.tar")[0].header("range"), None);
    assert_eq!(done.http_status, 200);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(env.dest("pkg.tar")).unwrap(), second);
    assert_eq!(env.files(), vec!["pkg.tar"]);
}

#[tokio::test]
async fn without_resume_a_failure_leaves_no_files() {
    let env = Env::new().await;
    env.server.route(
        "/n",
        Route::ok(body(100_000))
            .etag("\"n\"")
            .then(Fault::Truncate(5000)),
    );
    let mut dl = env.download(&["/n"], "n");
    dl.resume = false;
    assert!(env.attempt(&dl).await.unwrap_err().retryable);
    assert!(env.files().is_empty(), "{:?}", env.files());
    env.attempt(&dl).await.unwrap();
    assert_eq!(env.server.requests("/n")[1].header("range"), None);
}

#[tokio::test]
async fn a_pin_allows_resuming_without_a_validator() {
    let env = Env::new().await;
    let data = body(80_000);
    env.server
        .route("/p", Route::ok(data.clone()).then(Fault::Truncate(30_000)));
    let mut dl = env.download(&["/p"], "p");
    dl.sha256 = Some(sha(&data));
    env.attempt(&dl).await.unwrap_err();
    let done = env.attempt(&dl).await.unwrap();
    let second = &env.server.requests("/p")[1];
    assert_eq!(second.header("range"), Some("bytes=30000-"));
    assert_eq!(second.header("if-range"), None);
    assert_eq!(digest(&done), sha(&data));
}

#[tokio::test]
async fn no_validator_and_no_pin_restarts_from_zero() {
    let env = Env::new().await;
    let data = body(80_000);
    env.server
        .route("/q", Route::ok(data.clone()).then(Fault::Truncate(30_000)));
    let dl = env.download(&["/q"], "q");
    env.attempt(&dl).await.unwrap_err();
    env.attempt(&dl).await.unwrap();
    assert_eq!(env.server.requests("/q")[1].header("range"), None);
    assert_eq!(std::fs::read(env.dest("q")).unwrap(), data);
}

#[tokio::test]
async fn a_stalled_body_times_out_retryably_and_the_next_attempt_resumes() {
    let env = Env::new().await;
    let data = body(200_000);
    env.server.route(
        "/st",
        Route::ok(data.clone())
            .etag("\"st\"")
            .then(Fault::Stall(64_000)),
    );
    let mut dl = env.download(&["/st"], "st");
    dl.sha256 = Some(sha(&data));
    let fail = env
        .attempt_with(&dl, Some(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(fail.retryable);
    assert_eq!(fail.kind, FailureKind::Timeout);
    assert_eq!(fail.url.as_deref(), Some(env.server.url("/st").as_str()));
    assert_eq!(fail.bytes, 64_000);
    // Settled when the attempt returns: the part and its metadata, nothing at dest.
    assert_eq!(env.files(), vec!["st.part", "st.part.json"]);
    assert_eq!(
        std::fs::metadata(env.dest("st.part")).unwrap().len(),
        64_000
    );
    assert_eq!(part_json(&env, "st")["bytes"], 64_000);

    let done = env
        .attempt_with(&dl, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        env.server.requests("/st")[1].header("range"),
        Some("bytes=64000-")
    );
    assert_eq!(digest(&done), sha(&data));
}

#[tokio::test]
async fn an_interrupted_attempt_keeps_its_part_for_the_next_run() {
    let env = Env::new().await;
    let data = body(300_000);
    env.server.route(
        "/d",
        Route::ok(data.clone())
            .etag("\"d\"")
            .then(Fault::Stall(100_000)),
    );
    let mut dl = env.download(&["/d"], "d");
    dl.sha256 = Some(sha(&data));

    env.drop_attempt_after(&dl, 100_000).await;
    // The attempt's future is dropped here, as on Ctrl-C. A new client plays the next run.
    assert!(!env.dest("d").exists());
    let next_run = HttpClient::new(&HttpConfig::default()).unwrap();
    // The old client's writer may still be flushing; a fresh client cannot see its lock,
    // so wait (bounded) for the metadata to record every byte, as the old run's exit would.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while part_json_bytes(&env, "d") != Some(100_000.into()) {
        assert!(
            std::time::Instant::now() < deadline,
            "part metadata never settled"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = env.attempt_on(&next_run, &dl, None).await.unwrap();
    assert_eq!(
        env.server.requests("/d")[1].header("range"),
        Some("bytes=100000-")
    );
    assert_eq!(done.resumed_from, 100_000);
    assert_eq!(std::fs::read(env.dest("d")).unwrap(), data);
    assert_eq!(env.files(), vec!["d"]);
}

#[tokio::test]
async fn after_a_dropped_attempt_the_same_client_waits_for_the_writer() {
    let env = Env::new().await;
    let data = body(300_000);
    env.server.route(
        "/w",
        Route::ok(data.clone())
            .etag("\"w\"")
            .then(Fault::Stall(90_000)),
    );
    let dl = env.download(&["/w"], "w");
    env.drop_attempt_after(&dl, 90_000).await;
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(
        env.server.requests("/w")[1].header("range"),
        Some("bytes=90000-")
    );
    assert_eq!(done.bytes, 210_000);
    assert_eq!(std::fs::read(env.dest("w")).unwrap(), data);
}

#[tokio::test]
async fn a_pin_alone_does_not_resume_a_part_from_another_url() {
    let env = Env::new().await;
    let data = body(80_000);
    env.server.route(
        "/one",
        Route::ok(data.clone()).then(Fault::Truncate(30_000)),
    );
    env.server.route("/two", Route::ok(data.clone()));
    let mut dl = env.download(&["/one"], "p");
    dl.sha256 = Some(sha(&data));
    env.attempt(&dl).await.unwrap_err();
    dl.urls = vec![taskrun::template::Template::literal(env.server.url("/two"))];
    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(env.server.requests("/two")[0].header("range"), None);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(env.dest("p")).unwrap(), data);
}
