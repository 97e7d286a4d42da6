//! `service` tasks: a long-running process started before its dependents, ready once its
//! probe answers, stopped (group SIGTERM, then SIGKILL) when nothing needs it any more.

use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::actions::process::{self, Stop};
use crate::actions::{TaskOutput, env};
use crate::model::{Pipeline, Readiness, Service, Task};

/// How often the readiness probe is tried.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// How a service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEnd {
    /// taskrun stopped it: after use, or because the run stopped (before it was ready, too).
    Stopped,
    /// It never became ready, or exited on its own: the message says which, with its exit
    /// code when it exited with one (the report's `exit_code`).
    Failed(String, Option<i32>),
}

/// Runs the service until `release` fires (or the run stops); sends on `ready` once the probe
/// succeeds. `release` also stops it while it is starting: a run that stops needs it no more.
pub async fn run(
    svc: &Service,
    pipeline: &Pipeline,
    task: &Task,
    output: &TaskOutput,
    mut stop: watch::Receiver<Stop>,
    mut release: oneshot::Receiver<()>,
    ready: oneshot::Sender<()>,
) -> ServiceEnd {
    let (argv, vars) = match (env::argv(&svc.run), env::env(pipeline, task)) {
        (Ok(a), Ok(v)) => (a, v),
        (Err(e), _) | (_, Err(e)) => return ServiceEnd::Failed(e.to_string(), None),
    };
    let probe = match &svc.ready {
        Readiness::Url(u) => match u.expose_url() {
            Ok(url) => Probe::Url(url, u.redacted()),
            Err(e) => return ServiceEnd::Failed(e.to_string(), None),
        },
        Readiness::Tcp(addr) => Probe::Tcp(addr.clone()),
    };
    let cwd = env::workdir(pipeline, task);
    let mut child = match process::spawn_task(&argv, &cwd, &vars) {
        Ok(c) => c,
        Err(e) => return ServiceEnd::Failed(format!("cannot start the service: {e}"), None),
    };
    let pid = child.id();
    // A service is read live from the start.
    let pumping = process::pump_output(
        (child.stdout.take(), child.stderr.take()),
        std::future::ready(()),
        output,
    );
    let control = async {
        let became_ready = tokio::select! {
            status = child.wait() => Err(exited(status, "exited before it was ready")),
            r = probe.until_ready(svc.ready_timeout) => r.map_err(|e| ServiceEnd::Failed(e, None)),
            // Not its failure: the run stopped (an interrupt, or fail-fast's release).
            () = process::stopped(&mut stop) => Err(ServiceEnd::Stopped),
            _ = &mut release => Err(ServiceEnd::Stopped),
        };
        if let Err(end) = became_ready {
            let _ = process::terminate(&mut child, pid, &mut stop).await;
            return end;
        }
        let _ = ready.send(());
        tokio::select! {
            status = child.wait() => {
                // What it started (`server & sleep 1`) goes with it: children do not outlive
                // the run (SPEC §13).
                process::stop_leftovers(pid).await;
                exited(status, "exited on its own")
            }
            _ = release => {
                let _ = process::terminate(&mut child, pid, &mut stop).await;
                ServiceEnd::Stopped
            }
            () = process::stopped(&mut stop) => {
                let _ = process::terminate(&mut child, pid, &mut stop).await;
                ServiceEnd::Stopped
            }
        }
    };
    process::drive(pumping, control).await
}

/// A service that ended by itself, `how` (before or after it was ready).
fn exited(status: std::io::Result<std::process::ExitStatus>, how: &str) -> ServiceEnd {
    match status {
        Ok(s) => {
            let (code, said) = process::describe(&s);
            ServiceEnd::Failed(format!("{how} ({said})"), code)
        }
        Err(e) => ServiceEnd::Failed(format!("waiting for the service failed: {e}"), None),
    }
}

enum Probe {
    /// The exposed URL, and the one shown to users.
    Url(String, String),
    Tcp(String),
}

/// The longest one URL probe waits for an answer.
const PROBE_ANSWER: Duration = Duration::from_secs(2);

impl Probe {
    /// Probes until ready; past `limit`, says what the last probe got.
    async fn until_ready(&self, limit: Duration) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the readiness client: {e}"))?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = match self {
                Probe::Url(url, shown) => {
                    // A probe does not outlast the readiness limit by much.
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let wait = PROBE_ANSWER.min(left).max(PROBE_INTERVAL);
                    match client.get(url).timeout(wait).send().await {
                        Ok(r) if r.status().as_u16() < 500 => return Ok(()),
                        Ok(r) => format!("GET {shown} answered {}", r.status()),
                        Err(e) if e.is_timeout() => {
                            format!("GET {shown} got no answer (timed out)")
                        }
                        Err(e) if e.is_connect() => format!("GET {shown}: no connection"),
                        // The error itself would name the exposed URL (maybe a secret).
                        Err(_) => format!("GET {shown} got no valid HTTP answer"),
                    }
                }
                Probe::Tcp(addr) => match tokio::net::TcpStream::connect(addr.as_str()).await {
                    Ok(_) => return Ok(()),
                    Err(_) => format!("no TCP connection to {addr}"),
                },
            };
            if tokio::time::Instant::now() + PROBE_INTERVAL > deadline {
                return Err(format!(
                    "not ready within {} ({got})",
                    humantime::format_duration(limit)
                ));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}
