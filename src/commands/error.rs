//! Why a command stopped short, as a value. Each step says what went wrong and
//! [`super::dispatch`] prints it once, with the exit code that kind of mistake gets (SPEC §1),
//! as just's `Error::code()` does: no step prints and then hands back a bare number.
//!
//! The words are the CLI's contract (tests and scripts read them), so each variant prints
//! exactly what the command printed before it had a type.

use std::fmt;
use std::path::PathBuf;

use crate::exit_code;
use crate::manifest::LoadError;
use crate::plan::UnknownTarget;

/// A command's error: the manifest's problems, a usage mistake, or a failure.
#[derive(Debug)]
pub enum Error {
    /// The manifest or its lockfile is invalid: every problem, each at its place (exit 2).
    Load(LoadError),
    /// TARGETs that name no task of the manifest at `manifest` (exit 2).
    UnknownTargets {
        manifest: PathBuf,
        unknown: Vec<UnknownTarget>,
    },
    /// Any other mistake of the command line; nothing ran (exit 2).
    Usage {
        /// What is wrong (may span lines, as a list of what is missing).
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Something the command needed could not be done: a file, the runtime (exit 1).
    Failed(String),
}

impl Error {
    /// A usage mistake without a hint.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: None,
        }
    }

    /// A usage mistake and what to do about it.
    pub fn usage_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The process exit code for this error (SPEC §1).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Load(_) | Self::UnknownTargets { .. } | Self::Usage { .. } => exit_code::USAGE,
            Self::Failed(_) => exit_code::TASK_FAILED,
        }
    }

    /// Prints it on stderr (`color`: the manifest's diagnostics in colour); under GitHub
    /// Actions an invalid manifest's problems are also annotations on stdout.
    pub fn print(&self, color: bool) {
        match self {
            Self::Load(err) => {
                eprint!("{}", err.render(color));
                if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
                    && let LoadError::Invalid(errors) = err
                {
                    print!("{}", errors.github_annotations());
                }
            }
            other => {
                eprint!("{other}");
                // Every exit 2 gets its annotation, not only a manifest's problems.
                if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                    let first = other.to_string();
                    let first = first
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("error: ");
                    println!("::error::{}", crate::report::github::escape_data(first));
                }
            }
        }
    }
}

/// The text [`Error::print`] writes, every line ended (a manifest's problems are rendered by
/// their own report, with colour when asked).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load(err) => write!(f, "{}", err.render(false)),
            Self::UnknownTargets { manifest, unknown } => {
                for u in unknown {
                    writeln!(f, "error: {u}")?;
                }
                writeln!(
                    f,
                    "hint: `taskrun list {}` shows the tasks",
                    manifest.display()
                )
            }
            Self::Usage { message, hint } => {
                writeln!(f, "error: {message}")?;
                match hint {
                    Some(hint) => writeln!(f, "hint: {hint}"),
                    None => Ok(()),
                }
            }
            Self::Failed(message) => writeln!(f, "error: {message}"),
        }
    }
}

impl From<LoadError> for Error {
    fn from(err: LoadError) -> Self {
        Self::Load(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_exit_code_and_words() {
        let e = Error::usage_with_hint(
            "--locked: a.lock does not pin 1 selected download:\n  get: no entry",
            "run `taskrun lock a.toml`",
        );
        assert_eq!(e.exit_code(), exit_code::USAGE);
        assert_eq!(
            e.to_string(),
            "error: --locked: a.lock does not pin 1 selected download:\n  get: no entry\nhint: run `taskrun lock a.toml`\n"
        );
        let e = Error::UnknownTargets {
            manifest: "m.toml".into(),
            unknown: vec![UnknownTarget {
                name: "biuld".into(),
                suggestion: Some("build".into()),
            }],
        };
        assert_eq!(e.exit_code(), exit_code::USAGE);
        assert_eq!(
            e.to_string(),
            "error: unknown task `biuld`: did you mean `build`?\nhint: `taskrun list m.toml` shows the tasks\n"
        );
        let e = Error::Failed("cannot write the lockfile a.lock: denied".into());
        assert_eq!(e.exit_code(), exit_code::TASK_FAILED);
        assert_eq!(
            e.to_string(),
            "error: cannot write the lockfile a.lock: denied\n"
        );
    }
}
