//! `--log-format json`: every event as a tracing event, which the JSON subscriber prints as
//! one JSON object per line.

use crate::events::{Event, Sink, Stream};
use crate::scheduler::retry_wait_ms;

/// Forwards events to `tracing` (progress and attempt starts at debug, the rest at info/warn).
#[derive(Debug, Default)]
pub struct TracingSink {
    /// `-q` (SPEC §7): only failures, warnings, an interrupt and the run's end, as on the
    /// text console.
    pub quiet: bool,
}

impl TracingSink {
    /// Whether `-q` drops `event`: every per-event line but a failed task's.
    fn drops(&self, event: &Event) -> bool {
        self.quiet
            && match event {
                Event::TaskFinished { task, .. } => {
                    task.status != crate::report::TaskStatus::Failed
                }
                Event::Interrupted { .. } | Event::Warning { .. } | Event::RunFinished { .. } => {
                    false
                }
                _ => true,
            }
    }
}

impl Sink for TracingSink {
    fn wants_download_progress(&self) -> bool {
        tracing::enabled!(tracing::Level::DEBUG)
    }

    fn event(&mut self, event: &Event) {
        if self.drops(event) {
            return;
        }
        match event {
            Event::RunStarted {
                run_id,
                pipeline,
                total,
            } => {
                tracing::info!(event = "run_started", run_id, pipeline, total)
            }
            Event::Expanded { total } => tracing::info!(event = "run_expanded", total),
            Event::TaskStarted { name, kind } => {
                tracing::info!(event = "task_started", task = %name, kind = kind.as_str())
            }
            Event::AttemptStarted { name, number } => {
                tracing::debug!(event = "attempt_started", task = %name, attempt = number)
            }
            Event::OutputLine {
                name,
                stream,
                line,
                remote,
            } => tracing::info!(
                event = "output",
                task = %name,
                stream = if *stream == Stream::Stdout { "stdout" } else { "stderr" },
                remote,
                line
            ),
            Event::RetryScheduled {
                name,
                failed_attempt,
                reason,
                wait,
            } => tracing::warn!(
                event = "retry_scheduled",
                task = %name,
                attempt = failed_attempt,
                reason,
                wait_ms = retry_wait_ms(*wait)
            ),
            Event::DownloadProgress { name, bytes, total } => {
                tracing::debug!(event = "download_progress", task = %name, bytes, total)
            }
            Event::CacheHit { name, source } => {
                tracing::info!(event = "cache_hit", task = %name, source = source.as_str())
            }
            Event::ServiceReady { name } => tracing::info!(event = "service_ready", task = %name),
            Event::TaskFinished { task, .. } => tracing::info!(
                event = "task_finished",
                task = task.name,
                status = task.status.as_str(),
                attempts = task.attempts.len(),
                duration_ms = task.duration_ms,
                exit_code = task.exit_code,
                error = task.error
            ),
            Event::Interrupted { signal, forced } => {
                tracing::warn!(event = "interrupted", signal, forced)
            }
            Event::Warning { message } => tracing::warn!(event = "warning", message),
            Event::RunFinished { report } => tracing::info!(
                event = "run_finished",
                run_id = report.run_id,
                status = report.status.as_str(),
                total = report.summary.total,
                succeeded = report.summary.succeeded,
                cached = report.summary.cached,
                failed = report.summary.failed,
                skipped = report.summary.skipped,
                cancelled = report.summary.cancelled,
                duration_ms = report.duration_ms
            ),
        }
    }
}
