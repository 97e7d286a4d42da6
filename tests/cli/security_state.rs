//! taskrun's own state in the workspace and the cache dir is no way in (SPEC §13): a
//! remembered manifest somebody else sealed, a `.taskrun` or a store directory that is a
//! link leading elsewhere.

use std::fs;

use crate::support::Workspace;

/// The memo's magic line (`taskrun manifest memo v2\n`): what precedes the sealed body.
const MEMO_MAGIC_LEN: usize = 25;

/// A memo rewritten with another command and sealed again with a plain sha256 (all that
/// anyone who can write `.taskrun/` could do) ran the forged command while `plan` showed
/// the manifest's. Now it is refused: the manifest is read and its command runs.
#[test]
fn a_remembered_manifest_sealed_by_someone_else_is_not_used() {
    use sha2::Digest as _;
    let said = "echo as-the-manifest-says-AAAAAAAAAAAAAAAAAAAAAAAA > said.txt";
    let forged = "echo forged > forged.txt;:                                   ";
    assert_eq!(said.len(), forged.len());
    let ws = Workspace::new(&format!("[tasks.a]\nrun = \"{said}\"\n"));
    ws.run(&["-q"]).code(0);
    ws.run(&["-q"]).code(0);
    let dir = ws.path(".taskrun/manifest");
    let memo = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let bytes = fs::read(&memo).unwrap();
    let body = &bytes[MEMO_MAGIC_LEN..bytes.len() - 32];
    let body = swap_bytes(body, said.as_bytes(), forged.as_bytes());
    let mut out = bytes[..MEMO_MAGIC_LEN].to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&sha2::Sha256::digest(&body));
    fs::write(&memo, out).unwrap();
    fs::remove_file(ws.path("said.txt")).unwrap();
    // `--force`: whichever command the run believes in runs.
    ws.run(&["-q", "--force"]).code(0);
    assert!(!ws.exists("forged.txt"), "the forged command ran");
    assert!(ws.exists("said.txt"), "the manifest's command did not run");
}

/// `body` with the bytes `from` replaced by `to` (the same length: the encoding's lengths
/// stay right).
fn swap_bytes(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = body
        .windows(from.len())
        .position(|w| w == from)
        .expect("the command is in the memo");
    let mut out = body.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

/// A `.taskrun` (or a directory in it) that is a link leading outside the workspace: taskrun
/// wrote its reports, logs and memo there, and pruned old reports there. Every command that
/// writes state refuses it before anything runs (exit 2); `plan` only reads.
#[test]
fn a_state_dir_linked_outside_the_workspace_is_refused() {
    let elsewhere = tempfile::tempdir().unwrap();
    let old = elsewhere.path().join("runs/20200101T000010Z-abcd.json");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::write(&old, "not taskrun's").unwrap();
    let ws = Workspace::new("[tasks.b]\nrun = \"echo hi > f.txt\"\noutputs = [\"f.txt\"]\n");
    std::os::unix::fs::symlink(elsewhere.path(), ws.path(".taskrun")).unwrap();
    for args in [
        &["taskrun.toml"][..],
        &["lock", "taskrun.toml"],
        &["timings", "taskrun.toml"],
        &["cache", "clean", "taskrun.toml"],
        &["cache", "gc", "taskrun.toml", "--max-age", "1s"],
    ] {
        ws.exec(args).code(2).says(&[
            ".taskrun is a symlink to",
            "outside the workspace: taskrun keeps its state only inside it",
        ]);
    }
    assert!(!ws.exists("f.txt"), "nothing may run");
    assert_eq!(fs::read_to_string(&old).unwrap(), "not taskrun's");
    let entries = fs::read_dir(elsewhere.path()).unwrap().count();
    assert_eq!(entries, 1, "only the old runs dir is there");
    ws.exec(&["plan", "taskrun.toml"]).code(0);
    // A link inside `.taskrun` too.
    fs::remove_file(ws.path(".taskrun")).unwrap();
    fs::create_dir(ws.path(".taskrun")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("runs"), ws.path(".taskrun/runs")).unwrap();
    ws.exec(&["taskrun.toml"])
        .code(2)
        .says(&[".taskrun/runs is a symlink to"]);
}

/// The store's own directories linked elsewhere (`cas -> /somewhere`): `run` wrote blobs
/// there and `cache clean` deleted blob-named files there. Now `run` goes on without the
/// cache, saying why, and `clean` refuses (exit 2); the files there are untouched.
#[test]
fn a_store_directory_linked_elsewhere_is_never_written_or_cleaned() {
    let elsewhere = tempfile::tempdir().unwrap();
    let blob = elsewhere
        .path()
        .join("ab/ab00000000000000000000000000000000000000000000000000000000000007");
    fs::create_dir_all(blob.parent().unwrap()).unwrap();
    fs::write(&blob, "not taskrun's").unwrap();
    let ws = Workspace::new("[tasks.b]\nrun = \"echo hi > f.txt\"\noutputs = [\"f.txt\"]\n");
    ws.run(&["-q"]).code(0);
    fs::remove_dir_all(ws.path(".taskrun/cache/cas")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), ws.path(".taskrun/cache/cas")).unwrap();
    let says = "its `cas` is a symlink";
    ws.run(&["-q", "--force"])
        .code(0)
        .says(&[says, "running without the cache"]);
    for args in [
        &["cache", "clean", "taskrun.toml"][..],
        &["cache", "gc", "taskrun.toml", "--max-age", "1s"],
    ] {
        ws.exec(args).code(2).says(&[says]);
    }
    assert_eq!(fs::read_to_string(&blob).unwrap(), "not taskrun's");
    let entries = fs::read_dir(elsewhere.path()).unwrap().count();
    assert_eq!(entries, 1, "nothing was stored there");
}

/// README: "Nothing is deleted through an output directory that is a link". A restore of
/// `out` (recorded with an empty `out/sub`) through `out -> important` swept
/// `important/sub/q.txt`, while it kept `important/p.txt`. Now nothing there is swept; a
/// real `out` is swept as before, and without a warning about a file removed twice.
#[test]
fn a_restore_sweeps_nothing_through_an_output_dir_reached_by_a_link() {
    let ws = Workspace::new(
        "[tasks.a]\nrun = \"mkdir -p out/sub && echo data > out/x.txt\"\noutputs = [\"out\"]\n",
    );
    ws.run(&["-q"]).code(0);
    fs::remove_dir_all(ws.path("out")).unwrap();
    ws.write("important/p.txt", "precious\n")
        .write("important/sub/q.txt", "precious too\n");
    std::os::unix::fs::symlink("important", ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("important/sub/q.txt"), "precious too\n");
    assert_eq!(ws.read("important/p.txt"), "precious\n");
    fs::remove_file(ws.path("out")).unwrap();
    ws.write("out/sub/q.txt", "stale\n");
    let r = ws.run(&["-q"]);
    r.code(0);
    assert!(!ws.exists("out/sub/q.txt"), "a real output dir is swept");
    assert!(!r.all().contains("cannot remove"), "{}", r.all());
    assert_eq!(ws.read("out/x.txt"), "data\n");
}
