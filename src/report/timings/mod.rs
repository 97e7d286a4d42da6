//! The timings page (SPEC §12): one self-contained HTML file drawn from the run report alone.
//!
//! Everything is inline (CSS, a few lines of JS for sorting, SVG), so the page opens from a CI
//! artifact with no network. The SVGs stretch to the page width (`preserveAspectRatio="none"`
//! over a 1000-unit x axis): thousands of rows stay small and need no script to lay out.

mod charts;
mod gantt;
mod table;

use std::fmt::Write;
use std::path::Path;

use crate::report::RunReport;
use crate::report::critical_path::{CriticalPath, critical_path, secs};
use crate::report::summary::human_bytes;
use crate::report::timeline::Timeline;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// The x extent of every time-based SVG.
pub(crate) const WIDTH: f64 = 1000.0;

/// The page for `report`.
pub fn render(report: &RunReport) -> String {
    let tl = Timeline::new(report);
    let path = critical_path(report);
    let mut out = String::with_capacity(16_384 + report.tasks.len() * 420);
    let status = report.status.as_str();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · {} · taskrun timings</title><style>{CSS}</style></head><body><main>\n",
        esc(&report.pipeline),
        esc(&report.run_id)
    );
    let _ = write!(
        out,
        "<h1>{} <span class=\"badge b-{status}\">{status}</span></h1>\
         <p class=\"sub\">run <code>{}</code> · {} · started {} · <code>{}</code></p>",
        esc(&report.pipeline),
        esc(&report.run_id),
        secs(report.duration_ms),
        esc(&report.started_at),
        esc(&report.manifest)
    );
    cards(&mut out, report, &path);
    critical_section(&mut out, report, &path);
    gantt::section(&mut out, &tl, &path);
    charts::section(&mut out, &tl);
    table::section(&mut out, &tl, &path);
    let _ = write!(
        out,
        "<p class=\"muted\">Written by taskrun from <code>.taskrun/runs/{}.json</code>.</p>\
         </main><script>{JS}</script></body></html>",
        esc(&report.run_id)
    );
    out
}

/// Writes the page to `path` (atomically).
pub fn write(report: &RunReport, path: &Path) -> std::io::Result<()> {
    crate::report::json::write_atomic(path, render(report).trim_end().as_bytes())
}

fn cards(out: &mut String, r: &RunReport, path: &CriticalPath) {
    let s = &r.summary;
    let attempts: usize = r.tasks.iter().map(|t| t.attempts.len()).sum();
    let mut cards = vec![
        (secs(r.duration_ms), "wall time"),
        (s.total.to_string(), "tasks"),
        (s.succeeded.to_string(), "succeeded"),
        (s.cached.to_string(), "cached"),
        (s.failed.to_string(), "failed"),
        ((s.skipped + s.cancelled).to_string(), "skipped / cancelled"),
        (attempts.to_string(), "attempts"),
    ];
    if s.bytes_downloaded > 0 {
        cards.push((human_bytes(s.bytes_downloaded), "downloaded"));
    }
    cards.push((secs(path.total_ms()), "critical path"));
    if let Some(c) = r.concurrency {
        cards.push((c.to_string(), "concurrency"));
    }
    out.push_str("<div class=\"cards\">");
    for (value, label) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><b>{value}</b><span>{label}</span></div>"
        );
    }
    out.push_str("</div>\n");
}

fn critical_section(out: &mut String, r: &RunReport, path: &CriticalPath) {
    out.push_str("<section id=\"critical-path\"><h2>Critical path</h2>");
    if path.steps.is_empty() {
        out.push_str("<p class=\"muted\">Nothing ran.</p></section>\n");
        return;
    }
    let total = path.total_ms();
    let pct = if r.duration_ms > 0 {
        100.0 * total as f64 / r.duration_ms as f64
    } else {
        100.0
    };
    let _ = write!(
        out,
        "<p class=\"sub\">The chain of dependencies that decided the wall time: {} of {} ({pct:.0}%). \
         The rest is waiting off the path: for a free slot, for a service to start or stop, or the run's own start and end. \
         Its tasks are starred and outlined below.</p><ol class=\"path\">",
        secs(total),
        secs(r.duration_ms)
    );
    let longest = path
        .steps
        .iter()
        .map(|s| s.duration_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    for s in &path.steps {
        let _ = write!(
            out,
            "<li data-crit=\"{}\"><a href=\"#t{}\" title=\"{}\">{}</a><span class=\"d\">{}</span>\
             <div class=\"bar\" style=\"width:{:.1}%\"></div></li>",
            esc(&s.name),
            s.index,
            esc(&s.name),
            esc(&s.name),
            secs(s.duration_ms),
            100.0 * s.duration_ms as f64 / longest as f64
        );
    }
    out.push_str("</ol></section>\n");
}

/// `s` escaped for HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Time ticks for an axis: a round step giving about `n` ticks over `wall` ms.
pub(crate) fn tick_step(wall: u64, n: u64) -> u64 {
    let raw = (wall / n.max(1)).max(1);
    // Saturating: a report's times are read from disk, and may be anything up to u64::MAX.
    let mut unit: u64 = 1;
    while unit.saturating_mul(10) <= raw && unit < u64::MAX / 10 {
        unit *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| unit.saturating_mul(m))
        .find(|&s| s >= raw)
        .unwrap_or(u64::MAX)
}

/// A time in ms as an x coordinate.
pub(crate) fn x(ms: u64, wall: u64) -> f64 {
    ms as f64 * WIDTH / wall.max(1) as f64
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
