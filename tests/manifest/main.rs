//! The manifest, `check`, `plan`, `list` and `schema`, tested through the real binary.

mod check;
mod execution;
mod flagship;
mod plan;
mod props;
mod remote_cache;
mod schema;
mod support;
#[path = "../support/workspace.rs"]
mod workspace;
