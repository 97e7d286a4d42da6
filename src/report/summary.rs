//! The summary table printed at the end of a run, as text and as Markdown.

use std::fmt::Write;

use crate::report::{RunReport, TaskReport};

/// A duration in ms as people read it: `850ms`, `1.25s`, `2m 05s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A byte count with a binary unit: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn row(t: &TaskReport) -> [String; 5] {
    let status = if t.executed_on == Some(crate::model::ExecutedOn::Remote) {
        format!("{} (remote)", t.status.as_str())
    } else {
        t.status.as_str().to_string()
    };
    [
        t.name.clone(),
        status,
        t.attempts.len().to_string(),
        t.duration_ms.map(human_ms).unwrap_or_else(|| "-".into()),
        t.bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
    ]
}

/// Instances of one fan-out task above which the table shows them as one row.
const GROUP_ABOVE: usize = 10;

/// The table's rows: a task each, except that a fan-out task of more than [`GROUP_ABOVE`]
/// instances is one row of counts per status (at its first instance's place), followed by a
/// row for each instance that failed.
fn rows(r: &RunReport) -> Vec<[String; 5]> {
    let mut sizes: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for t in r.tasks.iter().filter(|t| t.item.is_some()) {
        *sizes.entry(t.task.as_str()).or_default() += 1;
    }
    let grouped = |t: &TaskReport| t.item.is_some() && sizes[t.task.as_str()] > GROUP_ABOVE;
    let mut out = Vec::with_capacity(r.tasks.len());
    let mut done: Vec<&str> = Vec::new();
    for t in &r.tasks {
        if !grouped(t) {
            out.push(row(t));
            continue;
        }
        if done.contains(&t.task.as_str()) {
            continue;
        }
        done.push(&t.task);
        let members: Vec<&TaskReport> = r
            .tasks
            .iter()
            .filter(|m| m.item.is_some() && m.task == t.task)
            .collect();
        out.push(group_row(&t.task, &members));
        for m in members
            .iter()
            .filter(|m| m.status == crate::report::TaskStatus::Failed)
        {
            let mut failed = row(m);
            failed[0] = format!("  {}", failed[0]);
            out.push(failed);
        }
    }
    out
}

fn group_row(task: &str, members: &[&TaskReport]) -> [String; 5] {
    use crate::report::TaskStatus as S;
    let statuses = [S::Succeeded, S::Cached, S::Failed, S::Skipped, S::Cancelled];
    let counts: Vec<String> = statuses
        .iter()
        .filter_map(|s| {
            let n = members.iter().filter(|m| m.status == *s).count();
            (n > 0).then(|| format!("{n} {}", s.as_str()))
        })
        .collect();
    let attempts: usize = members.iter().map(|m| m.attempts.len()).sum();
    let longest = members.iter().filter_map(|m| m.duration_ms).max();
    let bytes: Option<u64> = members.iter().filter_map(|m| m.bytes).reduce(|a, b| a + b);
    [
        format!("{task}[*] ({})", members.len()),
        counts.join(", "),
        attempts.to_string(),
        longest
            .map(|ms| format!("≤{}", human_ms(ms)))
            .unwrap_or_else(|| "-".into()),
        bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
    ]
}

const HEADER: [&str; 5] = ["TASK", "STATUS", "ATTEMPTS", "DURATION", "BYTES"];

/// The final line: counts per status, bytes and wall time.
pub fn totals_line(r: &RunReport) -> String {
    let s = &r.summary;
    let mut line = format!(
        "{} {}: {} tasks, {} succeeded, {} cached, {} failed, {} skipped, {} cancelled",
        r.pipeline,
        r.status.as_str(),
        s.total,
        s.succeeded,
        s.cached,
        s.failed,
        s.skipped,
        s.cancelled
    );
    if s.remote > 0 {
        let _ = write!(line, ", {} ran remotely", s.remote);
    }
    if s.bytes_downloaded > 0 {
        let _ = write!(line, ", {} downloaded", human_bytes(s.bytes_downloaded));
    }
    let _ = write!(line, " in {}", human_ms(r.duration_ms));
    line
}

/// The totals line, then the critical path when the run took more than a second (SPEC §12).
pub fn closing_lines(r: &RunReport) -> String {
    let mut out = totals_line(r);
    if let Some(line) = critical_path_line(r) {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// `critical path: ...` for a run of more than a second in which something ran.
pub fn critical_path_line(r: &RunReport) -> Option<String> {
    if r.duration_ms <= 1000 {
        return None;
    }
    let path = crate::report::critical_path::critical_path(r);
    (!path.steps.is_empty()).then(|| path.line())
}

/// The table of tasks (task, status, attempts, duration, bytes), then the closing lines.
pub fn table(r: &RunReport) -> String {
    let rows = rows(r);
    let mut width = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&HEADER);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out.push_str(&closing_lines(r));
    out.push('\n');
    out
}

/// The same table as Markdown, for `$GITHUB_STEP_SUMMARY`.
pub fn markdown(r: &RunReport) -> String {
    let mut out = format!("### taskrun: {}\n\n", markdown_text(&r.pipeline));
    out.push_str("| task | status | attempts | duration | bytes |\n|---|---|---:|---:|---:|\n");
    for row in rows(r) {
        let [name, status, attempts, duration, bytes] = row;
        let name = markdown_text(&name);
        let _ = writeln!(
            out,
            "| <code>{name}</code> | {status} | {attempts} | {duration} | {bytes} |"
        );
    }
    let _ = writeln!(out, "\n{}\n", totals_line(r));
    if let Some(line) = critical_path_line(r) {
        let _ = writeln!(out, "{line}\n");
    }
    out
}

/// `text` as literal Markdown text, also inside a table cell: every ASCII punctuation
/// character backslash-escaped (a name's `` ` ``, `|`, `*` or `<` would end a code span,
/// split the row, or start emphasis or HTML) and line breaks as spaces.
fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_is_literal_in_a_table_cell() {
        assert_eq!(markdown_text("get[a.csv]"), "get\\[a\\.csv\\]");
        assert_eq!(markdown_text("a`b"), "a\\`b");
        // The backslash escaped too: the `|` stays escaped and does not split the row.
        assert_eq!(markdown_text("e\\|f"), "e\\\\\\|f");
        assert_eq!(markdown_text("x\ny"), "x y");
    }

    #[test]
    fn units() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(1250), "1.25s");
        assert_eq!(human_ms(125_000), "2m 05s");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
