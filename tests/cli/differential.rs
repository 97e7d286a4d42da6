//! Differential incremental test (issue 14 item 11): seeded random edits to inputs, commands,
//! env and the manifest between runs. After each cached run the outputs equal a clean
//! `--no-cache` run's, and the tasks that ran are exactly those whose state (as this test
//! models it) was never seen before: no wrong hit, no needless miss.
//!
//! `TASKRUN_DIFF_STEPS` (default 40) and `TASKRUN_DIFF_SEED` make a longer or another run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use crate::support::{Workspace, task};

const A_TEXT: [&str; 3] = ["apple\n", "banana\n", "cherry pie\n"];
const A_CMD: [&str; 2] = [
    "tr a-z A-Z < in/a.txt > out/a.txt",
    "rev < in/a.txt > out/a.txt",
];
const B_CMD: [&str; 2] = [
    "cat in/b/*.txt > out/b.txt",
    "cat in/b/*.txt | sort -r > out/b.txt",
];
const C_CMD: [&str; 2] = [
    "cat out/a.txt out/b.txt > out/c.txt",
    "cat out/b.txt out/a.txt > out/c.txt",
];
const D_TEXT: [&str; 2] = ["one\n", "two\n"];

/// What the test varies; each task's part of it decides whether it must run.
#[derive(Debug, Clone, Default)]
struct State {
    a_in: usize,
    a_cmd: usize,
    mode: usize,
    /// `in/b/<name>.txt` -> which text.
    b_files: BTreeMap<u8, usize>,
    b_cmd: usize,
    c_cmd: usize,
    d_in: usize,
    /// A manifest comment: changes the file, not any task.
    comment: u64,
}

impl State {
    fn manifest(&self) -> String {
        format!(
            r#"# edit {comment}
[tasks.a]
inputs = ["in/a.txt"]
outputs = ["out/a.txt"]
env = {{ MODE = "m{mode}" }}
run = "mkdir -p out; {a}; echo $MODE >> out/a.txt"

[tasks.b]
inputs = ["in/b/*.txt"]
outputs = ["out/b.txt"]
run = "mkdir -p out; {b}"

[tasks.c]
deps = ["a", "b"]
outputs = ["out/c.txt"]
run = "{c}"

[tasks.d]
deps = ["c"]
inputs = ["in/d.txt"]
outputs = ["out/d"]
run = "mkdir -p out/d; cp in/d.txt out/d/in.txt; wc -c < out/c.txt > out/d/size.txt"
"#,
            comment = self.comment,
            mode = self.mode,
            a = A_CMD[self.a_cmd],
            b = B_CMD[self.b_cmd],
            c = C_CMD[self.c_cmd],
        )
    }

    /// Each task's modelled state: its own definition and inputs, and what its deps passed
    /// on. A dep with outputs passes their content (early cutoff: a dep that ran and wrote
    /// the same bytes does not make its dependents run), read from a clean run's `clean`.
    fn fingerprints(&self, clean: &BTreeMap<String, Vec<u8>>) -> [(&'static str, String); 4] {
        let out = |p: &str| String::from_utf8_lossy(&clean[p]).into_owned();
        let a = format!("{}/{}/{}", self.a_in, self.a_cmd, self.mode);
        let b = format!("{:?}/{}", self.b_files, self.b_cmd);
        let c = format!(
            "({})({})/{}",
            out("out/a.txt"),
            out("out/b.txt"),
            self.c_cmd
        );
        let d = format!("({})/{}", out("out/c.txt"), self.d_in);
        [("a", a), ("b", b), ("c", c), ("d", d)]
    }

    /// Writes the manifest and the inputs into `root` (only what differs).
    fn write(&self, root: &Path) {
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            if std::fs::read_to_string(&p).ok().as_deref() != Some(text) {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            }
        };
        put("taskrun.toml", &self.manifest());
        put("in/a.txt", A_TEXT[self.a_in]);
        put("in/d.txt", D_TEXT[self.d_in]);
        let dir = root.join("in/b");
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let keep = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix('b'))
                .and_then(|n| n.parse::<u8>().ok())
                .is_some_and(|n| self.b_files.contains_key(&n));
            if !keep {
                std::fs::remove_file(p).unwrap();
            }
        }
        for (n, t) in &self.b_files {
            put(&format!("in/b/b{n}.txt"), A_TEXT[*t]);
        }
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every file under `out/`, with its bytes.
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

/// One random edit; returns what it was, for failure messages.
fn edit(s: &mut State, rng: &mut Rng, root: &Path) -> String {
    match rng.below(11) {
        0 => s.a_in = rng.pick(A_TEXT.len()),
        1 => s.a_cmd = rng.pick(A_CMD.len()),
        2 => s.mode = rng.pick(2),
        3 => {
            let n = u8::try_from(rng.below(3)).unwrap_or(0);
            if s.b_files.contains_key(&n) && s.b_files.len() > 1 && rng.below(2) == 0 {
                s.b_files.remove(&n);
            } else {
                s.b_files.insert(n, rng.pick(A_TEXT.len()));
            }
        }
        4 => s.b_cmd = rng.pick(B_CMD.len()),
        5 => s.c_cmd = rng.pick(C_CMD.len()),
        6 => s.d_in = rng.pick(D_TEXT.len()),
        7 => {
            // Same content, another mtime: nothing must run.
            let f = std::fs::File::options()
                .write(true)
                .open(root.join("in/a.txt"))
                .unwrap();
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(rng.below(1000));
            f.set_modified(t).unwrap();
            return "touched in/a.txt".into();
        }
        8 => s.comment += 1,
        9 => {
            let all: Vec<String> = outputs(root).into_keys().collect();
            if !all.is_empty() {
                let victim = &all[rng.pick(all.len())];
                std::fs::remove_file(root.join(victim)).unwrap();
                return format!("deleted {victim}");
            }
        }
        _ => {
            // Rewritten with the same bytes (a new inode): nothing must run.
            let p = root.join("in/d.txt");
            let text = std::fs::read(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            std::fs::write(&p, text).unwrap();
            return "rewrote in/d.txt".into();
        }
    }
    format!("{s:?}")
}

#[test]
fn cached_runs_equal_clean_runs_and_run_exactly_the_changed_tasks() {
    let steps = env_or("TASKRUN_DIFF_STEPS", 40);
    let seed = env_or("TASKRUN_DIFF_SEED", 0x0d1f_f5ee);
    let mut rng = Rng(seed | 1);
    let mut state = State::default();
    state.b_files.insert(0, 0);
    let ws = Workspace::new("");
    let mut seen: HashSet<String> = HashSet::new();
    let (mut ran_total, mut hits_total) = (0, 0);
    for step in 0..steps {
        let what = if step == 0 {
            "first run".to_string()
        } else {
            (0..1 + rng.below(2))
                .map(|_| edit(&mut state, &mut rng, ws.root()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        state.write(ws.root());
        let run = ws.run(&[]);
        assert_eq!(
            run.code, 0,
            "seed {seed:#x} step {step} ({what})\n{}",
            run.stdout
        );
        let report = ws.last_report();

        let clean = Workspace::new("");
        state.write(clean.root());
        clean.run(&["--no-cache"]).code(0);
        let want = outputs(clean.root());
        assert_eq!(
            outputs(ws.root()),
            want,
            "seed {seed:#x} step {step} ({what}): outputs differ from a clean run"
        );

        let mut expected = BTreeSet::new();
        for (name, fp) in state.fingerprints(&want) {
            if seen.insert(format!("{name}:{fp}")) {
                expected.insert(name);
            }
        }
        let ran: BTreeSet<&str> = ["a", "b", "c", "d"]
            .into_iter()
            .filter(|n| task(&report, n)["status"] == "succeeded")
            .collect();
        assert_eq!(
            ran, expected,
            "seed {seed:#x} step {step} ({what}): ran {ran:?}, expected {expected:?}"
        );
        ran_total += ran.len();
        hits_total += 4 - ran.len();
    }
    eprintln!(
        "differential: {steps} steps (seed {seed:#x}), {ran_total} task runs, {hits_total} hits"
    );
}
