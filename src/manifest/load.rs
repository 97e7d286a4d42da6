//! Top-level loading: TOML text → every section read and checked → [`Pipeline`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::diagnostic::{LoadError, ManifestErrors, Problem};
use super::fanout::deferred::Deferrals;
use super::interpolate::{Context, interpolate};
use super::task::{TaskBuilder, TaskSpans};
use super::walk::{Reader, Val, get};
use super::{fanout, graph, keys, reserved, walk};
use crate::model::{HttpConfig, Pipeline};
use crate::template::Template;

/// What the command line adds to a manifest.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME=VALUE` overrides, in order.
    pub vars: Vec<(String, String)>,
    /// Tasks that finished (succeeded or cached) earlier in this run: a fan-out task whose
    /// items only these produce is expanded now instead of waiting as a stand-in.
    pub finished: BTreeSet<String>,
    /// Fan-out tasks (as declared) kept as stand-ins although their producers finished: their
    /// items turned out invalid in this run, which must not stop the others' expansion.
    pub held: BTreeSet<String>,
}

/// Splits `--var NAME=VALUE` arguments.
pub fn parse_var_args(args: &[String]) -> Result<Vec<(String, String)>, LoadError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(LoadError::BadVar(format!(
                "--var `{a}` must look like NAME=VALUE"
            ))),
        })
        .collect()
}

/// Reads and validates a manifest file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Pipeline, LoadError> {
    let source = read_source(path)?;
    let env = |k: &str| std::env::var(k).ok();
    load_str(path, source, opts, &env)
}

/// Reads the manifest text; a large one lets the heap use huge pages (see
/// [`crate::huge_pages`]).
pub fn read_source(path: &Path) -> Result<String, LoadError> {
    let source = crate::text_files::read_to_string(path).map_err(|error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if source.len() >= HUGE_PAGES_FROM && task_headers(&source) >= HUGE_PAGES_TASKS {
        crate::huge_pages::enable_for_large_heap();
    }
    Ok(source)
}

/// Lets the heap use huge pages once a pipeline is known to have enough tasks for them (a
/// fan-out's instances, counted when expanded; a remembered pipeline, by its size): the
/// text's `[tasks.` headers say nothing of those.
pub(crate) fn heap_for_tasks(tasks: usize) {
    if tasks >= HUGE_PAGES_TASKS {
        crate::huge_pages::enable_for_large_heap();
    }
}

/// Manifest size below which no manifest is worth a look for huge pages.
const HUGE_PAGES_FROM: usize = 32 * 1024;

/// Tasks from which the heap is worth huge pages: a 2,000-task run took 11.9 ms with 4 KiB
/// pages and 10.2 ms with huge ones, a 1,000-task run 7.8 and 7.6 ms; a 10,000-task one
/// touches ~30 MiB densely. Below it they cost memory for little: 1,000 downloads peaked at
/// 32-40 MiB with them and 21 MiB without (82 and 29 MiB with the cache on), 2-3% faster.
const HUGE_PAGES_TASKS: usize = 2_000;

/// `[tasks.NAME]` headers in the text: the task count, cheaply, before parsing (tasks
/// written as inline tables under one `[tasks]` are not counted, and then stay on 4 KiB
/// pages).
fn task_headers(source: &str) -> usize {
    let inner = memchr::memmem::find_iter(source.as_bytes(), b"\n[tasks.").count();
    inner + usize::from(source.starts_with("[tasks."))
}

/// Loads of one manifest text at most, for fan-outs expanded after others in a chain (more
/// than `run`'s phases, which fail what is left of a longer chain).
const MAX_PASSES: usize = 16;

/// Validates manifest text; `env` stands for the caller's environment.
pub fn load_str(
    path: &Path,
    source: String,
    opts: &LoadOptions,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Pipeline, LoadError> {
    let mut defer = Deferrals::new();
    let (mut pipeline, mut problems, mut deferrals) = read(path, &source, opts, &defer, env);
    // A pass that finds fan-outs over produced items read them (maybe stale, maybe
    // missing): load again with those tasks as stand-ins, which read nothing. A fan-out over
    // a stand-in's outputs is found by the next pass.
    for _ in 0..MAX_PASSES {
        if deferrals.is_empty() {
            break;
        }
        defer.extend(deferrals);
        (pipeline, problems, deferrals) = read(path, &source, opts, &defer, env);
    }
    for name in deferrals.keys() {
        problems.push(
            Problem::global(format!(
                "task `{name}` reads the outputs of a chain of more than {MAX_PASSES} fan-out tasks, each over the last one's outputs"
            ))
            .help("read its items from a file that exists, or shorten the chain"),
        );
    }
    // `[defaults]` values are read once per task; report each of their problems once.
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert((p.span.clone(), p.message.clone())));
    match pipeline {
        Some(p) if problems.is_empty() => Ok(p),
        _ => Err(LoadError::Invalid(Box::new(ManifestErrors {
            path: path.to_path_buf(),
            source,
            problems,
        }))),
    }
}

fn read(
    path: &Path,
    source: &str,
    opts: &LoadOptions,
    defer: &Deferrals,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (Option<Pipeline>, Vec<Problem>, Deferrals) {
    let doc = match DeTable::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            return (
                None,
                vec![Problem::at(span, format!("TOML syntax error: {msg}")).label("here")],
                Deferrals::new(),
            );
        }
    };
    let mut r = Reader {
        source,
        problems: Vec::new(),
    };
    let root = doc.get_ref();
    r.check_keys(root, keys::TOP, "the manifest");

    if let Some(v) = get(root, "version")
        && let Some(n) = r.integer(v, "version")
        && n != 1
    {
        r.push(
            Problem::at(v.span(), format!("unsupported manifest version {n}"))
                .label("only version 1 exists")
                .help("write `version = 1` or leave it out"),
        );
    }

    let root_dir = manifest_dir(path);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    let (name, description, concurrency, fail_fast) = read_pipeline(&mut r, root, stem);

    let vars = super::vars::read_vars(&mut r, root, opts, env);
    let ctx = Context {
        vars: &vars,
        env,
        allow_vars_and_secrets: true,
        item: None,
    };
    let global_env = read_env(&mut r, get(root, "env"), "env", &ctx).unwrap_or_default();
    let pools = read_pools(&mut r, root);
    let http = read_http(&mut r, root);
    let cache = super::cache::read_cache(&mut r, root, &root_dir, &ctx, env);
    let execution = super::execution::read_execution(&mut r, root, &ctx, env);

    let defaults = get(root, "defaults").and_then(|v| r.table(v, "defaults"));
    if let Some(d) = defaults {
        r.check_keys(d, keys::DEFAULTS, "[defaults]");
        // Checked here too, so a manifest without tasks yet hears of its mistakes.
        if let Some(v) = get(d, "retry") {
            let mut scratch =
                crate::model::RetryPolicy::default_for(crate::model::TaskKind::Command);
            super::retry::apply_retry(&mut r, v, &mut scratch, "defaults.retry");
        }
        if let Some(v) = get(d, "timeout") {
            r.duration(v, "defaults.timeout");
        }
    }

    let mut tasks = crate::model::TaskMap::default();
    let mut spans: Vec<TaskSpans> = Vec::new();
    let mut fanouts = Vec::new();
    let mut item_sources = Vec::new();
    if let Some(v) = get(root, "tasks")
        && let Some(t) = r.table(v, "tasks")
    {
        tasks.reserve(t.len());
        spans.reserve(t.len());
        for (key, value) in t.iter() {
            let name = key.get_ref().to_string();
            check_task_name(&mut r, &name, key.span());
            let Some(table) = r.table(value, &format_args!("tasks.{name}")) else {
                continue;
            };
            let builder = TaskBuilder {
                name: &name,
                name_span: key.span(),
                table,
                defaults,
                ctx: &ctx,
            };
            if fanout::is_fanout(table) {
                let out = fanout::Expanded {
                    tasks: &mut tasks,
                    spans: &mut spans,
                    fanouts: &mut fanouts,
                    sources: &mut item_sources,
                    defer,
                };
                fanout::expand(&mut r, &builder, &root_dir, out);
                continue;
            }
            if let Some(k) = walk::key_span(table, "key") {
                r.push(
                    Problem::at(k, format!("`key` applies only to a fan-out task, and `{name}` has no `matrix` or `for_each`"))
                        .label("no instances to name")
                        .help("remove `key`, or add `matrix` or `for_each`"),
                );
            }
            if let Some((task, task_spans)) = builder.build(&mut r) {
                tasks.insert(name, task);
                spans.push(task_spans);
            }
        }
    }
    fanout::link::expand_deps(&mut tasks, &mut spans, &fanouts);
    let deferrals = fanout::link::check_produced(
        &mut r,
        &mut tasks,
        &mut spans,
        &fanouts,
        &item_sources,
        &opts.finished,
        &opts.held,
    );
    reserved::check(&mut r, &tasks, &spans, path, &root_dir, &cache.dir);

    let deps = graph::check(&mut r, &tasks, &spans, &pools);

    let pipeline = Pipeline {
        manifest_path: path.to_path_buf(),
        root: root_dir,
        name,
        description,
        concurrency,
        fail_fast,
        env: global_env,
        pools: pools.into_iter().map(|(k, (n, _))| (k, n)).collect(),
        cache,
        http,
        execution,
        tasks,
        // Used only when there are no problems: then every dep was found.
        dep_indices: Some(deps),
        fanouts,
        item_sources: item_sources.into_iter().map(|s| s.source).collect(),
    };
    (Some(pipeline), r.problems, deferrals)
}

/// The cache dir of the manifest at `path` unless its `[cache] dir` names another one
/// (`run` reads the cache's state files ahead from there while the manifest loads).
pub fn default_cache_dir(path: &Path, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> PathBuf {
    env_cache_dir(env).unwrap_or_else(|| manifest_dir(path).join(".taskrun").join("cache"))
}

/// `TASKRUN_CACHE_DIR`, made absolute, when set.
pub(super) fn env_cache_dir(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<PathBuf> {
    let d = env("TASKRUN_CACHE_DIR").filter(|d| !d.is_empty())?;
    Some(std::path::absolute(&d).unwrap_or_else(|_| PathBuf::from(d)))
}

/// The manifest's directory, absolute, so every task path has one fixed base.
pub fn manifest_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn check_task_name(r: &mut Reader<'_>, name: &str, span: std::ops::Range<usize>) {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        r.push(
            Problem::at(span, format!("task name `{name}` is not allowed"))
                .label("bad task name")
                .help(
                    "use ASCII letters and digits, `-`, `_`, `.` and `:` (it names log files too)",
                ),
        );
    }
}

fn read_pipeline(
    r: &mut Reader<'_>,
    root: &DeTable<'_>,
    stem: String,
) -> (String, Option<String>, usize, bool) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = (stem, None, cpus, true);
    let Some(t) = get(root, "pipeline").and_then(|v| r.table(v, "pipeline")) else {
        return out;
    };
    r.check_keys(t, keys::PIPELINE, "[pipeline]");
    if let Some((s, span)) = get(t, "name").and_then(|v| r.string(v, "pipeline.name")) {
        // Printed in every summary line and report: no escape sequence rides along.
        if s.chars().any(char::is_control) {
            r.push(
                Problem::at(
                    span,
                    format!(
                        "`pipeline.name` `{}` holds a control character",
                        s.escape_debug()
                    ),
                )
                .label("not printable")
                .help("name the pipeline with printable characters"),
            );
        } else {
            out.0 = s;
        }
    }
    out.1 = get(t, "description")
        .and_then(|v| r.string(v, "pipeline.description"))
        .map(|(s, _)| s);
    if let Some(n) =
        get(t, "concurrency").and_then(|v| r.integer_in(v, "pipeline.concurrency", 1, 1_000_000))
    {
        out.2 = n as usize;
    }
    if let Some(b) = get(t, "fail_fast").and_then(|v| r.boolean(v, "pipeline.fail_fast")) {
        out.3 = b;
    }
    out
}

/// Records interpolation errors at their place inside the string value.
pub fn report_interpolation(
    r: &mut Reader<'_>,
    span: &std::ops::Range<usize>,
    text: &str,
    errs: Vec<super::interpolate::InterpolationError>,
) {
    for e in errs {
        let at = r.inner_span(span, text, e.range);
        let mut p = Problem::at(at, e.message).label("cannot interpolate");
        if let Some(h) = e.help {
            p = p.help(h);
        }
        r.push(p);
    }
}

/// Reads an env table (`[env]` or a task's `env`), interpolating values.
pub fn read_env(
    r: &mut Reader<'_>,
    v: Option<&Val<'_>>,
    what: &(impl std::fmt::Display + ?Sized),
    ctx: &Context<'_>,
) -> Option<BTreeMap<String, Template>> {
    let entries = r.string_table(v?, what)?;
    let mut out = BTreeMap::new();
    for e in entries {
        // What the OS cannot take: `A=B` would set `A`, and a NUL ends the string early.
        if e.key.is_empty() || e.key.contains(['=', '\0']) {
            r.push(
                Problem::at(
                    e.key_span.clone(),
                    format!(
                        "`{}` cannot name an environment variable",
                        e.key.escape_debug()
                    ),
                )
                .label("not a variable name")
                .help("a name may not be empty nor hold `=` or a NUL byte; e.g. `MY_VAR`"),
            );
            continue;
        }
        if e.value.contains('\0') {
            r.push(
                Problem::at(
                    e.span.clone(),
                    format!("the value of `{}` holds a NUL byte", e.key),
                )
                .label("no environment value can")
                .help("remove the `\\u0000`"),
            );
            continue;
        }
        match interpolate(&e.value, ctx) {
            Ok(t) => {
                out.insert(e.key, t);
            }
            Err(errs) => report_interpolation(r, &e.span, &e.value, errs),
        }
    }
    Some(out)
}

/// Pool name → (slots, span of the declaration).
pub type Pools = BTreeMap<String, (u32, std::ops::Range<usize>)>;

fn read_pools(r: &mut Reader<'_>, root: &DeTable<'_>) -> Pools {
    let mut pools = BTreeMap::new();
    let Some(t) = get(root, "pools").and_then(|v| r.table(v, "pools")) else {
        return pools;
    };
    for (k, v) in t.iter() {
        let name = k.get_ref().to_string();
        match r.integer_in(v, &format!("pools.{name}"), 1, u32::MAX as i64) {
            Some(n) => pools.insert(name, (n as u32, k.span())),
            // Declared, if wrongly (that is reported): its users are no problem of their own.
            None => pools.insert(name, (u32::MAX, k.span())),
        };
    }
    pools
}

fn read_http(r: &mut Reader<'_>, root: &DeTable<'_>) -> HttpConfig {
    let mut http = HttpConfig::default();
    let Some(t) = get(root, "http").and_then(|v| r.table(v, "http")) else {
        return http;
    };
    r.check_keys(t, keys::HTTP, "[http]");
    if let Some(n) =
        get(t, "max_per_host").and_then(|v| r.integer_in(v, "http.max_per_host", 1, 10_000))
    {
        http.max_per_host = n as usize;
    }
    if let Some(d) = get(t, "connect_timeout").and_then(|v| r.duration(v, "http.connect_timeout")) {
        http.connect_timeout = d.max(Duration::from_millis(1));
    }
    if let Some(d) = get(t, "read_timeout").and_then(|v| r.duration(v, "http.read_timeout")) {
        http.read_timeout = d.max(Duration::from_millis(1));
    }
    if let Some((s, _)) = get(t, "user_agent").and_then(|v| r.string(v, "http.user_agent")) {
        http.user_agent = s;
    }
    http
}

/// Parses an http(s) URL, recording a problem when it is malformed.
pub fn check_url(
    r: &mut Reader<'_>,
    text: &str,
    span: std::ops::Range<usize>,
    what: &(impl std::fmt::Display + ?Sized),
) -> Option<url::Url> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(u) => {
            r.push(
                Problem::at(
                    span,
                    format!(
                        "`{what}` must be an http or https URL, not `{}:`",
                        u.scheme()
                    ),
                )
                .label("unsupported URL"),
            );
            None
        }
        Err(e) => {
            r.push(
                Problem::at(span, format!("malformed URL `{text}` for `{what}`: {e}"))
                    .label("not a URL")
                    .help("write a full URL like \"https://host/path/file.csv\""),
            );
            None
        }
    }
}

/// True for a table value, so callers can tell `retry = 4` from `retry = { ... }`.
pub fn is_table(v: &Val<'_>) -> bool {
    matches!(v.get_ref(), DeValue::Table(_))
}
