//! Uploads to the remote cache in the background: a task's entry travels while the next task
//! runs, instead of holding the finished task's concurrency slot for its round trips.
//!
//! Entries are uploaded in the order they were recorded, each one blobs first and record last
//! ([`RemoteBackend::upload`]), by a few threads. The run waits for them at its end
//! ([`Uploads::finish`]); an interrupted run drops the ones not started yet. A wait of more
//! than a second says so on stderr, so a run does not sit silent after its summary.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::RemoteBackend;
use super::record::ActionRecord;
use super::store::Store;

/// Threads uploading at once: each upload is a few requests spent waiting.
const THREADS: usize = 4;

/// How long the end of a run waits for uploads before saying what it is waiting for.
const QUIET_WAIT: Duration = Duration::from_secs(1);

/// The queue of entries to upload and the threads that do it.
pub(crate) struct Uploads {
    queue: Option<Sender<Box<ActionRecord>>>,
    threads: Vec<JoinHandle<()>>,
    abandon: Arc<AtomicBool>,
    /// Entries queued and not yet done.
    pending: Arc<AtomicUsize>,
    /// The remote's URL, for the notice.
    url: String,
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
    pub(crate) fn start(remote: Arc<RemoteBackend>, store: Store) -> Self {
        let (tx, rx) = channel::<Box<ActionRecord>>();
        let rx = Arc::new(Mutex::new(rx));
        let abandon = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(AtomicUsize::new(0));
        let url = remote.url().to_string();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let threads = (0..THREADS)
            .filter_map(|n| {
                let (rx, remote, store) = (rx.clone(), remote.clone(), store.clone());
                let (abandon, dispatch) = (abandon.clone(), dispatch.clone());
                let pending = pending.clone();
                std::thread::Builder::new()
                    .name(format!("taskrun-upload-{n}"))
                    .spawn(move || {
                        tracing::dispatcher::with_default(&dispatch, || {
                            upload_all(&rx, &remote, &store, &abandon, &pending);
                        });
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        Self {
            queue: (!threads.is_empty()).then_some(tx),
            threads,
            abandon,
            pending,
            url,
        }
    }

    /// Queues `record`; gives it back when no thread could be started (the caller uploads it).
    pub(crate) fn push(&self, record: Box<ActionRecord>) -> Result<(), Box<ActionRecord>> {
        let Some(tx) = &self.queue else {
            return Err(record);
        };
        self.pending.fetch_add(1, Ordering::Relaxed);
        tx.send(record).map_err(|e| {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            e.0
        })
    }

    /// Waits for the queued uploads; with `abandon`, only for the ones already started.
    pub(crate) fn finish(&mut self, abandon: bool) {
        self.finish_with(abandon, &mut std::io::stderr());
    }

    /// [`Self::finish`], with the notice of a long wait written to `notice`.
    pub(crate) fn finish_with(&mut self, abandon: bool, notice: &mut dyn Write) {
        if abandon {
            self.abandon.store(true, Ordering::Relaxed);
        }
        self.queue = None;
        let start = Instant::now();
        while self.pending.load(Ordering::Relaxed) > 0 && start.elapsed() < QUIET_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let left = self.pending.load(Ordering::Relaxed);
        if left > 0 && !abandon {
            let _ = writeln!(
                notice,
                "uploading {left} more cache entries to {}...",
                self.url
            );
            let _ = notice.flush();
        }
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
    remote: &RemoteBackend,
    store: &Store,
    abandon: &AtomicBool,
    pending: &AtomicUsize,
) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(record) = next else {
            return;
        };
        if !abandon.load(Ordering::Relaxed) {
            remote.upload(store, &record);
        }
        pending.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;
    use crate::cache::record::RECORD_VERSION;
    use crate::cache::remote::{RemoteCache, RemoteOptions};

    /// A remote that answers every request with 200 after `delay`, counting the `PUT`s.
    fn slow_remote(delay: Duration) -> (Arc<RemoteBackend>, Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let puts = Arc::new(Mutex::new(0));
        let counted = puts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let (mut line, mut len, mut put) = (String::new(), 0usize, false);
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            put |= lower.starts_with("put ");
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        std::thread::sleep(delay);
                        if put {
                            *counted.lock().unwrap() += 1;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if conn.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let remote = RemoteCache::new(&url.parse().unwrap(), RemoteOptions::default());
        (Arc::new(RemoteBackend::Http(remote)), puts)
    }

    fn record(n: usize) -> Box<ActionRecord> {
        Box::new(ActionRecord {
            format_version: RECORD_VERSION,
            key: format!("{n:064x}"),
            task: format!("t{n}"),
            parts: Vec::new(),
            outputs: Vec::new(),
            output_dirs: Vec::new(),
            digest: String::new(),
            log: None,
            created: String::new(),
            last_used: String::new(),
            http: None,
            checksum: String::new(),
        })
    }

    /// The end of a run waits for every queued entry, and says so when that takes more than
    /// a second; an interrupted one waits only for the entries already being uploaded (one per
    /// thread at most).
    #[test]
    fn finish_waits_for_the_queue_and_abandon_for_the_started_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false);
        // 250 ms per request on 4 threads: 8 entries take 0.5 s, 24 take 1.5 s.
        for (entries, abandon, want, noticed) in [
            (8, false, 8..=8, false),
            (12, true, 0..=THREADS, false),
            (24, false, 24..=24, true),
        ] {
            let (remote, puts) = slow_remote(Duration::from_millis(250));
            let mut uploads = Uploads::start(remote, store.clone());
            for n in 0..entries {
                uploads.push(record(n)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
            let mut notice = Vec::new();
            uploads.finish_with(abandon, &mut notice);
            let done = *puts.lock().unwrap();
            assert!(want.contains(&done), "abandon {abandon}: {done} uploads");
            let notice = String::from_utf8(notice).unwrap();
            assert_eq!(
                notice.contains("more cache entries to http://127.0.0.1:"),
                noticed,
                "{notice:?}"
            );
        }
    }
}
