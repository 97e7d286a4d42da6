//! [`ReapiError`]: what went wrong, sorted by who is to blame, because SPEC §11 treats each
//! differently. A cluster failure (unreachable, lost worker, overloaded) is retried with
//! backoff without using the task's attempts, then falls back to a local run; the action's
//! own failure (its timeout) is a failed attempt like a local one; a protocol error (a blob
//! that does not match its digest, a malformed answer) and a configuration error (no sha256,
//! no execution, a bad URL, refused credentials) are not cured by retrying.

use std::path::PathBuf;

use prost::Message;
use tonic::Code;

use super::proto;

/// A failure of a remote call or of the work around it.
#[derive(Debug, thiserror::Error)]
pub enum ReapiError {
    /// The cluster failed, not the action: worth retrying, then running locally.
    #[error("{0}")]
    Cluster(String),
    /// The cluster refused a call for load (RESOURCE_EXHAUSTED: a server with a fixed pool of
    /// threads that are all taken): it is up, so the call is tried again patiently before it
    /// counts as a cluster failure.
    #[error("{0}")]
    Busy(String),
    /// The cluster no longer has blobs the action needs (it answered FAILED_PRECONDITION
    /// with MISSING violations): upload them again and retry; still missing after that, it
    /// counts as a cluster failure.
    #[error("the cluster is missing inputs: {0}")]
    MissingBlobs(String),
    /// A blob the cluster named (an output of a cached result) is no longer in its CAS:
    /// execute again, skipping the cache lookup.
    #[error("blob {0} is missing from the cluster's CAS")]
    BlobNotFound(super::digest::Digest),
    /// The action ran past its timeout on the cluster (DEADLINE_EXCEEDED in the response).
    #[error("{0}")]
    TimedOut(String),
    /// The cluster answered something that breaks the protocol (a digest mismatch, an
    /// undeclared or unsafe output path, a malformed message), or refused a request as
    /// malformed.
    #[error("{0}")]
    Protocol(String),
    /// The setup cannot work: a bad URL or header, sha256 or execution not offered,
    /// credentials refused, a service not implemented.
    #[error("{0}")]
    Config(String),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The task's inputs cannot form an input root (a path that is both a file and a
    /// directory, a file that changed while it was sent).
    #[error("{0}")]
    Input(String),
    /// The run asked running work to stop.
    #[error("cancelled")]
    Cancelled,
}

/// Who is to blame for a [`ReapiError`], for the scheduler's retry-then-fallback rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retry with backoff (attempts not consumed), then fall back or fail as unreachable.
    Cluster,
    /// The action's own failure: a failed attempt.
    Action,
    /// A broken answer or request: not retried.
    Protocol,
    /// The configuration cannot work: not retried.
    Config,
    /// This machine's disk or the task's inputs.
    Local,
    /// The run is stopping.
    Cancelled,
}

impl ReapiError {
    /// Who is to blame.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Cluster(_) | Self::Busy(_) | Self::MissingBlobs(_) | Self::BlobNotFound(_) => {
                ErrorKind::Cluster
            }
            Self::TimedOut(_) => ErrorKind::Action,
            Self::Protocol(_) => ErrorKind::Protocol,
            Self::Config(_) => ErrorKind::Config,
            Self::Local { .. } | Self::Input(_) => ErrorKind::Local,
            Self::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// True when SPEC §11's "cluster failure" rule applies: retry with backoff, then run
    /// locally (with `fallback_local`) or fail saying the cluster is unreachable.
    pub fn is_cluster_failure(&self) -> bool {
        self.kind() == ErrorKind::Cluster
    }

    /// The cluster refused for load (see [`Self::Busy`]).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy(_))
    }

    /// A local I/O failure at `path`.
    pub fn local(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Local {
            path: path.into(),
            source,
        }
    }

    /// Classifies a failed call `what` by its gRPC status.
    pub fn from_status(what: &str, status: &tonic::Status) -> Self {
        let message = status.message();
        let text = if message.is_empty() {
            format!("{what}: {:?}", status.code())
        } else {
            format!("{what}: {:?}: {message}", status.code())
        };
        // The details are an encoded google.rpc.Status; unreadable ones say nothing.
        let details = bazel_remote_apis::google::rpc::Status::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default();
        classify(status.code(), text, lacks_blobs(&details))
    }

    /// Classifies a non-OK `google.rpc.Status` found inside a response (an
    /// `ExecuteResponse`, an `Operation`, a batch entry).
    pub fn from_rpc_status(what: &str, status: &bazel_remote_apis::google::rpc::Status) -> Self {
        let code = Code::from_i32(status.code);
        let text = if status.message.is_empty() {
            format!("{what}: {code:?}")
        } else {
            format!("{what}: {code:?}: {}", status.message)
        };
        if code == Code::DeadlineExceeded {
            return Self::TimedOut(text);
        }
        classify(code, text, lacks_blobs(&status.details))
    }

    /// A failure to connect or a broken connection (refused, reset): a cluster failure; but
    /// a TLS certificate the client refuses is a configuration error (retrying meets the
    /// same certificate).
    pub fn from_transport(what: &str, e: &tonic::transport::Error) -> Self {
        let mut text = format!("{what}: {e}");
        let mut tls = false;
        let mut src = std::error::Error::source(e);
        let mut last = e.to_string();
        while let Some(inner) = src {
            // Layers often repeat their cause's words ("tcp connect error: tcp connect
            // error"): each said once.
            let said = inner.to_string();
            if said != last {
                text.push_str(&format!(": {said}"));
            }
            last = said;
            tls |= is_certificate_error(inner);
            src = inner.source();
        }
        if tls {
            Self::Config(text)
        } else {
            Self::Cluster(text)
        }
    }
}

/// A rustls refusal of the server's certificate (possibly inside an `io::Error`).
fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    matches!(
        tls,
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

/// `google.rpc.PreconditionFailure`, which the crate's generated messages lack.
#[derive(Clone, PartialEq, prost::Message)]
struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<Violation>,
}

/// One `PreconditionFailure.Violation`; REAPI names a blob missing from the CAS with type
/// `MISSING` and subject `blobs/{hash}/{size}`.
#[derive(Clone, PartialEq, prost::Message)]
struct Violation {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    subject: String,
    #[prost(string, tag = "3")]
    description: String,
}

/// Whether a status's `details` say blobs are missing: a `PreconditionFailure` with a
/// `MISSING` violation (REAPI: the way a server says so). Any other FAILED_PRECONDITION
/// (an unknown platform property, a command not allowed) is the request's own problem.
fn lacks_blobs(details: &[bazel_remote_apis::google::protobuf::Any]) -> bool {
    details
        .iter()
        .filter(|any| any.type_url.ends_with("/google.rpc.PreconditionFailure"))
        .filter_map(|any| PreconditionFailure::decode(&*any.value).ok())
        .any(|pf| pf.violations.iter().any(|v| v.r#type == "MISSING"))
}

/// Sorts a status code into the kinds of [`ErrorKind`]; `lacks_blobs` tells a
/// FAILED_PRECONDITION for missing inputs (upload again) from a refusal (not retried).
fn classify(code: Code, text: String, lacks_blobs: bool) -> ReapiError {
    match code {
        // Down, overloaded, a lost worker or leader, a reset stream or broken connection
        // (tonic reports those as UNKNOWN or INTERNAL), a call that outlived the server's
        // own deadline: the cluster's trouble.
        Code::Unavailable
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::DeadlineExceeded => ReapiError::Cluster(text),
        Code::ResourceExhausted => ReapiError::Busy(text),
        Code::FailedPrecondition if lacks_blobs => ReapiError::MissingBlobs(text),
        Code::FailedPrecondition
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::Unimplemented => ReapiError::Config(text),
        _ => ReapiError::Protocol(text),
    }
}

/// True when `status` says the thing asked for does not exist (an ActionCache miss).
pub(crate) fn is_not_found(status: &tonic::Status) -> bool {
    status.code() == Code::NotFound
}

/// The `ExecuteResponse`'s status when it is not OK.
pub(crate) fn response_status(resp: &proto::ExecuteResponse) -> Option<ReapiError> {
    let status = resp.status.as_ref()?;
    if status.code == Code::Ok as i32 {
        return None;
    }
    let mut err = ReapiError::from_rpc_status("execution", status);
    if !resp.message.is_empty()
        && let ReapiError::TimedOut(text) | ReapiError::Cluster(text) = &mut err
    {
        text.push_str(&format!(" ({})", resp.message));
    }
    Some(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazel_remote_apis::google::rpc::Status;

    #[test]
    fn statuses_sort_into_kinds() {
        let kind = |c: Code| ReapiError::from_status("call", &tonic::Status::new(c, "m")).kind();
        assert_eq!(kind(Code::Unavailable), ErrorKind::Cluster);
        assert_eq!(kind(Code::Aborted), ErrorKind::Cluster);
        assert_eq!(kind(Code::ResourceExhausted), ErrorKind::Cluster);
        assert!(
            ReapiError::from_status("Execute", &tonic::Status::resource_exhausted("full"))
                .is_busy()
        );
        assert_eq!(kind(Code::Internal), ErrorKind::Cluster);
        // Without MISSING violations: the request's own problem.
        assert_eq!(kind(Code::FailedPrecondition), ErrorKind::Config);
        assert_eq!(kind(Code::PermissionDenied), ErrorKind::Config);
        assert_eq!(kind(Code::Unimplemented), ErrorKind::Config);
        assert_eq!(kind(Code::InvalidArgument), ErrorKind::Protocol);
        let err = ReapiError::from_status("GetActionResult", &tonic::Status::unavailable("down"));
        assert!(err.is_cluster_failure());
        assert_eq!(err.to_string(), "GetActionResult: Unavailable: down");
    }

    fn violation(kind: &str) -> bazel_remote_apis::google::protobuf::Any {
        let pf = PreconditionFailure {
            violations: vec![Violation {
                r#type: kind.into(),
                subject: "blobs/ab/1".into(),
                description: String::new(),
            }],
        };
        bazel_remote_apis::google::protobuf::Any {
            type_url: "type.googleapis.com/google.rpc.PreconditionFailure".into(),
            value: pf.encode_to_vec(),
        }
    }

    #[test]
    fn only_missing_violations_make_a_failed_precondition_missing_blobs() {
        let status = |kind: &str| Status {
            code: Code::FailedPrecondition as i32,
            message: "m".into(),
            details: vec![violation(kind)],
        };
        let missing = ReapiError::from_rpc_status("execution", &status("MISSING"));
        assert!(
            matches!(missing, ReapiError::MissingBlobs(_)),
            "{missing:?}"
        );
        let other = ReapiError::from_rpc_status("execution", &status("OTHER"));
        assert_eq!(other.kind(), ErrorKind::Config);
        // The same in a call's trailers (grpc-status-details-bin).
        let encoded = status("MISSING").encode_to_vec();
        let call = tonic::Status::with_details(Code::FailedPrecondition, "m", encoded.into());
        let err = ReapiError::from_status("Execute", &call);
        assert!(matches!(err, ReapiError::MissingBlobs(_)), "{err:?}");
        let bare = tonic::Status::failed_precondition("Unregistered platform property");
        assert_eq!(
            ReapiError::from_status("Execute", &bare).to_string(),
            "Execute: FailedPrecondition: Unregistered platform property"
        );
    }

    #[test]
    fn a_deadline_in_the_response_is_the_actions_own_timeout() {
        let resp = proto::ExecuteResponse {
            status: Some(Status {
                code: Code::DeadlineExceeded as i32,
                message: "ran 5s".into(),
                details: vec![],
            }),
            ..Default::default()
        };
        let err = response_status(&resp).unwrap();
        assert_eq!(err.kind(), ErrorKind::Action);
        assert!(!err.is_cluster_failure());
        let ok = proto::ExecuteResponse {
            status: Some(Status::default()),
            ..Default::default()
        };
        assert!(response_status(&ok).is_none());
        assert!(response_status(&proto::ExecuteResponse::default()).is_none());
    }
}
