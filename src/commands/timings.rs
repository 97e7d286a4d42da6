//! `taskrun timings [MANIFEST] [RUN_ID|latest] [-o PATH]`: the timings page of a stored run,
//! from its report alone (SPEC §12), e.g. of a report downloaded from CI.

use std::path::{Path, PathBuf};

use crate::cli::TimingsArgs;
use crate::exit_code;
use crate::report::RunReport;

use super::Error;

/// Writes the page and prints its path; a usage error when the run cannot be found or read.
pub fn run(args: TimingsArgs) -> Result<u8, Error> {
    let (manifest, run) = split(args.manifest, args.run);
    let runs = match &manifest {
        // A workspace directory instead of its manifest: its runs, not its parent's.
        Some(dir) if dir.is_dir() => dir.join(".taskrun").join("runs"),
        Some(m) if !m.exists() => {
            return Err(Error::usage(format!("no manifest {}", m.display())));
        }
        Some(m) => m
            .parent()
            .unwrap_or(Path::new(""))
            .join(".taskrun")
            .join("runs"),
        None => PathBuf::from(".taskrun").join("runs"),
    };
    // The page is written beside the report, in the workspace's `.taskrun/runs`.
    if let Some(root) = runs.parent().and_then(Path::parent) {
        let root = if root.as_os_str().is_empty() {
            Path::new(".")
        } else {
            root
        };
        super::refuse_state_links(root)?;
    }
    // `latest` of a named manifest: its newest run, not its neighbours' in the directory.
    let named = manifest
        .as_deref()
        .filter(|m| m.is_file())
        .and_then(Path::file_name);
    let report_path =
        find(&runs, run.as_deref().unwrap_or("latest"), named).map_err(Error::usage)?;
    let report = read(&report_path).map_err(|e| {
        Error::usage(format!(
            "cannot read the run report {}: {e}",
            report_path.display()
        ))
    })?;
    let out = match args.output {
        Some(out) if out.as_os_str() == "-" => {
            return Ok(super::print_stdout(&crate::report::timings::render(
                &report,
            )));
        }
        Some(out) => {
            check_output(&out, &report_path, &runs, manifest.as_deref(), &report)?;
            out
        }
        None => report_path.with_extension("html"),
    };
    write_page(&report, &out)?;
    println!("timings: {}", out.display());
    Ok(exit_code::SUCCESS)
}

/// Writes the page to `out` (the caller says where it is, in its log format).
pub fn write_page(report: &RunReport, out: &Path) -> Result<(), Error> {
    crate::report::timings::write(report, out).map_err(|e| {
        Error::Failed(format!(
            "cannot write the timings page {}: {e}",
            out.display()
        ))
    })
}

/// Refuses an `-o` path the page may not take, as `run` refuses its `--report`: the report
/// it is drawn from, the manifest, its lockfile, `.taskrun/`, the cache dir or a task's
/// output (the workspace's manifest loaded for its outputs when it loads).
fn check_output(
    out: &Path,
    report_path: &Path,
    runs: &Path,
    named: Option<&Path>,
    report: &RunReport,
) -> Result<(), Error> {
    let hint = "give -o a path you can write, or leave it out for .taskrun/runs/<run-id>.html";
    if crate::report::destination::same_file(out, report_path) {
        let message = format!(
            "cannot write -o {}: it is the run report the page is drawn from",
            out.display()
        );
        return Err(Error::usage_with_hint(message, hint));
    }
    // The workspace: the manifest's directory, where `.taskrun/runs` lies; for a report
    // read from elsewhere, this directory.
    let in_state_dir = runs.ends_with(Path::new(".taskrun").join("runs"));
    let root = match (named, runs.parent().and_then(Path::parent)) {
        (Some(m), _) if m.is_dir() => m.to_path_buf(),
        (Some(m), _) => m.parent().unwrap_or(Path::new("")).to_path_buf(),
        (None, Some(root)) if in_state_dir => root.to_path_buf(),
        _ => PathBuf::new(),
    };
    let root = if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    };
    let manifest = match named {
        Some(m) if m.is_file() => m.to_path_buf(),
        _ => root.join(Path::new(&report.manifest).file_name().unwrap_or_default()),
    };
    let taken = match super::load_pipeline(&manifest, &[]) {
        Ok(pipeline) => crate::report::destination::Taken::of(&pipeline),
        Err(_) => crate::report::destination::Taken::reserved(&manifest, &root),
    };
    crate::report::destination::check("-o", out, &taken)
        .map_err(|message| Error::usage_with_hint(message, hint))
}

/// One argument is the manifest when it names a `.toml` file, else the run.
fn split(first: Option<PathBuf>, second: Option<String>) -> (Option<PathBuf>, Option<String>) {
    match (first, second) {
        (Some(f), None) if f.extension().is_none_or(|e| e != "toml") => {
            (None, Some(f.to_string_lossy().into_owned()))
        }
        other => other,
    }
}

/// The report of `run` (an id, `latest`, or a path to a report) in `runs`.
fn find(runs: &Path, run: &str, manifest: Option<&std::ffi::OsStr>) -> Result<PathBuf, String> {
    let direct = Path::new(run);
    if run.ends_with(".json") && direct.is_file() {
        return Ok(direct.to_path_buf());
    }
    if run != "latest" {
        // A run id names a file in `runs`, nothing else.
        if run.is_empty() || run.contains(['/', '\\']) || run.starts_with('.') {
            return Err(format!("`{run}` is not a run id"));
        }
        let p = runs.join(format!("{run}.json"));
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("no run `{run}` in {}", runs.display()))
        };
    }
    crate::report::newest_run(runs, manifest).ok_or_else(|| match manifest {
        Some(m) => format!("no runs of {} in {}", m.to_string_lossy(), runs.display()),
        None => format!("no runs in {}", runs.display()),
    })
}

fn read(path: &Path) -> Result<RunReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}
