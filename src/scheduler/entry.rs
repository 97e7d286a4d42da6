//! The ways into a run: [`run`] for callers that go on afterwards (tests, `taskrun lock`),
//! [`run_then`] for the `run` command, whose process exits right after. Both set up what the
//! jobs share, run the loop to its end, then have the cache save its run-wide state.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::worker::Shared;
use super::{Loop, RunOptions, RunResult, lanes, remote};
use crate::actions::Stop;
use crate::cache::TaskCache;
use crate::events::Sink;
use crate::plan::Plan;

/// Runs the selected tasks of `plan` and returns the report and exit code.
pub async fn run(
    plan: Arc<Plan>,
    cache: Arc<dyn TaskCache>,
    opts: RunOptions,
    sink: &mut dyn Sink,
) -> RunResult {
    let (result, cache) = run_and_finish(plan, cache, opts, sink, |_| {}).await;
    drop(cache);
    result
}

/// [`run`] for a process that exits after the run: `meanwhile` (the report files) gets the
/// result while the cache saves its run-wide state on another thread, and the cache is not
/// freed entry by entry (its lock goes with the process).
pub async fn run_then(
    plan: Arc<Plan>,
    cache: Arc<dyn TaskCache>,
    opts: RunOptions,
    sink: &mut dyn Sink,
    meanwhile: impl FnOnce(&RunResult),
) -> RunResult {
    let (result, cache) = run_and_finish(plan, cache, opts, sink, meanwhile).await;
    std::mem::forget(cache);
    result
}

/// The run, then the cache's save on a blocking thread with `meanwhile` beside it; the
/// cache is handed back (None if its save panicked) for the caller to free or not.
async fn run_and_finish(
    plan: Arc<Plan>,
    cache: Arc<dyn TaskCache>,
    opts: RunOptions,
    sink: &mut dyn Sink,
    meanwhile: impl FnOnce(&RunResult),
) -> (RunResult, Option<Arc<dyn TaskCache>>) {
    let result = run_phase(plan, cache.clone(), opts, sink).await;
    let cache = finish_then(cache, &result, meanwhile).await;
    (result, cache)
}

/// Runs the selected tasks of `plan` (one phase of a run, see [`super::Earlier`]) without
/// saving the cache's run-wide state: [`finish_then`] does, once the last phase is over.
pub async fn run_phase(
    plan: Arc<Plan>,
    cache: Arc<dyn TaskCache>,
    opts: RunOptions,
    sink: &mut dyn Sink,
) -> RunResult {
    // No write of this run lands on the manifest, its lockfile or the store (SPEC §13).
    let p = &plan.pipeline;
    let mut reserved = crate::manifest::reserved::paths(&p.manifest_path, &p.root, &p.cache.dir);
    // And the item files the next load reads (a glob's matches are the workspace's own).
    reserved.extend(
        p.item_sources
            .iter()
            .filter(|s| s.kind != crate::manifest::fanout::sources::SourceKind::Glob)
            .map(|s| (s.path.clone(), "an item file of a fan-out task")),
    );
    crate::workspace::reserve(&p.root, reserved);
    let (progress_tx, progress_rx) = mpsc::channel(1024);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let concurrency = opts.jobs.unwrap_or(plan.pipeline.concurrency).max(1);
    let (executor, remote) =
        match remote::setup(&plan, opts.placements.clone(), concurrency, opts.force) {
            Some((e, r)) => (Some(e), Some(r)),
            None => (None, None),
        };
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        cache,
        stop: stop_rx,
        log_dir: opts.log_dir.clone(),
        progress: progress_tx,
        done: done_tx,
        http: lanes::http_client(&plan),
        download_progress: sink.wants_download_progress(),
        redactor: std::sync::OnceLock::new(),
        remote: executor,
    });
    let mut r = Loop::new(plan, shared, &opts, sink, stop_tx);
    r.remote = remote;
    r.run(
        progress_rx,
        done_rx,
        opts.handle_signals,
        opts.interrupted_before,
    )
    .await
}

/// Has the cache save its run-wide state (stat records) on a blocking thread, with
/// `meanwhile` (the report files) given the result beside it; hands the cache back (None if
/// its save panicked). Worker threads may still hold the cache when the process exits, so
/// its Drop is no place to rely on.
pub async fn finish_then(
    cache: Arc<dyn TaskCache>,
    result: &RunResult,
    meanwhile: impl FnOnce(&RunResult),
) -> Option<Arc<dyn TaskCache>> {
    let interrupted = result.report.status == crate::report::RunStatus::Interrupted;
    let finishing = tokio::task::spawn_blocking(move || {
        let saved = cache.finish(interrupted);
        (saved, cache)
    });
    meanwhile(result);
    match finishing.await {
        Ok((saved, cache)) => {
            if let Err(e) = saved {
                tracing::warn!("{e}");
            }
            Some(cache)
        }
        Err(_) => None,
    }
}
