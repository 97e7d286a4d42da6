//! Plan output for people and tools: text, JSON, Graphviz dot, Mermaid.

use std::fmt::Write as _;

use super::Plan;
use super::json::{PinOrigin, PlanAction, PlanTask, document, schedule_words, short_duration};
use super::placement::Placements;
use super::predict::{CacheStatus, Prediction};
use crate::cli::PlanFormat;

/// How a plan is shown.
#[derive(Debug, Clone, Copy)]
pub struct PlanView {
    /// text, json, dot or mermaid.
    pub format: PlanFormat,
    /// Text: every instance of a fan-out task instead of one summary per fan-out task.
    pub expand: bool,
}

/// Renders the plan as `view` says.
pub fn render(
    plan: &Plan,
    targets: &[String],
    predictions: &[Prediction],
    placements: &Placements,
    view: PlanView,
) -> String {
    match view.format {
        PlanFormat::Text => text(plan, predictions, placements, view.expand),
        PlanFormat::Json => {
            let doc = document(plan, targets, predictions, placements);
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
        PlanFormat::Dot => dot(plan),
        PlanFormat::Mermaid => mermaid(plan),
    }
}

fn text(plan: &Plan, predictions: &[Prediction], placements: &Placements, expand: bool) -> String {
    let p = &plan.pipeline;
    let lockfile = crate::lockfile::file_name(&p.manifest_path);
    let doc = document(plan, &[], predictions, placements);
    let levels = plan
        .order
        .iter()
        .map(|&i| plan.level[i])
        .max()
        .map_or(0, |l| l + 1);
    // A service that only hits depend on is never started (it is then `cached`), unless a
    // hit asks its origin again (`revalidate = true`).
    let hit = |i: usize| {
        predictions
            .get(i)
            .is_some_and(|p| p.status == CacheStatus::Hit)
    };
    let asks_origin = |i: usize| match &plan.task(i).action {
        crate::model::Action::Download(d) => d.asks_origin_on_hit(),
        _ => false,
    };
    let unneeded_service = |i: usize| {
        let deps: Vec<usize> = plan.dependents[i]
            .iter()
            .copied()
            .filter(|&d| plan.selected[d])
            .collect();
        plan.task(i).kind() == crate::model::TaskKind::Service
            && !deps.is_empty()
            && deps.iter().all(|&d| hit(d) && !asks_origin(d))
    };
    let runs = plan
        .order
        .iter()
        .filter(|&&i| !hit(i) && !unneeded_service(i))
        .count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for `{}` ({}): {} task{} in {levels} level{}, {runs} to run, concurrency {}{}",
        p.name,
        p.manifest_path.display(),
        doc.tasks.len(),
        plural(doc.tasks.len()),
        plural(levels),
        p.concurrency,
        if p.fail_fast { "" } else { ", keep going" },
    );
    if let Some(d) = &p.description {
        let _ = writeln!(out, "{d}");
    }
    if placements.configured() {
        let _ = writeln!(out, "{}", executor_line(plan, &doc.tasks));
    }
    let groups = (!expand).then(|| super::fanout_text::Groups::new(&doc.tasks));
    let width = doc
        .tasks
        .iter()
        .map(|t| match &groups {
            Some(g) if g.is_grouped(t) => t.task.len() + 3,
            _ => name_label(t).len(),
        })
        .max()
        .unwrap_or(0);
    let mut level = usize::MAX;
    for t in &doc.tasks {
        if let Some(g) = &groups
            && g.is_grouped(t)
        {
            // A fan-out task is shown once, where its first instance would be.
            if g.is_first(t) {
                if t.level != level {
                    level = t.level;
                    let _ = writeln!(out, "\nlevel {level}");
                }
                g.write(&mut out, plan, t, width);
            }
            continue;
        }
        if t.level != level {
            level = t.level;
            let _ = writeln!(out, "\nlevel {level}");
        }
        let _ = writeln!(
            out,
            "  {:width$}  {:8}  {}",
            name_label(t),
            t.kind.as_str(),
            action_line(&t.action, &lockfile)
        );
        let pad = " ".repeat(width + 4);
        if let Some(d) = &t.description {
            let _ = writeln!(out, "{pad}{d}");
        }
        if let PlanAction::Expand { each, .. } = &t.action
            && !each.is_empty()
        {
            let _ = writeln!(out, "{pad}each: {}", first_line(each));
        }
        if !t.deps.is_empty() {
            let _ = writeln!(
                out,
                "{pad}after: {}",
                super::fanout_text::collapse_deps(plan, &t.deps)
            );
        }
        let mut details = Vec::new();
        if t.expanded_after.is_none()
            && matches!(
                t.kind,
                crate::model::TaskKind::Command | crate::model::TaskKind::Download
            )
        {
            let task = plan.pipeline.tasks.get(t.name.as_str());
            if let Some(task) = task {
                details.push(format!("retry: {}", schedule_words(&task.retry)));
            }
        }
        if let Some(ms) = t.timeout_ms {
            details.push(format!(
                "timeout {}",
                short_duration(std::time::Duration::from_millis(ms))
            ));
        }
        if !t.pools.is_empty() {
            let pools: Vec<String> = t.pools.iter().map(|(k, v)| format!("{k}={v}")).collect();
            details.push(format!("pools {}", pools.join(" ")));
        }
        if !details.is_empty() {
            let _ = writeln!(out, "{pad}{}", details.join(" · "));
        }
        if !t.inputs.is_empty() {
            let _ = writeln!(out, "{pad}inputs: {}", t.inputs.join(", "));
        }
        if !t.outputs.is_empty() {
            let _ = writeln!(out, "{pad}outputs: {}", t.outputs.join(", "));
        }
        if let Some(on) = placement_words(t) {
            let _ = writeln!(out, "{pad}runs: {on}");
        }
        let status = match t.cache.status {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Off => "off",
        };
        let reason = t
            .cache
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let key = t
            .cache
            .key
            .as_deref()
            .map(|k| format!(" key {}", &k[..k.len().min(12)]))
            .unwrap_or_default();
        let _ = writeln!(out, "{pad}cache: {status}{reason}{key}");
    }
    out
}

/// `remote`, or `local (REASON)`, when an executor is configured.
pub(super) fn placement_words(t: &PlanTask) -> Option<String> {
    let on = t.executed_on?;
    Some(match &t.local_reason {
        Some(r) => format!("{} ({r})", on.as_str()),
        None => on.as_str().to_string(),
    })
}

/// The plan's line about the executor: where it is and how many tasks go there.
fn executor_line(plan: &Plan, tasks: &[PlanTask]) -> String {
    let exec = &plan.pipeline.execution;
    let url = exec.remote.as_ref().map_or("", |u| u.as_str());
    let instance = if exec.instance.is_empty() {
        String::new()
    } else {
        format!(" (instance {})", exec.instance)
    };
    let remote = tasks
        .iter()
        .filter(|t| t.executed_on == Some(crate::model::ExecutedOn::Remote))
        .count();
    format!(
        "remote executor {url}{instance}: {remote} task{} remote, {} local",
        plural(remote),
        tasks.len() - remote
    )
}

/// One line for the action; `lockfile` names the file a pin came from.
pub(super) fn action_line(a: &PlanAction, lockfile: &str) -> String {
    match a {
        PlanAction::Command {
            shell, argv, cwd, ..
        } => {
            let cmd = match (shell, argv) {
                (Some(s), _) => s.clone(),
                (None, Some(a)) => format!(
                    "[{}]",
                    a.iter()
                        .map(|x| format!("{x:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => String::new(),
            };
            let cmd = first_line(&cmd);
            match cwd {
                Some(c) if !c.is_empty() => format!("{cmd}  (in {c})"),
                _ => cmd,
            }
        }
        PlanAction::Download {
            urls,
            dest,
            sha256,
            sha256_source,
            ..
        } => {
            let mirrors = if urls.len() > 1 {
                format!(" (+{} mirror{})", urls.len() - 1, plural(urls.len() - 1))
            } else {
                String::new()
            };
            let pin = sha256
                .as_deref()
                .map(|s| {
                    let from = match sha256_source {
                        Some(PinOrigin::Lockfile) => format!(" ({lockfile})"),
                        _ => String::new(),
                    };
                    format!(", sha256 {}…{from}", &s[..12.min(s.len())])
                })
                .unwrap_or_default();
            format!(
                "{} -> {dest}{mirrors}{pin}",
                urls.first().map(String::as_str).unwrap_or("")
            )
        }
        PlanAction::Service { run, ready, .. } => format!("{}  (ready: {ready})", first_line(run)),
        PlanAction::Group {} => "(group)".into(),
        PlanAction::Expand { items, .. } => {
            let (kind, what) = items.split_once(' ').unwrap_or(("", items));
            match kind {
                "lines" => format!("one instance per line of {what}"),
                "csv" => format!("one instance per row of {what}"),
                _ => format!("one instance per file matching {what}"),
            }
        }
    }
}

/// The name as the text plan shows it: a fan-out task expanded after others says so.
fn name_label(t: &PlanTask) -> String {
    match &t.expanded_after {
        Some(after) => format!("{} (expanded after {})", t.name, after.join(", ")),
        None => t.name.clone(),
    }
}

fn first_line(s: &str) -> String {
    let mut lines = s.trim().lines();
    let first = lines.next().unwrap_or("").to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph {:?} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        plan.pipeline.name
    );
    for &i in &plan.order {
        let t = plan.task(i);
        let kind = t.expands.as_ref().map_or(t.kind(), |e| e.kind);
        let shape = match kind {
            crate::model::TaskKind::Group => "ellipse",
            crate::model::TaskKind::Service => "component",
            crate::model::TaskKind::Download => "note",
            crate::model::TaskKind::Command => "box",
        };
        let _ = writeln!(
            out,
            "  {:?} [label={:?}, shape={shape}];",
            t.name,
            format!("{}\n{}", graph_name(t), kind.as_str())
        );
    }
    for &i in &plan.order {
        for &d in &plan.deps[i] {
            let _ = writeln!(out, "  {:?} -> {:?};", plan.task(d).name, plan.task(i).name);
        }
    }
    out.push_str("}\n");
    out
}

/// A task's name in a graph: a fan-out expanded later says after what.
fn graph_name(t: &crate::model::Task) -> String {
    match &t.expands {
        Some(e) => format!("{} (expanded after {})", t.name, e.after.join(", ")),
        None => t.name.clone(),
    }
}

fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    for &i in &plan.order {
        let t = plan.task(i);
        let kind = t.expands.as_ref().map_or(t.kind(), |e| e.kind);
        let label = format!("{} ({})", graph_name(t), kind.as_str()).replace('"', "#quot;");
        let _ = writeln!(out, "  t{i}[\"{label}\"]");
    }
    for &i in &plan.order {
        for &d in &plan.deps[i] {
            let _ = writeln!(out, "  t{d} --> t{i}");
        }
    }
    out
}
