//! The Gantt chart: a row per task, a bar per attempt coloured by outcome, the waits between
//! attempts with their reason, cache hits as thin marks, services as spans; fan-out instances
//! folded under their task in a `<details>` (expandable without script).

use std::collections::HashSet;
use std::fmt::Write;

use super::{WIDTH, esc, tick_step, x};
use crate::model::TaskKind;
use crate::report::critical_path::{CriticalPath, secs};
use crate::report::summary::human_ms;
use crate::report::timeline::Timeline;
use crate::report::{TaskReport, TaskStatus};

/// Height of a row's SVG in its own units.
const H: u32 = 18;
/// Bars are at least this wide (in % of the run), so a 1 ms attempt still shows.
const MIN_W: f64 = 0.08;

enum Entry {
    Task(usize),
    Group(String, Vec<usize>),
}

/// Tasks in report order, each fan-out task's instances gathered at its first instance.
fn entries(tasks: &[TaskReport]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut group_at: std::collections::HashMap<&str, usize> = Default::default();
    for (i, t) in tasks.iter().enumerate() {
        if t.item.is_none() {
            out.push(Entry::Task(i));
            continue;
        }
        match group_at.get(t.task.as_str()) {
            Some(&g) => {
                if let Entry::Group(_, members) = &mut out[g] {
                    members.push(i);
                }
            }
            None => {
                group_at.insert(&t.task, out.len());
                out.push(Entry::Group(t.task.clone(), vec![i]));
            }
        }
    }
    out
}

/// The Gantt section.
pub(super) fn section(out: &mut String, tl: &Timeline, path: &CriticalPath) {
    let wall = tl.wall_ms.max(1);
    let step = tick_step(wall, 10);
    let crit: HashSet<usize> = path.steps.iter().map(|s| s.index).collect();
    let _ = write!(
        out,
        "<section id=\"gantt\"><h2>Timeline</h2><div class=\"legend\">\
         <span><i style=\"background:var(--ok)\"></i>attempt succeeded</span>\
         <span><i style=\"background:var(--fail)\"></i>failed</span>\
         <span><i style=\"background:var(--tout)\"></i>timed out</span>\
         <span><i style=\"background:var(--cancel)\"></i>cancelled</span>\
         <span><i style=\"background:var(--wait);opacity:.35\"></i>wait before a retry</span>\
         <span><i style=\"background:var(--hit);width:3px\"></i>cache hit</span>\
         <span><i style=\"background:var(--io)\"></i>cache lookup / store</span>\
         <span><i style=\"background:var(--svc)\"></i>service (▏ready)</span>\
         <span><i style=\"background:none;border:2px solid var(--crit)\"></i>critical path ★</span></div>\
         <div class=\"gantt\" style=\"--tick:{:.3}%\"><div class=\"axis\">",
        100.0 * step as f64 / wall as f64
    );
    let mut t = 0;
    while t <= wall {
        let _ = write!(
            out,
            "<span style=\"left:{:.2}%\">{}</span>",
            100.0 * t as f64 / wall as f64,
            tick_label(t, step)
        );
        let Some(next) = t.checked_add(step) else {
            break;
        };
        t = next;
    }
    out.push_str("</div>\n");
    for entry in entries(&tl.report.tasks) {
        match entry {
            Entry::Task(i) => row(out, tl, i, crit.contains(&i)),
            Entry::Group(name, members) => group(out, tl, &name, &members, &crit),
        }
    }
    out.push_str("</div></section>\n");
}

fn tick_label(t: u64, step: u64) -> String {
    if step >= 1000 && t >= 60_000 {
        human_ms(t)
    } else if step >= 1000 {
        format!("{}s", t / 1000)
    } else if t == 0 {
        "0".into()
    } else {
        secs(t).replace(".00s", "s")
    }
}

fn label(out: &mut String, t: &TaskReport, shown: &str) {
    let _ = write!(
        out,
        "<span class=\"lbl\"><span class=\"st st-{}\"></span>{}</span>",
        t.status.as_str(),
        esc(shown)
    );
}

/// A task row's SVG places everything in % of the run: no viewBox to repeat 10,000 times.
const ROW_SVG: &str = "<svg>";

/// The fan-out summary row's SVG draws a path, so it stretches a viewBox instead.
fn svg_open(out: &mut String) {
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {H}\" preserveAspectRatio=\"none\">"
    );
}

/// A time in ms as % of the run.
fn pct(ms: u64, wall: u64) -> f64 {
    ms as f64 * 100.0 / wall.max(1) as f64
}

/// A rect from `a` to `b` ms, `y`..`y + h`, with a tooltip.
fn bar(
    out: &mut String,
    wall: u64,
    (a, b): (u64, u64),
    (y, h): (u32, u32),
    class: &str,
    tip: &str,
) {
    let (x0, x1) = (pct(a, wall), pct(b, wall));
    let _ = write!(
        out,
        "<rect class=\"{class}\" x=\"{x0:.2}%\" y=\"{y}\" width=\"{:.2}%\" height=\"{h}\"><title>{}</title></rect>",
        (x1 - x0).max(MIN_W),
        esc(tip)
    );
}

/// A vertical mark at `at` ms.
fn mark(out: &mut String, wall: u64, at: u64, class: &str, tip: &str) {
    let x0 = pct(at, wall);
    let _ = write!(
        out,
        "<line class=\"{class}\" x1=\"{x0:.2}%\" x2=\"{x0:.2}%\" y1=\"1\" y2=\"{}\"><title>{}</title></line>",
        H - 1,
        esc(tip)
    );
}

fn row(out: &mut String, tl: &Timeline, i: usize, crit: bool) {
    let t = &tl.report.tasks[i];
    // An instance is shown by what its name adds to its task's: `fetch[2023,01]` as `2023,01`.
    let shown = match t.item {
        Some(_) => t
            .name
            .strip_prefix(t.task.as_str())
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&t.name),
        None => t.name.as_str(),
    };
    let _ = write!(
        out,
        "<div class=\"row{}\" id=\"t{i}\"{}>",
        if crit { " crit" } else { "" },
        match (crit, &t.item) {
            (true, _) => format!(" data-task=\"{}\" data-crit=\"1\"", esc(&t.name)),
            (false, None) => format!(" data-task=\"{}\"", esc(&t.name)),
            (false, Some(_)) => String::new(),
        }
    );
    label(out, t, shown);
    out.push_str(ROW_SVG);
    bars(out, tl, i);
    if crit && let (Some(s), Some(f)) = (tl.times[i].start, tl.times[i].finish) {
        let end = tl.times[i]
            .ready
            .filter(|_| t.kind == TaskKind::Service)
            .unwrap_or(f);
        let (x0, x1) = (pct(s, tl.wall_ms), pct(end, tl.wall_ms));
        let _ = write!(
            out,
            "<rect class=\"cp\" x=\"{x0:.2}%\" y=\"0.5\" width=\"{:.2}%\" height=\"{}\"/>",
            (x1 - x0).max(MIN_W),
            H - 1
        );
    }
    out.push_str("</svg></div>\n");
}

/// Everything drawn in one task's row.
fn bars(out: &mut String, tl: &Timeline, i: usize) {
    let (t, times, wall) = (&tl.report.tasks[i], &tl.times[i], tl.wall_ms);
    let (Some(start), Some(finish)) = (times.start, times.finish) else {
        return;
    };
    let name = &t.name;
    if t.kind == TaskKind::Service {
        bar(
            out,
            wall,
            (start, finish),
            (5, 8),
            "span",
            &format!("{name}: service, up {}", secs(finish - start)),
        );
    }
    if times.attempts.is_empty() {
        if t.cache_hit {
            let from = t.cache_source.map_or("cache", |s| match s {
                crate::cache::CacheSource::Local => "local cache",
                crate::cache::CacheSource::Remote => "remote cache",
            });
            bar(
                out,
                wall,
                (start, finish),
                (7, 4),
                "io",
                &format!("restored from the {from} in {}", human_ms(finish - start)),
            );
            mark(out, wall, start, "hit", &format!("cache hit ({from})"));
        } else if t.kind == TaskKind::Group || t.status == TaskStatus::Succeeded {
            bar(
                out,
                wall,
                (start, finish),
                (6, 6),
                "grp",
                &format!("{name}: {} {}", t.kind.as_str(), secs(finish - start)),
            );
        } else {
            bar(
                out,
                wall,
                (start, finish),
                (6, 6),
                "att o-cancelled",
                &format!("{name}: {}", t.status.as_str()),
            );
        }
        return;
    }
    let first = times.attempts[0].0;
    if t.cache_key.is_some() && first > start {
        bar(
            out,
            wall,
            (start, first),
            (7, 4),
            "io",
            &format!("cache lookup {}", human_ms(first - start)),
        );
    }
    for (n, (a, &(s, e))) in t.attempts.iter().zip(&times.attempts).enumerate() {
        let class = if t.kind == TaskKind::Service {
            "att svc".to_string()
        } else {
            format!("att o-{}", a.outcome.as_str())
        };
        let mut tip = format!(
            "attempt {} {} in {}",
            a.number,
            a.outcome.as_str(),
            human_ms(a.duration_ms)
        );
        if let Some(c) = a.exit_code {
            let _ = write!(tip, ", exit {c}");
        }
        if let Some(h) = a.http_status {
            let _ = write!(tip, ", HTTP {h}");
        }
        if let Some(err) = &a.error {
            let _ = write!(tip, " — {err}");
        }
        bar(out, wall, (s, e), (2, H - 4), &class, &tip);
        if let Some(&(next, _)) = times.attempts.get(n + 1)
            && next > e
        {
            let reason = a.error.as_deref().unwrap_or(a.outcome.as_str());
            // The backoff chosen, and the wait for a free slot after it when there was one.
            let backoff = match a.wait_ms {
                Some(w) if next - e > w + 20 => {
                    format!(" (backoff {}, then a free slot)", human_ms(w))
                }
                _ => String::new(),
            };
            let tip = format!(
                "waited {}{backoff} before attempt {} — attempt {} {reason}",
                human_ms(next - e),
                a.number + 1,
                a.number
            );
            bar(out, wall, (e, next), (7, 4), "wait", &tip);
        }
    }
    let last = times.attempts.last().map_or(start, |a| a.1);
    if t.cache_key.is_some()
        && finish > last
        && t.status == TaskStatus::Succeeded
        && t.kind != TaskKind::Service
    {
        bar(
            out,
            wall,
            (last, finish),
            (7, 4),
            "io",
            &format!("cache store {}", human_ms(finish - last)),
        );
    }
    if let Some(ready) = times.ready {
        mark(
            out,
            wall,
            ready,
            "ready",
            &format!(
                "{name}: ready after {}",
                human_ms(ready.saturating_sub(start))
            ),
        );
    }
}

/// A fan-out task: a summary row (how many instances ran at each moment, failures in red)
/// and, inside, a row per instance.
fn group(out: &mut String, tl: &Timeline, name: &str, members: &[usize], crit: &HashSet<usize>) {
    let on_path = members.iter().any(|i| crit.contains(i));
    let tasks = &tl.report.tasks;
    let failed = members
        .iter()
        .filter(|&&i| tasks[i].status == TaskStatus::Failed)
        .count();
    let cached = members
        .iter()
        .filter(|&&i| tasks[i].status == TaskStatus::Cached)
        .count();
    let worst = if failed > 0 {
        "failed"
    } else if cached == members.len() {
        "cached"
    } else {
        "succeeded"
    };
    let _ = write!(
        out,
        "<details class=\"fan\" data-task=\"{}\"><summary class=\"{}\"{}><span class=\"lbl\" title=\"{} — {} instances\"><span class=\"st st-{worst}\"></span>{}[*] <span class=\"muted\">×{}{}</span></span>",
        esc(name),
        if on_path { "crit" } else { "" },
        if on_path { " data-crit=\"1\"" } else { "" },
        esc(name),
        members.len(),
        esc(name),
        members.len(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        },
    );
    svg_open(out);
    density(out, tl, members);
    out.push_str("</svg></summary>\n");
    for &i in members {
        row(out, tl, i, crit.contains(&i));
    }
    out.push_str("</details>\n");
}

/// The summary row of a fan-out: instances running over time, as an area, plus a mark at
/// each failed attempt.
fn density(out: &mut String, tl: &Timeline, members: &[usize]) {
    let set: HashSet<usize> = members.iter().copied().collect();
    let curve = tl.busy_curve(|i| u32::from(set.contains(&i)));
    let peak = curve.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let wall = tl.wall_ms;
    let y = |v: u32| f64::from(H) - 1.0 - f64::from(v) * f64::from(H - 2) / f64::from(peak);
    let mut d = format!("M0 {}", H - 1);
    for &(t, v) in &curve {
        let _ = write!(d, "H{:.1}V{:.1}", x(t, wall), y(v));
    }
    let _ = write!(d, "H{WIDTH}V{}Z", H - 1);
    let _ = write!(
        out,
        "<path class=\"dens\" d=\"{d}\"><title>{} instances, at most {peak} at once</title></path>",
        members.len()
    );
    for &i in members {
        for (a, &(s, e)) in tl.report.tasks[i]
            .attempts
            .iter()
            .zip(&tl.times[i].attempts)
        {
            if a.outcome != crate::report::AttemptOutcome::Succeeded {
                let (x0, x1) = (x(s, wall), x(e, wall));
                let _ = write!(
                    out,
                    "<rect class=\"dens f\" x=\"{x0:.1}\" y=\"1\" width=\"{:.1}\" height=\"{}\"/>",
                    (x1 - x0).max(MIN_W * WIDTH / 100.0),
                    H - 2
                );
            }
        }
    }
}
