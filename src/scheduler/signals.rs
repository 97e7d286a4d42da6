//! SIGINT and SIGTERM for the run loop's `select!`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`.
    Term,
}

/// SIGINT and SIGTERM as a stream (nothing when signals are not handled).
pub(super) struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(super) fn new(enabled: bool) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        if !enabled {
            return Self {
                int: None,
                term: None,
            };
        }
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    pub(super) async fn next(&mut self) -> Option<Signal> {
        let Self { int, term } = self;
        let int = async {
            match int {
                Some(s) => s.recv().await.map(|_| Signal::Int),
                None => std::future::pending().await,
            }
        };
        let term = async {
            match term {
                Some(s) => s.recv().await.map(|_| Signal::Term),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            s = int => s,
            s = term => s,
        }
    }
}
