//! Items that a task produces (SPEC §9 "What is read when") are a validation error naming
//! that task, exit 2 before anything runs, unless the fan-out task depends on it: then it is
//! expanded once that task has run (the run itself is in `expand_after.rs`). No task may
//! write what taskrun itself reads (SPEC §13 "Paths in the manifest").

use crate::served::Http;
use crate::support::Workspace;

/// `check`, `plan` and `run` all refuse with exit 2, mentioning every one of `parts`; no run
/// happened.
fn refused(ws: &Workspace, parts: &[&str]) {
    ws.check().code(2).says(parts);
    ws.plan_text(&[]).code(2);
    ws.run(&[]).code(2).says(parts);
    assert!(!ws.exists(".taskrun/runs"), "nothing ran");
}

/// Once `task` has `deps = [dep]` in `manifest`, `check` passes and `plan` shows `label`
/// (the stand-in waiting for its producer); nothing ran, and the items were not read.
fn deferred_with_deps(ws: &Workspace, manifest: &str, task: &str, dep: &str, label: &str) {
    let header = format!("[tasks.{task}]\n");
    assert!(manifest.contains(&header), "{manifest}");
    ws.manifest(&manifest.replace(&header, &format!("{header}deps = [\"{dep}\"]\n")));
    ws.check().code(0);
    ws.plan_text(&[]).code(0).says(&[label]);
    assert!(!ws.exists(".taskrun/runs"), "nothing ran");
}

#[test]
fn an_item_file_that_a_task_writes_is_an_error_unless_the_fanout_depends_on_it() {
    let manifest = r#"
[tasks.gen]
run = "echo http://h/a.csv > urls.txt"
outputs = ["urls.txt"]

[tasks.get]
for_each = { lines = "urls.txt" }
run = ["echo", "${item.line}"]
"#;
    let ws = Workspace::new(manifest);
    ws.write("urls.txt", "http://h/a.csv\n");
    refused(
        &ws,
        &[
            "urls.txt",
            "`gen`",
            "taskrun.toml:7:",
            "add `deps = [\"gen\"]` to task `get`",
        ],
    );
    deferred_with_deps(&ws, manifest, "get", "gen", "get[*] (expanded after gen)");
}

/// Waiting for the producer through another task counts too.
#[test]
fn a_fanout_that_waits_for_the_producer_through_another_task_is_expanded_after_it() {
    let ws = Workspace::new(
        r#"
[tasks.gen]
run = "echo a > urls.txt"
outputs = ["urls.txt"]

[tasks.prep]
deps = ["gen"]

[tasks.get]
deps = ["prep"]
for_each = { lines = "urls.txt" }
run = "true"
"#,
    );
    ws.check().code(0);
    ws.plan_text(&[])
        .code(0)
        .says(&["get[*] (expanded after gen)"]);
}

/// Before its producer has run, an item file is missing and a glob matches nothing: no
/// problem for a task that waits for it; for one that does not, the one problem to show is
/// who produces them, not that they are missing or empty.
#[test]
fn a_produced_source_not_there_yet_is_not_missing() {
    let ws = Workspace::new(
        r#"
[tasks.gen]
run = "echo a > urls.txt"
outputs = ["urls.txt", "raw/*.csv"]

[tasks.get]
deps = ["gen"]
for_each = { lines = "urls.txt" }
run = "true"

[tasks.clean]
deps = ["gen"]
for_each = { glob = "raw/*.csv" }
run = "true"
"#,
    );
    let r = ws.check();
    r.code(0);
    assert!(!r.stderr.contains("no items"), "{}", r.stderr);
    assert!(!r.stderr.contains("cannot read"), "{}", r.stderr);
    ws.manifest(&ws.read("taskrun.toml").replace("deps = [\"gen\"]\n", ""));
    let r = ws.check();
    r.code(2).says(&[
        "the items of `urls.txt` would come from `urls.txt`, an output of task `gen`",
        "the items of `raw/*.csv` would come from `raw/*.csv`, an output of task `gen`",
        "has 2 problems",
    ]);
    assert!(!r.stderr.contains("no items"), "{}", r.stderr);
    assert!(!r.stderr.contains("cannot read"), "{}", r.stderr);
    // Not produced by anyone: missing and empty stay what they are.
    ws.write(
        "taskrun.toml",
        "[tasks.get]\nfor_each = { lines = \"urls.txt\" }\nrun = \"true\"\n\n[tasks.clean]\nfor_each = { glob = \"raw/*.csv\" }\nrun = \"true\"\n",
    );
    ws.check()
        .code(2)
        .says(&["urls.txt", "cannot read the items", "no items"]);
}

#[test]
fn an_item_file_inside_an_output_directory_is_produced_by_that_task() {
    let manifest = r#"
[tasks.unpack]
run = "mkdir -p lists && echo a > lists/items.csv"
outputs = ["lists"]

[tasks.use]
for_each = { csv = "lists/items.csv" }
run = "true"
"#;
    let ws = Workspace::new(manifest);
    ws.write("lists/items.csv", "id\na\n");
    refused(&ws, &["lists/items.csv", "`unpack`"]);
    deferred_with_deps(
        &ws,
        manifest,
        "use",
        "unpack",
        "use[*] (expanded after unpack)",
    );
}

#[test]
fn an_item_file_that_is_a_download_dest_is_produced_by_that_download() {
    let http = Http::start();
    let manifest = format!(
        r#"
[tasks.list]
download = {{ url = "{}", dest = "urls.txt" }}

[tasks.get]
for_each = {{ lines = "urls.txt" }}
run = ["echo", "${{item.line}}"]
"#,
        http.url("/urls.txt")
    );
    let ws = Workspace::new(&manifest);
    ws.write("urls.txt", "http://h/a.csv\n");
    refused(&ws, &["urls.txt", "`list`"]);
    deferred_with_deps(
        &ws,
        &manifest,
        "get",
        "list",
        "get[*] (expanded after list)",
    );
    assert_eq!(http.hits("/urls.txt"), 0);
}

#[test]
fn a_glob_that_matches_another_fanouts_outputs_is_produced_by_that_fanout() {
    let manifest = r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo x > raw/${item.name}"
outputs = ["raw/${item.name}"]

[tasks.clean]
for_each = { glob = "raw/*.csv" }
run = "true"
"#;
    let ws = Workspace::new(manifest);
    ws.write("urls.txt", "http://h/a.csv\n")
        .write("raw/old.csv", "left over\n");
    refused(&ws, &["raw/*.csv", "raw/a.csv", "`get`"]);
    deferred_with_deps(
        &ws,
        manifest,
        "clean",
        "get",
        "clean[*] (expanded after get)",
    );
    // Each instance of `get` is waited for.
    let plan = ws.plan_json(&[]);
    assert_eq!(
        crate::support::entry(&plan, "clean[*]")["deps"],
        serde_json::json!(["get[a.csv]"])
    );
}

#[test]
fn a_glob_that_matches_the_fanouts_own_outputs_is_an_error() {
    let ws = Workspace::new(
        r#"
[tasks.copy]
for_each = { glob = "data/*.txt" }
run = "cp ${item.path} data/${item.stem}-copy.txt"
outputs = ["data/${item.stem}-copy.txt"]
"#,
    );
    ws.write("data/a.txt", "a\n");
    refused(&ws, &["data/*.txt", "data/a-copy.txt", "`copy`", "itself"]);
}

#[test]
fn a_glob_below_an_output_directory_is_produced_by_that_task() {
    let manifest = r#"
[tasks.unpack]
run = "true"
outputs = ["photos"]

[tasks.thumb]
for_each = { glob = "photos/**/*.jpg" }
run = "true"
"#;
    let ws = Workspace::new(manifest);
    ws.write("photos/a.jpg", "a");
    refused(&ws, &["photos/**/*.jpg", "`unpack`"]);
    deferred_with_deps(
        &ws,
        manifest,
        "thumb",
        "unpack",
        "thumb[*] (expanded after unpack)",
    );
}

#[test]
fn a_glob_that_no_output_can_match_is_fine() {
    let ws = Workspace::new(
        r#"
[tasks.copy]
for_each = { glob = "data/*.txt" }
run = "cp ${item.path} copies/${item.name}"
outputs = ["copies/${item.name}"]

[tasks.other]
run = "true"
outputs = ["data/notes.md", "datax/a.txt"]
"#,
    );
    ws.write("data/a.txt", "a\n");
    std::fs::create_dir_all(ws.path("copies")).unwrap();
    ws.check().code(0);
}

#[test]
fn a_dest_that_is_the_manifest_itself_is_refused() {
    let http = Http::start();
    let ws = Workspace::new(&format!(
        "[tasks.evil]\ndownload = {{ url = \"{}\", dest = \"taskrun.toml\" }}\n",
        http.url("/m.toml")
    ));
    refused(
        &ws,
        &["taskrun.toml", "manifest", "`evil`", "taskrun.toml:2:"],
    );
    assert_eq!(http.hits("/m.toml"), 0);
}

#[test]
fn outputs_under_taskrun_state_the_lockfile_or_the_cache_dir_are_refused() {
    for (out, what) in [
        (".taskrun/runs/fake.json", ".taskrun"),
        (".taskrun", ".taskrun"),
        ("taskrun.lock", "lockfile"),
        ("cache/ac/x.json", "cache dir"),
        ("./taskrun.toml", "manifest"),
    ] {
        let ws = Workspace::new(&format!(
            "[cache]\ndir = \"cache\"\n\n[tasks.evil]\nrun = \"true\"\noutputs = [\"{out}\"]\n"
        ));
        refused(&ws, &[what, "`evil`"]);
    }
}

#[test]
fn a_fanout_output_that_expands_to_a_reserved_path_is_refused() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo > ${item.name}"
outputs = ["${item.name}"]
"#,
    );
    ws.write("urls.txt", "http://h/a.csv\nhttp://h/taskrun.lock\n");
    refused(&ws, &["taskrun.lock", "lockfile", "`get`"]);
}

#[test]
fn a_download_fanout_whose_dest_is_taskrun_state_is_refused() {
    let http = Http::start();
    let ws = Workspace::new(&format!(
        r#"
[tasks.get]
matrix = {{ f = ["a", "b"] }}
download = {{ url = "{}/${{matrix.f}}", dest = ".taskrun/${{matrix.f}}" }}
"#,
        http.url("")
    ));
    refused(&ws, &[".taskrun", "`get`"]);
    assert_eq!(http.hits("/a") + http.hits("/b"), 0);
}

#[test]
fn item_values_cannot_lead_a_path_outside_the_workspace() {
    let http = Http::start();
    let ws = Workspace::new(&format!(
        r#"
[tasks.out]
for_each = {{ csv = "p.csv" }}
run = "true"
outputs = ["${{item.p}}"]

[tasks.cwd]
for_each = {{ csv = "p.csv" }}
run = "true"
cwd = "${{item.p}}"

[tasks.inputs]
for_each = {{ csv = "p.csv" }}
run = "true"
inputs = ["${{item.p}}"]

[tasks.dest]
for_each = {{ csv = "p.csv" }}
download = {{ url = "{}", dest = "${{item.p}}" }}

[tasks.dots]
for_each = {{ lines = "urls.txt" }}
run = "true"
outputs = ["raw/${{item.name}}"]
"#,
        http.url("/x")
    ));
    ws.write(
        "p.csv",
        "id,p\nup,../../evil\nsub,a/../../evil2\nabs,/tmp/evil3\n",
    )
    .write("urls.txt", "http://h/a/..\n");
    let r = ws.check();
    r.code(2).says(&[
        "`../../evil`",
        "`a/../../evil2`",
        "`/tmp/evil3`",
        "p.csv:2",
        "p.csv:3",
        "p.csv:4",
        "`raw/..`",
        "urls.txt:1",
    ]);
    // One problem per field (outputs, cwd, inputs, dest), each naming the row.
    assert_eq!(
        r.all().matches("(instance up, from p.csv:2)").count(),
        4,
        "{}",
        r.all()
    );
    ws.run(&[]).code(2);
    assert_eq!(http.hits("/x"), 0);
}

/// A pull request that makes the item file a FIFO (opening it waits for a writer forever),
/// or the list and the lockfile symlinks to `/dev/zero` (reading takes all memory): `check`
/// refuses each at once, at its place, instead of hanging in CI.
#[test]
fn an_item_file_or_lockfile_that_is_a_pipe_or_a_device_is_refused_at_once() {
    let ws = Workspace::new("[tasks.get]\nfor_each = { lines = \"urls.txt\" }\nrun = \"true\"\n");
    let fifo = ws.path("urls.txt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    ws.check()
        .code(2)
        .says(&["urls.txt", "not a regular file", "taskrun.toml:2:"]);
    std::fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &fifo).unwrap();
    ws.check().code(2).says(&["urls.txt", "not a regular file"]);
    std::fs::remove_file(&fifo).unwrap();
    ws.write("urls.txt", "http://h/a.csv\n");
    std::os::unix::fs::symlink("/dev/zero", ws.path("taskrun.lock")).unwrap();
    ws.check().code(2).says(&[
        "taskrun.lock",
        "cannot read the lockfile",
        "not a regular file",
    ]);
}

/// The items of a task expanded later do not exist when `check` runs, but a glob's and a
/// lines file's fields are fixed: an unknown field or a placeholder in quotes is found then,
/// not after the producer ran.
#[test]
fn the_templates_of_a_task_expanded_later_are_checked_before_anything_runs() {
    let ws = Workspace::new(
        r#"
[tasks.gen]
outputs = ["g"]
run = "mkdir -p g && echo 1 > g/a.txt"

[tasks.p]
deps = ["gen"]
for_each = { glob = "g/*.txt" }
run = "echo '${item.path}' ${item.bogus}"
"#,
    );
    ws.check().code(2).says(&[
        "`${item.path}` is inside single quotes",
        "unknown item field `bogus`",
        "taskrun.toml:9:",
    ]);
    let r = ws.run(&[]);
    r.code(2);
    assert!(!ws.exists("g"), "nothing ran");
    ws.manifest(
        "[tasks.gen]\noutputs = [\"g\"]\nrun = \"mkdir -p g && echo 1 > g/a.txt\"\n\n\
         [tasks.p]\ndeps = [\"gen\"]\nfor_each = { glob = \"g/*.txt\" }\n\
         run = \"echo ${item.path} ${item.dir}\"\n",
    );
    ws.check().code(0);
}

/// A fan-out task without instances yet (its items missing, produced, or read later) still
/// has its keys checked: every problem is said in one `check`.
#[test]
fn a_fanout_without_instances_still_has_its_keys_checked() {
    let ws = Workspace::new(
        "[tasks.g]\noutputs = [\"g\"]\nrun = \"mkdir -p g\"\n\n\
         [tasks.a]\nfor_each = { glob = \"g/*\" }\nrun = \"true\"\ndeps_note = 1\n\n\
         [tasks.b]\nfor_each = { lines = \"nope.txt\" }\nrun = \"true\"\ncahce = \"off\"\n\n\
         [tasks.c]\ndeps = [\"g\"]\nfor_each = { glob = \"g/*\" }\nrun = \"true\"\ndeps_nte = 1\n",
    );
    ws.check().code(2).says(&[
        "unknown key `deps_note` in task `a`",
        "an output of task `g`",
        "unknown key `cahce` in task `b`",
        "cannot read item file `nope.txt`",
        "unknown key `deps_nte` in task `c`",
        "has 5 problems",
    ]);
}

/// Outputs of a task expanded later that hold no item value are known before the items:
/// `check` holds them to the rules of any output (no reserved path, no clash).
#[test]
fn the_literal_outputs_of_a_task_expanded_later_are_checked_before_anything_runs() {
    let ws = Workspace::new(
        "[tasks.unpack]\noutputs = [\"un\"]\nrun = \"mkdir -p un && echo a > un/a.csv\"\n\n\
         [tasks.f1]\ndeps = [\"unpack\"]\nfor_each = { glob = \"un/*.csv\" }\noutputs = [\"taskrun.toml\"]\nrun = \"true\"\n\n\
         [tasks.f2]\ndeps = [\"unpack\"]\nfor_each = { glob = \"un/*.csv\" }\noutputs = [\"res\", \"o/${item.stem}\"]\nrun = \"true\"\n\n\
         [tasks.other]\noutputs = [\"res/p\"]\nrun = \"true\"\n",
    );
    ws.check().code(2).says(&[
        "would overwrite `taskrun.toml`, the manifest itself",
        "output `res/p` lies inside `res`",
        "has 2 problems",
    ]);
    assert!(!ws.exists("un"), "nothing ran");
}

/// Two fan-outs expanded after one producer, each with invalid items: each fails with its
/// own error, not the first one's.
#[test]
fn each_invalid_expansion_fails_with_its_own_error() {
    let ws = Workspace::new(
        "[tasks.list]\noutputs = [\"gen\"]\n\
         run = \"mkdir -p gen && printf 'x\\\\nx\\\\n' > gen/a.txt && printf 'y\\\\ny\\\\n' > gen/b.txt\"\n\n\
         [tasks.e1]\ndeps = [\"list\"]\nfor_each = { lines = \"gen/a.txt\" }\nrun = \"echo ${item.line}\"\n\n\
         [tasks.e2]\ndeps = [\"list\"]\nfor_each = { lines = \"gen/b.txt\" }\nrun = \"echo ${item.line}\"\n",
    );
    let r = ws.run(&["-k"]);
    r.code(1);
    let report = ws.last_report();
    let error = |n: &str| {
        crate::support::entry(&report, n)["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        error("e1[*]").contains("task `e1` have the key `x`"),
        "{}",
        error("e1[*]")
    );
    assert!(
        error("e2[*]").contains("task `e2` have the key `y`"),
        "{}",
        error("e2[*]")
    );
}

/// A fan-out paired with another one that waits for the same list (`get[${item.line}]`)
/// reaches the list's producer through it, as the README says ("directly, or through
/// another task"): accepted, expanded after the producer, each instance after its own
/// `get` instance (it asked for `deps = ["list"]` too). Pairing with a fan-out that does
/// not wait for the producer is still refused.
#[test]
fn a_fanout_paired_with_one_after_the_producer_waits_for_it_through_the_pairing() {
    let manifest = r#"
[tasks.list]
outputs = ["list.txt"]
run = "printf 'a\nb\n' > list.txt"

[tasks.get]
deps = ["list"]
for_each = { lines = "list.txt" }
outputs = ["raw/${item.line}"]
run = "mkdir -p raw && echo ${item.line} > raw/${item.line}"

[tasks.proc]
for_each = { lines = "list.txt" }
deps = ["get[${item.line}]"]
outputs = ["p/${item.line}"]
run = "mkdir -p p && cp raw/${item.line} p/${item.line}"
"#;
    let ws = Workspace::new(manifest);
    ws.check().code(0);
    ws.plan_text(&[])
        .code(0)
        .says(&["proc[*] (expanded after list)"]);
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(crate::support::with_status(&report, "succeeded").len(), 5);
    assert_eq!(
        crate::support::entry(&report, "proc[b]")["deps"],
        serde_json::json!(["get[b]"])
    );
    assert_eq!(ws.read("p/b"), "b\n");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(crate::support::with_status(&report, "cached").len(), 5);

    let ws = Workspace::new(&manifest.replace(
        "[tasks.get]\ndeps = [\"list\"]\nfor_each = { lines = \"list.txt\" }",
        "[tasks.get]\nfor_each = { lines = \"static.txt\" }",
    ));
    ws.write("static.txt", "a\nb\n");
    refused(
        &ws,
        &[
            "list.txt",
            "`list`",
            "add `deps = [\"list\"]` to task `proc`",
        ],
    );
}
