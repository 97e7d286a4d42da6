//! Names, dependencies and targets (SPEC §9 "Names", "Dependencies and targets"), and the
//! errors: unknown instances with did-you-mean, duplicate and empty keys naming the items,
//! all with `file:line:col`.

use crate::support::{Workspace, entry, names, statuses, with_status};

/// A matrix `fetch` writing one file per instance, and consumers of it.
const GRAPH: &str = r#"
[tasks.fetch]
matrix = { year = ["2023", "2024"], month = ["01", "02"] }
run = "echo ${matrix.year}-${matrix.month} > data/${matrix.year}-${matrix.month}.txt"
outputs = ["data/${matrix.year}-${matrix.month}.txt"]

[tasks.all]
deps = ["fetch"]
run = "cat data/*.txt > all.txt"
outputs = ["all.txt"]

[tasks.one]
deps = ["fetch[2023,01]"]
run = "ls data > one.txt"
outputs = ["one.txt"]
"#;

fn graph() -> Workspace {
    let ws = Workspace::new(GRAPH);
    std::fs::create_dir_all(ws.path("data")).unwrap();
    ws
}

#[test]
fn a_bare_dependency_waits_for_every_instance() {
    let ws = graph();
    let plan = ws.plan_json(&["all"]);
    assert_eq!(
        entry(&plan, "all")["deps"],
        serde_json::json!([
            "fetch[2023,01]",
            "fetch[2023,02]",
            "fetch[2024,01]",
            "fetch[2024,02]"
        ])
    );
    assert_eq!(entry(&plan, "all")["level"], 1);
    ws.run(&["all", "-q"]).code(0);
    assert_eq!(
        ws.read("all.txt"),
        "2023-01\n2023-02\n2024-01\n2024-02\n",
        "all four instances finished before `all` ran"
    );
}

#[test]
fn a_dependency_on_one_instance_waits_for_that_one_only() {
    let ws = graph();
    let plan = ws.plan_json(&["one"]);
    assert_eq!(names(&plan), ["fetch[2023,01]", "one"]);
    let (_, report) = ws.run_report(&["one"], 0);
    assert_eq!(
        statuses(&report),
        [
            ("fetch[2023,01]".into(), "succeeded".into()),
            ("one".into(), "succeeded".into())
        ]
    );
    assert_eq!(ws.read("one.txt"), "2023-01.txt\n");
}

#[test]
fn templated_deps_pair_each_instance_with_one_of_another_task() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo got-${item.stem} > raw/${item.name}"
outputs = ["raw/${item.name}"]

[tasks.clean]
for_each = { lines = "urls.txt" }
deps = ["get[${item.name}]"]
inputs = ["raw/${item.name}"]
run = "tr a-z A-Z < raw/${item.name} > clean/${item.stem}.csv"
outputs = ["clean/${item.stem}.csv"]

[tasks.report]
deps = ["clean"]
run = "cat clean/*.csv"
"#,
    );
    ws.write(
        "urls.txt",
        "http://h/a.csv\nhttp://h/b.csv\nhttp://h/c.csv\n",
    );
    std::fs::create_dir_all(ws.path("raw")).unwrap();
    std::fs::create_dir_all(ws.path("clean")).unwrap();
    let plan = ws.plan_json(&[]);
    for k in ["a", "b", "c"] {
        assert_eq!(
            entry(&plan, &format!("clean[{k}.csv]"))["deps"],
            serde_json::json!([format!("get[{k}.csv]")])
        );
    }
    assert_eq!(
        entry(&plan, "report")["deps"],
        serde_json::json!(["clean[a.csv]", "clean[b.csv]", "clean[c.csv]"])
    );
    // A target on one paired instance brings exactly its partner.
    let p = ws.plan_json(&["clean[b.csv]"]);
    assert_eq!(names(&p), ["get[b.csv]", "clean[b.csv]"]);

    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("clean/b.csv"), "GOT-B\n");
}

#[test]
fn a_bare_target_selects_every_instance_and_a_bracketed_one_a_single_instance() {
    let ws = graph();
    let p = ws.plan_json(&["fetch"]);
    assert_eq!(
        names(&p),
        [
            "fetch[2023,01]",
            "fetch[2023,02]",
            "fetch[2024,01]",
            "fetch[2024,02]"
        ]
    );
    // `NAME[*]`, as a plan shows a task expanded later, means the same as the bare name.
    assert_eq!(names(&ws.plan_json(&["fetch[*]"])), names(&p));
    let p = ws.plan_json(&["fetch[2024,02]"]);
    assert_eq!(names(&p), ["fetch[2024,02]"]);

    let (_, report) = ws.run_report(&["fetch[2024,02]"], 0);
    assert_eq!(report["summary"]["total"], 1);
    assert_eq!(with_status(&report, "succeeded"), ["fetch[2024,02]"]);
    assert!(ws.exists("data/2024-02.txt"));
    assert!(!ws.exists("data/2023-01.txt"));

    let (_, report) = ws.run_report(&["fetch"], 0);
    assert_eq!(report["summary"]["total"], 4);
    assert_eq!(with_status(&report, "cached"), ["fetch[2024,02]"]);
    assert_eq!(with_status(&report, "succeeded").len(), 3);
}

#[test]
fn an_unknown_instance_target_is_exit_2_with_did_you_mean() {
    let ws = graph();
    let r = ws.run(&["fetch[2023,1]"]);
    r.code(2)
        .says(&["fetch[2023,1]", "did you mean", "fetch[2023,01]"]);
    assert!(!ws.exists(".taskrun/runs"), "nothing ran");
    ws.plan_text(&["fetch[2025,01]"])
        .code(2)
        .says(&["did you mean"]);
}

/// A list's keys are file names: one typed without its extension, or a few characters off in
/// a long key, still finds its instance (the edit distance of the whole name gives up).
#[test]
fn an_instance_typed_without_its_extension_is_suggested_as_a_target_a_dependency_and_to_explain() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "true"
"#,
    );
    ws.write("urls.txt", "temps-2023-01.csv\ntemps-2023-02.csv\n");
    ws.run(&["get[temps-2023-02]"])
        .code(2)
        .says(&["unknown task `get[temps-2023-02]`: did you mean `get[temps-2023-02.csv]`?"]);
    ws.plan_text(&["get[temps-2023-1.cs]"])
        .code(2)
        .says(&["did you mean `get[temps-2023-01.csv]`?"]);
    let explain = ws.exec(&["explain", "taskrun.toml", "get[temps-2023-01]"]);
    explain
        .code(2)
        .says(&["did you mean `get[temps-2023-01.csv]`?"]);
    ws.write(
        "taskrun.toml",
        "[tasks.get]\nfor_each = { lines = \"urls.txt\" }\nrun = \"true\"\n\n[tasks.use]\ndeps = [\"get[temps-2023-01]\"]\nrun = \"true\"\n",
    );
    ws.check()
        .code(2)
        .says(&["taskrun.toml:6:9", "did you mean `get[temps-2023-01.csv]`?"]);
}

#[test]
fn a_dependency_on_a_missing_instance_is_an_error_at_its_place_with_did_you_mean() {
    let ws = Workspace::new(
        r#"
[tasks.fetch]
matrix = { month = ["01", "02"] }
run = "true"

[tasks.use]
deps = ["fetch[03]", "fetch[1]"]
run = "true"
"#,
    );
    ws.check().code(2).says(&[
        "fetch[03]",
        "taskrun.toml:7:9",
        "fetch[1]",
        "did you mean `fetch[01]`",
    ]);
}

#[test]
fn a_paired_dependency_on_a_missing_instance_names_the_item() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "a.txt" }
run = "true"

[tasks.clean]
for_each = { lines = "b.txt" }
deps = ["get[${item.name}]"]
run = "true"
"#,
    );
    ws.write("a.txt", "x.csv\ny.csv\n")
        .write("b.txt", "x.csv\nz.csv\n");
    ws.check().code(2).says(&["get[z.csv]", "taskrun.toml:8:9"]);
}

#[test]
fn duplicate_keys_name_both_items_and_suggest_key() {
    let ws = Workspace::new(
        "[tasks.get]\nfor_each = { lines = \"urls.txt\" }\nrun = [\"echo\", \"${item.line}\"]\n",
    );
    ws.write(
        "urls.txt",
        "http://one/a.csv\nhttp://one/b.csv\nhttp://two/a.csv\n",
    );
    let r = ws.check();
    r.code(2).says(&[
        "a.csv",
        "urls.txt:1",
        "urls.txt:3",
        "key",
        "taskrun.toml:1:8",
    ]);
    ws.run(&[]).code(2);
    // With a key that tells them apart, it loads.
    ws.manifest(
        "[tasks.get]\nfor_each = { lines = \"urls.txt\" }\nkey = \"${item.line}\"\nrun = [\"echo\", \"${item.line}\"]\n",
    );
    ws.check().code(0);
}

#[test]
fn duplicate_matrix_rows_from_include_are_an_error_naming_both() {
    let ws = Workspace::new(
        r#"
[tasks.t]
run = "true"
[tasks.t.matrix]
v = ["a", "b"]
include = [{ v = "b" }]
"#,
    );
    ws.check().code(2).says(&["`b`", "v=b"]);
}

#[test]
fn an_empty_key_is_an_error_naming_the_line() {
    let ws = Workspace::new(
        "[tasks.get]\nfor_each = { lines = \"urls.txt\" }\nrun = [\"echo\", \"${item.line}\"]\n",
    );
    ws.write("urls.txt", "http://h/a.csv\n\nhttp://h/dir/\n");
    ws.check()
        .code(2)
        .says(&["empty", "urls.txt:3", "taskrun.toml:1:8"]);
}

#[test]
fn a_comma_in_a_matrix_value_needs_a_key() {
    let ws = Workspace::new("[tasks.t]\nmatrix = { v = [\"a,b\"] }\nrun = \"true\"\n");
    ws.check().code(2).says(&["a,b", "key"]);
}

#[test]
fn an_unknown_field_or_axis_is_an_error_at_its_place_naming_the_item() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo ${item.nmae}"

[tasks.m]
matrix = { year = ["2023"] }
run = "echo ${matrix.yaer}"

[tasks.outside]
run = "echo ${item.name}"
"#,
    );
    ws.write("urls.txt", "http://h/a.csv\n");
    ws.check().code(2).says(&[
        "unknown item field `nmae`",
        "did you mean `${item.name}`",
        "urls.txt:1",
        "taskrun.toml:4:13",
        "unknown matrix axis `yaer`",
        "taskrun.toml:8:13",
        "outside a fan-out task",
        "taskrun.toml:11:13",
    ]);
}

#[test]
fn a_control_character_or_bracket_in_a_key_is_an_error_naming_the_row() {
    let ws = Workspace::new("[tasks.row]\nfor_each = { csv = \"items.csv\" }\nrun = \"true\"\n");
    ws.write("items.csv", "id,v\nok,1\n\"two\nlines\",2\n\"x]y\",3\n");
    ws.check()
        .code(2)
        .says(&["control character", "items.csv:3", "items.csv:5"]);
}

#[test]
fn csv_lines_are_counted_right_with_crlf_row_ends() {
    let ws = Workspace::new("[tasks.row]\nfor_each = { csv = \"items.csv\" }\nrun = \"true\"\n");
    ws.write("items.csv", "id,u\r\nx,2\r\ny,3\r\nx,4\r\n");
    let r = ws.check();
    r.code(2).says(&["items.csv:2 and items.csv:4"]);
    assert!(!r.all().contains("instance ?"), "{}", r.all());
}

#[test]
fn a_matrix_repeated_row_or_one_emptied_by_exclude_is_an_error_that_says_so() {
    let ws = Workspace::new("[tasks.m]\nmatrix = { a = [\"x\", \"x\"] }\nrun = \"true\"\n");
    let r = ws.check();
    r.code(2).says(&["a matrix row appears twice"]);
    assert!(
        !r.all().contains("${item."),
        "no item field to suggest: {}",
        r.all()
    );
    ws.manifest(
        "[tasks.w]\nrun = \"true\"\n[tasks.w.matrix]\na = [\"1\"]\nexclude = [{ a = \"1\" }]\n",
    );
    ws.check()
        .code(2)
        .says(&["the matrix of task `w` has no rows", "taskrun.toml:"]);
}

#[test]
fn two_names_that_become_one_environment_variable_are_an_error() {
    let ws = Workspace::new("[tasks.m]\nfor_each = { csv = \"e.csv\" }\nrun = \"true\"\n");
    ws.write("e.csv", "a-b,a_b\n1,2\n");
    ws.check().code(2).says(&[
        "`a-b` and `a_b` both become the variable TASKRUN_ITEM_A_B",
        "taskrun.toml:2:",
    ]);
    ws.manifest("[tasks.n]\nmatrix = { \"a b\" = [\"1\"], \"a.b\" = [\"2\"] }\nrun = \"true\"\n");
    ws.check().code(2).says(&["TASKRUN_MATRIX_A_B"]);
}

#[test]
fn a_csv_quote_that_never_closes_is_said_so() {
    let ws = Workspace::new("[tasks.row]\nfor_each = { csv = \"items.csv\" }\nrun = \"true\"\n");
    ws.write("items.csv", "id,u\nx,2\n\"y,3\nz,4\n");
    ws.check().code(2).says(&[
        "`items.csv:3:1`: this `\"` opens a field that never closes",
        "taskrun.toml:2:",
    ]);
    // A row short of fields is still said with its line.
    ws.write("items.csv", "id,u\nx,2\ny\n");
    ws.check()
        .code(2)
        .says(&["`items.csv:3:1`: this row has 1 field where the header has 2"]);
}

/// A fan-out that depends on its own bare name (or two that depend on each other) is one
/// mistake per `deps` entry: said once each. It was every instance on every other, N²
/// edges and as many "dependency cycle" problems (1,000 instances: minutes and gigabytes).
#[test]
fn a_fanout_depending_on_itself_is_one_cycle_said_once() {
    let values: Vec<String> = (0..1000).map(|i| format!("\"{i}\"")).collect();
    let axis = values.join(",");
    let ws = Workspace::new(&format!(
        "[tasks.m]\nmatrix = {{ v = [{axis}] }}\ndeps = [\"m\"]\nrun = \"echo\"\n\
         [tasks.p]\nmatrix = {{ v = [\"1\", \"2\", \"3\"] }}\ndeps = [\"q\"]\nrun = \"echo\"\n\
         [tasks.q]\nmatrix = {{ v = [\"1\", \"2\", \"3\"] }}\ndeps = [\"p\"]\nrun = \"echo\"\n"
    ));
    let r = ws.check();
    r.code(2).says(&[
        "has 3 problems",
        "dependency cycle: m[0] -> m[0]",
        "taskrun.toml:3:",
        "dependency cycle: p[1] -> q[1] -> p[1]",
    ]);
}

/// A `deps` entry of a fan-out that names no task is one problem, however many instances
/// share it (it was one per instance: 1,000 copies, 19,000 lines of stderr).
#[test]
fn a_missing_dep_of_a_fanout_is_said_once() {
    let values: Vec<String> = (0..1000).map(|i| format!("\"{i}\"")).collect();
    let ws = Workspace::new(&format!(
        "[tasks.fetch]\nrun = \"echo\"\n[tasks.m]\nmatrix = {{ v = [{}] }}\n\
         deps = [\"fetc\", \"fetch[${{matrix.v}}]\"]\nrun = \"echo\"\n",
        values.join(",")
    ));
    let r = ws.check();
    r.code(2).says(&[
        "has 2 problems",
        "task `m[0]` depends on `fetc`, which does not exist (this entry fails for 999 more",
        "did you mean `fetch`?",
        "task `m[0]` depends on `fetch[0]`, which does not exist",
    ]);
}
