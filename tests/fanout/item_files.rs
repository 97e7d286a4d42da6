//! Mistakes in item files, each reported at its place: the manifest's `for_each` and the
//! item file's own `FILE:LINE:COLUMN`.

use crate::support::Workspace;

/// A quote that breaks RFC 4180 is an error at its place in the item file: one that never
/// closes (in the last column it swallowed every row after it, silently), one inside an
/// unquoted field, and text after a closing quote.
#[test]
fn a_broken_csv_quote_is_an_error_at_its_line_and_column() {
    let ws = Workspace::new("[tasks.c]\nfor_each = { csv = \"e.csv\" }\nrun = \"true\"\n");
    for (text, says) in [
        (
            "id,url\na,1\nb,\"unterminated\nc,3\n",
            "`e.csv:3:3`: this `\"` opens a field that never closes",
        ),
        ("id,url\nb,x\"y\"z\n", "`e.csv:2:4`"),
        ("id,url\n\"a\"x,1\n", "`e.csv:2:4`"),
    ] {
        ws.write("e.csv", text);
        ws.check().code(2).says(&[says, "taskrun.toml:2:"]);
    }
}

/// A byte that is no UTF-8 character is placed by line and column, in a lines file and in
/// a CSV file alike (the CSV reader's own message leaked before).
#[test]
fn a_non_utf8_item_file_is_an_error_at_its_line_and_column() {
    let ws = Workspace::new("[tasks.u]\nfor_each = { lines = \"u.txt\" }\nrun = \"true\"\n");
    std::fs::write(ws.path("u.txt"), b"ok\n\xff\n").unwrap();
    ws.check()
        .code(2)
        .says(&["`u.txt:2:1`: item file is not UTF-8"]);
    ws.manifest("[tasks.u]\nfor_each = { csv = \"u.csv\" }\nrun = \"true\"\n");
    std::fs::write(ws.path("u.csv"), b"id,v\na,\xff\n").unwrap();
    ws.check()
        .code(2)
        .says(&["`u.csv:2:3`: item file is not UTF-8"]);
}

#[test]
fn a_missing_item_file_is_an_error_at_its_place() {
    let ws = Workspace::new("[tasks.get]\nfor_each = { lines = \"nope.txt\" }\nrun = \"true\"\n");
    ws.check().code(2).says(&["nope.txt", "taskrun.toml:2:"]);
}

/// A task whose items cannot be read (a missing file, a float or an empty matrix axis) is
/// still checked through: its unknown var, bad `retry` and unknown key are said in the same
/// `check`, each once, while the `${item.*}` and `${matrix.*}` it uses are no problems.
#[test]
fn a_task_whose_items_fail_still_has_its_other_problems_said() {
    for items in [
        "for_each = { lines = \"nope.txt\" }",
        "matrix = { x = [1.5, 2] }",
        "matrix = { x = [] }",
    ] {
        let ws = Workspace::new(&format!(
            "[tasks.t]\n{items}\nrun = \"echo ${{item.line}} ${{matrix.x}} ${{vars.nope}}\"\nretry = \"x\"\nretires = 2\n"
        ));
        ws.check().code(2).says(&[
            "has 4 problems",
            "unknown variable `vars.nope`",
            "taskrun.toml:3:",
            "`tasks.t.retry` must be a number of attempts or a table",
            "taskrun.toml:4:",
            "retires",
            "taskrun.toml:5:",
        ]);
    }
}
