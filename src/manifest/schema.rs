//! The manifest format as types, for `taskrun schema` and `schema/taskrun.schema.json`.
//!
//! The loader reads the spanned TOML tree directly (see [`super::walk`]); these types exist to
//! describe the format to editors (Taplo) and to tests, which check that every table here
//! accepts exactly the keys in [`super::keys`].

#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::JsonSchema;

/// A taskrun manifest: tasks, their dependencies, retry, pools and cache policy.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "taskrun manifest")]
pub struct Manifest {
    /// Format version; only 1 exists.
    version: Option<u32>,
    /// Name, description and run-wide limits.
    pipeline: Option<PipelineSection>,
    /// Strings used as `${vars.NAME}`; `--var NAME=VALUE` overrides.
    vars: Option<BTreeMap<String, String>>,
    /// Environment given to every command (on top of the caller's).
    env: Option<BTreeMap<String, String>>,
    /// Named concurrency limits; tasks take slots with `uses`.
    pools: Option<BTreeMap<String, u32>>,
    /// Task fields applied to every task that does not set them.
    defaults: Option<Defaults>,
    /// Where results are cached and shared.
    cache: Option<CacheSection>,
    /// Settings for all downloads.
    http: Option<HttpSection>,
    /// A Remote Execution API cluster that command tasks are sent to.
    execution: Option<ExecutionSection>,
    /// The tasks, by name.
    tasks: Option<BTreeMap<String, TaskSection>>,
}

/// `[pipeline]`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct PipelineSection {
    /// Shown in reports; defaults to the manifest's file name.
    name: Option<String>,
    /// What the pipeline is for.
    description: Option<String>,
    /// Global running-task limit; default: available CPUs. `-j` overrides.
    #[schemars(range(min = 1))]
    concurrency: Option<u32>,
    /// Stop starting tasks after the first failure (default true); `--keep-going` overrides.
    fail_fast: Option<bool>,
}

/// `[cache]`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct CacheSection {
    /// Local store, relative to the manifest's directory; TASKRUN_CACHE_DIR overrides.
    dir: Option<String>,
    /// Remote cache: an http(s):// URL (the Bazel HTTP cache protocol) or a
    /// grpc://HOST:PORT / grpcs://HOST[:PORT] endpoint (the REAPI ActionCache and CAS);
    /// TASKRUN_REMOTE_CACHE overrides.
    #[schemars(regex(pattern = r"^(https?|grpcs?)://"))]
    remote: Option<String>,
    /// false: only read the remote.
    remote_write: Option<bool>,
    /// REAPI instance_name of a gRPC remote cache (default "").
    instance: Option<String>,
    /// gRPC metadata sent with every call to a gRPC remote cache, e.g.
    /// `authorization = "Bearer ${secret.CACHE_TOKEN}"`.
    headers: Option<BTreeMap<String, String>>,
}

/// `[http]`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct HttpSection {
    /// Connections per host at once (default 8).
    #[schemars(range(min = 1))]
    max_per_host: Option<u32>,
    /// e.g. "10s".
    connect_timeout: Option<Duration>,
    /// A download response that sends no byte for this long (headers or body) fails the
    /// attempt, retryably (default "30s").
    read_timeout: Option<Duration>,
    /// Default `taskrun/<version>`; a task's own User-Agent header wins.
    user_agent: Option<String>,
}

/// `[execution]` (remote execution over the Remote Execution API v2).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct ExecutionSection {
    /// The executor, "grpc://HOST:PORT" or "grpcs://HOST[:PORT]"; TASKRUN_REMOTE_EXECUTOR
    /// overrides.
    #[schemars(regex(pattern = r"^grpcs?://"))]
    remote: Option<String>,
    /// The REAPI instance name (default "").
    instance: Option<String>,
    /// Platform properties of every remote action (a task's `platform` is merged over them).
    platform: Option<BTreeMap<String, String>>,
    /// gRPC metadata on every call; values may use `${secret.NAME}`.
    headers: Option<BTreeMap<String, String>>,
    /// Remote actions in flight (default: 8 × concurrency).
    #[schemars(range(min = 1))]
    jobs: Option<u32>,
    /// Remote actions that wait on an open stream; the others are polled (default 8). Keep
    /// it below a BuildGrid server's thread pool minus its bots.
    #[schemars(range(min = 1))]
    streams: Option<u32>,
    /// PATH of remote commands (default "/usr/local/bin:/usr/bin:/bin").
    path: Option<String>,
    /// Run a task locally when the cluster is unreachable (default true).
    fallback_local: Option<bool>,
}

/// A humantime duration such as "250ms", "1m 30s", "2h".
#[derive(JsonSchema)]
#[schemars(transparent)]
struct Duration(#[schemars(regex(pattern = r"^\s*[0-9]"))] String);

/// `run = "shell text"` or `run = ["prog", "arg", ...]`.
#[derive(JsonSchema)]
#[schemars(untagged)]
enum CommandLine {
    /// Run with `sh -c`.
    Shell(String),
    /// Exec'd directly.
    Argv(Vec<String>),
}

/// `retry = 4` (attempts) or a table.
#[derive(JsonSchema)]
#[schemars(untagged)]
enum RetrySpec {
    /// Total attempts, including the first.
    Attempts(#[schemars(range(min = 1))] u32),
    /// The full policy.
    Policy(Retry),
}

/// Retry policy (SPEC §3).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Retry {
    /// Total attempts including the first (1 for commands, 3 for downloads).
    #[schemars(range(min = 1))]
    max_attempts: Option<u32>,
    /// Wait before the 2nd attempt (default "1s").
    initial_delay: Option<Duration>,
    /// Growth of each wait (default 2.0; 1.0 is constant).
    #[schemars(range(min = 1.0))]
    factor: Option<f64>,
    /// Cap on one wait (default "60s").
    max_delay: Option<Duration>,
    /// Randomisation of each wait (default "full").
    jitter: Option<Jitter>,
    /// Give up once this much time has passed since the first attempt.
    max_elapsed: Option<Duration>,
    /// Commands: retry only these exit codes.
    exit_codes: Option<Vec<u8>>,
}

/// How waits are randomised.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
enum Jitter {
    /// Exactly the computed wait.
    None,
    /// Uniform in 0..wait.
    Full,
    /// wait/2 + uniform in 0..wait/2.
    Equal,
}

/// Cache policy.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
enum CachePolicy {
    /// On for downloads and for commands with outputs.
    Auto,
    /// Always cached.
    On,
    /// Always runs.
    Off,
}

/// Fields any task may set, also allowed in `[defaults]`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Defaults {
    /// Shown by `list` and `plan`.
    description: Option<String>,
    /// Tasks that must succeed (or be cached) first.
    deps: Option<Vec<String>>,
    /// Working directory of `run`, relative to the manifest's directory.
    cwd: Option<String>,
    /// Extra environment for `run`, over `[env]`.
    env: Option<BTreeMap<String, String>>,
    /// Globs whose files enter the cache key; `?` prefix: may match nothing.
    inputs: Option<Vec<String>>,
    /// Files or directories the task produces; cached and restored.
    outputs: Option<Vec<String>>,
    /// Per attempt.
    timeout: Option<Duration>,
    /// Attempts and waits.
    retry: Option<RetrySpec>,
    /// Pool name → slots.
    uses: Option<BTreeMap<String, u32>>,
    /// "auto", "on" or "off".
    cache: Option<CachePolicy>,
    /// Keep a failed command's outputs (default false: they are deleted).
    keep_failed_outputs: Option<bool>,
    /// A cached result older than this is a miss.
    cache_ttl: Option<Duration>,
    /// false: never sent to the remote executor (default true: a command may be).
    remote: Option<bool>,
    /// Platform properties of its remote action, merged over `[execution] platform`.
    platform: Option<BTreeMap<String, String>>,
}

/// One task: exactly one of `run`, `download`, `service`, or none (a group of `deps`).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct TaskSection {
    /// Shown by `list` and `plan`.
    description: Option<String>,
    /// Tasks that must succeed (or be cached) first.
    deps: Option<Vec<String>>,
    /// A command: shell text or argv.
    run: Option<CommandLine>,
    /// An HTTP(S) GET streamed to a file.
    download: Option<DownloadSection>,
    /// A long-running process its dependents need.
    service: Option<ServiceSection>,
    /// Working directory of `run`, relative to the manifest's directory.
    cwd: Option<String>,
    /// Extra environment for `run`, over `[env]`.
    env: Option<BTreeMap<String, String>>,
    /// Globs whose files enter the cache key; `?` prefix: may match nothing.
    inputs: Option<Vec<String>>,
    /// Files or directories the task produces; cached and restored.
    outputs: Option<Vec<String>>,
    /// Per attempt.
    timeout: Option<Duration>,
    /// Attempts and waits.
    retry: Option<RetrySpec>,
    /// Pool name → slots.
    uses: Option<BTreeMap<String, u32>>,
    /// "auto", "on" or "off".
    cache: Option<CachePolicy>,
    /// Keep a failed command's outputs (default false: they are deleted).
    keep_failed_outputs: Option<bool>,
    /// A cached result older than this is a miss.
    cache_ttl: Option<Duration>,
    /// false: never sent to the remote executor (default true: a command may be).
    remote: Option<bool>,
    /// Platform properties of its remote action, merged over `[execution] platform`.
    platform: Option<BTreeMap<String, String>>,
    /// Fan-out: one instance per combination of these axes' values (`${matrix.AXIS}`).
    matrix: Option<Matrix>,
    /// Fan-out: one instance per line, CSV row or glob match (`${item.FIELD}`).
    for_each: Option<ForEach>,
    /// Names each instance `TASK[KEY]`; a template of `${matrix.*}` and `${item.*}`.
    key: Option<String>,
}

/// `matrix = { AXIS = [values], exclude = [...], include = [...] }`: the cartesian product.
#[derive(JsonSchema)]
struct Matrix {
    /// Removes every combination it matches (a partial row matches all it names).
    exclude: Option<Vec<BTreeMap<String, MatrixValue>>>,
    /// Whole extra rows, added after `exclude`.
    include: Option<Vec<BTreeMap<String, MatrixValue>>>,
    /// The axes, each a list of values.
    #[schemars(flatten)]
    axes: BTreeMap<String, Vec<MatrixValue>>,
}

/// A matrix value: a string, an integer or a boolean (never a float).
#[derive(JsonSchema)]
#[schemars(untagged)]
enum MatrixValue {
    /// As it is.
    String(String),
    /// In decimal.
    Integer(i64),
    /// `true` or `false`.
    Boolean(bool),
}

/// `for_each = { lines | csv | glob = "...", allow_empty = false }`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct ForEach {
    /// One item per line of this file (blank lines and `#` comments skipped): `line`, `name`,
    /// `stem`, `ext`.
    lines: Option<String>,
    /// One item per row of this CSV file; its header row names the fields.
    csv: Option<String>,
    /// One item per file matching this glob when the manifest loads: `path`, `name`, `stem`,
    /// `ext`, `dir`.
    glob: Option<String>,
    /// Zero items is fine (default false: an error).
    allow_empty: Option<bool>,
}

/// `download = { ... }`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct DownloadSection {
    /// The URL (or use `urls` for mirrors).
    url: Option<String>,
    /// Mirrors, tried in order within each attempt.
    urls: Option<Vec<String>>,
    /// Destination file, relative to the manifest's directory.
    dest: String,
    /// Expected sha256 (64 hex digits), verified while streaming.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    sha256: Option<String>,
    /// Request headers; values may use `${secret.NAME}`.
    headers: Option<BTreeMap<String, String>>,
    /// Size limit: bytes, or a size like "64MiB".
    max_bytes: Option<Size>,
    /// Keep `<dest>.part` and continue with Range next time (default true).
    resume: Option<bool>,
    /// On a cache hit of an unpinned URL, ask the origin whether it changed (default false).
    revalidate: Option<bool>,
}

/// Bytes, or a size string like "64MiB".
#[derive(JsonSchema)]
#[schemars(untagged)]
enum Size {
    /// Bytes.
    Bytes(u64),
    /// "64MiB", "2GiB", "500MB".
    Text(String),
}

/// `service = { ... }`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct ServiceSection {
    /// The process.
    run: CommandLine,
    /// When it counts as started.
    ready: Ready,
    /// How long readiness may take (default "30s").
    ready_timeout: Option<Duration>,
}

/// Readiness probe: exactly one of `url` or `tcp`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Ready {
    /// Ready when this URL answers any status below 500.
    url: Option<String>,
    /// Ready when a TCP connection to HOST:PORT succeeds.
    tcp: Option<String>,
}

/// The manifest JSON Schema, pretty-printed.
pub fn manifest_schema_json() -> String {
    let schema = schemars::schema_for!(Manifest);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::super::keys;
    use serde_json::Value;

    fn properties(schema: &Value, def: Option<&str>) -> Vec<String> {
        let node = match def {
            Some(d) => &schema["$defs"][d],
            None => schema,
        };
        let mut keys: Vec<String> = node["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn schema_tables_accept_exactly_the_loader_keys() {
        let schema: Value = serde_json::from_str(&super::manifest_schema_json()).unwrap();
        assert_eq!(properties(&schema, None), sorted(keys::TOP));
        for (def, list) in [
            ("PipelineSection", keys::PIPELINE),
            ("CacheSection", keys::CACHE),
            ("HttpSection", keys::HTTP),
            ("ExecutionSection", keys::EXECUTION),
            ("TaskSection", keys::TASK),
            ("Defaults", keys::DEFAULTS),
            ("Retry", keys::RETRY),
            ("DownloadSection", keys::DOWNLOAD),
            ("ServiceSection", keys::SERVICE),
            ("Ready", keys::READY),
            ("ForEach", keys::FOR_EACH),
        ] {
            assert_eq!(properties(&schema, Some(def)), sorted(list), "{def}");
        }
    }
}
