//! Child processes in their own process group: spawn, stream output, stop the whole group.
//!
//! `kill_on_drop` would only reach the direct child; a shell's grandchildren would survive.
//! Every child here leads its own group (`process_group(0)`) and is stopped with `killpg`.
//! Starting a child is in [`spawn`](mod@spawn), waiting for it and its pipes in [`child`].

pub mod child;
pub mod spawn;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Notify, watch};

use crate::actions::TaskOutput;
use crate::events::Stream;
pub use child::Child;
use child::{LIVE_AFTER, Pipe};

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
    crate::workspace::children_started();
    // A taskrun the child runs on the same cache shares this run's lock (see `cache::lock`).
    let with_lock;
    let env = match crate::cache::lock::held_for_children() {
        Some(held) => {
            with_lock = [env, &[held]].concat();
            &with_lock[..]
        }
        None => env,
    };
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let program = resolve_program(prog, env);
    if let Some(stdin) = dev_null() {
        let argv0 = program.to_string_lossy().into_owned();
        let full: Vec<String> = std::iter::once(argv0).chain(args.iter().cloned()).collect();
        let spawned = spawn::spawn(&program, &full, cwd, env, stdin.as_raw_fd())?;
        if let Some(s) = spawned {
            return Child::from_spawned(s);
        }
    }
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(null_stdin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let thp = crate::huge_pages::for_children();
    let parent = std::process::id() as libc::pid_t;
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: the hook makes only async-signal-safe system calls in the forked child.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(thp) = thp {
                    crate::huge_pages::set(thp);
                }
                // SPEC §13: the child dies with taskrun, even with a kill -9 of taskrun.
                if spawn::die_with_parent(parent) {
                    Ok(())
                } else {
                    Err(std::io::Error::other(
                        "taskrun exited before its child started",
                    ))
                }
            });
        }
    }
    Child::new(cmd.spawn()?)
}

/// Spawns a task's command line (`argv` from [`crate::actions::env::argv`]): a shell string
/// with no shell syntax is exec'd without `sh`, as make does (see
/// [`crate::actions::env::direct_words`]), falling back to `sh -c` when its program is not
/// found. Besides saving a process, the task's program is then taskrun's own child, which
/// `PR_SET_PDEATHSIG` stops even on a kill -9 of taskrun (a shell's child it would not).
pub fn spawn_task(argv: &[String], cwd: &Path, env: &[(String, String)]) -> std::io::Result<Child> {
    let direct = match argv {
        [sh, c, text] if sh == "sh" && c == "-c" => crate::actions::env::direct_words(text),
        _ => None,
    };
    match direct.as_deref().map(|words| spawn(words, cwd, env)) {
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => spawn(argv, cwd, env),
        Some(spawned) => spawned,
        None => spawn(argv, cwd, env),
    }
}

/// `/dev/null`, opened once per run: every child's stdin.
fn dev_null() -> Option<&'static std::fs::File> {
    static NULL: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok())
        .as_ref()
}

/// A child's stdin for std's `Command`: a `dup` of [`dev_null`] (cheaper than opening the
/// path again).
fn null_stdin() -> Stdio {
    dev_null()
        .and_then(|f| f.try_clone().ok())
        .map_or_else(Stdio::null, Stdio::from)
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

/// How long what a command left in its group gets to leave it (`setsid x &` is still on its
/// way to `setsid()` when the shell exits) before the group gets SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_millis(100);

/// Stops what the command that led group `pid` left running in it (`cmd &`): it would go on
/// changing the outputs after they are recorded, and outlive the run (SPEC §13). A group
/// already empty (the usual case) costs one system call and no wait.
pub async fn stop_leftovers(pid: u32) {
    if !group_alive(pid) {
        return;
    }
    tokio::time::sleep(LEFTOVER_GRACE).await;
    signal_group(pid, libc::SIGKILL);
}

/// Whether any process is left in the group led by `pid`.
fn group_alive(pid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: killpg with signal 0 only checks that the group exists.
    pgid > 0 && unsafe { libc::killpg(pgid, 0) } == 0
}

/// Streams the child's stdout and stderr line by line into `sink` while waiting for it to end,
/// stopping its group on `timeout` or on a stop request.
pub async fn supervise(
    mut child: Child,
    timeout: Option<Duration>,
    mut stop: watch::Receiver<Stop>,
    sink: &TaskOutput,
) -> std::io::Result<End> {
    let pid = child.id();
    let exited = Notify::new();
    let pumping = pump_output(
        (child.stdout.take(), child.stderr.take()),
        exited.notified(),
        sink,
    );
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
            status = child.wait() => {
                stop_leftovers(pid).await;
                exited.notify_one();
                return status.map(End::Exited);
            }
            _ = deadline => {}
            _ = first_stop => {}
        }
        let end = if *stop.borrow() == Stop::No {
            End::TimedOut
        } else {
            End::Stopped
        };
        terminate(&mut child, pid, &mut stop).await?;
        exited.notify_one();
        Ok(end)
    };
    drive(pumping, waiting).await
}

/// Streams both output pipes into `sink` line by line, starting once `start` resolves (the
/// child exited) or after [`LIVE_AFTER`], whichever is first: a short command's output is
/// then read in one go after its exit, without registering its pipes with the event loop.
pub async fn pump_output(
    (out, err): (Option<Pipe>, Option<Pipe>),
    start: impl Future<Output = ()>,
    sink: &TaskOutput,
) {
    tokio::select! {
        () = start => {}
        () = tokio::time::sleep(LIVE_AFTER) => {}
    }
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

/// Streams one pipe into `sink` line by line. The log file is written once per read, not
/// once per line: before the next read (which may wait), every line read so far is written.
pub(crate) async fn pump(reader: impl AsyncRead + Unpin, stream: Stream, sink: &TaskOutput) {
    let mut lines = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => {
                sink.flush_log();
                return;
            }
            Ok(_) => {
                let (line, ending) = split_ending(&buf);
                sink.printed(stream, line, ending).await;
                if !lines.buffer().contains(&b'\n') {
                    sink.flush_log();
                }
            }
        }
    }
}

/// A line as read, and what ended it: `\r\n`, `\n`, or nothing (the output's last bytes).
pub(crate) fn split_ending(read: &[u8]) -> (&[u8], &[u8]) {
    let n = if read.ends_with(b"\r\n") {
        2
    } else {
        usize::from(read.ends_with(b"\n"))
    };
    read.split_at(read.len() - n)
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
    use super::{End, Stop, resolve_program, spawn, supervise};
    use crate::actions::TaskOutput;

    /// Runs `script` under `sh -c` to its end, its output going to a log in a temporary dir;
    /// returns how it ended, the log's text and how long it took.
    async fn run_sh(script: &str) -> (End, String, std::time::Duration) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let sink = TaskOutput::new(0, tx, Some(log.clone()), Default::default());
        let (_stop_tx, stop) = tokio::sync::watch::channel(Stop::No);
        let argv = ["sh".to_string(), "-c".to_string(), script.to_string()];
        let started = std::time::Instant::now();
        let child = spawn(&argv, dir.path(), &[]).unwrap();
        let pid = child.id();
        let end = supervise(child, None, stop, &sink).await.unwrap();
        let took = started.elapsed();
        // Whatever the script left running in its group.
        super::signal_group(pid, libc::SIGKILL);
        drop(sink);
        drain.await.unwrap();
        (end, std::fs::read_to_string(&log).unwrap_or_default(), took)
    }

    #[tokio::test]
    async fn output_beyond_a_pipe_buffer_is_read_whole_and_in_order() {
        let (end, log, _) = run_sh("seq 1 100000; echo done >&2; exit 3").await;
        assert!(
            matches!(end, End::Exited(s) if s.code() == Some(3)),
            "{end:?}"
        );
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 100_001);
        let numbers: Vec<&str> = lines.iter().copied().filter(|l| *l != "done").collect();
        assert_eq!(numbers.first(), Some(&"1"));
        assert_eq!(numbers.last(), Some(&"100000"));
        assert!(
            numbers
                .windows(2)
                .all(|w| w[0].parse::<u32>().unwrap() + 1 == w[1].parse::<u32>().unwrap())
        );
    }

    #[tokio::test]
    async fn a_command_printing_nothing_leaves_no_log_and_slow_output_is_kept() {
        let (end, log, _) = run_sh("true").await;
        assert!(matches!(end, End::Exited(s) if s.success()));
        assert_eq!(log, "");
        let (_, log, _) = run_sh("echo a; sleep 0.1; printf 'b\\r\\nc'").await;
        // The bytes as printed: `\r\n` kept, no newline added at the end.
        assert_eq!(log, "a\nb\r\nc");
    }

    #[tokio::test]
    async fn a_background_grandchild_holding_the_pipe_does_not_hold_the_task() {
        let (end, log, took) = run_sh("sleep 3 & echo hi").await;
        assert!(matches!(end, End::Exited(s) if s.success()));
        assert_eq!(log, "hi\n");
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    }

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
