//! `plan`'s cache column: for every selected task, hit / miss / off with its key and reason,
//! computed from the files on disk without running, writing or locking anything.
//!
//! Tasks are walked in plan order. A predicted hit passes its recorded digest to its
//! dependents (and its recorded outputs count as inputs that will exist); a task that will
//! run makes its dependents "miss: dependency X will run", since its new digest is unknown,
//! unless it declares no outputs: then it hands on its key, known before it runs.

use std::collections::HashMap;
use std::time::SystemTime;

use serde::Serialize;

use super::Digest;
use super::digest::to_hex;
use super::explain::miss_reason;
use super::journal::Journal;
use super::key::{self, KeyPart, TaskKey};
use super::local::{expired_reason, not_cacheable_reason, pinned_record};
use super::outputs;
use super::reason::Reason;
use super::record::ActionRecord;
use super::stat::StatCache;
use super::store::Store;
use crate::model::Action;
use crate::plan::Plan;
use crate::workspace::Workspace;

/// Predicted cache status of a task (the plan's own type: hit / miss / off).
pub use crate::plan::predict::CacheStatus as PredictedStatus;

/// What the cache predicts for one task's key: the plan's [`crate::plan::predict::Prediction`]
/// (status, hex key, reason) plus the key's parts, which `explain` diffs against the last
/// record; [`KeyPrediction::to_plan`] drops the parts for `plan`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyPrediction {
    /// hit / miss / off.
    pub status: PredictedStatus,
    /// Hex key, when it can be computed now.
    pub key: Option<String>,
    /// Why it misses (or, for a hit, what will be restored).
    pub reason: Option<Reason>,
    /// The key's parts (known ones, when a dependency will run first), for `explain`.
    #[serde(skip)]
    pub parts: Vec<KeyPart>,
}

/// `--force` / `--no-cache` as the run would get them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PredictOptions {
    /// Predict as with `--force`.
    pub force: bool,
    /// Predict as with `--no-cache`.
    pub no_cache: bool,
    /// Keep each key's parts (for `explain`); `plan` shows only status, key and reason.
    pub keep_parts: bool,
}

fn off(reason: Option<Reason>) -> KeyPrediction {
    KeyPrediction {
        status: PredictedStatus::Off,
        key: None,
        reason,
        parts: Vec::new(),
    }
}

fn miss(key: Option<&TaskKey>, reason: Reason, parts: Vec<KeyPart>) -> KeyPrediction {
    KeyPrediction {
        status: PredictedStatus::Miss,
        key: key.map(TaskKey::hex),
        reason: Some(reason),
        parts,
    }
}

/// A read-only view of a pipeline's cache dir: what `plan` and `explain` read (they never
/// write, not even stat records).
#[derive(Debug)]
pub struct CacheView {
    /// The store, read-only.
    pub store: Store,
    /// The stat records, never saved.
    pub stats: StatCache,
    /// The manifest's last-results journal, never saved.
    pub journal: Journal,
}

impl CacheView {
    /// Opens the view of `pipeline.cache.dir`.
    pub fn open(pipeline: &crate::model::Pipeline) -> Self {
        let dir = &pipeline.cache.dir;
        Self {
            store: Store::new(dir, true),
            stats: StatCache::open(dir, true),
            journal: Journal::open(dir, &pipeline.manifest_path, true),
        }
    }
}

/// Predicts with a read-only view of `plan.pipeline.cache.dir` (what `plan` and `explain` use).
pub fn predict_plan(plan: &Plan, options: PredictOptions) -> Vec<KeyPrediction> {
    predict(plan, &CacheView::open(&plan.pipeline), options)
}

/// One prediction per task of `plan.pipeline.tasks` (by index); unselected tasks are `off`
/// with no reason.
pub fn predict(plan: &Plan, view: &CacheView, options: PredictOptions) -> Vec<KeyPrediction> {
    let (store, stats) = (&view.store, &view.stats);
    let n = plan.pipeline.tasks.len();
    let root = &plan.pipeline.root;
    let ws = Workspace::new(root);
    let mut out: Vec<KeyPrediction> = (0..n).map(|_| off(None)).collect();
    // The digest each task will hand its dependents, when known without running it.
    let mut known: Vec<Option<Digest>> = vec![None; n];
    // Outputs predicted hits will restore: they count as inputs that will exist.
    let mut overlay: HashMap<String, Digest> = HashMap::new();
    let now = SystemTime::now();
    let shards = store.record_shards();

    for &i in &plan.order {
        let t = plan.task(i);
        let deps = &plan.deps[i];
        let waiting = deps
            .iter()
            .find(|&&d| known[d].is_none())
            .map(|&d| plan.task(d).name.clone());
        let dep_digests: Vec<(String, Digest)> = deps
            .iter()
            .filter_map(|&d| known[d].map(|dg| (plan.task(d).name.clone(), dg)))
            .collect();
        match &t.action {
            Action::Group => {
                // A fan-out's stand-in (`clean[*]`) is replaced by its instances during the
                // run: what it hands its dependents cannot be known before.
                if waiting.is_none() && t.expands.is_none() {
                    let ds: Vec<Digest> = dep_digests.iter().map(|d| d.1).collect();
                    known[i] = Some(key::group_digest(&ds));
                }
                out[i] = off(Some(Reason::NotCacheable(not_cacheable_reason(t))));
                continue;
            }
            Action::Service(_) => {
                known[i] = Some(key::service_digest(&plan.pipeline, t));
                out[i] = off(Some(Reason::NotCacheable(not_cacheable_reason(t))));
                continue;
            }
            _ => {}
        }
        if options.no_cache {
            out[i] = off(Some(Reason::NoCache));
            continue;
        }
        let cacheable = t.is_cacheable();
        let expanded = match super::inputs::expand_with(
            root,
            &plan.pipeline.cache.dir,
            &t.inputs,
            overlay.keys().map(String::as_str),
        ) {
            Ok(e) => e,
            Err(e) => {
                out[i] = miss(None, Reason::Inputs(e), Vec::new());
                continue;
            }
        };
        let mut ins = Vec::with_capacity(expanded.files.len());
        let mut unreadable = None;
        for f in &expanded.files {
            match overlay.get(f) {
                Some(d) => ins.push((f.clone(), *d)),
                None => match stats.digest(&root.join(f)) {
                    Ok((d, _)) => ins.push((f.clone(), d)),
                    Err(e) => {
                        unreadable = Some(Reason::InputUnreadable {
                            path: f.clone(),
                            error: e.to_string(),
                        })
                    }
                },
            }
        }
        let tk = key::task_key(&plan.pipeline, t, &ins, &dep_digests);
        // `plan` of 100,000 tasks need not copy every key's parts into its prediction.
        let kept = |parts: &Vec<KeyPart>| {
            if options.keep_parts {
                parts.clone()
            } else {
                Vec::new()
            }
        };
        let status_if_runs = |reason: Reason, parts: Vec<KeyPart>| {
            if cacheable {
                miss(None, reason, parts)
            } else {
                KeyPrediction {
                    status: PredictedStatus::Off,
                    key: None,
                    reason: Some(reason),
                    parts,
                }
            }
        };
        if let Some(dep) = waiting {
            // A task that is never cached runs whatever its deps do: that is the reason.
            let why = match cacheable {
                true => Reason::DependencyWillRun(dep),
                false => Reason::NotCacheable(not_cacheable_reason(t)),
            };
            out[i] = status_if_runs(why, kept(&tk.parts));
            continue;
        }
        if let Some(g) = expanded.unmatched.first() {
            out[i] = status_if_runs(Reason::InputUnmatched(g.clone()), kept(&tk.parts));
            continue;
        }
        if let Some(r) = unreadable {
            out[i] = status_if_runs(r, kept(&tk.parts));
            continue;
        }
        if key::declared_outputs(t).is_empty() {
            // What it hands its dependents is its key (SPEC §5): known now, run or not.
            known[i] = Some(tk.key);
        }
        if !cacheable {
            out[i] = KeyPrediction {
                status: PredictedStatus::Off,
                key: None,
                reason: Some(Reason::NotCacheable(not_cacheable_reason(t))),
                parts: kept(&tk.parts),
            };
            continue;
        }
        if options.force {
            out[i] = miss(Some(&tk), Reason::Force, kept(&tk.parts));
            continue;
        }
        let hex = tk.hex();
        let record = shards
            .may_hold(&hex)
            .then(|| store.read_record(&hex))
            .flatten()
            .or_else(|| pinned_record(t, &tk, store));
        let Some(rec) = record else {
            let mut reason = miss_reason(store, view.journal.last_key(&t.name), &tk.parts);
            // `plan` never touches the network: it can only say the remote might help.
            if reason == Reason::NoEntry && plan.pipeline.cache.remote.is_some() {
                reason = Reason::NoLocalEntry;
            }
            out[i] = miss(Some(&tk), reason, kept(&tk.parts));
            continue;
        };
        if let Some(reason) = expired_reason(&rec, t.cache_ttl, now) {
            out[i] = miss(Some(&tk), reason, kept(&tk.parts));
            continue;
        }
        if let Err(why) = rec.check_declared(&key::declared_outputs(t)) {
            out[i] = miss(Some(&tk), Reason::Rejected(why), kept(&tk.parts));
            continue;
        }
        out[i] = hit_prediction(&ws, &rec, stats, store, &tk, kept(&tk.parts));
        if out[i].status == PredictedStatus::Hit {
            known[i] = Some(rec.digest_bytes());
            for e in rec.output_entries() {
                overlay.insert(e.path, e.sha256);
            }
        }
    }
    out
}

fn hit_prediction(
    ws: &Workspace,
    rec: &ActionRecord,
    stats: &StatCache,
    store: &Store,
    tk: &TaskKey,
    parts: Vec<KeyPart>,
) -> KeyPrediction {
    let drifted = outputs::check(ws, rec, stats);
    for (path, _) in &drifted {
        let blob = rec
            .outputs
            .iter()
            .find(|o| &o.path == path)
            .and_then(|o| super::digest::from_hex(&o.sha256));
        if !blob.is_some_and(|d| store.has_blob(&d)) {
            return miss(Some(tk), Reason::Incomplete(path.clone()), parts);
        }
    }
    let mut reason = drifted.first().map(|(path, drift)| Reason::Restore {
        path: path.clone(),
        drift: drift.as_str(),
        more: drifted.len() - 1,
    });
    if reason.is_none() {
        // What the restore would sweep from an output directory also changes it.
        let swept = super::restore::unrecorded(ws, rec);
        reason = swept.last().map(|entry| Reason::Restore {
            path: entry
                .path()
                .strip_prefix(ws.root())
                .unwrap_or(entry.path())
                .display()
                .to_string(),
            drift: "is not the task's",
            more: swept.len() - 1,
        });
    }
    KeyPrediction {
        status: PredictedStatus::Hit,
        key: Some(tk.hex()),
        reason,
        parts,
    }
}

impl KeyPrediction {
    /// The plan's view of this prediction (what `plan` renders).
    pub fn to_plan(&self) -> crate::plan::predict::Prediction {
        crate::plan::predict::Prediction {
            status: self.status,
            key: self.key.clone(),
            reason: self.reason.as_ref().map(Reason::to_string),
        }
    }
}

/// What `taskrun plan` shows: [`predict_plan`] in the plan's types, one per task index.
pub fn plan_predictions(
    plan: &Plan,
    force: bool,
    no_cache: bool,
) -> Vec<crate::plan::predict::Prediction> {
    predict_plan(
        plan,
        PredictOptions {
            force,
            no_cache,
            keep_parts: false,
        },
    )
    .iter()
    .map(KeyPrediction::to_plan)
    .collect()
}

/// Short form of a digest for tables.
pub fn short_digest(d: &Digest) -> String {
    to_hex(d)[..12].to_string()
}
