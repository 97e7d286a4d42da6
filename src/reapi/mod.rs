//! A client for the Remote Execution API v2 (SPEC §11): send a command task to a build
//! cluster (BuildGrid, Buildbarn, BuildBuddy, ...) and bring its results back into the
//! workspace as a local run would leave them.
//!
//! The layers, bottom up: [`digest`] (sha256 + size), [`tree`] (the input root as Merkle
//! `Directory` blobs), [`action`] (the `Command` and `Action` messages, whose digest is the
//! cache key), [`client`] (the gRPC calls: capabilities, CAS transfers, ActionCache,
//! Execute), [`run`] (one action end to end). [`error`] says which failures are the
//! cluster's (retry, then fall back to a local run) and which are the action's own.
//!
//! The messages are the generated ones of the `bazel-remote-apis` crate, re-exported as
//! [`proto`]; nothing here needs `protoc`.

pub mod action;
pub mod client;
pub mod digest;
pub mod error;
mod outputs;
pub mod run;
pub mod tree;

pub use action::{ActionSpec, ApiVersion, PreparedAction};
pub use client::{BlobSource, Capabilities, Client, ClientOptions, UploadBlob, UploadStats};
pub use digest::Digest;
pub use error::{ErrorKind, ReapiError};
pub use run::{
    ExecutionInfo, RemoteOutcome, RunOptions, WrittenOutput, run_action, run_action_noting,
};
pub use tree::{InputFile, InputTree};

/// The REAPI v2 messages and service clients (`build.bazel.remote.execution.v2`).
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;
