//! Plain lines, one per event, with no escape codes: for logs, pipes and CI (SPEC §7).
//!
//! Task output is shown line by line as `task | text`; `-q` keeps only failures and the
//! final totals line. Colour is only for who asks for it (`--color always`, or a terminal
//! with `--progress never`): each finished task's line in its status's colour.

use std::io::Write;

use crate::events::{Event, Sink, Stream};
use crate::model::TaskKind;
use crate::report::TaskStatus;
use crate::report::summary::{closing_lines, human_ms, table};

/// How much a [`Plain`] sink shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: failures and the totals line.
    Quiet,
    /// Every event and all task output.
    Normal,
}

/// The plain-lines sink, writing to `out` (stdout in the binary, a buffer in tests).
pub struct Plain<W: Write + Send> {
    out: W,
    verbosity: Verbosity,
    color: bool,
}

impl<W: Write + Send> Plain<W> {
    /// A sink writing to `out`, without colour.
    pub fn new(out: W, verbosity: Verbosity) -> Self {
        Self {
            out,
            verbosity,
            color: false,
        }
    }

    /// The same, with each finished task's line in its status's colour when `color`.
    pub fn colored(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    /// The writer back (for tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// `text` in the colour of `status` (green done, red failed, yellow not run) when `color`.
pub fn paint(color: bool, status: TaskStatus, text: String) -> String {
    if !color {
        return text;
    }
    let code = match status {
        TaskStatus::Succeeded | TaskStatus::Cached => "32",
        TaskStatus::Failed => "31",
        TaskStatus::Skipped | TaskStatus::Cancelled => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The one-line description of a finished task, e.g. `=> build: succeeded in 1.20s`.
pub fn finished_line(task: &crate::report::TaskReport) -> String {
    let mut line = format!("=> {}: {}", task.name, task.status.as_str());
    match task.status {
        TaskStatus::Succeeded => {
            if task.executed_on == Some(crate::model::ExecutedOn::Remote) {
                line.push_str(" remotely");
            }
            if let Some(ms) = task.duration_ms
                && task.kind != TaskKind::Group
            {
                line.push_str(&format!(" in {}", human_ms(ms)));
            }
            if task.attempts.len() > 1 {
                line.push_str(&format!(" (attempt {})", task.attempts.len()));
            }
            if task.kind == TaskKind::Download
                && let (Some(bytes), Some(ms)) = (task.bytes, task.duration_ms)
            {
                line.push_str(&format!(": {}", transfer_summary(bytes, ms)));
            }
        }
        TaskStatus::Cached => {
            if let Some(src) = task.cache_source {
                line.push_str(match src {
                    crate::cache::CacheSource::Local => " (local)",
                    crate::cache::CacheSource::Remote => " (remote)",
                });
            }
        }
        TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled => {
            if let Some(e) = &task.error {
                let e = e.strip_prefix("skipped: ").unwrap_or(e);
                line.push_str(&format!(": {e}"));
            }
        }
    }
    line
}

/// A line of task output as shown: `task | text` (stdout), `task ! text` (stderr), with
/// `[remote]` after the name when the command ran on the remote executor.
pub fn output_line(name: &str, stream: Stream, line: &str, remote: bool) -> String {
    let mark = match stream {
        Stream::Stdout => '|',
        Stream::Stderr => '!',
    };
    if remote {
        format!("{name} [remote] {mark} {line}")
    } else {
        format!("{name} {mark} {line}")
    }
}

/// "downloaded 12.3 MiB in 0.8 s, 15.4 MiB/s".
pub fn transfer_summary(bytes: u64, ms: u64) -> String {
    let secs = (ms as f64 / 1000.0).max(0.001);
    let rate = (bytes as f64 / secs) as u64;
    format!(
        "downloaded {} in {secs:.1} s, {}/s",
        crate::units::format_size(bytes),
        crate::units::format_size(rate)
    )
}

impl<W: Write + Send> Sink for Plain<W> {
    fn event(&mut self, event: &Event) {
        let quiet = self.verbosity == Verbosity::Quiet;
        let text = match event {
            Event::RunStarted { .. }
            | Event::Expanded { .. }
            | Event::DownloadProgress { .. }
            | Event::AttemptStarted { .. } => None,
            Event::TaskStarted { name, .. } if !quiet => Some(format!("=> {name}: started")),
            Event::OutputLine {
                name,
                line,
                stream,
                remote,
            } if !quiet => Some(output_line(name, *stream, line, *remote)),
            Event::RetryScheduled {
                name,
                failed_attempt,
                reason,
                wait,
            } if !quiet => Some(format!(
                "=> {name}: attempt {failed_attempt} failed ({reason}); retrying in {}",
                human_ms(crate::scheduler::retry_wait_ms(*wait))
            )),
            Event::ServiceReady { name } if !quiet => Some(format!("=> {name}: ready")),
            Event::TaskFinished { task, .. } => {
                let show = !quiet || task.status == TaskStatus::Failed;
                show.then(|| paint(self.color, task.status, finished_line(task)))
            }
            Event::Interrupted { signal, forced } => Some(if *forced {
                format!("=> {signal} again: killing every task now")
            } else {
                format!("=> {signal}: stopping running tasks (again to kill them at once)")
            }),
            Event::Warning { message } => Some(format!("warning: {message}")),
            Event::RunFinished { report } => Some(if quiet {
                closing_lines(report)
            } else {
                table(report).trim_end().to_string()
            }),
            _ => None,
        };
        if let Some(t) = text {
            let _ = writeln!(self.out, "{t}");
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecutedOn;
    use crate::report::fixture;

    #[test]
    fn remote_work_is_marked_on_output_lines_the_task_line_and_the_summary() {
        assert_eq!(output_line("t", Stream::Stdout, "hi", false), "t | hi");
        assert_eq!(
            output_line("t", Stream::Stderr, "hi", true),
            "t [remote] ! hi"
        );
        let mut remote = fixture::cmd("build", 0, 1250, &[]);
        remote.executed_on = Some(ExecutedOn::Remote);
        assert_eq!(
            finished_line(&remote),
            "=> build: succeeded remotely in 1.25s"
        );
        let local = fixture::cmd("lint", 0, 10, &[]);
        assert_eq!(finished_line(&local), "=> lint: succeeded in 10ms");
        let report = fixture::run(1250, vec![remote, local]);
        assert_eq!(report.summary.remote, 1);
        let table = crate::report::summary::table(&report);
        assert!(table.contains("succeeded (remote)"), "{table}");
        assert!(table.contains(", 1 ran remotely in"), "{table}");
    }
}
