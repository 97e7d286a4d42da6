//! The scheduler's side of a download: one [`AttemptCtx`] in, one [`AttemptResult`] out.
//!
//! Adds what the transfer itself does not know about: the run's stop signal (an interrupt
//! drops the transfer, leaving only the resume files) and the report's fields.

use std::sync::Arc;

use super::{
    AttemptFailure, AttemptRequest, FailureKind, HttpClient, Tracker, TransferProgress,
    attempt_tracked,
};
use crate::actions::{AttemptCtx, AttemptResult, DownloadEnd};
use crate::model::Download;
use crate::report::AttemptOutcome;

/// Runs one attempt of `download` for the task in `ctx`.
pub async fn run_attempt(
    download: &Download,
    ctx: &AttemptCtx<'_>,
    client: Result<&Arc<HttpClient>, &str>,
) -> AttemptResult {
    let client = match client {
        Ok(c) => c,
        Err(e) => return AttemptResult::failed(format!("cannot start HTTP client: {e}"), false),
    };
    let output = ctx.output;
    let progress = move |p: TransferProgress| output.download_progress(p.received, p.total);
    let request = AttemptRequest {
        download,
        root: &ctx.pipeline.root,
        attempt: ctx.number,
        timeout: ctx.task.timeout,
        progress: &progress,
        keep_digest: ctx.keep_digest,
    };
    let mut stop = ctx.stop.clone();
    let stopped = async move { crate::actions::process::stopped(&mut stop).await };
    let tracker = Tracker::default();
    tokio::select! {
        result = attempt_tracked(client, request, &tracker) => match result {
            Ok(done) => succeeded(done),
            Err(f) => failed(f),
        },
        () = stopped => interrupted(&tracker),
    }
}

/// The report fields of a failed download.
pub fn failed(f: AttemptFailure) -> AttemptResult {
    let outcome = match f.kind {
        FailureKind::Timeout => AttemptOutcome::TimedOut,
        _ => AttemptOutcome::Failed,
    };
    let mut result =
        AttemptResult::ended(outcome, Some(f.message), f.retryable).with_download(DownloadEnd {
            http_status: f.http_status,
            url: f.url,
            bytes: f.bytes,
            ..DownloadEnd::default()
        });
    result.retry_after = f.retry_after;
    result
}

/// The report fields of a download the run's stop cut short.
fn interrupted(tracker: &Tracker) -> AttemptResult {
    AttemptResult::ended(
        AttemptOutcome::Cancelled,
        Some("interrupted; the partial transfer is kept for resume".into()),
        false,
    )
    .with_download(DownloadEnd {
        http_status: tracker.http_status(),
        url: tracker.url(),
        bytes: tracker.bytes(),
        ..DownloadEnd::default()
    })
}

/// The report fields of a finished download.
pub fn succeeded(done: super::Downloaded) -> AttemptResult {
    let validators = (done.etag.is_some() || done.last_modified.is_some()).then_some(
        crate::cache::HttpValidators {
            etag: done.etag,
            last_modified: done.last_modified,
        },
    );
    AttemptResult::succeeded().with_download(DownloadEnd {
        http_status: Some(done.http_status),
        url: Some(done.url),
        bytes: done.bytes,
        validators,
        written: done.written,
    })
}
