//! Past-tense events from the scheduler, consumed by the reporters.
//!
//! The run loop is the only producer; every sink (console, plain lines, GitHub, tracing)
//! implements [`Sink`] and sees the same sequence, so what the user sees and what the report
//! says cannot disagree.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::CacheSource;
use crate::model::TaskKind;
use crate::report::{RunReport, TaskReport};

/// Which pipe a line of task output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout
    Stdout,
    /// stderr
    Stderr,
}

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run began.
    RunStarted {
        /// The run id.
        run_id: String,
        /// `[pipeline] name`.
        pipeline: String,
        /// Number of selected tasks.
        total: usize,
    },
    /// Fan-out tasks were expanded after the tasks that produce their items (SPEC §9): the
    /// run goes on, in a next phase, with more tasks (sent in place of a second
    /// `RunStarted`).
    Expanded {
        /// Number of selected tasks now.
        total: usize,
    },
    /// A task took its slots and began its first attempt (or its cache lookup).
    TaskStarted {
        /// Task name.
        name: Arc<str>,
        /// Its kind.
        kind: TaskKind,
    },
    /// An attempt began (emitted for attempts after the first too).
    AttemptStarted {
        /// Task name.
        name: Arc<str>,
        /// 1-based attempt number.
        number: u32,
    },
    /// A line of task output (secrets already redacted).
    OutputLine {
        /// Task name.
        name: Arc<str>,
        /// Which pipe.
        stream: Stream,
        /// The line, without its newline.
        line: String,
        /// It came from a command that ran on the remote executor (SPEC §11).
        remote: bool,
    },
    /// An attempt failed and another one will follow after `wait`.
    RetryScheduled {
        /// Task name.
        name: Arc<str>,
        /// The attempt that failed.
        failed_attempt: u32,
        /// Why it failed.
        reason: String,
        /// The wait chosen before the next attempt.
        wait: Duration,
    },
    /// A download received more bytes (sent at most a few times a second).
    DownloadProgress {
        /// Task name.
        name: Arc<str>,
        /// Bytes received so far in this attempt.
        bytes: u64,
        /// Content-Length, when known.
        total: Option<u64>,
    },
    /// The cache had the result; the task did not run.
    CacheHit {
        /// Task name.
        name: Arc<str>,
        /// Local or remote.
        source: CacheSource,
    },
    /// A service answered its readiness probe; its dependents may start.
    ServiceReady {
        /// Task name.
        name: Arc<str>,
    },
    /// A task reached its final status (including skipped and cancelled ones).
    TaskFinished {
        /// The task's entry in the report.
        task: Box<TaskReport>,
        /// The last lines of its output, for failure messages.
        last_lines: Vec<String>,
    },
    /// The first SIGINT/SIGTERM/SIGHUP arrived: running tasks are being stopped.
    Interrupted {
        /// `SIGINT`, `SIGTERM` or `SIGHUP`.
        signal: &'static str,
        /// True on the second signal: everything is killed at once.
        forced: bool,
    },
    /// A problem that does not fail the run (e.g. a report that could not be written).
    Warning {
        /// The message.
        message: String,
    },
    /// The run is over; the report is final.
    RunFinished {
        /// The complete report.
        report: Arc<RunReport>,
    },
}

/// A consumer of events.
pub trait Sink: Send {
    /// Handles one event; must not block for long (it runs on the run loop).
    fn event(&mut self, event: &Event);

    /// Whether this sink shows [`Event::DownloadProgress`]. When no sink does, transfers do
    /// not send it at all: each one is a wake-up of the run loop's thread.
    fn wants_download_progress(&self) -> bool {
        false
    }
}

/// Hands every event to several sinks, in order.
#[derive(Default)]
pub struct Fanout {
    sinks: Vec<Box<dyn Sink>>,
}

impl Fanout {
    /// An empty fan-out.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn push(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }
}

impl Sink for Fanout {
    fn event(&mut self, event: &Event) {
        for s in &mut self.sinks {
            s.event(event);
        }
    }

    fn wants_download_progress(&self) -> bool {
        self.sinks.iter().any(|s| s.wants_download_progress())
    }
}

/// Collects events; for tests and for callers that want the raw stream.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Every event seen, in order.
    pub events: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Sink for Recorder {
    fn event(&mut self, event: &Event) {
        if let Ok(mut v) = self.events.lock() {
            v.push(event.clone());
        }
    }

    fn wants_download_progress(&self) -> bool {
        true
    }
}
