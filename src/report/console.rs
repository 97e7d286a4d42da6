//! The live view on a terminal: an overall bar and one line per running task (download
//! bytes, rate and ETA), with task output printed above it, prefixed by the task name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Sink, Stream};
use crate::report::TaskStatus;
use crate::report::plain::finished_line;
use crate::report::summary::table;

/// The indicatif sink.
pub struct Console {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<Arc<str>, ProgressBar>,
    color: bool,
}

impl Console {
    /// A live view drawn on stdout; `color` enables ANSI colours for statuses.
    pub fn new(color: bool) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(120));
        Self {
            multi,
            overall,
            running: HashMap::new(),
            color,
        }
    }

    fn paint(&self, status: TaskStatus, text: String) -> String {
        if !self.color {
            return text;
        }
        let code = match status {
            TaskStatus::Succeeded | TaskStatus::Cached => "32",
            TaskStatus::Failed => "31",
            TaskStatus::Skipped | TaskStatus::Cancelled => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn say(&self, line: String) {
        let _ = self.multi.println(line);
    }
}

fn task_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn download_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "  {spinner} {msg} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Sink for Console {
    fn wants_download_progress(&self) -> bool {
        true
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted { total, .. } => self.overall.set_length(*total as u64),
            Event::TaskStarted { name, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(task_style());
                bar.set_message(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running.insert(name.clone(), bar);
            }
            Event::OutputLine { name, stream, line } => self.say(match stream {
                Stream::Stdout => format!("{name} | {line}"),
                Stream::Stderr => format!("{name} ! {line}"),
            }),
            Event::RetryScheduled {
                name,
                failed_attempt,
                reason,
                wait,
            } => self.say(format!(
                "=> {name}: attempt {failed_attempt} failed ({reason}); retrying in {}ms",
                crate::scheduler::retry_wait_ms(*wait)
            )),
            Event::DownloadProgress { name, bytes, total } => {
                if let Some(bar) = self.running.get(name) {
                    if let Some(t) = total {
                        bar.set_length(*t);
                    }
                    bar.set_style(download_style());
                    bar.set_position(*bytes);
                }
            }
            Event::ServiceReady { name } => self.say(format!("=> {name}: ready")),
            Event::TaskFinished { task, .. } => {
                if let Some(bar) = self.running.remove(task.name.as_str()) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.overall.inc(1);
                self.say(self.paint(task.status, finished_line(task)));
            }
            Event::Interrupted { signal, forced } => self.say(if *forced {
                format!("=> {signal} again: killing every task now")
            } else {
                format!("=> {signal}: stopping running tasks (again to kill them at once)")
            }),
            Event::Warning { message } => self.say(format!("warning: {message}")),
            Event::RunFinished { report } => {
                for (_, bar) in self.running.drain() {
                    bar.finish_and_clear();
                }
                self.overall.finish_and_clear();
                let _ = self.multi.clear();
                print!("{}", table(report));
            }
            Event::AttemptStarted { .. } | Event::CacheHit { .. } => {}
        }
    }
}
