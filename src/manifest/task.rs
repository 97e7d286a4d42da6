//! One `[tasks.NAME]` table (with `[defaults]` merged field by field) → [`Task`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::diagnostic::Problem;
use super::interpolate::{Context, interpolate};
use super::keys;
use super::load::{check_url, read_env, report_interpolation};
use super::paths::normalize;
use super::walk::{Reader, Val, get, key_span};
use crate::model::{
    Action, CachePolicy, CommandLine, Download, InputPattern, Jitter, Readiness, RelPath,
    RetryPolicy, Service, Task, TaskKind,
};
use crate::template::Template;

/// Where a task's names and paths are, for the cross-task checks in [`super::graph`].
#[derive(Debug, Clone, Default)]
pub struct TaskSpans {
    /// The task's key.
    pub name: Range<usize>,
    /// Each dep with its place.
    pub deps: Vec<(String, Range<usize>)>,
    /// Aligned with `Task::outputs`.
    pub outputs: Vec<Range<usize>>,
    /// Each pool use: name, slots, place.
    pub uses: Vec<(String, u32, Range<usize>)>,
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
    fn field(&self, key: &str) -> Option<&'a Val<'i>> {
        get(self.table, key).or_else(|| self.defaults.and_then(|d| get(d, key)))
    }

    fn what(&self, key: &str) -> String {
        format!("tasks.{}.{key}", self.name)
    }

    /// Builds the task, recording problems in `r`; `None` when it is too broken to check further.
    pub fn build(&self, r: &mut Reader<'_>) -> Option<(Task, TaskSpans)> {
        r.check_keys(self.table, keys::TASK, &format!("task `{}`", self.name));
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
        let kind = action.as_ref().map_or(TaskKind::Group, Action::kind);

        let description = self
            .field("description")
            .and_then(|v| r.string(v, &self.what("description")))
            .map(|(s, _)| s);
        if let Some(v) = self.field("deps")
            && let Some(list) = r.strings(v, &self.what("deps"), false)
        {
            spans.deps = list;
        }
        let cwd = self.field("cwd").and_then(|v| self.path(r, v, "cwd", true));

        let mut env = BTreeMap::new();
        for source in [
            self.defaults.and_then(|d| get(d, "env")),
            get(self.table, "env"),
        ] {
            if let Some(map) = read_env(r, source, &self.what("env"), self.ctx) {
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

        let timeout = self.timeout(r, kind);
        let retry = self.retry(r, kind);
        if let Some(v) = self.field("uses")
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
            deps: spans.deps.iter().map(|(d, _)| d.clone()).collect(),
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
        };
        Some((task, spans))
    }

    fn template(&self, r: &mut Reader<'_>, text: &str, span: &Range<usize>) -> Option<Template> {
        match interpolate(text, self.ctx) {
            Ok(t) => Some(t),
            Err(errs) => {
                report_interpolation(r, span, text, errs);
                None
            }
        }
    }

    fn command(&self, r: &mut Reader<'_>, v: &Val<'_>, key: &str) -> Option<CommandLine> {
        let what = self.what(key);
        match v.get_ref() {
            DeValue::String(s) => {
                if s.trim().is_empty() {
                    r.push(
                        Problem::at(v.span(), format!("`{what}` is empty")).label("nothing to run"),
                    );
                    return None;
                }
                self.template(r, s, &v.span()).map(CommandLine::Shell)
            }
            DeValue::Array(_) => {
                let list = r.strings(v, &what, false)?;
                if list.is_empty() {
                    r.push(Problem::at(v.span(), format!("`{what}` is an empty array")).label("nothing to run").help("give the program and its arguments, e.g. [\"python3\", \"script.py\"]"));
                    return None;
                }
                let mut args = Vec::with_capacity(list.len());
                for (text, span) in list {
                    args.push(self.template(r, &text, &span)?);
                }
                Some(CommandLine::Argv(args))
            }
            _ => {
                r.push(Problem::at(v.span(), format!("`{what}` must be a string (run with sh -c) or an array (program and arguments)")).label("wrong type"));
                None
            }
        }
    }

    fn path(
        &self,
        r: &mut Reader<'_>,
        v: &Val<'_>,
        key: &str,
        allow_root: bool,
    ) -> Option<RelPath> {
        let (text, span) = r.string(v, &self.what(key))?;
        self.path_text(r, &text, span, key, allow_root)
    }

    fn path_text(
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
                r.push(
                    Problem::at(span, e.message(what, lit))
                        .label("outside the workspace")
                        .help("paths are relative to the manifest's directory and must stay inside it"),
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
            let Some(t) = self.template(r, &text, &span) else {
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
        let own = get(self.table, "timeout").and_then(|v| r.duration(v, &self.what("timeout")));
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
        for v in [
            self.defaults.and_then(|d| get(d, "retry")),
            get(self.table, "retry"),
        ]
        .into_iter()
        .flatten()
        {
            apply_retry(r, v, &mut policy, &self.what("retry"));
        }
        policy
    }

    fn download(&self, r: &mut Reader<'_>) -> Option<Download> {
        let v = get(self.table, "download")?;
        let t = r.table(v, &self.what("download"))?;
        r.check_keys(t, keys::DOWNLOAD, &format!("tasks.{}.download", self.name));
        let mut urls = Vec::new();
        match (get(t, "url"), get(t, "urls")) {
            (Some(_), Some(u)) => {
                r.push(
                    Problem::at(u.span(), "a download has `url` or `urls`, not both")
                        .label("second URL field")
                        .help("put every mirror in `urls`"),
                );
            }
            (None, None) => {
                r.push(
                    Problem::at(
                        v.span(),
                        format!("download task `{}` has no `url`", self.name),
                    )
                    .label("missing url")
                    .help("add `url = \"https://...\"`, or `urls = [...]` for mirrors"),
                );
            }
            (Some(u), None) => urls.extend(r.string(u, &self.what("download.url"))),
            (None, Some(u)) => {
                let list = r
                    .strings(u, &self.what("download.urls"), false)
                    .unwrap_or_default();
                if list.is_empty() {
                    r.push(Problem::at(u.span(), "`urls` is empty").label("no mirror"));
                }
                urls.extend(list);
            }
        }
        let mut templates = Vec::new();
        for (text, span) in urls {
            let Some(tpl) = self.template(r, &text, &span) else {
                continue;
            };
            let probe = tpl.expose_with(|_| Some("x".into())).unwrap_or_default();
            if check_url(r, &probe, span, &self.what("download.url")).is_some() {
                templates.push(tpl);
            }
        }
        let dest = match get(t, "dest") {
            Some(d) => self.path(r, d, "dest", false),
            None => {
                r.push(
                    Problem::at(
                        v.span(),
                        format!("download task `{}` has no `dest`", self.name),
                    )
                    .label("missing dest")
                    .help("add `dest = \"data/file.csv\"`, relative to the manifest"),
                );
                None
            }
        };
        let sha256 = get(t, "sha256").and_then(|s| {
            let (text, span) = r.string(s, &self.what("download.sha256"))?;
            let ok = text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                r.push(
                    Problem::at(span, format!("malformed sha256 `{text}`"))
                        .label("not a sha256 digest")
                        .help("a sha256 is 64 hex digits (sha256sum FILE prints it)"),
                );
            }
            ok.then(|| text.to_ascii_lowercase())
        });
        let mut headers = BTreeMap::new();
        if let Some(h) =
            get(t, "headers").and_then(|h| r.string_table(h, &self.what("download.headers")))
        {
            for e in h {
                if let Some(tpl) = self.template(r, &e.value, &e.span) {
                    headers.insert(e.key, tpl);
                }
            }
        }
        let max_bytes = get(t, "max_bytes").and_then(|m| match m.get_ref() {
            DeValue::String(s) => match crate::units::parse_size(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    r.push(
                        Problem::at(m.span(), e)
                            .label("not a size")
                            .help("write sizes like \"64MiB\" or a number of bytes"),
                    );
                    None
                }
            },
            _ => r
                .integer_in(m, &self.what("download.max_bytes"), 1, i64::MAX)
                .map(|n| n as u64),
        });
        let resume = get(t, "resume")
            .and_then(|b| r.boolean(b, &self.what("download.resume")))
            .unwrap_or(true);
        let revalidate = get(t, "revalidate")
            .and_then(|b| r.boolean(b, &self.what("download.revalidate")))
            .unwrap_or(false);
        if templates.is_empty() {
            return None;
        }
        Some(Download {
            urls: templates,
            dest: dest?,
            sha256,
            headers,
            max_bytes,
            resume,
            revalidate,
        })
    }

    fn service(&self, r: &mut Reader<'_>) -> Option<Service> {
        let v = get(self.table, "service")?;
        let t = r.table(v, &self.what("service"))?;
        r.check_keys(t, keys::SERVICE, &format!("tasks.{}.service", self.name));
        let run = match get(t, "run") {
            Some(cmd) => self.command(r, cmd, "service.run"),
            None => {
                r.push(
                    Problem::at(v.span(), format!("service `{}` has no `run`", self.name))
                        .label("missing run"),
                );
                None
            }
        };
        let ready = match get(t, "ready") {
            None => {
                r.push(Problem::at(v.span(), format!("service `{}` has no `ready` probe", self.name)).label("missing ready").help("add `ready = { url = \"http://127.0.0.1:8000/\" }` or `ready = { tcp = \"127.0.0.1:8000\" }`"));
                None
            }
            Some(rv) => self.ready(r, rv),
        };
        let ready_timeout = get(t, "ready_timeout")
            .and_then(|d| r.duration(d, &self.what("service.ready_timeout")))
            .unwrap_or(Duration::from_secs(30));
        Some(Service {
            run: run?,
            ready: ready?,
            ready_timeout,
        })
    }

    fn ready(&self, r: &mut Reader<'_>, v: &Val<'_>) -> Option<Readiness> {
        let t = r.table(v, &self.what("service.ready"))?;
        r.check_keys(
            t,
            keys::READY,
            &format!("tasks.{}.service.ready", self.name),
        );
        match (get(t, "url"), get(t, "tcp")) {
            (Some(u), None) => {
                let (text, span) = r.string(u, &self.what("service.ready.url"))?;
                let tpl = self.template(r, &text, &span)?;
                let probe = tpl.expose_with(|_| Some("x".into())).unwrap_or_default();
                check_url(r, &probe, span, &self.what("service.ready.url"))?;
                Some(Readiness::Url(tpl))
            }
            (None, Some(a)) => {
                let (text, span) = r.string(a, &self.what("service.ready.tcp"))?;
                let tpl = self.template(r, &text, &span)?;
                let addr = tpl.as_literal().unwrap_or("").to_string();
                let ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    r.push(
                        Problem::at(span, format!("`ready.tcp` must be HOST:PORT, not `{addr}`"))
                            .label("not an address"),
                    );
                    return None;
                }
                Some(Readiness::Tcp(addr))
            }
            _ => {
                r.push(
                    Problem::at(v.span(), "`ready` needs exactly one of `url` or `tcp`")
                        .label("ambiguous probe"),
                );
                None
            }
        }
    }
}

/// Applies a `retry` value (an int or a table) over `policy`, field by field.
pub fn apply_retry(r: &mut Reader<'_>, v: &Val<'_>, policy: &mut RetryPolicy, what: &str) {
    let max_attempts = |r: &mut Reader<'_>, v: &Val<'_>| -> Option<u32> {
        let n = r.integer(v, &format!("{what}.max_attempts"))?;
        if n < 1 {
            r.push(Problem::at(v.span(), format!("`max_attempts = {n}` would never run the task")).label("must be at least 1").help("max_attempts is the total number of attempts, including the first; 1 means no retry"));
            return None;
        }
        Some(n.min(u32::MAX as i64) as u32)
    };
    match v.get_ref() {
        DeValue::Integer(_) => {
            if let Some(n) = max_attempts(r, v) {
                policy.max_attempts = n;
            }
        }
        DeValue::Table(t) => {
            r.check_keys(t, keys::RETRY, &format!("`{what}`"));
            if let Some(n) = get(t, "max_attempts").and_then(|v| max_attempts(r, v)) {
                policy.max_attempts = n;
            }
            if let Some(d) = get(t, "initial_delay")
                .and_then(|v| r.duration(v, &format!("{what}.initial_delay")))
            {
                policy.initial_delay = d;
            }
            if let Some(d) =
                get(t, "max_delay").and_then(|v| r.duration(v, &format!("{what}.max_delay")))
            {
                policy.max_delay = d;
            }
            if let Some(d) =
                get(t, "max_elapsed").and_then(|v| r.duration(v, &format!("{what}.max_elapsed")))
            {
                policy.max_elapsed = Some(d);
            }
            if let Some(fv) = get(t, "factor")
                && let Some(f) = r.number(fv, &format!("{what}.factor"))
            {
                if f.is_finite() && f >= 1.0 {
                    policy.factor = f;
                } else {
                    r.push(
                        Problem::at(fv.span(), format!("`factor = {f}` must be at least 1.0"))
                            .label("waits would shrink")
                            .help("1.0 keeps the wait constant; 2.0 doubles it"),
                    );
                }
            }
            if let Some((s, span)) =
                get(t, "jitter").and_then(|v| r.string(v, &format!("{what}.jitter")))
            {
                match s.as_str() {
                    "none" => policy.jitter = Jitter::None,
                    "full" => policy.jitter = Jitter::Full,
                    "equal" => policy.jitter = Jitter::Equal,
                    other => r.push(
                        Problem::at(
                            span,
                            format!(
                                "`jitter` must be \"none\", \"full\" or \"equal\", not \"{other}\""
                            ),
                        )
                        .label("unknown jitter"),
                    ),
                }
            }
            if let Some(ev) = get(t, "exit_codes") {
                match ev.get_ref() {
                    DeValue::Array(items) => {
                        let codes: Vec<i32> = items
                            .iter()
                            .filter_map(|i| r.integer_in(i, &format!("{what}.exit_codes"), 1, 255))
                            .map(|n| n as i32)
                            .collect();
                        policy.exit_codes = Some(codes);
                    }
                    _ => r.push(
                        Problem::at(
                            ev.span(),
                            "`exit_codes` must be an array of exit codes, e.g. [1, 75]",
                        )
                        .label("wrong type"),
                    ),
                }
            }
        }
        _ => r.push(
            Problem::at(
                v.span(),
                format!("`{what}` must be a number of attempts or a table"),
            )
            .label("wrong type")
            .help("e.g. `retry = 3` or `retry = { max_attempts = 3, initial_delay = \"1s\" }`"),
        ),
    }
}
