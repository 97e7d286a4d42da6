//! [`RemoteCache`]: a client for the Bazel HTTP cache protocol, the shared tier behind the
//! local store (SPEC §5 "Remote cache").
//!
//! The protocol is four URLs and three verbs: `GET`/`PUT`/`HEAD` on `<remote>/ac/<key>` (an
//! action record, taskrun's JSON) and `<remote>/cas/<sha256>` (a blob). nginx with WebDAV,
//! bazel-remote (`--disable_http_ac_validation`) or any store that speaks it will do.
//!
//! The remote is an optimisation, never a dependency of a run: a remote that is down, times
//! out, or answers 5xx (or any status the protocol does not expect) costs one warning, and the
//! remote is then disabled for the rest of the run, so a dead server is waited for once, not
//! once per task. A blob whose content does not match its digest is a miss with a warning,
//! never a wrong output: blobs are streamed into a temp file in the local store, verified,
//! and only then renamed into place.
//!
//! I/O is blocking because [`super::TaskCache`] methods already run on `spawn_blocking`
//! threads; the reqwest blocking client is created lazily, on the first request, so it is
//! never built inside an async context.

use std::error::Error as _;
use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Body, Client, Response};
use rustc_hash::FxHashMap;

use super::Digest;
use super::digest::{from_hex, to_hex};
use super::record::ActionRecord;
use super::remote_health::{Failure, Health};
use super::store::{BlobError, Store};
use crate::model::CacheConfig;

/// The largest action record taken from a remote (records list files, not contents).
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Limits and permissions for one remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteOptions {
    /// TCP + TLS connect limit: short, so a dead host costs seconds, once.
    pub connect_timeout: Duration,
    /// Limit on the wait for a response's headers, and on each read of its body. A whole
    /// body (a record, a blob, an upload) gets this plus one second per MiB: a server that
    /// sends a byte now and then must not hold a lookup for hours.
    pub timeout: Duration,
    /// Upload results (`[cache] remote_write`); false for laptops that only read.
    pub write: bool,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            write: true,
        }
    }
}

/// A Bazel-HTTP-protocol remote cache for one run.
#[derive(Debug)]
pub struct RemoteCache {
    /// The base URL as a string without a trailing slash (`<base>/ac/<key>`).
    base: String,
    loopback: bool,
    options: RemoteOptions,
    client: OnceLock<Option<Client>>,
    /// On until the first failure (shown without the URL's user and password, either of
    /// which may be a token).
    health: Health,
    /// Held through the run's first upload, and `true` once it is done: the upload threads
    /// wait for it, so a remote that refuses writes sees one refused `PUT`, not one per
    /// thread.
    first_upload: Mutex<bool>,
    /// Blobs this run uploaded or found on the remote, each locked while it is being sent:
    /// two entries sharing a blob (the same log) send it once, and neither record goes
    /// out before the blob is there.
    blobs: Mutex<FxHashMap<String, Arc<Mutex<BlobState>>>>,
}

/// What this run knows of one blob on the remote.
#[derive(Debug, Default)]
struct BlobState {
    /// Uploaded, or found there.
    sent: bool,
    /// Found there with content that does not match its name: sent again when this run
    /// produces it, whatever `HEAD` says (it only tells that a file of that name is there).
    corrupt: bool,
}

/// A response body reader that remembers whether a read failed (a network error), so a
/// failed transfer can be told apart from a failed write to the local disk, and gives up
/// once the whole body is overdue.
struct Tracked {
    inner: Response,
    failed: bool,
    /// When the whole body must have arrived: the client's timeout bounds each read, and a
    /// server sending a byte now and then would hold a lookup (and the run) for hours.
    deadline: Instant,
}

impl Tracked {
    /// `resp`'s body, to be read within `limit` from now.
    fn new(inner: Response, limit: Duration) -> Self {
        Self {
            inner,
            failed: false,
            deadline: Instant::now() + limit,
        }
    }
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() > self.deadline {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the body did not arrive in time",
            ));
        }
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

/// The time a body of `len` bytes may take: the timeout plus a second per MiB.
fn body_limit(timeout: Duration, len: u64) -> Duration {
    timeout + Duration::from_secs(len >> 20)
}

/// "what failed: root cause" (reqwest's middle layers only repeat themselves).
fn chain(e: &reqwest::Error) -> String {
    let mut root = None;
    let mut src = e.source();
    while let Some(inner) = src {
        root = Some(inner.to_string());
        src = inner.source();
    }
    match root {
        Some(r) => format!("{e}: {r}"),
        None => e.to_string(),
    }
}

impl RemoteCache {
    /// A client for `url` (nothing is contacted until the first lookup or upload).
    pub fn new(url: &url::Url, options: RemoteOptions) -> Self {
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        Self {
            base: url.as_str().trim_end_matches('/').to_string(),
            loopback,
            options,
            client: OnceLock::new(),
            health: Health::new(shown.as_str().trim_end_matches('/').to_string()),
            first_upload: Mutex::new(false),
            blobs: Mutex::default(),
        }
    }

    /// The HTTP remote configured by `[cache] remote` / `TASKRUN_REMOTE_CACHE`, if any.
    pub fn from_config(config: &CacheConfig) -> Option<Self> {
        let url = config.http_remote()?;
        Some(Self::new(
            url,
            RemoteOptions {
                write: config.remote_write,
                ..RemoteOptions::default()
            },
        ))
    }

    /// The remote's URL, user and password removed (for messages).
    pub fn url(&self) -> &str {
        self.health.shown()
    }

    /// False once a failure has disabled the remote for the rest of the run.
    pub fn is_enabled(&self) -> bool {
        self.health.is_enabled()
    }

    /// Whether results are uploaded (and the remote is still enabled).
    pub fn writes(&self) -> bool {
        self.options.write && self.is_enabled()
    }

    fn client(&self) -> Result<&Client, Failure> {
        let client = self.client.get_or_init(|| {
            let roots = crate::tls_roots::from_env()
                .and_then(|roots| crate::tls_roots::for_reqwest(roots.as_deref()))
                .inspect_err(|e| tracing::warn!("remote cache: {e}"))
                .ok()?;
            let mut b = crate::tls_roots::trust!(Client::builder(), roots)
                .connect_timeout(self.options.connect_timeout)
                .timeout(self.options.timeout)
                .user_agent(concat!("taskrun/", env!("CARGO_PKG_VERSION")));
            if self.loopback {
                b = b.no_proxy();
            }
            b.build()
                .inspect_err(|e| tracing::debug!("remote cache client: {}", chain(e)))
                .ok()
        });
        client
            .as_ref()
            .ok_or_else(|| Failure::Unreachable("cannot create an HTTP client".into()))
    }

    fn url_for(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.base)
    }

    /// Sends a request; `None` on 404, the response on 2xx, a failure otherwise.
    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Option<Response>, Failure> {
        let resp = req
            .send()
            .map_err(|e| Failure::Unreachable(chain(&e.without_url())))?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_server_error() => Err(Failure::Unreachable(format!("HTTP {s}"))),
            s => Err(Failure::Refused(format!("HTTP {s}"))),
        }
    }

    fn settle<T>(&self, what: &str, r: Result<Option<T>, Failure>) -> Option<T> {
        self.health.settle(what, r)
    }

    /// The verified action record for `key`, or `None` (absent, corrupt, or remote down).
    pub fn get_record(&self, key: &str) -> Option<ActionRecord> {
        if !self.is_enabled() {
            return None;
        }
        let what = format!("ac/{key}");
        let r = (|| {
            let client = self.client()?;
            let Some(resp) = self.send(client.get(self.url_for("ac", key)))? else {
                return Ok(None);
            };
            let mut body = Vec::new();
            Tracked::new(resp, self.options.timeout)
                .take(MAX_RECORD_BYTES)
                .read_to_end(&mut body)
                .map_err(|e| Failure::Unreachable(e.to_string()))?;
            let rec: ActionRecord =
                serde_json::from_slice(&body).map_err(|e| Failure::Corrupt(e.to_string()))?;
            rec.verify(key).map_err(Failure::Corrupt)?;
            Ok(Some(rec))
        })();
        self.settle(&what, r)
    }

    /// Copies blob `d` from the remote into `store`, verified. True when it is now there;
    /// false when absent, corrupt (warned) or the remote is down (warned once). `size`, when
    /// known, bounds how much is read.
    pub fn fetch_blob(&self, store: &Store, d: &Digest, size: Option<u64>) -> bool {
        if !self.is_enabled() {
            return false;
        }
        let hex = to_hex(d);
        let r = (|| {
            let client = self.client()?;
            let Some(resp) = self.send(client.get(self.url_for("cas", &hex)))? else {
                return Ok(None);
            };
            let len = size.or(resp.content_length()).unwrap_or(0);
            let mut body = Tracked::new(resp, body_limit(self.options.timeout, len));
            match store.put_verified(&mut body, d, size) {
                Ok(_) => Ok(Some(())),
                Err(BlobError::Corrupt(_)) => {
                    self.blob_state(&hex)
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .corrupt = true;
                    Err(Failure::Corrupt("content does not match its digest".into()))
                }
                Err(e) if body.failed => Err(Failure::Unreachable(e.to_string())),
                Err(e) => Err(Failure::Local(e.to_string())),
            }
        })();
        self.settle(&format!("cas/{hex}"), r).is_some()
    }

    /// The slot of blob `hex`, locked while it is being sent.
    fn blob_state(&self, hex: &str) -> Arc<Mutex<BlobState>> {
        self.blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(hex.to_string())
            .or_default()
            .clone()
    }

    /// Whether the remote already has blob `hex` (`HEAD`).
    fn has_blob(&self, client: &Client, hex: &str) -> Result<bool, Failure> {
        Ok(self.send(client.head(self.url_for("cas", hex)))?.is_some())
    }

    fn put(
        &self,
        client: &Client,
        (kind, name): (&str, &str),
        body: Body,
        len: u64,
    ) -> Result<(), Failure> {
        let timeout = body_limit(self.options.timeout, len);
        let req = client
            .put(self.url_for(kind, name))
            .timeout(timeout)
            .body(body);
        match self.send(req)? {
            Some(_) => Ok(()),
            None => Err(Failure::Refused("HTTP 404 Not Found on PUT".into())),
        }
    }

    /// Uploads a stored entry: every blob the remote lacks (asked with `HEAD` first), then
    /// the record, so a remote never holds a record whose blobs are missing. Does nothing
    /// unless writing is on; a failure disables the remote (one warning), never the task.
    pub fn upload(&self, store: &Store, record: &ActionRecord) {
        if !self.writes() {
            return;
        }
        let mut first = self
            .first_upload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *first {
            drop(first);
            self.upload_entry(store, record);
        } else {
            self.upload_entry(store, record);
            *first = true;
        }
    }

    fn upload_entry(&self, store: &Store, record: &ActionRecord) {
        if !self.writes() {
            return;
        }
        // The request a failure is about, for its warning: a blob's PUT or the record's.
        let what = std::cell::RefCell::new(format!("ac/{}", record.key));
        let r = (|| {
            let client = self.client()?;
            for hex in record.blobs() {
                *what.borrow_mut() = format!("cas/{hex}");
                let Some(d) = from_hex(hex) else {
                    return Err(Failure::Local(format!("bad digest {hex}")));
                };
                let slot = self.blob_state(hex);
                let mut state = slot.lock().unwrap_or_else(PoisonError::into_inner);
                if state.sent || (!state.corrupt && self.has_blob(client, hex)?) {
                    state.sent = true;
                    continue;
                }
                let path = store.blob_path(&d);
                let file = File::open(&path)
                    .map_err(|e| Failure::Local(format!("{}: {e}", path.display())))?;
                let len = file
                    .metadata()
                    .map_err(|e| Failure::Local(format!("{}: {e}", path.display())))?
                    .len();
                self.put(client, ("cas", hex), Body::sized(file, len), len)?;
                state.sent = true;
                state.corrupt = false;
            }
            let bytes = serde_json::to_vec_pretty(record)
                .map_err(|e| Failure::Local(format!("serialising the record: {e}")))?;
            let len = bytes.len() as u64;
            *what.borrow_mut() = format!("ac/{}", record.key);
            self.put(client, ("ac", &record.key), Body::from(bytes), len)?;
            Ok(Some(()))
        })();
        self.settle(&what.into_inner(), r);
    }
}

impl Drop for RemoteCache {
    fn drop(&mut self) {
        // Dropping a blocking client joins its runtime thread; never do that on an async
        // worker (the run loop may drop the cache there): hand it to a plain thread.
        if let Some(Some(client)) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            std::thread::spawn(move || drop(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that announces a record and then sends a byte every 100 ms: the lookup gives
    /// up once the whole body is overdue, rather than after every byte arrived (minutes).
    #[test]
    fn a_body_that_drips_is_given_up_on_its_deadline() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4000\r\n\r\n");
            for _ in 0..4000 {
                if s.write_all(b"{").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let url = url::Url::parse(&format!("http://{addr}/c")).unwrap();
        let options = RemoteOptions {
            timeout: Duration::from_millis(500),
            ..RemoteOptions::default()
        };
        let remote = RemoteCache::new(&url, options);
        let started = Instant::now();
        assert!(remote.get_record(&"a".repeat(64)).is_none());
        // 400 s if every byte were waited for; the deadline is half a second.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !remote.is_enabled(),
            "the remote stays off for the rest of the run"
        );
    }

    #[test]
    fn urls_join_without_double_slashes_and_hide_passwords() {
        let u = url::Url::parse("http://user:secret@127.0.0.1:9/cache/").unwrap();
        let r = RemoteCache::new(&u, RemoteOptions::default());
        assert_eq!(
            r.url_for("ac", "ab"),
            "http://user:secret@127.0.0.1:9/cache/ac/ab"
        );
        assert!(!r.url().contains("secret"));
        assert_eq!(r.url(), "http://127.0.0.1:9/cache");
        assert!(r.loopback);
    }

    #[test]
    fn read_only_remote_does_not_write() {
        let u = url::Url::parse("http://example.invalid/").unwrap();
        let r = RemoteCache::new(
            &u,
            RemoteOptions {
                write: false,
                ..RemoteOptions::default()
            },
        );
        assert!(r.is_enabled() && !r.writes());
    }
}
