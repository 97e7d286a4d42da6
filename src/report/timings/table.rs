//! The task table: readable without script; the page's script sorts it by a column.
//!
//! Up to [`ALL_UP_TO`] tasks it lists every task. Past that, a browser spends seconds laying
//! out the rows (10,000 rows: ~2.5 s in Chromium), so it lists every task that is not a
//! fan-out instance, the instances worth a look (failed, retried, on the critical path) and
//! the [`LONGEST`] longest others; the timeline still has every instance.

use std::collections::HashSet;
use std::fmt::Write;

use super::esc;
use crate::report::critical_path::{CriticalPath, secs};
use crate::report::summary::{human_bytes, human_ms};
use crate::report::timeline::Timeline;
use crate::report::{TaskReport, TaskStatus};

/// Runs of up to this many tasks list them all.
const ALL_UP_TO: usize = 2000;
/// Past that, how many of the other instances are listed (the longest).
const LONGEST: usize = 500;

/// The table section.
pub(super) fn section(out: &mut String, tl: &Timeline, path: &CriticalPath) {
    let crit: HashSet<usize> = path.steps.iter().map(|s| s.index).collect();
    let tasks = &tl.report.tasks;
    let shown = rows(tasks, &crit);
    out.push_str("<section id=\"table\"><h2>Tasks</h2>");
    if shown.len() < tasks.len() {
        let _ = write!(
            out,
            "<p class=\"sub\">{} of {} tasks: every task that is not a fan-out instance, the \
             instances that failed, were retried or are on the critical path, and the {LONGEST} \
             longest others. The timeline has every instance.</p>",
            shown.len(),
            tasks.len()
        );
    }
    out.push_str(
        "<div class=\"scroll\"><table id=\"tasks\"><thead><tr>\
         <th><button>Task</button></th><th><button>Kind</button></th><th><button>Status</button></th>\
         <th><button>Duration</button></th><th><button>Attempts</button></th>\
         <th><button>Wait</button></th><th><button>Bytes</button></th>\
         <th><button>Cache</button></th><th><button>Start</button></th></tr></thead><tbody>\n",
    );
    for i in shown {
        row(out, tl, i, crit.contains(&i));
    }
    out.push_str("</tbody></table></div></section>\n");
}

/// The indices of the rows to list, in report order.
fn rows(tasks: &[TaskReport], crit: &HashSet<usize>) -> Vec<usize> {
    if tasks.len() <= ALL_UP_TO {
        return (0..tasks.len()).collect();
    }
    let notable = |i: usize| {
        let t = &tasks[i];
        t.item.is_none()
            || t.status == TaskStatus::Failed
            || t.attempts.len() > 1
            || crit.contains(&i)
    };
    let mut others: Vec<usize> = (0..tasks.len()).filter(|&i| !notable(i)).collect();
    others.sort_by_key(|&i| std::cmp::Reverse(tasks[i].duration_ms.unwrap_or(0)));
    let longest: HashSet<usize> = others.into_iter().take(LONGEST).collect();
    (0..tasks.len())
        .filter(|&i| notable(i) || longest.contains(&i))
        .collect()
}

fn row(out: &mut String, tl: &Timeline, i: usize, crit: bool) {
    let t = &tl.report.tasks[i];
    let wait: u64 = t
        .attempts
        .iter()
        .take(t.attempts.len().saturating_sub(1))
        .filter_map(|a| a.wait_ms)
        .sum();
    let cache = if t.cache_hit {
        match t.cache_source {
            Some(crate::cache::CacheSource::Remote) => "hit (remote)",
            _ => "hit",
        }
    } else if t.cache_key.is_some() {
        "miss"
    } else {
        "-"
    };
    let dash = || "-".to_string();
    let start = tl.times[i].start;
    let _ = writeln!(
        out,
        "<tr{}><td>{}<td>{}<td>{}<td data-v={}>{}<td>{}<td data-v={wait}>{}<td data-v={}>{}<td>{cache}<td data-v={}>{}</tr>",
        if crit { " class=crit" } else { "" },
        esc(&t.name),
        t.kind.as_str(),
        t.status.as_str(),
        t.duration_ms.unwrap_or(0),
        t.duration_ms.map_or_else(dash, secs),
        t.attempts.len(),
        if wait > 0 { human_ms(wait) } else { dash() },
        t.bytes.unwrap_or(0),
        t.bytes.map_or_else(dash, human_bytes),
        start.unwrap_or(0),
        start.map_or_else(dash, secs),
    );
}
