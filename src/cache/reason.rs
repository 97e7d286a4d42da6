//! Why a task runs (a miss), or what its hit will restore: a value until it is shown, as
//! cargo's `DirtyReason` is. `plan`, `explain` and the cache's lookup share these words;
//! the JSON plan carries them as text.

use std::fmt;
use std::time::Duration;

use super::CacheError;

/// Why a task will run, or what its hit will restore, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Nothing is recorded for this key, nor an earlier entry of the task to compare with.
    NoEntry,
    /// No local entry; a remote cache is configured and may have it (`plan` never asks it).
    NoLocalEntry,
    /// What differs from the task's last entry ("command changed", "input a.csv changed").
    Changed(String),
    /// A dependency runs first, so the key is not known yet.
    DependencyWillRun(String),
    /// The input patterns could not be expanded.
    Inputs(CacheError),
    /// A required input pattern matches nothing (yet).
    InputUnmatched(String),
    /// An input file cannot be read.
    InputUnreadable {
        /// The file, relative to the workspace.
        path: String,
        /// Why.
        error: String,
    },
    /// `--force`.
    Force,
    /// `--no-cache`.
    NoCache,
    /// The task is never cached (a service, a group, `cache = "off"`, no outputs).
    NotCacheable(&'static str),
    /// The entry is older than the task's `cache_ttl`.
    Expired(Duration),
    /// The entry does not match the task's declared outputs.
    Rejected(String),
    /// The remote's entry does not match the task's declared outputs.
    RemoteRejected(String),
    /// An output the entry lists is not in the store.
    Incomplete(String),
    /// The entry's recorded output cannot be read.
    CorruptLog,
    /// The entry's outputs cannot be restored (the message says why).
    Unusable(String),
    /// The entry would restore a path the task does not declare (the message says which).
    Undeclared(String),
    /// A hit that puts back outputs that changed or went missing.
    Restore {
        /// The first such output.
        path: String,
        /// How it differs ("changed", "missing").
        drift: &'static str,
        /// How many more.
        more: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEntry => f.write_str("no entry"),
            Self::NoLocalEntry => f.write_str("no local entry (the remote may have it)"),
            Self::Changed(what) => f.write_str(what),
            Self::DependencyWillRun(dep) => write!(f, "dependency {dep} will run"),
            Self::Inputs(e) => write!(f, "{e}"),
            Self::InputUnmatched(glob) => write!(f, "input pattern {glob} matches nothing"),
            Self::InputUnreadable { path, error } => write!(f, "input {path} unreadable: {error}"),
            Self::Force => f.write_str("--force"),
            Self::NoCache => f.write_str("--no-cache"),
            Self::NotCacheable(why) => f.write_str(why),
            Self::Expired(ttl) => {
                write!(
                    f,
                    "expired (cache_ttl {})",
                    humantime::format_duration(*ttl)
                )
            }
            Self::Rejected(why) => write!(f, "cache entry rejected: {why}"),
            Self::RemoteRejected(why) => write!(f, "remote cache entry rejected: {why}"),
            Self::Incomplete(path) => {
                write!(f, "cache entry incomplete: output {path} is not stored")
            }
            Self::CorruptLog => f.write_str("cache entry corrupt (recorded output)"),
            Self::Unusable(why) => write!(f, "cache entry unusable: {why}"),
            Self::Undeclared(what) => f.write_str(what),
            Self::Restore { path, drift, more } => {
                write!(f, "output {path} {drift}: restore")?;
                match more {
                    0 => Ok(()),
                    n => write!(f, " (and {n} more)"),
                }
            }
        }
    }
}

/// As its words: the JSON plan's `reason` is text.
impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_reads_as_plan_and_explain_always_said_it() {
        let cases = [
            (Reason::NoEntry, "no entry"),
            (
                Reason::DependencyWillRun("gen".into()),
                "dependency gen will run",
            ),
            (
                Reason::Expired(Duration::from_secs(3600)),
                "expired (cache_ttl 1h)",
            ),
            (
                Reason::Restore {
                    path: "out/a".into(),
                    drift: "missing",
                    more: 2,
                },
                "output out/a missing: restore (and 2 more)",
            ),
            (
                Reason::Restore {
                    path: "out/a".into(),
                    drift: "changed",
                    more: 0,
                },
                "output out/a changed: restore",
            ),
        ];
        for (reason, words) in cases {
            assert_eq!(reason.to_string(), words);
        }
    }
}
