//! Reading a manifest: TOML with spans → every problem collected → [`crate::model::Pipeline`].
//!
//! The loader walks the spanned TOML tree itself instead of deriving serde types, so that one
//! pass reports every problem (unknown keys, bad values, graph errors) with its place.

mod cache;
pub mod diagnostic;
pub mod execution;
pub mod fanout;
pub mod graph;
pub mod interpolate;
pub mod keys;
pub mod kinds;
pub mod load;
pub mod memo;
pub mod paths;
pub mod reserved;
pub mod retry;
pub mod schema;
pub mod shell;
pub mod task;
pub mod walk;

pub use diagnostic::{LoadError, ManifestErrors, Problem};
pub use load::{LoadOptions, load, load_str, parse_var_args};

/// The closest candidate to `name` (edit distance < 3), for "did you mean" hints.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d < 3 && *d < c.len().max(name.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}
