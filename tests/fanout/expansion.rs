//! Expansion (SPEC §9 "Sources", "Names"): matrix inline and as a sub-table, product order,
//! `exclude`/`include`, scalar kinds, `for_each` lines/csv/glob with their fields, the product
//! of both, `key` templates and `allow_empty`; seen through `plan --format json` and a run.

use crate::support::{Workspace, entry, item, names, pairs, statuses};

#[test]
fn inline_matrix_is_the_cartesian_product_last_axis_fastest() {
    let ws = Workspace::new(
        r#"
[tasks.fetch]
matrix = { year = ["2024", "2023"], month = ["02", "01", "03"] }
run = "echo ${matrix.year}-${matrix.month} > out/${matrix.year}-${matrix.month}.txt"
outputs = ["out/${matrix.year}-${matrix.month}.txt"]
"#,
    );
    let plan = ws.plan_json(&[]);
    // Declared order, not sorted: the first axis varies slowest.
    assert_eq!(
        names(&plan),
        [
            "fetch[2024,02]",
            "fetch[2024,01]",
            "fetch[2024,03]",
            "fetch[2023,02]",
            "fetch[2023,01]",
            "fetch[2023,03]",
        ]
    );
    let t = entry(&plan, "fetch[2023,01]");
    assert_eq!(t["task"], "fetch");
    assert_eq!(item(t), pairs(&[("year", "2023"), ("month", "01")]));
    assert_eq!(t["action"]["shell"], "echo 2023-01 > out/2023-01.txt");
    assert_eq!(t["outputs"][0], "out/2023-01.txt");

    std::fs::create_dir_all(ws.path("out")).unwrap();
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["total"], 6);
    assert_eq!(report["summary"]["succeeded"], 6);
    assert_eq!(ws.read("out/2024-03.txt"), "2024-03\n");
    let r = entry(&report, "fetch[2024,03]");
    assert_eq!(r["task"], "fetch");
    assert_eq!(item(r), pairs(&[("year", "2024"), ("month", "03")]));
}

#[test]
fn sub_table_matrix_excludes_partial_matches_then_includes_whole_rows() {
    let ws = Workspace::new(
        r#"
[tasks.archive]
run = ["true", "${matrix.year}", "${matrix.month}"]

[tasks.archive.matrix]
year = ["2023", "2024"]
month = ["01", "02", "03"]
# a partial row removes every combination it matches; a whole row one
exclude = [{ month = "02" }, { year = "2024", month = "03" }]
# applied after exclude: a row exclude would remove stays; keys given out of axis order
include = [{ month = "12", year = "2022" }, { year = "2024", month = "02" }]
"#,
    );
    let plan = ws.plan_json(&[]);
    assert_eq!(
        names(&plan),
        [
            "archive[2023,01]",
            "archive[2023,03]",
            "archive[2024,01]",
            "archive[2022,12]",
            "archive[2024,02]",
        ]
    );
    assert_eq!(
        item(entry(&plan, "archive[2022,12]")),
        pairs(&[("year", "2022"), ("month", "12")])
    );
    assert_eq!(
        entry(&plan, "archive[2022,12]")["action"]["argv"],
        serde_json::json!(["true", "2022", "12"])
    );
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["total"], 5);
}

#[test]
fn integers_and_booleans_are_values_in_decimal_and_true_false() {
    let ws = Workspace::new(
        r#"
[tasks.t]
matrix = { n = [7, -3, 1000000], on = [true, false] }
run = "echo ${matrix.n} ${matrix.on} > out/${matrix.n}-${matrix.on}"
outputs = ["out/${matrix.n}-${matrix.on}"]
"#,
    );
    let plan = ws.plan_json(&[]);
    assert_eq!(
        names(&plan),
        [
            "t[7,true]",
            "t[7,false]",
            "t[-3,true]",
            "t[-3,false]",
            "t[1000000,true]",
            "t[1000000,false]",
        ]
    );
    assert_eq!(
        item(entry(&plan, "t[-3,false]")),
        pairs(&[("n", "-3"), ("on", "false")])
    );
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("out/1000000-true"), "1000000 true\n");
}

#[test]
fn a_float_in_a_matrix_is_an_error_at_its_place() {
    let ws = Workspace::new(
        "[tasks.t]\nmatrix = { rate = [\"0.5\", 1.5] }\nrun = \"echo ${matrix.rate}\"\n",
    );
    ws.check().code(2).says(&["float", "taskrun.toml:2:"]);
    ws.plan_text(&[]).code(2);
    ws.run(&[]).code(2);
    assert!(!ws.exists(".taskrun/runs"), "nothing ran");
}

#[test]
fn lines_skip_blanks_and_comments_and_are_trimmed() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = ["echo", "${item.line}", "${item.name}", "${item.stem}", "${item.ext}"]
"#,
    );
    ws.write(
        "urls.txt",
        "# the list\n\n   \n  http://h/x/a.csv  \n\t# indented comment\nhttp://h/b.tar.gz?x=1#frag\r\nhttp://h/README\n",
    );
    let plan = ws.plan_json(&[]);
    assert_eq!(names(&plan), ["get[a.csv]", "get[b.tar.gz]", "get[README]"]);
    assert_eq!(
        item(entry(&plan, "get[a.csv]")),
        pairs(&[
            ("line", "http://h/x/a.csv"),
            ("name", "a.csv"),
            ("stem", "a"),
            ("ext", "csv")
        ])
    );
    assert_eq!(
        item(entry(&plan, "get[b.tar.gz]")),
        pairs(&[
            ("line", "http://h/b.tar.gz?x=1#frag"),
            ("name", "b.tar.gz"),
            ("stem", "b.tar"),
            ("ext", "gz")
        ])
    );
    assert_eq!(
        item(entry(&plan, "get[README]")),
        pairs(&[
            ("line", "http://h/README"),
            ("name", "README"),
            ("stem", "README"),
            ("ext", "")
        ])
    );
    let run = ws.run(&[]);
    run.code(0)
        .says(&["get[b.tar.gz] | http://h/b.tar.gz?x=1#frag b.tar.gz b.tar gz"]);
}

#[test]
fn csv_has_a_header_row_and_rfc_4180_quoting() {
    let ws = Workspace::new(
        r#"
[tasks.row]
for_each = { csv = "sources.csv" }
run = "printf '%s|' ${item.id} ${item.note} > out/${item.id}.txt"
outputs = ["out/${item.id}.txt"]
"#,
    );
    ws.write(
        "sources.csv",
        "id,note\nplain,hello\ncomma,\"a, b\"\nquote,\"say \"\"hi\"\"\"\nnl,\"line1\nline2\"\nempty,\n",
    );
    let plan = ws.plan_json(&[]);
    assert_eq!(
        names(&plan),
        [
            "row[plain]",
            "row[comma]",
            "row[quote]",
            "row[nl]",
            "row[empty]"
        ]
    );
    assert_eq!(
        item(entry(&plan, "row[comma]")),
        pairs(&[("id", "comma"), ("note", "a, b")])
    );
    assert_eq!(
        item(entry(&plan, "row[quote]")),
        pairs(&[("id", "quote"), ("note", "say \"hi\"")])
    );
    assert_eq!(
        item(entry(&plan, "row[nl]")),
        pairs(&[("id", "nl"), ("note", "line1\nline2")])
    );
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("out/comma.txt"), "comma|a, b|");
    assert_eq!(ws.read("out/quote.txt"), "quote|say \"hi\"|");
    assert_eq!(ws.read("out/nl.txt"), "nl|line1\nline2|");
    // An empty field is still one (empty) argument.
    assert_eq!(ws.read("out/empty.txt"), "empty||");
}

#[test]
fn glob_matches_are_sorted_recursive_and_keyed_below_the_literal_dir() {
    let ws = Workspace::new(
        r#"
[tasks.thumb]
for_each = { glob = "photos/**/*.jpg" }
inputs = ["${item.path}"]
outputs = ["thumbs/${item.dir}/${item.stem}.png"]
run = ["cp", "${item.path}", "thumbs/${item.dir}/${item.stem}.png"]

[tasks.top]
for_each = { glob = "*.jpg" }
run = ["echo", "${item.dir}", "${item.path}"]
"#,
    );
    for f in [
        "photos/b.jpg",
        "photos/a.jpg",
        "photos/2024/c.jpg",
        "photos/2024/x/d.tar.jpg",
        "photos/e.png",
        "photos/2023/z.jpg",
        "top.jpg",
    ] {
        ws.write(f, f);
    }
    let plan = ws.plan_json(&[]);
    let thumbs: Vec<String> = names(&plan)
        .into_iter()
        .filter(|n| n.starts_with("thumb["))
        .collect();
    assert_eq!(
        thumbs,
        [
            "thumb[2023/z.jpg]",
            "thumb[2024/c.jpg]",
            "thumb[2024/x/d.tar.jpg]",
            "thumb[a.jpg]",
            "thumb[b.jpg]",
        ]
    );
    assert_eq!(
        item(entry(&plan, "thumb[2024/x/d.tar.jpg]")),
        pairs(&[
            ("path", "photos/2024/x/d.tar.jpg"),
            ("name", "d.tar.jpg"),
            ("stem", "d.tar"),
            ("ext", "jpg"),
            ("dir", "photos/2024/x"),
        ])
    );
    assert_eq!(entry(&plan, "thumb[a.jpg]")["item"]["dir"], "photos");
    // A file directly in the manifest's directory has dir `.`.
    assert_eq!(
        item(entry(&plan, "top[top.jpg]")),
        pairs(&[
            ("path", "top.jpg"),
            ("name", "top.jpg"),
            ("stem", "top"),
            ("ext", "jpg"),
            ("dir", "."),
        ])
    );
    for d in ["photos", "photos/2023", "photos/2024", "photos/2024/x"] {
        std::fs::create_dir_all(ws.path(&format!("thumbs/{d}"))).unwrap();
    }
    ws.run(&["-q"]).code(0);
    assert_eq!(
        ws.read("thumbs/photos/2024/x/d.tar.png"),
        "photos/2024/x/d.tar.jpg"
    );
}

#[test]
fn a_matrix_times_for_each_is_the_product_keyed_matrix_values_then_item() {
    let ws = Workspace::new(
        r#"
[tasks.conv]
matrix = { fmt = ["png", "gif"], size = [64, 8] }
for_each = { lines = "files.txt" }
run = ["echo", "${matrix.fmt}", "${matrix.size}", "${item.name}"]
"#,
    );
    ws.write("files.txt", "a.jpg\nb.jpg\n");
    let plan = ws.plan_json(&[]);
    assert_eq!(
        names(&plan),
        [
            "conv[png,64,a.jpg]",
            "conv[png,64,b.jpg]",
            "conv[png,8,a.jpg]",
            "conv[png,8,b.jpg]",
            "conv[gif,64,a.jpg]",
            "conv[gif,64,b.jpg]",
            "conv[gif,8,a.jpg]",
            "conv[gif,8,b.jpg]",
        ]
    );
    // `item`: the matrix values by axis, then the item fields by name.
    assert_eq!(
        item(entry(&plan, "conv[gif,8,b.jpg]")),
        pairs(&[
            ("fmt", "gif"),
            ("size", "8"),
            ("line", "b.jpg"),
            ("name", "b.jpg"),
            ("stem", "b"),
            ("ext", "jpg"),
        ])
    );
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["total"], 8);
    assert_eq!(statuses(&report).len(), 8);
    ws.run(&[]).says(&["conv[gif,8,b.jpg] | gif 8 b.jpg"]);
}

#[test]
fn a_key_template_names_the_instances() {
    let ws = Workspace::new(
        r#"
[tasks.get]
matrix = { v = ["x", "y"] }
for_each = { csv = "sources.csv" }
key = "${item.id}-${matrix.v}"
description = "get ${item.id} for ${matrix.v}"
run = ["echo", "${item.url}"]
"#,
    );
    ws.write(
        "sources.csv",
        "url,id\nhttp://h/one.csv,one\nhttp://h/two.csv,two\n",
    );
    let plan = ws.plan_json(&[]);
    assert_eq!(
        names(&plan),
        ["get[one-x]", "get[two-x]", "get[one-y]", "get[two-y]"]
    );
    assert_eq!(entry(&plan, "get[two-y]")["description"], "get two for y");
}

#[test]
fn without_a_key_the_first_csv_column_names_the_instance() {
    let ws = Workspace::new(
        "[tasks.get]\nfor_each = { csv = \"s.csv\" }\nrun = [\"echo\", \"${item.url}\"]\n",
    );
    ws.write("s.csv", "url,id\nu1,one\nu2,two\n");
    assert_eq!(names(&ws.plan_json(&[])), ["get[u1]", "get[u2]"]);
}

#[test]
fn allow_empty_gives_no_instances_and_dependents_do_not_wait() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt", allow_empty = true }
run = "exit 1"

[tasks.photos]
for_each = { glob = "photos/*.jpg", allow_empty = true }
run = "exit 1"

[tasks.after]
deps = ["get", "photos"]
run = "echo done > after.txt"
"#,
    );
    ws.write("urls.txt", "# nothing yet\n\n");
    let plan = ws.plan_json(&[]);
    assert_eq!(names(&plan), ["after"]);
    assert_eq!(entry(&plan, "after")["deps"], serde_json::json!([]));
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(statuses(&report), [("after".into(), "succeeded".into())]);
    assert_eq!(ws.read("after.txt"), "done\n");
    // Targeting the empty fan-out selects nothing and is not an error.
    ws.run(&["get"]).code(0);
}

#[test]
fn zero_items_without_allow_empty_is_an_error_naming_the_source() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "true"

[tasks.photos]
for_each = { glob = "photos/*.jpg" }
run = "true"
"#,
    );
    ws.write("urls.txt", "# only a comment\n   \n");
    let r = ws.check();
    r.code(2).says(&[
        "urls.txt",
        "photos/*.jpg",
        "allow_empty",
        "taskrun.toml:3:",
        "taskrun.toml:7:",
    ]);
    ws.run(&[]).code(2);
}

#[test]
fn an_axis_and_an_item_field_of_the_same_name_are_an_error() {
    let ws = Workspace::new(
        "[tasks.get]\nmatrix = { name = [\"a\"] }\nfor_each = { lines = \"l.txt\" }\nrun = \"true\"\n",
    );
    ws.write("l.txt", "x\n");
    ws.check().code(2).says(&["name"]);
}

#[test]
fn a_glob_sees_files_added_and_removed_between_runs() {
    let ws = Workspace::new(
        r#"
[tasks.copy]
for_each = { glob = "in/*.txt" }
inputs = ["${item.path}"]
outputs = ["out/${item.name}"]
run = "cp ${item.path} out/${item.name}"
"#,
    );
    ws.write("in/a.txt", "a").write("in/b.txt", "b");
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run_report(&[], 0);
    // Plan right after the change sees it (no stale memo of the manifest).
    ws.write("in/c.txt", "c");
    assert_eq!(
        names(&ws.plan_json(&[])),
        ["copy[a.txt]", "copy[b.txt]", "copy[c.txt]"]
    );
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(
        statuses(&report),
        [
            ("copy[a.txt]".into(), "cached".into()),
            ("copy[b.txt]".into(), "cached".into()),
            ("copy[c.txt]".into(), "succeeded".into()),
        ]
    );
    std::fs::remove_file(ws.path("in/a.txt")).unwrap();
    assert_eq!(names(&ws.plan_json(&[])), ["copy[b.txt]", "copy[c.txt]"]);
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["total"], 2);
    assert_eq!(report["summary"]["cached"], 2);
}

#[test]
fn an_include_only_matrix_defines_its_axes() {
    let ws = Workspace::new(
        r#"
[tasks.m]
run = ["echo", "${matrix.os}", "${matrix.v}"]
[tasks.m.matrix]
include = [{ os = "linux", v = 1 }, { os = "mac", v = 2 }]
"#,
    );
    let plan = ws.plan_json(&[]);
    assert_eq!(names(&plan), ["m[linux,1]", "m[mac,2]"]);
    assert_eq!(
        item(entry(&plan, "m[mac,2]")),
        pairs(&[("os", "mac"), ("v", "2")])
    );
}

#[test]
fn matrix_mistakes_are_errors_at_their_places() {
    let ws = Workspace::new(
        r#"
[tasks.n]
run = "true"
[tasks.n.matrix]
year = ["2023"]
exclude = [{ yaer = "2023" }]

[tasks.o]
run = "true"
matrix = { v = [] }

[tasks.p]
run = "true"
matrix = { v = ["1"], include = [{ v = "2", w = "3" }] }

[tasks.q]
run = "true"
matrix = { v = "1" }

[tasks.r]
run = "true"
matrix = { v = [["1"]] }
"#,
    );
    ws.check().code(2).says(&[
        "`yaer`",
        "did you mean `year`?",
        "taskrun.toml:6:",
        "axis `v` has no values",
        "taskrun.toml:10:",
        "`w`",
        "taskrun.toml:14:",
        "must be an array",
        "taskrun.toml:18:",
        "only strings, integers and booleans",
        "taskrun.toml:22:",
    ]);
}

#[test]
fn check_and_plan_read_the_items_but_write_nothing() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo ${item.line} > o/${item.name}"
outputs = ["o/${item.name}"]

[tasks.thumb]
for_each = { glob = "photos/**/*.jpg" }
run = "true"
"#,
    );
    ws.write("urls.txt", "http://h/a.csv\n")
        .write("photos/x/a.jpg", "a");
    let before = tree(ws.root());
    ws.check().code(0);
    ws.plan_text(&[]).code(0);
    ws.plan_text(&["--expand"]).code(0);
    ws.plan_json(&[]);
    ws.exec(&["plan", "taskrun.toml", "--format", "dot"])
        .code(0);
    assert_eq!(tree(ws.root()), before);
}

fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// A list large enough to be built on several threads: names in file order and every problem
/// reported once, in file order, as a list built on one thread gives them.
#[test]
fn a_large_list_keeps_file_order_for_names_and_problems() {
    let ws = Workspace::new(
        "[tasks.get]\nfor_each = { lines = \"urls.txt\" }\ndownload = { url = \"${item.line}\", dest = \"raw/${item.name}\" }\n",
    );
    let mut lines: Vec<String> = (1..=6000)
        .map(|n| format!("http://127.0.0.1:9/f{n}.bin"))
        .collect();
    ws.write("urls.txt", &(lines.join("\n") + "\n"));
    let plan = ws.plan_json(&[]);
    let want: Vec<String> = (1..=6000).map(|n| format!("get[f{n}.bin]")).collect();
    assert_eq!(names(&plan), want);

    lines[6] = "ftp://127.0.0.1:9/f7.bin".into();
    lines[3000] = lines[0].clone();
    lines[5998] = "gopher://127.0.0.1:9/f5999.bin".into();
    ws.write("urls.txt", &(lines.join("\n") + "\n"));
    let r = ws.check();
    r.code(2).says(&["3 problems"]);
    let at = |s: &str| {
        r.stderr
            .find(s)
            .unwrap_or_else(|| panic!("no `{s}` in\n{}", r.stderr))
    };
    assert!(at("urls.txt:7") < at("urls.txt:1 and urls.txt:3001"));
    assert!(at("urls.txt:1 and urls.txt:3001") < at("urls.txt:5999"));
}
