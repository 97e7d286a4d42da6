//! One HTTP GET, over whichever stack fits the URL, answered in one response shape.
//!
//! `http://` and `https://` go straight to hyper's client, whose HTTP/1 read buffer we can
//! bound ([`READ_BUF`]); HTTPS through rustls (certificates always verified, against the
//! webpki roots or `SSL_CERT_FILE`, see [`crate::tls_roots`]). Through reqwest, hyper's
//! adaptive read size grows to ~400 KiB, and every chunk of the body shares the allocation it
//! was read into, so each connection kept two of those alive: at concurrency 16 that was most
//! of the peak RSS of a large download run. Any URL an environment proxy claims still goes
//! through reqwest (proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`).
//!
//! Neither stack follows redirects: [`super::redirect`] does, above both, so that one chain
//! may start on one and continue on the other with a single redirect budget.
//!
//! `[http] read_timeout` is applied here, the same on both stacks: to the wait for the
//! response head (from the request's start, so it also bounds a connect slower than it), then
//! to every wait for the body's next bytes.

use std::cell::Cell;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::{Body as _, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::model::HttpConfig;

/// What hyper reads from a plain-HTTP socket at once, exactly (an adaptive size with this as
/// its maximum still let a read fill a buffer grown to twice as much). A read buffer stays
/// alive as long as any chunk cut from it, so this bounds what a connection pins to a few
/// times this much: at 16 connections, 64 KiB gave a peak RSS of ~21-24 MiB, 96 KiB ~27,
/// 128 KiB ~30 (20 x 50 MiB, see BENCHMARKS.md). 72 KiB holds a response head and a 64 KiB
/// body in one read, where 64 KiB took a second system call for the last few hundred bytes
/// of each small file (1,000 x 64 KiB: -3% wall and CPU). It is also the largest response
/// head hyper accepts (reqwest allowed ~400 KiB; real servers send a few KiB).
const READ_BUF: usize = 72 * 1024;

/// Idle keep-alive connections are closed after this long (reqwest's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// TCP keep-alive probes on idle connections (reqwest's default).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// A transport failure, before it is classified (see `classify::classify_transport`).
#[derive(Debug)]
pub(crate) enum Error {
    /// From reqwest: a URL sent through a proxy (or carrying credentials).
    Proxied(reqwest::Error),
    /// From hyper's client (HTTP or HTTPS, no proxy), before the response head arrived.
    Direct(hyper_util::client::legacy::Error),
    /// From hyper, while reading a body it received.
    DirectBody(hyper::Error),
    /// A request that cannot be made: more than 10 redirects, a redirect to a scheme other
    /// than http(s), a URL hyper cannot take.
    Invalid(String),
    /// `[http] read_timeout` passed without a byte of the response head (`body` false) or of
    /// its body.
    ReadTimeout {
        /// The limit.
        limit: Duration,
        /// Waiting for the body, not the head.
        body: bool,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Proxied(e) => e.fmt(f),
            Error::Direct(e) => e.fmt(f),
            Error::DirectBody(e) => e.fmt(f),
            Error::Invalid(msg) => f.write_str(msg),
            Error::ReadTimeout { limit, body } => write!(
                f,
                "no byte of the response {} for {} (read_timeout)",
                if *body { "body" } else { "headers" },
                humantime::format_duration(*limit)
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Proxied(e) => e.source(),
            Error::Direct(e) => e.source(),
            Error::DirectBody(e) => e.source(),
            Error::Invalid(_) | Error::ReadTimeout { .. } => None,
        }
    }
}

/// A response head and its body, whichever stack served it.
pub(crate) struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
    idle: Idle,
}

/// The body's read timeout: one timer per response, moved on only when it goes off after the
/// body made progress (a frame costs a clock read, not a timer reset).
struct Idle {
    limit: Duration,
    /// When the last frame (or the head) arrived.
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(limit: Duration) -> Self {
        let last = Instant::now();
        Self {
            limit,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + limit)),
        }
    }

    /// Ready with the error once `limit` passed since the last frame; else registers `cx`.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last + self.limit;
            if Instant::now() >= deadline {
                return Poll::Ready(Error::ReadTimeout {
                    limit: self.limit,
                    body: true,
                });
            }
            self.timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

enum Body {
    Direct(Incoming),
    Proxied(reqwest::Body),
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body's length when the server announced it (`Content-Length`, or none at all).
    pub fn content_length(&self) -> Option<u64> {
        match &self.body {
            Body::Direct(b) => b.size_hint().exact(),
            Body::Proxied(b) => b.size_hint().exact(),
        }
    }

    /// The next chunk of the body; `None` at its end. Trailers are skipped. Fails with
    /// [`Error::ReadTimeout`] when no byte arrives for `read_timeout`.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let frame = std::future::poll_fn(|cx| match poll_frame(&mut self.body, cx) {
                Poll::Ready(frame) => {
                    self.idle.last = Instant::now();
                    Poll::Ready(frame)
                }
                Poll::Pending => self.idle.poll_expired(cx).map(|e| Some(Err(e))),
            })
            .await;
            match frame {
                None => return Ok(None),
                Some(Err(err)) => return Err(err),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

type Frame = Option<Result<hyper::body::Frame<Bytes>, Error>>;

fn poll_frame(body: &mut Body, cx: &mut Context<'_>) -> Poll<Frame> {
    match body {
        Body::Direct(b) => Pin::new(b)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Error::DirectBody))),
        Body::Proxied(b) => Pin::new(b)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Error::Proxied))),
    }
}

thread_local! {
    /// The download lane this thread drives (see [`enter_lane`]); 0 on any other thread.
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as download lane `lane`: its plain-HTTP requests use that lane's
/// own connection pool. hyper runs each connection as a task on the runtime that opened it
/// and hands every body chunk from that task to the request's; with one pool per lane both
/// are on the same thread, so a transfer costs no cross-thread wake-up per chunk.
pub fn enter_lane(lane: usize) {
    LANE.with(|l| l.set(lane));
}

/// Both stacks; shared by every download of a run. hyper has a connection pool per lane and
/// scheme (see [`enter_lane`]); reqwest one pool for the proxied requests.
pub(crate) struct Transport {
    plain: Vec<Client<Timed<HttpConnector>, Empty<Bytes>>>,
    https: Vec<Client<Timed<HttpsConnector<HttpConnector>>, Empty<Bytes>>>,
    proxied: reqwest::Client,
    /// Read from the environment once, as reqwest does: the URLs it claims go to reqwest.
    proxies: Matcher,
    /// reqwest's default headers, for requests that bypass it.
    user_agent: HeaderValue,
    /// `[http] read_timeout`.
    read_timeout: Duration,
}

impl Transport {
    /// Both stacks, with `lanes` plain-HTTP connection pools (at least one).
    pub fn new(cfg: &HttpConfig, lanes: usize) -> Result<Self, String> {
        let roots = crate::tls_roots::from_env()?;
        let reqwest_roots = crate::tls_roots::for_reqwest(roots.as_deref())?;
        let proxied = crate::tls_roots::trust!(reqwest::Client::builder(), reqwest_roots)
            .use_rustls_tls()
            .https_only(false)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .user_agent(cfg.user_agent.clone())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?;
        let user_agent = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|_| format!("invalid User-Agent `{}`", cfg.user_agent))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        // Both schemes through one connector, so `https://` on hyper: the TCP connector must
        // let https URIs through.
        http.enforce_http(false);
        let timeout = cfg.connect_timeout;
        let plain_connector = Timed {
            inner: http.clone(),
            timeout,
        };
        let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(crate::tls_roots::root_store(roots.as_deref())?)
        .with_no_client_auth();
        let https_connector = Timed {
            inner: HttpsConnectorBuilder::new()
                .with_tls_config(tls_config)
                .https_only()
                .enable_http1()
                .wrap_connector(http),
            timeout,
        };
        let client = || {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .http1_read_buf_exact_size(READ_BUF)
                .clone()
        };
        let lanes = lanes.max(1);
        let plain = (0..lanes)
            .map(|_| client().build(plain_connector.clone()))
            .collect();
        let https = (0..lanes)
            .map(|_| client().build(https_connector.clone()))
            .collect();
        Ok(Self {
            plain,
            https,
            proxied,
            proxies: Matcher::from_env(),
            user_agent,
            read_timeout: cfg.read_timeout,
        })
    }

    /// Sends one GET for `url` (without credentials: see `redirect::send`); redirects are
    /// returned as they are.
    /// The response head must arrive within `read_timeout`.
    pub async fn get(&self, url: &Url, headers: HeaderMap) -> Result<Response, Error> {
        let sent = async {
            match self.direct_uri(url) {
                Some(uri) => self.get_direct(uri, headers).await,
                None => self.get_proxied(url, headers).await,
            }
        };
        let limit = self.read_timeout;
        let (status, headers, body) = tokio::time::timeout(limit, sent)
            .await
            .map_err(|_| Error::ReadTimeout { limit, body: false })??;
        Ok(Response {
            status,
            headers,
            body,
            idle: Idle::new(limit),
        })
    }

    /// `url` as hyper's URI when hyper's client is the one to send it: http or https, no
    /// proxy, no credentials in the URL (reqwest turns those into basic auth).
    fn direct_uri(&self, url: &Url) -> Option<hyper::Uri> {
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        let uri: hyper::Uri = url.as_str().parse().ok()?;
        self.proxies.intercept(&uri).is_none().then_some(uri)
    }

    async fn get_direct(&self, uri: hyper::Uri, mut headers: HeaderMap) -> Result<Head, Error> {
        // reqwest's defaults, which a task's own headers override.
        if let header::Entry::Vacant(e) = headers.entry(header::ACCEPT) {
            e.insert(HeaderValue::from_static("*/*"));
        }
        if let header::Entry::Vacant(e) = headers.entry(header::USER_AGENT) {
            e.insert(self.user_agent.clone());
        }
        let https = uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS);
        let mut req = hyper::Request::new(Empty::new());
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let lane = LANE.with(Cell::get) % self.plain.len();
        let sent = if https {
            self.https[lane].request(req).await
        } else {
            self.plain[lane].request(req).await
        };
        let (head, body) = sent.map_err(Error::Direct)?.into_parts();
        Ok((head.status, head.headers, Body::Direct(body)))
    }

    async fn get_proxied(&self, url: &Url, headers: HeaderMap) -> Result<Head, Error> {
        let resp = self
            .proxied
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(Error::Proxied)?;
        let (head, body) = hyper::Response::<reqwest::Body>::from(resp).into_parts();
        Ok((head.status, head.headers, Body::Proxied(body)))
    }
}

/// A response's status, headers and body, before the read timeout is attached.
type Head = (StatusCode, HeaderMap, Body);

/// A connector with reqwest's connect timeout: one limit on name resolution, connecting and
/// (for HTTPS) the TLS handshake together.
#[derive(Clone)]
struct Timed<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl<C> tower_service::Service<hyper::Uri> for Timed<C>
where
    C: tower_service::Service<hyper::Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: hyper::Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let limit = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )
                .into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The point of the plain-HTTP path: however fast the server sends, no chunk (and so no
    /// buffer a chunk keeps alive) is larger than [`READ_BUF`].
    #[tokio::test]
    async fn plain_http_chunks_are_bounded_by_the_read_buffer() {
        const LEN: usize = 4 * 1024 * 1024;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                sock.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {LEN}\r\n\r\n");
            sock.write_all(answer.as_bytes()).await.unwrap();
            sock.write_all(&vec![7u8; LEN]).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let transport = Transport::new(&HttpConfig::default(), 1).unwrap();
        let url = Url::parse(&format!("http://{addr}/f")).unwrap();
        let mut resp = transport.get(&url, HeaderMap::new()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.content_length(), Some(LEN as u64));
        let (mut total, mut largest) = (0, 0);
        while let Some(chunk) = resp.chunk().await.unwrap() {
            total += chunk.len();
            largest = largest.max(chunk.len());
        }
        assert_eq!(total, LEN);
        assert!(largest <= READ_BUF, "a chunk of {largest} bytes");
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /f http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
        assert!(head.contains("\r\nuser-agent: taskrun/"), "{head}");
        assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
    }

    /// `read_timeout` bounds each wait for bytes, not the whole body: a body that trickles in
    /// for longer than the limit, never pausing that long, arrives whole; then a pause fails.
    #[tokio::test]
    async fn read_timeout_counts_from_the_last_byte() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await.unwrap();
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n")
                .await
                .unwrap();
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                sock.write_all(b"x").await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        let cfg = HttpConfig {
            read_timeout: Duration::from_millis(500),
            ..HttpConfig::default()
        };
        let transport = Transport::new(&cfg, 1).unwrap();
        let url = Url::parse(&format!("http://{addr}/f")).unwrap();
        let mut resp = transport.get(&url, HeaderMap::new()).await.unwrap();
        let mut got = 0;
        let err = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => got += chunk.len(),
                Ok(None) => panic!("the body cannot end: one byte is missing"),
                Err(e) => break e,
            }
        };
        assert_eq!(got, 8);
        assert!(
            matches!(err, Error::ReadTimeout { body: true, .. }),
            "{err}"
        );
        server.abort();
    }
}
