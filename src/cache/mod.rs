//! The content-hash cache: keys, the local content-addressed store, the remote.
//!
//! The scheduler talks to the cache only through [`TaskCache`], so it never sees the store's
//! layout and the cache never sees the run loop. [`NoCache`] is what `--no-cache` uses.

pub mod inputs;
pub mod journal;

use crate::model::{Action, Task};
use crate::plan::Plan;
pub use record::HttpValidators;

pub mod backend;
pub mod digest;
pub mod explain;
pub mod gc;
pub mod grpc;
pub mod grpc_entry;
pub mod key;
pub mod local;
pub mod lock;
pub mod outputs;
pub mod owned;
pub mod predict;
pub mod reason;
pub mod record;
pub mod remote;
mod remote_health;
mod restore;
pub mod sealed;
pub mod stat;
pub mod store;
#[cfg(test)]
pub(crate) mod testutil;
mod uploads;
mod used;

pub use backend::RemoteBackend;
pub use grpc::{GrpcCache, GrpcOptions};
pub use local::{CacheOptions, LocalCache};
pub use outputs::{WrittenFile, WrittenOutput};
pub use predict::{
    CacheView, KeyPrediction, PredictOptions, PredictedStatus, plan_predictions, predict,
    predict_plan,
};
pub use reason::Reason;
pub use remote::{RemoteCache, RemoteOptions};

/// A sha256 digest.
pub type Digest = [u8; 32];

/// The store's own directories (`cas/`, `ac/`, `index/`) are taskrun's: one that is a
/// symlink would have it write, and `clean`/`gc` delete, wherever it leads (SPEC §13).
pub(crate) fn store_links(dir: &std::path::Path) -> Option<String> {
    ["cas", "ac", "index"].into_iter().find_map(|name| {
        let path = dir.join(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        meta.file_type().is_symlink().then(|| {
            let to = std::fs::read_link(&path).unwrap_or_default();
            format!(
                "its `{name}` is a symlink (to {}): taskrun writes and deletes only in a store of its own; remove the link",
                to.display()
            )
        })
    })
}

/// Why `dir` cannot be a cache dir because of what is already on its path: it is a file, or
/// a file stands where one of its parents should be. Said as such, not as the OS's "File
/// exists" or "Not a directory" of making it.
pub fn cache_dir_blocked(dir: &std::path::Path) -> Option<String> {
    if let Some(why) = store_links(dir) {
        return Some(why);
    }
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) if at == dir => return Some("it is a file, not a directory".into()),
            Ok(_) => return Some(format!("{} is a file, not a directory", at.display())),
            Err(_) => at = at.parent().filter(|p| !p.as_os_str().is_empty())?,
        }
    }
}

/// Where a hit came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CacheSource {
    /// This machine's store.
    Local,
    /// The shared remote (copied into the local store).
    Remote,
}

impl CacheSource {
    /// The word of the report's `cache_source`, also used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSource::Local => "local",
            CacheSource::Remote => "remote",
        }
    }
}

/// What the cache says about a task that is about to run.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Run the action. `key` is the task's cache key when it has one (shown in reports).
    Run {
        /// Hex cache key, when the task is cacheable.
        key: Option<String>,
        /// Why it must run.
        reason: Reason,
    },
    /// The outputs are in place (restored where needed); do not run.
    Hit {
        /// Hex cache key.
        key: String,
        /// Where the entry came from.
        source: CacheSource,
        /// The digest dependents put in their keys.
        digest: Digest,
        /// Recorded combined output, replayed with `-v`.
        output: Option<Vec<u8>>,
    },
}

/// A cache problem that fails the task (e.g. an input glob that matches nothing), by kind;
/// the scheduler shows it as `cache: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// A required input pattern matched no file.
    #[error("input pattern `{0}` matches no file (prefix it with `?` if that is fine)")]
    NoInputMatch(String),
    /// A required input pattern names a directory: inputs are files.
    #[error(
        "input pattern `{0}` names a directory, and inputs are files: write `{0}/**` for every file in it"
    )]
    InputIsDir(String),
    /// An input pattern that is not a valid glob.
    #[error("bad input pattern `{glob}`: {reason}")]
    BadPattern {
        /// The pattern as written.
        glob: String,
        /// What the glob parser said.
        reason: String,
    },
    /// Walking the files an input pattern may match failed.
    #[error("reading inputs `{glob}`: {reason}")]
    ReadingInputs {
        /// The pattern as written.
        glob: String,
        /// What the walk met.
        reason: String,
    },
    /// An input file could not be hashed.
    #[error("input {path}: {reason}")]
    Input {
        /// The file, relative to the workspace.
        path: String,
        /// Why.
        reason: String,
    },
    /// The cache dir could not be created or locked.
    #[error("cache dir {dir}: {reason}")]
    CacheDir {
        /// The cache dir.
        dir: String,
        /// Why.
        reason: String,
    },
    /// The task's outputs could not be snapshotted or stored.
    #[error("{0}")]
    Outputs(String),
    /// Run-wide state (the journal, the stat records) could not be saved.
    #[error("saving {what}: {reason}")]
    Save {
        /// What was being saved.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The scheduler and the cache disagree: a bug, reported rather than a panic.
    #[error("internal: {0}")]
    Internal(String),
}

/// The scheduler's view of the cache. Methods do blocking file I/O: call them from
/// `spawn_blocking`.
pub trait TaskCache: Send + Sync {
    /// Task `task` is about to run: its deps finished with `dep_digests` (in `plan.deps[task]`
    /// order) and its input globs expanded to `inputs` (sorted, relative to the root).
    fn lookup(
        &self,
        plan: &Plan,
        task: usize,
        inputs: &[inputs::InputFile],
        dep_digests: &[Digest],
    ) -> Result<Lookup, CacheError>;

    /// Task `task` succeeded: store its outputs (when it has a key), with what else the
    /// attempt left (`produced`), in one record write; return the digest its dependents use.
    ///
    /// Contract: call this only after a success. A failed, timed-out or interrupted task is
    /// never recorded, so the cache never holds a result that did not complete. `lookup` must
    /// have been called for the task first (except for groups and services).
    fn record_success(
        &self,
        plan: &Plan,
        task: usize,
        key: Option<&str>,
        dep_digests: &[Digest],
        produced: Produced<'_>,
    ) -> Result<Digest, CacheError>;

    /// A next phase of the same run begins with `plan` (SPEC §9: a fan-out task expanded
    /// after the tasks that produce its items): task indices change, and the new tasks'
    /// results are kept like the others'.
    fn next_phase(&self, _plan: &Plan) {}

    /// The run is over (successful or not): finish uploads (an `interrupted` run only those
    /// already started) and persist run-wide state such as the stat records.
    fn finish(&self, _interrupted: bool) -> Result<(), CacheError> {
        Ok(())
    }

    /// False when lookups never hit (`--no-cache`): a task without inputs then skips the
    /// lookup entirely instead of a round trip to a lookup thread.
    fn can_hit(&self) -> bool {
        true
    }

    /// Threads asking the cache at once. Local lookups are stats and small reads, for which a
    /// few threads keep up with any run; a remote's lookups wait for the network.
    fn lookup_threads(&self) -> usize {
        4
    }

    /// False when looking `task` up is computation only (its key, from its definition and
    /// its deps' digests), cheap enough for the async thread that runs it: the scheduler
    /// then skips the hand-off to a lookup thread and back.
    fn lookup_needs_io(&self, _task: &Task) -> bool {
        true
    }

    /// True when `record_success` for `task` is pure computation, cheap enough for the async
    /// thread: the scheduler then calls it inline instead of handing it to a blocking thread
    /// (two thread wake-ups per task, a large share of taskrun's own time for thousands of
    /// short commands). By default that is a command that declares no outputs and that the
    /// cache gave no key: nothing to snapshot or store, only its digest to compute.
    fn records_without_io(&self, task: &Task, key: Option<&str>) -> bool {
        key.is_none() && task.outputs.is_empty() && matches!(task.action, Action::Command(_))
    }

    /// The ETag / Last-Modified recorded with a download's entry, for `revalidate = true`.
    fn http_validators(&self, _key: &str) -> Option<HttpValidators> {
        None
    }
}

/// What a successful attempt leaves for the cache besides its output files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Produced<'a> {
    /// The combined stdout/stderr, as logged.
    pub output: &'a [u8],
    /// An output its action hashed while writing it (a download): not read back.
    pub written: Option<WrittenOutput<'a>>,
    /// A download's ETag / Last-Modified, kept in its record for `revalidate = true`.
    pub validators: Option<&'a HttpValidators>,
    /// When the result was made, if not just now: a cluster's cached result keeps its age,
    /// so `cache_ttl` counts from its making, not from its copy here.
    pub made: Option<std::time::SystemTime>,
}

/// No cache at all (`--no-cache`): everything runs, nothing is stored.
#[derive(Debug, Default)]
pub struct NoCache;

impl TaskCache for NoCache {
    fn can_hit(&self) -> bool {
        false
    }

    /// Nothing is ever stored.
    fn records_without_io(&self, _task: &Task, _key: Option<&str>) -> bool {
        true
    }

    fn lookup_needs_io(&self, task: &Task) -> bool {
        !task.inputs.is_empty()
    }

    fn lookup(
        &self,
        _plan: &Plan,
        _task: usize,
        _inputs: &[inputs::InputFile],
        _dep_digests: &[Digest],
    ) -> Result<Lookup, CacheError> {
        Ok(Lookup::Run {
            key: None,
            reason: Reason::NoCache,
        })
    }

    /// Nothing is stored, but a declared output the task did not make fails it as with
    /// the cache on: `--no-cache` must not decide whether a task succeeds.
    fn record_success(
        &self,
        plan: &Plan,
        task: usize,
        _key: Option<&str>,
        _dep_digests: &[Digest],
        _produced: Produced<'_>,
    ) -> Result<Digest, CacheError> {
        let t = plan.task(task);
        // A download's success is its `dest` written and renamed into place: nothing to look at.
        if !matches!(t.action, crate::model::Action::Command(_)) {
            return Ok([0; 32]);
        }
        let ws = crate::workspace::Workspace::new(&plan.pipeline.root);
        let declared = key::declared_outputs(t);
        let missing: Vec<&crate::model::RelPath> = declared
            .iter()
            .filter(|out| matches!(ws.look(out), Ok(crate::workspace::Found::Missing)))
            .collect();
        if !missing.is_empty() {
            return Err(CacheError::Outputs(outputs::not_created(&missing)));
        }
        Ok([0; 32])
    }
}
