//! The part-file writer: hashes a transfer's body and writes it to `<dest>.part`.
//!
//! Hashing and writing run on the shared writer pool ([`super::pool`]). A large transfer hands
//! hyper's chunks to it as they are (no copy), [`JOB`] bytes per job, and waits for that job
//! before it takes more; hyper reads the next chunk from the socket meanwhile (its body
//! channel holds one), so receiving and hashing still overlap, while a transfer keeps only one
//! job's worth of hyper's buffers alive, plus the read or two hyper holds; anything beyond
//! that waits in the kernel's socket buffer, not in our heap. (Plain-HTTP reads are at most 64 KiB, see
//! [`super::transport`], and each chunk keeps the buffer it was read into alive.) Chunks
//! smaller than half of [`BUFFER`] are first copied together into one buffer, so that a job
//! is never tiny and a short read does not pin a whole read buffer. With fewer large
//! transfers than pool threads (one big file) the transfer does not wait: it collects
//! [`BATCH`] bytes of chunks while the previous job runs, so that the pool thread goes on
//! hashing with one round trip through the transfer's task per batch, not per read.
//!
//! A body that fits in that buffer (small files) never leaves the task and is never copied:
//! hyper's chunks are kept as they are, then hashed and written (one vectored `write`) when
//! the body ends. That is tens of microseconds of blocking work on the transfer's thread,
//! less than the cross-thread hand-off it saves; copying the chunks together first cost as
//! much CPU as a third of the hashing.
//!
//! Files appear lazily: `<dest>.part` with the first write, `<dest>.part.json` once the part
//! file holds [`META_AFTER`] bytes, or when the transfer stops early (an error, a timeout, an
//! interrupt: whenever the writer is aborted or dropped unfinished). A hard kill can therefore
//! lose the resume data of a transfer that has received less than [`META_AFTER`] (it
//! restarts from zero next time), not of one that has received more.

use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use super::pool::{self, Pending};
use super::resume::{self, PartMeta};
use crate::cache::Digest;

/// Chunks smaller than half of this are copied into one buffer of this size, and a body no
/// larger is written inline; also the read size when hashing an existing part.
const BUFFER: usize = 128 * 1024;
/// A job's worth of body with more large transfers than pool threads, where the transfer waits
/// for each job: four of hyper's 64 KiB reads. Twice as much per job took ~4 MiB more peak
/// RSS at 16 transfers; half as much cost 5-10% more CPU in wake-ups.
const JOB: usize = 2 * BUFFER;
/// A job's worth of body with fewer large transfers than pool threads, where the transfer
/// collects the next batch while the pool hashes the last: a few reads' worth, so that one
/// large download meets a round trip through its task once per this many bytes.
const BATCH: usize = 4 * BUFFER;
/// Once the part file holds this many bytes `<dest>.part.json` is written, so that a transfer
/// worth resuming stays resumable even if the process is killed without a chance to write it.
const META_AFTER: u64 = 1024 * 1024;

/// What the writer needs to know before the first byte.
pub(crate) struct PartSpec {
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
    /// Hash the body (a pin checks it, or the cache records it); otherwise it is only written.
    pub hash: bool,
}

/// A finished part file, still open.
pub(crate) struct Written {
    /// sha256 of the whole part file, when the transfer hashed.
    pub digest: Option<Digest>,
    /// The part file, for its `stat` once it is in place.
    pub file: File,
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
    /// `None` when the digest is not wanted.
    hasher: Option<Sha256>,
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
        // Never through a symlink: `part_len` removed any it saw, and one planted since
        // makes the open fail rather than write where it points.
        let create = || {
            let open = || {
                resume::no_follow()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&part)
            };
            match open() {
                // A symlink (only ever met when resume is off): removed, not followed.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    std::fs::remove_file(&part)?;
                    open()
                }
                other => other,
            }
        };
        if self.offset == 0 {
            self.len = 0;
            return match create() {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    if let Some(parent) = part.parent() {
                        crate::workspace::create_dir_all(parent).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("cannot create {}: {e}", parent.display()),
                            )
                        })?;
                    }
                    create()
                }
                other => other,
            };
        }
        let mut file = resume::no_follow().read(true).write(true).open(&part)?;
        // The kept prefix must all be there: `set_len` would fill a gap with zeros.
        let kept = match &mut self.hasher {
            Some(hasher) if hash => hash_prefix(&mut file, self.offset, hasher)?,
            _ => file.metadata()?.len().min(self.offset),
        };
        if kept != self.offset {
            return Err(io::Error::other(format!(
                "{} shrank while resuming ({kept} of {} bytes)",
                part.display(),
                self.offset
            )));
        }
        file.set_len(self.offset)?;
        file.seek(SeekFrom::Start(self.offset))?;
        self.len = self.offset;
        Ok(file)
    }

    /// Hashes and writes `buf` then `batch` (in one system call when it can); records the
    /// resume metadata once the part is worth it.
    fn append_all(&mut self, buf: &[u8], batch: &[Bytes]) -> io::Result<()> {
        write_all(self.open(true)?, buf, batch)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(buf);
            for chunk in batch {
                hasher.update(chunk);
            }
        }
        self.len += (buf.len() + batch.iter().map(Bytes::len).sum::<usize>()) as u64;
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

    /// An unfinished transfer: writes what is buffered, `buf` then `batch` (no hashing: the
    /// digest is not needed), and the resume metadata. Nothing at all received from scratch
    /// leaves no files.
    fn keep(&mut self, buf: &[u8], batch: &[Bytes], meta: &PartMeta) -> io::Result<()> {
        if self.file.is_none() && self.offset == 0 && buf.is_empty() && batch.is_empty() {
            return Ok(());
        }
        write_all(self.open(false)?, buf, batch)?;
        self.len += (buf.len() + batch.iter().map(Bytes::len).sum::<usize>()) as u64;
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

/// A pool job's return: the part, the buffer and the batch (emptied for reuse) and the outcome.
type Job = (Box<Part>, Vec<u8>, Vec<Bytes>, io::Result<()>);

/// One transfer's writer. [`PartWriter::finish`] ends it successfully;
/// [`PartWriter::abort`], or dropping it unfinished, keeps the part file for resume (or
/// removes it when resume is off); [`PartWriter::discard`] removes both part files.
pub(crate) struct PartWriter {
    /// `None` while a pool job holds it, and once settled.
    part: Option<Box<Part>>,
    /// The pool job writing for this transfer, while one runs.
    job: Option<Pending<Job>>,
    /// Small chunks of a large body, copied together; written before `batch`.
    buf: Vec<u8>,
    /// hyper's chunks as they are: a small body's, or a large body's for the next job
    /// (after `buf`'s bytes).
    batch: Vec<Bytes>,
    /// Bytes in `batch`.
    batched: usize,
    /// A write failed: the part file's contents are unknown and it is discarded at the end.
    broken: bool,
    /// Counted in [`LARGE`].
    large: bool,
}

/// Transfers running whose body is larger than [`BUFFER`] (or of unknown length).
static LARGE: AtomicUsize = AtomicUsize::new(0);

impl PartWriter {
    /// Prepares a transfer; no file is touched unless a stale `<dest>.part.json` must go.
    pub fn start(spec: PartSpec) -> Self {
        let PartSpec {
            dest,
            offset,
            expected,
            meta,
            meta_on_disk,
            guard,
            hash,
        } = spec;
        if meta_on_disk && offset == 0 {
            resume::remove_meta(&dest);
        }
        let large = expected.is_none_or(|n| n > BUFFER as u64);
        if large {
            LARGE.fetch_add(1, Ordering::Relaxed);
        }
        // A small body is kept as hyper's chunks (no copy), so it needs no buffer of its own.
        let first = if large { BUFFER } else { 0 };
        Self {
            part: Some(Box::new(Part {
                dest,
                file: None,
                offset,
                hasher: hash.then(Sha256::new),
                len: offset,
                meta,
                meta_on_disk: meta_on_disk && offset > 0,
                guard,
            })),
            job: None,
            buf: Vec::with_capacity(first),
            batch: Vec::new(),
            batched: 0,
            broken: false,
            large,
        }
    }

    /// Takes one chunk of the body; fails when writing the part file failed (call
    /// [`PartWriter::discard`] then). Returns once the chunk is copied, held for the next job, or
    /// handed to the pool; with more large transfers than pool threads, a full job is waited
    /// for, so that the caller does not read on while the pool is behind.
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        if !self.large {
            if self.batched + chunk.len() <= BUFFER {
                // A small body: its chunks are hashed and written in one go when it ends.
                self.batched += chunk.len();
                self.batch.push(chunk);
                return Ok(());
            }
            // More than the server announced: from here on, a large transfer (the chunks
            // held so far stay first in `batch`).
            self.large = true;
            LARGE.fetch_add(1, Ordering::Relaxed);
        }
        if self.batch.is_empty() && chunk.len() < BUFFER / 2 {
            if self.buf.len() + chunk.len() > BUFFER {
                self.run().await?;
            }
            self.buf.extend_from_slice(&chunk);
            if self.buf.len() >= BUFFER {
                self.run().await?;
            }
            return Ok(());
        }
        self.batched += chunk.len();
        self.batch.push(chunk);
        let job = if LARGE.load(Ordering::Relaxed) < pool::threads() {
            BATCH
        } else {
            JOB
        };
        if self.buf.len() + self.batched >= job {
            self.run().await?;
        }
        Ok(())
    }

    /// Writes the collected buffer, then the batch, on the pool. Waits for it unless there are
    /// fewer large transfers than pool threads (then the next batch is collected meanwhile);
    /// with more, the pool is busy anyway and waiting bounds memory.
    async fn run(&mut self) -> io::Result<()> {
        self.wait_job().await?;
        let mut part = self.take_part()?;
        let buf = std::mem::take(&mut self.buf);
        let mut batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.job = Some(pool::spawn(move || {
            let result = part.append_all(&buf, &batch);
            batch.clear();
            (part, buf, batch, result)
        }));
        if LARGE.load(Ordering::Relaxed) >= pool::threads() {
            self.wait_job().await?;
        }
        Ok(())
    }

    /// Waits for the pool's job, if any. The part is back in `self.part` afterwards, even
    /// when the write failed (unless the job panicked and took it down).
    async fn wait_job(&mut self) -> io::Result<()> {
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
        let (part, mut buf, batch, result) = done.ok_or_else(lost)?;
        // Reuse the job's buffers, unless chunks were collected into ours while it ran.
        if self.buf.is_empty() {
            buf.clear();
            self.buf = buf;
        }
        if self.batch.is_empty() {
            self.batch = batch;
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
        // A small body (at most BUFFER bytes, all in `batch`) is written here, inline.
        if (!self.batch.is_empty() && self.large)
            || self
                .part
                .as_ref()
                .is_some_and(|p| p.file.is_none() && p.offset > 0)
        {
            // A batch, or the kept prefix, which must be hashed first: either may be large,
            // so not on this thread.
            self.run().await?;
            self.wait_job().await?;
        }
        let mut part = self.take_part()?;
        let rest = std::mem::take(&mut self.buf);
        let batch = std::mem::take(&mut self.batch);
        if let Err(err) = part.append_all(&rest, &batch) {
            self.part = Some(part);
            self.broken = true;
            return Err(err);
        }
        let Part {
            file,
            hasher,
            len,
            meta_on_disk,
            guard,
            ..
        } = *part;
        let file =
            file.ok_or_else(|| io::Error::other("internal: the part file was never opened"))?;
        Ok(Written {
            digest: hasher.map(|h| h.finalize().into()),
            file,
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
        let batch = std::mem::take(&mut self.batch);
        let kept = match (&part.meta, self.broken) {
            (Some(meta), false) => {
                let meta = meta.clone();
                match part.keep(&rest, &batch, &meta) {
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

impl Drop for PartWriter {
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

/// `buf` then `batch`, all of it, with as few `write` calls as the kernel allows.
fn write_all(file: &mut File, buf: &[u8], batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() + 1);
    slices.push(IoSlice::new(buf));
    slices.extend(batch.iter().map(|chunk| IoSlice::new(chunk)));
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
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

#[cfg(test)]
#[path = "part_writer_tests.rs"]
mod tests;
