//! `--junit PATH`: JUnit XML with one testcase per task, written when the run finishes.
//!
//! Failures carry the task's error and its last lines of output, which is what CI systems
//! show next to a red test.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::PathBuf;

use crate::events::{Event, Sink};
use crate::report::{RunReport, TaskStatus};

/// Collects the last output lines of each task and writes the XML at `RunFinished`.
pub struct Junit {
    path: PathBuf,
    last_lines: HashMap<String, Vec<String>>,
}

impl Junit {
    /// A sink that will write to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            last_lines: HashMap::new(),
        }
    }
}

impl Sink for Junit {
    fn event(&mut self, event: &Event) {
        match event {
            Event::TaskFinished { task, last_lines } => {
                self.last_lines
                    .insert(task.name.clone(), last_lines.clone());
            }
            Event::RunFinished { report } => {
                let xml = render(report, &self.last_lines);
                if let Err(e) = super::json::write_atomic(&self.path, xml.as_bytes()) {
                    eprintln!("warning: cannot write {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// Escapes text for XML content and attribute values (control characters dropped).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// The JUnit document for a run.
pub fn render(report: &RunReport, last_lines: &HashMap<String, Vec<String>>) -> String {
    let s = &report.summary;
    let secs = |ms: Option<u64>| format!("{:.3}", ms.unwrap_or(0) as f64 / 1000.0);
    let suite = escape(&report.pipeline);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"taskrun\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
        s.total,
        s.failed,
        s.skipped + s.cancelled,
        secs(Some(report.duration_ms))
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        s.total,
        s.failed,
        s.skipped + s.cancelled,
        secs(Some(report.duration_ms)),
        escape(&report.started_at)
    );
    for t in &report.tasks {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"{suite}\" time=\"{}\"",
            escape(&t.name),
            secs(t.duration_ms)
        );
        let error = escape(t.error.as_deref().unwrap_or(""));
        match t.status {
            TaskStatus::Succeeded | TaskStatus::Cached => {
                x.push_str("/>\n");
                continue;
            }
            TaskStatus::Failed => {
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{error}\" type=\"{}\">",
                    t.kind.as_str()
                );
                let lines = last_lines.get(&t.name).map(Vec::as_slice).unwrap_or(&[]);
                let _ = writeln!(x, "{error}");
                if !lines.is_empty() {
                    let _ = writeln!(x, "--- last {} lines of output ---", lines.len());
                    for l in lines {
                        let _ = writeln!(x, "{}", escape(l));
                    }
                }
                x.push_str("      </failure>\n");
            }
            TaskStatus::Skipped | TaskStatus::Cancelled => {
                let _ = writeln!(x, ">\n      <skipped message=\"{error}\"/>");
            }
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1b}[31m"),
            "a&lt;b&gt;&amp;&quot;c&apos;[31m"
        );
    }
}
