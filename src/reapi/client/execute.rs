//! The ActionCache (GetActionResult, UpdateActionResult) and execution: Execute streams
//! `Operation`s until one is `done`; a stream that ends or breaks before that is resumed with
//! WaitExecution on the operation's name; a caller that stops waiting (cancelled, or the
//! future dropped) cancels the operation (google.longrunning CancelOperation, best effort)
//! so the cluster does not run work nobody will read.
//!
//! At most `open_streams` executions wait on an open stream: a server that serves each call
//! on a thread of a fixed pool (BuildGrid) would otherwise give every thread to streams and
//! refuse its own bots, so nothing would ever run. An execution submitted while every
//! stream is taken lets go of its stream once the operation is named and polls it
//! (GetOperation) until it is done or a stream comes free.
//!
//! A [`Deadline`] (the task's `timeout`) bounds the wait from when a worker takes the
//! action: past it (and a short grace for the worker's report) the operation is cancelled as
//! a timed-out action, so a lost worker does not hold the run. The queue is not bounded: a
//! busy cluster is not the task's failure.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tonic::Code;

use super::Client;
use super::progress::{Deadline, Seen};
use crate::reapi::digest::Digest;
use crate::reapi::error::{ReapiError, is_not_found, response_status};
use crate::reapi::proto;
use bazel_remote_apis::google::longrunning::{
    CancelOperationRequest, GetOperationRequest, Operation, operation,
};

/// How long the operation may stay out of reach (its stream ending or breaking, WaitExecution
/// failing) before it is taken as lost: long enough for a server restart, short enough that
/// a dead cluster soon sends the scheduler to its retry-then-fallback rule.
const RESUME_WINDOW: Duration = Duration::from_secs(20);
/// The first poll of an operation that waits without a stream, after submitting it; the
/// interval doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(100);
/// The longest interval between polls: a done action is seen within it.
const MAX_POLL: Duration = Duration::from_millis(500);
/// Longest wait for CancelOperation (best effort: the run is stopping).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait, on a cancel, to learn whether a worker took the operation (the report's
/// `executed_on`; the run is stopping).
const TAKEN_TIMEOUT: Duration = Duration::from_secs(1);

impl Client {
    /// The cached result of `action`, or `None` on a miss (NOT_FOUND).
    pub async fn get_action_result(
        &self,
        action: &Digest,
    ) -> Result<Option<proto::ActionResult>, ReapiError> {
        self.get_action_result_inlining(action, &[]).await
    }

    /// [`Self::get_action_result`], asking the server to inline the content of the output
    /// files at `inline` (it may not: a file's `contents` can still be empty).
    pub async fn get_action_result_inlining(
        &self,
        action: &Digest,
        inline: &[&str],
    ) -> Result<Option<proto::ActionResult>, ReapiError> {
        let req = proto::GetActionResultRequest {
            instance_name: self.instance.to_string(),
            action_digest: Some(action.to_proto()),
            inline_stdout: true,
            inline_stderr: true,
            inline_output_files: inline.iter().map(|p| (*p).to_string()).collect(),
            digest_function: proto::digest_function::Value::Sha256 as i32,
        };
        match self.action_cache().get_action_result(req).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if is_not_found(&s) => Ok(None),
            Err(s) => Err(ReapiError::from_status("GetActionResult", &s)),
        }
    }

    /// Stores `result` as the result of `action` (a result computed elsewhere, for a gRPC
    /// cache without execution); the Action, Command and every blob the result names must
    /// already be in the CAS.
    pub async fn update_action_result(
        &self,
        action: &Digest,
        result: proto::ActionResult,
    ) -> Result<proto::ActionResult, ReapiError> {
        let req = proto::UpdateActionResultRequest {
            instance_name: self.instance.to_string(),
            action_digest: Some(action.to_proto()),
            action_result: Some(result),
            results_cache_policy: None,
            digest_function: proto::digest_function::Value::Sha256 as i32,
        };
        self.action_cache()
            .update_action_result(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| ReapiError::from_status("UpdateActionResult", &s))
    }

    /// Executes `action` (its Action, Command and inputs must be in the CAS) and waits for
    /// its `ExecuteResponse`, whose status is OK (a non-OK one is returned as the error it
    /// stands for: a timeout, a cluster failure, missing inputs). When `cancel` resolves
    /// first, or the returned future is dropped, the operation is cancelled; so it is at
    /// `deadline`, with the error `Deadline::missed` gives. `taken` is set when it is
    /// cancelled after a worker took the action: whether the command may have run, which
    /// an interrupt in the queue must not claim.
    pub async fn execute(
        &self,
        action: &Digest,
        skip_cache_lookup: bool,
        deadline: Option<Deadline>,
        cancel: impl Future<Output = ()>,
        taken: &AtomicBool,
    ) -> Result<proto::ExecuteResponse, ReapiError> {
        let guard = CancelOnDrop {
            client: self.clone(),
            seen: Arc::new(Mutex::new(Seen::default())),
        };
        let work = self.execute_inner(action, skip_cache_lookup, &guard.seen);
        let result = tokio::select! {
            r = work => r,
            () = cancel => {
                if self.taken(&guard.seen).await {
                    taken.store(true, Ordering::Relaxed);
                }
                if let Some(name) = guard.take() {
                    self.cancel_operation(&name).await;
                }
                return Err(ReapiError::Cancelled);
            }
            () = Deadline::reached(deadline, &guard.seen) => {
                if let Some(name) = &guard.take() {
                    self.cancel_operation(name).await;
                }
                // `reached` resolves only with a deadline.
                let missed = deadline.map(|d| d.missed());
                return Err(missed.unwrap_or(ReapiError::Cancelled));
            }
        };
        // Done (or failed without a live operation): nothing left to cancel.
        guard.take();
        result
    }

    async fn execute_inner(
        &self,
        action: &Digest,
        skip_cache_lookup: bool,
        name: &Mutex<Seen>,
    ) -> Result<proto::ExecuteResponse, ReapiError> {
        let req = proto::ExecuteRequest {
            instance_name: self.instance.to_string(),
            skip_cache_lookup,
            action_digest: Some(action.to_proto()),
            execution_policy: None,
            results_cache_policy: None,
            digest_function: proto::digest_function::Value::Sha256 as i32,
            inline_stdout: true,
            inline_stderr: true,
            inline_output_files: Vec::new(),
        };
        // Submitting takes a stream too: the Execute call is open until its first message.
        let permit = self.stream_permit().await?;
        let stream = self
            .execution()
            .execute(req)
            .await
            .map_err(|s| ReapiError::from_status("Execute", &s))?
            .into_inner();
        match self.follow(stream, name, true).await? {
            Followed::Done(done) => Ok(*done),
            Followed::Detached(op_name) => {
                // Every stream is taken: this one goes to an action still to be submitted.
                drop(permit);
                self.poll(&op_name, name).await
            }
        }
    }

    /// A permit to hold a stream open (see [`super::ClientOptions::open_streams`]).
    async fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ReapiError> {
        self.streams
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ReapiError::Cluster("the client is closing".to_string()))
    }

    /// Reads `stream` until the operation is done, resuming it with WaitExecution when it
    /// ends or breaks first. With `may_detach`, returns as soon as the operation is named and
    /// not done while no stream is free: the caller polls it instead.
    async fn follow(
        &self,
        mut stream: tonic::Streaming<Operation>,
        name: &Mutex<Seen>,
        may_detach: bool,
    ) -> Result<Followed, ReapiError> {
        // Since when the operation has been out of reach.
        let mut lost: Option<std::time::Instant> = None;
        loop {
            let why = match stream.message().await {
                Ok(Some(op)) => {
                    lost = None;
                    Seen::note(name, &op);
                    if op.done {
                        return finished(op).map(|r| Followed::Done(Box::new(r)));
                    }
                    if may_detach && !op.name.is_empty() && self.streams.available_permits() == 0 {
                        return Ok(Followed::Detached(op.name));
                    }
                    continue;
                }
                Ok(None) => "the operation stream ended before the operation was done".to_string(),
                Err(s) => {
                    let err = ReapiError::from_status("Execute", &s);
                    if !err.is_cluster_failure() || matches!(err, ReapiError::MissingBlobs(_)) {
                        return Err(err);
                    }
                    err.to_string()
                }
            };
            let Some(op_name) = Seen::name(name) else {
                return Err(ReapiError::Cluster(why));
            };
            let since = *lost.get_or_insert_with(std::time::Instant::now);
            tracing::debug!(operation = %op_name, "{why}; waiting on it again");
            stream = self.resume(&op_name, since, why).await?;
        }
    }

    /// Waits for operation `op_name` without a stream: GetOperation, soon at first and then
    /// every [`MAX_POLL`], until it is done. A stream that comes free is taken instead (no
    /// more polls), as is the first one free when the server has no Operations service.
    async fn poll(
        &self,
        op_name: &str,
        name: &Mutex<Seen>,
    ) -> Result<proto::ExecuteResponse, ReapiError> {
        let mut interval = FIRST_POLL;
        let mut reached = std::time::Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(MAX_POLL);
            let permit = match self.streams.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => match self.get_operation(op_name).await {
                    Ok(op) if op.done => return finished(op),
                    Ok(op) => {
                        Seen::note(name, &op);
                        reached = std::time::Instant::now();
                        None
                    }
                    Err(s) if is_not_found(&s) => {
                        return Err(ReapiError::Cluster(format!(
                            "operation {op_name} is gone from the cluster"
                        )));
                    }
                    Err(s) if s.code() == Code::Unimplemented => Some(self.stream_permit().await?),
                    Err(s) => {
                        let err = ReapiError::from_status("GetOperation", &s);
                        if !err.is_cluster_failure() {
                            return Err(err);
                        }
                        if reached.elapsed() > RESUME_WINDOW {
                            return Err(ReapiError::Cluster(format!(
                                "operation {op_name} lost: {err}"
                            )));
                        }
                        None
                    }
                },
            };
            if let Some(_permit) = permit {
                let why = "a stream came free".to_string();
                let stream = self.resume(op_name, std::time::Instant::now(), why).await?;
                return match self.follow(stream, name, false).await? {
                    Followed::Done(done) => Ok(*done),
                    // Not asked to detach: it does not.
                    Followed::Detached(_) => Err(ReapiError::Protocol(format!(
                        "operation {op_name}: left unfinished"
                    ))),
                };
            }
        }
    }

    /// Whether a worker has taken the operation: as last seen, or else as the server has it
    /// now (a polled operation's stage may be a poll old).
    async fn taken(&self, seen: &Mutex<Seen>) -> bool {
        if Seen::started_at(seen).is_some() {
            return true;
        }
        let Some(name) = Seen::name(seen) else {
            return false;
        };
        if let Ok(Ok(op)) = tokio::time::timeout(TAKEN_TIMEOUT, self.get_operation(&name)).await {
            Seen::note(seen, &op);
        }
        Seen::started_at(seen).is_some()
    }

    /// The operation `op_name` as the server has it now.
    async fn get_operation(&self, op_name: &str) -> Result<Operation, tonic::Status> {
        let req = GetOperationRequest {
            name: op_name.to_string(),
        };
        self.operations()
            .get_operation(req)
            .await
            .map(tonic::Response::into_inner)
    }

    /// A new stream of operation `op_name` (WaitExecution), tried with backoff until it is
    /// out of reach for longer than [`RESUME_WINDOW`] counted from `since`.
    async fn resume(
        &self,
        op_name: &str,
        since: std::time::Instant,
        mut why: String,
    ) -> Result<tonic::Streaming<Operation>, ReapiError> {
        let mut tries: u32 = 0;
        loop {
            if since.elapsed() > RESUME_WINDOW {
                return Err(ReapiError::Cluster(format!(
                    "operation {op_name} lost: {why}"
                )));
            }
            // At once the first time (a stream that ended cleanly), then backing off to 2 s.
            if tries > 0 {
                tokio::time::sleep(Duration::from_millis(100 << tries.min(4))).await;
            }
            tries += 1;
            let wait = proto::WaitExecutionRequest {
                name: op_name.to_string(),
            };
            match self.execution().wait_execution(wait).await {
                Ok(s) => return Ok(s.into_inner()),
                Err(s) if is_not_found(&s) => {
                    return Err(ReapiError::Cluster(format!(
                        "operation {op_name} is gone from the cluster ({why})"
                    )));
                }
                Err(s) => {
                    let err = ReapiError::from_status("WaitExecution", &s);
                    if !err.is_cluster_failure() {
                        return Err(err);
                    }
                    why = err.to_string();
                }
            }
        }
    }

    /// Asks the cluster to cancel operation `name`; failures are only logged.
    pub async fn cancel_operation(&self, name: &str) {
        let req = CancelOperationRequest {
            name: name.to_string(),
        };
        let mut ops = self.operations();
        match tokio::time::timeout(CANCEL_TIMEOUT, ops.cancel_operation(req)).await {
            Ok(Ok(_)) => tracing::debug!(operation = name, "cancelled"),
            Ok(Err(s)) => tracing::debug!(operation = name, "CancelOperation: {s}"),
            Err(_) => tracing::debug!(operation = name, "CancelOperation timed out"),
        }
    }
}

/// How [`Client::follow`] ended.
enum Followed {
    /// The operation is done: its response.
    Done(Box<proto::ExecuteResponse>),
    /// It let go of its stream to poll the operation of this name instead.
    Detached(String),
}

/// The `ExecuteResponse` of a done operation, or the error it carries.
fn finished(op: Operation) -> Result<proto::ExecuteResponse, ReapiError> {
    let resp = match op.result {
        Some(operation::Result::Response(any)) => proto::ExecuteResponse::decode(&*any.value)
            .map_err(|e| {
                ReapiError::Protocol(format!(
                    "operation {}: response is not an ExecuteResponse: {e}",
                    op.name
                ))
            })?,
        Some(operation::Result::Error(status)) => {
            if status.code == Code::Ok as i32 {
                return Err(ReapiError::Protocol(format!(
                    "operation {} is done with an OK error and no response",
                    op.name
                )));
            }
            return Err(ReapiError::from_rpc_status("execution", &status));
        }
        None => {
            return Err(ReapiError::Protocol(format!(
                "operation {} is done without a result",
                op.name
            )));
        }
    };
    if let Some(err) = response_status(&resp) {
        return Err(err);
    }
    if resp.result.is_none() {
        return Err(ReapiError::Protocol(format!(
            "operation {} finished without an ActionResult",
            op.name
        )));
    }
    Ok(resp)
}

/// Cancels the operation when the execute future is dropped before it finished.
struct CancelOnDrop {
    client: Client,
    seen: Arc<Mutex<Seen>>,
}

impl CancelOnDrop {
    /// The operation's name, disarming the guard.
    fn take(&self) -> Option<String> {
        Seen::take(&self.seen)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(name) = self.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            rt.spawn(async move { client.cancel_operation(&name).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::protobuf::Any;
    use bazel_remote_apis::google::rpc::Status;

    fn done(result: Option<operation::Result>) -> Operation {
        Operation {
            name: "op".into(),
            metadata: None,
            done: true,
            result,
        }
    }

    #[test]
    fn done_operations_give_the_response_or_its_error() {
        let resp = proto::ExecuteResponse {
            result: Some(proto::ActionResult {
                exit_code: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let any = Any {
            type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse".into(),
            value: resp.encode_to_vec(),
        };
        let got = finished(done(Some(operation::Result::Response(any)))).unwrap();
        assert_eq!(got.result.unwrap().exit_code, 3);
        let err = finished(done(Some(operation::Result::Error(Status {
            code: Code::Unavailable as i32,
            message: "bot lost".into(),
            details: vec![],
        }))))
        .unwrap_err();
        assert!(err.is_cluster_failure());
        // FAILED_PRECONDITION without MISSING violations: a refusal, not lost inputs.
        let refused = finished(done(Some(operation::Result::Error(Status {
            code: Code::FailedPrecondition as i32,
            ..Default::default()
        }))));
        assert!(matches!(refused, Err(ReapiError::Config(_))));
        assert!(matches!(finished(done(None)), Err(ReapiError::Protocol(_))));
        let no_result = Any {
            type_url: String::new(),
            value: proto::ExecuteResponse::default().encode_to_vec(),
        };
        assert!(matches!(
            finished(done(Some(operation::Result::Response(no_result)))),
            Err(ReapiError::Protocol(_))
        ));
    }
}
