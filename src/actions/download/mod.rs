//! The `download` action (SPEC §4): one attempt of an HTTP(S) GET streamed to a file.
//!
//! The scheduler owns the retry loop, the waits and the slots; it calls [`attempt`] once per
//! attempt and reads [`AttemptFailure::retryable`] and [`AttemptFailure::retry_after`] to
//! decide what comes next. Within an attempt the mirrors are tried in order.
//!
//! On disk: the body streams to `<dest>.part` (hashed in the same pass, see `part_writer`), with
//! `<dest>.part.json` beside it when `resume` is on and the transfer is large or was cut
//! short; `dest` only ever appears by renaming a complete, verified part file onto it.

mod classify;
mod client;
mod fetch;
mod part_writer;
mod pool;
mod redirect;
mod resume;
mod retry_after;
mod task;
mod transport;
mod wording;

use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub use classify::{FailureKind, is_retryable_status};
pub use client::{DownloadError, HttpClient};
pub use retry_after::parse_retry_after;
pub use task::{failed, run_attempt, succeeded};
pub use transport::enter_lane;

use crate::cache::WrittenFile;
use crate::model::Download;
use crate::template::{Redactor, Template};
use crate::workspace::Workspace;
use fetch::{Conditional, Fetch, Outcome, failure};

/// Live byte counts of the running transfer, for bytes / rate / ETA displays (what the
/// scheduler turns into [`crate::actions::Progress::Download`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferProgress {
    /// Bytes in the part file so far, including any resumed prefix.
    pub received: u64,
    /// The full size, when the server announced it.
    pub total: Option<u64>,
}

/// What one attempt needs; the scheduler builds one per attempt.
pub struct AttemptRequest<'a> {
    /// The task's download definition.
    pub download: &'a Download,
    /// The workspace root `dest` is relative to.
    pub root: &'a Path,
    /// 1-based attempt number (for logs).
    pub attempt: u32,
    /// Bounds the whole attempt, all mirrors included; a stall past it is a retryable timeout.
    pub timeout: Option<Duration>,
    /// Called from the transfer task whenever it is about to wait for the network, at least
    /// every 4 MiB, and at the end of the body if it was called before (a body that arrives
    /// without a wait reports nothing); keep it cheap (store, don't render).
    pub progress: &'a (dyn Fn(TransferProgress) + Send + Sync),
    /// The cache records the file's digest: hash the body while streaming even without a
    /// pin, and hand the digest on ([`Downloaded::written`]) so the file is not read back.
    /// Off (with no pin) the body is not hashed at all.
    pub keep_digest: bool,
}

/// A verified file now at `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The mirror that served it, secrets redacted.
    pub url: String,
    /// 200, or 206 when a part file was continued.
    pub http_status: u16,
    /// Bytes received over the network in this attempt (all mirrors), the report's `bytes`.
    pub bytes: u64,
    /// The file's digest and its `stat` once in place, when [`AttemptRequest::keep_digest`].
    pub written: Option<WrittenFile>,
    /// The file's size.
    pub size: u64,
    /// The server's `ETag`, for later revalidation.
    pub etag: Option<String>,
    /// The server's `Last-Modified`, for later revalidation.
    pub last_modified: Option<String>,
    /// Bytes kept from an earlier part file (0 when the transfer started from scratch).
    pub resumed_from: u64,
}

/// Why an attempt failed, and whether the scheduler should try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// The reason, for logs.
    pub kind: FailureKind,
    /// SPEC §3: connection errors, timeouts, truncation, checksum, 408/425/429/5xx-listed.
    pub retryable: bool,
    /// The server's `Retry-After`, uncapped (the scheduler caps it by `max_delay`).
    pub retry_after: Option<Duration>,
    /// The last HTTP status seen, if a response arrived.
    pub http_status: Option<u16>,
    /// The (last) mirror tried, secrets redacted.
    pub url: Option<String>,
    /// Bytes received over the network in this attempt.
    pub bytes: u64,
    /// What happened, per mirror; secrets redacted; names both digests on a mismatch.
    pub message: String,
}

impl std::fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AttemptFailure {}

/// The answer to a conditional request for a cached download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revalidation {
    /// 304: the cached file is current; nothing was written.
    NotModified,
    /// 200: the new content is now at `dest`, verified like any download.
    Changed(Downloaded),
}

/// Runs one attempt: tries each mirror in order until one delivers a verified file.
///
/// Leaves nothing at `dest` unless it succeeds. On failure (or when this future is dropped)
/// only `<dest>.part` and `<dest>.part.json` remain, and only when `resume` is on.
pub async fn attempt(
    client: &HttpClient,
    req: AttemptRequest<'_>,
) -> Result<Downloaded, AttemptFailure> {
    attempt_tracked(client, req, &Tracker::default()).await
}

/// A download served from the cache needs no resume files: `<dest>.part` and its metadata
/// left by an earlier, killed transfer would stay forever (and be seen by input globs).
pub fn discard_resume(root: &Path, dest: &str) {
    resume::discard(&root.join(dest));
}

/// What an attempt has done so far, readable while it runs: an attempt that is dropped (the
/// run was interrupted) still reports the bytes it received and the URL it was trying.
#[derive(Debug, Default)]
pub struct Tracker {
    received: AtomicU64,
    current: Mutex<Option<String>>,
    /// The status of the current mirror's response (0: none yet).
    status: AtomicU16,
}

impl Tracker {
    /// Bytes received over the network so far in this attempt, across mirrors.
    pub fn bytes(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The HTTP status the mirror being tried answered, once it did: an attempt cut short
    /// in the body (timeout, interrupt) still reports it.
    pub fn http_status(&self) -> Option<u16> {
        Some(self.status.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }

    /// The mirror being tried (secrets redacted), once one was.
    pub fn url(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// [`attempt`], with its progress kept in `tracker`.
pub async fn attempt_tracked(
    client: &HttpClient,
    req: AttemptRequest<'_>,
    tracker: &Tracker,
) -> Result<Downloaded, AttemptFailure> {
    match run(client, &req, None, tracker).await? {
        Outcome::Done(done) => Ok(done),
        Outcome::NotModified => Err(failure(
            FailureKind::Invalid,
            false,
            "unexpected 304 Not Modified to an unconditional request".into(),
        )),
    }
}

/// Asks the mirrors whether a cached download changed (`If-None-Match` / `If-Modified-Since`).
///
/// 304 leaves `dest` alone; 200 downloads anew exactly like [`attempt`] (atomically replacing
/// `dest`). Without any validator this is a plain download.
pub async fn revalidate(
    client: &HttpClient,
    req: AttemptRequest<'_>,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Result<Revalidation, AttemptFailure> {
    let cond = Conditional {
        etag,
        last_modified,
    };
    let cond = (etag.is_some() || last_modified.is_some()).then_some(&cond);
    Ok(match run(client, &req, cond, &Tracker::default()).await? {
        Outcome::Done(done) => Revalidation::Changed(done),
        Outcome::NotModified => Revalidation::NotModified,
    })
}

async fn run(
    client: &HttpClient,
    req: &AttemptRequest<'_>,
    cond: Option<&Conditional<'_>>,
    tracker: &Tracker,
) -> Result<Outcome, AttemptFailure> {
    let dest = req.root.join(req.download.dest.as_str());
    // A symlink at `dest` or a parent of it that leads outside the workspace goes first
    // (SPEC §13); `<dest>.part` is never opened through a symlink (see `part_writer`, `resume`).
    if let Err(e) = Workspace::new(req.root).unlink_escapes_before_write(&req.download.dest) {
        let msg = format!("cannot check {} for symlinks: {e}", req.download.dest);
        return Err(failure(FailureKind::Invalid, false, msg));
    }
    let secrets = secret_values(req.download);
    let work = mirrors(client, req, &dest, cond, tracker, &secrets);
    let result = match req.timeout {
        None => work.await,
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => {
                // The transfer was dropped and has settled its part files; wait for any other
                // holder of the destination (none is expected) before reporting.
                drop(client.dest_lock(&dest).lock().await);
                let url = tracker.url();
                let mut fail = failure(
                    FailureKind::Timeout,
                    true,
                    format!(
                        "{}: timed out after {}",
                        url.as_deref().unwrap_or("download"),
                        humantime::format_duration(limit)
                    ),
                );
                fail.url = url;
                fail.http_status = tracker.http_status();
                Err(fail)
            }
        },
    };
    let bytes = tracker.bytes();
    match result {
        Ok(Outcome::Done(mut done)) => {
            done.bytes = bytes;
            tracing::debug!(url = %done.url, bytes, attempt = req.attempt, "downloaded");
            Ok(Outcome::Done(done))
        }
        Ok(other) => Ok(other),
        Err(mut fail) => {
            fail.bytes = bytes;
            fail.message = secrets.redact(&fail.message).into_owned();
            fail.url = fail.url.map(|u| secrets.redact(&u).into_owned());
            Err(fail)
        }
    }
}

async fn mirrors(
    client: &HttpClient,
    req: &AttemptRequest<'_>,
    dest: &Path,
    cond: Option<&Conditional<'_>>,
    tracker: &Tracker,
    secrets: &Redactor,
) -> Result<Outcome, AttemptFailure> {
    let headers = build_headers(req.download)?;
    let fetch = Fetch {
        client,
        download: req.download,
        dest,
        headers: &headers,
        progress: req.progress,
        received: &tracker.received,
        status: &tracker.status,
        conditional: cond,
        keep_digest: req.keep_digest,
    };
    let mut failures = Vec::new();
    for url in &req.download.urls {
        *tracker
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(url.redacted());
        tracker.status.store(0, Ordering::Relaxed);
        match fetch::mirror(&fetch, url).await {
            Ok(outcome) => return Ok(outcome),
            Err(mut fail) => {
                fail.message = secrets.redact(&fail.message).into_owned();
                tracing::debug!(url = %url, error = %fail.message, "mirror failed");
                failures.push(fail);
            }
        }
    }
    Err(combine(failures))
}

/// One failure for the whole attempt: retryable if any mirror's was, and then described by
/// the last retryable mirror (its kind, status and URL explain why it is worth retrying);
/// the largest `Retry-After` among retryable mirrors (every server that asked for a pause
/// gets it); every mirror's reason in the message.
fn combine(failures: Vec<AttemptFailure>) -> AttemptFailure {
    let retry_after = failures
        .iter()
        .filter(|f| f.retryable)
        .filter_map(|f| f.retry_after)
        .max();
    let message = failures
        .iter()
        .map(|f| match &f.url {
            Some(url) => format!("{url}: {}", f.message),
            None => f.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let pick = failures
        .iter()
        .rposition(|f| f.retryable)
        .or(failures.len().checked_sub(1));
    let mut out = match pick {
        Some(i) => failures.into_iter().nth(i),
        None => None,
    }
    .unwrap_or_else(|| {
        failure(
            FailureKind::Invalid,
            false,
            "the download has no URL".into(),
        )
    });
    out.retry_after = retry_after;
    if !message.is_empty() {
        out.message = message;
    }
    out
}

/// The task's headers with secrets exposed; secret-bearing values are marked sensitive, which
/// also keeps them from a redirect to another origin (see `redirect::send`).
fn build_headers(download: &Download) -> Result<HeaderMap, AttemptFailure> {
    let mut map = HeaderMap::new();
    for (name, value) in &download.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            failure(
                FailureKind::Invalid,
                false,
                format!("`{name}` is not a valid header name"),
            )
        })?;
        let exposed = value
            .expose()
            .map_err(|e| failure(FailureKind::MissingSecret, false, e.to_string()))?;
        let mut v = HeaderValue::from_str(&exposed).map_err(|_| {
            let msg = format!("the value of header `{name}` is not a valid header value");
            failure(FailureKind::Invalid, false, msg)
        })?;
        v.set_sensitive(value.has_secret());
        map.insert(header, v);
    }
    Ok(map)
}

/// Every form of the secrets this download uses (see [`Redactor`]).
fn secret_values(download: &Download) -> Redactor {
    let templates = download.urls.iter().chain(download.headers.values());
    let mut names: Vec<&str> = templates.flat_map(Template::secret_names).collect();
    names.sort_unstable();
    names.dedup();
    Redactor::new(
        names
            .into_iter()
            .filter_map(|name| std::env::var(name).ok()),
    )
}
