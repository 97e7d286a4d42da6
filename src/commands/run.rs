//! `taskrun run`: load, plan, run the scheduler, write the report files, pick the exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cache::{NoCache, TaskCache};
use crate::cli::{LogFormat, RunArgs, When};
use crate::commands::{Error, apply_lockfile, expansion, load_plan_remembered, refuse_unlocked};
use crate::events::Fanout;
use crate::lockfile::{self, Lockfile, standing, standing::Unpinned};
use crate::report::{self, github::Github, junit::Junit, plain, tracing_sink::TracingSink};
use crate::scheduler::{self, RunOptions};

/// Facts about where taskrun runs, read once so sinks can be tested with any of them.
#[derive(Debug, Clone)]
pub struct Facts {
    /// stdout is a terminal.
    pub is_terminal: bool,
    /// `CI` is set (no live view).
    pub is_ci: bool,
    /// `GITHUB_ACTIONS=true`.
    pub github: bool,
    /// `$GITHUB_STEP_SUMMARY`.
    pub step_summary: Option<PathBuf>,
    /// `NO_COLOR` is set.
    pub no_color: bool,
    /// `TERM=dumb`: a terminal that cannot move the cursor (no live view).
    pub dumb_term: bool,
}

impl Facts {
    /// Reads the facts from the process environment.
    pub fn from_env() -> Self {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        Self {
            is_terminal: std::io::stdout().is_terminal(),
            is_ci: set("CI"),
            github: std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true"),
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            no_color: set("NO_COLOR"),
            dumb_term: console::is_dumb(),
        }
    }
}

/// Chooses the sinks for the console from the options and the facts.
pub fn console_sinks(args: &RunArgs, facts: &Facts) -> Fanout {
    let mut sinks = Fanout::new();
    if args.log_format == LogFormat::Json {
        sinks.push(Box::new(TracingSink { quiet: args.quiet }));
        return sinks;
    }
    let verbosity = if args.quiet {
        plain::Verbosity::Quiet
    } else {
        plain::Verbosity::Normal
    };
    let live = match args.progress {
        When::Always => true,
        When::Never => false,
        When::Auto => facts.is_terminal && !facts.is_ci && !facts.github && !facts.dumb_term,
    };
    let color = match args.color {
        When::Always => true,
        When::Never => false,
        When::Auto => facts.is_terminal && !facts.no_color,
    };
    if facts.github {
        sinks.push(Box::new(Github::new(
            std::io::stdout(),
            args.quiet,
            facts.step_summary.clone(),
        )));
    } else if live && !args.quiet {
        sinks.push(Box::new(report::console::Console::new(color)));
    } else {
        // SPEC §7: plain lines have no escape codes off a terminal or under CI, unless asked.
        let color = match args.color {
            When::Auto => color && !facts.is_ci && !facts.dumb_term,
            _ => color,
        };
        let plain = plain::Plain::new(std::io::stdout(), verbosity).colored(color);
        sinks.push(Box::new(plain));
    }
    sinks
}

/// Runs the pipeline; returns the exit code (0, 1, 130, 143), or why it could not start.
pub fn run(args: RunArgs) -> Result<u8, Error> {
    let (no_cache, force) = (args.no_cache, args.force);
    // The cache's state files are read while the manifest loads (unless `[cache] dir` moves
    // the cache elsewhere, which the prefetch only learns afterwards).
    let prefetch = (!no_cache)
        .then(|| {
            let env = |k: &str| std::env::var(k).ok();
            let manifest = &args.selection.manifest;
            let dir = crate::manifest::load::default_cache_dir(manifest, &env);
            crate::cache::local::Prefetch::start(dir, manifest.clone())
        })
        .flatten();
    run_with_cache(args, move |plan| -> Arc<dyn TaskCache> {
        if no_cache {
            return Arc::new(NoCache);
        }
        let options = crate::cache::CacheOptions {
            force,
            ..Default::default()
        };
        match crate::cache::LocalCache::open_with(&plan.pipeline, options, prefetch) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("warning: {e}; running without the cache");
                Arc::new(NoCache)
            }
        }
    })
}

/// Runs the pipeline with the cache `make_cache` builds for the plan (the seam the cache
/// wiring uses; it sees `--force` / `--no-cache` through `args`).
pub fn run_with_cache(
    args: RunArgs,
    make_cache: impl FnOnce(&crate::plan::Plan) -> Arc<dyn TaskCache>,
) -> Result<u8, Error> {
    let sel = &args.selection;
    super::refuse_state_links(&crate::manifest::load::manifest_dir(&sel.manifest))?;
    let mut plan = load_plan_remembered(&sel.manifest, &sel.vars, &sel.targets)?;
    // Where tasks run is the scheduler's business; a flag that cannot be honoured stops the
    // run before anything starts.
    let remote_off = super::remote_exec_off(&plan.pipeline, args.remote_exec)?;
    // After the memo: an edited lockfile is always seen.
    let (mut lock, mut unpinned) = apply_lockfile(&mut plan, &|_| false)?;
    if args.locked {
        refuse_unlocked(&plan, &unpinned, &sel.vars)?;
    }
    check_destinations(&args, &plan.pipeline)?;
    let runtime = runtime()?;
    let started = SystemTime::now();
    let run_id = report::new_run_id(started);
    let state_dir = plan.pipeline.root.join(".taskrun");
    // Created by the first task that prints anything: a quiet run leaves no empty dir.
    let log_dir = Some(state_dir.join("logs").join(&run_id));
    // Another taskrun may hold the cache lock: a signal while this one waits for it still
    // ends the run as an interrupted run, with its report.
    // `--no-cache` takes the lock too, and holds it: a caching run beside it would record
    // outputs this run is rewriting (the cache takes its own lock when it opens).
    let (interrupted_before, _held) =
        wait_for_cache_lock(&runtime, &plan.pipeline.cache.dir, args.no_cache);
    let cache = match interrupted_before {
        Some(_) => Arc::new(NoCache),
        None => make_cache(&plan),
    };
    let facts = Facts::from_env();
    let mut sinks = console_sinks(&args, &facts);
    if let Some(path) = &args.junit {
        sinks.push(Box::new(Junit::new(path.clone())));
    }
    let mut opts = RunOptions {
        run_id: run_id.clone(),
        jobs: args.jobs.map(|j| j as usize),
        keep_going: args.keep_going,
        log_dir,
        handle_signals: true,
        replay_cached_output: args.verbose,
        placements: Some(crate::plan::placement::place(&plan, remote_off)),
        force: args.force,
        earlier: None,
        interrupted_before,
    };
    // A fan-out over items other tasks produce is expanded once they have run: a phase
    // per expansion, the last one's report covering them all.
    let mut last_phase = None;
    // `--locked` refused the downloads of an expansion, or a TARGET named no instance.
    let mut refused = false;
    // Stand-ins failed so far, by name.
    let mut failed_once: Vec<String> = Vec::new();
    for _ in 0..expansion::MAX_PHASES {
        if !expansion::has_stand_ins(&plan) {
            break;
        }
        let mut held = expansion::HoldFinish::new(&mut sinks);
        let phase = scheduler::run_phase(
            Arc::new(plan.clone()),
            cache.clone(),
            opts.clone(),
            &mut held,
        );
        let result = runtime.block_on(phase);
        // Carried on by `Earlier` from now on.
        opts.interrupted_before = None;
        let mut earlier = scheduler::Earlier::after(&result);
        // A stand-in failed for the phase before did not end there (its deps never did):
        // another phase would only fail it again.
        if failed_once.iter().any(|n| !earlier.has_ended(n)) {
            held.release();
            last_phase = Some(result);
            break;
        }
        match expansion::next(&plan, &earlier, sel) {
            expansion::Next::Done => {
                held.release();
                last_phase = Some(result);
                break;
            }
            expansion::Next::Phase {
                plan: next,
                invalid,
            } => {
                let mut next = *next;
                for (name, error) in invalid {
                    // A TARGET that names no instance once the items are known: exit 2.
                    refused |= matches!(error, Error::UnknownTargets { .. });
                    error.print(false);
                    let why = format!("cannot expand its items: {}", expansion::first_line(&error));
                    fail_expansion(&mut earlier, &mut failed_once, name, why);
                }
                let (next_lock, next_unpinned) = apply_lockfile(&mut next, &|_| false)?;
                if args.locked
                    && let Err(e) = refuse_unlocked(&next, &next_unpinned, &sel.vars)
                {
                    // The instances do not run: their stand-ins fail, and the run (reported
                    // as usual) exits 2 as a refusal before anything runs does.
                    drop(held);
                    e.print(false);
                    let why = expansion::first_line(&e);
                    for name in expansion::expanded(&plan, &next) {
                        fail_expansion(&mut earlier, &mut failed_once, name, why.clone());
                    }
                    refused = true;
                } else {
                    (lock, unpinned) = (next_lock, next_unpinned);
                    opts.placements = Some(crate::plan::placement::place(&next, remote_off));
                    cache.next_phase(&next);
                    plan = next;
                }
            }
            expansion::Next::Stuck(due) => {
                drop(held);
                for name in due {
                    fail_expansion(
                        &mut earlier,
                        &mut failed_once,
                        name,
                        "not expanded after its producers ran".into(),
                    );
                }
            }
            expansion::Next::Invalid { error, due } => {
                drop(held);
                refused |= matches!(error, Error::UnknownTargets { .. });
                error.print(false);
                let why = format!("cannot expand its items: {}", expansion::first_line(&error));
                for name in due {
                    fail_expansion(&mut earlier, &mut failed_once, name, why.clone());
                }
            }
        }
        opts.earlier = Some(Arc::new(earlier));
    }
    // A chain longer than the phases allowed: what is left fails rather than never runs.
    if last_phase.is_none()
        && expansion::has_stand_ins(&plan)
        && let Some(earlier) = opts.earlier.as_mut()
    {
        let earlier = Arc::make_mut(earlier);
        for i in plan.order.iter().copied() {
            let task = plan.task(i);
            if task.expands.is_some() && !earlier.has_ended(&task.name) {
                let why = format!(
                    "not expanded: more than {} fan-outs each over the last one's outputs",
                    expansion::MAX_PHASES
                );
                fail_expansion(earlier, &mut failed_once, task.name.clone(), why);
            }
        }
    }
    let plan = Arc::new(plan);
    let run_report = state_dir.join("runs").join(format!("{run_id}.json"));
    let write_reports = |result: &scheduler::RunResult| {
        let paths = std::iter::once(run_report.as_path()).chain(args.report.as_deref());
        for (path, e) in report::json::write_all(&result.report, paths) {
            eprintln!(
                "warning: cannot write the run report {}: {e}",
                path.display()
            );
        }
        if let Some(path) = &args.trace
            && let Err(e) = report::trace::write(&result.report, path)
        {
            eprintln!("warning: cannot write the trace {}: {e}", path.display());
        }
        if args.timings {
            let page = run_report.with_extension("html");
            // A page that cannot be written is reported; the run's exit code stands.
            match crate::commands::timings::write_page(&result.report, &page) {
                Err(e) => e.print(false),
                Ok(()) => match args.log_format {
                    LogFormat::Text => println!("timings: {}", page.display()),
                    // stdout is JSON lines: the path is one of them.
                    LogFormat::Json => {
                        tracing::info!(event = "timings_written", timings = %page.display(), "timings: {}", page.display())
                    }
                },
            }
        }
    };
    // The report files and the lockfile are written while the cache saves its state; the
    // lockfile's line is printed after the summary.
    let mut pinned = None;
    let write_files = |result: &scheduler::RunResult| {
        std::thread::scope(|s| {
            let pins = (!unpinned.is_empty())
                .then(|| s.spawn(|| record_new_pins(&plan, lock, &unpinned, result)));
            write_reports(result);
            pinned = pins.and_then(|h| h.join().ok()).flatten();
        });
    };
    let result = match last_phase {
        Some(result) => {
            let finished = scheduler::finish_then(cache, &result, write_files);
            std::mem::forget(runtime.block_on(finished));
            result
        }
        None => runtime.block_on(scheduler::run_then(
            plan.clone(),
            cache,
            opts,
            &mut sinks,
            write_files,
        )),
    };
    super::prune::prune_old_runs(&state_dir, super::prune::KEEP_RUNS);
    // Services and timers are stopped; do not wait for stray blocking work.
    runtime.shutdown_background();
    drop(sinks);
    // After the summary (and any live view is gone), as its last line.
    if let Some(pinned) = pinned {
        pinned.announce(args.log_format);
    }
    let code = if refused {
        crate::exit_code::USAGE
    } else {
        result.exit_code
    };
    // The process ends right after: freeing a 10,000-task report and plan entry by entry is
    // wasted.
    std::mem::forget(result);
    std::mem::forget(plan);
    Ok(code)
}

/// Trust on first use (SPEC §10): records the downloads the lockfile did not pin that
/// succeeded (or were restored from the cache) and writes the lockfile once, atomically.
/// Returns what to tell the user, if anything changed.
fn record_new_pins(
    plan: &crate::plan::Plan,
    lock: Lockfile,
    unpinned: &[Unpinned],
    result: &scheduler::RunResult,
) -> Option<Pinned> {
    let pins = collected_pins(plan, unpinned, result);
    let path = lockfile::path_for(&plan.pipeline.manifest_path);
    // Read again: another run (a targeted one, or one on another cache dir) may have pinned
    // its downloads since this run read the file; writing back the copy read at the start
    // would drop them. The read, the merge and the write hold a lock on the manifest's
    // directory (an `flock`, dropped with the process), so two runs ending together take
    // turns instead of one losing the other's pins.
    let _turn = lockfile::take_turn(&path);
    let (mut lock, unreadable) = match lockfile::read(&path) {
        Ok(Some(now)) => (now, None),
        // Deleted during the run: only this run's pins go into the new one.
        Ok(None) => (Lockfile::default(), None),
        // Edited into something else during the run: the user's file is left as it is.
        Err(e) => (lock, Some(e)),
    };
    let changes = standing::record(&mut lock, plan, &pins);
    if changes.is_empty() {
        return None;
    }
    if let Some(e) = unreadable {
        let why = e.render(false);
        let why = why.lines().next().unwrap_or("malformed");
        return Some(Pinned {
            count: changes.len(),
            file: lockfile::file_name(&plan.pipeline.manifest_path),
            path,
            written: Err(std::io::Error::other(format!(
                "it changed during the run and cannot be read ({why}); {} new pins not recorded",
                changes.len()
            ))),
        });
    }
    let written = lockfile::write(&path, &lock);
    Some(Pinned {
        count: changes.len(),
        file: lockfile::file_name(&plan.pipeline.manifest_path),
        path,
        written,
    })
}

/// The lockfile a run updated: the line it prints after the summary.
struct Pinned {
    count: usize,
    file: String,
    path: PathBuf,
    written: std::io::Result<()>,
}

impl Pinned {
    fn announce(self, log_format: LogFormat) {
        let path = self.path.display();
        if let Err(e) = self.written {
            eprintln!("warning: cannot write the lockfile {path}: {e}");
            return;
        }
        let n = self.count;
        let line = format!(
            "pinned {n} new download{} in {}",
            if n == 1 { "" } else { "s" },
            self.file
        );
        match log_format {
            LogFormat::Text => println!("{line}"),
            LogFormat::Json => {
                tracing::info!(event = "lockfile_written", lockfile = %path, pinned = n, "{line}")
            }
        }
    }
}

/// The pins a run leaves for the `unpinned` downloads: those the scheduler collected from
/// successful downloads, and those of downloads restored from the cache.
pub(crate) fn collected_pins(
    plan: &crate::plan::Plan,
    unpinned: &[Unpinned],
    result: &scheduler::RunResult,
) -> Vec<standing::NewPin> {
    let cached_names: std::collections::HashSet<&str> = result
        .report
        .tasks
        .iter()
        .filter(|t| t.status == crate::report::TaskStatus::Cached)
        .map(|t| t.name.as_str())
        .collect();
    let cached: Vec<Unpinned> = unpinned
        .iter()
        .filter(|u| cached_names.contains(plan.task(u.task).name.as_str()))
        .cloned()
        .collect();
    let mut pins = result.new_pins.clone();
    pins.extend(standing::cached_pins(plan, &cached, &result.new_pins));
    pins
}

/// The async runtime for this run: one thread, the run loop's.
///
/// Commands, groups and services spend their time in the kernel (spawning, waiting for pipes
/// and exits), not on tokio's threads. On a multi-thread runtime every step of a short command
/// (run loop, job, output readers, exit) hopped between threads, each hop a futex wake-up and
/// a context switch: 1,000 `true` tasks cost ~8 context switches each more than `make -j2`.
/// Downloads run on download lanes, one-thread runtimes of their own (`scheduler::lanes`).
/// Blocking work (cache lookups and stores, hashing) has its own threads either way.
/// Fails the stand-in `name` in the next phase (see [`scheduler::Earlier::fail_expansion`]),
/// remembering it in `failed`.
fn fail_expansion(
    earlier: &mut scheduler::Earlier,
    failed: &mut Vec<String>,
    name: String,
    why: String,
) {
    failed.push(name.clone());
    earlier.fail_expansion(name, why);
}

/// When another taskrun holds the lock on `dir`, says so and waits for it to be free (the
/// cache takes it then), or for a signal, which it returns. With `hold`, returns the lock
/// taken, for a run without the cache to keep.
fn wait_for_cache_lock(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    hold: bool,
) -> (
    Option<scheduler::Signal>,
    Option<crate::cache::lock::CacheLock>,
) {
    use crate::cache::lock::CacheLock;
    let mut held = None;
    let signal = {
        // Free (or not lockable: the cache says why when it opens).
        let mut free = || match CacheLock::try_acquire(dir) {
            Ok(None) => false,
            Ok(Some(lock)) => {
                held = hold.then_some(lock);
                true
            }
            Err(_) => true,
        };
        if free() {
            None
        } else {
            let say = || eprintln!("waiting for another taskrun using {}...", dir.display());
            runtime.block_on(scheduler::wait_until(free, say))
        }
    };
    (signal, held)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the async runtime: {e}")))
}

/// Stops the run before it starts when a report file it was asked for cannot be written.
fn check_destinations(args: &RunArgs, pipeline: &crate::model::Pipeline) -> Result<(), Error> {
    let asked = [
        ("--report", &args.report),
        ("--junit", &args.junit),
        ("--trace", &args.trace),
    ];
    if asked.iter().all(|(_, path)| path.is_none()) {
        return Ok(());
    }
    let taken = report::destination::Taken::of(pipeline);
    for (n, &(flag, path)) in asked.iter().enumerate() {
        let Some(path) = path else { continue };
        report::destination::check(flag, path, &taken).map_err(|message| {
            Error::usage_with_hint(message, format!("give {flag} a path you can write"))
        })?;
        let mut earlier = asked[..n]
            .iter()
            .filter_map(|(f, p)| Some((f, p.as_ref()?)));
        if let Some((other, _)) = earlier.find(|(_, p)| report::destination::same_file(path, p)) {
            return Err(Error::usage_with_hint(
                format!(
                    "cannot write {flag} {}: it is {other}'s file too, and one would overwrite the other",
                    path.display()
                ),
                format!("give {flag} and {other} different paths"),
            ));
        }
    }
    Ok(())
}
