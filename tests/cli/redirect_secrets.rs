//! A header that holds a `${secret.*}` goes to the origin the manifest names and nowhere a
//! redirect leads: not to another port, not on to a second path of that other server, and not
//! to the same host and port over plain http (the secret would cross the network in clear).
//! A header without a secret follows every hop, as curl keeps custom headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::fault_server::{Recorded, Route};
use crate::http::Http;
use crate::support::{Run, Workspace};

const MANIFEST: &str = r#"
[tasks.get]
download = { url = "URL", dest = "f.txt", headers = { X-Api-Key = "${secret.TR_API_KEY}", Authorization = "Bearer ${secret.TR_API_KEY}", X-Trace = "t-1" } }
retry = 1
"#;

/// A secret unique to this test process.
fn secret() -> String {
    format!("key-{}-7c3e91", std::process::id())
}

/// Runs the one-download manifest from `url` with the secret set; the download succeeds.
fn run(url: &str, envs: &[(&str, &std::ffi::OsStr)]) -> Workspace {
    let ws = Workspace::new(&MANIFEST.replace("URL", url));
    let mut cmd = ws.cmd(&["taskrun.toml"]);
    cmd.env("TR_API_KEY", secret());
    for (name, value) in envs {
        cmd.env(name, value);
    }
    Run::from(cmd.output().unwrap()).code(0);
    assert_eq!(ws.read("f.txt"), "payload");
    ws
}

/// The request carried the secret headers, and the plain one.
fn assert_has_secrets(req: &Recorded) {
    let secret = secret();
    assert_eq!(req.header("x-api-key"), Some(secret.as_str()));
    let bearer = format!("Bearer {secret}");
    assert_eq!(req.header("authorization"), Some(bearer.as_str()));
    assert_eq!(req.header("x-trace"), Some("t-1"));
}

/// The request carried no header holding the secret, and still the plain one.
fn assert_no_secrets(req: &Recorded) {
    let secret = secret();
    for (name, value) in &req.headers {
        assert!(!value.contains(&secret), "{name}: {value} reached {req:?}");
    }
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("x-trace"), Some("t-1"), "{req:?}");
}

#[test]
fn secret_headers_stay_behind_when_a_redirect_leaves_for_another_port() {
    let first = Http::start();
    let other = Http::start();
    first.route("/redir", Route::redirect(other.url("/moved")));
    // The other server's own redirect to itself earns no more trust than its first answer.
    other.route("/moved", Route::redirect("/file"));
    other.route("/file", Route::ok(b"payload".to_vec()));
    run(&first.url("/redir"), &[]);
    assert_has_secrets(&first.requests("/redir")[0]);
    assert_eq!(other.all_requests().len(), 2);
    for req in other.all_requests() {
        assert_no_secrets(&req);
    }
}

#[test]
fn secret_headers_follow_a_redirect_on_the_same_origin() {
    let http = Http::start();
    http.route("/redir", Route::redirect("/file"));
    http.route("/file", Route::ok(b"payload".to_vec()));
    run(&http.url("/redir"), &[]);
    assert_has_secrets(&http.requests("/redir")[0]);
    assert_has_secrets(&http.requests("/file")[0]);
}

#[test]
fn secret_headers_stay_behind_on_a_redirect_from_https_to_http_on_the_same_port() {
    let http = Http::start();
    let front = BothSchemes::start(http.addr());
    http.route("/redir", Route::redirect(front.url("http", "/file")));
    http.route("/file", Route::ok(b"payload".to_vec()));
    let bundle = crate::tls::bundle();
    run(
        &front.url("https", "/redir"),
        &[("SSL_CERT_FILE", bundle.as_os_str())],
    );
    assert_eq!(front.tls_connections(), 1, "the first hop was not https");
    assert_has_secrets(&http.requests("/redir")[0]);
    assert_no_secrets(&http.requests("/file")[0]);
}

/// One port on 127.0.0.1 that speaks https (the test certificate) and plain http, passing
/// both on to `upstream`: an https → http redirect that keeps host and port.
struct BothSchemes {
    port: u16,
    tls: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl BothSchemes {
    fn start(upstream: SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = Arc::<AtomicUsize>::default();
        let count = tls.clone();
        let acceptor = crate::tls::acceptor();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut first = [0u8; 1];
                    // 0x16: a TLS handshake record; anything else is plain HTTP.
                    if matches!(tcp.peek(&mut first).await, Ok(1)) && first[0] == 0x16 {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        let _ = tls.shutdown().await;
                    } else {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
                    }
                });
            }
        });
        Self { port, tls, _rt: rt }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    fn tls_connections(&self) -> usize {
        self.tls.load(Ordering::SeqCst)
    }
}
