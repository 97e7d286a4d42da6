//! The command line (SPEC §1), as clap derive types.
//!
//! `taskrun <MANIFEST>` is shorthand for `taskrun run <MANIFEST>`: [`parse`] inserts the `run`
//! word when the first argument is not a subcommand, so clap still sees one tree of commands.

// The doc comments of arguments are their `--help` text, written for a terminal: `[vars]`
// and `<run-id>` there are words, not rustdoc links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run pipelines declared in TOML manifests: downloads, commands, services and groups, with
/// dependencies, retries, concurrency pools and a content-hash cache.
#[derive(Debug, Parser)]
#[command(
    name = "taskrun",
    version,
    about,
    after_help = "A bare `taskrun MANIFEST [TARGET...]` is `taskrun run MANIFEST [TARGET...]`.\n\
                  Exit codes: 0 ok, 1 a task failed, 2 usage or manifest error, 130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline (TARGETs: only them and their dependencies)
    Run(RunArgs),
    /// Show what would run, in what order and why; runs nothing, writes nothing
    Plan(PlanArgs),
    /// Validate manifests (for CI); exit 0 when clean, 2 on any problem
    Check(CheckArgs),
    /// List the tasks with their descriptions
    List(ListArgs),
    /// Show why TASK is or is not cached: its key's parts against the last run
    Explain(ExplainArgs),
    /// Pin downloads without sha256 in the manifest's .lock file
    Lock(LockArgs),
    /// Write the timings page (HTML) of a stored run
    Timings(TimingsArgs),
    /// Inspect or prune the cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print the manifest JSON Schema
    Schema,
    /// Print shell completions
    Completions(CompletionsArgs),
}

/// What run, plan and lock work on, resolved the same way by each.
#[derive(Debug, Args)]
pub struct Selection {
    /// The manifest
    pub manifest: PathBuf,
    /// Tasks to select (with their dependencies); all tasks when none is given
    pub targets: Vec<String>,
    /// Set a variable, overriding [vars] (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// `taskrun run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The manifest, the tasks to run and the variables
    #[command(flatten)]
    pub selection: Selection,
    /// Print the plan instead of running (same as `taskrun plan`)
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Plan format, with --dry-run
    #[arg(long, value_enum, default_value_t = PlanFormat::Text, requires = "dry_run")]
    pub format: PlanFormat,
    /// With --dry-run: list every instance of a fan-out task, not a summary of each
    #[arg(long, requires = "dry_run")]
    pub expand: bool,
    /// Running-task limit (overrides pipeline.concurrency)
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// After a failure, still run everything not downstream of it
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Run even on a cache hit (the new result is still stored)
    #[arg(long)]
    pub force: bool,
    /// Neither read nor write the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Refuse to run unless the lockfile pins every selected download (for CI)
    #[arg(long)]
    pub locked: bool,
    /// Send command tasks to the remote executor (on: require one) or run all here (off)
    #[arg(long, value_enum, value_name = "on|off")]
    pub remote_exec: Option<RemoteExec>,
    /// Also write the JSON run report here
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML report here (one testcase per task)
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Write the run as a Chrome trace here (open it in Perfetto or chrome://tracing)
    #[arg(long, value_name = "PATH")]
    pub trace: Option<PathBuf>,
    /// Write the timings page .taskrun/runs/<run-id>.html and print its path
    #[arg(long)]
    pub timings: bool,
    /// Live progress view
    #[arg(long, value_enum, default_value_t = When::Auto)]
    pub progress: When,
    /// Format of log lines
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More output (replays cached output, debug logs)
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Errors and the final summary only
    #[arg(short, long)]
    pub quiet: bool,
    /// Colours
    #[arg(long, value_enum, default_value_t = When::Auto)]
    pub color: When,
}

/// `taskrun plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The manifest, the tasks to plan and the variables
    #[command(flatten)]
    pub selection: Selection,
    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// List every instance of a fan-out task, not a summary of each (text format)
    #[arg(long)]
    pub expand: bool,
    /// Fail (exit 2) unless the lockfile pins every selected download
    #[arg(long)]
    pub locked: bool,
    /// Predict as if run with --force
    #[arg(long)]
    pub force: bool,
    /// Predict as if run with --no-cache
    #[arg(long)]
    pub no_cache: bool,
    /// Place tasks as if run with --remote-exec on|off
    #[arg(long, value_enum, value_name = "on|off")]
    pub remote_exec: Option<RemoteExec>,
    /// Colours
    #[arg(long, value_enum, default_value_t = When::Auto)]
    pub color: When,
}

/// `taskrun check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifests to validate
    #[arg(required = true)]
    pub manifests: Vec<PathBuf>,
    /// Set a variable, overriding [vars] (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Fail (exit 2) unless each manifest's lockfile pins all its downloads
    #[arg(long)]
    pub locked: bool,
    /// Colours
    #[arg(long, value_enum, default_value_t = When::Auto)]
    pub color: When,
}

/// `taskrun lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The manifest, the downloads to pin (all when none is given) and the variables
    #[command(flatten)]
    pub selection: Selection,
    /// Download the selected downloads again even when they have an entry
    #[arg(long, conflicts_with = "check")]
    pub update: bool,
    /// Change nothing; exit 1 when the lockfile would change, 0 when it is current
    #[arg(long)]
    pub check: bool,
    /// Colours
    #[arg(long, value_enum, default_value_t = When::Auto)]
    pub color: When,
}

/// `taskrun timings`.
#[derive(Debug, Args)]
pub struct TimingsArgs {
    /// The manifest whose `.taskrun/runs/` holds the run (default: the current directory's);
    /// or the run, when it is the only argument
    pub manifest: Option<PathBuf>,
    /// The run id, `latest`, or the path of a run report (.json)
    pub run: Option<String>,
    /// Where to write the page (default: `.taskrun/runs/<run-id>.html`; `-`: standard output)
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// `taskrun list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The manifest
    pub manifest: PathBuf,
    /// Set a variable, overriding [vars] (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// `taskrun explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The manifest
    pub manifest: PathBuf,
    /// The task to explain
    pub task: String,
    /// Set a variable, overriding [vars] (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// `taskrun cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries, bytes and the last run's hit rate
    Stats(CacheArgs),
    /// Evict least-recently-used entries beyond --max-size / --max-age
    Gc(GcArgs),
    /// Delete the whole cache
    Clean(CacheArgs),
}

/// Which cache a cache subcommand works on.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Use this manifest's cache dir (else TASKRUN_CACHE_DIR or ./.taskrun/cache)
    pub manifest: Option<PathBuf>,
}

/// `taskrun cache gc`: the cache and its limits (clap refuses the limits on the other
/// subcommands, where they would mean nothing).
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Keep the store under this size, e.g. 2GiB
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Drop entries not used for this long, e.g. 30d
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
}

/// `taskrun completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: Shell,
}

/// Shells we print completions for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
}

/// Plan output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Human-readable levels with reasons
    Text,
    /// Machine-readable (schema/plan.schema.json)
    Json,
    /// Graphviz
    Dot,
    /// Mermaid flowchart
    Mermaid,
}

/// `--remote-exec on|off` (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RemoteExec {
    /// Send command tasks to the configured executor; an error when none is configured
    On,
    /// Run every task on this machine
    Off,
}

/// auto / always / never switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum When {
    /// Decide from the terminal and the environment
    Auto,
    /// Always
    Always,
    /// Never
    Never,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text
    Text,
    /// One JSON object per line
    Json,
}

/// The command names (a first argument that is none of them is a manifest).
pub(crate) const SUBCOMMANDS: &[&str] = &[
    "run",
    "timings",
    "plan",
    "check",
    "list",
    "explain",
    "lock",
    "cache",
    "schema",
    "completions",
    "help",
];

/// Parses the process arguments, treating `taskrun MANIFEST ...` as `taskrun run MANIFEST ...`.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        let top_level_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
        if !top_level_flag && !SUBCOMMANDS.contains(&first) {
            args.insert(1, OsString::from("run"));
        }
    }
    Cli::try_parse_from(args)
}

/// Builds the clap command, for completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Cli {
        parse(args.iter().map(OsString::from)).unwrap()
    }

    #[test]
    fn bare_manifest_means_run() {
        match p(&["taskrun", "m.toml", "a", "-j", "3"]).command {
            Command::Run(r) => {
                assert_eq!(r.selection.manifest, PathBuf::from("m.toml"));
                assert_eq!(r.selection.targets, vec!["a".to_string()]);
                assert_eq!(r.jobs, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_first_still_run() {
        assert!(matches!(p(&["taskrun", "-n", "m.toml"]).command, Command::Run(r) if r.dry_run));
    }

    #[test]
    fn lock_takes_a_selection() {
        match p(&["taskrun", "lock", "m.toml", "a", "--var", "x=1", "--update"]).command {
            Command::Lock(l) => {
                assert_eq!(l.selection.targets, vec!["a".to_string()]);
                assert_eq!(l.selection.vars, vec!["x=1".to_string()]);
                assert!(l.update && !l.check);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(["taskrun", "lock", "m.toml", "--update", "--check"].map(OsString::from))
                .is_err()
        );
    }

    #[test]
    fn remote_exec_is_on_or_off_for_run_and_plan() {
        match p(&["taskrun", "m.toml", "--remote-exec", "off"]).command {
            Command::Run(r) => assert_eq!(r.remote_exec, Some(RemoteExec::Off)),
            other => panic!("{other:?}"),
        }
        match p(&["taskrun", "plan", "m.toml", "--remote-exec=on"]).command {
            Command::Plan(a) => assert_eq!(a.remote_exec, Some(RemoteExec::On)),
            other => panic!("{other:?}"),
        }
        let bad = ["taskrun", "m.toml", "--remote-exec", "maybe"];
        assert!(parse(bad.map(OsString::from)).is_err());
        let lock = ["taskrun", "lock", "m.toml", "--remote-exec", "on"];
        assert!(parse(lock.map(OsString::from)).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }
}
