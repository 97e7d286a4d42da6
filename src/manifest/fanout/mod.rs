//! Fan-out (SPEC §9): one declared task with a `matrix` and/or `for_each` becomes many
//! ordinary tasks, its *instances* `TASK[KEY]`, before any graph check runs.
//!
//! This is a loader stage, as DVC's `foreach` and GitHub's matrix expansion are: each
//! instance is built by the same [`TaskBuilder`] as a hand-written task, with the instance's
//! values in scope for `${matrix.*}` and `${item.*}`; below the loader nothing needs to know
//! a task came from a fan-out except the renderers, which group instances by [`Origin`].

mod build;
mod csv_quotes;
pub mod deferred;
pub mod link;
pub mod matrix;
mod probe;
pub mod sources;

use std::collections::HashSet;

use rustc_hash::FxHashMap;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::diagnostic::Problem;
use super::interpolate::{Context, interpolate};
use super::keys;
use super::task::{TaskBuilder, TaskSpans};
use super::walk::{Reader, Val, get};
use crate::model::{Action, FanOut, ItemSource, Origin, Task, TaskMap};
use crate::template::Template;
use sources::{Item, SourceKind};

/// Problems one fan-out task may report from its instances before the rest are left out.
const MAX_INSTANCE_PROBLEMS: usize = 20;

/// True when the task table declares a fan-out.
pub fn is_fanout(table: &DeTable<'_>) -> bool {
    get(table, "matrix").is_some() || get(table, "for_each").is_some()
}

/// Where the loader keeps what it expands.
pub struct Expanded<'x> {
    /// Every task so far (instances are appended).
    pub tasks: &'x mut TaskMap,
    /// Spans aligned with `tasks`.
    pub spans: &'x mut Vec<TaskSpans>,
    /// Every fan-out task declared so far.
    pub fanouts: &'x mut Vec<FanOut>,
    /// Files and globs items were read from (for the memo and the produced-items check).
    pub sources: &'x mut Vec<link::SourceUse>,
    /// The fan-out tasks to expand only after the tasks that produce their items.
    pub defer: &'x deferred::Deferrals,
}

/// The declared items of a task: matrix rows × source items.
pub(super) struct Items {
    pub(super) axes: Vec<String>,
    pub(super) rows: Vec<matrix::Row>,
    pub(super) items: Option<Vec<Item>>,
    /// Stand-ins for items that could not be read (see [`probe::check_body`]).
    pub(super) any: bool,
}

/// Expands the fan-out task `builder` describes into its instances.
pub fn expand(r: &mut Reader<'_>, builder: &TaskBuilder<'_, '_>, root: &Path, out: Expanded<'_>) {
    let name = builder.name;
    let start = out.tasks.len();
    let template = action_template(builder.table);
    let description = get(builder.table, "description").and_then(|v| match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        _ => None,
    });
    if let Some(deferral) = out.defer.get(name) {
        // Its items do not exist yet (or are stale): not read now.
        if let Some((source, _, _)) =
            get(builder.table, "for_each").and_then(|v| for_each(r, v, name))
        {
            // Its keys and templates are checked now, against an item of the fields it will
            // have (its instances, which check them, come later).
            check_task_keys(r, builder);
            probe::check_templates(r, builder, source.kind);
            let (task, spans) =
                deferred::stand_in(r, builder, source, deferral, description.clone());
            out.tasks.insert(task.name.clone(), task);
            out.spans.push(spans);
        }
        out.fanouts.push(FanOut {
            name: name.to_string(),
            description,
            template,
            instances: start..out.tasks.len(),
        });
        return;
    }
    let declared = declared_items(r, builder, root, out.sources);
    if let Some(items) = declared {
        let count = items.rows.len() * items.items.as_ref().map_or(1, Vec::len);
        super::load::heap_for_tasks(out.tasks.len() + count);
        instances(r, builder, &items, out.tasks, out.spans);
    }
    if out.tasks.len() == start {
        // No instance checked the task: its keys and fields are said beside the items'
        // problem, so one `check` shows everything wrong with it.
        probe::check_body(r, builder);
    }
    out.fanouts.push(FanOut {
        name: name.to_string(),
        description,
        template,
        instances: start..out.tasks.len(),
    });
}

/// Two names of namespace `ns` (`matrix` axes, `item` fields) that become one
/// `TASKRUN_MATRIX_*` / `TASKRUN_ITEM_*` variable: one value would be lost without a word.
fn env_clash<'n>(
    ns: &str,
    names: impl Iterator<Item = &'n str>,
    span: Range<usize>,
) -> Option<Problem> {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for name in names {
        let var = super::interpolate::item_env_name(&format!("{ns}.{name}"));
        if let Some(first) = seen.insert(var.clone(), name) {
            let what = if ns == "matrix" {
                "matrix axes"
            } else {
                "item fields"
            };
            return Some(
                Problem::at(span, format!("{what} `{first}` and `{name}` both become the variable {var}"))
                    .label("one environment variable for two values")
                    .help(format!("rename one of them: `{first}` and `{name}` differ only in characters the variable name turns into `_` or upper case")),
            );
        }
    }
    None
}

/// The task's keys, as each instance's build checks them.
fn check_task_keys(r: &mut Reader<'_>, b: &TaskBuilder<'_, '_>) {
    r.check_keys(b.table, keys::TASK, &format_args!("task `{}`", b.name));
}

/// The label of a source that gives no items (superseded when a task produces it).
pub(super) const NO_ITEMS: &str = "no items";
/// The label of a source that cannot be read (superseded when a task produces it).
pub(super) const UNREADABLE: &str = "cannot read the items";

fn declared_items(
    r: &mut Reader<'_>,
    b: &TaskBuilder<'_, '_>,
    root: &Path,
    sources: &mut Vec<link::SourceUse>,
) -> Option<Items> {
    let (axes, rows) = match get(b.table, "matrix") {
        Some(v) => {
            let (axes, rows) = matrix::read(r, v, b.name)?;
            if let Some(p) = env_clash("matrix", axes.iter().map(String::as_str), v.span()) {
                r.push(p);
                return None;
            }
            (axes, rows)
        }
        None => (
            Vec::new(),
            vec![matrix::Row {
                values: Vec::new(),
                origin: String::new(),
            }],
        ),
    };
    let items = match get(b.table, "for_each") {
        None => None,
        Some(v) => {
            let (source, span, allow_empty) = for_each(r, v, b.name)?;
            let (items, fingerprint) = match sources::read(root, source.kind, &source.path) {
                Ok(read) => read,
                Err(e) => {
                    r.push(Problem::at(span.clone(), e).label(UNREADABLE).help(
                        "item files and glob matches are read when the manifest loads: they must exist before the run",
                    ));
                    // Still a source: if a task produces it, that is the problem to show.
                    sources.push(link::SourceUse {
                        source,
                        span,
                        task: b.name.to_string(),
                        after: deferred::waited_deps(b.table),
                    });
                    return None;
                }
            };
            if items.is_empty() && !allow_empty {
                r.push(
                    Problem::at(
                        span.clone(),
                        format!("`{}` gives task `{}` no items", source.path, b.name),
                    )
                    .label(NO_ITEMS)
                    .help("set `for_each.allow_empty = true` if an empty list is fine"),
                );
            }
            let fields: HashSet<&str> = items
                .iter()
                .flat_map(|i| i.fields.iter().map(|(k, _)| k.as_str()))
                .collect();
            let mut sorted: Vec<&str> = fields.iter().copied().collect();
            sorted.sort_unstable();
            if let Some(p) = env_clash("item", sorted.into_iter(), span.clone()) {
                r.push(p);
                return None;
            }
            if let Some(clash) = axes.iter().find(|a| fields.contains(a.as_str())) {
                r.push(
                    Problem::at(
                        span.clone(),
                        format!(
                            "matrix axis `{clash}` has the name of an item field of task `{}`",
                            b.name
                        ),
                    )
                    .label("same name twice")
                    .help("rename the axis: `${matrix.X}` and `${item.X}` must not be confused"),
                );
                return None;
            }
            sources.push(link::SourceUse {
                source: ItemSource {
                    fingerprint: Some(fingerprint),
                    ..source
                },
                span,
                task: b.name.to_string(),
                after: deferred::waited_deps(b.table),
            });
            Some(items)
        }
    };
    Some(Items {
        axes,
        rows,
        items,
        any: false,
    })
}

/// Reads `for_each = { lines | csv | glob = "...", allow_empty = bool }`.
fn for_each(
    r: &mut Reader<'_>,
    v: &Val<'_>,
    task: &str,
) -> Option<(ItemSource, Range<usize>, bool)> {
    let t = r.table(v, &format_args!("tasks.{task}.for_each"))?;
    r.check_keys(t, keys::FOR_EACH, &format_args!("tasks.{task}.for_each"));
    let allow_empty = get(t, "allow_empty")
        .and_then(|b| r.boolean(b, &format_args!("tasks.{task}.for_each.allow_empty")))
        .unwrap_or(false);
    let given: Vec<(SourceKind, &Val<'_>)> = [SourceKind::Lines, SourceKind::Csv, SourceKind::Glob]
        .into_iter()
        .filter_map(|k| get(t, k.as_str()).map(|v| (k, v)))
        .collect();
    let [(kind, sv)] = given.as_slice() else {
        r.push(
            Problem::at(
                v.span(),
                format!(
                    "`for_each` of task `{task}` needs exactly one of `lines`, `csv` or `glob`"
                ),
            )
            .label(if given.is_empty() {
                "no source"
            } else {
                "two sources"
            })
            .help(
                "e.g. `for_each = { lines = \"urls.txt\" }`; combine with `matrix` for a product",
            ),
        );
        return None;
    };
    let (text, span) = r.string(sv, &format_args!("tasks.{task}.for_each.{}", kind.as_str()))?;
    let path = match super::paths::normalize(&text, false) {
        Ok(p) => p.as_str().to_string(),
        Err(e) => {
            r.push(
                Problem::at(span, e.message(kind.as_str(), &text))
                    .label("outside the workspace")
                    .help("item files are relative to the manifest's directory and must stay inside it"),
            );
            return None;
        }
    };
    if *kind == SourceKind::Glob
        && let Err(e) = sources::compile(&path)
    {
        r.push(Problem::at(span, e).label("bad glob"));
        return None;
    }
    Some((
        ItemSource {
            kind: *kind,
            path,
            fingerprint: None,
        },
        span,
        allow_empty,
    ))
}

/// The action as written, placeholders kept: what `plan` shows once for all instances.
fn action_template(table: &DeTable<'_>) -> String {
    let raw = |v: &Val<'_>| match v.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Array(a) => a
            .iter()
            .filter_map(|x| match x.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    if let Some(v) = get(table, "run") {
        return raw(v);
    }
    if let Some(DeValue::Table(d)) = get(table, "download").map(|v| v.get_ref()) {
        let url = get(d, "url")
            .or_else(|| get(d, "urls"))
            .map(raw)
            .unwrap_or_default();
        let dest = get(d, "dest").map(raw).unwrap_or_default();
        return format!("{url} -> {dest}");
    }
    if let Some(DeValue::Table(s)) = get(table, "service").map(|v| v.get_ref()) {
        return get(s, "run").map(raw).unwrap_or_default();
    }
    String::new()
}

/// Builds every instance and appends it to `tasks`.
pub(super) fn instances(
    r: &mut Reader<'_>,
    b: &TaskBuilder<'_, '_>,
    items: &Items,
    tasks: &mut TaskMap,
    spans: &mut Vec<TaskSpans>,
) {
    let key_template = get(b.table, "key").and_then(|v| r.string(v, &b.what("key")));
    let sources: Vec<Option<&Item>> = match &items.items {
        Some(list) => list.iter().map(Some).collect(),
        None => vec![None],
    };
    let total = items.rows.len().saturating_mul(sources.len());
    if total > matrix::MAX_INSTANCES {
        r.push(
            Problem::at(
                b.name_span.clone(),
                format!("task `{}` would have {total} instances", b.name),
            )
            .label("too many instances")
            .help(format!(
                "at most {} instances per task",
                matrix::MAX_INSTANCES
            )),
        );
        return;
    }
    tasks.reserve(total);
    spans.reserve(total);
    // Keys come from the user's own files: FxHash is safe and much faster than SipHash.
    // Each key's item, as (row, item) indices; its origin text is made only for a message.
    let mut keys: FxHashMap<String, (usize, usize)> =
        FxHashMap::with_capacity_and_hasher(total, Default::default());
    let origin_of = |row: &matrix::Row, item: Option<&Item>| match item {
        Some(i) if row.values.is_empty() => i.origin.clone(),
        Some(i) => format!("{}, {}", row.origin, i.origin),
        None => row.origin.clone(),
    };
    let mut seen_problems: HashSet<(Option<Range<usize>>, String)> = HashSet::new();
    let mut reported = 0usize;
    let recipe = build::Recipe {
        source: r.source,
        builder: b,
        key_template: key_template.as_ref(),
        items,
        sources: &sources,
    };
    recipe.build_each(|n, built| {
        let (row_index, item_index) = (n / sources.len(), n % sources.len());
        let (row, item) = (&items.rows[row_index], &sources[item_index]);
        let item_fields: &[(String, String)] = item.map_or(&[], |i| i.fields.as_slice());
        let build::Built {
            key,
            task: built,
            problems,
        } = built;
            // Problems that every instance shares are reported once; the others name the
            // instance and where its item came from.
            for mut p in problems {
                if !seen_problems.insert((p.span.clone(), p.message.clone())) {
                    continue;
                }
                reported += 1;
                if reported > MAX_INSTANCE_PROBLEMS {
                    continue;
                }
                p.message = match key.as_deref() {
                    Some(k) => format!("{} (instance {k}, from {})", p.message, origin_of(row, *item)),
                    None => format!("{} (from {})", p.message, origin_of(row, *item)),
                };
                r.push(p);
            }
            let (Some(key), Some((mut task, task_spans))) = (key, built) else {
                return;
            };
            if let Some((other_row, other_item)) = keys.insert(key.clone(), (row_index, item_index))
            {
                if reported < MAX_INSTANCE_PROBLEMS {
                    let other = origin_of(&items.rows[other_row], sources[other_item]);
                    let origin_text = origin_of(row, *item);
                    let span = key_template
                        .as_ref()
                        .map_or(b.name_span.clone(), |(_, s)| s.clone());
                    r.push(
                        Problem::at(span, format!("two instances of task `{}` have the key `{key}`: {other} and {origin_text}", b.name))
                            .label("duplicate instance key")
                            .help(key_help(items)),
                    );
                }
                reported += 1;
                return;
            }
            let name = format!("{}[{key}]", b.name);
            if matches!(task.action, Action::Command(_) | Action::Service(_)) {
                add_item_env(&mut task, &row.values, item_fields);
            }
            task.name.clone_from(&name);
            task.origin = Some(Box::new(Origin {
                task: b.name.to_string(),
                item: row.values.iter().chain(item_fields).cloned().collect(),
            }));
            tasks.insert(name, task);
            spans.push(task_spans);
    });
    if reported > MAX_INSTANCE_PROBLEMS {
        r.push(Problem::at(
            b.name_span.clone(),
            format!(
                "task `{}`: {} more problems in its instances are not shown",
                b.name,
                reported - MAX_INSTANCE_PROBLEMS
            ),
        ));
    }
}

fn key_help(items: &Items) -> String {
    let field = items
        .items
        .as_ref()
        .and_then(|l| l.first())
        .and_then(|i| i.fields.first());
    match field {
        Some((field, _)) => format!(
            "set `key` to a template that tells them apart, e.g. `key = \"${{item.{field}}}\"`"
        ),
        None => "a matrix row appears twice (a repeated value, or an `include` row that is \
                 there already): remove one, or set `key` to a template that tells them apart"
            .to_string(),
    }
}

/// The instance's key: the `key` template, or the default of SPEC §9.
fn instance_key(
    r: &mut Reader<'_>,
    b: &TaskBuilder<'_, '_>,
    template: Option<&(String, Range<usize>)>,
    ctx: &Context<'_>,
    row: &matrix::Row,
    item: Option<&Item>,
    axes: &[String],
) -> Option<String> {
    let (key, span) = match template {
        Some((text, span)) => {
            let t = match interpolate(text, ctx) {
                Ok(t) => t,
                Err(errs) => {
                    super::load::report_interpolation(r, span, text, errs);
                    return None;
                }
            };
            let Some(lit) = t.as_literal().map(str::to_string) else {
                r.push(
                    Problem::at(span.clone(), "a `key` may not contain a secret")
                        .label("secret in a name"),
                );
                return None;
            };
            (lit, span.clone())
        }
        None => {
            if let Some((axis, v)) = row.values.iter().find(|(_, v)| v.contains(',')) {
                r.push(
                    Problem::at(b.name_span.clone(), format!("matrix value `{}` of axis `{axis}` holds a `,`, which separates the values of an instance's key", v.escape_debug()))
                        .label("ambiguous instance name")
                        .help(format!("set `key`, e.g. `key = \"${{matrix.{}}}\"`", axes.first().map_or("AXIS", String::as_str))),
                );
                return None;
            }
            let mut parts: Vec<&str> = row.values.iter().map(|(_, v)| v.as_str()).collect();
            if let Some(i) = item {
                parts.push(&i.key);
            }
            (parts.join(","), b.name_span.clone())
        }
    };
    if key.is_empty() || key.contains(']') || key.chars().any(char::is_control) {
        let what = if key.is_empty() {
            "is empty".to_string()
        } else {
            format!("`{}` holds `]` or a control character", key.escape_debug())
        };
        let from_a_url =
            key.is_empty() && item.is_some_and(|i| i.fields.iter().any(|(f, _)| f == "line"));
        let help = match from_a_url {
            true => {
                "set `key` to a template that gives each instance a plain name (a URL ending in `/` has an empty `name`)"
            }
            false => "set `key` to a template that gives each instance a plain name",
        };
        r.push(
            Problem::at(span, format!("an instance key of task `{}` {what}", b.name))
                .label("bad instance name")
                .help(help),
        );
        return None;
    }
    Some(key)
}

/// `TASKRUN_MATRIX_<AXIS>` and `TASKRUN_ITEM_<FIELD>` for the command's environment; the
/// task's own `env` wins over them.
fn add_item_env(task: &mut Task, matrix: &[(String, String)], item: &[(String, String)]) {
    let pairs = matrix
        .iter()
        .map(|(k, v)| ("matrix", k, v))
        .chain(item.iter().map(|(k, v)| ("item", k, v)));
    for (ns, k, v) in pairs {
        let name = super::interpolate::item_env_name(&format!("{ns}.{k}"));
        task.env
            .entry(name)
            .or_insert_with(|| Template::literal(v.clone()));
    }
}
