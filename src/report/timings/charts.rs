//! Curves over the run: running tasks against the concurrency limit, each pool's use against
//! its size, and download throughput.

use std::fmt::Write;

use super::{WIDTH, x};
use crate::report::critical_path::secs;
use crate::report::summary::human_bytes;
use crate::report::timeline::Timeline;

/// Height of a chart's SVG in its own units.
const H: f64 = 100.0;
/// Throughput bins over the run.
const BINS: usize = 120;

/// The charts section.
pub(super) fn section(out: &mut String, tl: &Timeline) {
    out.push_str(
        "<section id=\"charts\"><h2>Concurrency and throughput</h2><div class=\"charts\">",
    );
    let running = tl.running();
    let limit = tl
        .report
        .concurrency
        .map(|c| u32::try_from(c).unwrap_or(u32::MAX));
    let peak = running.iter().map(|p| p.1).max().unwrap_or(0);
    let title = format!(
        "Running tasks <small>peak {peak}{}</small>",
        limit.map(|l| format!(" of {l} slots")).unwrap_or_default()
    );
    step_chart(out, tl, "running", &title, &running, limit, "");
    for pool in &tl.report.pools {
        let used = tl.pool_use(&pool.name);
        let peak = used.iter().map(|p| p.1).max().unwrap_or(0);
        let title = format!(
            "Pool <code>{}</code> <small>peak {peak} of {} slots</small>",
            super::esc(&pool.name),
            pool.size
        );
        step_chart(
            out,
            tl,
            &format!("pool-{}", super::esc(&pool.name)),
            &title,
            &used,
            Some(pool.size),
            "pool",
        );
    }
    let downloads = tl
        .report
        .tasks
        .iter()
        .any(|t| t.kind == crate::model::TaskKind::Download);
    if downloads {
        throughput(out, tl);
    }
    out.push_str("</div></section>\n");
}

fn open(out: &mut String, id: &str, title: &str, top: &str) {
    let _ = write!(
        out,
        "<div class=\"chart\" id=\"chart-{id}\"><h3>{title}</h3><div class=\"plot\"><span class=\"y\" style=\"top:14px\">{top}</span>\
         <svg viewBox=\"0 0 {WIDTH} {H}\" preserveAspectRatio=\"none\">"
    );
}

fn close(out: &mut String, tl: &Timeline) {
    let _ = write!(
        out,
        "</svg></div><div class=\"ticks\"><span>0</span><span>{}</span><span>{}</span></div></div>",
        secs(tl.wall_ms / 2),
        secs(tl.wall_ms)
    );
}

/// A step curve as a filled area, with a dashed line at `limit`.
fn step_chart(
    out: &mut String,
    tl: &Timeline,
    id: &str,
    title: &str,
    curve: &[(u64, u32)],
    limit: Option<u32>,
    class: &str,
) {
    let top = curve
        .iter()
        .map(|p| p.1)
        .max()
        .unwrap_or(0)
        .max(limit.unwrap_or(0))
        .max(1);
    let y = |v: u32| H - f64::from(v) * (H - 8.0) / f64::from(top);
    open(out, id, title, &top.to_string());
    let mut d = format!("M0 {H}");
    for &(t, v) in curve {
        let _ = write!(d, "H{:.1}V{:.1}", x(t, tl.wall_ms), y(v));
    }
    let _ = write!(d, "H{WIDTH}V{H}Z");
    let _ = write!(out, "<path class=\"area {class}\" d=\"{d}\"/>");
    if let Some(l) = limit {
        let ly = y(l);
        let _ = write!(
            out,
            "<line class=\"limit\" x1=\"0\" x2=\"{WIDTH}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\"><title>limit {l}</title></line>"
        );
    }
    close(out, tl);
}

fn throughput(out: &mut String, tl: &Timeline) {
    let bins = tl.throughput(BINS);
    let peak = bins.iter().copied().fold(0.0_f64, f64::max);
    let title = format!(
        "Download throughput <small>peak {}/s</small>",
        human_bytes(peak as u64)
    );
    open(
        out,
        "throughput",
        &title,
        &format!("{}/s", human_bytes(peak as u64)),
    );
    let w = WIDTH / bins.len() as f64;
    let mut d = format!("M0 {H}");
    for (i, b) in bins.iter().enumerate() {
        let y = if peak > 0.0 {
            H - b * (H - 8.0) / peak
        } else {
            H
        };
        let _ = write!(d, "V{y:.1}H{:.1}", (i + 1) as f64 * w);
    }
    let _ = write!(d, "V{H}Z");
    let _ = write!(out, "<path class=\"area bps\" d=\"{d}\"/>");
    close(out, tl);
}
