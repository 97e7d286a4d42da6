//! A scriptable HTTP/1.1 server on 127.0.0.1 for tests that need a misbehaving network.
//!
//! Each path has a [`Route`]: a body with optional `ETag` / `Last-Modified`, Range support
//! (or a server that ignores `Range`), and a script of [`Fault`]s consumed one per request
//! (503 with `Retry-After`, a body cut off mid-way, a stall, wrong bytes, a reset). The server
//! records every request's headers per path and the peak number of requests in flight.
//!
//! Include it from any test binary with
//! `#[path = "../support/fault_server.rs"] mod fault_server;`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One scripted misbehaviour, applied to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a short body.
    Status(u16),
    /// Answer with this status and a `Retry-After` header (seconds or an HTTP date).
    RetryAfter(u16, String),
    /// Announce the full `Content-Length`, send this many body bytes, then close.
    Truncate(usize),
    /// Send the headers and this many body bytes, then never send more.
    Stall(usize),
    /// Send a body of the right length whose bytes are wrong.
    WrongBytes,
    /// Close the connection without answering.
    Reset,
    /// Read the request and never answer (not even the status line).
    Silent,
}

/// What a path serves.
#[derive(Debug, Clone, Default)]
pub struct Route {
    body: Arc<Vec<u8>>,
    etag: Option<String>,
    last_modified: Option<String>,
    ignore_ranges: bool,
    ignore_if_range: bool,
    chunked: bool,
    script: VecDeque<Fault>,
    redirect: Option<String>,
    hold_until: Option<(usize, usize, Duration)>,
}

impl Route {
    /// Serves `body` with 200, honouring `Range` and conditional requests.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: Arc::new(body.into()),
            ..Self::default()
        }
    }

    /// A 302 to `location` (a path on this server or a full URL).
    pub fn redirect(location: impl Into<String>) -> Self {
        Self {
            redirect: Some(location.into()),
            ..Self::default()
        }
    }

    /// Sends this `ETag` (quotes included, e.g. `"\"v1\""`).
    pub fn etag(mut self, tag: &str) -> Self {
        self.etag = Some(tag.to_string());
        self
    }

    /// Sends this `Last-Modified` (an HTTP date).
    pub fn last_modified(mut self, date: &str) -> Self {
        self.last_modified = Some(date.to_string());
        self
    }

    /// Answers 200 with the whole body even to a `Range` request.
    pub fn ignore_ranges(mut self) -> Self {
        self.ignore_ranges = true;
        self
    }

    /// Answers a `Range` with 206 whatever `If-Range` names, as a server that ignores it (or
    /// replaced the file between checking it and sending it) would.
    pub fn ignore_if_range(mut self) -> Self {
        self.ignore_if_range = true;
        self
    }

    /// Sends the body chunked, with no `Content-Length`.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Appends a fault for the next unscripted request (faults apply in order, one each).
    pub fn then(mut self, fault: Fault) -> Self {
        self.script.push_back(fault);
        self
    }

    /// Appends `n` copies of a fault.
    pub fn times(mut self, n: usize, fault: Fault) -> Self {
        for _ in 0..n {
            self.script.push_back(fault.clone());
        }
        self
    }

    /// Holds each answer until `n` requests (to any path) are in flight, or until `total`
    /// held requests have arrived in all (so the last ones are not kept waiting), or until
    /// `max_wait` passed. Lets a test see how many requests a client runs at once.
    pub fn hold_until(mut self, n: usize, total: usize, max_wait: Duration) -> Self {
        self.hold_until = Some((n, total, max_wait));
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request target (path and query).
    pub target: String,
    /// Headers with lowercase names, in order.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<HashMap<String, Vec<Recorded>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    connections: AtomicUsize,
    held_arrivals: AtomicUsize,
    changed: Notify,
}

/// The running server; it stops when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    /// Binds 127.0.0.1:0 and serves.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(stream, st.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets (or replaces) what `path` serves; the query string is ignored when matching.
    pub fn route(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), route);
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// The requests received for `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.state
            .log
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Every request received, on any path (unordered across paths).
    pub fn all_requests(&self) -> Vec<Recorded> {
        let log = self.state.log.lock().unwrap();
        log.values().flatten().cloned().collect()
    }

    /// The most requests that were in flight at once, across all paths.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

struct InFlight(Arc<State>);

impl InFlight {
    fn new(state: &Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        state.changed.notify_waiters();
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let Some(request_line) = head.first() else {
            return;
        };
        let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        let headers: Vec<(String, String)> = head[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let path = target.split('?').next().unwrap_or("/").to_string();
        let req = Recorded { target, headers };
        state
            .log
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_default()
            .push(req.clone());
        let _flight = InFlight::new(&state);
        let route = {
            let mut routes = state.routes.lock().unwrap();
            routes.get_mut(&path).map(|r| {
                let fault = r.script.pop_front();
                (r.clone(), fault)
            })
        };
        let keep = match route {
            None => respond_simple(stream.get_mut(), 404, &[]).await,
            Some((route, fault)) => {
                if let Some((n, total, max_wait)) = route.hold_until {
                    state.held_arrivals.fetch_add(1, Ordering::SeqCst);
                    state.changed.notify_waiters();
                    hold(&state, n, total, max_wait).await;
                }
                answer(stream.get_mut(), &route, fault, &req).await
            }
        };
        if !keep {
            let _ = stream.get_mut().shutdown().await;
            return;
        }
    }
}

async fn hold(state: &State, n: usize, total: usize, max_wait: Duration) {
    let wait = async {
        loop {
            let notified = state.changed.notified();
            if state.in_flight.load(Ordering::SeqCst) >= n
                || state.held_arrivals.load(Ordering::SeqCst) >= total
            {
                return;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(max_wait, wait).await;
}

async fn respond_simple(out: &mut TcpStream, status: u16, extra: &[(String, String)]) -> bool {
    let body = format!("status {status}\n");
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes()).await.is_ok() && out.write_all(body.as_bytes()).await.is_ok()
}

/// Writes one answer; returns whether the connection may be reused.
async fn answer(out: &mut TcpStream, route: &Route, fault: Option<Fault>, req: &Recorded) -> bool {
    if let Some(location) = &route.redirect {
        return respond_simple(out, 302, &[("location".into(), location.clone())]).await;
    }
    match &fault {
        Some(Fault::Status(code)) => return respond_simple(out, *code, &[]).await,
        Some(Fault::RetryAfter(code, value)) => {
            return respond_simple(out, *code, &[("retry-after".into(), value.clone())]).await;
        }
        Some(Fault::Reset) => return false,
        Some(Fault::Silent) => std::future::pending::<()>().await,
        _ => {}
    }
    let mut validators = Vec::new();
    if let Some(tag) = &route.etag {
        validators.push(("etag".to_string(), tag.clone()));
    }
    if let Some(date) = &route.last_modified {
        validators.push(("last-modified".to_string(), date.clone()));
    }
    let not_modified = match (req.header("if-none-match"), req.header("if-modified-since")) {
        (Some(tag), _) => route.etag.as_deref() == Some(tag),
        (None, Some(date)) => route.last_modified.as_deref() == Some(date),
        (None, None) => false,
    };
    if not_modified {
        let head = format!(
            "HTTP/1.1 304 Not Modified\r\n{}\r\n",
            header_lines(&validators)
        );
        return out.write_all(head.as_bytes()).await.is_ok();
    }
    let len = route.body.len();
    let mut status = 200;
    let mut start = 0;
    if let Some(range) = req.header("range").filter(|_| !route.ignore_ranges) {
        let if_range_ok = match req.header("if-range") {
            _ if route.ignore_if_range => true,
            None => true,
            Some(v) => {
                route.etag.as_deref() == Some(v) || route.last_modified.as_deref() == Some(v)
            }
        };
        let first = range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        if let (true, Some(first)) = (if_range_ok, first) {
            if first >= len {
                let extra = [("content-range".to_string(), format!("bytes */{len}"))];
                return respond_simple(out, 416, &extra).await;
            }
            status = 206;
            start = first;
            validators.push((
                "content-range".into(),
                format!("bytes {first}-{}/{len}", len - 1),
            ));
        }
    }
    let mut body = route.body[start..].to_vec();
    if fault == Some(Fault::WrongBytes) {
        for b in body.iter_mut() {
            *b ^= 0x5a;
        }
    }
    let framing = if route.chunked {
        "transfer-encoding: chunked\r\n".to_string()
    } else {
        format!("content-length: {}\r\n", body.len())
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\n{framing}{}\r\n",
        reason(status),
        header_lines(&validators)
    );
    if out.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let (cut, stall) = match fault {
        Some(Fault::Truncate(n)) => (Some(n.min(body.len())), false),
        Some(Fault::Stall(n)) => (Some(n.min(body.len())), true),
        _ => (None, false),
    };
    let sent = &body[..cut.unwrap_or(body.len())];
    let ok = if route.chunked {
        write_chunked(out, sent, cut.is_none()).await
    } else {
        out.write_all(sent).await.is_ok()
    };
    let _ = out.flush().await;
    if stall {
        std::future::pending::<()>().await;
    }
    ok && cut.is_none()
}

async fn write_chunked(out: &mut TcpStream, body: &[u8], last: bool) -> bool {
    for piece in body.chunks(16 * 1024) {
        let head = format!("{:x}\r\n", piece.len());
        if out.write_all(head.as_bytes()).await.is_err()
            || out.write_all(piece).await.is_err()
            || out.write_all(b"\r\n").await.is_err()
        {
            return false;
        }
    }
    !last || out.write_all(b"0\r\n\r\n").await.is_ok()
}

fn header_lines(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
