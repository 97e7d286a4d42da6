//! `taskrun lock`: pin the downloads the lockfile lacks, without running the pipeline.
//!
//! Not a second downloader: it plans only those downloads as TARGETs (so the services they
//! depend on start, with their retries and pools) and runs that plan with the scheduler and
//! the cache of `run`, so each file lands in the store and the next run restores it.

use std::sync::Arc;
use std::time::SystemTime;

use crate::cache::{NoCache, TaskCache};
use crate::cli::LockArgs;
use crate::events::Fanout;
use crate::exit_code;
use crate::lockfile::{self, standing};
use crate::plan::Plan;
use crate::report::TaskStatus;
use crate::report::plain::{Plain, Verbosity};
use crate::scheduler::{self, RunOptions};

use super::Error;

/// `taskrun lock MANIFEST [TARGET...] [--update] [--check]`.
pub fn run(args: LockArgs) -> Result<u8, Error> {
    let sel = &args.selection;
    super::refuse_state_links(&crate::manifest::load::manifest_dir(&sel.manifest))?;
    let plan = super::load_plan(&sel.manifest, &sel.vars, &sel.targets)?;
    // Downloads listed in produced files: pinned from the files as they are now, when they
    // are there (their producers ran here before); else said to be left to `run`.
    let mut plan = if super::expansion::has_stand_ins(&plan) {
        super::expansion::as_now(plan.clone(), sel).unwrap_or(plan)
    } else {
        plan
    };
    let selected = plan.selected.clone();
    let refresh = |i: usize| args.update && selected[i];
    let (mut lock, unpinned) = super::apply_lockfile(&mut plan, &refresh)?;
    let prunable = standing::prunable(&plan, &lock, sel.targets.is_empty());
    let manifest = plan.pipeline.manifest_path.clone();
    let file = lockfile::file_name(&manifest);
    later_downloads_note(&plan, &file);
    if args.check {
        let again = super::lock_command(&manifest, &sel.vars);
        return Ok(check(&plan, &unpinned, &prunable, &file, &again));
    }
    let mut code = exit_code::SUCCESS;
    let mut pins = Vec::new();
    // Downloads that failed (or did not run): their entries stand as they were.
    let mut unfetched = 0;
    if !unpinned.is_empty() {
        let names: Vec<String> = unpinned
            .iter()
            .map(|u| plan.task(u.task).name.clone())
            .collect();
        let fetch = super::plan_pipeline(&manifest, &names, plan.pipeline.clone())?;
        let fetch = Arc::new(fetch);
        let result = download(fetch.clone(), args.update)?;
        code = result.exit_code;
        pins = super::run::collected_pins(&fetch, &unpinned, &result);
        unfetched = result
            .report
            .tasks
            .iter()
            .filter(|t| t.kind == crate::model::TaskKind::Download)
            .filter(|t| !matches!(t.status, TaskStatus::Succeeded | TaskStatus::Cached))
            .count();
    }
    let path = lockfile::path_for(&manifest);
    // As a run does: the file as it is now (a run beside this one may have pinned since),
    // read, changed and written in one turn.
    let _turn = lockfile::take_turn(&path);
    match lockfile::read(&path) {
        Ok(Some(now)) => lock = now,
        Ok(None) => lock = lockfile::Lockfile::default(),
        Err(e) => return Err(Error::Load(e)),
    }
    let mut changes = standing::record(&mut lock, &plan, &pins);
    changes.extend(standing::prune(&mut lock, &prunable));
    if !changes.is_empty() {
        let written = if lock.entries.is_empty() {
            // Nothing left to pin: no lockfile, as for a manifest that never had one.
            std::fs::remove_file(&path)
        } else {
            lockfile::write(&path, &lock)
        };
        written.map_err(|e| {
            Error::Failed(format!("cannot write the lockfile {}: {e}", path.display()))
        })?;
    }
    let mut out = String::new();
    for c in &changes {
        out.push_str(&format!("{c}\n"));
    }
    if unfetched > 0 {
        // Not "current": it could not be checked against what the origins serve now.
        out.push_str(&format!(
            "{file}: {unfetched} download{} failed, {} left as {}\n",
            if unfetched == 1 { "" } else { "s" },
            if unfetched == 1 {
                "its entry"
            } else {
                "their entries"
            },
            if unfetched == 1 {
                "it was"
            } else {
                "they were"
            },
        ));
    }
    out.push_str(&summary(&file, &changes, lock.entries.len(), unfetched));
    super::print_stdout(&out);
    Ok(code)
}

/// Downloads of a fan-out task expanded after its producers are not known before those
/// have run here: `lock` says so (on stderr) rather than passing over them in silence.
fn later_downloads_note(plan: &Plan, file: &str) {
    for &i in &plan.order {
        if let Some(e) = &plan.task(i).expands
            && e.kind == crate::model::TaskKind::Download
        {
            eprintln!(
                "note: the downloads of `{}` are known only once {} has run: `taskrun run` pins them in {file} (trust on first use), or `taskrun lock` after it; their entries are kept",
                e.task,
                e.after.join(", ")
            );
        }
    }
}

/// Runs the plan of the downloads to pin with the scheduler and the local cache (`--update`:
/// downloads run even on a hit); progress on stderr, failures and the totals line only.
fn download(plan: Arc<Plan>, update: bool) -> Result<scheduler::RunResult, Error> {
    let runtime = super::run::runtime()?;
    let options = crate::cache::CacheOptions {
        force_downloads: update,
        ..Default::default()
    };
    let cache: Arc<dyn TaskCache> = match crate::cache::LocalCache::open(&plan.pipeline, options) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("warning: {e}; downloading without the cache");
            Arc::new(NoCache)
        }
    };
    let mut sinks = Fanout::new();
    sinks.push(Box::new(Plain::new(std::io::stderr(), Verbosity::Quiet)));
    let opts = RunOptions {
        run_id: crate::report::new_run_id(SystemTime::now()),
        jobs: None,
        // Pin every download that can be pinned, whatever happens to the others.
        keep_going: true,
        log_dir: None,
        handle_signals: true,
        replay_cached_output: false,
        // Downloads only: nothing to send to a remote executor.
        placements: None,
        force: false,
        earlier: None,
        interrupted_before: None,
    };
    let result = runtime.block_on(scheduler::run(plan, cache, opts, &mut sinks));
    runtime.shutdown_background();
    Ok(result)
}

/// `--check`: what would change, and exit 1 if anything would.
fn check(
    plan: &Plan,
    unpinned: &[standing::Unpinned],
    prunable: &[(String, &'static str)],
    file: &str,
    again: &str,
) -> u8 {
    let mut out = String::new();
    for u in unpinned {
        let verb = match u.why {
            standing::Why::Missing => "would add   ",
            _ => "would change",
        };
        out.push_str(&format!("{verb} {}: {}\n", plan.task(u.task).name, u.why));
    }
    for (name, why) in prunable {
        out.push_str(&format!("would remove {name}: {why}\n"));
    }
    let changing = unpinned.len() + prunable.len();
    if changing == 0 {
        let exists = crate::lockfile::path_for(&plan.pipeline.manifest_path).exists();
        out.push_str(&match exists {
            true => format!("{file} is current\n"),
            // SPEC §10: a manifest with nothing to pin gets no lockfile.
            false => format!("nothing to pin: no {file} is needed\n"),
        });
        super::print_stdout(&out);
        return exit_code::SUCCESS;
    }
    out.push_str(&format!(
        "{file} would change ({changing} entr{}); run `{again}`\n",
        if changing == 1 { "y" } else { "ies" },
    ));
    super::print_stdout(&out);
    exit_code::TASK_FAILED
}

/// The last line: counts of each kind of change, or that nothing changed.
fn summary(file: &str, changes: &[standing::Change], entries: usize, unfetched: usize) -> String {
    if changes.is_empty() && entries == 0 && unfetched == 0 {
        return format!("nothing to pin: no {file} is needed\n");
    }
    if changes.is_empty() && unfetched == 0 {
        return format!("{file} is current ({entries} entr{})\n", plural_y(entries));
    }
    let count = |f: fn(&standing::Change) -> bool| changes.iter().filter(|c| f(c)).count();
    let added = count(|c| matches!(c, standing::Change::Added { .. }));
    let changed = count(|c| matches!(c, standing::Change::Changed { .. }));
    let removed = count(|c| matches!(c, standing::Change::Removed { .. }));
    format!(
        "{file}: {added} added, {changed} changed, {removed} removed ({entries} entr{})\n",
        plural_y(entries)
    )
}

fn plural_y(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}
