//! `taskrun cache stats|gc|clean [MANIFEST]`: the cache dir of MANIFEST, or without one
//! `TASKRUN_CACHE_DIR` or `./.taskrun/cache`. `gc` and `clean` take the cache lock (and wait
//! for a running taskrun); `stats` only reads. `gc` and `clean` refuse a cache dir that is the
//! workspace (the manifest's directory, or without a manifest the current one) or holds it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache::gc::{self, GcLimits};
use crate::cache::lock::CacheLock;
use crate::cli::{CacheArgs, CacheCommand};
use crate::units::{format_size, parse_size};

use super::Error;

/// Runs a `cache` subcommand.
pub fn run(cmd: CacheCommand) -> Result<u8, Error> {
    let text = match cmd {
        CacheCommand::Stats(args) => {
            let dirs = dirs(&args)?;
            stats_text(
                &dirs.cache,
                Some(&dirs.runs),
                args.manifest.as_deref().and_then(Path::file_name),
            )
        }
        CacheCommand::Gc(args) => {
            let dirs = dirs(&args.cache)?;
            not_the_workspace(&dirs.cache, &dirs.workspace, "gc")?;
            gc_command(
                &dirs.cache,
                args.max_size.as_deref(),
                args.max_age.as_deref(),
            )?
        }
        CacheCommand::Clean(args) => {
            let dirs = dirs(&args)?;
            not_the_workspace(&dirs.cache, &dirs.workspace, "clean")?;
            clean_command(&dirs.cache)?
        }
    };
    Ok(super::print_stdout(&text))
}

/// Where a `cache` subcommand looks.
struct Dirs {
    /// The cache dir.
    cache: PathBuf,
    /// The run reports.
    runs: PathBuf,
    /// The manifest's directory, or without a manifest the current one.
    workspace: PathBuf,
}

/// The cache dir and the run reports dir, from the manifest or the environment; a cache dir
/// that is a file, or under one, is a configuration mistake (exit 2), not an empty cache.
fn dirs(args: &CacheArgs) -> Result<Dirs, Error> {
    let dirs = dirs_as_given(args)?;
    super::refuse_state_links(&dirs.workspace)?;
    if let Some(why) = crate::cache::store_links(&dirs.cache) {
        return Err(Error::usage(format!(
            "the cache dir {}: {why}",
            dirs.cache.display()
        )));
    }
    if let Some(why) = crate::cache::cache_dir_blocked(&dirs.cache) {
        return Err(Error::usage(format!(
            "the cache dir {}: {why}; point TASKRUN_CACHE_DIR or [cache] dir at a directory",
            dirs.cache.display()
        )));
    }
    Ok(dirs)
}

fn dirs_as_given(args: &CacheArgs) -> Result<Dirs, Error> {
    match &args.manifest {
        Some(m) => {
            // Only `[cache] dir` is read: the rest of the manifest need not load now.
            let cache = crate::manifest::cache_dir_only(m)?;
            let root = crate::manifest::load::manifest_dir(m);
            Ok(Dirs {
                cache,
                runs: root.join(".taskrun").join("runs"),
                workspace: root,
            })
        }
        None => {
            let dir = std::env::var_os("TASKRUN_CACHE_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".taskrun/cache"));
            Ok(Dirs {
                cache: dir,
                runs: PathBuf::from(".taskrun/runs"),
                workspace: PathBuf::from("."),
            })
        }
    }
}

/// SPEC §13: `gc` and `clean` refuse (exit 2) a cache dir that is the workspace or one of its
/// parents, where the manifest and the user's sources live beside the store.
fn not_the_workspace(cache_dir: &Path, workspace: &Path, which: &str) -> Result<(), Error> {
    let (Ok(cache), Ok(ws)) = (cache_dir.canonicalize(), workspace.canonicalize()) else {
        // A cache dir that does not exist holds nothing; a workspace that cannot be resolved
        // was not the manifest's (that one was just read).
        return Ok(());
    };
    if !ws.starts_with(&cache) {
        return Ok(());
    }
    let what = if ws == cache {
        "is the workspace".to_string()
    } else {
        format!("holds the workspace {}", ws.display())
    };
    Err(Error::usage(format!(
        "refusing to {which} the cache dir {}: it {what}, with the manifest and your files \
         beside the store; give the cache a directory of its own (TASKRUN_CACHE_DIR or \
         [cache] dir, e.g. .taskrun/cache)",
        cache.display()
    )))
}

/// `cache stats` output: entries, blobs, bytes and the last run's hit rate.
pub fn stats_text(
    cache_dir: &Path,
    runs_dir: Option<&Path>,
    manifest: Option<&std::ffi::OsStr>,
) -> String {
    let s = gc::stats(cache_dir, runs_dir, manifest);
    let mut out = format!(
        "cache dir: {}\nentries:   {}\nblobs:     {}\nsize:      {} ({} bytes)\n",
        cache_dir.display(),
        s.entries,
        s.blobs,
        format_size(s.bytes),
        s.bytes
    );
    match s.last_run {
        Some((cached, total, file)) => {
            let pct = if total == 0 {
                0.0
            } else {
                cached as f64 * 100.0 / total as f64
            };
            out.push_str(&format!(
                "last run:  {cached}/{total} tasks cached ({pct:.0}%) [{}]\n",
                file.display()
            ));
        }
        None => out.push_str("last run:  no run report\n"),
    }
    out
}

/// `cache gc`: at least one limit, else a usage error (exit 2).
pub fn gc_command(
    cache_dir: &Path,
    max_size: Option<&str>,
    max_age: Option<&str>,
) -> Result<String, Error> {
    if max_size.is_none() && max_age.is_none() {
        return Err(Error::usage(
            "`taskrun cache gc` needs a limit: --max-size SIZE and/or --max-age DURATION \
             (e.g. --max-size 2GiB --max-age 30d)",
        ));
    }
    let limits = GcLimits {
        max_size: max_size.map(parse_size).transpose().map_err(Error::usage)?,
        max_age: max_age
            .map(|a| {
                humantime::parse_duration(a)
                    .map_err(|e| format!("malformed duration `{a}` for --max-age: {e}"))
            })
            .transpose()
            .map_err(Error::usage)?,
    };
    if !cache_dir.exists() {
        return Ok(format!("{}: no cache yet\n", cache_dir.display()));
    }
    let io_err = |e: std::io::Error| Error::Failed(format!("{}: {e}", cache_dir.display()));
    let _lock = CacheLock::acquire_exclusive(cache_dir).map_err(io_err)?;
    let o = gc::gc(cache_dir, limits, SystemTime::now()).map_err(io_err)?;
    Ok(format!(
        "removed {} entries and {} blobs: {} -> {}\n",
        o.records_removed,
        o.blobs_removed,
        format_size(o.bytes_before),
        format_size(o.bytes_after)
    ))
}

/// `cache clean`: deletes the store, only taskrun's files (waiting for a running taskrun
/// first).
pub fn clean_command(cache_dir: &Path) -> Result<String, Error> {
    if !cache_dir.exists() {
        return Ok(format!("{}: no cache\n", cache_dir.display()));
    }
    let io_err = |e: std::io::Error| Error::Failed(format!("{}: {e}", cache_dir.display()));
    let _lock = CacheLock::acquire_exclusive(cache_dir).map_err(io_err)?;
    let freed = gc::clean(cache_dir).map_err(io_err)?;
    Ok(format!(
        "removed {} ({})\n",
        cache_dir.display(),
        format_size(freed)
    ))
}
