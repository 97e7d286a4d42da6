//! Conditional GET for cached downloads (SPEC §4 `revalidate`).

use taskrun::actions::download::{AttemptRequest, Revalidation, revalidate};

use crate::fault_server::Route;
use crate::helpers::Env;

async fn check(env: &Env, path: &str, etag: Option<&str>, lm: Option<&str>) -> Revalidation {
    let dl = env.download(&[path], "r");
    let noop = |_| {};
    let req = AttemptRequest {
        download: &dl,
        root: env.root(),
        attempt: 1,
        timeout: None,
        progress: &noop,
        keep_digest: true,
    };
    revalidate(&env.client, req, etag, lm).await.unwrap()
}

#[tokio::test]
async fn not_modified_by_etag_leaves_dest_alone() {
    let env = Env::new().await;
    std::fs::write(env.dest("r"), b"cached").unwrap();
    env.server
        .route("/e", Route::ok(b"cached".to_vec()).etag("\"e1\""));
    assert_eq!(
        check(&env, "/e", Some("\"e1\""), None).await,
        Revalidation::NotModified
    );
    assert_eq!(
        env.server.requests("/e")[0].header("if-none-match"),
        Some("\"e1\"")
    );
    assert_eq!(std::fs::read(env.dest("r")).unwrap(), b"cached");
    assert_eq!(env.files(), vec!["r"]);
}

#[tokio::test]
async fn not_modified_by_date() {
    let env = Env::new().await;
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    env.server
        .route("/d", Route::ok(b"x".to_vec()).last_modified(date));
    assert_eq!(
        check(&env, "/d", None, Some(date)).await,
        Revalidation::NotModified
    );
    assert_eq!(
        env.server.requests("/d")[0].header("if-modified-since"),
        Some(date)
    );
}

#[tokio::test]
async fn changed_content_is_downloaded_anew() {
    let env = Env::new().await;
    std::fs::write(env.dest("r"), b"cached").unwrap();
    env.server
        .route("/c", Route::ok(b"fresh".to_vec()).etag("\"e2\""));
    match check(&env, "/c", Some("\"e1\""), None).await {
        Revalidation::Changed(done) => {
            assert_eq!(done.etag.as_deref(), Some("\"e2\""));
            assert_eq!(done.http_status, 200);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(env.dest("r")).unwrap(), b"fresh");
    assert_eq!(env.files(), vec!["r"]);
}
