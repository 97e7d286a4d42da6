//! What a kill -9 can leave in the workspace never reaches a later run (issue 14 bug 5):
//! resume files of a download later served from the store, a restore's temp file inside an
//! output directory; nor does what another version of a task left in its output directory.

use crate::fault_server::Route;
use crate::http::{Http, body, sha};
use crate::support::{Workspace, task};

/// The name a killed cross-file-system restore (or metadata write) leaves beside its file.
const TEMP: &str = ".taskrun-tmp-00c0ffee00c0ffee";

#[test]
fn resume_files_go_when_a_pinned_download_is_served_from_the_store() {
    let http = Http::start();
    let data = body(100_000);
    http.route("/p.bin", Route::ok(data.clone()));
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data/p.bin\", sha256 = \"{}\" }}\n",
        http.url("/p.bin"),
        sha(&data)
    ));
    ws.run(&[]).code(0);
    // A later transfer was killed: the file is gone, its resume files stayed.
    std::fs::remove_file(ws.path("data/p.bin")).unwrap();
    ws.write("data/p.bin.part", "half of it");
    ws.write("data/p.bin.part.json", "{}");
    ws.run(&[]).code(0);
    assert_eq!(task(&ws.last_report(), "get")["status"], "cached");
    assert_eq!(std::fs::read(ws.path("data/p.bin")).unwrap(), data);
    assert_eq!(http.hits("/p.bin"), 1);
    for stale in ["data/p.bin.part", "data/p.bin.part.json"] {
        assert!(
            !ws.path(stale).exists(),
            "{stale} left beside a cached download"
        );
    }
}

#[test]
fn a_killed_restores_temp_file_is_swept_and_never_an_input_or_an_item() {
    let ws = Workspace::new(
        r#"
[tasks.make]
outputs = ["out/dir"]
run = "mkdir -p out/dir/sub; echo a > out/dir/a.txt; echo b > out/dir/sub/b.txt"

[tasks.list]
deps = ["make"]
inputs = ["out/dir/**"]
outputs = ["listing.txt"]
run = "cd out/dir && find . -type f | sort > ../../listing.txt"
"#,
    );
    ws.run(&[]).code(0);
    let clean = ws.read("listing.txt");
    // kill -9 in the middle of restoring a.txt and sub/b.txt: both missing, temps beside.
    std::fs::remove_file(ws.path("out/dir/a.txt")).unwrap();
    std::fs::remove_file(ws.path("out/dir/sub/b.txt")).unwrap();
    ws.write(&format!("out/dir/{TEMP}"), "half of a");
    ws.write(&format!("out/dir/sub/{TEMP}"), "half of b");
    let run = ws.run(&[]);
    run.code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "make")["status"], "cached");
    assert_eq!(
        task(&report, "list")["status"],
        "cached",
        "the temp file was hashed"
    );
    assert_eq!(ws.read("listing.txt"), clean);
    for left in [format!("out/dir/{TEMP}"), format!("out/dir/sub/{TEMP}")] {
        assert!(
            !ws.path(&left).exists(),
            "{left} left in an output directory"
        );
    }
    assert!(!run.stdout.contains(TEMP), "{}", run.stdout);
}

#[test]
fn a_temp_file_is_never_a_fan_out_item() {
    let ws = Workspace::new(
        r#"
[tasks.each]
for_each = { glob = "photos/**" }
run = ["echo", "${item.path}"]
"#,
    );
    ws.write("photos/a.jpg", "a");
    ws.write(&format!("photos/{TEMP}"), "half");
    let run = ws.run(&[]);
    run.code(0);
    assert!(run.stdout.contains("each[a.jpg]"), "{}", run.stdout);
    assert!(
        !run.stdout.contains(TEMP),
        "an item for the temp file\n{}",
        run.stdout
    );
}

/// A killed restore's temp file beside an output, or inside an output directory, is removed
/// before a command that writes there runs (the restore that would have swept it does not
/// happen when the task runs instead).
#[test]
fn a_command_about_to_run_removes_temp_files_beside_and_inside_its_outputs() {
    let ws = Workspace::new(
        "[tasks.make]\ninputs = [\"src.txt\"]\noutputs = [\"out/a.txt\", \"tree\"]\nrun = \"mkdir -p out tree/sub && cp src.txt out/a.txt && cp src.txt tree/sub/b.txt\"\n",
    );
    ws.write("src.txt", "one\n");
    ws.write("out/.taskrun-tmp-0123456789abcdef", "half a restore");
    ws.write("tree/sub/.taskrun-tmp-fedcba9876543210", "half a restore");
    ws.run(&[]).code(0);
    assert!(!ws.path("out/.taskrun-tmp-0123456789abcdef").exists());
    assert!(!ws.path("tree/sub/.taskrun-tmp-fedcba9876543210").exists());
    assert_eq!(ws.read("out/a.txt"), "one\n");
}

/// A restored output directory holds what its record holds: a file another version of the
/// task wrote there goes, so a fan-out over the directory sees what a real run would.
#[test]
fn a_restored_output_directory_holds_only_its_records_files() {
    let manifest = |items: &str| {
        format!(
            "[tasks.gen]\noutputs = [\"gen\"]\n\
             run = \"rm -rf gen && mkdir -p gen && for i in {items}; do echo $i > gen/$i.txt; done\"\n\
             [tasks.up]\ndeps = [\"gen\"]\nfor_each = {{ glob = \"gen/*.txt\" }}\nrun = \"cat ${{item.path}}\"\n"
        )
    };
    let ws = Workspace::new(&manifest("a b c"));
    ws.run(&["-q"]).code(0);
    ws.manifest(&manifest("a b"));
    ws.run(&["-q"]).code(0);
    ws.manifest(&manifest("a b c"));
    ws.run(&["-q"]).code(0);
    assert_eq!(task(&ws.last_report(), "gen")["status"], "cached");
    assert!(ws.exists("gen/c.txt"), "restored");
    // Also an empty directory and a name that is not UTF-8, which no record can hold.
    std::fs::create_dir_all(ws.path("gen/empty/deeper")).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let odd = ws
        .path("gen")
        .join(std::ffi::OsStr::from_bytes(b"\xff\xfe.txt"));
    std::fs::write(&odd, "odd").unwrap();
    // Back to the version without c: restored from its record, without c.
    ws.manifest(&manifest("a b"));
    ws.run(&["-q"]).code(0);
    let report = ws.last_report();
    assert_eq!(task(&report, "gen")["status"], "cached");
    assert!(!ws.exists("gen/c.txt"), "left by the other version");
    assert!(
        !ws.exists("gen/empty") && !odd.exists(),
        "not in the record"
    );
    assert!(ws.exists("gen/a.txt") && ws.exists("gen/b.txt"));
    assert_eq!(report["summary"]["total"], 3, "gen and two instances");
}

/// A link inside a restored output directory that recorded files lie under stays (the record
/// reaches them through it); a stray one goes, its target untouched.
#[test]
fn a_restored_output_directory_keeps_the_links_its_record_goes_through() {
    let ws = Workspace::new(
        "[tasks.gen]\noutputs = [\"out\"]\n\
         run = \"rm -rf out && mkdir -p out/real && echo f > out/real/f && ln -s real out/link\"\n",
    );
    ws.run(&["-q"]).code(0);
    ws.write("keep.txt", "keep\n");
    std::os::unix::fs::symlink("../keep.txt", ws.path("out/stray")).unwrap();
    ws.run(&["-q"]).code(0);
    assert_eq!(task(&ws.last_report(), "gen")["status"], "cached");
    assert!(
        std::fs::symlink_metadata(ws.path("out/link"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(ws.read("out/link/f"), "f\n");
    assert!(
        std::fs::symlink_metadata(ws.path("out/stray")).is_err(),
        "not in the record"
    );
    assert_eq!(ws.read("keep.txt"), "keep\n");
}

/// SPEC §8: a failed attempt leaves no partial file at a declared output, also inside an
/// output directory that was there before it: what it added or changed goes, the rest of the
/// last good result stays (and the next run restores the changed file from the cache).
#[test]
fn a_failed_attempt_leaves_nothing_it_wrote_in_an_existing_output_directory() {
    let good = "[tasks.d]\noutputs = [\"outdir\"]\n\
                run = \"mkdir -p outdir; echo a > outdir/a.txt; echo b > outdir/b.txt\"\n";
    let ws = Workspace::new(good);
    ws.run(&[]).code(0);
    ws.write(
        "taskrun.toml",
        "[tasks.d]\noutputs = [\"outdir\"]\nrun = \"mkdir -p outdir; echo a3 > outdir/a.txt; \
         mkdir -p outdir/new; echo half > outdir/new/c.txt; exit 1\"\n",
    );
    ws.run(&[]).code(1);
    assert!(!ws.path("outdir/a.txt").exists(), "the changed file stayed");
    assert!(!ws.path("outdir/new").exists(), "the new directory stayed");
    assert_eq!(ws.read("outdir/b.txt"), "b\n");
    ws.write("taskrun.toml", good);
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(
        task(&ws.last_report(), "d")["status"],
        "cached",
        "{}",
        r.stderr
    );
    assert_eq!(ws.read("outdir/a.txt"), "a\n");
}
