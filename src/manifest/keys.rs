//! The keys each manifest table accepts: one list used by the loader's unknown-key check and
//! by the schema test, so the two cannot drift apart.

/// Top-level keys.
pub const TOP: &[&str] = &[
    "version",
    "pipeline",
    "vars",
    "env",
    "pools",
    "defaults",
    "cache",
    "http",
    "execution",
    "tasks",
];
/// `[pipeline]`.
pub const PIPELINE: &[&str] = &["name", "description", "concurrency", "fail_fast"];
/// `[cache]`.
pub const CACHE: &[&str] = &["dir", "remote", "remote_write", "instance", "headers"];
/// `[http]`.
pub const HTTP: &[&str] = &[
    "max_per_host",
    "connect_timeout",
    "read_timeout",
    "user_agent",
];
/// `[execution]` (SPEC §11).
pub const EXECUTION: &[&str] = &[
    "remote",
    "instance",
    "platform",
    "headers",
    "jobs",
    "streams",
    "path",
    "fallback_local",
];
/// `[tasks.NAME]`.
pub const TASK: &[&str] = &[
    "description",
    "deps",
    "run",
    "download",
    "service",
    "cwd",
    "env",
    "inputs",
    "outputs",
    "timeout",
    "retry",
    "uses",
    "cache",
    "keep_failed_outputs",
    "cache_ttl",
    "remote",
    "platform",
    "matrix",
    "for_each",
    "key",
];
/// `[defaults]`: every task field but the kinds.
pub const DEFAULTS: &[&str] = &[
    "description",
    "deps",
    "cwd",
    "env",
    "inputs",
    "outputs",
    "timeout",
    "retry",
    "uses",
    "cache",
    "keep_failed_outputs",
    "cache_ttl",
    "remote",
    "platform",
];
/// A `retry` table.
pub const RETRY: &[&str] = &[
    "max_attempts",
    "initial_delay",
    "factor",
    "max_delay",
    "jitter",
    "max_elapsed",
    "exit_codes",
];
/// A `download` table.
pub const DOWNLOAD: &[&str] = &[
    "url",
    "urls",
    "dest",
    "sha256",
    "headers",
    "max_bytes",
    "resume",
    "revalidate",
];
/// A `service` table.
pub const SERVICE: &[&str] = &["run", "ready", "ready_timeout"];
/// A service's `ready` table.
pub const READY: &[&str] = &["url", "tcp"];
/// A task's `for_each` table.
pub const FOR_EACH: &[&str] = &["lines", "csv", "glob", "allow_empty"];
