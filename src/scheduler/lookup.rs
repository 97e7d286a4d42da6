//! Cache checks off the run loop, on a few dedicated threads.
//!
//! A no-op rerun is thousands of stats and small reads. Feeding them through one channel to a
//! fixed set of threads costs far less per task than a spawned job and two blocking-pool
//! hand-offs each, and a lookup takes no concurrency slot: only running a task does.
//!
//! Results go back in batches while more lookups are queued (one wake-up of the run loop per
//! batch, not per task); a thread that finds the queue empty, or has held a result for
//! [`BATCH_MAX_AGE`], sends what it has at once, so dependents never wait on a batch.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Loop;
use super::state::Stage;
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

/// Results held back at most this long while more lookups are queued.
const BATCH_MAX_AGE: Duration = Duration::from_millis(2);
/// Results per batch at most.
const BATCH_MAX: usize = 256;

fn serve(shared: &Shared, rx: &Mutex<mpsc::Receiver<(usize, Vec<Digest>)>>) {
    let mut batch: Vec<Done> = Vec::new();
    let mut oldest = Instant::now();
    while let Some((task, deps)) = next_job(shared, rx, &mut batch) {
        if batch.is_empty() {
            oldest = Instant::now();
        }
        batch.push(look_up(shared, task, &deps));
        if (batch.len() >= BATCH_MAX || oldest.elapsed() >= BATCH_MAX_AGE)
            && !flush(shared, &mut batch)
        {
            return;
        }
    }
    flush(shared, &mut batch);
}

/// The next queued lookup; when none is queued, first sends the held results, then waits.
/// `None`: the run is over (or the run loop is gone).
fn next_job(
    shared: &Shared,
    rx: &Mutex<mpsc::Receiver<(usize, Vec<Digest>)>>,
    batch: &mut Vec<Done>,
) -> Option<(usize, Vec<Digest>)> {
    // Never wait for the queue while holding results: the thread holding the lock may be
    // waiting for work that only those results can release.
    if let Ok(rx) = rx.try_lock() {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
    }
    if !flush(shared, batch) {
        return None;
    }
    rx.lock().ok()?.recv().ok()
}

/// Sends the held results; false when the run loop is gone.
fn flush(shared: &Shared, batch: &mut Vec<Done>) -> bool {
    match batch.len() {
        0 => true,
        1 => batch.pop().is_some_and(|d| shared.done.send(d).is_ok()),
        _ => shared.done.send(Done::Batch(std::mem::take(batch))).is_ok(),
    }
}

fn look_up(shared: &Shared, task: usize, deps: &[Digest]) -> Done {
    match check_cache(shared, task, deps) {
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
    }
}

impl Loop<'_> {
    /// Sends the ready tasks to the lookup threads; a hit never takes a slot.
    pub(super) fn dispatch_lookups(&mut self) {
        let pending = std::mem::take(&mut self.to_lookup);
        for i in pending {
            if self.recs[i].stage != Stage::Ready {
                continue;
            }
            let deps = self.dep_digests(i);
            let shared = &self.shared;
            let pool = self.lookups.get_or_insert_with(|| {
                LookupPool::start(shared.clone(), shared.cache.lookup_threads())
            });
            let rec = &mut self.recs[i];
            rec.stage = Stage::Running;
            rec.looked_up = true;
            rec.lookup = super::state::LookupState::InFlight;
            rec.mark_started();
            if pool.submit(i, deps) {
                self.active += 1;
            } else {
                self.fail(i, "internal: the cache lookup threads are gone".into());
            }
        }
    }

    /// The cache said run: queue for slots (or wait for the services it needs).
    pub(super) fn on_looked(&mut self, task: usize, key: Option<String>) {
        // Its time starts when it takes a slot, as a command's does: a download queued
        // behind others is not slow (the report, the critical path, the trace's lanes).
        self.recs[task].started = None;
        if !self.services_ready(task) {
            return self.on_miss_needing_services(task, key);
        }
        let rec = &mut self.recs[task];
        rec.key = key;
        rec.stage = Stage::Ready;
        self.enqueue(task, false);
    }
}
