//! A temp workspace with a manifest, and a way to run the real binary in it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temp dir holding `taskrun.toml` and whatever files a test writes.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("taskrun.toml"), manifest).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `taskrun ARGS` run inside the workspace, with a clean environment for colour and CI.
    pub fn taskrun(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskrun"));
        cmd.current_dir(self.path())
            .args(args)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("TASKRUN_CACHE_DIR")
            .env_remove("TASKRUN_REMOTE_CACHE")
            .env_remove("TASKRUN_REMOTE_EXECUTOR")
            .env("NO_COLOR", "1");
        cmd
    }
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
