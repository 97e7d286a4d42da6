//! The task table: readable without script; the page's script sorts it by a column.

use std::collections::HashSet;
use std::fmt::Write;

use super::esc;
use crate::report::critical_path::{CriticalPath, secs};
use crate::report::summary::{human_bytes, human_ms};
use crate::report::timeline::Timeline;

/// The table section.
pub(super) fn section(out: &mut String, tl: &Timeline, path: &CriticalPath) {
    let crit: HashSet<usize> = path.steps.iter().map(|s| s.index).collect();
    out.push_str(
        "<section id=\"table\"><h2>Tasks</h2><div class=\"scroll\"><table id=\"tasks\"><thead><tr>\
         <th><button>Task</button></th><th><button>Kind</button></th><th><button>Status</button></th>\
         <th class=\"n\"><button>Duration</button></th><th class=\"n\"><button>Attempts</button></th>\
         <th class=\"n\"><button>Wait</button></th><th class=\"n\"><button>Bytes</button></th>\
         <th><button>Cache</button></th><th class=\"n\"><button>Start</button></th></tr></thead><tbody>\n",
    );
    for (i, t) in tl.report.tasks.iter().enumerate() {
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
        let _ = write!(
            out,
            "<tr{}><td>{}<td>{}<td>{}<td class=n data-v={}>{}<td class=n>{}<td class=n data-v={wait}>{}<td class=n data-v={}>{}<td>{cache}<td class=n data-v={}>{}</tr>",
            if crit.contains(&i) { " class=crit" } else { "" },
            esc(&t.name),
            t.kind.as_str(),
            t.status.as_str(),
            t.duration_ms.unwrap_or(0),
            t.duration_ms.map(secs).unwrap_or_else(|| "-".into()),
            t.attempts.len(),
            if wait > 0 { human_ms(wait) } else { "-".into() },
            t.bytes.unwrap_or(0),
            t.bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
            tl.times[i].start.unwrap_or(0),
            tl.times[i].start.map(secs).unwrap_or_else(|| "-".into()),
        );
    }
    out.push_str("</tbody></table></div></section>\n");
}
