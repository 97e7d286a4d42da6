//! The validated pipeline: what every later stage (plan, scheduler, actions, cache) reads.
//!
//! Nothing here knows about TOML or spans; the loader in [`crate::manifest`] has already
//! checked every rule of the manifest format, so these types hold only meaningful values.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use crate::template::Template;

mod action;
mod execution;
mod item;

pub use action::{
    Action, CommandLine, Download, LockedPin, PinSource, Readiness, Service, TaskKind,
};
pub use execution::{ExecutedOn, ExecutionConfig, GrpcUrl, GrpcUrlError};
pub use item::ItemValues;

/// A loaded, validated manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    /// The manifest file as given on the command line.
    pub manifest_path: PathBuf,
    /// The manifest's directory: the workspace root every task path is relative to.
    pub root: PathBuf,
    /// `[pipeline] name`, or the manifest's file stem.
    pub name: String,
    /// `[pipeline] description`.
    pub description: Option<String>,
    /// Global running-task limit (`-j` overrides).
    pub concurrency: usize,
    /// Stop starting tasks after the first failure (`--keep-going` overrides).
    pub fail_fast: bool,
    /// `[env]`, given to every command and service on top of the caller's environment.
    pub env: BTreeMap<String, Template>,
    /// `[pools]`: name to slot count.
    pub pools: BTreeMap<String, u32>,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[execution]` (SPEC §11), with `TASKRUN_REMOTE_EXECUTOR` applied.
    pub execution: ExecutionConfig,
    /// Tasks in manifest order; the index is the task's id everywhere else.
    #[serde(deserialize_with = "deserialize_tasks")]
    pub tasks: TaskMap,
    /// Each task's `deps` as indices into `tasks`, when the loader resolved them (it does,
    /// to check the graph); [`crate::plan::Plan::build`] resolves them itself otherwise.
    /// Not part of the memo.
    #[serde(skip)]
    pub dep_indices: Option<Vec<Vec<usize>>>,
    /// The fan-out tasks as declared (SPEC §9), each with the range of its instances in
    /// `tasks`; for target selection and for showing a fan-out once.
    pub fanouts: Vec<FanOut>,
    /// The item files and globs read while loading: a remembered manifest is stale when one
    /// of them changed.
    pub item_sources: Vec<ItemSource>,
}

/// A declared fan-out task: `instances` indexes its instances in [`Pipeline::tasks`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FanOut {
    /// The name as declared (`fetch`).
    pub name: String,
    /// Its `description`, placeholders kept.
    pub description: Option<String>,
    /// The action as written, placeholders kept (`${item.line} -> raw/${item.name}`).
    pub template: String,
    /// Where its instances are in [`Pipeline::tasks`] (contiguous, in item order).
    pub instances: std::ops::Range<usize>,
}

/// A file or glob whose items a fan-out task was expanded from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemSource {
    /// `lines`, `csv` or `glob`.
    pub kind: crate::manifest::fanout::sources::SourceKind,
    /// The file, or the glob, relative to the manifest's directory.
    pub path: String,
    /// The content (or match list) digest when the manifest was remembered.
    pub fingerprint: Option<crate::cache::Digest>,
}

/// Where an instance of a fan-out task came from: its task and its values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The fan-out task's declared name (`fetch`).
    pub task: String,
    /// Matrix values by axis, then item fields by name (also its `item` in plans and reports).
    pub item: ItemValues,
}

/// Task name to task, in manifest order. Every dependency is looked up by name once or
/// twice per load: FxHash hashes a short name several times faster than SipHash (names come
/// from the user's own manifest, so hash flooding is no concern).
pub type TaskMap = IndexMap<String, Task, rustc_hash::FxBuildHasher>;

/// Reads a [`TaskMap`] sized for all its tasks at once. serde sizes a map for at most 1 MiB
/// of entries up front (a guard against lying length prefixes) and grows it by doubling:
/// for the memo of a 10,000-task manifest that copied and faulted in ~7 MiB more.
fn deserialize_tasks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TaskMap, D::Error> {
    struct Tasks;
    impl<'de> serde::de::Visitor<'de> for Tasks {
        type Value = TaskMap;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of tasks")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TaskMap, A::Error> {
            // Bounded all the same: a million tasks is far beyond any manifest.
            let n = map.size_hint().unwrap_or(0).min(1 << 20);
            let mut tasks = TaskMap::with_capacity_and_hasher(n, Default::default());
            while let Some((name, task)) = map.next_entry::<String, Task>()? {
                tasks.insert(name, task);
            }
            Ok(tasks)
        }
    }
    d.deserialize_map(Tasks)
}

/// Where results are stored and shared.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheConfig {
    /// Absolute path of the local store (already resolved against the root / env).
    pub dir: PathBuf,
    /// The shared remote, if any: the Bazel HTTP protocol or a REAPI gRPC cache.
    pub remote: Option<RemoteCacheUrl>,
    /// Whether this machine uploads to the remote.
    pub remote_write: bool,
    /// The REAPI `instance_name` of a gRPC remote (`[cache] instance`); often empty.
    #[serde(default)]
    pub instance: String,
    /// gRPC metadata sent with every call to a gRPC remote (lowercase keys); values may
    /// hold secrets, read when the remote is first contacted.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
}

impl CacheConfig {
    /// The Bazel-HTTP-protocol remote, when that is the kind configured.
    pub fn http_remote(&self) -> Option<&url::Url> {
        match &self.remote {
            Some(RemoteCacheUrl::Http(u)) => Some(u),
            _ => None,
        }
    }
}

/// `[cache] remote`: which protocol the shared cache speaks follows from the scheme.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteCacheUrl {
    /// `http://` or `https://`: the Bazel HTTP cache protocol (`ac/<key>`, `cas/<sha256>`).
    Http(url::Url),
    /// `grpc://` or `grpcs://`: the REAPI ActionCache and CAS (SPEC §11).
    Grpc(GrpcUrl),
}

impl RemoteCacheUrl {
    /// The URL as configured (an HTTP one may carry a user and password: not for messages).
    pub fn as_str(&self) -> &str {
        match self {
            RemoteCacheUrl::Http(u) => u.as_str(),
            RemoteCacheUrl::Grpc(g) => g.as_str(),
        }
    }
}

/// Settings for all downloads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HttpConfig {
    /// Connections per host at once.
    pub max_per_host: usize,
    /// TCP + TLS connect limit.
    pub connect_timeout: Duration,
    /// A response that sends no byte for this long (headers or body) fails the attempt.
    pub read_timeout: Duration,
    /// Sent unless a task sets its own `User-Agent`.
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_per_host: 8,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            user_agent: format!("taskrun/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One node of the pipeline.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Task {
    /// The task's name (its key under `[tasks]`).
    pub name: String,
    /// Shown by `list` and `plan`.
    pub description: Option<String>,
    /// Names of the tasks that must succeed first.
    pub deps: Vec<String>,
    /// What the task does.
    pub action: Action,
    /// Working directory of commands, relative to the root.
    pub cwd: Option<RelPath>,
    /// Task env over `[env]`.
    pub env: BTreeMap<String, Template>,
    /// Globs whose files enter the cache key.
    pub inputs: Vec<InputPattern>,
    /// Files or directories the task produces.
    pub outputs: Vec<RelPath>,
    /// Per-attempt limit (not for services).
    pub timeout: Option<Duration>,
    /// Attempts and waits.
    pub retry: RetryPolicy,
    /// Pool name to slots.
    pub uses: BTreeMap<String, u32>,
    /// Cache policy as written (`auto` resolved by [`Task::is_cacheable`]).
    pub cache: CachePolicy,
    /// Keep a failed command's outputs instead of deleting them.
    pub keep_failed_outputs: bool,
    /// A cached result older than this is a miss.
    pub cache_ttl: Option<Duration>,
    /// The fan-out task and values this task is an instance of; None for a declared task.
    pub origin: Option<Box<Origin>>,
    /// False for `remote = false`: never sent to a remote executor (SPEC §11).
    pub remote: bool,
    /// Platform properties of its remote action over `[execution] platform` (`[defaults]`
    /// merged under the task's own); see [`ExecutionConfig::platform_for`].
    pub platform: BTreeMap<String, String>,
    /// Set on the stand-in `NAME[*]` of a fan-out task whose items another task produces:
    /// its instances are known only once that task has run (SPEC §9).
    pub expands: Option<Box<Expansion>>,
    /// How many of the last `deps` are waited for but kept out of the cache key: the tasks
    /// that produce a fan-out's items. The item stands for them in the key (its values are in
    /// the fields; a glob's file is an input), so a new file reruns one instance, not all.
    pub order_only: usize,
}

/// A fan-out task expanded after the tasks that produce its items: what its stand-in knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expansion {
    /// The fan-out task's declared name (`clean`).
    pub task: String,
    /// The producing tasks, as declared (`unpack`), for the plan's `(expanded after unpack)`.
    pub after: Vec<String>,
    /// Where its items will come from.
    pub source: ItemSource,
    /// The kind its instances will have.
    pub kind: TaskKind,
    /// Where its instances will write (literal directories of its outputs and `dest`), so a
    /// fan-out over those files is expanded after it in turn.
    pub writes: Vec<String>,
}

impl Task {
    /// Whether results of this task are looked up and stored (SPEC §5).
    pub fn is_cacheable(&self) -> bool {
        match (&self.action, self.cache) {
            (Action::Service(_), _) => false,
            (_, CachePolicy::Off) => false,
            (_, CachePolicy::On) => true,
            (Action::Download(_), CachePolicy::Auto) => true,
            (Action::Command(_), CachePolicy::Auto) => !self.outputs.is_empty(),
            (Action::Group, CachePolicy::Auto) => false,
        }
    }

    /// The declared task and the item: its fan-out task and values for an instance, its own
    /// name and None otherwise (the `task` and `item` of plans and reports).
    pub fn instance_of(&self) -> (String, Option<ItemValues>) {
        match (&self.origin, &self.expands) {
            (Some(o), _) => (o.task.clone(), Some(o.item.clone())),
            (None, Some(e)) => (e.task.clone(), None),
            (None, None) => (self.name.clone(), None),
        }
    }

    /// The deps that are kept out of the cache key (see [`Task::order_only`]).
    pub fn order_only_deps(&self) -> &[String] {
        &self.deps[self.deps.len().saturating_sub(self.order_only)..]
    }

    /// The task's kind word, as shown in plans and reports.
    pub fn kind(&self) -> TaskKind {
        self.action.kind()
    }
}

/// A path relative to the workspace root, checked not to escape it (lexically: the symlinks
/// on disk are [`crate::workspace`]'s business).
///
/// Built only by validation: [`crate::manifest::paths::normalize`] for what a manifest names,
/// [`RelPath::parse`] for what a cache record or another outside source names.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String")]
pub struct RelPath(String);

impl RelPath {
    /// The path as written (normalised: no `.` parts, `/` separators).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A path from outside data, taken only as it is already normal: relative, no `..`,
    /// `.` or empty components, not empty. A backslash is an ordinary character of a name
    /// here (`unit\x2dfoo.mount`), as it is to the kernel and to the manifest's paths.
    pub fn parse(p: &str) -> Option<Self> {
        let ok = !p.is_empty()
            && !p.starts_with('/')
            && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        ok.then(|| Self(p.to_string()))
    }

    /// The result of [`crate::manifest::paths::normalize`], its only caller.
    pub(crate) fn normalized(parts: &[&str]) -> Self {
        Self(parts.join("/"))
    }

    /// True when `path` is this path or lies inside it.
    pub fn contains(&self, path: &str) -> bool {
        let me = self.as_str();
        path == me
            || (path.len() > me.len() && path.starts_with(me) && path.as_bytes()[me.len()] == b'/')
    }
}

impl TryFrom<String> for RelPath {
    type Error = String;

    /// What `normalize` would produce (the root, as a `cwd` may be, included).
    fn try_from(s: String) -> Result<Self, String> {
        match crate::manifest::paths::normalize(&s, true) {
            Ok(p) if p.0 == s => Ok(p),
            _ => Err(format!("`{s}` is not a normal workspace-relative path")),
        }
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `inputs` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputPattern {
    /// The glob, relative to the root.
    pub glob: String,
    /// `?`-prefixed: matching nothing is fine.
    pub optional: bool,
}

/// `cache = "auto" | "on" | "off"`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// On for downloads and for commands with outputs.
    #[default]
    Auto,
    /// Always cached.
    On,
    /// Always runs.
    Off,
}

/// How retry waits are randomised.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exactly the computed wait.
    None,
    /// Uniform in 0..wait.
    #[default]
    Full,
    /// wait/2 + uniform in 0..wait/2.
    Equal,
}

/// Attempts and waits between them (SPEC §3).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first (>= 1).
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_delay: Duration,
    /// Growth of each wait.
    pub factor: f64,
    /// Cap on one wait.
    pub max_delay: Duration,
    /// Randomisation.
    pub jitter: Jitter,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Option<Duration>,
    /// Commands: only these exit codes are retried (None: any non-zero).
    pub exit_codes: Option<Vec<i32>>,
}

impl RetryPolicy {
    /// The defaults for a task kind: 1 attempt for commands, 3 for downloads.
    pub fn default_for(kind: TaskKind) -> Self {
        Self {
            max_attempts: if kind == TaskKind::Download { 3 } else { 1 },
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: Jitter::Full,
            max_elapsed: None,
            exit_codes: None,
        }
    }

    /// The un-jittered wait before attempt `next_attempt` (2 = the first retry).
    pub fn base_delay(&self, next_attempt: u32) -> Duration {
        let n = next_attempt.saturating_sub(1).max(1);
        let secs = self.initial_delay.as_secs_f64() * self.factor.powi(n as i32 - 1);
        let cap = self.max_delay.as_secs_f64();
        if !secs.is_finite() || secs >= cap {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::testutil::{command, pipeline, with_io};

    /// Tasks come back from postcard (the memo) in order, each under its name.
    #[test]
    fn tasks_round_trip_in_order() {
        let names = ["z", "a", "m", "b"];
        let tasks = names
            .iter()
            .map(|n| {
                with_io(
                    command(n, "true"),
                    &[],
                    &[],
                    &["z"][..usize::from(*n != "z")],
                )
            })
            .collect();
        let p = pipeline(std::path::Path::new("/w"), tasks);
        let bytes = postcard::to_stdvec(&p).unwrap();
        let back: super::Pipeline = postcard::from_bytes(&bytes).unwrap();
        let got: Vec<(&str, &str, usize)> = back
            .tasks
            .iter()
            .map(|(k, t)| (k.as_str(), t.name.as_str(), t.deps.len()))
            .collect();
        assert_eq!(
            got,
            [("z", "z", 0), ("a", "a", 1), ("m", "m", 1), ("b", "b", 1)]
        );
        assert_eq!(back.tasks.get_index_of("m"), Some(2));
    }
}
