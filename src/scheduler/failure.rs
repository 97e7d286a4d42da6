//! Why a task failed outside its attempts: before it could run (inputs, the cache, the remote
//! action) or while its result was being recorded. Kept typed until the run loop writes it
//! into the report, where it becomes the task's `error` text.

use crate::actions::remote::spec::SpecError;
use crate::cache::CacheError;

/// A task's failure that is not an attempt's own (an attempt's is in its `AttemptResult`).
#[derive(Debug, thiserror::Error)]
pub(super) enum TaskFailure {
    /// Its `inputs` could not be expanded or read: said as it is (the user's mistake, not
    /// the cache's).
    #[error("{0}")]
    Inputs(CacheError),
    /// The cache could not be asked, or could not record the result (a declared output
    /// the task did not make is said as it is: the task's mistake, also with the cache off).
    #[error("{}", cache_failure(.0))]
    Cache(CacheError),
    /// The action for the remote executor could not be built.
    #[error("{0}")]
    RemoteSpec(SpecError),
    /// A task placed on the cluster when the run has no executor (a bug).
    #[error("internal: no remote executor for a remote task")]
    NoExecutor,
    /// A blocking job panicked or was cancelled (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A cache failure in words: `cache: ...`, but for the task's own outputs.
fn cache_failure(e: &CacheError) -> String {
    match e {
        CacheError::Outputs(why) => why.clone(),
        other => format!("cache: {other}"),
    }
}
