//! The work done off the run loop: input globs, the cache lookup, one attempt, the cache
//! store; and a service's whole life. Workers report back over channels and own no run state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};

use super::failure::TaskFailure;
use crate::actions::service::{self, ServiceEnd};
use crate::actions::{self, AttemptCtx, AttemptResult, Progress, Stop, TaskOutput};
use crate::cache::{CacheSource, Digest, Lookup, Produced, TaskCache, WrittenFile};
use crate::model::Action;
use crate::plan::Plan;
use crate::template::Redactor;

/// What every worker shares.
pub(super) struct Shared {
    pub plan: Arc<Plan>,
    pub cache: Arc<dyn TaskCache>,
    pub stop: watch::Receiver<Stop>,
    pub log_dir: Option<PathBuf>,
    pub progress: mpsc::Sender<(usize, Progress)>,
    pub done: mpsc::UnboundedSender<Done>,
    /// One HTTP client per run, shared by every download (connection reuse, per-host limits).
    pub http: Result<Arc<actions::download::HttpClient>, String>,
    /// Some event sink shows download progress (else transfers do not send it).
    pub download_progress: bool,
    /// Every form of the pipeline's secrets, built when the first task runs (a run of cache
    /// hits never reads them).
    pub redactor: std::sync::OnceLock<Arc<Redactor>>,
    /// The remote executor, when some selected task is placed there (SPEC §11).
    pub remote: Option<Arc<super::remote::Executor>>,
}

/// One job for a command or download task.
pub(super) struct Job {
    pub task: usize,
    pub attempt: u32,
    /// Expand inputs and ask the cache first (the first attempt, unless already asked).
    pub lookup: bool,
    /// Some service dep is not running yet: on a miss, report back instead of running.
    pub needs_services: bool,
    pub key: Option<String>,
    pub dep_digests: Vec<Digest>,
}

/// What a worker reports when it is done.
pub(super) enum Done {
    /// The cache missed and the task needs services that are not ready yet.
    Miss { task: usize, key: Option<String> },
    /// The lookup pool asked the cache: the task must run (with this key).
    Looked { task: usize, key: Option<String> },
    /// The task failed before any attempt (inputs, cache).
    Failed { task: usize, error: TaskFailure },
    /// The cache had the result.
    Hit {
        task: usize,
        key: String,
        source: CacheSource,
        digest: Digest,
        output: Option<Vec<u8>>,
    },
    /// One attempt ended.
    Attempt {
        task: usize,
        key: Option<String>,
        started: SystemTime,
        finished: SystemTime,
        result: AttemptResult,
        /// On success: the digest dependents use (or the cache error that failed the task).
        digest: Option<Result<Digest, TaskFailure>>,
    },
    /// A service answered its probe.
    ServiceReady { task: usize },
    /// A service ended.
    ServiceEnded {
        task: usize,
        end: ServiceEnd,
        started: SystemTime,
        finished: SystemTime,
    },
    /// A retry wait is over.
    RetryDue { task: usize },
    /// The remote executor stayed unreachable for this task (SPEC §11): run it here, or fail
    /// it, and send no more tasks there.
    RemoteUnreachable {
        task: usize,
        key: Option<String>,
        error: String,
    },
    /// Several results at once (the lookup threads batch theirs).
    Batch(Vec<Done>),
}

impl Done {
    /// The task of an answer that may come from the lookup threads (see `LookupState`).
    pub(super) fn looked_up_task(&self) -> Option<usize> {
        match self {
            Done::Looked { task, .. } | Done::Hit { task, .. } | Done::Failed { task, .. } => {
                Some(*task)
            }
            _ => None,
        }
    }
}

impl Shared {
    pub(super) fn sink(&self, task: usize) -> TaskOutput {
        let t = self.plan.task(task);
        let log = self
            .log_dir
            .as_ref()
            .map(|dir| dir.join(log_file_name(&t.name)));
        let redactor = self
            .redactor
            .get_or_init(|| Arc::new(actions::env::redactor(&self.plan.pipeline)));
        let sink = TaskOutput::new(task, self.progress.clone(), log, redactor.clone());
        if self.download_progress {
            sink
        } else {
            sink.without_download_progress()
        }
    }
}

/// The log file of a task: its name with `/`, `\\` and `%` percent-escaped (an instance key
/// such as `2024/a.jpg` must not name a directory, nor meet `2024_a.jpg`), and a name longer
/// than a file name may be cut short with a digest of the whole name, so it stays unique.
pub fn log_file_name(task: &str) -> String {
    /// File names are at most 255 bytes; leave room for `.log`.
    const MAX: usize = 240;
    let mut safe = String::with_capacity(task.len());
    for c in task.chars() {
        match c {
            '/' => safe.push_str("%2F"),
            '\\' => safe.push_str("%5C"),
            '%' => safe.push_str("%25"),
            c => safe.push(c),
        }
    }
    if safe.len() > MAX {
        let digest =
            crate::cache::digest::to_hex(&crate::cache::digest::hash_bytes(task.as_bytes()));
        let mut cut = MAX - 17;
        while !safe.is_char_boundary(cut) {
            cut -= 1;
        }
        safe.truncate(cut);
        safe.push('~');
        safe.push_str(&digest[..16]);
    }
    format!("{safe}.log")
}

/// What the cache said about a task about to run.
pub(super) enum Checked {
    /// Outputs in place; do not run.
    Hit {
        key: String,
        source: CacheSource,
        digest: Digest,
        output: Option<Vec<u8>>,
    },
    /// Run it (with this key, when cacheable).
    Run { key: Option<String> },
    /// Inputs or the cache failed the task.
    Failed(TaskFailure),
}

/// Expands the task's input globs and asks the cache. Blocking: file I/O, maybe the remote.
pub(super) fn check_cache(shared: &Shared, task: usize, dep_digests: &[Digest]) -> Checked {
    let plan = &shared.plan;
    let t = plan.task(task);
    let inputs = if t.inputs.is_empty() {
        Vec::new()
    } else {
        match crate::cache::inputs::expand(&plan.pipeline.root, &plan.pipeline.cache.dir, &t.inputs)
        {
            Ok(v) => v,
            Err(e) => return Checked::Failed(TaskFailure::Inputs(e)),
        }
    };
    match shared.cache.lookup(plan, task, &inputs, dep_digests) {
        Ok(Lookup::Hit {
            key,
            source,
            digest,
            output,
        }) => Checked::Hit {
            key,
            source,
            digest,
            output,
        },
        Ok(Lookup::Run { key, .. }) => Checked::Run { key },
        Err(e) => Checked::Failed(TaskFailure::Cache(e)),
    }
}

/// Runs one job to its end and reports it.
pub(super) async fn run_job(shared: Arc<Shared>, job: Job) {
    let done = job_inner(&shared, job).await;
    let _ = shared.done.send(done);
}

/// The cache lookup a job begins with (when it was not done already): `Ok(key)` to run the
/// task with that key; `Err(done)` when the job is over (a hit, a failure, a miss that waits
/// for services).
pub(super) async fn look_up_first(shared: &Arc<Shared>, job: &Job) -> Result<Option<String>, Done> {
    let task = shared.plan.task(job.task);
    let mut key = job.key.clone();
    if job.lookup {
        let checked = if shared.cache.lookup_needs_io(task) {
            let (sh, t, deps) = (shared.clone(), job.task, job.dep_digests.clone());
            blocking(move || check_cache(&sh, t, &deps)).await
        } else {
            Ok(check_cache(shared, job.task, &job.dep_digests))
        };
        match checked {
            Ok(Checked::Hit {
                key,
                source,
                digest,
                output,
            }) => {
                if let Action::Download(d) = &task.action
                    && d.asks_origin_on_hit()
                {
                    // The origin is asked: a service it is served by must be up first.
                    if job.needs_services {
                        return Err(Done::Miss {
                            task: job.task,
                            key: Some(key),
                        });
                    }
                    if let Some(done) = revalidate_hit(shared, job, d, &key).await {
                        return Err(done);
                    }
                }
                return Err(Done::Hit {
                    task: job.task,
                    key,
                    source,
                    digest,
                    output,
                });
            }
            Ok(Checked::Run { key: k }) if job.needs_services => {
                return Err(Done::Miss {
                    task: job.task,
                    key: k,
                });
            }
            Ok(Checked::Run { key: k }) => key = k,
            Ok(Checked::Failed(error)) | Err(error) => {
                return Err(Done::Failed {
                    task: job.task,
                    error,
                });
            }
        }
    }
    Ok(key)
}

/// Tells the run loop that an attempt of `job` begins, here or on the cluster (`remote`),
/// and opens the sink its output goes to.
pub(super) async fn begin_attempt(shared: &Shared, job: &Job, remote: bool) -> TaskOutput {
    let _ = shared
        .progress
        .send((
            job.task,
            Progress::Started {
                attempt: job.attempt,
                remote,
            },
        ))
        .await;
    shared.sink(job.task)
}

async fn job_inner(shared: &Arc<Shared>, job: Job) -> Done {
    let plan = &shared.plan;
    let task = plan.task(job.task);
    let key = match look_up_first(shared, &job).await {
        Ok(key) => key,
        Err(done) => return done,
    };
    let sink = begin_attempt(shared, &job, false).await;
    let started = SystemTime::now();
    let without_io = shared.cache.records_without_io(task, key.as_deref());
    let result = actions::attempt(AttemptCtx {
        pipeline: &plan.pipeline,
        task,
        number: job.attempt,
        stop: shared.stop.clone(),
        output: &sink,
        http: shared.http.as_ref().map_err(String::as_str),
        // A download the lockfile does not pin yet hashes its body for its new entry.
        keep_digest: !without_io || crate::lockfile::standing::lockable(task).is_some(),
    })
    .await;
    let result = redacted(result, &sink);
    let finished = SystemTime::now();
    let digest = if result.outcome != crate::report::AttemptOutcome::Succeeded {
        None
    } else if without_io {
        let output = sink.take_captured();
        let produced = Produced {
            output: &output,
            ..Produced::default()
        };
        let recorded =
            shared
                .cache
                .record_success(plan, job.task, None, &job.dep_digests, produced);
        Some(recorded.map_err(TaskFailure::Cache))
    } else {
        let output = sink.take_captured();
        let (t, deps) = (job.task, job.dep_digests);
        Some(record_blocking(shared, t, key.clone(), deps, output, &result).await)
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

/// The attempt's error and URL with every form of the secrets redacted: a command that cannot
/// start names its program, which may be a secret.
pub(super) fn redacted(mut result: AttemptResult, sink: &TaskOutput) -> AttemptResult {
    let redact = |s: String| match sink.redact(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(r) => r,
    };
    result.error = result.error.map(redact);
    if let Some(d) = result.download.as_deref_mut() {
        d.url = d.url.take().map(redact);
    }
    result
}

/// `revalidate = true` on a hit of an unpinned download: ask the origin (If-None-Match /
/// If-Modified-Since). `None` keeps the hit: 304, or the origin could not say (unreachable,
/// a server error; a warning, the cached file is still good). A 200 downloads anew and a
/// 4xx fails, each as the task's attempt.
async fn revalidate_hit(
    shared: &Arc<Shared>,
    job: &Job,
    download: &crate::model::Download,
    key: &str,
) -> Option<Done> {
    use crate::actions::download::{self, AttemptRequest, Revalidation};
    let plan = &shared.plan;
    let task = plan.task(job.task);
    let client = shared.http.as_ref().ok()?;
    let (c, k) = (shared.cache.clone(), key.to_string());
    let v = blocking(move || c.http_validators(&k))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let sink = shared.sink(job.task);
    let progress = |p: download::TransferProgress| sink.download_progress(p.received, p.total);
    let started = SystemTime::now();
    let req = AttemptRequest {
        download,
        root: &plan.pipeline.root,
        attempt: 1,
        timeout: task.timeout,
        progress: &progress,
        keep_digest: true,
    };
    let answer = download::revalidate(client, req, v.etag.as_deref(), v.last_modified.as_deref());
    match answer.await {
        Ok(Revalidation::NotModified) => None,
        Ok(Revalidation::Changed(done)) => {
            let result = redacted(download::succeeded(done), &sink);
            let finished = SystemTime::now();
            let (t, k, deps) = (job.task, Some(key.to_string()), job.dep_digests.clone());
            let digest = record_blocking(shared, t, k, deps, Vec::new(), &result).await;
            Some(Done::Attempt {
                task: job.task,
                key: Some(key.to_string()),
                started,
                finished,
                result,
                digest: Some(digest),
            })
        }
        // The origin answered that the file is gone or not for us (404, 410, 403): the task
        // fails as a download would; the cached copy is no answer to that.
        Err(f) if !f.retryable && f.http_status.is_some_and(|s| (400..500).contains(&s)) => {
            let result = redacted(download::failed(f), &sink);
            Some(Done::Attempt {
                task: job.task,
                key: Some(key.to_string()),
                started,
                finished: SystemTime::now(),
                result,
                digest: None,
            })
        }
        // Unreachable, a server error, a cut body: the cached file is still good (HTTP's
        // stale-if-error), said in the task's output.
        Err(f) => {
            sink.line(
                crate::events::Stream::Stderr,
                &format!("revalidation failed, using the cached file: {}", f.message),
            )
            .await;
            None
        }
    }
}

/// Records a success on a blocking thread (the snapshot stats, reads and copies files), with
/// the download's streamed digest and validators from `result`.
pub(super) async fn record_blocking(
    shared: &Arc<Shared>,
    task: usize,
    key: Option<String>,
    deps: Vec<Digest>,
    output: Vec<u8>,
    result: &AttemptResult,
) -> Result<Digest, TaskFailure> {
    let (plan, cache) = (shared.plan.clone(), shared.cache.clone());
    let (written, validators) = match result.download.as_deref() {
        Some(d) => (d.written.clone(), d.validators.clone()),
        None => (None, None),
    };
    let recorded = blocking(move || {
        let produced = Produced {
            output: &output,
            written: written.as_ref().map(WrittenFile::as_output),
            validators: validators.as_ref(),
            made: None,
        };
        cache.record_success(&plan, task, key.as_deref(), &deps, produced)
    });
    recorded.await?.map_err(TaskFailure::Cache)
}

/// Runs `f` on a blocking thread; a panic there fails the task instead of the run.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TaskFailure::Internal(e.to_string()))
}

/// Runs a service: reports readiness, then waits for `release` (or the run's stop).
pub(super) async fn run_service(shared: Arc<Shared>, task: usize, release: oneshot::Receiver<()>) {
    let plan = &shared.plan;
    let t = plan.task(task);
    let Action::Service(svc) = &t.action else {
        return;
    };
    let sink = shared.sink(task);
    let (ready_tx, ready_rx) = oneshot::channel();
    let started = SystemTime::now();
    let run = service::run(
        svc,
        &plan.pipeline,
        t,
        &sink,
        shared.stop.clone(),
        release,
        ready_tx,
    );
    tokio::pin!(run);
    let end = tokio::select! {
        end = &mut run => end,
        Ok(()) = ready_rx => {
            let _ = shared.done.send(Done::ServiceReady { task });
            run.await
        }
    };
    let end = match end {
        ServiceEnd::Failed(why, code) => ServiceEnd::Failed(sink.redact(&why).into_owned(), code),
        other => other,
    };
    let _ = shared.done.send(Done::ServiceEnded {
        task,
        end,
        started,
        finished: SystemTime::now(),
    });
}
