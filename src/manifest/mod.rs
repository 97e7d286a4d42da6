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
mod memo_key;
pub mod paths;
pub mod reserved;
pub mod retry;
pub mod schema;
pub mod shell;
mod string_offsets;
mod suggest;
pub mod task;
mod vars;
pub mod walk;

pub use cache::cache_dir_only;
pub use diagnostic::{LoadError, ManifestErrors, Problem};
pub use load::{LoadOptions, load, load_str, parse_var_args};
pub use suggest::{split_instance, suggest, suggest_task};
