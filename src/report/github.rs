//! GitHub Actions output: each task's output in a `::group::`, failures as `::error`
//! annotations, and the summary table appended to `$GITHUB_STEP_SUMMARY` (SPEC §7).
//!
//! Tasks run concurrently, so their output is buffered and printed as one group when the
//! task finishes; interleaved lines would break the groups.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use crate::events::{Event, Sink, Stream};
use crate::report::TaskStatus;
use crate::report::plain::finished_line;
use crate::report::summary::{closing_lines, markdown, table};

/// The GitHub Actions sink.
pub struct Github<W: Write + Send> {
    out: W,
    quiet: bool,
    step_summary: Option<PathBuf>,
    buffered: HashMap<String, Vec<String>>,
}

impl<W: Write + Send> Github<W> {
    /// A sink printing to `out`, appending Markdown to `step_summary` when given.
    pub fn new(out: W, quiet: bool, step_summary: Option<PathBuf>) -> Self {
        Self {
            out,
            quiet,
            step_summary,
            buffered: HashMap::new(),
        }
    }
}

/// Escapes a workflow-command message (`%`, CR, LF).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow-command property (`title=`, `file=`): also `:` and `,`, which end it.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A token no task's output can guess, for `::stop-commands::` around that output: a line
/// like `::error::` printed by a command is then shown, not obeyed.
fn stop_token() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("taskrun-{n:032x}")
}

impl<W: Write + Send> Sink for Github<W> {
    fn event(&mut self, event: &Event) {
        match event {
            Event::OutputLine {
                name,
                line,
                stream,
                remote,
            } => {
                let l = match (stream, remote) {
                    (Stream::Stdout, false) => line.clone(),
                    (Stream::Stderr, false) => format!("! {line}"),
                    (Stream::Stdout, true) => format!("[remote] {line}"),
                    (Stream::Stderr, true) => format!("[remote] ! {line}"),
                };
                self.buffered.entry(name.to_string()).or_default().push(l);
            }
            Event::RetryScheduled {
                name,
                reason,
                failed_attempt,
                wait,
            } => {
                self.buffered
                    .entry(name.to_string())
                    .or_default()
                    .push(format!(
                        "=> attempt {failed_attempt} failed ({reason}); retrying in {}ms",
                        crate::scheduler::retry_wait_ms(*wait)
                    ));
            }
            Event::TaskFinished { task, .. } => {
                let lines = self.buffered.remove(&task.name).unwrap_or_default();
                let failed = task.status == TaskStatus::Failed;
                if !self.quiet || failed {
                    let _ = writeln!(self.out, "::group::{}", escape_data(&finished_line(task)));
                    if !self.quiet && !lines.is_empty() {
                        let token = stop_token();
                        let _ = writeln!(self.out, "::stop-commands::{token}");
                        for l in &lines {
                            let _ = writeln!(self.out, "{l}");
                        }
                        let _ = writeln!(self.out, "::{token}::");
                    }
                    let _ = writeln!(self.out, "::endgroup::");
                }
                if failed {
                    let _ = writeln!(
                        self.out,
                        "::error title={}::{}",
                        escape_property(&format!("taskrun: task {} failed", task.name)),
                        escape_data(task.error.as_deref().unwrap_or("failed"))
                    );
                }
                let _ = self.out.flush();
            }
            Event::Interrupted { signal, .. } => {
                let _ = writeln!(self.out, "::warning::taskrun interrupted by {signal}");
            }
            Event::Warning { message } => {
                let _ = writeln!(self.out, "::warning::{}", escape_data(message));
            }
            Event::RunFinished { report } => {
                // `-q`: the summary line only (SPEC §7), as on any other console.
                let summary = if self.quiet {
                    format!("{}\n", closing_lines(report))
                } else {
                    table(report)
                };
                let _ = write!(self.out, "{summary}");
                let _ = self.out.flush();
                if let Some(path) = &self.step_summary {
                    let res = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| f.write_all(markdown(report).as_bytes()));
                    if let Err(e) = res {
                        eprintln!("warning: cannot append to {}: {e}", path.display());
                    }
                }
            }
            _ => {}
        }
    }
}
