//! `matrix`: axes of values, their cartesian product, `exclude` (partial matches) and
//! `include` (whole rows, after exclude), like a GitHub Actions matrix.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::manifest::diagnostic::Problem;
use crate::manifest::walk::{Reader, Val, get};

/// More instances than this from one task is surely a mistake (and would not fit in memory).
pub const MAX_INSTANCES: usize = 1_000_000;

/// One row of a matrix: a value per axis, in axis order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Axis → value, as strings (integers in decimal, `true`/`false`).
    pub values: Vec<(String, String)>,
    /// Where it came from, for messages: `matrix year=2024, month=03`.
    pub origin: String,
}

/// Reads a matrix table into its rows; `None` after recording a problem.
pub fn read(r: &mut Reader<'_>, v: &Val<'_>, task: &str) -> Option<(Vec<String>, Vec<Row>)> {
    let t = r.table(v, &format_args!("tasks.{task}.matrix"))?;
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    let mut ok = true;
    for (k, val) in t.iter() {
        let name = k.get_ref().to_string();
        if name == "include" || name == "exclude" {
            continue;
        }
        let DeValue::Array(items) = val.get_ref() else {
            r.push(
                Problem::at(
                    val.span(),
                    format!("matrix axis `{name}` must be an array of values"),
                )
                .label("not an array")
                .help(format!("write `{name} = [\"a\", \"b\"]`")),
            );
            ok = false;
            continue;
        };
        if items.is_empty() {
            r.push(
                Problem::at(val.span(), format!("matrix axis `{name}` has no values"))
                    .label("empty axis")
                    .help("give it at least one value, or remove the axis"),
            );
            ok = false;
        }
        let mut values = Vec::with_capacity(items.len());
        for item in items.iter() {
            match scalar(r, item, &name) {
                Some(s) => values.push(s),
                None => ok = false,
            }
        }
        axes.push((name, values));
    }
    let names: Vec<String> = axes.iter().map(|(n, _)| n.clone()).collect();
    let exclude = rows_of(r, t, "exclude", &names, false, task);
    let include = rows_of(r, t, "include", &names, true, task);
    if !ok || exclude.is_none() {
        // The `include` rows' own problems are said with the others.
        if let Some(include) = include
            && !names.is_empty()
        {
            whole_rows(r, include, &names, task);
        }
        return None;
    }
    let (exclude, include) = (exclude?, include?);
    let names = if names.is_empty() {
        include
            .first()
            .map(|(row, _)| row.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    } else {
        names
    };
    if axes.is_empty() && include.is_empty() {
        r.push(
            Problem::at(v.span(), format!("task `{task}` has an empty matrix"))
                .label("no axes")
                .help("add an axis like `year = [\"2023\", \"2024\"]`"),
        );
        return None;
    }
    let total: usize = axes
        .iter()
        .map(|(_, v)| v.len())
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .unwrap_or(usize::MAX);
    if total > MAX_INSTANCES {
        r.push(
            Problem::at(
                v.span(),
                format!("the matrix of task `{task}` has {total} combinations"),
            )
            .label("too many instances")
            .help(format!("at most {MAX_INSTANCES} instances per task")),
        );
        return None;
    }
    let mut rows = Vec::with_capacity(if axes.is_empty() { 0 } else { total });
    if !axes.is_empty() {
        let mut index = vec![0usize; axes.len()];
        'product: loop {
            let values: Vec<(String, String)> = axes
                .iter()
                .zip(&index)
                .map(|((n, vals), &i)| (n.clone(), vals[i].clone()))
                .collect();
            let excluded = exclude.iter().any(|(ex, _)| {
                ex.iter()
                    .all(|(k, val)| values.iter().any(|(n, x)| n == k && x == val))
            });
            if !excluded {
                rows.push(Row {
                    origin: describe(&values),
                    values,
                });
            }
            // Odometer: the last axis varies fastest.
            for pos in (0..axes.len()).rev() {
                index[pos] += 1;
                if index[pos] < axes[pos].1.len() {
                    continue 'product;
                }
                index[pos] = 0;
            }
            break;
        }
    }
    rows.extend(whole_rows(r, include, &names, task));
    if rows.is_empty() {
        // As a `for_each` without items is an error: a task that silently never runs.
        r.push(
            Problem::at(
                v.span(),
                format!("the matrix of task `{task}` has no rows: `exclude` removes every one"),
            )
            .label("no instances")
            .help("narrow the `exclude` rows, or remove the task"),
        );
        return None;
    }
    Some((names, rows))
}

/// The `include` rows that give every axis in `names`, in order; each other one is a problem.
fn whole_rows(
    r: &mut Reader<'_>,
    include: Vec<SpannedRow>,
    names: &[String],
    task: &str,
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(include.len());
    for (row, span) in include {
        let keys = row.iter().map(|(k, _)| k.as_str());
        if !keys.eq(names.iter().map(String::as_str)) {
            r.push(
                Problem::at(
                    span,
                    format!(
                        "an `include` row of task `{task}` must give every axis, in order: {}",
                        names.join(", ")
                    ),
                )
                .label("not a whole row")
                .help("`include` adds whole rows; `exclude` removes partial matches"),
            );
            continue;
        }
        rows.push(Row {
            origin: format!("{} (include)", describe(&row)),
            values: row,
        });
    }
    rows
}

/// `year=2024, month=03`
fn describe(values: &[(String, String)]) -> String {
    let parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("matrix {}", parts.join(", "))
}

/// A matrix value as a string: strings as they are, integers in decimal, booleans.
fn scalar(r: &mut Reader<'_>, v: &Val<'_>, axis: &str) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(_) => r
            .integer(v, &format_args!("matrix.{axis}"))
            .map(|n| n.to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        DeValue::Float(_) => {
            r.push(
                Problem::at(v.span(), format!("matrix axis `{axis}` holds a float"))
                    .label("a float")
                    .help("floats do not name things exactly; write it as a string, e.g. \"0.5\""),
            );
            None
        }
        _ => {
            r.push(
                Problem::at(
                    v.span(),
                    format!("matrix axis `{axis}` may hold only strings, integers and booleans"),
                )
                .label("not a plain value"),
            );
            None
        }
    }
}

type SpannedRow = (Vec<(String, String)>, Range<usize>);

/// `exclude` or `include`: an array of tables of axis → value. Rows of `exclude` must name
/// declared axes; `include` rows may define the axes when there are none.
fn rows_of(
    r: &mut Reader<'_>,
    t: &DeTable<'_>,
    key: &str,
    axes: &[String],
    defines_axes: bool,
    task: &str,
) -> Option<Vec<SpannedRow>> {
    let Some(v) = get(t, key) else {
        return Some(Vec::new());
    };
    let DeValue::Array(items) = v.get_ref() else {
        r.push(
            Problem::at(
                v.span(),
                format!("`matrix.{key}` must be an array of tables"),
            )
            .label("not an array")
            .help(format!("write `{key} = [{{ axis = \"value\" }}]`")),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items.iter() {
        let Some(row) = r.table(item, &format_args!("tasks.{task}.matrix.{key}[]")) else {
            ok = false;
            continue;
        };
        let mut values = Vec::new();
        for (k, val) in row.iter() {
            let name = k.get_ref().to_string();
            if !(axes.contains(&name) || defines_axes && axes.is_empty()) {
                let p = Problem::at(
                    k.span(),
                    format!("`{key}` names `{name}`, which is not an axis of the matrix"),
                )
                .label("unknown axis");
                r.push(
                    match crate::manifest::suggest(&name, axes.iter().map(String::as_str)) {
                        Some(s) => p.help(format!("did you mean `{s}`?")),
                        None => p.help(format!("the axes are: {}", axes.join(", "))),
                    },
                );
                ok = false;
                continue;
            }
            match scalar(r, val, &name) {
                Some(s) => values.push((name, s)),
                None => ok = false,
            }
        }
        if defines_axes && !axes.is_empty() {
            // A whole row: order its values as the axes are declared.
            values.sort_by_key(|(k, _)| axes.iter().position(|a| a == k).unwrap_or(usize::MAX));
        }
        out.push((values, item.span()));
    }
    ok.then_some(out)
}
