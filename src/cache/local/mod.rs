//! [`LocalCache`]: the local store behind the scheduler's [`TaskCache`] seam.
//!
//! Contract with the scheduler:
//! - open one `LocalCache` per run with [`LocalCache::open`] (it takes the cache dir lock,
//!   which it holds until dropped);
//! - for every selected task, once its deps are done and its inputs expanded, call
//!   [`TaskCache::lookup`]; on `Run`, run the action; then **only if it succeeded** call
//!   [`TaskCache::record_success`] (a failed, timed-out or interrupted task is never
//!   recorded). Groups and services may skip `lookup`;
//! - at the end of the run call [`TaskCache::finish`] (saves the stat records; dropping the
//!   cache does the same, best effort).
//!
//! With a remote configured (`[cache] remote`), a local miss asks the remote through
//! [`RemoteBackend`] (the Bazel HTTP protocol, [`super::remote`], or the REAPI cache,
//! [`super::grpc`]); a remote hit is copied into the local store and reported as
//! [`CacheSource::Remote`]. With `remote_write`, each recorded entry is uploaded too, in the
//! background (`cache/uploads.rs`); [`TaskCache::finish`] waits for the uploads.

use crate::cache::HttpValidators;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::backend::RemoteBackend;
use super::digest::from_hex;
use super::explain::miss_reason;
use super::inputs::InputFile;
use super::journal::{Journal, Stamp};
use super::key::{self, TaskKey, declared_outputs};
use super::lock::CacheLock;
use super::outputs::{self, RestoreError};
use super::reason::Reason;
use super::record::ActionRecord;
use super::stat::StatCache;
use super::store::Store;
use super::uploads::Uploads;
use super::{CacheError, CacheSource, Digest, Lookup, Produced, TaskCache};
use crate::model::{Action, Pipeline, Task};
use crate::plan::Plan;
use crate::workspace::Workspace;
use pinned::pinned_blob;
pub(crate) use pinned::pinned_record;

/// Lookup threads when a remote is configured.
const REMOTE_LOOKUP_THREADS: usize = 16;

/// A hit rewrites its record's `last_used` only when the stored value is older than this, so
/// a no-op rerun does not rewrite every record (like `relatime`); LRU order for gc stays
/// right to within this granularity.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(3600);

/// How a run uses the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// `--force`: every lookup says run (reason "--force"); results are still stored.
    pub force: bool,
    /// Never write: no lock, no records, no stat records (for inspection).
    pub read_only: bool,
    /// Like `force`, for downloads only: `taskrun lock --update` fetches them anew.
    pub force_downloads: bool,
}

/// The local content-addressed cache of one run.
#[derive(Debug)]
pub struct LocalCache {
    /// The workspace outputs are restored into.
    ws: Workspace,
    store: Store,
    stats: StatCache,
    /// Each task's latest entry, so a no-op rerun reads one file, not a record per task.
    journal: Journal,
    options: CacheOptions,
    /// Keys computed by `lookup`, used by `record_success` of the same task.
    pending: Mutex<HashMap<usize, TaskKey>>,
    /// The manifest's task names (the journal keeps only these).
    tasks: Mutex<std::collections::HashSet<String>>,
    /// The shared tier behind the local store, when configured (never when read-only).
    remote: Option<Arc<RemoteBackend>>,
    /// Entries on their way to the remote, started with the first one.
    uploads: Mutex<Option<Uploads>>,
    _lock: Option<CacheLock>,
}

/// Why a task that is never looked up in the cache runs.
/// (The plan's wording, so `plan` says the same with or without a store.)
pub fn not_cacheable_reason(task: &Task) -> &'static str {
    crate::plan::predict::off_reason(task)
}

/// The miss reason when the entry is older than `cache_ttl`, if it is.
pub fn expired_reason(
    record: &ActionRecord,
    ttl: Option<Duration>,
    now: SystemTime,
) -> Option<Reason> {
    let ttl = ttl?;
    let created = record.created_time().unwrap_or(SystemTime::UNIX_EPOCH);
    let age = now.duration_since(created).unwrap_or_default();
    (age > ttl).then_some(Reason::Expired(ttl))
}

impl LocalCache {
    /// Opens the store at `pipeline.cache.dir`; unless read-only, takes the cache dir lock
    /// (printing "waiting for another taskrun using `<dir>`..." once when it must wait).
    pub fn open(pipeline: &Pipeline, options: CacheOptions) -> Result<Self, CacheError> {
        Self::open_with(pipeline, options, None)
    }

    /// [`Self::open`], using what `prefetch` read when it is for this cache dir and manifest
    /// and its files did not change before the lock was taken.
    pub fn open_with(
        pipeline: &Pipeline,
        options: CacheOptions,
        prefetch: Option<Prefetch>,
    ) -> Result<Self, CacheError> {
        let dir = &pipeline.cache.dir;
        let linked = (!options.read_only).then(|| crate::cache::store_links(dir));
        if let Some(reason) = linked.flatten() {
            return Err(CacheError::CacheDir {
                dir: dir.display().to_string(),
                reason,
            });
        }
        let lock = if options.read_only {
            None
        } else {
            Some(CacheLock::acquire(dir).map_err(|e| CacheError::CacheDir {
                dir: dir.display().to_string(),
                reason: crate::cache::cache_dir_blocked(dir).unwrap_or_else(|| e.to_string()),
            })?)
        };
        let (stats, journal) =
            state::read(dir, &pipeline.manifest_path, options.read_only, prefetch);
        Ok(Self {
            ws: Workspace::new(&pipeline.root),
            store: Store::new(dir, options.read_only),
            stats,
            journal,
            options,
            pending: Mutex::new(HashMap::new()),
            tasks: Mutex::new(pipeline.tasks.keys().cloned().collect()),
            remote: if options.read_only {
                None
            } else {
                RemoteBackend::from_config(&pipeline.cache).map(Arc::new)
            },
            uploads: Mutex::new(None),
            _lock: lock,
        })
    }

    /// Replaces the remote `open` configured from the pipeline (tests use it for short
    /// timeouts; `None` makes the run local-only).
    pub fn with_remote(mut self, remote: Option<RemoteBackend>) -> Self {
        self.remote = if self.options.read_only {
            None
        } else {
            remote.map(Arc::new)
        };
        self
    }

    /// The remote tier, if any.
    pub fn remote(&self) -> Option<&RemoteBackend> {
        self.remote.as_deref()
    }

    /// Sends a recorded entry to the remote in the background (see [`Uploads`]).
    fn upload(&self, record: ActionRecord) {
        let Some(remote) = self.remote.as_ref().filter(|r| r.writes()) else {
            return;
        };
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        let queue =
            uploads.get_or_insert_with(|| Uploads::start(remote.clone(), self.store.clone()));
        if let Err(record) = queue.push(Box::new(record)) {
            remote.upload(&self.store, &record);
        }
    }

    /// Waits for the uploads (see [`Uploads::finish`]).
    fn finish_uploads(&self, abandon: bool) {
        let taken = self
            .uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut uploads) = taken {
            uploads.finish(abandon);
        }
    }

    /// The store (for `plan`/`explain` sharing one view, and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The stat records.
    pub fn stats(&self) -> &StatCache {
        &self.stats
    }

    /// The last-results journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        self.ws.root()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<usize, TaskKey>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_for(
        &self,
        plan: &Plan,
        task: usize,
        inputs: &[InputFile],
        dep_digests: &[Digest],
    ) -> Result<TaskKey, CacheError> {
        let deps = &plan.deps[task];
        if deps.len() != dep_digests.len() {
            return Err(CacheError::Internal(format!(
                "{} dependency digests for {} dependencies",
                dep_digests.len(),
                deps.len()
            )));
        }
        let mut ins = Vec::with_capacity(inputs.len());
        for input in inputs {
            let rel = input.path.strip_prefix(self.root()).unwrap_or(&input.path);
            let abs = self.root().join(rel);
            let (d, _) = match &input.meta {
                Some(meta) => self.stats.digest_with(&abs, meta),
                None => self.stats.digest(&abs),
            }
            .map_err(|e| CacheError::Input {
                path: rel.display().to_string(),
                reason: e.to_string(),
            })?;
            ins.push((rel.to_string_lossy().into_owned(), d));
        }
        let names: Vec<(String, Digest)> = deps
            .iter()
            .zip(dep_digests)
            .map(|(&d, dg)| (plan.task(d).name.clone(), *dg))
            .collect();
        Ok(key::task_key(&plan.pipeline, plan.task(task), &ins, &names))
    }

    fn try_hit(
        &self,
        task: &Task,
        key: &TaskKey,
        mut rec: ActionRecord,
        origin: Origin,
        source: CacheSource,
    ) -> Result<Lookup, CacheError> {
        let output = match &rec.log {
            Some(log) => match from_hex(&log.sha256).map(|d| self.store.read_blob(&d)) {
                Some(Ok(Some(bytes))) => Some(bytes),
                _ => {
                    return Ok(Lookup::Run {
                        key: Some(key.hex()),
                        reason: Reason::CorruptLog,
                    });
                }
            },
            None => None,
        };
        let declared = declared_outputs(task);
        match outputs::restore(&self.ws, &rec, &declared, &self.stats, &self.store) {
            Ok(restored) => {
                for (path, drift) in restored {
                    tracing::debug!(task = %task.name, "output {path} {}: restored", drift.as_str());
                }
                if let Action::Download(d) = &task.action {
                    crate::actions::download::discard_resume(self.ws.root(), d.dest.as_str());
                }
            }
            Err(e @ RestoreError::Undeclared(_)) => {
                tracing::warn!(task = %task.name, "{e}; running the task");
                return Ok(Lookup::Run {
                    key: Some(key.hex()),
                    reason: Reason::Undeclared(e.to_string()),
                });
            }
            Err(e) => {
                tracing::warn!(task = %task.name, "cache entry unusable: {e}");
                return Ok(Lookup::Run {
                    key: Some(key.hex()),
                    reason: Reason::Unusable(e.to_string()),
                });
            }
        }
        let now = SystemTime::now();
        // A no-op rerun should cost stats, not writes: the record's `last_used` is refreshed
        // at most once per granularity period (the caller never sends a stale journal hit).
        let stamp = match origin {
            Origin::Journal => None,
            Origin::Stored(stamp) if !is_stale(&rec, now) => Some(stamp),
            Origin::Stored(_) | Origin::Fresh => {
                rec.last_used = humantime::format_rfc3339_millis(now).to_string();
                match self.store.write_record(&mut rec) {
                    Ok(stamp) => stamp,
                    Err(e) => {
                        tracing::warn!("cannot update cache record {}: {e}", rec.key);
                        None
                    }
                }
            }
        };
        match stamp {
            Some(stamp) => self.journal.remember(&task.name, &rec, stamp),
            None => self.journal.mark_used(&rec.key),
        }
        Ok(Lookup::Hit {
            key: key.hex(),
            source,
            digest: rec.digest_bytes(),
            output,
        })
    }
}

impl LocalCache {
    /// The lookup proper, once the key is known.
    fn look_up_key(&self, t: &Task, key: &TaskKey) -> Result<Lookup, CacheError> {
        if !t.is_cacheable() {
            return Ok(Lookup::Run {
                key: None,
                reason: Reason::NotCacheable(not_cacheable_reason(t)),
            });
        }
        let hex = key.hex();
        let forced_download =
            self.options.force_downloads && matches!(t.action, Action::Download(_));
        if self.options.force || forced_download {
            return Ok(Lookup::Run {
                key: Some(hex),
                reason: Reason::Force,
            });
        }
        let now = SystemTime::now();
        let journaled = self
            .journal
            .record(&t.name, &hex, || self.store.record_stat(&hex))
            .filter(|rec| !is_stale(rec, now));
        let (rec, origin) = match journaled {
            Some(rec) => (rec, Origin::Journal),
            None => match self.store.read_record_stamped(&hex) {
                Some((rec, stamp)) => (rec, Origin::Stored(stamp)),
                None => {
                    if let Some(rec) = pinned_record(t, key, &self.store) {
                        return self.try_hit(t, key, rec, Origin::Fresh, CacheSource::Local);
                    }
                    if let Some(found) = self.remote_lookup(t, key)? {
                        return Ok(found);
                    }
                    let last = self.journal.last_key(&t.name);
                    return Ok(Lookup::Run {
                        key: Some(hex),
                        reason: miss_reason(&self.store, last, &key.parts),
                    });
                }
            },
        };
        if let Some(reason) = expired_reason(&rec, t.cache_ttl, now) {
            return Ok(Lookup::Run {
                key: Some(hex),
                reason,
            });
        }
        self.try_hit(t, key, rec, origin, CacheSource::Local)
    }

    /// A local miss asks the remote: a pinned download by its blob (`cas/<pin>`, so the
    /// origin is never contacted) where the remote can name a blob by its hash alone,
    /// anything else by its record (`ac/<key>`) and then the blobs the local store lacks. Everything is verified and copied into the local store
    /// before outputs are restored from it. `None`: no remote, remote down, or not there.
    fn remote_lookup(&self, t: &Task, key: &TaskKey) -> Result<Option<Lookup>, CacheError> {
        let Some(remote) = self.remote.as_ref().filter(|r| r.is_enabled()) else {
            return Ok(None);
        };
        let rec = match (pinned_blob(t), &t.action) {
            (Some(pin), Action::Download(d)) if remote.fetches_by_hash() => {
                if !remote.fetch_blob_by_hash(&self.store, &pin, d.max_bytes) {
                    return Ok(None);
                }
                pinned_record(t, key, &self.store)
            }
            _ => remote.get_record(&self.store, &key.hex()),
        };
        let Some(rec) = rec else {
            return Ok(None);
        };
        // Checked before any of its blobs is fetched (`try_hit` checks every record again).
        if let Err(why) = rec.check_declared(&declared_outputs(t)) {
            let reason = Reason::RemoteRejected(why);
            tracing::warn!(task = %t.name, "{reason}; running the task");
            return Ok(Some(Lookup::Run {
                key: Some(key.hex()),
                reason,
            }));
        }
        if let Some(reason) = expired_reason(&rec, t.cache_ttl, SystemTime::now()) {
            return Ok(Some(Lookup::Run {
                key: Some(key.hex()),
                reason,
            }));
        }
        let blobs = rec
            .outputs
            .iter()
            .map(|o| (o.sha256.as_str(), o.size))
            .chain(rec.log.iter().map(|l| (l.sha256.as_str(), l.size)));
        let mut missing: Vec<(Digest, u64)> = Vec::new();
        for (hex, size) in blobs {
            let Some(d) = from_hex(hex) else {
                return Ok(None);
            };
            if !self.store.has_blob(&d) && !missing.iter().any(|(m, _)| *m == d) {
                missing.push((d, size));
            }
        }
        if !missing.is_empty() && !remote.fetch_blobs(&self.store, &missing) {
            return Ok(None);
        }
        self.try_hit(t, key, rec, Origin::Fresh, CacheSource::Remote)
            .map(Some)
    }
}

impl TaskCache for LocalCache {
    /// A task that is never cached and has no inputs only gets its key computed (for its
    /// dependents and the report); nothing is read, locally or remotely.
    /// A remote lookup is two round trips (record, then blob) spent waiting: with a remote,
    /// more of them at once (measured in BENCHMARKS.md, "Remote cache").
    fn lookup_threads(&self) -> usize {
        if self
            .remote
            .as_deref()
            .is_some_and(RemoteBackend::is_enabled)
        {
            REMOTE_LOOKUP_THREADS
        } else {
            4
        }
    }

    fn lookup_needs_io(&self, task: &Task) -> bool {
        task.is_cacheable() || !task.inputs.is_empty()
    }

    fn lookup(
        &self,
        plan: &Plan,
        task: usize,
        inputs: &[InputFile],
        dep_digests: &[Digest],
    ) -> Result<Lookup, CacheError> {
        let t = plan.task(task);
        if matches!(t.action, Action::Group | Action::Service(_)) {
            return Ok(Lookup::Run {
                key: None,
                reason: Reason::NotCacheable(not_cacheable_reason(t)),
            });
        }
        let key = self.key_for(plan, task, inputs, dep_digests)?;
        let found = self.look_up_key(t, &key)?;
        // Only a task that runs is recorded: keep its key for `record_success` (a hit of
        // an unpinned `revalidate` download runs again when the origin has a new version).
        let revalidates = matches!(&t.action, Action::Download(d) if d.asks_origin_on_hit());
        if revalidates || matches!(found, Lookup::Run { .. }) {
            self.pending().insert(task, key);
        }
        Ok(found)
    }

    fn record_success(
        &self,
        plan: &Plan,
        task: usize,
        key: Option<&str>,
        dep_digests: &[Digest],
        produced: Produced<'_>,
    ) -> Result<Digest, CacheError> {
        let t = plan.task(task);
        match &t.action {
            Action::Group => return Ok(key::group_digest(dep_digests)),
            Action::Service(_) => return Ok(key::service_digest(&plan.pipeline, t)),
            _ => {}
        }
        let tk = self.pending().remove(&task).ok_or_else(|| {
            CacheError::Internal(format!("record_success for `{}` without lookup", t.name))
        })?;
        if let Some(k) = key
            && k != tk.hex()
        {
            return Err(CacheError::Internal(format!(
                "key mismatch for `{}`",
                t.name
            )));
        }
        let recorded = self.snapshot_and_store(plan, t, &tk, dep_digests, produced);
        if matches!(recorded, Err(CacheError::Outputs(_))) {
            // The outputs were refused, not the key: another attempt at the task (a remote
            // cached result refused here, executed again) still records under it.
            self.pending().insert(task, tk);
        }
        recorded
    }

    fn http_validators(&self, key: &str) -> Option<HttpValidators> {
        self.store.read_record(key)?.http
    }

    fn next_phase(&self, plan: &Plan) {
        // Keys looked up in the last phase belong to its indices (none is left but those of
        // tasks that failed).
        self.pending().clear();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.extend(plan.pipeline.tasks.keys().cloned());
    }

    fn finish(&self, interrupted: bool) -> Result<(), CacheError> {
        self.finish_uploads(interrupted);
        self.save()
    }
}

impl LocalCache {
    fn save(&self) -> Result<(), CacheError> {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        self.journal
            .save(|task| tasks.contains(task))
            .map_err(|e| CacheError::Save {
                what: "the last-results journal",
                reason: e.to_string(),
            })?;
        self.stats.save().map_err(|e| CacheError::Save {
            what: "stat records",
            reason: e.to_string(),
        })
    }
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        self.finish_uploads(false);
        if let Err(e) = self.save() {
            tracing::warn!("{e}");
        }
    }
}

/// Where a hit's record came from, which decides what is written back.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The journal (unchanged record file, `last_used` fresh): nothing to write.
    Journal,
    /// The record file, read with this stamp: rewritten only when `last_used` is stale.
    Stored(Stamp),
    /// Made or fetched just now (pinned blob, remote): written.
    Fresh,
}

/// True when the record's `last_used` is due for a refresh.
fn is_stale(rec: &ActionRecord, now: SystemTime) -> bool {
    rec.last_used_time()
        .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= LAST_USED_GRANULARITY)
}

mod pinned;
mod success;

mod state;
pub use state::Prefetch;

#[cfg(test)]
mod tests;
