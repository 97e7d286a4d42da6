//! The cache binary's own helpers, on top of the shared harness
//! (`tests/support/workspace.rs`): the library playing the scheduler's part in a workspace.

use std::fs;
use std::process::{Command, Output};

use taskrun::cache::inputs::InputFile;
use taskrun::cache::store::Store;
use taskrun::cache::{CacheOptions, LocalCache, Lookup, Produced, TaskCache};
use taskrun::manifest::{LoadOptions, load_str};
use taskrun::plan::Plan;

pub use crate::workspace::Workspace;

impl Workspace {
    /// The workspace's plan, loaded as the binary would load it under the shared harness:
    /// the caller's `TASKRUN_*` (say, a developer's `TASKRUN_CACHE_DIR`) is not seen.
    pub fn plan(&self) -> Plan {
        let path = self.root().join("taskrun.toml");
        let source = fs::read_to_string(&path).unwrap();
        let env = |k: &str| {
            if crate::workspace::cleared(std::ffi::OsStr::new(k)) {
                None
            } else {
                std::env::var(k).ok()
            }
        };
        let pipeline = load_str(&path, source, &LoadOptions::default(), &env).unwrap();
        Plan::build(pipeline, &[]).unwrap()
    }

    pub fn store(&self) -> Store {
        Store::new(self.root().join(".taskrun/cache"), false)
    }

    pub fn last_key(&self, task: &str) -> String {
        let plan = self.plan();
        taskrun::cache::CacheView::open(&plan.pipeline)
            .journal
            .last_key(task)
            .unwrap()
    }

    /// Plays the scheduler over the whole plan: true per task that was a hit.
    pub fn run_all(&self) -> Vec<bool> {
        let plan = self.plan();
        let cache = LocalCache::open(&plan.pipeline, CacheOptions::default()).unwrap();
        let mut digests = vec![[0u8; 32]; plan.pipeline.tasks.len()];
        let mut hits = Vec::new();
        for &i in &plan.order {
            let deps: Vec<[u8; 32]> = plan.deps[i].iter().map(|&d| digests[d]).collect();
            let inputs = self.expand(&plan, i);
            match cache.lookup(&plan, i, &inputs, &deps).unwrap() {
                Lookup::Hit { digest, .. } => {
                    hits.push(true);
                    digests[i] = digest;
                }
                Lookup::Run { key, .. } => {
                    hits.push(false);
                    let taskrun::model::Action::Command(cmd) = &plan.task(i).action else {
                        panic!()
                    };
                    fs::create_dir_all(self.root().join("out")).unwrap();
                    let ok = Command::new("sh")
                        .args(["-c", &cmd.display()])
                        .current_dir(self.root())
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok);
                    digests[i] = cache
                        .record_success(&plan, i, key.as_deref(), &deps, Produced::default())
                        .unwrap();
                }
            }
        }
        cache.finish(false).unwrap();
        hits
    }

    /// The task's inputs as the scheduler would expand them (unmatched patterns left out).
    fn expand(&self, plan: &Plan, i: usize) -> Vec<InputFile> {
        taskrun::cache::inputs::expand_with(
            self.root(),
            &plan.pipeline.cache.dir,
            &plan.task(i).inputs,
            std::iter::empty(),
        )
        .unwrap()
        .into_inputs()
    }

    /// `taskrun ARGS` in the root (the shared harness's clean environment), waited for.
    pub fn taskrun(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// True when `f` leaves the stat records file untouched.
    pub fn stat_unchanged_by(&self, f: impl FnOnce()) -> bool {
        let p = self
            .root()
            .join(".taskrun/cache")
            .join(taskrun::cache::stat::STAT_FILE);
        let before = fs::read(&p).ok();
        f();
        before == fs::read(&p).ok()
    }
}

pub fn set_last_used(ws: &Workspace, key: &str, when: &str) {
    let store = ws.store();
    let mut rec = store.read_record(key).unwrap();
    rec.last_used = when.into();
    store.write_record(&mut rec).unwrap();
}
