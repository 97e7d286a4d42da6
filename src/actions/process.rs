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
    let mut cmd = Command::new(resolve_program(prog, env));
    cmd.args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.spawn()
}

/// The program's full path from `PATH`, found once per run and remembered.
///
/// Left to the child, every spawn would try each `PATH` entry with a failing `execve`; for
/// thousands of small commands that search was a large share of taskrun's cost. A name with a
/// `/`, a `PATH` with relative entries, or a program not found is left to the OS as it is.
fn resolve_program(prog: &str, env: &[(String, String)]) -> std::path::PathBuf {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Mutex, OnceLock};
    static FOUND: OnceLock<Mutex<HashMap<(String, String), std::path::PathBuf>>> = OnceLock::new();

    let plain = std::path::PathBuf::from(prog);
    if prog.contains('/') || prog.is_empty() {
        return plain;
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    if path.split(':').any(|d| !d.starts_with('/')) {
        return plain;
    }
    let key = (path, prog.to_string());
    let cache = FOUND.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(p) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return p;
    }
    let found = key.0.split(':').map(|d| Path::new(d).join(prog)).find(|c| {
        std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    match found {
        Some(p) => {
            if let Ok(mut c) = cache.lock() {
                c.insert(key, p.clone());
            }
            p
        }
        None => plain,
    }
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
    drive(pumping, waiting).await
}

/// Reads output (`pumping`) while `control` decides how the process ends, then gives the
/// pipes a short while more: a background grandchild may hold them open, and it must not
/// keep the task waiting forever.
pub async fn drive<T>(pumping: impl Future<Output = ()>, control: impl Future<Output = T>) -> T {
    tokio::pin!(pumping, control);
    let mut pumped = false;
    let end = loop {
        tokio::select! {
            end = &mut control => break end,
            () = &mut pumping, if !pumped => pumped = true,
        }
    };
    if !pumped {
        let _ = tokio::time::timeout(PIPE_LINGER, &mut pumping).await;
    }
    end
}

/// Resolves once the run asks running work to stop (never, if the run loop is gone).
pub async fn stopped(stop: &mut watch::Receiver<Stop>) {
    loop {
        if *stop.borrow_and_update() != Stop::No {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::resolve_program;

    fn env(path: &str) -> Vec<(String, String)> {
        vec![("PATH".to_string(), path.to_string())]
    }

    #[test]
    fn programs_are_found_on_the_path_the_task_gets() {
        let sh = resolve_program("sh", &env("/nonexistent:/bin:/usr/bin"));
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let p = format!("{}:/bin", dir.path().display());
        assert_eq!(resolve_program("mytool", &env(&p)), tool);
    }

    #[test]
    fn names_with_a_slash_relative_paths_and_unknown_programs_are_left_alone() {
        assert_eq!(resolve_program("./x", &env("/bin")).to_str(), Some("./x"));
        assert_eq!(resolve_program("sh", &env("bin:/bin")).to_str(), Some("sh"));
        assert_eq!(
            resolve_program("surely-not-a-program-xyz", &env("/bin")).to_str(),
            Some("surely-not-a-program-xyz")
        );
    }
}
