//! SPEC §13 and §5: a sealed record whose paths a restore cannot write as they stand. One
//! that goes through a symlink left in its output directory must not land elsewhere in the
//! workspace; one whose paths do not form a tree must not be half-restored.

use std::fs;
use std::os::unix::fs::symlink;

use taskrun::cache::digest::to_hex;
use taskrun::cache::record::OutputFile;
use taskrun::cache::store::Store;

use crate::security::{EVIL, record_of, status, write_sealed};
use crate::support::Workspace;

const OUT_DIR: &str = r#"
[tasks.build]
outputs = ["out"]
run = "mkdir -p out && echo ok > out/y.txt"
"#;

/// `rec` of the task also holding `path` with `content` (put in the store).
fn add_file(
    ws: &Workspace,
    rec: &mut taskrun::cache::record::ActionRecord,
    path: &str,
    content: &[u8],
    mode: u32,
) {
    let d = Store::new(ws.path(".taskrun/cache"), false)
        .put_bytes(content)
        .unwrap();
    rec.outputs.push(OutputFile {
        path: path.into(),
        sha256: to_hex(&d),
        size: content.len() as u64,
        mode,
    });
    rec.outputs.sort_by(|a, b| a.path.cmp(&b.path));
}

/// A record naming `out/g/hooks/pre-commit`, with `out/g -> ../.git` planted in the output
/// directory: the link is removed and the file lands in `out/`, never in `.git/hooks/`; a
/// link to another of the user's directories is treated the same.
#[test]
fn a_restore_does_not_write_through_a_link_that_leaves_its_output() {
    let ws = Workspace::new(OUT_DIR);
    ws.run(&[]).code(0);
    fs::create_dir_all(ws.path(".git/hooks")).unwrap();
    fs::create_dir_all(ws.path("keep")).unwrap();
    fs::write(ws.path("keep/k.txt"), "mine\n").unwrap();
    symlink("../.git", ws.path("out/g")).unwrap();
    symlink("../keep", ws.path("out/k")).unwrap();
    let (mut rec, path) = record_of(&ws, "build");
    add_file(&ws, &mut rec, "out/g/hooks/pre-commit", EVIL, 0o755);
    add_file(&ws, &mut rec, "out/k/k.txt", EVIL, 0o644);
    write_sealed(rec, &path);

    let r = ws.run(&[]);
    r.code(0);
    assert!(!ws.path(".git/hooks/pre-commit").exists(), "{}", r.stderr);
    assert_eq!(ws.read("keep/k.txt"), "mine\n", "{}", r.stderr);
    assert!(
        r.stderr.contains("removed the symlink out/g"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("outside the output `out`"),
        "{}",
        r.stderr
    );
    // The record's files are restored inside the output, as the record has them.
    assert!(!ws.path("out/g").is_symlink());
    assert_eq!(fs::read(ws.path("out/g/hooks/pre-commit")).unwrap(), EVIL);
    assert_eq!(status(&ws, "build"), "cached");
}

/// A link that stays inside the output is the task's own (`out/latest -> v2`): kept.
#[test]
fn a_link_inside_the_output_is_kept_by_a_restore() {
    let ws = Workspace::new(
        "[tasks.build]\noutputs = [\"out\"]\n\
         run = \"mkdir -p out/v2 && echo two > out/v2/a.txt && ln -sfn v2 out/latest\"\n",
    );
    ws.run(&[]).code(0);
    fs::remove_file(ws.path("out/v2/a.txt")).unwrap();
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(status(&ws, "build"), "cached", "{}", r.stderr);
    assert!(ws.path("out/latest").is_symlink(), "{}", r.stderr);
    assert_eq!(ws.read("out/latest/a.txt"), "two\n");
    assert!(!r.stderr.contains("removed the symlink"), "{}", r.stderr);
}

/// A sealed record holding `od/sub` both as a file and as the directory of `od/sub/q` is
/// corrupt: nothing of it is written, and the task runs as on a miss (it used to leave the
/// file `od/sub` in the way, failing this and every later run).
#[test]
fn a_record_with_a_file_where_a_directory_must_be_is_not_half_restored() {
    let ws = Workspace::new(
        "[tasks.d]\noutputs = [\"od\"]\nrun = \"mkdir od && mkdir od/sub && echo d > od/sub/y.txt\"\n",
    );
    ws.run(&[]).code(0);
    let (mut rec, path) = record_of(&ws, "d");
    rec.outputs.clear();
    add_file(&ws, &mut rec, "od/sub", b"x", 0o644);
    add_file(&ws, &mut rec, "od/sub/q", b"y", 0o644);
    write_sealed(rec, &path);
    fs::remove_dir_all(ws.path("od")).unwrap();

    let r = ws.run(&[]);
    r.code(0);
    assert!(
        r.stderr.contains("recorded as a file and as a directory"),
        "{}",
        r.stderr
    );
    assert_eq!(status(&ws, "d"), "succeeded");
    assert_eq!(ws.read("od/sub/y.txt"), "d\n");
    // The task's own result replaced the entry: the next run restores nothing wrong.
    fs::remove_dir_all(ws.path("od")).unwrap();
    ws.run(&[]).code(0);
    assert_eq!(status(&ws, "d"), "cached");
    assert_eq!(ws.read("od/sub/y.txt"), "d\n");
}

/// A backslash is an ordinary character of a file name: such an output is recorded, found a
/// hit and restored (its record was taken for corrupt, so the task ran on every run).
#[test]
fn outputs_whose_names_hold_a_backslash_are_cached_and_restored() {
    let ws = Workspace::new(
        "[tasks.a]\noutputs = ['unit\\x2dfoo.mount', 'd']\n\
         run = '''echo 1 > 'unit\\x2dfoo.mount'; mkdir -p d; echo 2 > 'd/a\\b' '''\n",
    );
    ws.run(&[]).code(0);
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(status(&ws, "a"), "cached", "{}", r.stderr);
    assert!(!r.stderr.contains("corrupt"), "{}", r.stderr);
    fs::remove_file(ws.path("unit\\x2dfoo.mount")).unwrap();
    fs::remove_dir_all(ws.path("d")).unwrap();
    ws.run(&[]).code(0);
    assert_eq!(status(&ws, "a"), "cached");
    assert_eq!(ws.read("unit\\x2dfoo.mount"), "1\n");
    assert_eq!(ws.read("d/a\\b"), "2\n");
}

/// What stands at an output's place with the other type (a file where the record has a
/// directory, a directory where it has a file) is the task's own output: a hit replaces it,
/// as `plan` predicts, instead of running the task (whose command then failed).
#[test]
fn a_hit_restores_over_an_output_of_the_other_type() {
    let ws = Workspace::new(
        "[tasks.gen]\noutputs = [\"out\"]\nrun = \"mkdir -p out/sub && echo data > out/sub/f.txt\"\n\n\
         [tasks.rep]\noutputs = [\"report.txt\"]\nrun = \"echo r > report.txt\"\n",
    );
    ws.run(&[]).code(0);
    fs::remove_dir_all(ws.path("out")).unwrap();
    fs::write(ws.path("out"), "a file").unwrap();
    fs::remove_file(ws.path("report.txt")).unwrap();
    fs::create_dir_all(ws.path("report.txt/inner")).unwrap();
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(status(&ws, "gen"), "cached", "{}", r.stderr);
    assert_eq!(status(&ws, "rep"), "cached", "{}", r.stderr);
    assert_eq!(ws.read("out/sub/f.txt"), "data\n");
    assert_eq!(ws.read("report.txt"), "r\n");
    // Deeper down: a file where the record has a directory inside the output.
    fs::remove_dir_all(ws.path("out/sub")).unwrap();
    fs::write(ws.path("out/sub"), "in the way").unwrap();
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(status(&ws, "gen"), "cached", "{}", r.stderr);
    assert_eq!(ws.read("out/sub/f.txt"), "data\n");
}

/// SPEC §2: an output directory is cached and restored as the task left it, the empty
/// directories in it included (a dependent may expect `site/uploads/`).
#[test]
fn empty_directories_in_an_output_directory_are_restored() {
    let ws = Workspace::new(
        "[tasks.scaffold]\noutputs = [\"site\"]\n\
         run = \"mkdir -p site/uploads site/css/empty site/js && echo '<h1>' > site/index.html && echo x > site/js/a.js\"\n",
    );
    ws.run(&[]).code(0);
    fs::remove_dir_all(ws.path("site")).unwrap();
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(status(&ws, "scaffold"), "cached", "{}", r.stderr);
    for d in ["site/uploads", "site/css/empty", "site/js"] {
        assert!(ws.path(d).is_dir(), "{d} missing: {}", r.stderr);
    }
    assert_eq!(ws.read("site/js/a.js"), "x\n");
    // A rerun with everything in place keeps them (the sweep of unrecorded entries too).
    ws.run(&[]).code(0);
    assert!(ws.path("site/css/empty").is_dir());
    // A link where the record has an empty directory, leading out of the output, goes.
    fs::create_dir(ws.path("real2")).unwrap();
    fs::write(ws.path("real2/f"), "mine\n").unwrap();
    fs::remove_dir(ws.path("site/uploads")).unwrap();
    symlink("../real2", ws.path("site/uploads")).unwrap();
    let r = ws.run(&[]);
    r.code(0);
    assert!(!ws.path("site/uploads").is_symlink(), "{}", r.stderr);
    assert!(ws.path("site/uploads").is_dir());
    assert_eq!(ws.read("real2/f"), "mine\n");
    // One that stays inside the output goes too: the sweep removes its target, which left
    // the link dangling where the record has a directory.
    fs::remove_dir(ws.path("site/uploads")).unwrap();
    fs::create_dir(ws.path("site/inner")).unwrap();
    symlink("inner", ws.path("site/uploads")).unwrap();
    let r = ws.run(&[]);
    r.code(0);
    assert!(!ws.path("site/uploads").is_symlink(), "{}", r.stderr);
    assert!(ws.path("site/uploads").is_dir());
}

/// An output directory that is a link inside the workspace is written through by a restore
/// but never swept of what its record does not hold: the files there are someone else's.
/// One that leads onto the workspace root (`out -> .`) is removed first, like any link that
/// would land on the manifest or `.taskrun/`. Both used to delete the user's files.
#[test]
fn a_restore_through_a_linked_output_directory_deletes_nothing_of_the_users() {
    let ws = Workspace::new(
        "[tasks.a]\noutputs = [\"out\"]\nrun = \"mkdir -p out/sub && echo f > out/sub/f\"\n",
    );
    ws.run(&[]).code(0);
    fs::create_dir(ws.path("src")).unwrap();
    fs::write(ws.path("src/p.txt"), "precious\n").unwrap();
    fs::write(ws.path("top.txt"), "top\n").unwrap();
    for target in [".", "src"] {
        fs::remove_dir_all(ws.path("out"))
            .or_else(|_| fs::remove_file(ws.path("out")))
            .unwrap();
        symlink(target, ws.path("out")).unwrap();
        let r = ws.run(&[]);
        r.code(0);
        assert_eq!(status(&ws, "a"), "cached", "{}", r.stderr);
        assert!(ws.path("taskrun.toml").is_file(), "{target}: {}", r.stderr);
        assert_eq!(ws.read("src/p.txt"), "precious\n", "{target}: {}", r.stderr);
        assert_eq!(ws.read("top.txt"), "top\n", "{target}: {}", r.stderr);
        assert_eq!(ws.read("out/sub/f"), "f\n");
    }
    assert!(ws.path("out").is_symlink(), "the link to src stays");
}
