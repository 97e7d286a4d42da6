//! Cache checks off the run loop, on a few dedicated threads.
//!
//! A no-op rerun is thousands of stats and small reads. Feeding them through one channel to a
//! fixed set of threads costs far less per task than a spawned job and two blocking-pool
//! hand-offs each, and a lookup takes no concurrency slot: only running a task does.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::worker::{Checked, Done, Shared, check_cache};
use crate::cache::Digest;

/// Threads asking the cache; dropped with the run (the threads end when the channel closes).
pub(super) struct LookupPool {
    tx: mpsc::Sender<(usize, Vec<Digest>)>,
}

impl LookupPool {
    /// Starts `threads` lookup threads that report to the run loop's `done` channel.
    pub(super) fn start(shared: Arc<Shared>, threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<(usize, Vec<Digest>)>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let (rx, shared) = (rx.clone(), shared.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("taskrun-lookup-{n}"))
                .spawn(move || serve(&shared, &rx));
            if let Err(e) = spawned {
                tracing::warn!("cannot start a cache lookup thread: {e}");
            }
        }
        Self { tx }
    }

    /// Asks the cache about `task`, whose deps finished with `dep_digests`.
    pub(super) fn submit(&self, task: usize, dep_digests: Vec<Digest>) -> bool {
        self.tx.send((task, dep_digests)).is_ok()
    }
}

fn serve(shared: &Shared, rx: &Mutex<mpsc::Receiver<(usize, Vec<Digest>)>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((task, deps)) = job else {
            return;
        };
        let done = match check_cache(shared, task, &deps) {
            Checked::Hit {
                key,
                source,
                digest,
                output,
            } => Done::Hit {
                task,
                key,
                source,
                digest,
                output,
            },
            Checked::Run { key } => Done::Looked { task, key },
            Checked::Failed(error) => Done::Failed { task, error },
        };
        if shared.done.send(done).is_err() {
            return;
        }
    }
}
