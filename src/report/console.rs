//! The live view on a terminal: an overall bar and one line per running task (download
//! bytes, rate and ETA), with task output printed above it, prefixed by the task name.
//!
//! It stays readable with 1,000 downloads at once: at most `SHOWN` running tasks have a
//! line (the others wait for one, counted on the overall bar), and an instance of a fan-out
//! task prints a line when it finishes only if it did not succeed; the overall bar counts
//! the rest, and the summary table groups them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Sink};
use crate::report::TaskStatus;
use crate::report::plain::finished_line;
use crate::report::summary::table;

/// Running tasks drawn with a line of their own; more would not fit a terminal.
const SHOWN: usize = 12;

/// The most frames drawn in a second (indicatif's own default).
const FRAMES_PER_SECOND: u8 = 20;

/// How often spinners turn and clocks advance.
const TICK: Duration = Duration::from_millis(120);

/// The lines of the running tasks that are shown, by task name.
type Shown = Arc<Mutex<Vec<(Arc<str>, ProgressBar)>>>;

/// Lines printed above the view at most this often: each print redraws the whole view, so
/// 1,000 tasks ending at once drew it 1,000 times. Lines in between wait (in order) for the
/// next print or the ticker, never longer than a tick.
const PRINT_EVERY: Duration = Duration::from_millis(50);

/// Lines to print above the view, and when it was last done.
struct Pending {
    lines: Vec<String>,
    printed: Instant,
}

impl Pending {
    /// Prints the waiting lines above the view, as one block.
    fn print(&mut self, multi: &MultiProgress) {
        if !self.lines.is_empty() {
            let _ = multi.println(self.lines.join("\n"));
            self.lines.clear();
        }
        self.printed = Instant::now();
    }
}

type SharedPending = Arc<Mutex<Pending>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread that turns the spinners and clocks (the overall bar's and the shown lines'),
/// and prints the lines left waiting. indicatif's steady tick is a thread per line: 1,000
/// downloads started 1,000 threads. Stops when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(
        overall: ProgressBar,
        shown: Shown,
        pending: SharedPending,
        multi: MultiProgress,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // Without the thread the lines still move with their tasks' progress.
        let _ = std::thread::Builder::new()
            .name("taskrun-live".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    overall.tick();
                    for (_, bar) in locked(&shown).iter() {
                        bar.tick();
                    }
                    locked(&pending).print(&multi);
                }
            });
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The indicatif sink.
pub struct Console {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<Arc<str>, ProgressBar>,
    /// Running tasks without a line yet, oldest first.
    unshown: VecDeque<Arc<str>>,
    /// The running tasks with a line, which [`Ticker`] moves.
    shown: Shown,
    /// Lines waiting to be printed above the view.
    pending: SharedPending,
    _ticker: Ticker,
    color: bool,
}

impl Console {
    /// A live view drawn on stdout; `color` enables ANSI colours for statuses. It draws
    /// wherever stdout goes: `--progress always` into a pipe or a log file asked for it
    /// (indicatif's stdout target hides itself there, and every line printed above it).
    pub fn new(color: bool) -> Self {
        let stdout = Box::new(console::Term::buffered_stdout());
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
            stdout,
            FRAMES_PER_SECOND,
        ));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let shown = Shown::default();
        let pending = Arc::new(Mutex::new(Pending {
            lines: Vec::new(),
            printed: Instant::now(),
        }));
        Self {
            _ticker: Ticker::start(
                overall.clone(),
                shown.clone(),
                pending.clone(),
                multi.clone(),
            ),
            multi,
            overall,
            running: HashMap::new(),
            unshown: VecDeque::new(),
            shown,
            pending,
            color,
        }
    }

    /// Gives task `name`'s `bar` a line of its own.
    fn show(&self, name: &Arc<str>, bar: &ProgressBar) {
        let bar = self.multi.add(bar.clone());
        // Drawn at the next frame (frames are rate-limited), not a tick later.
        bar.tick();
        self.shown_lines().push((name.clone(), bar));
    }

    fn shown_lines(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<str>, ProgressBar)>> {
        locked(&self.shown)
    }

    /// The overall bar's note of running tasks without a line.
    fn note_unshown(&self) {
        self.overall.set_message(match self.unshown.len() {
            0 => String::new(),
            n => format!("(+{n} more under way)"),
        });
    }

    /// Prints `line` above the view: at once, unless a print was less than [`PRINT_EVERY`]
    /// ago (then with the next one).
    fn say(&self, line: String) {
        let mut pending = locked(&self.pending);
        pending.lines.push(line);
        if pending.printed.elapsed() >= PRINT_EVERY {
            pending.print(&self.multi);
        }
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
            Event::RunStarted { total, .. } | Event::Expanded { total } => {
                self.overall.set_length(*total as u64)
            }
            Event::TaskStarted { name, .. } => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(task_style());
                bar.set_message(name.to_string());
                if self.running.len() - self.unshown.len() < SHOWN {
                    self.show(name, &bar);
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
                    // Removed, not finished: finishing draws the whole view at once, past
                    // the refresh limit; 1,000 downloads drew it 1,000 times (1 MB of
                    // terminal output, twice the run's time). It goes at the next frame.
                    self.multi.remove(&bar);
                    self.shown_lines().retain(|(n, _)| **n != *task.name);
                    match self.unshown.iter().position(|n| **n == *task.name) {
                        Some(i) => {
                            self.unshown.remove(i);
                        }
                        None => {
                            if let Some(next) = self.unshown.pop_front()
                                && let Some(bar) = self.running.get(&next)
                            {
                                self.show(&next, bar);
                            }
                        }
                    }
                    self.note_unshown();
                }
                self.overall.inc(1);
                let quiet = task.item.is_some()
                    && matches!(task.status, TaskStatus::Succeeded | TaskStatus::Cached);
                if !quiet {
                    self.say(super::plain::paint(
                        self.color,
                        task.status,
                        finished_line(task),
                    ));
                }
            }
            Event::Interrupted { signal, forced } => self.say(if *forced {
                format!("=> {signal} again: killing every task now")
            } else {
                format!("=> {signal}: stopping running tasks (again to kill them at once)")
            }),
            Event::Warning { message } => self.say(format!("warning: {message}")),
            Event::RunFinished { report } => {
                self.shown_lines().clear();
                for (_, bar) in self.running.drain() {
                    bar.finish_and_clear();
                }
                self.overall.finish_and_clear();
                locked(&self.pending).print(&self.multi);
                let _ = self.multi.clear();
                print!("{}", table(report));
            }
            Event::AttemptStarted { .. } | Event::CacheHit { .. } => {}
        }
    }
}
