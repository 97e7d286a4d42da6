//! Manifest problems with their source spans, rendered miette-style with a caret.
//!
//! Validation collects every [`Problem`] first and renders them together, so a user fixes a
//! manifest in one pass instead of one error per run.

use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, as a sentence fragment ("unknown key `retries`").
    pub message: String,
    /// Byte range in the manifest, when the problem has a place.
    pub span: Option<Range<usize>>,
    /// Short text under the caret.
    pub label: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Problem {
    /// A problem at `span`.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: Some(span),
            label: None,
            help: None,
        }
    }

    /// A problem with no place in the file.
    pub fn global(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: None,
            label: None,
            help: None,
        }
    }

    /// Adds the text shown under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds advice.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Problems found in one manifest, with the text they point into.
#[derive(Debug, Clone)]
pub struct ManifestErrors {
    /// The manifest path as given.
    pub path: PathBuf,
    /// The manifest text.
    pub source: String,
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
}

/// 1-based line and column of a byte offset (columns count characters).
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// The manifest text for miette, whose `file:line:col` header counts columns in bytes:
/// this one counts characters, as [`line_col`] and the `::error` annotations do.
#[derive(Debug, Clone)]
struct CharColumns(std::sync::Arc<str>);

impl miette::SourceCode for CharColumns {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text: &'a str = &self.0;
        let inner = text.read_span(span, before, after)?;
        let start = inner.span().offset();
        let (_, column) = line_col(text, start);
        Ok(Box::new(miette::MietteSpanContents::new(
            inner.data(),
            *inner.span(),
            inner.line(),
            column - 1,
            inner.line_count(),
        )))
    }
}

impl ManifestErrors {
    /// Renders every problem with its file:line:col and caret; `color` picks the theme.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let name = self.path.display().to_string();
        // One copy of the text for every problem's report, not one each.
        let text = CharColumns(std::sync::Arc::from(self.source.as_str()));
        let mut out = String::new();
        for p in &self.problems {
            let mut diag = MietteDiagnostic::new(p.message.clone());
            if let Some(help) = &p.help {
                diag = diag.with_help(help.clone());
            }
            if let Some(span) = &p.span {
                let len = span.end.saturating_sub(span.start);
                diag = diag.with_label(LabeledSpan::new(p.label.clone(), span.start, len));
                let report = miette::Report::new(diag)
                    .with_source_code(NamedSource::new(name.clone(), text.clone()));
                let _ = handler.render_report(&mut out, report.as_ref());
            } else {
                let report = miette::Report::new(diag);
                out.push_str(&format!("{name}: "));
                let _ = handler.render_report(&mut out, report.as_ref());
            }
            out.push('\n');
        }
        let n = self.problems.len();
        out.push_str(&format!(
            "error: {} has {n} problem{}\n",
            name,
            if n == 1 { "" } else { "s" }
        ));
        out
    }

    /// One `::error file=..,line=..,col=..::message` line per problem, for GitHub Actions.
    pub fn github_annotations(&self) -> String {
        use crate::report::github::{escape_data, escape_property};
        let file = escape_property(&self.path.display().to_string());
        let mut out = String::new();
        for p in &self.problems {
            let message = escape_data(&p.message);
            match &p.span {
                Some(span) => {
                    let (line, col) = line_col(&self.source, span.start);
                    out.push_str(&format!(
                        "::error file={file},line={line},col={col}::{message}\n"
                    ));
                }
                None => out.push_str(&format!("::error file={file}::{message}\n")),
            }
        }
        out
    }

    /// `file:line:col: message` lines, one per problem (for plain logs and tests).
    pub fn short(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let (line, col) = p
                .span
                .as_ref()
                .map_or((1, 1), |s| line_col(&self.source, s.start));
            out.push_str(&format!(
                "{}:{line}:{col}: {}\n",
                self.path.display(),
                p.message
            ));
        }
        out
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file has problems.
    Invalid(Box<ManifestErrors>),
    /// A `--var` argument is malformed.
    BadVar(String),
}

impl LoadError {
    /// The message for stderr.
    pub fn render(&self, color: bool) -> String {
        match self {
            LoadError::Io { path, error } => {
                let mut text = format!("error: cannot read manifest {}: {error}\n", display(path));
                // `taskrun lsit m.toml`: a misspelt command reads as a manifest's name.
                let typed = path
                    .to_str()
                    .filter(|p| !p.contains(['/', '.']) && !path.exists());
                if let Some(command) =
                    typed.and_then(|t| super::suggest(t, crate::cli::SUBCOMMANDS.iter().copied()))
                {
                    text.push_str(&format!(
                        "hint: did you mean the command `taskrun {command}`?\n"
                    ));
                }
                text
            }
            LoadError::Invalid(errors) => errors.render(color),
            LoadError::BadVar(msg) => format!("error: {msg}\n"),
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
        assert_eq!(line_col(src, 999), (3, 1));
    }
}
