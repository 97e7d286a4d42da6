//! [`run_action`]: one command task on the cluster, end to end. Look the Action up in the
//! ActionCache; on a miss send what the CAS lacks (Command, Action, input directories and
//! files) and Execute; then bring the outputs, verified, into the workspace where the task
//! declared them, with stdout and stderr.
//!
//! Failed commands: a local attempt that fails has the outputs it created or changed
//! deleted (unless `keep_failed_outputs`), so the workspace ends as it was. A remote
//! attempt never touched the workspace, so the same end state is reached by writing a
//! failed action's outputs only when [`RunOptions::keep_failed_outputs`] asks for them.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::action::{ActionSpec, PreparedAction, prepare};
use super::client::{BlobSource, Client, Deadline, UploadBlob, UploadStats};
use super::digest::Digest;
use super::error::ReapiError;
use super::outputs;
use super::proto;
use crate::model::RelPath;
use crate::workspace::Workspace;

/// How [`run_action`] treats results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Write the outputs of an action that exited non-zero (the task's
    /// `keep_failed_outputs`); otherwise the workspace is left as it was.
    pub keep_failed_outputs: bool,
    /// Do not consult the ActionCache, and ask Execute not to either.
    pub skip_cache_lookup: bool,
    /// Most bytes of stdout, and of stderr, brought back (the rest is cut, flagged in
    /// [`RemoteOutcome::logs_truncated`]).
    pub max_log_bytes: u64,
    /// The task's `cache_ttl`: a cached result older than this is a miss (SPEC §2).
    pub max_age: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            keep_failed_outputs: false,
            skip_cache_lookup: false,
            max_log_bytes: 64 << 20,
            max_age: None,
        }
    }
}

/// A file output written into the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenOutput {
    /// Its workspace path (a declared output, or a file inside a declared directory).
    pub path: RelPath,
    /// Its content's digest, verified on the way in (the cache need not hash it again).
    pub digest: Digest,
    /// Whether it was written executable (`0o755`, else `0o644`).
    pub executable: bool,
}

/// Where and when the cluster ran the action, as far as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionInfo {
    /// The worker's name.
    pub worker: String,
    /// When the action was queued.
    pub queued: Option<SystemTime>,
    /// When a worker took it.
    pub worker_start: Option<SystemTime>,
    /// When the command started.
    pub execution_start: Option<SystemTime>,
    /// When the command ended.
    pub execution_completed: Option<SystemTime>,
    /// When the worker was done with it (outputs uploaded).
    pub worker_completed: Option<SystemTime>,
}

impl ExecutionInfo {
    /// When the result was made, as near as the cluster says: its worker's finish, else the
    /// latest other time it gives.
    pub fn made(&self) -> Option<SystemTime> {
        self.worker_completed
            .or(self.execution_completed)
            .or(self.execution_start)
            .or(self.worker_start)
            .or(self.queued)
    }
}

/// What a remote action did.
#[derive(Debug, Clone, Default)]
pub struct RemoteOutcome {
    /// The Action digest (the cluster's cache key).
    pub action_digest: Digest,
    /// The command's exit code (non-zero is a failed attempt, not an error).
    pub exit_code: i32,
    /// Its stdout (at most [`RunOptions::max_log_bytes`]).
    pub stdout: Vec<u8>,
    /// Its stderr (likewise).
    pub stderr: Vec<u8>,
    /// stdout or stderr was longer than the limit and was cut.
    pub logs_truncated: bool,
    /// The result came from the cluster's ActionCache, not from running the command.
    pub cached: bool,
    /// The files written into the workspace (directory outputs expanded).
    pub outputs: Vec<WrittenOutput>,
    /// Declared outputs that came back as directories.
    pub output_dirs: Vec<RelPath>,
    /// Declared outputs that came back as symlinks (each leading inside the workspace).
    pub output_symlinks: Vec<RelPath>,
    /// Declared outputs the result does not have (the command did not make them).
    pub missing_outputs: Vec<RelPath>,
    /// Whether outputs were written (false for a failed action unless kept).
    pub outputs_written: bool,
    /// The worker and its timestamps.
    pub info: ExecutionInfo,
    /// The server's message for the user, if any.
    pub message: String,
    /// What was sent to the CAS.
    pub upload: UploadStats,
}

/// Runs `spec` on the cluster behind `client` and brings its results into the workspace at
/// `workspace`. `cancel` resolving stops the work (cancelling a running operation) with
/// [`ReapiError::Cancelled`].
pub async fn run_action(
    client: &Client,
    spec: &ActionSpec,
    workspace: &Path,
    options: &RunOptions,
    cancel: impl Future<Output = ()>,
) -> Result<RemoteOutcome, ReapiError> {
    run_action_noting(
        client,
        spec,
        workspace,
        options,
        cancel,
        &AtomicBool::new(false),
    )
    .await
}

/// [`run_action`], setting `executed` once the cluster has run the command (a fresh result
/// came back, or it ran past its timeout): an error without it means the command never ran
/// (the cluster refused the action, or something failed before it was sent).
pub async fn run_action_noting(
    client: &Client,
    spec: &ActionSpec,
    workspace: &Path,
    options: &RunOptions,
    cancel: impl Future<Output = ()>,
    executed: &AtomicBool,
) -> Result<RemoteOutcome, ReapiError> {
    let mut cancel = pin!(cancel);
    let ws = Workspace::new(workspace);
    let caps = or_cancel(client.capabilities(), cancel.as_mut()).await?;
    caps.check_execution()?;
    let owned = spec.clone();
    let api = caps.api_version;
    let prepared = or_cancel(
        async {
            tokio::task::spawn_blocking(move || prepare(&owned, api))
                .await
                .map_err(|e| ReapiError::Input(format!("preparing the action: {e}")))?
        },
        cancel.as_mut(),
    )
    .await?;
    let digest = prepared.digest();
    let mut skip = options.skip_cache_lookup || spec.do_not_cache;
    if !skip {
        let hit = or_cancel(client.get_action_result(&digest), cancel.as_mut()).await?;
        // A failed result is never taken from the cache (SPEC §11), whoever stored it.
        let hit = hit.filter(|r| r.exit_code == 0);
        let unfit = match &hit {
            Some(result) => match unusable(&prepared, result, options) {
                Ok(why) => why,
                // A malformed entry: refused below, with its warning.
                Err(ReapiError::Protocol(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        if let Some(why) = unfit {
            tracing::debug!(action = %digest, "cached result not taken: {why}; executing");
            skip = true;
        } else if let Some(result) = hit {
            let done = or_cancel(
                outcome(client, &prepared, &ws, &result, options),
                cancel.as_mut(),
            )
            .await;
            match done {
                Ok(mut o) => {
                    o.cached = true;
                    return Ok(o);
                }
                // Evicted outputs: run it again rather than trust the entry.
                Err(ReapiError::BlobNotFound(d)) => {
                    tracing::debug!(action = %digest, "cached result's blob {d} is gone; executing");
                    skip = true;
                }
                // A bad entry (an undeclared path, a blob that does not match) is a miss
                // with a warning, as a bad local or HTTP cache record is (SPEC §13).
                Err(ReapiError::Protocol(why)) => {
                    tracing::warn!(
                        "remote action cache entry {digest} is refused ({why}); executing"
                    );
                    skip = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let blobs = blobs_of(&prepared);
    let mut upload = or_cancel(client.upload_missing(&blobs), cancel.as_mut()).await?;
    let mut reuploaded = false;
    let mut reexecuted = false;
    // The task's timeout bounds the whole wait, the cluster's queue included.
    let deadline = spec.timeout.map(Deadline::new);
    loop {
        let resp = match client
            .execute(&digest, skip, deadline, cancel.as_mut(), executed)
            .await
        {
            Ok(r) => r,
            Err(e @ ReapiError::TimedOut(_)) => {
                executed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            Err(ReapiError::MissingBlobs(why)) if !reuploaded => {
                tracing::debug!(action = %digest, "{why}; sending the inputs again");
                reuploaded = true;
                let again = or_cancel(client.upload_missing(&blobs), cancel.as_mut()).await?;
                upload.uploaded += again.uploaded;
                upload.bytes += again.bytes;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(result) = resp.result.as_ref() else {
            return Err(ReapiError::Protocol(
                "ExecuteResponse without a result".into(),
            ));
        };
        if !resp.cached_result {
            executed.store(true, Ordering::Relaxed);
        }
        // The cluster's own cache lookup may answer what a lookup here would refuse.
        if resp.cached_result
            && !reexecuted
            && let Some(why) = unusable(&prepared, result, options)?
        {
            tracing::debug!(action = %digest, "cached result not taken: {why}; executing");
            reexecuted = true;
            skip = true;
            continue;
        }
        match or_cancel(
            outcome(client, &prepared, &ws, result, options),
            cancel.as_mut(),
        )
        .await
        {
            Ok(mut o) => {
                o.cached = resp.cached_result;
                o.message = resp.message.clone();
                o.upload = upload;
                return Ok(o);
            }
            Err(ReapiError::BlobNotFound(_)) if resp.cached_result && !reexecuted => {
                reexecuted = true;
                skip = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why a cached, successful `result` cannot stand for a run of the task, if it cannot: it is
/// older than the task's `cache_ttl` (SPEC §2), or it lacks a declared output (the command
/// exited 0 without making it: the task fails on it, so the cache holds no answer, only a
/// failure that a new run may not repeat). Either is a miss: the action is executed again.
fn unusable(
    prepared: &PreparedAction,
    result: &proto::ActionResult,
    options: &RunOptions,
) -> Result<Option<String>, ReapiError> {
    if let Some(ttl) = options.max_age
        && expired(result, ttl, SystemTime::now())
    {
        let ttl = humantime::format_duration(ttl);
        return Ok(Some(format!("older than cache_ttl {ttl}")));
    }
    let plan = outputs::Plan::check(prepared, result)?;
    if plan.missing.is_empty() {
        return Ok(None);
    }
    let missing: Vec<&str> = plan.missing.iter().map(RelPath::as_str).collect();
    Ok(Some(format!("it lacks {}", missing.join(", "))))
}

/// Whether `result` is older than `ttl` at `now`, counted from when its worker finished (or
/// the latest other time it carries). A result with no time at all, or one further ahead
/// than [`CLOCK_SKEW`], may be of any age: it counts as expired.
/// How far a worker's clock may run ahead of ours before its times are not believed.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

fn expired(result: &proto::ActionResult, ttl: Duration, now: SystemTime) -> bool {
    let made = info(result.execution_metadata.as_ref()).made();
    // A worker's clock a little ahead of ours is skew; far ahead, an error or a lie that
    // would keep the result fresh for ever: no age to trust, so expired.
    match made.map(|t| now.duration_since(t)) {
        Some(Ok(age)) => age > ttl,
        Some(Err(ahead)) => ahead.duration() > CLOCK_SKEW,
        None => true,
    }
}

/// Awaits `fut` unless `cancel` resolves first.
async fn or_cancel<T>(
    fut: impl Future<Output = Result<T, ReapiError>>,
    cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<T, ReapiError> {
    tokio::select! {
        r = fut => r,
        () = cancel => Err(ReapiError::Cancelled),
    }
}

/// Everything the action needs in the CAS.
fn blobs_of(p: &PreparedAction) -> Vec<UploadBlob> {
    let mut blobs = vec![
        UploadBlob {
            digest: p.command_blob.0,
            source: BlobSource::Bytes(p.command_blob.1.clone()),
        },
        UploadBlob {
            digest: p.action_blob.0,
            source: BlobSource::Bytes(p.action_blob.1.clone()),
        },
    ];
    for (d, bytes) in &p.tree.directories {
        blobs.push(UploadBlob {
            digest: *d,
            source: BlobSource::Bytes(bytes.clone()),
        });
    }
    for (d, path) in &p.tree.files {
        blobs.push(UploadBlob {
            digest: *d,
            source: BlobSource::File(path.clone()),
        });
    }
    blobs
}

/// The outcome of `result`: logs fetched, outputs checked against the declared ones and
/// written (when the action succeeded, or failed outputs are kept).
async fn outcome(
    client: &Client,
    prepared: &PreparedAction,
    ws: &Workspace,
    result: &proto::ActionResult,
    options: &RunOptions,
) -> Result<RemoteOutcome, ReapiError> {
    let plan = outputs::Plan::check(prepared, result)?;
    let (stdout, cut_out) = log(
        client,
        &result.stdout_raw,
        result.stdout_digest.as_ref(),
        options,
    )
    .await?;
    let (stderr, cut_err) = log(
        client,
        &result.stderr_raw,
        result.stderr_digest.as_ref(),
        options,
    )
    .await?;
    let write = result.exit_code == 0 || options.keep_failed_outputs;
    let mut o = RemoteOutcome {
        action_digest: prepared.digest(),
        exit_code: result.exit_code,
        stdout,
        stderr,
        logs_truncated: cut_out || cut_err,
        missing_outputs: plan.missing.clone(),
        outputs_written: write,
        info: info(result.execution_metadata.as_ref()),
        ..RemoteOutcome::default()
    };
    if write {
        let written = plan.write(client, ws).await?;
        o.outputs = written.files;
        o.output_dirs = written.dirs;
        o.output_symlinks = written.symlinks;
    }
    Ok(o)
}

/// stdout or stderr: inline, or fetched by digest (cut at the limit).
async fn log(
    client: &Client,
    raw: &[u8],
    digest: Option<&proto::Digest>,
    options: &RunOptions,
) -> Result<(Vec<u8>, bool), ReapiError> {
    let max = usize::try_from(options.max_log_bytes).unwrap_or(usize::MAX);
    if !raw.is_empty() {
        return Ok((raw[..raw.len().min(max)].to_vec(), raw.len() > max));
    }
    let Some(d) = digest else {
        return Ok((Vec::new(), false));
    };
    let d = Digest::from_proto(d)?;
    let cut = d.size > options.max_log_bytes;
    let data = client
        .fetch_prefix(&d, cut.then_some(options.max_log_bytes))
        .await?;
    Ok((data, cut))
}

fn info(m: Option<&proto::ExecutedActionMetadata>) -> ExecutionInfo {
    let Some(m) = m else {
        return ExecutionInfo::default();
    };
    let time = |t: &Option<bazel_remote_apis::google::protobuf::Timestamp>| {
        let t = t.as_ref()?;
        let secs = u64::try_from(t.seconds).ok()?;
        let nanos = u32::try_from(t.nanos).ok()?;
        (secs > 0).then(|| {
            SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos.min(999_999_999))
        })
    };
    ExecutionInfo {
        worker: m.worker.clone(),
        queued: time(&m.queued_timestamp),
        worker_start: time(&m.worker_start_timestamp),
        execution_start: time(&m.execution_start_timestamp),
        execution_completed: time(&m.execution_completed_timestamp),
        worker_completed: time(&m.worker_completed_timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::protobuf::Timestamp;

    fn finished_at(secs: i64) -> proto::ActionResult {
        proto::ActionResult {
            execution_metadata: Some(proto::ExecutedActionMetadata {
                worker_completed_timestamp: Some(Timestamp {
                    seconds: secs,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_result_expires_by_its_workers_time_and_without_one_is_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let ttl = Duration::from_secs(10);
        assert!(!expired(&finished_at(995), ttl, now));
        assert!(expired(&finished_at(989), ttl, now));
        // A clock a little ahead of ours: not older than anything; far ahead: not believed.
        assert!(!expired(&finished_at(1_005), ttl, now));
        assert!(expired(&finished_at(1_000 + 3_600), ttl, now));
        assert!(expired(&proto::ActionResult::default(), ttl, now));
    }
}
