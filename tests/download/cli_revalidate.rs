//! `revalidate = true` through the binary (issue 5 point 9): a hit of an unpinned download asks
//! the origin with If-None-Match; 304 keeps the cached file (`cached`), 200 downloads anew
//! (`succeeded`).

use crate::fault_server::{FaultServer, Route};
use crate::workspace::{Workspace, taskrun};

/// Runs the binary off the async runtime (the test server lives on it).
async fn run_async(dir: &std::path::Path) -> serde_json::Value {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || run(&dir))
        .await
        .unwrap()
}

fn run(dir: &std::path::Path) -> serde_json::Value {
    let out = taskrun()
        .current_dir(dir)
        .args(["taskrun.toml", "--report", "report.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidate_reuses_on_304_and_downloads_on_200() {
    let server = FaultServer::start().await;
    server.route("/data.csv", Route::ok(b"v1\n".to_vec()).etag("\"one\""));
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data.csv\", revalidate = true }}\n",
        server.url("/data.csv")
    ));
    let root = ws.root().to_path_buf();

    let r = run_async(&root).await;
    assert_eq!(r["tasks"][0]["status"], "succeeded");

    let r = run_async(&root).await;
    assert_eq!(r["tasks"][0]["status"], "cached");
    let reqs = server.requests("/data.csv");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), Some("\"one\""));

    server.route("/data.csv", Route::ok(b"v2\n".to_vec()).etag("\"two\""));
    let r = run_async(&root).await;
    assert_eq!(r["tasks"][0]["status"], "succeeded");
    assert_eq!(r["tasks"][0]["attempts"][0]["http_status"], 200);
    assert_eq!(std::fs::read(root.join("data.csv")).unwrap(), b"v2\n");

    // The new validator was recorded: the next run asks with it and is a hit.
    let r = tokio::task::spawn_blocking(move || run(&root))
        .await
        .unwrap();
    assert_eq!(r["tasks"][0]["status"], "cached");
    let reqs = server.requests("/data.csv");
    assert_eq!(
        reqs.last().unwrap().header("if-none-match"),
        Some("\"two\"")
    );
}
