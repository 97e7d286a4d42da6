//! A workspace ("machine") with its own local cache dir, a scheduler stand-in, and a way to
//! capture the warnings a run prints.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskrun::cache::inputs::InputFile;
use taskrun::cache::{
    CacheOptions, CacheSource, LocalCache, Lookup, Produced, Reason, RemoteCache, RemoteOptions,
    TaskCache,
};
use taskrun::manifest::{LoadOptions, load_str};
use taskrun::model::Action;
use taskrun::plan::Plan;

/// What happened to one task in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hit(CacheSource),
    Ran(Reason),
}

/// One machine: a workspace in a temp dir with its own `.taskrun/cache`.
pub struct Machine {
    dir: tempfile::TempDir,
    manifest: String,
    /// Short timeouts for the failure tests (the defaults are 2 s / 30 s).
    pub timeouts: Option<(Duration, Duration)>,
    pub force: bool,
}

impl Machine {
    pub fn new(manifest: &str) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            manifest: manifest.into(),
            timeouts: None,
            force: false,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, data: &str) {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.root().join(rel)).ok()
    }

    pub fn plan(&self) -> Plan {
        let path = self.root().join("taskrun.toml");
        let pipeline = load_str(
            &path,
            self.manifest.clone(),
            &LoadOptions::default(),
            &|_| None,
        )
        .unwrap();
        Plan::build(pipeline, &[]).unwrap()
    }

    pub fn cache(&self, plan: &Plan) -> LocalCache {
        let opts = CacheOptions {
            force: self.force,
            ..CacheOptions::default()
        };
        let cache = LocalCache::open(&plan.pipeline, opts).unwrap();
        match (self.timeouts, plan.pipeline.cache.http_remote()) {
            (Some((connect, total)), Some(url)) => {
                let remote = RemoteCache::new(
                    url,
                    RemoteOptions {
                        connect_timeout: connect,
                        timeout: total,
                        write: plan.pipeline.cache.remote_write,
                    },
                );
                cache.with_remote(Some(remote.into()))
            }
            _ => cache,
        }
    }

    /// Plays the scheduler over the whole plan: lookup, run on a miss (a command through
    /// `sh`, a download by writing `fake_download` to its dest), record_success.
    pub fn run(&self) -> Vec<Outcome> {
        let plan = self.plan();
        let cache = self.cache(&plan);
        let mut digests = vec![[0u8; 32]; plan.pipeline.tasks.len()];
        let mut outcomes = Vec::new();
        for &i in &plan.order {
            let deps: Vec<[u8; 32]> = plan.deps[i].iter().map(|&d| digests[d]).collect();
            let inputs = self.expand(&plan, i);
            match cache.lookup(&plan, i, &inputs, &deps).unwrap() {
                Lookup::Hit { digest, source, .. } => {
                    outcomes.push(Outcome::Hit(source));
                    digests[i] = digest;
                }
                Lookup::Run { key, reason } => {
                    outcomes.push(Outcome::Ran(reason));
                    match &plan.task(i).action {
                        Action::Command(cmd) => {
                            let ok = Command::new("sh")
                                .args(["-c", &cmd.display()])
                                .current_dir(self.root())
                                .status()
                                .unwrap()
                                .success();
                            assert!(ok);
                        }
                        Action::Download(d) => self.write(d.dest.as_str(), FAKE_DOWNLOAD),
                        other => panic!("{other:?}"),
                    }
                    digests[i] = cache
                        .record_success(
                            &plan,
                            i,
                            key.as_deref(),
                            &deps,
                            Produced {
                                output: b"ran it\n",
                                ..Produced::default()
                            },
                        )
                        .unwrap();
                }
            }
        }
        cache.finish(false).unwrap();
        outcomes
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

    /// Blob files in the local store.
    pub fn local_blobs(&self) -> Vec<PathBuf> {
        taskrun::cache::store::Store::new(self.root().join(".taskrun/cache"), true).blob_files()
    }
}

/// What the stand-in scheduler "downloads".
pub const FAKE_DOWNLOAD: &str = "downloaded bytes\n";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with warnings captured; returns its result and the warning lines.
pub fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text.lines().map(str::to_string).collect())
}
