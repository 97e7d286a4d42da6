//! Redirects across servers and schemes, and credentials in URLs: the rules reqwest applied
//! when it followed redirects itself, kept now that taskrun follows them above two stacks.

use taskrun::actions::download::FailureKind;
use taskrun::template::Template;

use crate::fault_server::{FaultServer, Route};
use crate::helpers::{Env, body, download, sha};

#[tokio::test]
async fn credentials_stay_behind_on_another_port_other_headers_follow() {
    let env = Env::new().await;
    let other = FaultServer::start().await;
    let data = body(70_000);
    other.route("/there", Route::ok(data.clone()));
    env.server
        .route("/here", Route::redirect(other.url("/there?x=1")));
    let mut dl = env.download(&["/here?token=t"], "f");
    dl.sha256 = Some(sha(&data));
    dl.headers
        .insert("Authorization".into(), Template::literal("Bearer b"));
    dl.headers
        .insert("X-Thing".into(), Template::literal("one"));

    let done = env.attempt(&dl).await.unwrap();
    assert_eq!(done.url, env.server.url("/here?token=t"));
    let first = &env.server.requests("/here")[0];
    assert_eq!(first.header("authorization"), Some("Bearer b"));
    assert_eq!(first.header("referer"), None);
    let second = &other.requests("/there")[0];
    assert_eq!(second.target, "/there?x=1");
    assert_eq!(second.header("authorization"), None);
    assert_eq!(second.header("x-thing"), Some("one"));
    assert_eq!(
        second.header("referer"),
        None,
        "the first URL (and its query) is not sent on"
    );
}

#[tokio::test]
async fn credentials_follow_a_redirect_on_the_same_server() {
    let env = Env::new().await;
    env.server.route("/a", Route::redirect("/b"));
    env.server.route("/b", Route::ok(b"b".to_vec()));
    let mut dl = env.download(&["/a"], "f");
    dl.headers
        .insert("Authorization".into(), Template::literal("Bearer b"));
    env.attempt(&dl).await.unwrap();
    let req = &env.server.requests("/b")[0];
    assert_eq!(req.header("authorization"), Some("Bearer b"));
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_as_basic_auth() {
    let env = Env::new().await;
    env.server.route("/p", Route::ok(b"p".to_vec()));
    let url = env
        .server
        .url("/p")
        .replace("http://", "http://us%20er:pa%40ss@");
    let done = env.attempt(&download(vec![url], "f")).await.unwrap();
    let req = &env.server.requests("/p")[0];
    // base64("us er:pa@ss")
    assert_eq!(req.header("authorization"), Some("Basic dXMgZXI6cGFAc3M="));
    assert_eq!(req.target, "/p");
    assert_eq!(done.http_status, 200);
}

#[tokio::test]
async fn a_redirect_to_https_is_handed_to_the_tls_stack() {
    let env = Env::new().await;
    // This server speaks plain HTTP only: the TLS handshake fails, and no HTTP request for
    // the path ever reaches it (a ClientHello is not one).
    let https = env.server.url("/tls").replace("http://", "https://");
    env.server.route("/tls", Route::ok(b"never".to_vec()));
    env.server.route("/up", Route::redirect(https));
    let fail = env.attempt(&env.download(&["/up"], "f")).await.unwrap_err();
    assert_eq!(env.server.hits("/up"), 1);
    assert_eq!(env.server.hits("/tls"), 0);
    assert_eq!(fail.kind, FailureKind::Connection, "{fail:?}");
    assert!(fail.retryable);
    assert!(env.files().is_empty());
}

#[tokio::test]
async fn a_redirect_to_another_scheme_fails_at_once() {
    let env = Env::new().await;
    env.server.route("/f", Route::redirect("ftp://127.0.0.1/x"));
    let fail = env.attempt(&env.download(&["/f"], "f")).await.unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::Invalid);
}

#[tokio::test]
async fn a_redirect_without_location_is_a_plain_status_failure() {
    let env = Env::new().await;
    env.server.route(
        "/n",
        Route::ok(b"n".to_vec()).then(crate::fault_server::Fault::Status(302)),
    );
    let fail = env.attempt(&env.download(&["/n"], "f")).await.unwrap_err();
    assert!(!fail.retryable);
    assert_eq!(fail.kind, FailureKind::HttpStatus);
    assert_eq!(fail.http_status, Some(302));
}
