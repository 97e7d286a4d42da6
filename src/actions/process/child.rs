//! A spawned child as taskrun waits for it: one pidfd for its exit, output pipes that only
//! join the event loop when a read would block.
//!
//! `tokio::process` registered three descriptors per child with epoll (pidfd, stdout,
//! stderr; six `epoll_ctl` calls) and made each pipe non-blocking with two `fcntl` calls.
//! For thousands of short commands such per-task system calls are most of taskrun's own
//! time. Here only the pidfd is registered; a command that exits before [`LIVE_AFTER`] has
//! its pipes drained with plain reads after its exit, and a pipe is registered only if a
//! read finds it empty but still open (a long-running command, or a background grandchild
//! holding it).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::ExitStatus;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::pipe;

/// How long output stays in the pipe before it is read live: a command that ends sooner is
/// read once, after its exit. A child writing more than a pipe holds (64 KiB) meanwhile
/// waits at most this long.
pub const LIVE_AFTER: Duration = Duration::from_millis(10);

/// A running (or exited, not yet reaped) child process.
pub struct Child {
    pid: u32,
    /// Readable once the child has exited; `None` on kernels without pidfd (before 5.3),
    /// where [`Child::wait`] polls instead.
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    /// Its stdout, until taken.
    pub stdout: Option<Pipe>,
    /// Its stderr, until taken.
    pub stderr: Option<Pipe>,
}

impl Child {
    /// Wraps a child std just spawned with piped stdout and stderr.
    pub fn new(mut child: std::process::Child) -> io::Result<Self> {
        let pid = child.id();
        let out = child.stdout.take().map(OwnedFd::from);
        let err = child.stderr.take().map(OwnedFd::from);
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(None),
            Err(e) => Err(e),
        };
        let assembled = pidfd.and_then(|fd| Self::assemble(pid, fd, out, err));
        if assembled.is_err() {
            // Without a way to wait for it, do not leave it running unseen.
            super::signal_group(pid, libc::SIGKILL);
            let _ = child.wait();
        }
        assembled
    }

    /// Wraps a child started by [`super::spawn`](mod@super::spawn).
    pub fn from_spawned(s: super::spawn::Spawned) -> io::Result<Self> {
        let pid = s.pid;
        let assembled = Self::assemble(pid, Some(s.pidfd), Some(s.stdout), Some(s.stderr));
        if assembled.is_err() {
            super::signal_group(pid, libc::SIGKILL);
            // It dies at once; block until it is reaped.
            while let Ok(None) = reap(pid) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assembled
    }

    fn assemble(
        pid: u32,
        pidfd: Option<OwnedFd>,
        out: Option<OwnedFd>,
        err: Option<OwnedFd>,
    ) -> io::Result<Self> {
        let pidfd = match pidfd {
            Some(fd) => {
                // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until
                // the AsyncFd is dropped.
                let registered =
                    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
                Some(registered)
            }
            None => None,
        };
        Ok(Self {
            pid,
            pidfd,
            status: None,
            stdout: out.map(Pipe::new).transpose()?,
            stderr: err.map(Pipe::new).transpose()?,
        })
    }

    /// The process id (also its process group id: every child leads its own group).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit and reaps it. Cancel-safe: dropping the future loses
    /// nothing, and once reaped the status is kept.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut backoff = Duration::from_millis(1);
        loop {
            if let Some(s) = self.status {
                return Ok(s);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    self.status = reap(self.pid)?;
                    if self.status.is_none() {
                        ready.clear_ready();
                    }
                }
                None => {
                    self.status = reap(self.pid)?;
                    if self.status.is_none() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

/// Reaps child `pid` if it has exited (never blocks).
fn reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    let mut raw = 0;
    loop {
        // SAFETY: waitpid writes one int through a valid pointer; the pid is our own
        // unreaped child, so it cannot have been reused.
        let r = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) };
        if r == pid {
            return Ok(Some(ExitStatus::from_raw(raw)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only on runtime shutdown is a child dropped unreaped (every path waits for it);
        // reap it if it is done, else the process exit that follows does.
        if self.status.is_none() {
            let _ = reap(self.pid);
        }
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The read end of an output pipe: plain non-blocking reads until one would block, then
/// registered with the event loop for the rest.
pub struct Pipe {
    raw: Option<OwnedFd>,
    live: Option<pipe::Receiver>,
}

impl Pipe {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: F_SETFL on a descriptor we own; a pipe's read end has no other status
        // flags to keep.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            raw: Some(fd),
            live: None,
        })
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(fd) = &this.raw {
            let dst = buf.initialize_unfilled();
            let e = loop {
                // SAFETY: reads at most `dst.len()` bytes into initialised memory we borrow.
                let n = unsafe { libc::read(fd.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len()) };
                if let Ok(n) = usize::try_from(n) {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    break e;
                }
            };
            if e.kind() != io::ErrorKind::WouldBlock {
                return Poll::Ready(Err(e));
            }
            if let Some(fd) = this.raw.take() {
                // The descriptor is a non-blocking pipe read end (set in `Pipe::new`).
                this.live = Some(pipe::Receiver::from_owned_fd_unchecked(fd)?);
            }
        }
        match &mut this.live {
            Some(live) => {
                ready!(Pin::new(live).poll_read(cx, buf))?;
                Poll::Ready(Ok(()))
            }
            None => Poll::Ready(Ok(())),
        }
    }
}
