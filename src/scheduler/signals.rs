//! SIGINT, SIGTERM and SIGHUP for the run loop's `select!`.

/// A signal that stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`.
    Term,
    /// The terminal closed (or `kill -HUP`): stops the run as SIGTERM does.
    Hup,
}

impl Signal {
    /// The name shown in the console and the logs.
    pub(super) fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP as a stream (nothing when signals are not handled).
pub(super) struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(super) fn new(enabled: bool) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        if !enabled {
            return Self {
                int: None,
                term: None,
                hup: None,
            };
        }
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            // Under `nohup` (SIGHUP ignored when taskrun started) a hang-up stays ignored.
            hup: (!ignored(libc::SIGHUP))
                .then(|| signal(SignalKind::hangup()).ok())
                .flatten(),
        }
    }

    pub(super) async fn next(&mut self) -> Option<Signal> {
        let Self { int, term, hup } = self;
        tokio::select! {
            s = recv(int, Signal::Int) => s,
            s = recv(term, Signal::Term) => s,
            s = recv(hup, Signal::Hup) => s,
        }
    }
}

async fn recv(sig: &mut Option<tokio::signal::unix::Signal>, what: Signal) -> Option<Signal> {
    match sig {
        Some(s) => s.recv().await.map(|_| what),
        None => std::future::pending().await,
    }
}

/// Whether `sig` is ignored (`SIG_IGN`), as `nohup` leaves SIGHUP for the program it starts.
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: with a null new action, sigaction only writes the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Waits until `ready` says so (asked every 50 ms) or a signal comes, which it returns:
/// while another taskrun holds the cache lock, a Ctrl-C still ends the run as an interrupted
/// run does, with its report. `listening` is called once the signals are caught.
pub async fn wait_until(
    mut ready: impl FnMut() -> bool,
    listening: impl FnOnce(),
) -> Option<Signal> {
    let mut signals = Signals::new(true);
    listening();
    loop {
        if ready() {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            sig = signals.next() => return sig,
        }
    }
}
