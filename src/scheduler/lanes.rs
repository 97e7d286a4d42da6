//! Where download jobs run: the run loop's own thread and a few "lane" threads, each with a
//! one-thread runtime and its own plain-HTTP connections.
//!
//! On tokio's multi-thread runtime a download hopped between worker threads at every step
//! (the job, hyper's connection task, each body chunk, the run loop), each hop a futex
//! wake-up and often a context switch: for 1,000 small files that was a quarter of the
//! process's CPU time. A lane keeps a transfer, its connection and its hashing on one thread;
//! the only cross-thread steps left are the job's start and its report to the run loop.
//! Large bodies are still hashed and written on the writer pool (`actions::download::pool`).
//!
//! Commands, groups and services stay on the run loop's thread: they spend their time in the
//! kernel, not on a runtime thread.

use std::future::Future;
use std::num::NonZero;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// More download threads than this never helped: past the cores they only add wake-ups.
const MAX_LANES: usize = 4;

/// How many lanes downloads are spread over: one per core (the run loop's thread is lane 0).
/// Asked once: the HTTP client sizes its connection pools by it, the run starts that many.
pub(super) fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, NonZero::get)
            .clamp(1, MAX_LANES)
    })
}

/// The lane threads of a run; lane 0 is the caller's runtime. Dropping it lets the threads
/// end (any idle keep-alive connection goes with them).
pub(super) struct Lanes {
    /// Lanes 1.. (a thread that could not be started is left out).
    others: Vec<Lane>,
    /// Jobs spawned so far, for round-robin.
    spawned: usize,
}

struct Lane {
    handle: Handle,
    /// Dropped with the lane: the thread's `block_on` returns and its runtime shuts down.
    _stop: oneshot::Sender<()>,
}

impl Lanes {
    /// Starts `count - 1` lane threads (lane 0 is the calling runtime).
    pub(super) fn start(count: usize) -> Self {
        let others = (1..count).filter_map(start_lane).collect();
        Self { others, spawned: 0 }
    }

    /// Runs `job` on the next lane in turn.
    pub(super) fn spawn<F>(&mut self, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let lane = self.spawned % (self.others.len() + 1);
        self.spawned += 1;
        match lane.checked_sub(1).and_then(|i| self.others.get(i)) {
            Some(other) => drop(other.handle.spawn(job)),
            None => drop(tokio::spawn(job)),
        }
    }
}

fn start_lane(lane: usize) -> Option<Lane> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(format!("taskrun-lane-{lane}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!("cannot start download lane {lane}: {e}");
                    return;
                }
            };
            crate::actions::download::enter_lane(lane);
            if handle_tx.send(runtime.handle().clone()).is_err() {
                return;
            }
            // Ends when the run drops its lanes (the sender) or the process exits.
            let _ = runtime.block_on(stop_rx);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start download lane {lane}: {e}");
        return None;
    }
    let handle = handle_rx.recv().ok()?;
    Some(Lane {
        handle,
        _stop: stop_tx,
    })
}

/// The run's HTTP client, built only when a selected task downloads (it loads TLS roots),
/// with one plain-HTTP connection pool per lane.
pub(super) fn http_client(
    plan: &crate::plan::Plan,
) -> Result<std::sync::Arc<crate::actions::download::HttpClient>, String> {
    let downloads = plan
        .order
        .iter()
        .any(|&i| matches!(plan.task(i).action, crate::model::Action::Download(_)));
    if !downloads {
        return Err("no download task in this run".into());
    }
    crate::actions::download::HttpClient::with_lanes(&plan.pipeline.http, count())
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())
}
