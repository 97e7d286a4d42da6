//! The manifest binary's own helpers, on top of the shared harness
//! (`tests/support/workspace.rs`): taskrun as an `assert_cmd` command, and a file listing.

use std::path::Path;

pub use crate::workspace::Workspace;

impl Workspace {
    /// `taskrun ARGS` run inside the workspace (the shared harness's clean environment), for
    /// `assert_cmd`'s assertions.
    pub fn taskrun(&self, args: &[&str]) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.cmd(args))
    }
}

/// The shared harness's `taskrun` (clean environment), for `assert_cmd`'s assertions.
pub fn taskrun() -> assert_cmd::Command {
    assert_cmd::Command::from_std(crate::workspace::taskrun())
}

/// Every file below `dir`, relative, sorted: to prove a command wrote nothing.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}
