//! taskrun runs pipelines declared in TOML manifests.
//!
//! The data flow, one way: [`cli`] → [`manifest`] (raw → validated [`model`]) → [`plan`]
//! (the DAG) → [`scheduler`] (ready queue, pools, retry) → [`actions`] (command, download,
//! service) ↔ [`cache`] → [`events`] → [`report`] sinks (console, JSON, JUnit).

// Every `unsafe` block says why it holds (a `// SAFETY:` comment right above it).
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod actions;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod events;
pub mod exit_code;
pub mod huge_pages;
pub mod lockfile;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod reapi;
pub mod report;
pub mod scheduler;
pub mod template;
pub mod text_files;
pub mod tls_roots;
pub mod units;
pub mod workspace;

use std::ffi::OsString;
use std::process::ExitCode;

/// Parses `args`, runs the command and maps the outcome to a documented exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    ExitCode::from(exit_status(args))
}

/// [`run`], returning the exit status as a number (the binary exits with it directly).
pub fn exit_status(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exit_code::USAGE
            } else {
                exit_code::SUCCESS
            };
            // A closed stdout (e.g. `| head`) is not an error worth reporting.
            let _ = err.print();
            return code;
        }
    };
    commands::dispatch(cli.command)
}
