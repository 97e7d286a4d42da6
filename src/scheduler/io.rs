//! What a run is given ([`RunOptions`], from the command line) and what it hands back
//! ([`RunResult`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::earlier::{self, Earlier};
use super::signals::Signal;
use crate::lockfile::standing::NewPin;
use crate::plan::placement::Placements;
use crate::report::RunReport;

/// How a run is carried out (from the command line).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run id (see [`crate::report::new_run_id`]).
    pub run_id: String,
    /// `-j`: overrides `pipeline.concurrency`.
    pub jobs: Option<usize>,
    /// `--keep-going` (else the pipeline's `fail_fast` decides).
    pub keep_going: bool,
    /// Where task logs go (`.taskrun/logs/<run-id>`); created by the caller. None: no logs.
    pub log_dir: Option<PathBuf>,
    /// Listen for SIGINT/SIGTERM/SIGHUP (the binary does; library tests need not).
    pub handle_signals: bool,
    /// `-v`: replay a cache hit's recorded output.
    pub replay_cached_output: bool,
    /// Where each task runs (SPEC §11); `None`: everything here.
    pub placements: Option<Placements>,
    /// `--force`: a remote executor's ActionCache is not taken either.
    pub force: bool,
    /// The phases of this run before this one (see [`Earlier`]); None for a run in one go.
    pub earlier: Option<Arc<Earlier>>,
    /// A signal that came before the loop listened (see [`super::wait_until`]): the run starts
    /// interrupted, runs nothing, and is reported as such.
    pub interrupted_before: Option<Signal>,
}

/// What a finished run hands back.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The report (also sent to the sinks as `RunFinished`).
    pub report: Arc<RunReport>,
    /// The process exit code (0, 1, 130 or 143).
    pub exit_code: u8,
    /// The content of each download the lockfile does not pin yet that succeeded, for the
    /// caller to record (SPEC §10: trust on first use).
    pub new_pins: Vec<NewPin>,
    /// What a next phase of the same run needs (see [`Earlier::after`]).
    pub(crate) end: earlier::PhaseEnd,
}
