//! `[cache]` (SPEC §5, §11): the local store's directory, and the remote: an http(s) URL
//! speaks the Bazel HTTP cache protocol, a grpc(s) endpoint the REAPI ActionCache and CAS
//! (with its `instance` and metadata `headers`). `TASKRUN_CACHE_DIR` and
//! `TASKRUN_REMOTE_CACHE` are applied here, through the loader's `env`.

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::diagnostic::{LoadError, Problem};
use super::interpolate::Context;
use super::keys;
use super::walk::{Reader, get};
use crate::model::{CacheConfig, GrpcUrl, RemoteCacheUrl};

/// Reads `[cache]`, then applies the environment.
pub(super) fn read_cache(
    r: &mut Reader<'_>,
    root: &DeTable<'_>,
    root_dir: &Path,
    ctx: &Context<'_>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> CacheConfig {
    let mut cache = CacheConfig {
        dir: root_dir.join(".taskrun").join("cache"),
        remote: None,
        remote_write: true,
        instance: String::new(),
        headers: Default::default(),
    };
    if let Some(t) = get(root, "cache").and_then(|v| r.table(v, "cache")) {
        r.check_keys(t, keys::CACHE, "[cache]");
        if let Some(dir) = read_dir(r, t, root_dir) {
            cache.dir = dir;
        }
        if let Some((s, span)) = get(t, "remote").and_then(|v| r.string(v, "cache.remote")) {
            cache.remote = check_remote_cache_url(r, &s, span);
        }
        if let Some(b) = get(t, "remote_write").and_then(|v| r.boolean(v, "cache.remote_write")) {
            cache.remote_write = b;
        }
        if let Some((s, span)) = get(t, "instance").and_then(|v| r.string(v, "cache.instance")) {
            if s.contains("${") {
                r.push(
                    Problem::at(
                        span,
                        "`cache.instance` is not interpolated: `${...}` would be sent as written",
                    )
                    .label("a placeholder in the instance name")
                    .help("write the instance name out"),
                );
            }
            cache.instance = s;
        }
        if let Some(v) = get(t, "headers") {
            cache.headers = super::execution::read_headers(r, v, "cache.headers", ctx);
        }
        let grpc_only = ["instance", "headers"]
            .into_iter()
            .filter_map(|k| get(t, k).map(|v| (k, v.span())));
        if matches!(cache.remote, Some(RemoteCacheUrl::Http(_))) {
            for (k, span) in grpc_only {
                r.push(
                    Problem::at(span, format!("`cache.{k}` applies only to a gRPC remote cache"))
                        .label("the remote is an HTTP cache")
                        .help("an HTTP remote takes `user:password@` in its URL; remove it or use a grpc:// remote"),
                );
            }
        }
    }
    if let Some(d) = super::load::env_cache_dir(env) {
        cache.dir = d;
    }
    if let Some(u) = env(REMOTE_CACHE_ENV).filter(|u| !u.is_empty()) {
        cache.remote = env_remote_cache_url(r, &u);
    }
    cache
}

/// The environment variable that names the remote cache over `[cache] remote`.
pub const REMOTE_CACHE_ENV: &str = "TASKRUN_REMOTE_CACHE";
/// `[cache] dir`, resolved against the manifest's directory, when it is given and valid.
fn read_dir(r: &mut Reader<'_>, t: &DeTable<'_>, root_dir: &Path) -> Option<PathBuf> {
    if let Some((s, span)) = get(t, "dir").and_then(|v| r.string(v, "cache.dir")) {
        match super::paths::normalize(&s, false) {
            // Taken as written: a placeholder would name a directory `${vars.x}`.
            _ if s.contains("${") => r.push(
                Problem::at(span, "`cache.dir` is not interpolated: `${...}` would be part of the directory's name")
                    .label("a placeholder in the cache dir")
                    .help("write the path out, or set TASKRUN_CACHE_DIR in the environment"),
            ),
            Ok(p) => return Some(root_dir.join(p.as_str())),
            Err(e) => r.push(
                Problem::at(span, e.message("cache.dir", &s))
                    .label("must stay inside the manifest's directory")
                    .help("use TASKRUN_CACHE_DIR for a cache elsewhere"),
            ),
        }
    }
    None
}

/// The cache dir of the manifest at `path`, from its `[cache] dir` and `TASKRUN_CACHE_DIR`
/// alone: `cache stats`, `gc` and `clean` need nothing else, and a manifest whose tasks do
/// not load now (an unset `${env.X}`, an item file moved away) still has a cache to tend.
pub fn cache_dir_only(path: &Path) -> Result<PathBuf, LoadError> {
    let source = super::load::read_source(path)?;
    let env = |k: &str| std::env::var(k).ok();
    let root_dir = super::load::manifest_dir(path);
    let mut r = Reader {
        source: &source,
        problems: Vec::new(),
    };
    let mut dir = None;
    match DeTable::parse(&source) {
        Ok(doc) => {
            if let Some(t) = get(doc.get_ref(), "cache").and_then(|v| r.table(v, "cache")) {
                // A misspelt `dir` would point these commands at the default cache.
                r.check_keys(t, keys::CACHE, "[cache]");
                dir = read_dir(&mut r, t, &root_dir);
            }
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            r.push(Problem::at(span, format!("TOML syntax error: {msg}")).label("here"));
        }
    }
    if !r.problems.is_empty() {
        let problems = std::mem::take(&mut r.problems);
        return Err(LoadError::Invalid(Box::new(super::ManifestErrors {
            path: path.to_path_buf(),
            source,
            problems,
        })));
    }
    Ok(super::load::env_cache_dir(&env)
        .or(dir)
        .unwrap_or_else(|| root_dir.join(".taskrun").join("cache")))
}

/// `[cache] remote`: an http(s) URL (the Bazel HTTP protocol) or a grpc(s) endpoint (the
/// REAPI cache); a problem, and no remote, otherwise.
fn check_remote_cache_url(
    r: &mut Reader<'_>,
    text: &str,
    span: std::ops::Range<usize>,
) -> Option<RemoteCacheUrl> {
    // Taken as written: a placeholder here would be sent as its own text (a password
    // `${secret.X}` included), so it is refused rather than ignored.
    if text.contains("${") {
        r.push(
            Problem::at(span, "`cache.remote` is not interpolated: `${...}` would be sent as written")
                .label("a placeholder in the remote cache URL")
                .help(format!(
                    "write the URL out, or set it (with any password) in the environment: {REMOTE_CACHE_ENV}=http://user:password@host/path"
                )),
        );
        return None;
    }
    if is_grpc_scheme(text) {
        return match GrpcUrl::parse(text) {
            Ok(u) => Some(RemoteCacheUrl::Grpc(u)),
            Err(e) => {
                r.push(
                    Problem::at(span, format!("`cache.remote`: {e}"))
                        .label("not a gRPC endpoint")
                        .help(grpc_cache_help(&e)),
                );
                None
            }
        };
    }
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Some(RemoteCacheUrl::Http(u))
        }
        Ok(u) => {
            r.push(
                Problem::at(
                    span,
                    format!(
                        "`cache.remote` must be an http(s) or grpc(s) URL, not `{}:`",
                        u.scheme()
                    ),
                )
                .label("unsupported URL")
                .help("http(s):// speaks the Bazel HTTP cache protocol, grpc(s):// the Remote Execution API's cache"),
            );
            None
        }
        Err(e) => {
            r.push(
                Problem::at(span, format!("malformed URL `{text}` for `cache.remote`: {e}"))
                    .label("not a URL")
                    .help("write a full URL like \"http://cache.internal:8080/taskrun\" or \"grpc://cache.internal:9092\""),
            );
            None
        }
    }
}

/// `TASKRUN_REMOTE_CACHE`: a gRPC endpoint that is not usable is a problem (its value is
/// not repeated: it may hold a password); anything else is taken as an HTTP URL, as before.
fn env_remote_cache_url(r: &mut Reader<'_>, text: &str) -> Option<RemoteCacheUrl> {
    if !is_grpc_scheme(text) {
        return url::Url::parse(text).ok().map(RemoteCacheUrl::Http);
    }
    match GrpcUrl::parse(text) {
        Ok(u) => Some(RemoteCacheUrl::Grpc(u)),
        Err(e) => {
            r.push(
                Problem::global(format!(
                    "{REMOTE_CACHE_ENV} is not a usable remote cache URL: {e}"
                ))
                .help(grpc_cache_help(&e)),
            );
            None
        }
    }
}

fn is_grpc_scheme(text: &str) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    lower.starts_with("grpc:") || lower.starts_with("grpcs:")
}

/// [`GrpcUrlError::help`], with the cache's own tables named.
fn grpc_cache_help(e: &crate::model::GrpcUrlError) -> &'static str {
    use crate::model::GrpcUrlError;
    match e {
        GrpcUrlError::Credentials => {
            "send a token as gRPC metadata instead: `[cache] headers = { authorization = \"Bearer ${secret.NAME}\" }`"
        }
        GrpcUrlError::Path(_) => "the REAPI instance name goes in `[cache] instance`",
        other => other.help(),
    }
}
