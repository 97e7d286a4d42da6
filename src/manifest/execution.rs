//! `[execution]` and the task fields `remote` and `platform` (SPEC §11), read in the same pass
//! as the rest of the manifest.
//!
//! `TASKRUN_REMOTE_EXECUTOR` is applied here too, through the loader's `env` (so the memo of
//! the manifest knows it read it): set, it names the executor even without an `[execution]`
//! table.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::diagnostic::Problem;
use super::interpolate::{Context, interpolate};
use super::keys;
use super::load::report_interpolation;
use super::task::TaskBuilder;
use super::walk::{Reader, Val, get};
use crate::model::{ExecutionConfig, GrpcUrl, TaskKind};
use crate::template::Template;

/// The environment variable that names the executor over `[execution] remote`.
pub const EXECUTOR_ENV: &str = "TASKRUN_REMOTE_EXECUTOR";

/// Reads `[execution]`, then applies `TASKRUN_REMOTE_EXECUTOR`.
pub fn read_execution(
    r: &mut Reader<'_>,
    root: &DeTable<'_>,
    ctx: &Context<'_>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> ExecutionConfig {
    let mut cfg = ExecutionConfig::default();
    if let Some(t) = get(root, "execution").and_then(|v| r.table(v, "execution")) {
        read_table(r, t, ctx, &mut cfg);
    }
    if let Some(text) = env(EXECUTOR_ENV).filter(|u| !u.is_empty()) {
        match GrpcUrl::parse(&text) {
            Ok(u) => cfg.remote = Some(u),
            // The value is not repeated: it may hold a password.
            Err(e) => r.push(
                Problem::global(format!("{EXECUTOR_ENV} is not a usable executor URL: {e}"))
                    .help(e.help()),
            ),
        }
    }
    cfg
}

fn read_table(r: &mut Reader<'_>, t: &DeTable<'_>, ctx: &Context<'_>, cfg: &mut ExecutionConfig) {
    r.check_keys(t, keys::EXECUTION, "[execution]");
    if let Some((text, span)) = get(t, "remote").and_then(|v| r.string(v, "execution.remote")) {
        match GrpcUrl::parse(&text) {
            Ok(u) => cfg.remote = Some(u),
            Err(e) => r.push(
                Problem::at(span, format!("`execution.remote`: {e}"))
                    .label("not a gRPC endpoint")
                    .help(e.help()),
            ),
        }
    }
    if let Some((s, _)) = get(t, "instance").and_then(|v| r.string(v, "execution.instance")) {
        cfg.instance = s;
    }
    if let Some(v) = get(t, "platform") {
        cfg.platform = read_platform(r, v, "execution.platform", ctx).unwrap_or_default();
    }
    if let Some(v) = get(t, "headers") {
        cfg.headers = read_headers(r, v, "execution.headers", ctx);
    }
    if let Some(n) = get(t, "jobs").and_then(|v| r.integer_in(v, "execution.jobs", 1, 100_000)) {
        cfg.jobs = Some(n as u32);
    }
    if let Some(n) =
        get(t, "streams").and_then(|v| r.integer_in(v, "execution.streams", 1, 100_000))
    {
        cfg.streams = n as u32;
    }
    if let Some((s, span)) = get(t, "path").and_then(|v| r.string(v, "execution.path")) {
        if s.is_empty() || s.contains('\0') {
            r.push(
                Problem::at(span, "`execution.path` must be a non-empty PATH list")
                    .label("not a PATH")
                    .help(format!(
                        "e.g. \"{}\" (the default)",
                        ExecutionConfig::DEFAULT_PATH
                    )),
            );
        } else {
            cfg.path = s;
        }
    }
    if let Some(b) = get(t, "fallback_local").and_then(|v| r.boolean(v, "execution.fallback_local"))
    {
        cfg.fallback_local = b;
    }
}

/// A `platform` table: property name → value; `${vars.*}`, `${env.*}` and (in a fan-out
/// task) `${matrix.*}`/`${item.*}` are filled in, a secret is refused (the properties are
/// part of the Action, which the cluster stores for anyone with access to read).
pub fn read_platform(
    r: &mut Reader<'_>,
    v: &Val<'_>,
    what: &(impl std::fmt::Display + ?Sized),
    ctx: &Context<'_>,
) -> Option<BTreeMap<String, String>> {
    let table = r.table(v, what)?;
    let mut out = BTreeMap::new();
    for (k, val) in table.iter() {
        let key = k.get_ref().to_string();
        if key.is_empty() {
            r.push(Problem::at(
                k.span(),
                format!("`{what}` has an empty property name"),
            ));
            continue;
        }
        let DeValue::String(text) = val.get_ref() else {
            // REAPI properties are strings; `gpu = 1` is the usual slip.
            let written = r.source.get(val.span()).unwrap_or("…").to_string();
            r.push(
                Problem::at(val.span(), format!("`{what}.{key}` must be a string"))
                    .label("not a string")
                    .help(format!(
                        "platform property values are strings: write `{key} = \"{written}\"`"
                    )),
            );
            continue;
        };
        let t = match interpolate(text, ctx) {
            Ok(t) => t,
            Err(errs) => {
                report_interpolation(r, &val.span(), text, errs);
                continue;
            }
        };
        match t.as_literal() {
            Some(lit) => {
                out.insert(key, lit.to_string());
            }
            None => r.push(
                Problem::at(val.span(), format!("platform property `{key}` may not contain a secret"))
                    .label("secret in the Action")
                    .help("platform properties are stored in the cluster with the Action; send credentials as `[execution] headers`"),
            ),
        }
    }
    Some(out)
}

/// `[execution] headers` or `[cache] headers` (`what`): gRPC metadata. Keys are made
/// lowercase (metadata keys are, and HTTP header names are case-insensitive); values may
/// hold secrets.
pub(super) fn read_headers(
    r: &mut Reader<'_>,
    v: &Val<'_>,
    what: &str,
    ctx: &Context<'_>,
) -> BTreeMap<String, Template> {
    let mut out = BTreeMap::new();
    let Some(entries) = r.string_table(v, what) else {
        return out;
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        let key = e.key.to_ascii_lowercase();
        if let Some(problem) = bad_metadata_key(&e.key, &key, e.key_span.clone()) {
            r.push(problem);
            continue;
        }
        if let Some(first) = seen.insert(key.clone(), e.key.clone()) {
            r.push(
                Problem::at(
                    e.key_span,
                    format!("header `{}` is given twice (as `{first}` before)", e.key),
                )
                .label("same metadata key")
                .help("gRPC metadata keys are case-insensitive: keep one"),
            );
            continue;
        }
        let t = match interpolate(&e.value, ctx) {
            Ok(t) => t,
            Err(errs) => {
                report_interpolation(r, &e.span, &e.value, errs);
                continue;
            }
        };
        if let Some(bad) = bad_metadata_value(&t) {
            r.push(
                Problem::at(e.span, format!("header `{key}` holds {bad}"))
                    .label("not a metadata value")
                    .help("gRPC metadata values are printable ASCII"),
            );
            continue;
        }
        out.insert(key, t);
    }
    out
}

fn bad_metadata_key(written: &str, key: &str, span: Range<usize>) -> Option<Problem> {
    let why = if key.is_empty() {
        "is empty".to_string()
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        format!("holds `{}`", c.escape_debug())
    } else if key.starts_with("grpc-") {
        "is reserved by gRPC (`grpc-` prefix)".to_string()
    } else if key.ends_with("-bin") {
        "is a binary (`-bin`) key, which taskrun does not send".to_string()
    } else if matches!(key, "content-type" | "te" | "host" | "connection") {
        "is set by the transport itself".to_string()
    } else {
        return None;
    };
    Some(
        Problem::at(span, format!("header name `{written}` {why}"))
            .label("not a usable gRPC metadata key")
            .help("metadata keys are letters, digits, `-`, `_` and `.`, e.g. `authorization`"),
    )
}

/// What in the literal parts of a header value cannot be sent (secrets are checked when
/// they are read, at run time).
fn bad_metadata_value(t: &Template) -> Option<&'static str> {
    use crate::template::Segment;
    let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    t.segments()
        .iter()
        .any(|s| matches!(s, Segment::Literal(l) if !printable(l)))
        .then_some("a character that is not printable ASCII")
}

/// The task fields of SPEC §11.
pub(super) struct TaskPlacement {
    /// False for `remote = false`.
    pub remote: bool,
    /// `[defaults] platform` with the task's own merged over it.
    pub platform: BTreeMap<String, String>,
}

impl TaskBuilder<'_, '_> {
    /// Reads `remote` and `platform`; `declared` is the kind the task's table declares (a
    /// broken action still has its kind, so no second problem is made up).
    pub(super) fn placement_fields(&self, r: &mut Reader<'_>, declared: TaskKind) -> TaskPlacement {
        let only_commands = |r: &mut Reader<'_>, key: &str, span: Range<usize>| {
            r.push(
                Problem::at(
                    span,
                    format!(
                        "`{key}` applies only to a `run` task, and `{}` is a {}",
                        self.name,
                        declared.as_str()
                    ),
                )
                .label("not a command")
                .help("downloads, services and groups always run on this machine; remove it"),
            );
        };
        if declared != TaskKind::Command {
            if let Some(v) = get(self.table, "remote")
                && matches!(v.get_ref(), toml::de::DeValue::Boolean(true))
            {
                only_commands(r, "remote = true", v.span());
            }
            if let Some(v) = get(self.table, "platform") {
                only_commands(r, "platform", v.span());
            }
        }
        let remote = self
            .field("remote")
            .and_then(|v| r.boolean(v, &self.what("remote")))
            .unwrap_or(true);
        let mut platform = BTreeMap::new();
        if let Some(v) = self.defaults.and_then(|d| get(d, "platform")) {
            platform.extend(read_platform(r, v, "defaults.platform", self.ctx).unwrap_or_default());
        }
        if let Some(v) = get(self.table, "platform") {
            let own = read_platform(r, v, &self.what("platform"), self.ctx);
            platform.extend(own.unwrap_or_default());
        }
        if declared != TaskKind::Command {
            // `[defaults] platform` is for the commands among all tasks.
            platform.clear();
        }
        TaskPlacement { remote, platform }
    }
}
