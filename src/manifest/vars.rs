//! `[vars]`: strings that may use `${env.*}` and each other, in any order, resolved once
//! the vars they name are; `--var NAME=VALUE` wins, also inside the vars that use it.

use std::collections::{BTreeMap, BTreeSet};

use toml::de::DeTable;

use super::diagnostic::Problem;
use super::interpolate::{Context, interpolate};
use super::load::{LoadOptions, report_interpolation};
use super::walk::{Reader, get};

/// The resolved `[vars]` (with the `--var` overrides); each problem is recorded in `r`, and
/// a var that cannot be resolved is empty, so its uses are no problems of their own.
pub(super) fn read_vars(
    r: &mut Reader<'_>,
    root: &DeTable<'_>,
    opts: &LoadOptions,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> BTreeMap<String, String> {
    // `--var` wins over the manifest, also inside the vars that refer to it.
    let overrides: BTreeMap<String, String> = opts.vars.iter().cloned().collect();
    let mut vars = overrides.clone();
    let entries = get(root, "vars")
        .and_then(|v| r.string_table(v, "vars"))
        .unwrap_or_default();
    let declared: std::collections::HashSet<String> =
        entries.iter().map(|e| e.key.clone()).collect();
    refuse_unused_overrides(r, &overrides, &declared);
    let mut pending: Vec<_> = entries
        .into_iter()
        .filter(|e| !overrides.contains_key(&e.key))
        .collect();
    // A var may use env and any other var, in whatever order they are declared: each is
    // resolved once the vars it names are.
    loop {
        let before = pending.len();
        pending.retain(|e| {
            let waits = var_refs(&e.value).any(|n| declared.contains(n) && !vars.contains_key(n));
            if waits {
                return true;
            }
            let ctx = Context {
                vars: &vars,
                env,
                allow_vars_and_secrets: false,
                item: None,
            };
            let value = match interpolate(&e.value, &ctx) {
                Ok(t) => t.redacted(),
                Err(errs) => {
                    report_interpolation(r, &e.span, &e.value, errs);
                    // Its own problem is reported; its uses are not problems of their own.
                    String::new()
                }
            };
            vars.insert(e.key.clone(), value);
            false
        });
        if pending.len() == before {
            break;
        }
    }
    // What is left waits on a cycle; each member of one says which.
    let uses = |key: &str| -> Vec<&str> {
        pending
            .iter()
            .find(|e| e.key == key)
            .map(|e| {
                var_refs(&e.value)
                    .filter(|n| pending.iter().any(|p| p.key == *n))
                    .collect()
            })
            .unwrap_or_default()
    };
    let reach = |from: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo = uses(from);
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(uses(n));
            }
        }
        seen
    };
    for e in &pending {
        let own = reach(&e.key);
        if !own.contains(e.key.as_str()) {
            continue; // it only uses a var of a cycle: that one is reported
        }
        let cycle: Vec<&str> = own
            .iter()
            .copied()
            .filter(|n| reach(n).contains(e.key.as_str()))
            .collect();
        let message = match cycle.as_slice() {
            [_] => format!("variable `{}` refers to itself", e.key),
            _ => format!(
                "variable `{}` is part of a cycle of vars: {}",
                e.key,
                cycle.join(", ")
            ),
        };
        r.push(
            Problem::at(e.span.clone(), message)
                .label("refers to itself")
                .help("one of them must be a plain value"),
        );
    }
    for e in pending {
        vars.insert(e.key, String::new());
    }
    vars
}

/// A `--var` that names no `[vars]` entry and no `${vars.NAME}` of the manifest is a typo
/// (`--var mirorr=...`): the run would silently use the default, so it is refused, like
/// `just` does. A var used but not declared may still be given on the command line.
fn refuse_unused_overrides(
    r: &mut Reader<'_>,
    overrides: &BTreeMap<String, String>,
    declared: &std::collections::HashSet<String>,
) {
    if overrides.is_empty() {
        return;
    }
    let used: BTreeSet<&str> = var_refs(r.source).collect();
    for name in overrides.keys() {
        if declared.contains(name) || used.contains(name.as_str()) {
            continue;
        }
        let known = declared
            .iter()
            .map(String::as_str)
            .chain(used.iter().copied());
        let help = match super::suggest(name, known) {
            Some(s) => format!("did you mean `--var {s}=...`?"),
            None if declared.is_empty() && used.is_empty() => {
                "this manifest has no [vars]; declare it there, or drop the --var".to_string()
            }
            None => {
                let mut names: Vec<&str> = declared.iter().map(String::as_str).collect();
                names.extend(used.iter().copied());
                names.sort_unstable();
                names.dedup();
                format!("the manifest's vars: {}", names.join(", "))
            }
        };
        r.push(
            Problem::global(format!(
                "--var {name}: the manifest neither declares nor uses a var `{name}`"
            ))
            .help(help),
        );
    }
}

/// The names `${vars.NAME}` in `text` (not after `$$`, a literal `$`).
fn var_refs(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            let at = rest.find('$')?;
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$$") {
                rest = after;
                continue;
            }
            rest = &tail[1..];
            if let Some(body) = tail.strip_prefix("${vars.")
                && let Some(end) = body.find('}')
            {
                rest = &body[end..];
                return Some(&body[..end]);
            }
        }
    })
}
