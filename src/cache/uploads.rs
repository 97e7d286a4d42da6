//! Uploads to the remote cache in the background: a task's entry travels while the next task
//! runs, instead of holding the finished task's concurrency slot for its round trips.
//!
//! Entries are uploaded in the order they were recorded, each one blobs first and record last
//! ([`RemoteCache::upload`]), by a few threads. The run waits for them at its end
//! ([`Uploads::finish`]); an interrupted run drops the ones not started yet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::record::ActionRecord;
use super::remote::RemoteCache;
use super::store::Store;

/// Threads uploading at once: each upload is a few requests spent waiting.
const THREADS: usize = 4;

/// The queue of entries to upload and the threads that do it.
pub(crate) struct Uploads {
    queue: Option<Sender<Box<ActionRecord>>>,
    threads: Vec<JoinHandle<()>>,
    abandon: Arc<AtomicBool>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Uploads {
    /// Starts the threads; they log through the caller's tracing dispatcher.
    pub(crate) fn start(remote: Arc<RemoteCache>, store: Store) -> Self {
        let (tx, rx) = channel::<Box<ActionRecord>>();
        let rx = Arc::new(Mutex::new(rx));
        let abandon = Arc::new(AtomicBool::new(false));
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let threads = (0..THREADS)
            .filter_map(|n| {
                let (rx, remote, store) = (rx.clone(), remote.clone(), store.clone());
                let (abandon, dispatch) = (abandon.clone(), dispatch.clone());
                std::thread::Builder::new()
                    .name(format!("taskrun-upload-{n}"))
                    .spawn(move || {
                        tracing::dispatcher::with_default(&dispatch, || {
                            upload_all(&rx, &remote, &store, &abandon);
                        });
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        Self {
            queue: (!threads.is_empty()).then_some(tx),
            threads,
            abandon,
        }
    }

    /// Queues `record`; gives it back when no thread could be started (the caller uploads it).
    pub(crate) fn push(&self, record: Box<ActionRecord>) -> Result<(), Box<ActionRecord>> {
        match &self.queue {
            Some(tx) => tx.send(record).map_err(|e| e.0),
            None => Err(record),
        }
    }

    /// Waits for the queued uploads; with `abandon`, only for the ones already started.
    pub(crate) fn finish(&mut self, abandon: bool) {
        if abandon {
            self.abandon.store(true, Ordering::Relaxed);
        }
        self.queue = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        self.finish(false);
    }
}

fn upload_all(
    rx: &Mutex<Receiver<Box<ActionRecord>>>,
    remote: &RemoteCache,
    store: &Store,
    abandon: &AtomicBool,
) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(record) = next else {
            return;
        };
        if !abandon.load(Ordering::Relaxed) {
            remote.upload(store, &record);
        }
    }
}
