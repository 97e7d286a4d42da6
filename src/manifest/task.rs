//! One `[tasks.NAME]` table (with `[defaults]` merged field by field) → [`Task`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::diagnostic::Problem;
use super::interpolate::{Context, Insert, interpolate_as};
use super::keys;
use super::load::{read_env, report_interpolation};
use super::paths::normalize;
use super::retry::apply_retry;
use super::walk::{Reader, Val, get, key_span};
use crate::model::{Action, CachePolicy, InputPattern, RelPath, RetryPolicy, Task, TaskKind};
use crate::template::Template;

/// Where a task's names and paths are, for the cross-task checks in [`super::graph`].
#[derive(Debug, Clone, Default)]
pub struct TaskSpans {
    /// The task's key.
    pub name: Range<usize>,
    /// Where each of `Task::deps` is.
    pub deps: Vec<Range<usize>>,
    /// Aligned with `Task::outputs`.
    pub outputs: Vec<Range<usize>>,
    /// Each pool use: name, slots, place.
    pub uses: Vec<(String, u32, Range<usize>)>,
    /// `uses` came from `[defaults]`: a problem with it is `[defaults]`'s, said once.
    pub uses_from_defaults: bool,
}

/// A task field's name for messages: `tasks.NAME.KEY`, or `defaults.KEY` when the task
/// takes the field from `[defaults]` (so its problem reads the same, and is reported once,
/// for every task).
#[derive(Debug, Clone, Copy)]
pub struct FieldName<'a, 'k> {
    task: &'a str,
    key: &'k str,
    from_defaults: bool,
}

impl std::fmt::Display for FieldName<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.from_defaults {
            true => write!(f, "defaults.{}", self.key),
            false => write!(f, "tasks.{}.{}", self.task, self.key),
        }
    }
}

/// Reads one task; `defaults` fills the fields the task leaves out.
pub struct TaskBuilder<'a, 'i> {
    /// The task's name.
    pub name: &'a str,
    /// Where the name is.
    pub name_span: Range<usize>,
    /// The task's table.
    pub table: &'a DeTable<'i>,
    /// `[defaults]`, if any.
    pub defaults: Option<&'a DeTable<'i>>,
    /// Interpolation context.
    pub ctx: &'a Context<'a>,
}

impl<'a, 'i> TaskBuilder<'a, 'i> {
    pub(super) fn field(&self, key: &str) -> Option<&'a Val<'i>> {
        get(self.table, key).or_else(|| self.defaults.and_then(|d| get(d, key)))
    }

    /// True when the task leaves `key` out and `[defaults]` gives it.
    fn given_by_defaults(&self, key: &str) -> bool {
        get(self.table, key).is_none() && self.defaults.is_some_and(|d| get(d, key).is_some())
    }

    /// `tasks.NAME.KEY`, formatted only if a problem names it.
    pub(super) fn what<'k>(&self, key: &'k str) -> FieldName<'a, 'k> {
        FieldName {
            task: self.name,
            key,
            from_defaults: self.given_by_defaults(key),
        }
    }

    /// Builds the task, recording problems in `r`; `None` when it is too broken to check further.
    pub fn build(&self, r: &mut Reader<'_>) -> Option<(Task, TaskSpans)> {
        r.check_keys(
            self.table,
            keys::TASK,
            &format_args!("task `{}`", self.name),
        );
        let mut spans = TaskSpans {
            name: self.name_span.clone(),
            ..TaskSpans::default()
        };

        let kinds: Vec<&str> = ["run", "download", "service"]
            .into_iter()
            .filter(|k| get(self.table, k).is_some())
            .collect();
        if kinds.len() > 1 {
            let span = key_span(self.table, kinds[1]).unwrap_or(self.name_span.clone());
            r.push(
                Problem::at(span, format!("task `{}` has two kinds: `{}` and `{}`", self.name, kinds[0], kinds[1]))
                    .label("second kind")
                    .help("a task has exactly one of `run`, `download` or `service`; split it into two tasks"),
            );
        }
        let action = match kinds.first().copied() {
            Some("run") => self
                .command(r, get(self.table, "run")?, "run")
                .map(Action::Command),
            Some("download") => self.download(r).map(Action::Download),
            Some("service") => self.service(r).map(Action::Service),
            _ => Some(Action::Group),
        };
        // The other kinds are read too, for their own mistakes: all are reported at once.
        for other in kinds.iter().skip(1) {
            match *other {
                "download" => drop(self.download(r)),
                "service" => drop(self.service(r)),
                _ => {}
            }
        }
        let declared = match kinds.first().copied() {
            Some("run") => TaskKind::Command,
            Some("download") => TaskKind::Download,
            Some("service") => TaskKind::Service,
            _ => TaskKind::Group,
        };
        let placement = self.placement_fields(r, declared);

        let description = self
            .field("description")
            .and_then(|v| r.string(v, &self.what("description")))
            .and_then(|(s, span)| self.name_text(r, s, &span));
        let mut deps = Vec::new();
        if let Some(v) = self.field("deps")
            && let Some(list) = r.strings(v, &self.what("deps"), false)
        {
            for (text, span) in list {
                if let Some(dep) = self.name_text(r, text, &span) {
                    deps.push(dep);
                    spans.deps.push(span);
                }
            }
        }
        let cwd = self.field("cwd").and_then(|v| self.path(r, v, "cwd", true));

        let mut env = BTreeMap::new();
        for source in [
            self.defaults.and_then(|d| get(d, "env")),
            get(self.table, "env"),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(map) = read_env(r, Some(source), &self.what("env"), self.ctx) {
                env.extend(map);
            }
        }

        let inputs = self.inputs(r);
        let mut outputs = Vec::new();
        if let Some(v) = self.field("outputs")
            && let Some(list) = r.strings(v, &self.what("outputs"), false)
        {
            for (text, span) in list {
                if let Some(p) = self.path_text(r, &text, span.clone(), "output", false) {
                    outputs.push(p);
                    spans.outputs.push(span);
                }
            }
        }
        if let Some(Action::Download(d)) = &action
            && !outputs.contains(&d.dest)
        {
            outputs.push(d.dest.clone());
            let dest_span = get(self.table, "download")
                .and_then(|v| match v.get_ref() {
                    DeValue::Table(t) => get(t, "dest").map(|d| d.span()),
                    _ => None,
                })
                .unwrap_or(self.name_span.clone());
            spans.outputs.push(dest_span);
        }

        // Checked against the kind declared, so a broken `service` table does not hide a
        // `timeout` that a service may not have.
        let timeout = self.timeout(r, declared);
        let retry = self.retry(r, declared);
        // A group runs nothing and a service takes no slot: `[defaults] uses` is not theirs.
        let slotless = matches!(declared, TaskKind::Group | TaskKind::Service);
        if let Some(v) = self.field("uses")
            && !(slotless && self.given_by_defaults("uses"))
            && let Some(t) = r.table(v, &self.what("uses"))
        {
            for (k, n) in t.iter() {
                let pool = k.get_ref().to_string();
                if let Some(n) = r.integer_in(
                    n,
                    &format!("{}.{pool}", self.what("uses")),
                    1,
                    u32::MAX as i64,
                ) {
                    spans.uses.push((pool, n as u32, k.span()));
                }
            }
            spans.uses_from_defaults = self.given_by_defaults("uses");
        }
        let cache = match self
            .field("cache")
            .and_then(|v| r.string(v, &self.what("cache")))
        {
            None => CachePolicy::Auto,
            Some((s, span)) => match s.as_str() {
                "auto" => CachePolicy::Auto,
                "on" => CachePolicy::On,
                "off" => CachePolicy::Off,
                other => {
                    r.push(
                        Problem::at(
                            span,
                            format!("`cache` must be \"auto\", \"on\" or \"off\", not \"{other}\""),
                        )
                        .label("unknown cache policy"),
                    );
                    CachePolicy::Auto
                }
            },
        };
        let keep_failed_outputs = self
            .field("keep_failed_outputs")
            .and_then(|v| r.boolean(v, &self.what("keep_failed_outputs")))
            .unwrap_or(false);
        let cache_ttl = self
            .field("cache_ttl")
            .and_then(|v| r.duration(v, &self.what("cache_ttl")));

        let task = Task {
            name: self.name.to_string(),
            description,
            deps,
            // A task whose action is broken still exists, so deps on it do not cascade.
            action: action.unwrap_or(Action::Group),
            cwd,
            env,
            inputs,
            outputs,
            timeout,
            retry,
            uses: spans.uses.iter().map(|(p, n, _)| (p.clone(), *n)).collect(),
            cache,
            keep_failed_outputs,
            cache_ttl,
            origin: None,
            expands: None,
            order_only: 0,
            remote: placement.remote,
            platform: placement.platform,
        };
        Some((task, spans))
    }

    pub(super) fn template(
        &self,
        r: &mut Reader<'_>,
        text: &str,
        span: &Range<usize>,
    ) -> Option<Template> {
        self.template_as(r, text, span, Insert::Plain)
    }

    /// Like [`Self::template`], with fan-out values inserted as `insert` says.
    pub(super) fn template_as(
        &self,
        r: &mut Reader<'_>,
        text: &str,
        span: &Range<usize>,
        insert: Insert,
    ) -> Option<Template> {
        match interpolate_as(text, self.ctx, insert) {
            Ok(t) => Some(t),
            Err(errs) => {
                report_interpolation(r, span, text, errs);
                None
            }
        }
    }

    /// A name-like string (`deps`, `description`): interpolated only when it holds a `$`
    /// (fan-out tasks pair instances with `deps = ["get[${item.name}]"]`).
    fn name_text(&self, r: &mut Reader<'_>, text: String, span: &Range<usize>) -> Option<String> {
        if !text.contains('$') {
            return Some(text);
        }
        let t = self.template(r, &text, span)?;
        match t.as_literal() {
            Some(lit) => Some(lit.to_string()),
            None => {
                r.push(
                    Problem::at(
                        span.clone(),
                        "a dependency or description may not contain a secret",
                    )
                    .label("secret in a name"),
                );
                None
            }
        }
    }

    pub(super) fn path(
        &self,
        r: &mut Reader<'_>,
        v: &Val<'_>,
        key: &str,
        allow_root: bool,
    ) -> Option<RelPath> {
        let (text, span) = r.string(v, &self.what(key))?;
        self.path_text(r, &text, span, key, allow_root)
    }

    pub(super) fn path_text(
        &self,
        r: &mut Reader<'_>,
        text: &str,
        span: Range<usize>,
        what: &str,
        allow_root: bool,
    ) -> Option<RelPath> {
        let t = self.template(r, text, &span)?;
        let Some(lit) = t.as_literal() else {
            r.push(
                Problem::at(span, format!("{what} `{t}` may not contain a secret"))
                    .label("secret in a path"),
            );
            return None;
        };
        match normalize(lit, allow_root) {
            Ok(p) => Some(p),
            Err(e) => {
                let (label, help) = match e {
                    crate::manifest::paths::PathError::Empty => (
                        "no file or directory",
                        "name a file or directory below the manifest's directory, e.g. `out/`",
                    ),
                    _ => (
                        "outside the workspace",
                        "paths are relative to the manifest's directory and must stay inside it",
                    ),
                };
                r.push(
                    Problem::at(span, e.message(what, lit))
                        .label(label)
                        .help(help),
                );
                None
            }
        }
    }

    fn inputs(&self, r: &mut Reader<'_>) -> Vec<InputPattern> {
        let mut out = Vec::new();
        let Some(list) = self
            .field("inputs")
            .and_then(|v| r.strings(v, &self.what("inputs"), false))
        else {
            return out;
        };
        for (text, span) in list {
            let Some(t) = self.template_as(r, &text, &span, Insert::Glob) else {
                continue;
            };
            let Some(lit) = t.as_literal() else {
                r.push(
                    Problem::at(span, "an input pattern may not contain a secret")
                        .label("secret in a path"),
                );
                continue;
            };
            let (optional, pattern) = match lit.strip_prefix('?') {
                Some(p) => (true, p),
                None => (false, lit),
            };
            let fixed: String = pattern
                .split(['*', '?', '[', '{'])
                .next()
                .unwrap_or("")
                .to_string();
            let prefix = fixed.rsplit_once('/').map_or("", |(d, _)| d);
            let escapes = match normalize(pattern, false) {
                Err(e) => Some(e),
                Ok(_) => normalize(prefix, true).err(),
            };
            if let Some(e) = escapes {
                r.push(Problem::at(span, e.message("input pattern", pattern)).label("outside the workspace").help("input patterns are relative to the manifest's directory and must stay inside it"));
                continue;
            }
            let glob = pattern.trim_start_matches("./").to_string();
            if let Err(e) = globset::Glob::new(&glob) {
                r.push(
                    Problem::at(span, format!("malformed input pattern `{pattern}`: {e}"))
                        .label("bad glob"),
                );
                continue;
            }
            out.push(InputPattern { glob, optional });
        }
        out
    }

    fn timeout(&self, r: &mut Reader<'_>, kind: TaskKind) -> Option<Duration> {
        if kind == TaskKind::Service {
            if let Some(v) = get(self.table, "timeout") {
                r.push(
                    Problem::at(v.span(), "`timeout` does not apply to a service")
                        .label("not for services")
                        .help("use `service.ready_timeout` to bound its start-up"),
                );
            }
            return None;
        }
        let own = get(self.table, "timeout").and_then(|v| {
            let d = r.duration(v, &self.what("timeout"))?;
            if d.is_zero() {
                // As `max_attempts = 0` is: no attempt could ever succeed.
                r.push(
                    Problem::at(v.span(), "`timeout = 0` would fail every attempt at once")
                        .label("no time to run")
                        .help("give the task time to run, e.g. \"10m\", or leave `timeout` out"),
                );
                return None;
            }
            Some(d)
        });
        match kind {
            // `[defaults] timeout` is for commands and downloads; a group has nothing to time.
            TaskKind::Group => None,
            _ => own.or_else(|| {
                let d = self.defaults.and_then(|d| get(d, "timeout"))?;
                r.duration(d, "defaults.timeout")
            }),
        }
    }

    fn retry(&self, r: &mut Reader<'_>, kind: TaskKind) -> RetryPolicy {
        let mut policy = RetryPolicy::default_for(kind);
        let retried = matches!(kind, TaskKind::Command | TaskKind::Download);
        // A mistake in `[defaults]` is named there (and reported once: see `load`).
        // `[defaults] retry` is for what retries: a group or a service shows none.
        if let Some(v) = self
            .defaults
            .and_then(|d| get(d, "retry"))
            .filter(|_| retried)
        {
            apply_retry(r, v, &mut policy, "defaults.retry");
        }
        if let Some(v) = get(self.table, "retry") {
            // Said, as `timeout` on a service is: accepted, it would be silently ignored.
            if matches!(kind, TaskKind::Service | TaskKind::Group) {
                let help = match kind {
                    TaskKind::Service => "a service is started once; retry the tasks that use it",
                    _ => "a group runs nothing; retry its dependencies",
                };
                r.push(
                    Problem::at(
                        v.span(),
                        format!("`retry` does not apply to a {}", kind.as_str()),
                    )
                    .label(format!("not for {}s", kind.as_str()))
                    .help(help),
                );
                return policy;
            }
            if kind == TaskKind::Download
                && let DeValue::Table(t) = v.get_ref()
                && let Some(codes) = get(t, "exit_codes")
            {
                r.push(
                    Problem::at(codes.span(), "`exit_codes` does not apply to a download")
                        .label("for `run` tasks")
                        .help("a download retries by what failed: connection errors, timeouts, truncated bodies, checksum mismatches and HTTP 408, 425, 429, 500, 502, 503, 504"),
                );
            }
            apply_retry(r, v, &mut policy, &self.what("retry"));
        }
        policy
    }
}
