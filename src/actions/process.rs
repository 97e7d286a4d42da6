//! Child processes in their own process group: spawn, stream output, stop the whole group.
//!
//! `kill_on_drop` would only reach the direct child; a shell's grandchildren would survive.
//! Every child here leads its own group (`process_group(0)`) and is stopped with `killpg`.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::actions::OutputSink;
use crate::events::Stream;

/// How long a SIGTERM'd group may take before it gets SIGKILL (SPEC §3, §8).
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The run's stop request, seen by every running action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Stop {
    /// Keep going.
    #[default]
    No,
    /// First interrupt: SIGTERM the group, SIGKILL after the grace period.
    Terminate,
    /// Second interrupt: SIGKILL at once.
    Kill,
}

/// How a supervised process ended.
#[derive(Debug)]
pub enum End {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It ran past its timeout and was stopped.
    TimedOut,
    /// The run was interrupted and it was stopped.
    Stopped,
}

/// Spawns `argv` (exec'd directly) in its own process group with piped output.
pub fn spawn(argv: &[String], cwd: &Path, env: &[(String, String)]) -> std::io::Result<Child> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.spawn()
}

/// Sends `signal` to the process group led by `pid` (ignoring a group that is already gone).
pub fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pid)
        && pgid > 0
    {
        // SAFETY: killpg has no memory-safety preconditions; a stale group yields ESRCH.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Streams the child's stdout and stderr line by line into `sink` while waiting for it to end,
/// stopping its group on `timeout` or on a stop request.
pub async fn supervise(
    mut child: Child,
    timeout: Option<Duration>,
    mut stop: watch::Receiver<Stop>,
    sink: &OutputSink,
) -> std::io::Result<End> {
    let pid = child.id().unwrap_or(0);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let pumping = async {
        let o = async {
            if let Some(r) = out {
                pump(r, Stream::Stdout, sink).await;
            }
        };
        let e = async {
            if let Some(r) = err {
                pump(r, Stream::Stderr, sink).await;
            }
        };
        tokio::join!(o, e);
    };
    let waiting = async {
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let first_stop = async {
            loop {
                if *stop.borrow_and_update() != Stop::No {
                    return;
                }
                if stop.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            status = child.wait() => return status.map(End::Exited),
            _ = deadline => {}
            _ = first_stop => {}
        }
        let end = if *stop.borrow() == Stop::No {
            End::TimedOut
        } else {
            End::Stopped
        };
        terminate(&mut child, pid, &mut stop).await?;
        Ok(end)
    };
    tokio::pin!(pumping, waiting);
    let mut pumped = false;
    let end = loop {
        tokio::select! {
            end = &mut waiting => break end,
            () = &mut pumping, if !pumped => pumped = true,
        }
    };
    if !pumped {
        // A background grandchild may hold the pipes open; do not wait for it forever.
        let _ = tokio::time::timeout(PIPE_LINGER, &mut pumping).await;
    }
    end
}

/// How long output is still read after the child exited while something else holds its pipes.
const PIPE_LINGER: Duration = Duration::from_millis(250);

/// SIGTERM to the group, SIGKILL after [`KILL_GRACE`] or at once on a second interrupt; the
/// group gets a final SIGKILL so no grandchild outlives the run.
pub async fn terminate(
    child: &mut Child,
    pid: u32,
    stop: &mut watch::Receiver<Stop>,
) -> std::io::Result<Option<ExitStatus>> {
    if *stop.borrow() == Stop::Kill {
        signal_group(pid, libc::SIGKILL);
    } else {
        signal_group(pid, libc::SIGTERM);
    }
    let escalate = async {
        let grace = tokio::time::sleep(KILL_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                _ = &mut grace => return,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() == Stop::Kill {
                        return;
                    }
                }
            }
        }
    };
    let status = tokio::select! {
        s = child.wait() => Some(s?),
        _ = escalate => None,
    };
    signal_group(pid, libc::SIGKILL);
    match status {
        Some(s) => Ok(Some(s)),
        None => child.wait().await.map(Some),
    }
}

pub(crate) async fn pump(reader: impl AsyncRead + Unpin, stream: Stream, sink: &OutputSink) {
    let mut lines = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                sink.line(stream, &String::from_utf8_lossy(&buf)).await;
            }
        }
    }
}

/// Describes an exit status for reports: the code, or the signal that killed it.
pub fn describe(status: &ExitStatus) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exit code {code}")),
        (None, Some(sig)) => (None, format!("killed by signal {sig}")),
        (None, None) => (None, "ended without an exit code".into()),
    }
}
