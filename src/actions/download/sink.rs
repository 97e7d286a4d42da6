//! The part-file writer: hashes a transfer's body and writes it to `<dest>.part`.
//!
//! The task that drives the socket copies each chunk into a buffer of [`BUFFER`] bytes; a full
//! buffer goes to the shared writer pool ([`super::pool`]) to be hashed and written while the
//! task fills a second one. A transfer so holds at most two buffers and one pool job however
//! large the file, and hyper can reuse its read buffer at once, as no chunk outlives the copy
//! (queuing hyper's own chunks kept its buffers alive: ~3 MiB per transfer at concurrency 16).
//!
//! A body that fits in one buffer (small files) never leaves the task: it is hashed and
//! written in one go when it ends. That is tens of microseconds of blocking work on a tokio
//! thread, less than the cross-thread hand-off it saves. The same holds for the last, partial
//! buffer of a large file.
//!
//! Files appear lazily: `<dest>.part` with the first write, `<dest>.part.json` once the part
//! file holds [`META_AFTER`] bytes, or when the transfer stops early (an error, a timeout, an
//! interrupt: whenever the sink is aborted or dropped unfinished). A hard kill can therefore
//! lose the resume data of a small transfer (it restarts from zero next time), never of a
//! large one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use super::pool::{self, Pending};
use super::resume::{self, PartMeta};

/// Size of each of a transfer's two buffers; also the read size when hashing an existing part
/// file. Large enough that a write costs few syscalls per MiB, small enough that 16 transfers
/// hold 4 MiB of buffers.
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

/// A pool job's return: the part, the buffer (for reuse) and the outcome of the write.
type Job = (Box<Part>, Vec<u8>, io::Result<()>);

/// One transfer's writer. [`Sink::finish`] ends it successfully; [`Sink::abort`], or dropping
/// it unfinished, keeps the part file for resume (or removes it when resume is off);
/// [`Sink::discard`] removes both part files.
pub(crate) struct Sink {
    /// `None` while a pool job holds it, and once settled.
    part: Option<Box<Part>>,
    /// The buffer being written by the pool, at most one.
    job: Option<Pending<Job>>,
    /// The buffer being filled.
    buf: Vec<u8>,
    /// The other buffer, back from the pool.
    spare: Option<Vec<u8>>,
    /// A write failed: the part file's contents are unknown and it is discarded at the end.
    broken: bool,
}

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
            buf: Vec::with_capacity(first),
            spare: None,
            broken: false,
        }
    }

    /// Takes one chunk of the body; fails when writing the part file failed (call
    /// [`Sink::discard`] then).
    pub async fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = BUFFER - self.buf.len();
            let take = data.len().min(room);
            if self.buf.capacity() < self.buf.len() + take {
                self.buf.reserve_exact(room);
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() >= BUFFER {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Hands the full buffer to the pool, once the previous one is written.
    async fn flush(&mut self) -> io::Result<()> {
        self.wait_job().await?;
        let mut part = self.take_part()?;
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER));
        let full = std::mem::replace(&mut self.buf, next);
        self.job = Some(pool::spawn(move || {
            let result = part.append(&full);
            (part, full, result)
        }));
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
        let (part, mut used, result) = done.ok_or_else(lost)?;
        used.clear();
        self.spare = Some(used);
        self.part = Some(part);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Ends the transfer successfully: writes the rest, closes the file, returns the digest.
    pub async fn finish(mut self) -> io::Result<Written> {
        self.wait_job().await?;
        let mut part = self.take_part()?;
        let rest = std::mem::take(&mut self.buf);
        if part.file.is_none() && part.offset > 0 {
            // The kept prefix must be hashed first, and it may be large: not on this thread.
            let done = pool::spawn(move || {
                let result = part.append(&rest);
                (part, rest, result)
            })
            .await;
            self.put_back(done)?;
            part = self.take_part()?;
        } else if let Err(err) = part.append(&rest) {
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
