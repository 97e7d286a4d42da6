//! The live view on a terminal: an overall bar and one line per running task (download
//! bytes, rate and ETA), with task output printed above it, prefixed by the task name.
//!
//! It stays readable with 1,000 downloads at once: at most `SHOWN` running tasks have a
//! line (the others wait for one, counted on the overall bar), and an instance of a fan-out
//! task prints a line when it finishes only if it did not succeed; the overall bar counts
//! the rest, and the summary table groups them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Sink};
use crate::report::TaskStatus;
use crate::report::plain::finished_line;
use crate::report::summary::table;

/// Running tasks drawn with a line of their own; more would not fit a terminal.
const SHOWN: usize = 12;

/// The indicatif sink.
pub struct Console {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<Arc<str>, ProgressBar>,
    /// Running tasks without a line yet, oldest first.
    unshown: VecDeque<Arc<str>>,
    color: bool,
}

impl Console {
    /// A live view drawn on stdout; `color` enables ANSI colours for statuses.
    pub fn new(color: bool) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(120));
        Self {
            multi,
            overall,
            running: HashMap::new(),
            unshown: VecDeque::new(),
            color,
        }
    }

    /// Gives `bar` a line of its own.
    fn show(&self, bar: &ProgressBar) {
        let bar = self.multi.add(bar.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
    }

    /// The overall bar's note of running tasks without a line.
    fn note_unshown(&self) {
        self.overall.set_message(match self.unshown.len() {
            0 => String::new(),
            n => format!("(+{n} more under way)"),
        });
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
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(task_style());
                bar.set_message(name.to_string());
                if self.running.len() - self.unshown.len() < SHOWN {
                    self.show(&bar);
                } else {
                    self.unshown.push_back(name.clone());
                    self.note_unshown();
                }
                self.running.insert(name.clone(), bar);
            }
            Event::OutputLine {
                name,
                stream,
                line,
                remote,
            } => self.say(crate::report::plain::output_line(
                name, *stream, line, *remote,
            )),
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
                    match self.unshown.iter().position(|n| **n == *task.name) {
                        Some(i) => {
                            self.unshown.remove(i);
                        }
                        None => {
                            let next = self.unshown.pop_front();
                            if let Some(bar) = next.and_then(|n| self.running.get(&n)) {
                                self.show(bar);
                            }
                        }
                    }
                    self.note_unshown();
                }
                self.overall.inc(1);
                let quiet = task.item.is_some()
                    && matches!(task.status, TaskStatus::Succeeded | TaskStatus::Cached);
                if !quiet {
                    self.say(self.paint(task.status, finished_line(task)));
                }
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
