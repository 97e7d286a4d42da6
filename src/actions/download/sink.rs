//! The part-file writer: one blocking thread per transfer that hashes and writes each chunk.
//!
//! The task that drives the socket only moves `Bytes` into a bounded channel; sha256 and the
//! file writes happen on a blocking-pool thread, so on a 2-core machine hashing never stalls
//! the reactor. Memory is bounded by the channel (a few chunks) plus one 256 KiB buffer, no
//! matter how large the file is.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedMutexGuard, mpsc};

use super::resume::{self, PartMeta};

/// Write buffer size; also the read size when hashing an existing part file.
const BUFFER: usize = 256 * 1024;
/// Chunks in flight between the socket task and the writer thread.
const CHANNEL_CHUNKS: usize = 8;

/// How a transfer ended, as told to the writer thread before the channel closes.
const END_ABORT: u8 = 0;
const END_FINISH: u8 = 1;
const END_DISCARD: u8 = 2;

/// What the writer needs to know before the first byte.
pub(crate) struct SinkSpec {
    /// Absolute destination; the part files sit beside it.
    pub dest: PathBuf,
    /// Bytes already in `<dest>.part` to keep (and hash first); 0 starts a fresh file.
    pub offset: u64,
    /// Resume metadata to keep beside the part file; `None` when resume is off.
    pub meta: Option<PartMeta>,
    /// The destination lock; released only when the files are settled.
    pub guard: OwnedMutexGuard<()>,
}

/// A finished, flushed part file.
pub(crate) struct Written {
    /// Lowercase hex sha256 of the whole part file.
    pub sha256: String,
    /// Its length.
    pub size: u64,
    /// Still held: the caller verifies and renames under it.
    pub guard: OwnedMutexGuard<()>,
}

/// The sending half; dropping it without [`Sink::finish`] aborts the transfer, and the
/// thread then leaves the part file for resume (or removes it when resume is off).
pub(crate) struct Sink {
    tx: Option<mpsc::Sender<Bytes>>,
    end: Arc<AtomicU8>,
    handle: tokio::task::JoinHandle<io::Result<Written>>,
}

impl Sink {
    /// Starts the writer thread.
    pub fn start(spec: SinkSpec) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let end = Arc::new(AtomicU8::new(END_ABORT));
        let flag = end.clone();
        let handle = tokio::task::spawn_blocking(move || run(spec, rx, &flag));
        Self {
            tx: Some(tx),
            end,
            handle,
        }
    }

    /// Hands one chunk to the writer; `false` when the writer has stopped on an error
    /// (the error itself comes out of [`Sink::finish`] or [`Sink::abort`]).
    pub async fn write(&mut self, chunk: Bytes) -> bool {
        match &self.tx {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        }
    }

    /// Ends the transfer successfully and waits for the flushed file and its digest.
    pub async fn finish(mut self) -> io::Result<Written> {
        self.end.store(END_FINISH, Ordering::SeqCst);
        self.tx = None;
        join(self.handle).await
    }

    /// Ends the transfer as failed and waits until the part files are settled. Returns the
    /// writer's own error, if it had one.
    pub async fn abort(mut self) -> Option<io::Error> {
        self.tx = None;
        join(self.handle)
            .await
            .err()
            .filter(|e| e.kind() != io::ErrorKind::Interrupted)
    }

    /// Ends the transfer as failed and removes both part files (the bytes are useless).
    pub async fn discard(self) {
        self.end.store(END_DISCARD, Ordering::SeqCst);
        let _ = self.abort().await;
    }
}

async fn join(handle: tokio::task::JoinHandle<io::Result<Written>>) -> io::Result<Written> {
    handle.await.unwrap_or_else(|e| {
        Err(io::Error::other(format!(
            "download writer thread failed: {e}"
        )))
    })
}

fn run(spec: SinkSpec, mut rx: mpsc::Receiver<Bytes>, end: &AtomicU8) -> io::Result<Written> {
    let SinkSpec {
        dest,
        offset,
        meta,
        guard,
    } = spec;
    let result = write_all(&dest, offset, meta.as_ref(), &mut rx);
    drop(rx);
    match result {
        Ok((hasher, size)) if end.load(Ordering::SeqCst) == END_FINISH => Ok(Written {
            sha256: hex(&hasher.finalize()),
            size,
            guard,
        }),
        Ok(_) if end.load(Ordering::SeqCst) == END_DISCARD => {
            resume::discard(&dest);
            Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "transfer discarded",
            ))
        }
        Ok((_, size)) => {
            // Aborted (an error upstream, a timeout, or the attempt's future was dropped).
            match meta {
                Some(mut meta) => {
                    meta.bytes = size;
                    if let Err(err) = resume::store(&dest, &meta) {
                        resume::discard(&dest);
                        return Err(err);
                    }
                }
                None => resume::discard(&dest),
            }
            Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "transfer aborted",
            ))
        }
        Err(err) => {
            resume::discard(&dest);
            Err(err)
        }
    }
}

fn write_all(
    dest: &std::path::Path,
    offset: u64,
    meta: Option<&PartMeta>,
    rx: &mut mpsc::Receiver<Bytes>,
) -> io::Result<(Sha256, u64)> {
    let part = resume::part_path(dest);
    let mut hasher = Sha256::new();
    let file = if offset > 0 {
        let mut file = OpenOptions::new().read(true).write(true).open(&part)?;
        let hashed = hash_prefix(&mut file, offset, &mut hasher)?;
        if hashed != offset {
            return Err(io::Error::other(format!(
                "{} shrank while resuming ({hashed} of {offset} bytes)",
                part.display()
            )));
        }
        file.set_len(offset)?;
        file.seek(SeekFrom::Start(offset))?;
        file
    } else {
        File::create(&part)?
    };
    if let Some(meta) = meta {
        resume::store(
            dest,
            &PartMeta {
                bytes: offset,
                ..meta.clone()
            },
        )?;
    }
    let mut out = BufWriter::with_capacity(BUFFER, file);
    let mut size = offset;
    while let Some(chunk) = rx.blocking_recv() {
        hasher.update(&chunk);
        out.write_all(&chunk)?;
        size += chunk.len() as u64;
    }
    out.flush()?;
    Ok((hasher, size))
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
