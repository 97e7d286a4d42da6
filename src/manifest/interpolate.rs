//! `${vars.NAME}`, `${env.NAME}`, `${env.NAME:-default}`, `${secret.NAME}`, the fan-out
//! placeholders `${matrix.AXIS}` and `${item.FIELD}`, and `$$`.
//!
//! Vars and env are substituted at load time (an unknown one is a manifest error with its
//! place); secrets stay symbolic in a [`Template`] until a task that needs them runs. Where a
//! fan-out value lands decides how it is inserted ([`Insert`]): one shell word in shell text,
//! escaped in a glob, as is elsewhere. An item value comes from a file, so it must never be
//! able to add shell syntax or glob metacharacters to the task.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::template::{Segment, Template};

/// A failed reference, with its byte range inside the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    /// Byte range within the interpolated string.
    pub range: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: Option<String>,
}

/// What `${...}` references resolve against.
pub struct Context<'a> {
    /// `[vars]` after `--var` overrides.
    pub vars: &'a BTreeMap<String, String>,
    /// The caller's environment.
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// Whether `${secret.*}` is allowed (not inside `[vars]`, whose values are printed).
    pub allow_vars_and_secrets: bool,
    /// The instance being built, for `${matrix.*}` and `${item.*}`; None outside fan-out tasks.
    pub item: Option<&'a ItemScope<'a>>,
}

/// The values one fan-out instance gives its placeholders.
pub struct ItemScope<'a> {
    /// Matrix values by axis, in axis order.
    pub matrix: &'a [(String, String)],
    /// Item fields by name (a line's `line`/`name`/`stem`/`ext`, a CSV row's columns, ...).
    pub item: &'a [(String, String)],
    /// The task's items could not be read (their problem is reported): every `${matrix.*}`
    /// and `${item.*}` stands for a plain value, so the rest of the task is still checked.
    pub any: bool,
}

/// How a fan-out value is inserted, decided by the field it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// As is: argv elements, URLs, paths, env values, names.
    Plain,
    /// As exactly one shell word, quoted when needed (`run = "..."` shell text).
    Shell,
    /// With glob metacharacters escaped (`inputs`), so a file named `a[1].jpg` is itself.
    Glob,
}

/// Interpolates `text`, fan-out values inserted as is; every bad reference is returned.
pub fn interpolate(text: &str, ctx: &Context<'_>) -> Result<Template, Vec<InterpolationError>> {
    interpolate_as(text, ctx, Insert::Plain)
}

/// Interpolates `text`, inserting fan-out values as `insert` says.
pub fn interpolate_as(
    text: &str,
    ctx: &Context<'_>,
    insert: Insert,
) -> Result<Template, Vec<InterpolationError>> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut errors = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("$$") {
            literal.push('$');
            i += 2;
        } else if rest.starts_with("${") {
            let Some(close) = rest.find('}') else {
                errors.push(InterpolationError {
                    range: i..text.len(),
                    message: "unterminated `${`".into(),
                    help: Some("close it with `}`, or write `$$` for a literal `$`".into()),
                });
                break;
            };
            let inner = &rest[2..close];
            if inner.contains("${") {
                // `${vars.${vars.x}}` or `${env.U:-${vars.a}}`: one placeholder inside another.
                let end = nested_end(rest).unwrap_or(rest.len());
                errors.push(InterpolationError {
                    range: i..i + end,
                    message: format!("`{}` holds a placeholder inside a placeholder", &rest[..end]),
                    help: Some(
                        "placeholders do not nest: give the whole value a name in [vars] (which may use other vars) and write `${vars.NAME}`".into(),
                    ),
                });
                i += end;
                continue;
            }
            let range = i..i + close + 1;
            match resolve(inner, ctx) {
                Ok(Resolved::Text(t)) => literal.push_str(&t),
                Ok(Resolved::Item(v)) => match insert {
                    Insert::Plain => literal.push_str(v),
                    Insert::Glob => literal.push_str(&glob_escape(v)),
                    Insert::Shell => match super::shell::unquotable_context(&text[..i]) {
                        None => literal.push_str(&super::shell::shell_word(v)),
                        Some(place) => errors.push(InterpolationError {
                            range,
                            message: format!("`${{{inner}}}` is {place} in shell text"),
                            help: Some(format!(
                                "write the placeholder where a word starts, unquoted: taskrun inserts its value as exactly one shell word; or read it from the environment as \"${}\"",
                                item_env_name(inner)
                            )),
                        }),
                    },
                },
                Ok(Resolved::Secret(name)) => {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    segments.push(Segment::Secret(name));
                }
                Err((message, help)) => errors.push(InterpolationError {
                    range,
                    message,
                    help,
                }),
            }
            i += close + 1;
        } else {
            // Copy up to the next `$` in one go; `$` alone (e.g. `$HOME`) is left to the shell.
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let next = rest[first..]
                .find('$')
                .map_or(text.len(), |p| i + first + p);
            literal.push_str(&text[i..next]);
            i = next;
        }
        debug_assert!(i <= bytes.len());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    segments.push(Segment::Literal(literal));
    Ok(Template::from_segments(segments))
}

/// The length of the placeholder `text` starts with, its nested `${...}` included.
fn nested_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

enum Resolved<'c> {
    Text(String),
    Secret(String),
    /// A fan-out value, inserted according to [`Insert`].
    Item(&'c str),
}

/// The environment variable a fan-out value is also in: `${item.name}` → `TASKRUN_ITEM_NAME`.
pub fn item_env_name(inner: &str) -> String {
    let (ns, name) = inner.split_once('.').unwrap_or(("item", inner));
    let prefix = if ns == "matrix" {
        "TASKRUN_MATRIX_"
    } else {
        "TASKRUN_ITEM_"
    };
    prefix
        .chars()
        .chain(name.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }))
        .collect()
}

/// `value` with glob metacharacters backslash-escaped, so it matches only itself.
pub fn glob_escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['*', '?', '[', ']', '{', '}', '\\', '!']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// Looks up `${matrix.NAME}` or `${item.NAME}` in the instance being built.
fn resolve_item<'c>(
    ns: &str,
    name: &str,
    ctx: &Context<'c>,
) -> Result<Resolved<'c>, (String, Option<String>)> {
    let Some(scope) = ctx.item else {
        let source = if ns == "matrix" {
            "`matrix`"
        } else {
            "`for_each`"
        };
        return Err((
            format!("`${{{ns}.{name}}}` is used outside a fan-out task"),
            Some(format!(
                "`${{{ns}.*}}` works only in a task with {source}, in its own fields"
            )),
        ));
    };
    let values = if ns == "matrix" {
        scope.matrix
    } else {
        scope.item
    };
    if let Some((_, v)) = values.iter().find(|(k, _)| k == name) {
        return Ok(Resolved::Item(v.as_str()));
    }
    if scope.any {
        return Ok(Resolved::Item("p"));
    }
    let (what, whats) = if ns == "matrix" {
        ("matrix axis", "matrix axes")
    } else {
        ("item field", "item fields")
    };
    let known: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
    let help = match super::suggest(name, known.iter().copied()) {
        Some(s) => format!("did you mean `${{{ns}.{s}}}`?"),
        None if known.is_empty() => format!("this task has no {whats}"),
        None => format!("this task's {whats}: {}", known.join(", ")),
    };
    Err((format!("unknown {what} `{name}`"), Some(help)))
}

fn resolve<'c>(inner: &str, ctx: &Context<'c>) -> Result<Resolved<'c>, (String, Option<String>)> {
    let Some((ns, name)) = inner.split_once('.') else {
        return Err((
            format!("`${{{inner}}}` names no namespace"),
            Some(
                "use `${vars.NAME}`, `${env.NAME}` or `${secret.NAME}`; `$$` is a literal `$`"
                    .into(),
            ),
        ));
    };
    match ns {
        "matrix" | "item" => resolve_item(ns, name, ctx),
        "vars" | "env" if name.is_empty() || name.starts_with(":-") => Err((
            format!("`${{{ns}.}}` names no variable"),
            Some(format!("write `${{{ns}.NAME}}`")),
        )),
        "vars" => match ctx.vars.get(name) {
            Some(v) => Ok(Resolved::Text(v.clone())),
            None => {
                let hint = match super::suggest(name, ctx.vars.keys().map(String::as_str)) {
                    Some(s) => format!(
                        "did you mean `${{vars.{s}}}`? Or declare it under [vars] or pass --var {name}=VALUE"
                    ),
                    None => format!("declare it under [vars] or pass --var {name}=VALUE"),
                };
                Err((format!("unknown variable `vars.{name}`"), Some(hint)))
            }
        },
        "env" => {
            let (var, default) = match name.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (name, None),
            };
            match ((ctx.env)(var), default) {
                (Some(v), _) => Ok(Resolved::Text(v)),
                (None, Some(d)) => Ok(Resolved::Text(d.to_string())),
                // `${env.X-d}`, the shell's other default form: the `:-` one is meant.
                (None, None) if let Some((name, d)) = var.split_once('-') => Err((
                    format!("environment variable `{var}` is not set"),
                    Some(format!("a default is written `${{env.{name}:-{d}}}`")),
                )),
                (None, None) => Err((
                    format!("environment variable `{var}` is not set"),
                    Some(format!(
                        "export {var}, or give a default: `${{env.{var}:-default}}`"
                    )),
                )),
            }
        }
        "secret" if ctx.allow_vars_and_secrets => {
            if name.is_empty() {
                Err(("`${secret.}` names no secret".into(), None))
            } else {
                Ok(Resolved::Secret(name.to_string()))
            }
        }
        "secret" => Err((
            "`${secret.*}` cannot be used inside [vars]".into(),
            Some(
                "use the secret directly where it is needed, e.g. in a header or env value".into(),
            ),
        )),
        other => Err((
            // A `${` whose `}` is lines away would quote those lines: one line is enough.
            format!(
                "unknown namespace `{}` in `${{{}}}`",
                first_line(other),
                first_line(inner)
            ),
            Some(
                "use `${vars.NAME}`, `${env.NAME}` or `${secret.NAME}`; `$$` is a literal `$`"
                    .into(),
            ),
        )),
    }
}

/// The text up to its first line break, with `…` when cut.
fn first_line(s: &str) -> std::borrow::Cow<'_, str> {
    match s.split_once('\n') {
        Some((line, _)) => format!("{}…", line.trim_end_matches('\r')).into(),
        None => s.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_run(text: &str) -> Result<Template, Vec<InterpolationError>> {
        let mut vars = BTreeMap::new();
        vars.insert("mirror".to_string(), "http://127.0.0.1:1".to_string());
        let env = |k: &str| (k == "HOME_X").then(|| "/home/x".to_string());
        interpolate(
            text,
            &Context {
                vars: &vars,
                env: &env,
                allow_vars_and_secrets: true,
                item: None,
            },
        )
    }

    #[test]
    fn substitutes_vars_env_and_keeps_secrets() {
        let t = ctx_run("${vars.mirror}/a ${env.HOME_X} ${env.NOPE:-d} ${secret.TOK} $$ $HOME")
            .unwrap();
        assert_eq!(t.redacted(), "http://127.0.0.1:1/a /home/x d *** $ $HOME");
        assert!(t.has_secret());
    }

    #[test]
    fn non_ascii_text_is_kept_whole() {
        let t = ctx_run("é ${vars.mirror} ü$ ø").unwrap();
        assert_eq!(t.redacted(), "é http://127.0.0.1:1 ü$ ø");
    }

    #[test]
    fn reports_every_bad_reference_with_its_range() {
        let errs = ctx_run("${vars.mirorr} ${env.NOPE} ${x.y} ${oops").unwrap_err();
        assert_eq!(errs.len(), 4);
        assert_eq!(errs[0].range, 0..14);
        assert!(errs[0].help.as_deref().unwrap().contains("vars.mirror"));
        assert!(errs[1].message.contains("NOPE"));
    }

    #[test]
    fn a_placeholder_inside_a_placeholder_is_one_error_over_both() {
        let text = "a ${vars.${vars.mirror}} b ${env.U:-${vars.mirror}} c";
        let errs = ctx_run(text).unwrap_err();
        assert_eq!(
            errs.len(),
            2,
            "{:?}",
            errs.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
        assert_eq!(&text[errs[0].range.clone()], "${vars.${vars.mirror}}");
        assert_eq!(&text[errs[1].range.clone()], "${env.U:-${vars.mirror}}");
        assert!(errs[0].message.contains("inside a placeholder"));
    }
}
