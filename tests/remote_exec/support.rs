//! The remote-execution binary's own helpers, on top of the shared harness
//! (`tests/support/workspace.rs`): manifests for the cluster with a nonce of their own, and
//! what a run left in a workspace: output files with their modes, the Action digests taskrun
//! sends for its tasks.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

pub use crate::workspace::{Workspace, task};

/// The manifest `body` with `[execution] remote = url` (and `extra` lines in that table)
/// and an `[env]` NONCE that makes its Actions this test's own.
pub fn manifest(url: &str, extra: &str, nonce: &str, body: &str) -> String {
    format!("[execution]\nremote = \"{url}\"\n{extra}\n[env]\nNONCE = \"{nonce}\"\n\n{body}")
}

/// A marker unique to this process and call, so another test's (or run's) results in the
/// cluster's cache never answer.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{t:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Workspace {
    /// Every file under `rels` (files or directories): relative path → (bytes, mode bits).
    pub fn files(&self, rels: &[&str]) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        for rel in rels {
            for e in walkdir::WalkDir::new(self.path(rel)) {
                let e = e.unwrap();
                if !e.file_type().is_file() {
                    continue;
                }
                let name = e.path().strip_prefix(self.root()).unwrap();
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                out.insert(
                    name.to_string_lossy().into_owned(),
                    (std::fs::read(e.path()).unwrap(), mode),
                );
            }
        }
        out
    }

    /// The Action digest (`HASH/SIZE`, as the cluster's worker log names it) taskrun sends
    /// for `task` now, for a server speaking REAPI 2.2 (BuildGrid 0.9.1).
    pub fn action_digest(&self, task: &str) -> String {
        let path = self.path("taskrun.toml");
        let opts = taskrun::manifest::LoadOptions::default();
        let pipeline = taskrun::manifest::load(&path, &opts).unwrap();
        let plan = taskrun::plan::Plan::build(pipeline, &[]).unwrap();
        let i = plan.pipeline.tasks.get_index_of(task).unwrap();
        let spec = taskrun::actions::remote::spec::build(&plan, i).unwrap();
        let prepared =
            taskrun::reapi::action::prepare(&spec, taskrun::reapi::ApiVersion::V2_2).unwrap();
        let d = prepared.digest();
        format!("{}/{}", d.hex(), d.size)
    }
}
