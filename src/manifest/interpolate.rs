//! `${vars.NAME}`, `${env.NAME}`, `${env.NAME:-default}`, `${secret.NAME}` and `$$`.
//!
//! Vars and env are substituted at load time (an unknown one is a manifest error with its
//! place); secrets stay symbolic in a [`Template`] until a task that needs them runs.

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
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether `${secret.*}` is allowed (not inside `[vars]`, whose values are printed).
    pub allow_vars_and_secrets: bool,
}

/// Interpolates `text`; every bad reference is returned, not just the first.
pub fn interpolate(text: &str, ctx: &Context<'_>) -> Result<Template, Vec<InterpolationError>> {
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
            let range = i..i + close + 1;
            match resolve(inner, ctx) {
                Ok(Resolved::Text(t)) => literal.push_str(&t),
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

enum Resolved {
    Text(String),
    Secret(String),
}

fn resolve(inner: &str, ctx: &Context<'_>) -> Result<Resolved, (String, Option<String>)> {
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
            format!("unknown namespace `{other}` in `${{{inner}}}`"),
            Some(
                "use `${vars.NAME}`, `${env.NAME}` or `${secret.NAME}`; `$$` is a literal `$`"
                    .into(),
            ),
        )),
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
}
