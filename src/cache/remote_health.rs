//! What a failed request to a remote cache means, for both protocols (HTTP, SPEC §5; gRPC,
//! SPEC §11): every failure is a miss; a remote that is down or refuses is one warning and
//! then off for the rest of the run; a bad entry is a warning and the remote stays on.

use std::sync::atomic::{AtomicBool, Ordering};

/// How a request to the remote failed.
pub(crate) enum Failure {
    /// Down, timed out, overloaded, 5xx: disable the remote.
    Unreachable(String),
    /// A status the protocol does not expect (401, 403, 413, an unsupported server):
    /// disable the remote.
    Refused(String),
    /// This one entry is bad (corrupt blob or record): a miss, the remote stays on.
    Corrupt(String),
    /// The local side failed (disk full, ...): a miss for this entry.
    Local(String),
    /// The entry or one of its blobs is gone: a plain miss.
    Absent,
}

/// A remote's on/off switch for the run, and the one warning that turns it off.
#[derive(Debug)]
pub(crate) struct Health {
    /// The remote as messages show it (no credentials).
    shown: String,
    disabled: AtomicBool,
}

impl Health {
    /// A remote shown as `shown`, on until its first failure.
    pub(crate) fn new(shown: String) -> Self {
        Self {
            shown,
            disabled: AtomicBool::new(false),
        }
    }

    /// The remote as messages show it.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// False once a failure has disabled the remote for the rest of the run.
    pub(crate) fn is_enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// The first failure disables the remote and warns; later ones are silent.
    pub(crate) fn disable(&self, what: &str, why: &str) {
        if !self.disabled.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "remote cache {} {what} ({why}); continuing with the local cache",
                self.shown
            );
        }
    }

    /// Reports a failure the way its kind asks; every failure is a miss.
    pub(crate) fn settle<T>(&self, what: &str, r: Result<Option<T>, Failure>) -> Option<T> {
        match r {
            Ok(v) => v,
            Err(Failure::Absent) => None,
            Err(Failure::Unreachable(why)) => {
                self.disable("unreachable", &why);
                None
            }
            Err(Failure::Refused(why)) => {
                self.disable(&format!("refused {what}"), &why);
                None
            }
            Err(Failure::Corrupt(why)) => {
                tracing::warn!(
                    "remote cache {} entry {what} is corrupt ({why}); treating it as a miss",
                    self.shown
                );
                None
            }
            Err(Failure::Local(why)) => {
                tracing::warn!("cannot copy remote cache entry {what} locally: {why}");
                None
            }
        }
    }
}
