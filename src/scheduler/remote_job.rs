//! A remote job: the cache lookup, the task's Action, one attempt on the cluster with the
//! cluster's own failures retried (without using an attempt), and the local cache record
//! of a success, exactly as a local job records one (SPEC §11).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;

use super::failure::TaskFailure;
use super::remote::Executor;
use super::worker::{Done, Job, Shared, blocking, look_up_first, record_blocking, redacted};
use crate::actions::remote::{self, RemoteCtx, RemoteEnd};
use crate::actions::{AttemptResult, Stop, TaskOutput};
use crate::cache::{CacheError, CacheSource, Digest, Produced};
use crate::reapi::ActionSpec;
use crate::report::AttemptOutcome;

/// Cluster failures retried (with backoff, attempts not used) before the cluster is judged
/// unreachable for the run.
const CLUSTER_RETRIES: u32 = 3;
/// The wait before the first of them; it doubles each time (with "equal" jitter).
const CLUSTER_BACKOFF: Duration = Duration::from_millis(500);
/// How long a cluster that refuses calls for load (RESOURCE_EXHAUSTED) is asked again
/// without using those retries: it is up, its threads are taken for a moment.
const BUSY_WINDOW: Duration = Duration::from_secs(30);

/// Runs one remote job to its end and reports it.
pub(super) async fn run(shared: Arc<Shared>, job: Job) {
    let done = job_inner(&shared, job).await;
    let _ = shared.done.send(done);
}

async fn job_inner(shared: &Arc<Shared>, job: Job) -> Done {
    let failed = |error: TaskFailure| Done::Failed {
        task: job.task,
        error,
    };
    let key = match look_up_first(shared, &job).await {
        Ok(key) => key,
        Err(done) => return done,
    };
    let Some(executor) = shared.remote.clone() else {
        return failed(TaskFailure::NoExecutor);
    };
    let (plan, t) = (shared.plan.clone(), job.task);
    let mut spec = match blocking(move || remote::spec::build(&plan, t)).await {
        Ok(Ok(spec)) => spec,
        Ok(Err(e)) => return failed(TaskFailure::RemoteSpec(e)),
        Err(e) => return failed(e),
    };
    // `--no-cache` uses no cache at all, the cluster's included (SPEC §5).
    spec.do_not_cache |= !shared.cache.can_hit();
    let sink = super::worker::begin_attempt(shared, &job, true).await;
    let mut started = SystemTime::now();
    let mut skip_cache_lookup = executor.force;
    let result = loop {
        let end =
            with_cluster_retries(shared, &executor, &spec, &sink, job.task, skip_cache_lookup)
                .await;
        let (output, before, made) = match end {
            RemoteEnd::Ran(result) => break redacted(result, &sink),
            RemoteEnd::Cluster(e) => {
                return Done::RemoteUnreachable {
                    task: job.task,
                    key,
                    error: sink.redact(&e.to_string()).into_owned(),
                };
            }
            RemoteEnd::Cached {
                output,
                before,
                made,
            } => (output, before, made),
        };
        match cached(shared, &job, key.as_deref(), &output, made).await {
            Ok(digest) => {
                return Done::Hit {
                    task: job.task,
                    key: key.unwrap_or_default(),
                    source: CacheSource::Remote,
                    digest,
                    output: Some(output),
                };
            }
            // Outputs the local cache refuses (a link that leads outside once resolved):
            // the cluster's copy is no answer for this task, so it is a miss. What it wrote
            // goes, and the action runs again without the ActionCache.
            Err(TaskFailure::Cache(CacheError::Outputs(why))) if !skip_cache_lookup => {
                let name = &shared.plan.task(job.task).name;
                tracing::debug!(task = %name, "cached remote result refused ({why}); executing");
                before.delete_changed();
                skip_cache_lookup = true;
                started = SystemTime::now();
            }
            Err(error) => {
                return Done::Failed {
                    task: job.task,
                    error,
                };
            }
        }
    };
    let finished = SystemTime::now();
    let digest = if result.outcome == AttemptOutcome::Succeeded {
        let output = sink.take_captured();
        let (t, deps) = (job.task, job.dep_digests);
        Some(record_blocking(shared, t, key.clone(), deps, output, &result).await)
    } else {
        None
    };
    Done::Attempt {
        task: job.task,
        key,
        started,
        finished,
        result,
        digest,
    }
}

/// The cluster's ActionCache had the result: recorded locally (a later run hits here
/// without asking the cluster), and the task is `cached` from the remote.
async fn cached(
    shared: &Arc<Shared>,
    job: &Job,
    key: Option<&str>,
    output: &[u8],
    made: Option<std::time::SystemTime>,
) -> Result<Digest, TaskFailure> {
    let (plan, cache, t) = (shared.plan.clone(), shared.cache.clone(), job.task);
    let (k, deps, out) = (
        key.map(str::to_string),
        job.dep_digests.clone(),
        output.to_vec(),
    );
    let recorded = blocking(move || {
        let produced = Produced {
            output: &out,
            made,
            ..Produced::default()
        };
        cache.record_success(&plan, t, k.as_deref(), &deps, produced)
    })
    .await;
    recorded?.map_err(TaskFailure::Cache)
}

/// One attempt, with the cluster's failures retried up to [`CLUSTER_RETRIES`] times; ends
/// in [`RemoteEnd::Cluster`] when they run out or the loop judged the cluster down.
async fn with_cluster_retries(
    shared: &Shared,
    executor: &Executor,
    spec: &ActionSpec,
    sink: &TaskOutput,
    task: usize,
    skip_cache_lookup: bool,
) -> RemoteEnd {
    let pipeline = &shared.plan.pipeline;
    let t = shared.plan.task(task);
    let mut retries = ClusterRetries::default();
    loop {
        let end = match executor.client(pipeline).await {
            Ok(client) => {
                remote::attempt(RemoteCtx {
                    client,
                    spec,
                    pipeline,
                    task: t,
                    output: sink,
                    stop: shared.stop.clone(),
                    down: executor.down.clone(),
                    skip_cache_lookup,
                })
                .await
            }
            Err(e) if e.is_cluster_failure() => RemoteEnd::Cluster(e),
            Err(e) => {
                // No connection: nothing was sent, nothing ran.
                let mut result = AttemptResult::failed(format!("remote executor: {e}"), false);
                result.not_run = true;
                RemoteEnd::Ran(result)
            }
        };
        let RemoteEnd::Cluster(err) = end else {
            return end;
        };
        let Some(wait) = retries
            .next_wait(err.is_busy(), std::time::Instant::now())
            .filter(|_| !executor.is_down())
        else {
            return RemoteEnd::Cluster(err);
        };
        tracing::info!(
            task = %t.name,
            "remote execution failed ({err}); trying again in {} ms",
            wait.as_millis()
        );
        let (mut stop, mut down) = (shared.stop.clone(), executor.down.clone());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = down.wait_for(|d| *d) => return RemoteEnd::Cluster(err),
            _ = stop.wait_for(|s| *s != Stop::No) => return RemoteEnd::Ran(
                AttemptResult::failed("interrupted", false).with_outcome(AttemptOutcome::Cancelled),
            ),
        }
    }
}

/// How one task's cluster failures are retried: [`CLUSTER_RETRIES`] times with backoff, and
/// refusals for load ([`crate::reapi::ReapiError::Busy`]) first asked again for
/// [`BUSY_WINDOW`] without using those retries.
#[derive(Debug, Default)]
struct ClusterRetries {
    /// Failures counted so far.
    failures: u32,
    /// Since when the cluster has refused for load, with no other failure between.
    busy_since: Option<std::time::Instant>,
}

impl ClusterRetries {
    /// The wait before trying again after a failure (`busy`: a refusal for load) at `now`,
    /// or `None` once the retries are used up.
    fn next_wait(&mut self, busy: bool, now: std::time::Instant) -> Option<Duration> {
        if busy {
            let since = *self.busy_since.get_or_insert(now);
            if now.duration_since(since) < BUSY_WINDOW {
                // Up, its threads taken for a moment: soon again, no retry used.
                return Some(backoff(1));
            }
        } else {
            self.busy_since = None;
        }
        self.failures += 1;
        (self.failures <= CLUSTER_RETRIES).then(|| backoff(self.failures))
    }
}

/// The wait before cluster retry `n` (1-based): 0.5 s doubling, "equal" jitter.
fn backoff(n: u32) -> Duration {
    let base = CLUSTER_BACKOFF * 2u32.saturating_pow(n.saturating_sub(1));
    let half = base / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_within_equal_jitter() {
        for n in 1..=3 {
            let base = super::CLUSTER_BACKOFF * 2u32.pow(n - 1);
            let w = super::backoff(n);
            assert!(w >= base / 2 && w <= base, "{n}: {w:?}");
        }
    }

    #[test]
    fn refusals_for_load_wait_without_using_retries_for_a_while() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = super::ClusterRetries::default();
        // Busy for 29 s: asked again each time, no retry used.
        for k in 0..30 {
            assert!(r.next_wait(true, t0 + s(k)).is_some(), "busy at {k} s");
        }
        assert_eq!(r.failures, 0);
        // Busy past the window: each refusal now counts, and the fourth gives up.
        assert!(r.next_wait(true, t0 + s(31)).is_some());
        assert!(r.next_wait(true, t0 + s(32)).is_some());
        assert!(r.next_wait(true, t0 + s(33)).is_some());
        assert_eq!(r.next_wait(true, t0 + s(34)), None);

        // Other failures: three retries, then none; one between refusals restarts the window.
        let mut r = super::ClusterRetries::default();
        assert!(r.next_wait(false, t0).is_some());
        assert!(r.next_wait(true, t0 + s(40)).is_some());
        assert!(r.next_wait(false, t0 + s(41)).is_some());
        assert!(r.next_wait(true, t0 + s(100)).is_some(), "a new window");
        assert_eq!(r.failures, 2);
        assert!(r.next_wait(false, t0 + s(101)).is_some());
        assert_eq!(r.next_wait(false, t0 + s(102)), None);
    }
}
