//! Crash consistency (issue 14 item 10): `taskrun` is killed with SIGKILL at seeded random
//! moments of a real pipeline (a download from a loopback server, a large output, a
//! directory output, a task whose inputs glob that directory; the cache on). After each
//! kill a normal run must succeed and leave exactly the files, with exactly the bytes, of a
//! clean `--no-cache` run: no wrong output, no leftover file anywhere outside `.taskrun/`.
//!
//! `TASKRUN_CRASH_ITERATIONS` (default 50) and `TASKRUN_CRASH_SEED` make a longer or another
//! run; a failure names its seed and iteration.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fault_server::Route;
use crate::http::{Http, body, sha};
use crate::support::Workspace;

const PIPELINE: &str = r#"
[tasks.fetch]
download = { url = "URL", dest = "data/remote.bin", sha256 = "SHA" }

[tasks.big]
inputs = ["src/seed.txt"]
outputs = ["out/big.bin"]
run = "mkdir -p out; yes \"$(cat src/seed.txt)\" | head -c 2000000 > out/big.bin"

[tasks.tree]
inputs = ["src/seed.txt"]
outputs = ["out/tree"]
run = "mkdir -p out/tree/sub; for i in 1 2 3 4 5 6 7 8; do yes \"$i $(cat src/seed.txt)\" | head -c 200000 > out/tree/f$i.txt; done; cp src/seed.txt out/tree/sub/seed.txt"

[tasks.sum]
deps = ["fetch", "big", "tree"]
inputs = ["out/tree/**"]
outputs = ["out/sum.txt"]
run = "cd out/tree && find . -type f | sort | xargs cksum > ../sum.txt && cksum ../big.bin ../../data/remote.bin >> ../sum.txt"
"#;

/// Two versions of the input: switching between them makes tasks run or hit the cache.
const SEEDS: [&str; 2] = ["alpha", "beta"];

/// Outputs a restore may have to bring back.
const DELETABLE: [&str; 5] = [
    "out/big.bin",
    "out/tree/f3.txt",
    "out/tree/sub/seed.txt",
    "data/remote.bin",
    "out/sum.txt",
];

/// xorshift64*: the same seed, the same kills.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every file outside `.taskrun/` (the manifest too), with its bytes.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".taskrun")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap();
            (
                rel.to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn workspace(manifest: &str, seed: &str) -> Workspace {
    let ws = Workspace::new(manifest);
    ws.write("src/seed.txt", seed);
    ws
}

/// The first difference between two snapshots, if any.
fn difference(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    for (path, bytes) in want {
        match got.get(path) {
            None => return Some(format!("{path} is missing")),
            Some(b) if b != bytes => return Some(format!("{path} differs")),
            Some(_) => {}
        }
    }
    got.keys()
        .find(|p| !want.contains_key(*p))
        .map(|p| format!("{p} is left over"))
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_wrong_or_stray_file() {
    let iterations = env_or("TASKRUN_CRASH_ITERATIONS", 50);
    let seed = env_or("TASKRUN_CRASH_SEED", 0x7a5c_4e11);
    let http = Http::start();
    let data = body(1_500_000);
    http.route("/remote.bin", Route::ok(data.clone()));
    let manifest = PIPELINE
        .replace("URL", &http.url("/remote.bin"))
        .replace("SHA", &sha(&data));

    // What a clean run leaves, per input version; and how long a cold run takes.
    let mut want = Vec::new();
    let mut cold = Duration::ZERO;
    for s in SEEDS {
        let ws = workspace(&manifest, s);
        let start = Instant::now();
        ws.run(&["--no-cache"]).code(0);
        cold = cold.max(start.elapsed());
        want.push(snapshot(ws.root()));
    }
    let window = u64::try_from(cold.as_micros())
        .unwrap_or(u64::MAX)
        .max(20_000);

    let mut rng = Rng(seed | 1);
    let mut killed_mid_run = 0;
    // Half with the cache in the workspace; half with it on another file system (restores
    // then copy through a `.taskrun-tmp-*` file beside each output), when /dev/shm is one.
    let shm = tempfile::tempdir_in("/dev/shm").ok();
    let other_fs = shm.as_ref().filter(|d| {
        use std::os::unix::fs::MetadataExt;
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        dev(d.path()) != dev(&std::env::temp_dir())
    });
    let caches: Vec<Option<&Path>> = match other_fs {
        Some(d) => vec![None, Some(d.path())],
        None => vec![None],
    };
    let per_cache = iterations.div_ceil(caches.len() as u64);
    for (c, cache) in caches.iter().enumerate() {
        let kills = Kills {
            manifest: &manifest,
            want: &want,
            window,
            seed,
            cache: *cache,
        };
        killed_mid_run += kills.run(&mut rng, c as u64 * per_cache, per_cache);
    }
    eprintln!(
        "crash: {iterations} kills (seed {seed:#x}), {killed_mid_run} while taskrun ran, \
         window {} ms",
        window / 1000
    );
    assert!(
        killed_mid_run * 2 >= iterations,
        "too few kills landed mid-run"
    );
}

/// One series of kills on one workspace.
struct Kills<'a> {
    manifest: &'a str,
    want: &'a [BTreeMap<String, Vec<u8>>],
    /// How long a cold run takes (µs): kills land within it.
    window: u64,
    seed: u64,
    /// `TASKRUN_CACHE_DIR`, when not the workspace's own.
    cache: Option<&'a Path>,
}

impl Kills<'_> {
    fn taskrun(&self, ws: &Workspace) -> std::process::Command {
        let mut cmd = ws.cmd(&["taskrun.toml"]);
        if let Some(dir) = self.cache {
            cmd.env("TASKRUN_CACHE_DIR", dir);
        }
        cmd
    }

    /// Kills `count` runs (numbered from `first`); returns how many were still running.
    fn run(&self, rng: &mut Rng, first: u64, count: u64) -> u64 {
        let ws = workspace(self.manifest, SEEDS[0]);
        let mut killed_mid_run = 0;
        let mut last = 0;
        for i in first..first + count {
            let v = usize::from(rng.below(2) == 0);
            ws.write("src/seed.txt", SEEDS[v]);
            // A changed input may run everything (the first time); else restores and hits.
            let window = if v == last { 30_000 } else { self.window };
            last = v;
            for path in DELETABLE {
                if rng.below(3) == 0 {
                    let _ = std::fs::remove_file(ws.path(path));
                }
            }
            let mut child = ws
                .cmd(&["taskrun.toml"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // The kill lands anywhere from before the manifest is read to after the last task.
            std::thread::sleep(Duration::from_micros(rng.below(window)));
            if child.try_wait().unwrap().is_none() {
                killed_mid_run += 1;
            }
            child.kill().unwrap();
            child.wait().unwrap();

            let after = crate::support::Run::from(self.taskrun(&ws).output().unwrap());
            assert_eq!(
                after.code, 0,
                "seed {:#x} iteration {i}: the run after the kill failed\n{}{}",
                self.seed, after.stdout, after.stderr
            );
            let mut expected = self.want[v].clone();
            expected.insert("taskrun.toml".into(), self.manifest.as_bytes().to_vec());
            if let Some(diff) = difference(&snapshot(ws.root()), &expected) {
                panic!("seed {:#x} iteration {i}: {diff}", self.seed);
            }
        }
        killed_mid_run
    }
}
