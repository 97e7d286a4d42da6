//! A real BuildGrid 0.9.1 cluster on loopback for the remote-execution tests (SPEC §11).
//!
//! `cluster/cluster.py` (run with the Python of BuildGrid's virtualenv, which
//! `cluster/install.sh` makes) starts PostgreSQL, `bgd server` and a worker process with N bot
//! sessions, prints `READY {json}` and then takes commands on its stdin. Its stdin is a pipe
//! only this process holds, so however this process ends (even SIGKILL) the supervisor sees
//! end of file and tears the cluster down; its children also carry PR_SET_PDEATHSIG.
//!
//! Prefer [`Cluster::shared`] (one per test binary, 4 bots); a test that stops the server or
//! kills the workers starts its own with [`Cluster::start`] (~4 s on a quiet machine, several
//! times that under load; ~200 MB). The shared cluster's worker log holds every test's actions.
//!
//! When the cluster cannot start, [`Cluster::start`] returns `None` with a "skipping" line on
//! stderr, except under `CI`, where it panics: CI must run these tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a cluster may take to come up (a loaded 2-core machine needs ~15 s).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one control command (stop or start the server, kill the workers) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What to start; [`Options::new`] has the defaults [`Cluster::start`] uses.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bot sessions, each running one action at a time (one worker process runs them all).
    pub bots: usize,
    /// The REAPI instance name.
    pub instance: String,
    /// Platform property keys actions may carry; empty means the template's default list
    /// (`OSFamily`, `ISA`, `container-image`, `pool`, `gpu`, `size`). None is matched
    /// against the bots, so any bot runs any action; any other key is refused by BuildGrid
    /// with FAILED_PRECONDITION ("Unregistered platform property").
    pub platform_keys: Vec<String>,
    /// How the worker returns stdout and stderr: `"digest"` (CAS blobs), `"raw"` (inline) or
    /// `"both"`.
    pub stdio: &'static str,
    /// The server's thread pool, also its limit of concurrent calls (BuildGrid's
    /// `thread-pool-size`; 40 by default here).
    pub threads: usize,
}

impl Options {
    /// `bots` bots on instance `""`, the default platform keys, stdio as CAS blobs.
    pub fn new(bots: usize) -> Self {
        Self {
            bots,
            instance: String::new(),
            platform_keys: Vec::new(),
            stdio: "digest",
            threads: 40,
        }
    }
}

/// One action a bot finished, from the worker's log.
#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    /// The bot that ran it (`bot-0`, `bot-1`, ...).
    pub bot: String,
    /// The Action digest, `HASH/SIZE` (`-` when the lease could not even be read).
    pub action: String,
    /// The command's exit code (128 + signal when killed).
    pub exit_code: i32,
    /// The lease's `google.rpc.Code` (0 OK, 4 DEADLINE_EXCEEDED, 9 FAILED_PRECONDITION, ...).
    pub status: i32,
    /// Unix time the bot took the lease, in seconds.
    pub start: f64,
    /// Unix time it finished.
    pub end: f64,
    /// The server cancelled the lease while it ran.
    pub cancelled: bool,
}

/// A running cluster; dropping it tears everything down and waits for that.
pub struct Cluster {
    info: Value,
    url: String,
    instance: String,
    dir: PathBuf,
    startup: Duration,
    control: Mutex<Control>,
}

/// The supervisor and the two ends of its command channel.
struct Control {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// BuildGrid's virtualenv: `TASKRUN_BUILDGRID_VENV`, else `~/.cache/taskrun-buildgrid/venv`.
pub fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("TASKRUN_BUILDGRID_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/taskrun-buildgrid/venv")
}

/// The `bgd` command line of the virtualenv (its `execute` is an independent REAPI client).
pub fn bgd() -> PathBuf {
    venv().join("bin/bgd")
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/remote_exec/cluster")
}

/// `None` with a "skipping" line, or a panic under `CI`.
fn unavailable(why: &str) -> Option<Cluster> {
    let msg = format!(
        "BuildGrid test cluster unavailable: {why}; run tests/remote_exec/cluster/install.sh"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set, so this fails instead of skipping)");
    }
    // Straight to the stream: libtest's capture would hide an `eprintln!` of a passing test.
    let _ = writeln!(std::io::stderr(), "skipping: {msg}");
    None
}

impl Cluster {
    /// A fresh cluster with `bots` bots on instance `""`.
    pub fn start(bots: usize) -> Option<Self> {
        Self::start_with(Options::new(bots))
    }

    /// A fresh cluster as the options say.
    pub fn start_with(options: Options) -> Option<Self> {
        let python = venv().join("bin/python");
        if !python.is_file() || !bgd().is_file() {
            return unavailable(&format!("no BuildGrid virtualenv at {}", venv().display()));
        }
        let began = Instant::now();
        let mut cmd = Command::new(&python);
        cmd.arg(scripts().join("cluster.py"))
            .arg("--bots")
            .arg(options.bots.to_string())
            .arg("--instance")
            .arg(&options.instance)
            .arg("--stdio")
            .arg(options.stdio)
            .arg("--threads")
            .arg(options.threads.to_string());
        for key in &options.platform_keys {
            cmd.arg("--platform-key").arg(key);
        }
        if std::env::var_os("TASKRUN_CLUSTER_KEEP").is_some() {
            cmd.arg("--keep");
        }
        let spawned = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return unavailable(&format!("cannot run {}: {e}", python.display())),
        };
        let (Some(stdin), Some(stdout), Some(mut stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return unavailable("the supervisor's pipes are missing");
        };
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut control = Control {
            child: Some(child),
            stdin: Some(stdin),
            lines,
            stderr,
        };
        let ready = loop {
            match control.lines.recv_timeout(START_TIMEOUT) {
                Ok(line) if line.starts_with("READY ") => break line,
                Ok(line) if line.starts_with("FAILED ") => {
                    let why = line["FAILED ".len()..].to_string();
                    control.shutdown();
                    return unavailable(&why);
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    control.shutdown();
                    return unavailable(&format!("not ready after {} s", START_TIMEOUT.as_secs()));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    control.shutdown();
                    let err = control.stderr_text();
                    return unavailable(&format!("the supervisor exited: {}", err.trim()));
                }
            }
        };
        let info: Value = match serde_json::from_str(&ready["READY ".len()..]) {
            Ok(v) => v,
            Err(e) => {
                control.shutdown();
                return unavailable(&format!("bad READY line {ready:?}: {e}"));
            }
        };
        let text = |k: &str| info[k].as_str().unwrap_or_default().to_string();
        let cluster = Cluster {
            url: text("url"),
            instance: text("instance"),
            dir: PathBuf::from(text("dir")),
            startup: began.elapsed(),
            info,
            control: Mutex::new(control),
        };
        eprintln!(
            "BuildGrid test cluster at {} ({} bots) up in {:.1} s",
            cluster.url,
            options.bots,
            cluster.startup.as_secs_f64()
        );
        Some(cluster)
    }

    /// One cluster per test binary (4 bots, instance `""`), started on first use, for tests
    /// that neither stop its server nor kill its workers. It is torn down when the process
    /// exits (an atexit hook waits for that; a killed process leaves it to the supervisor).
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        extern "C" fn teardown() {
            if let Some(Ok(c)) = SHARED.get() {
                c.shutdown();
            }
        }
        let cell = SHARED.get_or_init(|| {
            // A panic under CI must not poison the cell: record why, panic at each use below.
            let started = std::panic::catch_unwind(|| {
                let c = Cluster::start(4);
                // SAFETY: registers a plain function with no captured state; it only locks a
                // mutex and waits for a child.
                unsafe { libc::atexit(teardown) };
                c
            });
            match started {
                Ok(Some(c)) => Ok(c),
                Ok(None) => Err(String::new()),
                Err(p) => Err(p
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "the cluster did not start".into())),
            }
        });
        match cell {
            Ok(c) => Some(c),
            Err(why) if why.is_empty() => {
                eprintln!(
                    "skipping: BuildGrid test cluster unavailable (see the first test's message)"
                );
                None
            }
            Err(why) => panic!("{why}"),
        }
    }

    /// `grpc://127.0.0.1:PORT`, for `[execution] remote` or `TASKRUN_REMOTE_EXECUTOR`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:PORT`, the form `bgd --remote` takes.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// BuildGrid's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.info["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0)
    }

    /// The REAPI instance name (`""` unless [`Options::instance`] said otherwise).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The cluster's directory (database, CAS, logs, the bots' scratch directories).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`Cluster::start`] took.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// Process ids of the server, the worker and PostgreSQL's postmaster.
    pub fn pids(&self) -> Vec<u32> {
        ["server", "worker", "postgres"]
            .iter()
            .filter_map(|k| self.info["pids"][k].as_u64())
            .filter_map(|p| u32::try_from(p).ok())
            .collect()
    }

    /// Kills the BuildGrid server (SIGKILL); returns once its port refuses connections.
    /// PostgreSQL and the workers keep running (the workers retry).
    pub fn stop_server(&self) {
        self.command("stop-server");
    }

    /// Starts the server again after [`Cluster::stop_server`], on the same port; returns
    /// once every bot is connected again.
    pub fn start_server(&self) {
        self.command("start-server");
    }

    /// Kills the worker process and the commands it runs: its bots vanish without reporting,
    /// as lost workers do. BuildGrid notices after its 10 s bot keepalive and requeues their
    /// jobs (which then wait for a bot: there is none left).
    pub fn kill_workers(&self) {
        self.command("kill-workers");
    }

    /// The worker's log: a `session`/`up` line per bot (re)connecting, a `ran` line per
    /// finished lease.
    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default()
    }

    /// The server's log (for a failing test's message).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Every action a bot finished so far, in the order they finished.
    pub fn executions(&self) -> Vec<Execution> {
        self.worker_log().lines().filter_map(parse_ran).collect()
    }

    /// The largest number of actions that ran at the same moment, from [`Cluster::executions`].
    pub fn max_parallel(&self) -> usize {
        let runs = self.executions();
        runs.iter()
            .map(|a| {
                runs.iter()
                    .filter(|b| b.start <= a.start && a.start < b.end)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    fn command(&self, cmd: &str) {
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let stdin = control.stdin.as_mut().expect("the cluster was shut down");
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .unwrap();
        match control.lines.recv_timeout(COMMAND_TIMEOUT) {
            Ok(line) if line == "ok" => {}
            Ok(line) => panic!("{cmd}: {line}"),
            Err(e) => panic!("{cmd}: no answer from the supervisor: {e}"),
        }
    }

    /// Tears the cluster down and waits until its processes are gone.
    fn shutdown(&self) {
        if let Ok(mut control) = self.control.lock() {
            control.shutdown();
        }
    }
}

impl Control {
    /// Closes the supervisor's stdin (its cue to tear down) and waits for it to exit.
    fn shutdown(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    fn stderr_text(&self) -> String {
        // Give the reader thread a moment to drain the pipe after the exit.
        std::thread::sleep(Duration::from_millis(100));
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `ran bot=B action=H/S exit=N status=C start=T end=T [cancelled]`.
fn parse_ran(line: &str) -> Option<Execution> {
    let rest = line.strip_prefix("ran ")?;
    let field = |k: &str| {
        rest.split(' ')
            .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    Some(Execution {
        bot: field("bot")?.to_string(),
        action: field("action")?.to_string(),
        exit_code: field("exit")?.parse().ok()?,
        status: field("status")?.parse().ok()?,
        start: field("start")?.parse().ok()?,
        end: field("end")?.parse().ok()?,
        cancelled: rest.split(' ').any(|w| w == "cancelled"),
    })
}

#[test]
fn parses_a_ran_line() {
    let e = parse_ran("ran bot=bot-1 action=ab/12 exit=3 status=0 start=1.5 end=2.25 cancelled")
        .unwrap();
    assert_eq!(e.bot, "bot-1");
    assert_eq!(e.action, "ab/12");
    assert_eq!((e.exit_code, e.status), (3, 0));
    assert_eq!((e.start, e.end), (1.5, 2.25));
    assert!(e.cancelled);
    assert!(parse_ran("session bot=bot-0 name=/x").is_none());
}
