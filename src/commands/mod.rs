//! One module per subcommand; each returns the process exit code.

pub mod cache;
pub mod check;
mod error;
pub mod expansion;
pub mod explain;
pub mod list;
pub mod lock;
pub mod plan;
mod prune;
pub mod run;
pub mod timings;

use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::cli::{Command, LogFormat, RemoteExec, When};
use crate::exit_code;
use crate::lockfile::{self, Lockfile, standing::Unpinned};
use crate::manifest::{self, LoadOptions};
use crate::model::Pipeline;
use crate::plan::Plan;

pub use error::Error;

/// Runs one subcommand and returns its exit code; an error is printed here, once.
pub fn dispatch(command: Command) -> u8 {
    let (format, color) = match &command {
        Command::Run(a) => (a.log_format, a.color),
        Command::Plan(a) => (LogFormat::Text, a.color),
        Command::Check(a) => (LogFormat::Text, a.color),
        Command::Lock(a) => (LogFormat::Text, a.color),
        _ => (LogFormat::Text, When::Auto),
    };
    let color = stderr_color(color);
    init_tracing(format, color);
    match run_command(command, color) {
        Ok(code) => code,
        Err(e) => {
            e.print(color);
            e.exit_code()
        }
    }
}

/// `color`: whether stderr is coloured, decided once by [`dispatch`].
fn run_command(command: Command, color: bool) -> Result<u8, Error> {
    match command {
        Command::Run(args) => {
            if args.dry_run {
                let view = plan::View {
                    format: args.format,
                    expand: args.expand,
                    force: args.force,
                    no_cache: args.no_cache,
                    locked: args.locked,
                    remote_exec: args.remote_exec,
                    jobs: args.jobs,
                    keep_going: args.keep_going,
                };
                plan::print_plan(&args.selection, view)
            } else {
                run::run(args)
            }
        }
        Command::Plan(args) => plan::run(args),
        Command::Check(args) => check::run(args, color),
        Command::List(args) => list::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Lock(args) => lock::run(args),
        Command::Timings(args) => timings::run(args),
        Command::Cache(cmd) => cache::run(cmd),
        Command::Schema => Ok(print_stdout(&manifest::schema::manifest_schema_json())),
        Command::Completions(args) => {
            let shell = match args.shell {
                crate::cli::Shell::Bash => clap_complete::Shell::Bash,
                crate::cli::Shell::Zsh => clap_complete::Shell::Zsh,
                crate::cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut crate::cli::command(), "taskrun", &mut buf);
            Ok(print_stdout(&String::from_utf8_lossy(&buf)))
        }
    }
}

/// Refuses a workspace whose `.taskrun` (or one of the directories taskrun keeps in it) is a
/// symlink leading outside the workspace: reports, logs and the memo would be written there,
/// and old ones pruned there, wherever a repository's link points (SPEC §13).
pub fn refuse_state_links(root: &Path) -> Result<(), Error> {
    let ws = crate::workspace::Workspace::new(root);
    let state = root.join(".taskrun");
    let inner = ["runs", "logs", "manifest", "cache"].map(|d| state.join(d));
    for path in std::iter::once(state.clone()).chain(inner) {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() && !ws.leads_inside(&path) {
            let to = std::fs::read_link(&path).unwrap_or_default();
            return Err(Error::usage_with_hint(
                format!(
                    "{} is a symlink to {}, outside the workspace: taskrun keeps its state only inside it",
                    path.strip_prefix(root).unwrap_or(&path).display(),
                    to.display()
                ),
                "remove the link (TASKRUN_CACHE_DIR or [cache] dir put the cache elsewhere)",
            ));
        }
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (e.g. `| head`) is not an error.
pub fn print_stdout(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => exit_code::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit_code::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            exit_code::TASK_FAILED
        }
    }
}

/// Whether to colour stderr: `--color`, `NO_COLOR`, and whether stderr is a terminal.
fn stderr_color(when: When) -> bool {
    match when {
        When::Always => true,
        When::Never => false,
        When::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

/// Loads a manifest: its problems are the error.
pub fn load_pipeline(path: &Path, vars: &[String]) -> Result<Pipeline, Error> {
    load_pipeline_with(path, vars, manifest::load)
}

fn load_pipeline_with(
    path: &Path,
    vars: &[String],
    load: fn(&Path, &LoadOptions) -> Result<Pipeline, manifest::LoadError>,
) -> Result<Pipeline, Error> {
    let vars = manifest::parse_var_args(vars)?;
    let opts = LoadOptions {
        vars,
        ..Default::default()
    };
    Ok(load(path, &opts)?)
}

/// [`load_plan`] once `finished` have run: the fan-out tasks whose items only they produce
/// are expanded (SPEC §9), read from the files as they are now, except those `held` names
/// (see [`LoadOptions::held`]). `run` passes `remember` (see [`manifest::memo`]); `explain`
/// does not. With `targets`, the tasks `kept` names stay selected where they still exist:
/// what the phase before selected (a fan-out target of no instances selects nothing, and
/// its producers, which ran, would leave the report).
pub fn load_plan_after(
    path: &Path,
    vars: &[String],
    targets: &[String],
    kept: &[String],
    finished: std::collections::BTreeSet<String>,
    held: std::collections::BTreeSet<String>,
    remember: bool,
) -> Result<Plan, Error> {
    let opts = LoadOptions {
        vars: manifest::parse_var_args(vars)?,
        finished,
        held,
    };
    let pipeline = if remember {
        manifest::memo::load_remembered(path, &opts)?
    } else {
        manifest::load(path, &opts)?
    };
    if targets.is_empty() {
        return plan_pipeline(path, targets, pipeline);
    }
    let mut targets = targets.to_vec();
    let still = kept
        .iter()
        .filter(|n| pipeline.tasks.contains_key(n.as_str()));
    targets.extend(still.cloned());
    plan_pipeline(path, &targets, pipeline)
}

/// Loads a manifest and builds its plan for `targets`.
pub fn load_plan(path: &Path, vars: &[String], targets: &[String]) -> Result<Plan, Error> {
    plan_pipeline(path, targets, load_pipeline(path, vars)?)
}

/// [`load_plan`] for `run`: the manifest comes from its memo when unchanged
/// (see [`manifest::memo`]).
pub fn load_plan_remembered(
    path: &Path,
    vars: &[String],
    targets: &[String],
) -> Result<Plan, Error> {
    let pipeline = load_pipeline_with(path, vars, manifest::memo::load_remembered)?;
    plan_pipeline(path, targets, pipeline)
}

/// The manifest's lockfile, read and applied to `plan` (SPEC §10): every lockable download
/// with a current entry gets its pin, except those `refresh` names. Returns the lockfile
/// (empty when there is none) and the selected downloads left unpinned; a malformed lockfile
/// is the error.
pub fn apply_lockfile(
    plan: &mut Plan,
    refresh: &dyn Fn(usize) -> bool,
) -> Result<(Lockfile, Vec<Unpinned>), Error> {
    let path = lockfile::path_for(&plan.pipeline.manifest_path);
    let lock = lockfile::read(&path)?.unwrap_or_default();
    let unpinned = lockfile::standing::apply(plan, &lock, refresh);
    Ok((lock, unpinned))
}

/// `--locked`: when some selected download has no current entry, the error lists each (and
/// says what to run); nothing may run then.
pub fn refuse_unlocked(plan: &Plan, unpinned: &[Unpinned], vars: &[String]) -> Result<(), Error> {
    if unpinned.is_empty() {
        return Ok(());
    }
    let manifest = &plan.pipeline.manifest_path;
    let file = lockfile::file_name(manifest);
    let n = unpinned.len();
    let mut message = format!(
        "--locked: {file} does not pin {n} selected download{}:",
        if n == 1 { "" } else { "s" }
    );
    for u in unpinned {
        message.push_str(&format!("\n  {}: {}", plan.task(u.task).name, u.why));
    }
    Err(Error::usage_with_hint(
        message,
        format!("run `{}` and commit {file}", lock_command(manifest, vars)),
    ))
}

/// `taskrun lock MANIFEST --var ...`, ready to paste: the pins depend on the `--var`s (a URL
/// made of one is another URL without it).
pub fn lock_command(manifest: &Path, vars: &[String]) -> String {
    let word = lockfile::standing::shell_word;
    let mut cmd = format!("taskrun lock {}", word(&manifest.display().to_string()));
    for v in vars {
        cmd.push_str(&format!(" --var {}", word(v)));
    }
    cmd
}

/// `--remote-exec` against the loaded pipeline: `on` needs an executor (else a usage
/// error); returns whether placement is switched off.
pub fn remote_exec_off(pipeline: &Pipeline, flag: Option<RemoteExec>) -> Result<bool, Error> {
    match flag {
        Some(RemoteExec::Off) => Ok(true),
        Some(RemoteExec::On) => match crate::plan::placement::require_executor(pipeline) {
            Ok(()) => Ok(false),
            Err(e) => Err(Error::usage_with_hint(e.to_string(), e.hint())),
        },
        None => Ok(false),
    }
}

pub(crate) fn plan_pipeline(
    path: &Path,
    targets: &[String],
    pipeline: Pipeline,
) -> Result<Plan, Error> {
    Plan::build(pipeline, targets).map_err(|unknown| Error::UnknownTargets {
        manifest: path.to_path_buf(),
        unknown,
    })
}

/// Log lines: warnings (e.g. an unreachable remote cache) as short plain lines on stderr;
/// `--log-format json` gives every event as a JSON line on stdout. `TASKRUN_LOG` filters.
fn init_tracing(format: LogFormat, color: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match format {
        LogFormat::Json => "taskrun=info",
        LogFormat::Text => "warn",
    };
    let filter = EnvFilter::try_from_env("TASKRUN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stdout)
            .try_init(),
        LogFormat::Text => builder
            .without_time()
            .with_target(false)
            .with_ansi(color)
            .with_writer(std::io::stderr)
            .try_init(),
    };
}
