//! Issue 13, SPEC §13 (the cache and file-system half): attacks on the cache's trust boundary
//! through the real binary. Each test crafts what a hostile cache writer, a planted symlink
//! or an interrupted restore leaves, and checks that the run writes nothing it should not,
//! reads nothing it should not, and that the result does not change.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use taskrun::cache::digest::{hash_bytes, to_hex};
use taskrun::cache::journal::{Journal, Stamp};
use taskrun::cache::record::{ActionRecord, OutputFile};
use taskrun::cache::store::Store;

use crate::fault_server::Route;
use crate::http::{Http, body, wait_until};
use crate::support::{Run, Workspace, task};

const GEN: &str = r#"
[tasks.gen]
outputs = ["out/a.txt"]
run = "mkdir -p out && echo generated > out/a.txt"
"#;

pub(crate) const EVIL: &[u8] = b"#!/bin/sh\necho pwned\n";

/// `taskrun taskrun.toml <args>` with the default cache dir, whatever the developer's
/// environment says (the harness clears every `TASKRUN_*`).
fn run(ws: &Workspace, args: &[&str]) -> Run {
    ws.run(args)
}

fn cache_dir(ws: &Workspace) -> PathBuf {
    ws.path(".taskrun/cache")
}

/// The stored record of `task` and its file.
pub(crate) fn record_of(ws: &Workspace, task: &str) -> (ActionRecord, PathBuf) {
    for entry in walkdir::WalkDir::new(cache_dir(ws).join("ac")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rec: ActionRecord =
                serde_json::from_slice(&fs::read(entry.path()).unwrap()).unwrap();
            if rec.task == task {
                return (rec, entry.path().to_path_buf());
            }
        }
    }
    panic!("no record of {task}");
}

/// Seals `rec` the way taskrun does and writes it over `path`.
pub(crate) fn write_sealed(mut rec: ActionRecord, path: &Path) {
    rec.seal();
    fs::write(path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
}

/// `rec` also naming the manifest and a git hook, both with `EVIL` (put in the store).
fn with_undeclared(ws: &Workspace, mut rec: ActionRecord) -> ActionRecord {
    let d = Store::new(cache_dir(ws), false).put_bytes(EVIL).unwrap();
    for (path, mode) in [("taskrun.toml", 0o644), (".git/hooks/pre-commit", 0o755)] {
        rec.outputs.push(OutputFile {
            path: path.into(),
            sha256: to_hex(&d),
            size: EVIL.len() as u64,
            mode,
        });
    }
    rec.outputs.sort_by(|a, b| a.path.cmp(&b.path));
    rec
}

pub(crate) fn status(ws: &Workspace, name: &str) -> Value {
    task(&ws.last_report(), name)["status"].clone()
}

fn assert_untouched(ws: &Workspace, manifest: &str, r: &Run) {
    assert_eq!(ws.read("taskrun.toml"), manifest, "{}", r.stderr);
    assert!(!ws.path(".git").exists(), "{}", r.stderr);
}

/// Every blob in the local store holding `content`.
fn blobs_holding(ws: &Workspace, content: &[u8]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(cache_dir(ws).join("cas"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| fs::read(e.path()).is_ok_and(|b| b == content))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// A local record that also lists the manifest and `.git/hooks/pre-commit` (correctly
/// sealed, blobs present) is rejected whole with a warning, and the task runs.
#[test]
fn a_local_record_naming_undeclared_paths_is_rejected_and_the_task_runs() {
    let ws = Workspace::new(GEN);
    run(&ws, &[]).code(0);
    let (rec, path) = record_of(&ws, "gen");
    write_sealed(with_undeclared(&ws, rec), &path);
    fs::remove_file(ws.path("out/a.txt")).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_untouched(&ws, GEN, &r);
    assert!(r.stderr.contains("rejected"), "{}", r.stderr);
    assert!(r.stderr.contains("does not declare"), "{}", r.stderr);
    assert_eq!(status(&ws, "gen"), "succeeded", "ran, not restored");
    assert_eq!(ws.read("out/a.txt"), "generated\n");
    // The task's own result replaced the crafted record.
    let (rec, _) = record_of(&ws, "gen");
    assert_eq!(rec.outputs.len(), 1);
}

/// The last-results journal stands in for a record on a no-op rerun: a crafted journal entry
/// (for an unchanged record file) is checked the same way.
#[test]
fn a_journal_entry_naming_undeclared_paths_is_rejected() {
    let ws = Workspace::new(GEN);
    run(&ws, &[]).code(0);
    let (rec, path) = record_of(&ws, "gen");
    // An old record file, so the journal's stamp of it is trusted (not racy).
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let journal = Journal::open(&cache_dir(&ws), &ws.path("taskrun.toml"), false);
    journal.remember(
        "gen",
        &with_undeclared(&ws, rec),
        Stamp::take(&path).unwrap(),
    );
    journal.save(|_| true).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_untouched(&ws, GEN, &r);
    assert!(r.stderr.contains("rejected"), "{}", r.stderr);
    assert_eq!(status(&ws, "gen"), "succeeded");
}

/// `"mode": 3583` (0o6777) restores as 0o777: no setuid, setgid or sticky bit.
#[test]
fn special_mode_bits_in_a_record_are_never_restored() {
    let ws = Workspace::new(GEN);
    run(&ws, &[]).code(0);
    let (mut rec, path) = record_of(&ws, "gen");
    rec.outputs[0].mode = 3583;
    write_sealed(rec, &path);
    fs::remove_file(ws.path("out/a.txt")).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_eq!(status(&ws, "gen"), "cached", "{}", r.stderr);
    let mode = fs::metadata(ws.path("out/a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o777, "mode {mode:o}");
}

const GEN_DIR: &str = r#"
[tasks.gen]
outputs = ["out"]
run = "mkdir -p out && echo generated > out/a.txt"
"#;

/// `rm -rf out; ln -s /elsewhere out`, then a cached run: the symlink is removed and the
/// output restored in the workspace; nothing is written in `/elsewhere`.
#[test]
fn a_restore_never_writes_through_a_symlinked_output_dir() {
    let ws = Workspace::new(GEN_DIR);
    let elsewhere = tempfile::tempdir().unwrap();
    run(&ws, &[]).code(0);
    fs::remove_dir_all(ws.path("out")).unwrap();
    symlink(elsewhere.path(), ws.path("out")).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_eq!(status(&ws, "gen"), "cached", "{}", r.stderr);
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(!fs::symlink_metadata(ws.path("out")).unwrap().is_symlink());
    assert_eq!(ws.read("out/a.txt"), "generated\n");
    assert!(r.stderr.contains("removed the symlink out"), "{}", r.stderr);
}

/// The same planted symlink before a command runs: removed first, so the command's own
/// `mkdir -p out && echo > out/a.txt` writes in the workspace.
#[test]
fn a_symlinked_output_dir_is_removed_before_the_command_runs() {
    let ws = Workspace::new(GEN_DIR);
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), ws.path("out")).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(!fs::symlink_metadata(ws.path("out")).unwrap().is_symlink());
    assert_eq!(ws.read("out/a.txt"), "generated\n");
}

/// A declared output that is a symlink to a file outside the workspace (or a directory
/// output holding one) is not hashed into the store, so it can never be uploaded either; the
/// task fails and says why.
#[test]
fn an_output_linking_outside_is_not_read_into_the_cache() {
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret");
    let content = b"outside secret 9f1c\n";
    fs::write(&secret, content).unwrap();
    for (outputs, run_cmd) in [
        (
            r#"["link.txt"]"#,
            format!("ln -s {} link.txt", secret.display()),
        ),
        (
            r#"["out"]"#,
            format!("mkdir -p out && ln -s {} out/link.txt", secret.display()),
        ),
    ] {
        let manifest =
            format!("[tasks.leak]\noutputs = {outputs}\ncache = \"on\"\nrun = \"{run_cmd}\"\n");
        let ws = Workspace::new(&manifest);
        let r = run(&ws, &[]);
        assert!(blobs_holding(&ws, content).is_empty(), "{outputs}");
        assert_ne!(r.code, 0, "{}", r.stderr);
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(said.contains("leads outside the workspace"), "{said}");
        assert_eq!(fs::read(&secret).unwrap(), content);
        // The task failed: its outputs go (SPEC §8), the link removed, never followed.
        let first = outputs.trim_matches(|c| "[]\"".contains(c));
        assert!(
            fs::symlink_metadata(ws.path(first)).is_err(),
            "{outputs} left behind"
        );
        // Kept when asked to.
        ws.manifest(&manifest.replace(
            "cache = \"on\"",
            "cache = \"on\"\nkeep_failed_outputs = true",
        ));
        assert_ne!(run(&ws, &[]).code, 0);
        assert!(
            fs::symlink_metadata(ws.path(first)).is_ok(),
            "{outputs} not kept"
        );
        assert_eq!(fs::read(&secret).unwrap(), content);
    }
}

/// A failed attempt's outputs are deleted without following a symlinked parent it made:
/// `ln -s /elsewhere pd; ... > pd/h` then a failure (its exit code, or the link itself)
/// deleted `/elsewhere/h`, a file that was there before the run.
#[test]
fn deleting_a_failed_attempts_outputs_never_follows_a_parent_link_it_made() {
    let elsewhere = tempfile::tempdir().unwrap();
    let kept = elsewhere.path().join("h");
    for tail in ["echo more >> pd/h", "echo more >> pd/h; exit 1"] {
        fs::write(&kept, "there before\n").unwrap();
        let ws = Workspace::new(&format!(
            "[tasks.t]\noutputs = [\"pd/h\"]\nrun = \"ln -sfn {} pd; {tail}\"\n",
            elsewhere.path().display()
        ));
        let r = run(&ws, &[]);
        assert_eq!(r.code, 1, "{tail}: {}", r.stderr);
        // What the command itself wrote through its link is its doing; taskrun deletes
        // nothing there.
        assert_eq!(
            fs::read_to_string(&kept).unwrap(),
            "there before\nmore\n",
            "{tail}"
        );
        assert!(
            fs::symlink_metadata(ws.path("pd")).is_err(),
            "{tail}: link left"
        );
        r.says(&["removed the symlink pd"]);
    }
}

fn download_manifest(http: &Http, dest: &str) -> String {
    format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"{dest}\" }}\n",
        http.url("/f.bin")
    )
}

/// A command that exits 0 without writing one of its outputs has failed: what it wrote goes,
/// what it did not touch stays (SPEC §8: "that the attempt created or modified").
#[test]
fn a_missing_output_fails_the_task_and_deletes_only_what_the_attempt_wrote() {
    let ws = Workspace::new(
        "[tasks.t]\noutputs = [\"a\", \"b\", \"d\", \"e\"]\nrun = \"echo new > e\"\n",
    );
    ws.write("a", "mine\n").write("d/u", "mine too\n");
    let r = run(&ws, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.says(&["declared output b was not created"]);
    assert_eq!(ws.read("a"), "mine\n");
    assert_eq!(ws.read("d/u"), "mine too\n");
    assert!(!ws.exists("e"), "written by the failed attempt");
}

/// A symlinked parent of `dest` that leads outside is removed before the download: neither
/// the part file nor the file appear outside.
#[test]
fn a_download_never_writes_through_a_symlinked_dest_parent() {
    let http = Http::start();
    let data = body(50_000);
    http.route("/f.bin", Route::ok(data.clone()));
    let ws = Workspace::new(&download_manifest(&http, "data/f.bin"));
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), ws.path("data")).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(!fs::symlink_metadata(ws.path("data")).unwrap().is_symlink());
    assert_eq!(fs::read(ws.path("data/f.bin")).unwrap(), data);
}

/// A symlink that stays inside the workspace but would lead a write onto the manifest or into
/// `.taskrun/` is judged like one that leads outside: removed, never written through, by a
/// download and by a restore from the cache.
#[test]
fn no_write_reaches_the_manifest_or_taskruns_state_through_a_link_inside() {
    let http = Http::start();
    http.route("/f.bin", Route::ok(body(1_000)));
    let manifest = download_manifest(&http, "ml/taskrun.toml")
        + "\n[tasks.gen]\noutputs = [\"state/runs/evil.json\"]\n\
           run = \"mkdir -p state/runs && echo evil > state/runs/evil.json\"\n";
    let ws = Workspace::new(&manifest);
    symlink(".", ws.path("ml")).unwrap();
    let r = run(&ws, &[]);
    r.code(0);
    r.says(&[
        "removed the symlink ml",
        "`taskrun.toml`, the manifest itself",
    ]);
    assert_eq!(ws.read("taskrun.toml"), manifest);
    assert!(!fs::symlink_metadata(ws.path("ml")).unwrap().is_symlink());

    // A restore of `state/runs/evil.json` through `state -> .taskrun`.
    fs::remove_dir_all(ws.path("state")).unwrap();
    symlink(".taskrun", ws.path("state")).unwrap();
    let r = run(&ws, &[]);
    r.code(0);
    r.says(&["removed the symlink state", "taskrun's state directory"]);
    assert!(!ws.exists(".taskrun/runs/evil.json"));
    assert_eq!(ws.read("state/runs/evil.json"), "evil\n");
    assert_eq!(ws.read("taskrun.toml"), manifest);
}

/// A restored output directory is created through no such link either (the directories are
/// made before the files are written).
#[test]
fn no_output_directory_is_made_inside_taskruns_state_through_a_link() {
    let ws = Workspace::new(
        "[tasks.gen]\noutputs = [\"state/d\"]\nrun = \"mkdir -p state/d && echo x > state/d/f\"\n",
    );
    run(&ws, &[]).code(0);
    fs::remove_dir_all(ws.path("state")).unwrap();
    symlink(".taskrun", ws.path("state")).unwrap();
    let r = run(&ws, &[]);
    r.code(0);
    assert_eq!(task(&ws.last_report(), "gen")["status"], "cached");
    assert!(!ws.exists(".taskrun/d"), "made inside .taskrun/");
    assert!(!fs::symlink_metadata(ws.path("state")).unwrap().is_symlink());
    assert_eq!(ws.read("state/d/f"), "x\n");
}

/// The same for an item file a fan-out reads: `sub/deep -> ..` would lead a download onto it.
#[test]
fn no_write_reaches_an_item_file_through_a_link_inside() {
    let http = Http::start();
    http.route("/f.bin", Route::ok(&b"not a list\n"[..]));
    let manifest = download_manifest(&http, "sub/deep/items.txt")
        + "\n[tasks.each]\nfor_each = { lines = \"items.txt\" }\nrun = \"echo ${item.line}\"\n";
    let ws = Workspace::new(&manifest);
    ws.write("items.txt", "one\n");
    std::fs::create_dir_all(ws.path("sub")).unwrap();
    symlink("..", ws.path("sub/deep")).unwrap();
    let r = run(&ws, &[]);
    r.code(0);
    r.says(&[
        "removed the symlink sub/deep",
        "an item file of a fan-out task",
    ]);
    assert_eq!(ws.read("items.txt"), "one\n");
    assert_eq!(ws.read("sub/deep/items.txt"), "not a list\n");
}

/// A directory judged real before any command ran, then swapped for a symlink out by a
/// command, is never written through: the symlink is removed before `write`, whose output
/// lies in `data/`, runs. (This holds by two guards: the remembered directories are dropped
/// when the first child starts, and every write walks its parents with `O_NOFOLLOW`; the
/// test fails only if both break.)
#[test]
fn a_directory_swapped_for_a_symlink_by_a_command_mid_run_is_judged_again() {
    let http = Http::start();
    let data = body(50_000);
    http.route("/f.bin", Route::ok(data.clone()));
    let elsewhere = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[tasks.first]\ndownload = {{ url = \"{url}\", dest = \"data/first.bin\" }}\n\n\
         [tasks.swap]\ndeps = [\"first\"]\nrun = \"mv data moved && ln -s {out} data\"\n\n\
         [tasks.write]\ndeps = [\"swap\"]\noutputs = [\"data/second.txt\"]\n\
         run = \"mkdir -p data && echo second > data/second.txt\"\n",
        url = http.url("/f.bin"),
        out = elsewhere.path().display(),
    );
    let ws = Workspace::new(&manifest);
    fs::create_dir(ws.path("data")).unwrap();

    let r = run(&ws, &["--no-cache"]);
    r.code(0);
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "{}",
        r.stderr
    );
    assert!(!fs::symlink_metadata(ws.path("data")).unwrap().is_symlink());
    assert_eq!(ws.read("data/second.txt"), "second\n");
    assert_eq!(fs::read(ws.path("moved/first.bin")).unwrap(), data);
}

/// A `<dest>.part` symlink (to a file outside) is never opened through: the file it points
/// to keeps its content, with resume on or off, and `dest` is a plain file.
#[test]
fn a_download_never_writes_through_a_symlinked_part_file() {
    for resume in [true, false] {
        let http = Http::start();
        let data = body(50_000);
        http.route("/f.bin", Route::ok(data.clone()));
        let ws = Workspace::new(&format!(
            "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"f.bin\", resume = {resume} }}\n",
            http.url("/f.bin")
        ));
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, ws.path("f.bin.part")).unwrap();

        let r = run(&ws, &[]);
        r.code(0);
        assert_eq!(fs::read(&victim).unwrap(), b"precious", "resume {resume}");
        assert!(!fs::symlink_metadata(ws.path("f.bin")).unwrap().is_symlink());
        assert_eq!(fs::read(ws.path("f.bin")).unwrap(), data);
    }
}

const LEFTOVER: &str = r#"
[tasks.gen]
outputs = ["out"]
run = "mkdir -p out && printf generated > out/a.txt"

[tasks.use]
deps = ["gen"]
inputs = ["out/*"]
outputs = ["list.txt"]
run = "ls -A out > list.txt"
"#;

/// A restore killed (SIGKILL) half way leaves its temp file where no input glob sees it:
/// the next run's result is the same as if it had never happened (`use`, whose input is
/// `out/*`, stays cached).
#[test]
fn an_interrupted_restore_leaves_nothing_an_input_glob_sees() {
    let ws = Workspace::new(LEFTOVER);
    run(&ws, &[]).code(0);
    let blob = Store::new(cache_dir(&ws), true).blob_path(&hash_bytes(b"generated"));
    let saved = fs::read(&blob).unwrap();
    // The blob becomes a FIFO: the restore blocks reading it, with its temp file open.
    fs::remove_file(&blob).unwrap();
    let fifo = std::ffi::CString::new(blob.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    fs::remove_file(ws.path("out/a.txt")).unwrap();
    let names = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut child = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Opening the write end waits for the restore to open the read end.
    let mut writer = fs::OpenOptions::new().write(true).open(&blob).unwrap();
    std::io::Write::write_all(&mut writer, b"gen").unwrap();
    let cas = cache_dir(&ws).join("cas");
    let temp_exists = || {
        let in_out = names(&ws.path("out")).iter().any(|n| n.starts_with('.'));
        let in_cas = walkdir::WalkDir::new(&cas)
            .into_iter()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
        in_out || in_cas
    };
    wait_until("the restore's temp file", temp_exists);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    fs::remove_file(&blob).unwrap();
    fs::write(&blob, saved).unwrap();

    let r = run(&ws, &[]);
    r.code(0);
    assert_eq!(status(&ws, "use"), "cached", "{}", r.stderr);
    assert_eq!(names(&ws.path("out")), ["a.txt"]);
}
