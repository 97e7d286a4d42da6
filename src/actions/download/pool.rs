//! The download writers' thread pool: a few threads, shared by every transfer of the process,
//! that hash and write full buffers.
//!
//! Hashing (sha256, ~1.6 GB/s per core) and file writes are blocking work that must not run
//! on the tokio threads for long. One blocking thread per transfer (what `spawn_blocking` per
//! transfer gave) costs, at concurrency 16, sixteen stacks and sixteen allocator heaps with
//! their cached pages, plus a futex round trip per chunk. The work is CPU-bound, so threads
//! beyond the core count only add memory; and each transfer queues at most one job at a time
//! (see `part_writer`), so no transfer waits behind more than one buffer of each other transfer.
//!
//! A job that panics loses its result ([`Pending`] yields `None`) but not the thread.

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZero;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

/// More writer threads than this never helps: a 1 GB/s network needs less than one core of
/// sha256.
const MAX_THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

static QUEUE: Queue = Queue {
    jobs: Mutex::new(VecDeque::new()),
    ready: Condvar::new(),
};

/// How many pool threads run (started on first use; 0 if none could be spawned, and jobs
/// then run on the caller's thread).
static STARTED: OnceLock<usize> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn started() -> usize {
    *STARTED.get_or_init(|| {
        let n = std::thread::available_parallelism()
            .map_or(2, NonZero::get)
            .clamp(1, MAX_THREADS);
        let mut ok = 0;
        for i in 0..n {
            let spawned = std::thread::Builder::new()
                .name(format!("taskrun-dl-{i}"))
                .spawn(work);
            ok += usize::from(spawned.is_ok());
        }
        ok
    })
}

/// The number of pool threads (0 when jobs run on the caller's thread).
pub(crate) fn threads() -> usize {
    started()
}

fn work() {
    loop {
        let job = {
            let mut jobs = lock(&QUEUE.jobs);
            loop {
                if let Some(job) = jobs.pop_front() {
                    break job;
                }
                jobs = QUEUE
                    .ready
                    .wait(jobs)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

/// Runs `f` on a pool thread; await the returned [`Pending`] (or [`Pending::wait`]) for its
/// value.
pub(crate) fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Pending<T> {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState {
            value: None,
            waker: None,
        }),
        done: Condvar::new(),
    });
    let out = slot.clone();
    let job = move || out.put(catch_unwind(AssertUnwindSafe(f)).ok());
    if started() > 0 {
        lock(&QUEUE.jobs).push_back(Box::new(job));
        QUEUE.ready.notify_one();
    } else {
        job();
    }
    Pending { slot }
}

struct Slot<T> {
    state: Mutex<SlotState<T>>,
    done: Condvar,
}

struct SlotState<T> {
    /// `Some(None)` when the job panicked.
    value: Option<Option<T>>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn put(&self, value: Option<T>) {
        let waker = {
            let mut state = lock(&self.state);
            state.value = Some(value);
            state.waker.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The result of a job handed to the pool: `None` if the job panicked.
pub(crate) struct Pending<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Pending<T> {
    /// Blocks the calling thread until the job is done; for `Drop` impls, which cannot await.
    pub fn wait(self) -> Option<T> {
        let mut state = lock(&self.slot.state);
        loop {
            if let Some(value) = state.value.take() {
                return value;
            }
            state = self
                .slot
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = lock(&self.slot.state);
        match state.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_report_panics_as_none() {
        assert_eq!(spawn(|| 6 * 7).await, Some(42));
        assert_eq!(spawn(|| "x".len()).wait(), Some(1));
        let panicked: Pending<u8> = spawn(|| panic!("job failed"));
        assert_eq!(panicked.await, None);
        // The thread survived the panic.
        assert_eq!(spawn(|| 1).await, Some(1));
    }
}
