//! Many `taskrun` processes on one cache dir at once (SPEC §5: two processes on one cache
//! never corrupt it): every output is right, and afterwards every entry serves a hit.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use crate::support::{Run, Workspace, task};

const MANIFEST: &str = r#"
[tasks.big]
inputs = ["in.txt"]
outputs = ["out/big.bin"]
run = "mkdir -p out; yes \"$(cat in.txt)\" | head -c 1000000 > out/big.bin"

[tasks.tree]
inputs = ["in.txt"]
outputs = ["out/tree"]
run = "mkdir -p out/tree; for i in 1 2 3 4; do echo \"$i $(cat in.txt)\" > out/tree/$i.txt; done"

[tasks.sum]
deps = ["big", "tree"]
outputs = ["out/sum.txt"]
run = "cksum out/big.bin out/tree/*.txt > out/sum.txt"
"#;

/// Few variants for many processes: most entries are stored by several at once.
const VARIANTS: [&str; 3] = ["red", "green", "blue"];
const PROCESSES: usize = 12;

fn outputs(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root.join("out"))
        .into_iter()
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

/// Runs `taskrun` in every workspace at once, all on `cache`.
fn all_at_once(spaces: &[Workspace], cache: &Path) -> Vec<Run> {
    let children: Vec<_> = spaces
        .iter()
        .map(|ws| {
            ws.cmd(&["taskrun.toml"])
                .env("TASKRUN_CACHE_DIR", cache)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect()
}

#[test]
fn processes_sharing_one_cache_never_see_a_wrong_output() {
    let want: Vec<_> = VARIANTS
        .iter()
        .map(|v| {
            let ws = Workspace::new(MANIFEST);
            ws.write("in.txt", v);
            ws.run(&["--no-cache"]).code(0);
            outputs(ws.root())
        })
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let spaces: Vec<Workspace> = (0..PROCESSES)
        .map(|i| {
            let ws = Workspace::new(MANIFEST);
            ws.write("in.txt", VARIANTS[i % VARIANTS.len()]);
            ws
        })
        .collect();
    for round in 0..3 {
        for run in all_at_once(&spaces, cache.path()) {
            run.code(0);
        }
        for (i, ws) in spaces.iter().enumerate() {
            assert!(
                outputs(ws.root()) == want[i % VARIANTS.len()],
                "round {round}, process {i}: outputs differ from a clean run"
            );
            if round > 0 {
                let report = ws.last_report();
                for t in ["big", "tree", "sum"] {
                    assert_eq!(
                        task(&report, t)["status"],
                        "cached",
                        "round {round}, {i}: {t}"
                    );
                }
            }
            // The next round restores everything from the shared cache.
            std::fs::remove_dir_all(ws.path("out")).unwrap();
        }
    }
}

/// A `--no-cache` run holds the workspace's cache lock too: a caching run started beside it
/// waits (and says so) instead of recording outputs the other run is rewriting.
#[test]
fn a_caching_run_waits_for_a_no_cache_run_on_the_same_workspace() {
    use std::io::BufRead;
    let ws = Workspace::new(
        "[tasks.a]\noutputs = [\"a.txt\"]\n\
         run = \"touch started; while [ ! -e go ]; do sleep 0.02; done; echo $$$$ > a.txt\"\n",
    );
    let first = ws
        .cmd(&["taskrun.toml", "--no-cache"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::http::wait_until("the first run's task", || ws.path("started").exists());
    // A variable claiming the lock is shared is not enough: the process it names (here the
    // test, an ancestor) does not hold the lock.
    let claim = format!(
        "{}:{}",
        std::process::id(),
        ws.path(".taskrun/cache").display()
    );
    let mut second = ws
        .cmd(&["taskrun.toml"])
        .env("TASKRUN_CACHE_LOCK_HELD", claim)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = second.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let waiting = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_default();
    ws.write("go", "");
    assert!(
        waiting.contains("waiting for another taskrun"),
        "{waiting:?}"
    );
    Run::from(first.wait_with_output().unwrap()).code(0);
    assert!(second.wait().unwrap().success());
    assert_eq!(task(&ws.last_report(), "a")["status"], "succeeded");
}

/// A task that runs taskrun on the same cache dir (a sub-pipeline) shares its run's lock:
/// it used to wait forever for the run that waits for it.
#[test]
fn a_nested_taskrun_on_the_same_cache_shares_the_lock() {
    let bin = env!("CARGO_BIN_EXE_taskrun");
    let ws = Workspace::new(&format!(
        "[tasks.nested]\nrun = \"timeout 30 {bin} inner.toml -q && test -s i.txt\"\n"
    ));
    ws.write(
        "inner.toml",
        "[tasks.i]\noutputs = [\"i.txt\"]\nrun = \"echo inner > i.txt\"\n",
    );
    for flags in [&["--force"][..], &["--no-cache"][..]] {
        let r = ws.run(flags);
        r.code(0);
        assert!(
            !r.stderr.contains("waiting for another taskrun"),
            "{}",
            r.stderr
        );
    }
}

/// A nested run sharing its parent's lock stops once the parent is gone (kill -9): it
/// would go on writing the store with no lock, beside whatever run takes the lock next.
#[test]
fn a_nested_run_stops_when_the_run_whose_lock_it_shares_is_killed() {
    let bin = env!("CARGO_BIN_EXE_taskrun");
    let ws = Workspace::new(&format!(
        "[tasks.nested]\nrun = \"{bin} inner.toml -q > nested.log 2>&1\"\n"
    ));
    ws.write(
        "inner.toml",
        "[tasks.i]\noutputs = [\"i.txt\"]\nrun = \"echo $PPID > inner.pid; sleep 30; echo late > i.txt\"\n",
    );
    let mut outer = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::http::wait_until("the nested run's task", || {
        ws.path("inner.pid").exists() && ws.read("inner.pid").ends_with('\n')
    });
    let nested: i32 = ws.read("inner.pid").trim().parse().unwrap();
    outer.kill().unwrap();
    outer.wait().unwrap();
    assert!(
        crate::support::dies_soon(nested),
        "the nested run went on without the lock"
    );
    assert!(!ws.path("i.txt").exists());
}
