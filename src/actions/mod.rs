//! What a task does on a cache miss: run a command, download a file, start a service.
//!
//! Actions never see the DAG: they get one task, an [`TaskOutput`] for their output and
//! progress, and the run's stop signal, and they return one [`AttemptResult`] per attempt.
//! The scheduler decides about retries, slots and the cache.

pub mod command;
pub mod download;
pub mod env;
pub mod outputs;
pub mod process;
pub mod remote;
pub mod service;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::events::Stream;
use crate::model::{Action, Pipeline, Task};
use crate::report::AttemptOutcome;
use crate::template::Redactor;

pub use process::Stop;

/// Something an action reports while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// An attempt is about to run (sent before any of its output).
    Started {
        /// 1-based attempt number.
        attempt: u32,
        /// It runs on the remote executor (SPEC §11), not here.
        remote: bool,
    },
    /// A line of output (secrets redacted).
    Line {
        /// Which pipe.
        stream: Stream,
        /// The text, without its newline.
        line: String,
    },
    /// Download bytes so far.
    Download {
        /// Bytes received in this attempt.
        bytes: u64,
        /// Content-Length, if known.
        total: Option<u64>,
    },
}

/// Most output kept in memory per attempt for the cache (the log file keeps everything).
const CAPTURE_LIMIT: usize = 64 << 20;

/// Where a running task's output goes: the run loop (console), its log file, the cache.
/// (Not an [`crate::events::Sink`]: those consume the run's events; this produces some.)
pub struct TaskOutput {
    task: usize,
    tx: mpsc::Sender<(usize, Progress)>,
    /// The task's log: its path, and the file once the first line arrives (a task that
    /// prints nothing leaves no empty file behind).
    log: Option<Mutex<LogFile>>,
    secrets: Arc<Redactor>,
    captured: Mutex<Vec<u8>>,
    /// Send download progress (see [`TaskOutput::without_download_progress`]).
    download_progress: bool,
}

impl TaskOutput {
    /// The output of task `task`, appending to the file at `log` when given; every form of the
    /// secrets `secrets` knows is redacted.
    pub fn new(
        task: usize,
        tx: mpsc::Sender<(usize, Progress)>,
        log: Option<std::path::PathBuf>,
        secrets: Arc<Redactor>,
    ) -> Self {
        Self {
            task,
            tx,
            log: log.map(|path| {
                Mutex::new(LogFile {
                    path,
                    file: None,
                    held: Vec::new(),
                })
            }),
            secrets,
            captured: Mutex::new(Vec::new()),
            download_progress: true,
        }
    }

    /// Drops download progress instead of sending it: nothing shows it, and each message
    /// wakes the run loop's thread.
    pub fn without_download_progress(mut self) -> Self {
        self.download_progress = false;
        self
    }

    /// `text` with the secrets redacted, for what the task reports besides its output (its
    /// error, the URL it ended on).
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        self.secrets.redact(text)
    }

    /// Records one line: redacted, appended to the log file at once, sent to the console.
    pub async fn line(&self, stream: Stream, text: &str) {
        self.line_held(stream, text.as_bytes()).await;
        self.flush_log();
    }

    /// Like [`TaskOutput::line`], but the log file gets the line only at the next
    /// [`TaskOutput::flush_log`]: a reader that got many lines from one read writes them
    /// with one system call instead of one per line.
    /// The log and the recorded output get the bytes as printed; the console gets text.
    pub(crate) async fn line_held(&self, stream: Stream, bytes: &[u8]) {
        self.printed(stream, bytes, b"\n").await;
    }

    /// [`TaskOutput::line_held`] for a line of the command's own output: `ending` is what
    /// ended it (`\n`, `\r\n`, or nothing at the very end), which the log file keeps, so
    /// it holds the bytes the command printed.
    pub(crate) async fn printed(&self, stream: Stream, bytes: &[u8], ending: &[u8]) {
        let bytes = self.secrets.redact_bytes(bytes);
        if let Some(log) = &self.log
            && let Ok(mut log) = log.lock()
        {
            log.hold_line(&bytes, ending);
        }
        if let Ok(mut c) = self.captured.lock()
            && c.len() < CAPTURE_LIMIT
        {
            c.extend_from_slice(&bytes);
            c.push(b'\n');
        }
        let line = String::from_utf8_lossy(&bytes).into_owned();
        let _ = self
            .tx
            .send((self.task, Progress::Line { stream, line }))
            .await;
    }

    /// Writes the lines held for the log file (see [`TaskOutput::line_held`]).
    pub(crate) fn flush_log(&self) {
        if let Some(log) = &self.log
            && let Ok(mut log) = log.lock()
        {
            log.flush();
        }
    }

    /// Reports download progress; dropped when the console is behind (the next one follows).
    pub fn download_progress(&self, bytes: u64, total: Option<u64>) {
        if !self.download_progress {
            return;
        }
        let _ = self
            .tx
            .try_send((self.task, Progress::Download { bytes, total }));
    }

    /// The output captured since the last call (what the cache records on success).
    pub fn take_captured(&self) -> Vec<u8> {
        self.captured
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

impl Drop for TaskOutput {
    fn drop(&mut self) {
        // Lines held when a reader was cancelled (the pipe linger ran out) still reach the log.
        self.flush_log();
    }
}

/// A task's log file, opened (for appending) when its first line is written.
struct LogFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    /// Lines not written yet (see [`TaskOutput::line_held`]).
    held: Vec<u8>,
}

impl LogFile {
    fn hold_line(&mut self, line: &[u8], ending: &[u8]) {
        self.held.extend_from_slice(line);
        self.held.extend_from_slice(ending);
    }

    fn flush(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if self.file.is_none() {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            };
            // The run's log dir is made by the first task that prints anything.
            let opened = match open() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.path.parent().map_or(Err(e), |dir| {
                        std::fs::create_dir_all(dir).and_then(|()| open())
                    })
                }
                other => other,
            };
            match opened {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::warn!("cannot write the log {}: {e}", self.path.display());
                    self.held.clear();
                    return;
                }
            }
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(&self.held);
        }
        self.held.clear();
    }
}

/// Everything one attempt needs.
pub struct AttemptCtx<'a> {
    /// The pipeline (root, `[env]`).
    pub pipeline: &'a Pipeline,
    /// The task.
    pub task: &'a Task,
    /// 1-based attempt number.
    pub number: u32,
    /// The run's stop request.
    pub stop: watch::Receiver<Stop>,
    /// Output and progress.
    pub output: &'a TaskOutput,
    /// The run's HTTP client (downloads only), or why it could not be built.
    pub http: Result<&'a Arc<download::HttpClient>, &'a str>,
    /// The cache will snapshot the outputs: a download hashes its body for it (see
    /// [`download::AttemptRequest::keep_digest`]).
    pub keep_digest: bool,
}

/// How one attempt went: what every attempt has, then what only a command's
/// (`exit_code`) or a download's ([`DownloadEnd`]) has.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// succeeded / failed / timed_out / cancelled.
    pub outcome: AttemptOutcome,
    /// What went wrong (secrets redacted).
    pub error: Option<String>,
    /// Whether another attempt may help.
    pub retryable: bool,
    /// A server's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// A command's exit code.
    pub exit_code: Option<i32>,
    /// A download's end; `None` for a command.
    pub download: Option<Box<DownloadEnd>>,
    /// A successful command's declared outputs as they were before it ran: if its result
    /// cannot be recorded after all, what it wrote is deleted (SPEC §8), nothing else.
    pub before: Option<std::sync::Arc<outputs::Snapshot>>,
    /// The command never started: a remote action the cluster refused (or that failed
    /// before it was executed). Such an attempt does not make the task `executed_on` there.
    pub not_run: bool,
}

/// What a download attempt adds to its [`AttemptResult`].
#[derive(Debug, Clone, Default)]
pub struct DownloadEnd {
    /// The HTTP status it ended on.
    pub http_status: Option<u16>,
    /// The URL it ended on.
    pub url: Option<String>,
    /// Bytes received.
    pub bytes: u64,
    /// ETag / Last-Modified, kept with its cache entry for revalidation.
    pub validators: Option<crate::cache::HttpValidators>,
    /// The file, with the digest it was hashed to while streaming, for the cache.
    pub written: Option<crate::cache::WrittenFile>,
}

impl AttemptResult {
    /// A successful attempt.
    pub fn succeeded() -> Self {
        Self::ended(AttemptOutcome::Succeeded, None, false)
    }

    /// A failed attempt with a message.
    pub fn failed(error: impl Into<String>, retryable: bool) -> Self {
        Self::ended(AttemptOutcome::Failed, Some(error.into()), retryable)
    }

    /// An attempt that ended with `outcome`, saying `error`.
    pub fn ended(outcome: AttemptOutcome, error: Option<String>, retryable: bool) -> Self {
        Self {
            outcome,
            error,
            retryable,
            retry_after: None,
            exit_code: None,
            download: None,
            before: None,
            not_run: false,
        }
    }

    /// The same, ended with `outcome` instead (timed out, cancelled).
    pub fn with_outcome(mut self, outcome: AttemptOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The same, with a command's exit code.
    pub fn with_exit_code(mut self, code: Option<i32>) -> Self {
        self.exit_code = code;
        self
    }

    /// The same, with what a download adds.
    pub fn with_download(mut self, end: DownloadEnd) -> Self {
        self.download = Some(Box::new(end));
        self
    }

    /// Bytes a download received; `None` for a command.
    pub fn bytes(&self) -> Option<u64> {
        self.download.as_ref().map(|d| d.bytes)
    }
}

/// Runs one attempt of a command or download task.
pub async fn attempt(ctx: AttemptCtx<'_>) -> AttemptResult {
    match &ctx.task.action {
        Action::Command(cmd) => command::attempt(cmd, &ctx).await,
        Action::Download(d) => download::run_attempt(d, &ctx, ctx.http).await,
        // Groups and services never reach here: the run loop handles them itself.
        Action::Group | Action::Service(_) => AttemptResult::succeeded(),
    }
}
