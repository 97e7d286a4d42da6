//! The part-file writer: hashes a transfer's body and writes it to `<dest>.part`.
//!
//! Hashing and writing run on the shared writer pool ([`super::pool`]), one job per chunk
//! of hyper's (up to ~400 KiB), and the transfer waits for that job before it takes the next
//! chunk. hyper reads the next chunk from the socket meanwhile (its body channel holds one),
//! so receiving and hashing still overlap, while a transfer keeps at most two of hyper's
//! buffers alive; anything beyond that waits in the kernel's socket buffer, not in our heap.
//! (Queuing chunks, or copying them into buffers of our own while hyper read on, cost 1-3 MiB
//! per transfer at concurrency 16.) Small chunks are first copied together into one buffer
//! of [`BUFFER`] bytes, so a job is never tiny. With fewer large transfers than pool threads
//! (one big file), the next chunk may join the running job instead, so that the pool thread
//! goes on hashing without a round trip through the transfer's task.
//!
//! A body that fits in that buffer (small files) never leaves the task: it is hashed and
//! written in one go when it ends. That is tens of microseconds of blocking work on a tokio
//! thread, less than the cross-thread hand-off it saves.
//!
//! Files appear lazily: `<dest>.part` with the first write, `<dest>.part.json` once the part
//! file holds [`META_AFTER`] bytes, or when the transfer stops early (an error, a timeout, an
//! interrupt: whenever the sink is aborted or dropped unfinished). A hard kill can therefore
//! lose the resume data of a transfer that has received less than [`META_AFTER`] (it
//! restarts from zero next time), not of one that has received more.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use super::pool::{self, Pending};
use super::resume::{self, PartMeta};

/// Chunks smaller than this are copied into one buffer of this size before they are written,
/// and a body no larger is written inline; also the read size when hashing an existing part.
const BUFFER: usize = 128 * 1024;
/// Once the part file holds this many bytes `<dest>.part.json` is written, so that a transfer
/// worth resuming stays resumable even if the process is killed without a chance to write it.
const META_AFTER: u64 = 1024 * 1024;

/// What the writer needs to know before the first byte.
pub(crate) struct SinkSpec {
    /// Absolute destination; the part files sit beside it.
    pub dest: PathBuf,
    /// Bytes already in `<dest>.part` to keep (and hash first); 0 starts a fresh file.
    pub offset: u64,
    /// Body bytes expected after `offset`, when the server said (sizes the first buffer).
    pub expected: Option<u64>,
    /// Resume metadata to keep beside the part file; `None` when resume is off.
    pub meta: Option<PartMeta>,
    /// A `<dest>.part.json` may exist from an earlier transfer. With `offset` > 0 it is the
    /// metadata being continued; otherwise it is stale and removed before any byte is written.
    pub meta_on_disk: bool,
    /// The destination lock; released only when the files are settled.
    pub guard: OwnedMutexGuard<()>,
}

/// A finished, closed part file.
pub(crate) struct Written {
    /// Lowercase hex sha256 of the whole part file.
    pub sha256: String,
    /// Its length.
    pub size: u64,
    /// `<dest>.part.json` exists: remove it when the part file is moved to `dest`.
    pub meta_on_disk: bool,
    /// Still held: the caller verifies and renames under it.
    pub guard: OwnedMutexGuard<()>,
}

/// The on-disk side of one transfer; owned by the socket task, or by a pool job while one
/// runs.
struct Part {
    dest: PathBuf,
    /// Opened on the first write.
    file: Option<File>,
    /// Bytes of an earlier part file to keep; hashed when the file is opened for a digest.
    offset: u64,
    hasher: Sha256,
    /// Bytes in the part file once it is open.
    len: u64,
    meta: Option<PartMeta>,
    meta_on_disk: bool,
    guard: OwnedMutexGuard<()>,
}

impl Part {
    /// The part file, opened on first use: created (with its parent directories), or the
    /// kept prefix of an earlier one, which is hashed first when `hash` is set.
    fn open(&mut self, hash: bool) -> io::Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => self.create(hash)?,
        };
        Ok(self.file.insert(file))
    }

    fn create(&mut self, hash: bool) -> io::Result<File> {
        let part = resume::part_path(&self.dest);
        if self.offset == 0 {
            self.len = 0;
            return match File::create(&part) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    if let Some(parent) = part.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("cannot create {}: {e}", parent.display()),
                            )
                        })?;
                    }
                    File::create(&part)
                }
                other => other,
            };
        }
        let mut file = OpenOptions::new().read(true).write(true).open(&part)?;
        if hash {
            let hashed = hash_prefix(&mut file, self.offset, &mut self.hasher)?;
            if hashed != self.offset {
                return Err(io::Error::other(format!(
                    "{} shrank while resuming ({hashed} of {} bytes)",
                    part.display(),
                    self.offset
                )));
            }
        }
        file.set_len(self.offset)?;
        file.seek(SeekFrom::Start(self.offset))?;
        self.len = self.offset;
        Ok(file)
    }

    /// Hashes and writes `buf`; records the resume metadata once the part is worth it.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.open(true)?.write_all(buf)?;
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        if !self.meta_on_disk
            && self.len >= META_AFTER
            && let Some(meta) = &self.meta
        {
            resume::store(
                &self.dest,
                &PartMeta {
                    bytes: self.len,
                    ..meta.clone()
                },
            )?;
            self.meta_on_disk = true;
        }
        Ok(())
    }

    /// An unfinished transfer: writes what is buffered (no hashing: the digest is not needed)
    /// and the resume metadata. Nothing at all received from scratch leaves no files.
    fn keep(&mut self, buf: &[u8], meta: &PartMeta) -> io::Result<()> {
        if self.file.is_none() && self.offset == 0 && buf.is_empty() {
            return Ok(());
        }
        self.open(false)?.write_all(buf)?;
        self.len += buf.len() as u64;
        resume::store(
            &self.dest,
            &PartMeta {
                bytes: self.len,
                ..meta.clone()
            },
        )?;
        self.meta_on_disk = true;
        Ok(())
    }
}

/// One more chunk for a running job: lets a single large transfer keep a pool thread busy
/// without a round trip through the transfer's task between chunks.
struct Inbox {
    next: Option<Bytes>,
    /// The job still looks here before it ends.
    open: bool,
}

impl Inbox {
    fn deposit(&mut self, chunk: Bytes) -> Result<(), Bytes> {
        if self.open && self.next.is_none() {
            self.next = Some(chunk);
            Ok(())
        } else {
            Err(chunk)
        }
    }

    fn take_or_close(&mut self) -> Option<Bytes> {
        let next = self.next.take();
        if next.is_none() {
            self.open = false;
        }
        next
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool job's return: the part, the buffer (emptied for reuse) and the outcome.
type Job = (Box<Part>, Vec<u8>, io::Result<()>);

/// One transfer's writer. [`Sink::finish`] ends it successfully; [`Sink::abort`], or dropping
/// it unfinished, keeps the part file for resume (or removes it when resume is off);
/// [`Sink::discard`] removes both part files.
pub(crate) struct Sink {
    /// `None` while a pool job holds it, and once settled.
    part: Option<Box<Part>>,
    /// The pool job writing for this transfer, while one runs.
    job: Option<Pending<Job>>,
    /// Where that job takes one more chunk before it ends.
    inbox: Option<Arc<Mutex<Inbox>>>,
    /// Small chunks, copied together; written before the next large chunk or when full.
    buf: Vec<u8>,
    /// A write failed: the part file's contents are unknown and it is discarded at the end.
    broken: bool,
    /// Counted in [`LARGE`].
    large: bool,
}

/// Transfers running whose body is larger than [`BUFFER`] (or of unknown length).
static LARGE: AtomicUsize = AtomicUsize::new(0);

impl Sink {
    /// Prepares a transfer; no file is touched unless a stale `<dest>.part.json` must go.
    pub fn start(spec: SinkSpec) -> Self {
        let SinkSpec {
            dest,
            offset,
            expected,
            meta,
            meta_on_disk,
            guard,
        } = spec;
        if meta_on_disk && offset == 0 {
            resume::remove_meta(&dest);
        }
        let large = expected.is_none_or(|n| n > BUFFER as u64);
        if large {
            LARGE.fetch_add(1, Ordering::Relaxed);
        }
        // A small body is collected whole, so size the buffer to it.
        let first = expected.map_or(BUFFER, |n| usize::try_from(n).unwrap_or(BUFFER).min(BUFFER));
        Self {
            part: Some(Box::new(Part {
                dest,
                file: None,
                offset,
                hasher: Sha256::new(),
                len: offset,
                meta,
                meta_on_disk: meta_on_disk && offset > 0,
                guard,
            })),
            job: None,
            inbox: None,
            buf: Vec::with_capacity(first),
            broken: false,
            large,
        }
    }

    /// Takes one chunk of the body; fails when writing the part file failed (call
    /// [`Sink::discard`] then). Returns once the chunk is written or copied, so the caller
    /// does not hold hyper's buffer while asking for the next; except with fewer large
    /// transfers than pool threads, where the chunk may be handed to the running job and the
    /// transfer reads on, so that one large download keeps a pool thread busy.
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        if self.buf.len() + chunk.len() <= BUFFER {
            self.buf.extend_from_slice(&chunk);
            if self.buf.len() == BUFFER {
                self.run(None).await?;
            }
            return Ok(());
        }
        if chunk.len() < BUFFER / 2 {
            // Small but overflowing: write what is collected, then start collecting again.
            self.run(None).await?;
            self.buf.extend_from_slice(&chunk);
            return Ok(());
        }
        let chunk = match &self.inbox {
            Some(inbox) if self.buf.is_empty() => match lock(inbox).deposit(chunk) {
                Ok(()) => return Ok(()),
                Err(chunk) => chunk,
            },
            _ => chunk,
        };
        self.run(Some(chunk)).await
    }

    /// Writes the collected buffer, then `chunk`, on the pool. Waits for it unless there are
    /// fewer large transfers than pool threads (then the next chunk may join this job, see
    /// [`Sink::write`]); with more, the pool is busy anyway and waiting bounds memory.
    async fn run(&mut self, chunk: Option<Bytes>) -> io::Result<()> {
        self.wait_job().await?;
        let mut part = self.take_part()?;
        let buf = std::mem::take(&mut self.buf);
        let inbox = Arc::new(Mutex::new(Inbox {
            next: None,
            open: true,
        }));
        let jobs_inbox = inbox.clone();
        self.job = Some(pool::spawn(move || {
            let mut result = part.append(&buf);
            if let (Ok(()), Some(chunk)) = (&result, chunk) {
                result = part.append(&chunk);
            }
            while let Some(next) = lock(&jobs_inbox).take_or_close() {
                if result.is_ok() {
                    result = part.append(&next);
                }
            }
            (part, buf, result)
        }));
        self.inbox = Some(inbox);
        if LARGE.load(Ordering::Relaxed) >= pool::threads() {
            self.wait_job().await?;
        }
        Ok(())
    }

    /// Waits for the pool's job, if any. The part is back in `self.part` afterwards, even
    /// when the write failed (unless the job panicked and took it down).
    async fn wait_job(&mut self) -> io::Result<()> {
        self.inbox = None;
        match self.job.take() {
            Some(job) => {
                let done = job.await;
                self.put_back(done)
            }
            None => Ok(()),
        }
    }

    fn take_part(&mut self) -> io::Result<Box<Part>> {
        self.part.take().ok_or_else(lost)
    }

    fn put_back(&mut self, done: Option<Job>) -> io::Result<()> {
        let (part, mut buf, result) = done.ok_or_else(lost)?;
        if self.buf.is_empty() {
            // Reuse the job's buffer, unless chunks were collected while it ran.
            buf.clear();
            self.buf = buf;
        }
        self.part = Some(part);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Ends the transfer successfully: writes the rest, closes the file, returns the digest.
    pub async fn finish(mut self) -> io::Result<Written> {
        self.wait_job().await?;
        if self
            .part
            .as_ref()
            .is_some_and(|p| p.file.is_none() && p.offset > 0)
        {
            // The kept prefix must be hashed first, and it may be large: not on this thread.
            self.run(None).await?;
            self.wait_job().await?;
        }
        let mut part = self.take_part()?;
        let rest = std::mem::take(&mut self.buf);
        if let Err(err) = part.append(&rest) {
            self.part = Some(part);
            self.broken = true;
            return Err(err);
        }
        let Part {
            hasher,
            len,
            meta_on_disk,
            guard,
            ..
        } = *part;
        Ok(Written {
            sha256: hex(&hasher.finalize()),
            size: len,
            meta_on_disk,
            guard,
        })
    }

    /// Ends the transfer as failed: what was received is kept for resume.
    pub async fn abort(mut self) {
        if let Err(err) = self.wait_job().await {
            tracing::debug!(%err, "download writer failed before the abort");
        }
        self.settle();
    }

    /// Ends the transfer as failed and removes both part files (the bytes are useless).
    pub async fn discard(mut self) {
        let _ = self.wait_job().await;
        self.broken = true;
        self.settle();
    }

    /// Settles the files of an unfinished transfer, synchronously.
    fn settle(&mut self) {
        let Some(mut part) = self.part.take() else {
            return;
        };
        let rest = std::mem::take(&mut self.buf);
        let kept = match (&part.meta, self.broken) {
            (Some(meta), false) => {
                let meta = meta.clone();
                match part.keep(&rest, &meta) {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::warn!(dest = %part.dest.display(), %err, "cannot keep the partial download");
                        false
                    }
                }
            }
            _ => false,
        };
        if !kept {
            part.file = None;
            resume::discard(&part.dest);
        }
        // The destination lock (in `part`) is released only now, with the files settled.
        drop(part);
    }
}

impl Drop for Sink {
    /// An unfinished transfer (its future dropped: a timeout or an interrupt) settles here.
    /// That may block this thread until the pool has written this transfer's one queued
    /// buffer (a fraction of a millisecond); it happens only when a transfer is cut short, and
    /// it guarantees the resume files are complete before anyone can look at them, including
    /// a process about to exit.
    fn drop(&mut self) {
        if self.large {
            LARGE.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(job) = self.job.take() {
            let done = job.wait();
            let _ = self.put_back(done);
        }
        self.settle();
    }
}

fn lost() -> io::Error {
    io::Error::other("the download writer stopped unexpectedly")
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; BUFFER];
    let mut reader = file.take(len);
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Lowercase hex, the form `sha256` pins are written in.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}
