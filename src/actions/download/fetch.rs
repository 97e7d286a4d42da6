//! One request to one mirror: resume decision, status handling, streaming, verification.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::task::Poll;
use std::time::SystemTime;

use reqwest::header::{self, HeaderMap, HeaderValue};

use super::classify::{self, FailureKind, is_retryable_status};
use super::part_writer::{PartSpec, PartWriter};
use super::resume::{self, PartMeta};
use super::transport::{self, Response};
use super::{
    AttemptFailure, Downloaded, HttpClient, TransferProgress, parse_retry_after, redirect,
};
use crate::cache::WrittenFile;
use crate::cache::digest::to_hex;
use crate::cache::stat::FileStat;
use crate::model::{Download, PinSource};
use crate::template::{Template, UrlSecretError};

/// A transfer that never waits for the network still reports its progress this often.
const PROGRESS_EVERY: u64 = 4 * 1024 * 1024;

/// Validators of a cached copy, for a conditional GET.
pub(crate) struct Conditional<'a> {
    /// Sent as `If-None-Match`.
    pub etag: Option<&'a str>,
    /// Sent as `If-Modified-Since`.
    pub last_modified: Option<&'a str>,
}

/// Everything one mirror request needs from the attempt.
pub(crate) struct Fetch<'a> {
    pub client: &'a HttpClient,
    pub download: &'a Download,
    /// Absolute destination.
    pub dest: &'a Path,
    /// Task headers, secrets exposed (marked sensitive).
    pub headers: &'a HeaderMap,
    pub progress: &'a (dyn Fn(TransferProgress) + Send + Sync),
    /// Bytes received over the network in this attempt, across mirrors.
    pub received: &'a AtomicU64,
    /// The status this mirror answered (see [`super::Tracker::http_status`]).
    pub status: &'a AtomicU16,
    pub conditional: Option<&'a Conditional<'a>>,
    /// See [`super::AttemptRequest::keep_digest`].
    pub keep_digest: bool,
}

/// A mirror's success.
pub(crate) enum Outcome {
    /// The file is at `dest`, verified.
    Done(Downloaded),
    /// A conditional request got 304: the cached copy is current.
    NotModified,
}

/// A failure of this mirror, before redaction and combination with the other mirrors.
pub(crate) fn failure(kind: FailureKind, retryable: bool, message: String) -> AttemptFailure {
    AttemptFailure {
        kind,
        retryable,
        retry_after: None,
        http_status: None,
        url: None,
        bytes: 0,
        message,
    }
}

/// The server a URL names, for messages: its host, and `host:port`.
#[derive(Clone)]
struct Peer {
    host: String,
    addr: String,
}

impl Peer {
    fn of(url: &reqwest::Url) -> Self {
        let host = url.host_str().unwrap_or("the server").to_string();
        let addr = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        Self { host, addr }
    }
}

fn transport_failure(err: transport::Error, during_body: bool, peer: &Peer) -> AttemptFailure {
    let (kind, retryable) = classify::classify_transport(&err, during_body);
    let text = super::wording::plain(&err, &peer.host, &peer.addr)
        .unwrap_or_else(|| classify::describe(err));
    failure(kind, retryable, text)
}

fn io_failure(what: &str, err: &std::io::Error) -> AttemptFailure {
    failure(FailureKind::Io, false, format!("{what}: {err}"))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Fetches `url` into `dest`; the failure's `url` is filled in here.
pub(crate) async fn mirror(f: &Fetch<'_>, url: &Template) -> Result<Outcome, AttemptFailure> {
    let shown = url.redacted();
    let mut result = request(f, url, &shown).await;
    if let Err(fail) = &mut result {
        fail.url = Some(shown);
    }
    result
}

async fn request(f: &Fetch<'_>, url: &Template, shown: &str) -> Result<Outcome, AttemptFailure> {
    let raw = url.expose_url().map_err(|e| {
        let kind = match e {
            UrlSecretError::Missing(_) => FailureKind::MissingSecret,
            _ => FailureKind::Invalid,
        };
        failure(kind, false, e.to_string())
    })?;
    let parsed = reqwest::Url::parse(&raw)
        .map_err(|e| failure(FailureKind::Invalid, false, format!("invalid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        let msg = format!("unsupported URL scheme `{}`", parsed.scheme());
        return Err(failure(FailureKind::Invalid, false, msg));
    }
    let (lock, first) = f.client.dest_lock_first(f.dest);
    let guard = lock.lock_owned().await;
    let _permit = f.client.host_permit(&parsed).await;
    let pinned = f.download.sha256.is_some();
    let mut allow_resume = f.download.resume && f.conditional.is_none();
    loop {
        // A part file is worth continuing only from the URL it came from (another one may
        // answer the same validator for other bytes: nginx's ETag is mtime and size), and if
        // the server can tell us it is still the same representation (If-Range), or the pin
        // will catch a mix of two versions.
        //
        // Without a part file there is no metadata either (see `resume::part_len`): the common
        // fresh download costs no `stat` here (see `HttpClient::may_have_part`) and no cleanup
        // later.
        let part = |dest| match f.client.may_have_part(dest, first) {
            true => resume::part_len(dest),
            false => None,
        };
        let (from, meta_on_disk) = match allow_resume.then(|| part(f.dest)) {
            Some(None) => (None, false),
            Some(Some(len)) => {
                let from = resume::read_meta(f.dest)
                    .filter(|meta| {
                        len > 0 && meta.url == shown && (meta.validator().is_some() || pinned)
                    })
                    .map(|meta| (meta, len));
                (from, true)
            }
            None => (None, true),
        };
        let headers = request_headers(f, from.as_ref().map(|(meta, len)| (meta, *len)))?;
        let mut asked = parsed.clone();
        let resp = redirect::send(&f.client.transport, &parsed, headers, &mut asked)
            .await
            .map_err(|e| transport_failure(e, false, &Peer::of(&asked)))?;
        let peer = Peer::of(&asked);
        let status = resp.status().as_u16();
        f.status.store(status, Ordering::Relaxed);
        let offset = from.as_ref().map_or(0, |(_, len)| *len);
        match status {
            304 if f.conditional.is_some() => return Ok(Outcome::NotModified),
            416 if offset > 0 => {
                // Our part is at or past the end of what the server has: start over.
                tracing::debug!(url = shown, offset, "range not satisfiable; restarting");
                resume::discard(f.dest);
                allow_resume = false;
            }
            206 if offset > 0 && from.as_ref().is_some_and(|(m, _)| other_version(m, &resp)) => {
                // Appending would splice two versions into one file.
                tracing::debug!(url = shown, offset, "206 of another version; restarting");
                resume::discard(f.dest);
                allow_resume = false;
            }
            206 if offset > 0 => match content_range(resp.headers()) {
                Some((start, total)) if start == offset => {
                    let total = total.or_else(|| resp.content_length().map(|n| n + offset));
                    let at = Start {
                        offset,
                        total,
                        meta_on_disk,
                        peer,
                    };
                    return stream(f, resp, shown, at, guard).await;
                }
                _ => {
                    tracing::debug!(url = shown, offset, "unusable Content-Range; restarting");
                    resume::discard(f.dest);
                    allow_resume = false;
                }
            },
            200..=299 if status != 206 => {
                let at = Start {
                    offset: 0,
                    total: resp.content_length(),
                    meta_on_disk,
                    peer,
                };
                return stream(f, resp, shown, at, guard).await;
            }
            _ => return Err(status_failure(&resp)),
        }
    }
}

/// The task's headers plus this request's, appended after them as reqwest's `header()` did:
/// `Range`/`If-Range` to continue `from` (a part file's metadata and length), the
/// conditional-request validators.
fn request_headers(
    f: &Fetch<'_>,
    from: Option<(&PartMeta, u64)>,
) -> Result<HeaderMap, AttemptFailure> {
    let mut headers = f.headers.clone();
    let mut set = |name: header::HeaderName, value: &str| {
        let value = HeaderValue::from_str(value).map_err(|_| {
            let msg = format!("the {name} value `{value}` is not a valid header value");
            failure(FailureKind::Invalid, false, msg)
        })?;
        headers.append(name, value);
        Ok::<(), AttemptFailure>(())
    };
    if let Some((meta, len)) = from {
        set(header::RANGE, &format!("bytes={len}-"))?;
        if let Some(v) = meta.validator() {
            set(header::IF_RANGE, v)?;
        }
    }
    if let Some(c) = f.conditional {
        if let Some(tag) = c.etag {
            set(header::IF_NONE_MATCH, tag)?;
        }
        if let Some(date) = c.last_modified {
            set(header::IF_MODIFIED_SINCE, date)?;
        }
    }
    Ok(headers)
}

fn status_failure(resp: &Response) -> AttemptFailure {
    let status = resp.status();
    let code = status.as_u16();
    let retry_after = header_str(resp.headers(), header::RETRY_AFTER)
        .and_then(|v| parse_retry_after(&v, SystemTime::now()));
    let mut message = format!("HTTP {status}");
    if let Some(wait) = retry_after {
        message.push_str(&format!(" (Retry-After: {}s)", wait.as_secs()));
    }
    let mut fail = failure(FailureKind::HttpStatus, is_retryable_status(code), message);
    fail.http_status = Some(code);
    fail.retry_after = retry_after;
    fail
}

/// Whether a 206 to our `If-Range` names another version than the one `meta` sent: its
/// `ETag` (or `Last-Modified`, when that was the validator) differs. A server must then answer
/// 200; one that ignores `If-Range`, or changed the file between the check and the body, does
/// not. A 206 without that header is taken at its word.
fn other_version(meta: &PartMeta, resp: &Response) -> bool {
    let Some(sent) = meta.validator() else {
        return false;
    };
    let name = match meta.etag.as_deref() == Some(sent) {
        true => header::ETAG,
        false => header::LAST_MODIFIED,
    };
    resp.headers()
        .get(name)
        .is_some_and(|got| got.as_bytes().trim_ascii() != sent.as_bytes())
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL); `*` totals are `None`.
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((start, total))
}

/// Where a response's body starts in the file.
struct Start {
    /// Bytes of the part file kept (a 206 continuation), else 0.
    offset: u64,
    /// The full size, when known.
    total: Option<u64>,
    /// `<dest>.part.json` may exist (see [`PartSpec::meta_on_disk`]).
    meta_on_disk: bool,
    /// The server that answered (after any redirects).
    peer: Peer,
}

async fn stream(
    f: &Fetch<'_>,
    mut resp: Response,
    shown: &str,
    at: Start,
    guard: tokio::sync::OwnedMutexGuard<()>,
) -> Result<Outcome, AttemptFailure> {
    let Start {
        offset,
        total,
        meta_on_disk,
        peer,
    } = at;
    let status = resp.status().as_u16();
    let with_status = |mut fail: AttemptFailure| {
        fail.http_status = Some(status);
        fail
    };
    if let (Some(max), Some(total)) = (f.download.max_bytes, total)
        && total > max
    {
        resume::discard(f.dest);
        let msg = format!("the server announced {total} bytes, more than max_bytes ({max})");
        return Err(with_status(failure(FailureKind::TooLarge, false, msg)));
    }
    let etag = header_str(resp.headers(), header::ETAG);
    let last_modified = header_str(resp.headers(), header::LAST_MODIFIED);
    let meta = f.download.resume.then(|| PartMeta {
        version: 1,
        url: shown.to_owned(),
        etag: etag.clone(),
        last_modified: last_modified.clone(),
        bytes: offset,
        total,
    });
    let mut writer = PartWriter::start(PartSpec {
        dest: f.dest.to_path_buf(),
        offset,
        expected: total.map(|t| t.saturating_sub(offset)),
        meta,
        meta_on_disk,
        guard,
        hash: f.keep_digest || f.download.sha256.is_some(),
    });
    let mut got = offset;
    // Progress goes to the run loop's thread (a wake-up each time), so it is reported only
    // when the transfer is about to wait for the network (then the display is worth
    // updating), at least every `PROGRESS_EVERY` bytes, and once at the end if anything was.
    // A small file that arrives in one go reports nothing.
    let mut reported: Option<u64> = None;
    let report = |got: u64, reported: &mut Option<u64>| {
        if *reported != Some(got) {
            (f.progress)(TransferProgress {
                received: got,
                total,
            });
            *reported = Some(got);
        }
    };
    loop {
        let mut next = std::pin::pin!(resp.chunk());
        let item = match std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
            Poll::Ready(item) => item,
            Poll::Pending => {
                report(got, &mut reported);
                next.await
            }
        };
        match item {
            Ok(Some(chunk)) => {
                let n = chunk.len() as u64;
                got += n;
                f.received.fetch_add(n, Ordering::Relaxed);
                if let Some(max) = f.download.max_bytes
                    && got > max
                {
                    writer.discard().await;
                    let msg = format!("the body exceeds max_bytes ({max})");
                    return Err(with_status(failure(FailureKind::TooLarge, false, msg)));
                }
                if let Err(err) = writer.write(chunk).await {
                    writer.discard().await;
                    let what = format!("cannot write {}", resume::part_path(f.dest).display());
                    return Err(with_status(io_failure(&what, &err)));
                }
                if got - reported.unwrap_or(offset) >= PROGRESS_EVERY {
                    report(got, &mut reported);
                }
            }
            Ok(None) => {
                if reported.is_some() {
                    report(got, &mut reported);
                }
                break;
            }
            Err(err) => {
                writer.abort().await;
                let mut fail = transport_failure(err, true, &peer);
                fail.message = format!("{} after {got} bytes", fail.message);
                return Err(with_status(fail));
            }
        }
    }
    if let Some(total) = total
        && got < total
    {
        writer.abort().await;
        let msg = format!("the body ended after {got} of {total} bytes");
        return Err(with_status(failure(FailureKind::Truncated, true, msg)));
    }
    let written = writer.finish().await.map_err(|e| {
        let what = format!("cannot write {}", resume::part_path(f.dest).display());
        with_status(io_failure(&what, &e))
    })?;
    if let Some(pin) = &f.download.sha256 {
        let got = written.digest.as_ref().map(to_hex).unwrap_or_default();
        if !pin.eq_ignore_ascii_case(&got) {
            resume::discard(f.dest);
            let msg = match &f.download.pin_source {
                PinSource::Manifest => format!("sha256 mismatch: expected {pin}, got {got}"),
                PinSource::Lockfile(lock) => format!(
                    "sha256 mismatch: {} has {}, the server sent {}; if the new content is \
                     expected, run {}",
                    lock.file,
                    short_digest(pin),
                    short_digest(&got),
                    lock.update
                ),
            };
            return Err(with_status(failure(FailureKind::Checksum, true, msg)));
        }
    }
    // Metadata first: a crash in between leaves a part without metadata, which is restarted.
    // Both are single metadata operations on a local file system, cheaper inline than the
    // hand-off to a blocking thread that `tokio::fs` would make.
    if written.meta_on_disk {
        resume::remove_meta(f.dest);
    }
    let part = resume::part_path(f.dest);
    if let Err(err) = std::fs::rename(&part, f.dest) {
        resume::discard(f.dest);
        let what = format!("cannot move the download to {}", f.dest.display());
        return Err(with_status(io_failure(&what, &err)));
    }
    // The stat of the file in place, read through the descriptor that wrote it: the cache
    // trusts the digest only while the file still has it.
    let kept = match (f.keep_digest, written.digest) {
        (true, Some(digest)) => written.file.metadata().ok().map(|meta| WrittenFile {
            path: f.dest.to_path_buf(),
            digest,
            stat: FileStat::of(&meta),
        }),
        _ => None,
    };
    drop(written.guard);
    Ok(Outcome::Done(Downloaded {
        url: shown.to_owned(),
        http_status: status,
        bytes: got - offset,
        written: kept,
        size: written.size,
        etag,
        last_modified,
        resumed_from: offset,
    }))
}

/// The first four hex digits of a digest and an ellipsis, as SPEC §10's mismatch message
/// shows them: enough to tell two digests apart at a glance; the lockfile has the whole one.
fn short_digest(hex: &str) -> String {
    format!("{}…", hex.get(..4).unwrap_or(hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(v: &str) -> Option<(u64, Option<u64>)> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, v.parse().unwrap());
        content_range(&h)
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(cr("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(cr("bytes 10-99/*"), Some((10, None)));
        assert_eq!(cr("bytes 10-100/100"), None);
        assert_eq!(cr("bytes 20-10/100"), None);
        assert_eq!(cr("bytes */100"), None);
        assert_eq!(cr("items 1-2/3"), None);
    }
}
