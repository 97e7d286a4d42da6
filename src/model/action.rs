//! What a task does: its kind and the settings of each kind (a command line, a download,
//! a service and its readiness probe).

use std::collections::BTreeMap;
use std::time::Duration;

use super::RelPath;
use crate::template::Template;

/// The four task kinds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// `run = ...`
    Command(CommandLine),
    /// `download = { ... }`
    Download(Download),
    /// `service = { ... }`
    Service(Service),
    /// Only `deps`.
    Group,
}

impl Action {
    /// The kind word.
    pub fn kind(&self) -> TaskKind {
        match self {
            Action::Command(_) => TaskKind::Command,
            Action::Download(_) => TaskKind::Download,
            Action::Service(_) => TaskKind::Service,
            Action::Group => TaskKind::Group,
        }
    }
}

/// The kind of a task as printed (`command`, `download`, `service`, `group`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A `run` task.
    Command,
    /// A `download` task.
    Download,
    /// A `service` task.
    Service,
    /// A group of deps.
    Group,
}

impl TaskKind {
    /// The word used in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Command => "command",
            TaskKind::Download => "download",
            TaskKind::Service => "service",
            TaskKind::Group => "group",
        }
    }
}

/// A command to run: through `sh -c`, or exec'd directly.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum CommandLine {
    /// `run = "shell text"`
    Shell(Template),
    /// `run = ["prog", "arg"]`
    Argv(Vec<Template>),
}

impl CommandLine {
    /// The command as shown to users (secrets redacted).
    pub fn display(&self) -> String {
        match self {
            CommandLine::Shell(t) => t.redacted(),
            CommandLine::Argv(args) => args
                .iter()
                .map(|a| {
                    let s = a.redacted();
                    if s.is_empty() || s.contains([' ', '"', '\'', '\\', '$']) {
                        format!("{s:?}")
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// An HTTP(S) GET streamed to a file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Download {
    /// Mirrors, tried in order within an attempt (at least one).
    pub urls: Vec<Template>,
    /// Destination file, relative to the root.
    pub dest: RelPath,
    /// Expected content digest (lowercase hex): written in the manifest, or filled in from
    /// the lockfile before keys are computed (see `pin_source`).
    pub sha256: Option<String>,
    /// Where `sha256` came from, so a mismatch can say which file to fix.
    pub pin_source: PinSource,
    /// Request headers; values may hold secrets.
    pub headers: BTreeMap<String, Template>,
    /// Refuse bodies larger than this.
    pub max_bytes: Option<u64>,
    /// Keep `<dest>.part` and continue with `Range` next time.
    pub resume: bool,
    /// On a cache hit of an unpinned URL, ask the origin whether it changed.
    pub revalidate: bool,
}

impl Download {
    /// Whether the lockfile pins this download (SPEC §10): it has no pin of its own. A
    /// `revalidate = true` download is left out: it asks the origin for a newer version on
    /// every hit, which a pin would turn into a failure.
    pub fn lockable(&self) -> bool {
        self.sha256.is_none() && !self.revalidate
    }

    /// Whether a cache hit of it still asks the origin (`revalidate = true` without a pin:
    /// a pinned file cannot change), and so may download anew in the run.
    pub fn asks_origin_on_hit(&self) -> bool {
        self.revalidate && self.sha256.is_none()
    }
}

/// Where a download's `sha256` pin came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PinSource {
    /// Written in the manifest (or there is no pin).
    #[default]
    Manifest,
    /// Filled in from the lockfile (SPEC §10).
    Lockfile(Box<LockedPin>),
}

/// A pin taken from the lockfile: what a mismatch message names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedPin {
    /// The lockfile's file name, e.g. `download.lock`.
    pub file: String,
    /// The command that re-pins this download, e.g. `taskrun lock --update M 'get[a.csv]'`.
    pub update: String,
}

/// A long-running process its dependents need.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Service {
    /// The process.
    pub run: CommandLine,
    /// When it counts as started.
    pub ready: Readiness,
    /// How long readiness may take.
    pub ready_timeout: Duration,
}

/// A service's readiness probe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Readiness {
    /// Ready when the URL answers any status below 500.
    Url(Template),
    /// Ready when a TCP connection succeeds.
    Tcp(String),
}
