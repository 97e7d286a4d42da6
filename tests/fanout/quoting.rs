//! Values inserted into tasks (SPEC §9 "Interpolation"): exactly one shell word in shell text,
//! whatever the value holds; as is in argv arrays; in the environment as `TASKRUN_ITEM_*` /
//! `TASKRUN_MATRIX_*`; literal in `inputs` globs. Every hostile value is echoed back and
//! compared with the raw value, and marker files prove that nothing was executed.

use crate::fault_server::Route;
use crate::served::Http;
use crate::support::{Workspace, entry};

/// `(id, value)` rows: each value would run `touch pwned-*` if it reached the shell as syntax.
const HOSTILE: &[(&str, &str)] = &[
    ("space", "a b  c"),
    ("single", "it's"),
    ("double", "say \"hi\""),
    ("subst", "$(touch pwned-subst)"),
    ("backtick", "`touch pwned-backtick`"),
    ("semicolon", "x; touch pwned-semicolon"),
    ("newline", "line1\ntouch pwned-newline"),
    ("mixed", "'\"; touch pwned-mixed; echo \"'"),
    ("dollar", "$HOME ${HOME} $$"),
    ("glob", "* ?"),
    ("pipe", "a | touch pwned-pipe && b"),
    ("backslash", "a\\\\b\\n\\"),
    ("dash", "-n"),
    ("empty", ""),
];

/// A CSV field, RFC 4180 quoted.
fn csv_field(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

fn hostile_csv() -> String {
    let mut s = String::from("id,value\n");
    for (id, v) in HOSTILE {
        s.push_str(&format!("{id},{}\n", csv_field(v)));
    }
    s
}

/// Runs the workspace's manifest over `items.csv` of [`HOSTILE`] rows, into `out/`; it must
/// succeed.
fn run_over_hostile_csv(ws: &Workspace) {
    ws.write("items.csv", &hostile_csv());
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
}

/// No file named `pwned*` anywhere in the workspace.
fn assert_nothing_executed(ws: &Workspace) {
    let pwned: Vec<String> = walkdir::WalkDir::new(ws.root())
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "values were executed: {pwned:?}");
}

#[test]
fn csv_values_in_shell_text_are_exactly_one_word_and_execute_nothing() {
    let ws = Workspace::new(
        r#"
[tasks.show]
for_each = { csv = "items.csv" }
# `$#` after `set --` counts the words the value became; printf echoes it back.
run = "set -- ${item.value}; echo $# > out/${item.id}.n; printf '%s' ${item.value} > out/${item.id}.v"
cache = "off"
"#,
    );
    run_over_hostile_csv(&ws);
    for (id, v) in HOSTILE {
        assert_eq!(ws.read(&format!("out/{id}.n")), "1\n", "{id}: one word");
        assert_eq!(ws.read(&format!("out/{id}.v")), *v, "{id}: the raw value");
    }
    assert_nothing_executed(&ws);
}

/// Inside `$(...)` quoting starts afresh, also within double quotes: the value is one word
/// of the inner command.
#[test]
fn a_value_in_a_command_substitution_inside_double_quotes_is_one_word_of_it() {
    let ws = Workspace::new(
        r#"
[tasks.show]
for_each = { csv = "items.csv" }
run = "printf '%s' \"$(printf '%s' ${item.value})\" > out/${item.id}.v"
cache = "off"
"#,
    );
    run_over_hostile_csv(&ws);
    for (id, v) in HOSTILE {
        // `$(...)` drops trailing newlines, as it does for any output.
        assert_eq!(
            ws.read(&format!("out/{id}.v")),
            v.trim_end_matches('\n'),
            "{id}"
        );
    }
    assert_nothing_executed(&ws);
}

#[test]
fn lines_in_shell_text_are_exactly_one_word_and_execute_nothing() {
    let ws = Workspace::new(
        r#"
[tasks.show]
for_each = { lines = "lines.txt" }
key = "${item.stem}"
run = "set -- ${item.line}; echo $# > out/${item.stem}.n; printf '%s' ${item.line} > out/${item.stem}.v"
cache = "off"
"#,
    );
    let lines = [
        "http://h/q/a b.csv",
        "http://h/q/it's.csv",
        "http://h/q/say \"hi\".csv",
        "http://h/q/$(touch pwned-l1).csv",
        "http://h/q/`touch pwned-l2`.csv",
        "http://h/q/x;touch pwned-l3.csv",
        "http://h/q/y&&touch pwned-l4.csv",
    ];
    ws.write("lines.txt", &(lines.join("\n") + "\n"));
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
    for line in lines {
        let stem = line.rsplit('/').next().unwrap().trim_end_matches(".csv");
        assert_eq!(ws.read(&format!("out/{stem}.n")), "1\n", "{line}");
        assert_eq!(ws.read(&format!("out/{stem}.v")), line);
    }
    assert_nothing_executed(&ws);
}

#[test]
fn hostile_file_names_from_a_glob_are_one_word_and_execute_nothing() {
    let ws = Workspace::new(
        r#"
[tasks.copy]
for_each = { glob = "in/*.txt" }
inputs = ["${item.path}"]
outputs = ["out/${item.name}"]
run = "set -- ${item.path}; test $# = 1 && cp ${item.path} out/${item.name}"
"#,
    );
    let files = [
        "a b.txt",
        "it's.txt",
        "say \"hi\".txt",
        "$(touch pwned-g1).txt",
        "`touch pwned-g2`.txt",
        "x;touch pwned-g3.txt",
        "-rf.txt",
        "*.txt",
    ];
    for f in files {
        ws.write(&format!("in/{f}"), &format!("content of {f}"));
    }
    std::fs::create_dir_all(ws.path("out")).unwrap();
    let (_, report) = ws.run_report(&["-q"], 0);
    assert_eq!(report["summary"]["succeeded"], files.len());
    for f in files {
        assert_eq!(ws.read(&format!("out/{f}")), format!("content of {f}"));
    }
    assert_nothing_executed(&ws);
    // Everything is cached the second time: the quoted text is stable.
    let (_, report) = ws.run_report(&["-q"], 0);
    assert_eq!(report["summary"]["cached"], files.len());
}

#[test]
fn argv_arrays_get_values_as_is() {
    let ws = Workspace::new(
        r#"
[tasks.show]
for_each = { csv = "items.csv" }
run = ["sh", "-c", "printf '%s' \"$1\" > \"$2\"; echo $# > \"$2.n\"", "sh", "${item.value}", "out/${item.id}"]
cache = "off"
"#,
    );
    ws.write("items.csv", &hostile_csv());
    std::fs::create_dir_all(ws.path("out")).unwrap();
    let plan = ws.plan_json(&[]);
    assert_eq!(
        entry(&plan, "show[subst]")["action"]["argv"][4],
        "$(touch pwned-subst)"
    );
    ws.run(&["-q"]).code(0);
    for (id, v) in HOSTILE {
        assert_eq!(ws.read(&format!("out/{id}")), *v, "{id}");
        assert_eq!(ws.read(&format!("out/{id}.n")), "2\n", "{id}");
    }
    assert_nothing_executed(&ws);
}

#[test]
fn matrix_and_item_values_are_in_the_command_environment() {
    let ws = Workspace::new(
        r#"
[tasks.env]
matrix = { os-name = ["linux"], n = [3] }
for_each = { csv = "items.csv" }
key = "${item.id}"
env = { MINE = "${item.value}", TASKRUN_ITEM_ID = "overridden" }
run = "printf '%s|%s|%s|%s|%s' \"$TASKRUN_MATRIX_OS_NAME\" \"$TASKRUN_MATRIX_N\" \"$TASKRUN_ITEM_VALUE\" \"$MINE\" \"$TASKRUN_ITEM_ID\" > out/${item.id}"
cache = "off"
"#,
    );
    run_over_hostile_csv(&ws);
    for (id, v) in HOSTILE {
        assert_eq!(
            ws.read(&format!("out/{id}")),
            format!("linux|3|{v}|{v}|overridden"),
            "{id}"
        );
    }
    assert_nothing_executed(&ws);
}

#[test]
fn a_csv_column_with_non_alphanumerics_becomes_an_underscored_env_name() {
    let ws = Workspace::new(
        r#"
[tasks.env]
for_each = { csv = "items.csv" }
run = "printf '%s' \"$TASKRUN_ITEM_FILE_NAME\" > out/${item.id}"
cache = "off"
"#,
    );
    ws.write("items.csv", "id,file-name\none,a.txt\n");
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("out/one"), "a.txt");
}

#[test]
fn a_placeholder_inside_shell_quotes_is_a_load_error_at_its_place() {
    let ws = Workspace::new(
        r#"
[tasks.single]
matrix = { v = ["a"] }
run = "echo '${matrix.v}'"

[tasks.double]
matrix = { v = ["a"] }
run = "echo \"x ${matrix.v}\""

[tasks.fine]
matrix = { v = ["a"] }
run = "echo 'quoted' ${matrix.v} \"also\" \\' ${matrix.v}"
"#,
    );
    let r = ws.check();
    r.code(2).says(&[
        "inside single quotes",
        "taskrun.toml:4:14",
        "inside double quotes",
        // The string holds escapes, so the caret marks the whole string, not the placeholder.
        "taskrun.toml:8:",
        "unquoted",
    ]);
    assert!(
        !r.all().contains("tasks.fine") && !r.all().contains("fine["),
        "{}",
        r.all()
    );
    // In an argv array quotes mean nothing: the same text is fine.
    ws.manifest("[tasks.argv]\nmatrix = { v = [\"a\"] }\nrun = [\"echo\", \"'${matrix.v}'\"]\n");
    ws.check().code(0);
}

#[test]
fn glob_characters_of_a_value_in_inputs_are_matched_literally() {
    let ws = Workspace::new(
        r#"
[tasks.t]
for_each = { csv = "files.csv" }
inputs = ["data/${item.file}"]
outputs = ["out/${item.id}.txt"]
run = "cat data/${item.file} > out/${item.id}.txt"
"#,
    );
    ws.write("files.csv", "id,file\none,a[1].txt\ntwo,b*.txt\n");
    ws.write("data/a[1].txt", "bracket\n")
        .write("data/a1.txt", "what [1] would match as a glob\n")
        .write("data/b*.txt", "star\n")
        .write("data/bx.txt", "what * would match\n");
    std::fs::create_dir_all(ws.path("out")).unwrap();
    let plan = ws.plan_json(&[]);
    assert_eq!(entry(&plan, "t[one]")["inputs"][0], "data/a\\[1\\].txt");
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("out/one.txt"), "bracket\n");

    // Files the unescaped patterns would match are not inputs.
    ws.write("data/a1.txt", "changed\n")
        .write("data/bx.txt", "changed\n");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(report["summary"]["cached"], 2, "{report:#}");

    // The literal file is.
    ws.write("data/a[1].txt", "changed\n");
    let (_, report) = ws.run_report(&[], 0);
    assert_eq!(entry(&report, "t[one]")["status"], "succeeded");
    assert_eq!(entry(&report, "t[two]")["status"], "cached");

    // And with the literal file gone, the pattern matches nothing (not `a1.txt`).
    std::fs::remove_file(ws.path("data/a[1].txt")).unwrap();
    let (run, report) = ws.run_report(&["-k"], 1);
    assert_eq!(
        entry(&report, "t[one]")["status"],
        "failed",
        "{}",
        run.all()
    );
}

// Shell contexts where single quotes do not quote. Each feeds a value that would create a
// marker file if its quoting could be undone, and requires either a load error (exit 2) or
// a run that executes nothing.

fn no_injection_through(run: &str) {
    let ws = Workspace::new(&format!(
        "[tasks.t]\nfor_each = {{ csv = \"items.csv\" }}\nrun = {run}\ncache = \"off\"\n"
    ));
    ws.write(
        "items.csv",
        &format!(
            "id,value\n1,{}\n2,{}\n3,{}\n",
            csv_field("x\ntouch pwned-1 #"),
            csv_field(";touch pwned-2;#"),
            csv_field("$(touch pwned-3)"),
        ),
    );
    let r = ws.run(&["-k"]);
    assert!(r.code == 2 || r.code == 0 || r.code == 1, "{}", r.all());
    assert_nothing_executed(&ws);
}

#[test]
fn a_placeholder_in_a_shell_comment_cannot_inject() {
    no_injection_through(r#""true # ${item.value}""#);
}

#[test]
fn a_placeholder_after_a_backslash_cannot_inject() {
    no_injection_through(r#""echo \\${item.value}""#);
}

/// Arithmetic expansion reads its text like double quotes (single quotes quote nothing
/// there), and a backquoted command ends at the value's own backquote: both are load errors.
#[test]
fn a_placeholder_in_arithmetic_or_backquotes_cannot_inject() {
    for run in [
        r#"": $(( ${item.value} ))""#,
        r#""x=$((${item.value}+0))""#,
        r#""echo $(( $(echo 1) + ${item.value} ))""#,
        r#""echo $(echo $((${item.value})))""#,
        r#""echo `echo ${item.value}`""#,
        r#""echo \"`echo ${item.value}`\"""#,
    ] {
        no_injection_through(run);
        let ws = Workspace::new(&format!(
            "[tasks.t]\nmatrix = {{ v = [\"1\"] }}\nrun = {}\n",
            run.replace("item.value", "matrix.v")
        ));
        ws.check().code(2).says(&["inside"]);
    }
}

#[test]
fn a_placeholder_in_a_here_document_cannot_inject() {
    no_injection_through("\"\"\"cat <<EOF\n${item.value}\nEOF\"\"\"");
}

#[test]
fn item_values_are_data_never_templates() {
    let http = Http::start();
    http.route("/d/a.csv", Route::ok("a"));
    let ws = Workspace::new(
        r#"
[tasks.argv]
for_each = { lines = "urls.txt" }
run = ["sh", "-c", "printf '%s' \"$1\" > \"$2\"", "sh", "${item.line}", "out/argv-${item.stem}"]
cache = "off"

[tasks.shell]
for_each = { lines = "urls.txt" }
run = "printf '%s' ${item.line} > out/shell-${item.stem}"
cache = "off"

[tasks.get]
for_each = { lines = "urls.txt" }
download = { url = "${item.line}", dest = "raw/${item.name}" }
retry = 1
"#,
    );
    let base = http.url("/d");
    let lines = [
        format!("{base}/a.csv"),
        format!("{base}/${{env.HOME}}/b.csv"),
        format!("{base}/${{secret.FANOUT_TOKEN}}/c.csv"),
        format!("{base}/$$/d.csv"),
    ];
    ws.write("urls.txt", &(lines.join("\n") + "\n"));
    std::fs::create_dir_all(ws.path("out")).unwrap();
    let r = ws
        .cmd(&["taskrun.toml", "-k", "-q"])
        .env("FANOUT_TOKEN", "s3cr3t-value")
        .output()
        .unwrap();
    let r = crate::support::Run::from(r);
    // Only a.csv exists on the server; the others are 404s, and nothing is a usage error.
    r.code(1);
    for (line, stem) in lines.iter().zip(["a", "b", "c", "d"]) {
        assert_eq!(ws.read(&format!("out/argv-{stem}")), *line);
        assert_eq!(ws.read(&format!("out/shell-{stem}")), *line);
    }
    assert_eq!(ws.read("raw/a.csv"), "a");
    // The secret never reached the server, nor any file taskrun wrote.
    assert!(
        !r.all().contains("s3cr3t-value"),
        "secret in the output: {}",
        r.all()
    );
    for e in walkdir::WalkDir::new(ws.path(".taskrun"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let bytes = std::fs::read(e.path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cr3t-value"),
            "secret in {}",
            e.path().display()
        );
    }
    // The request went to the literal path, percent-encoded, not to the secret's value.
    assert_eq!(http.hits("/d/s3cr3t-value/c.csv"), 0);
    assert_eq!(
        http.hits("/d/$%7Bsecret.FANOUT_TOKEN%7D/c.csv"),
        1,
        "{:?}",
        http.requests("/d/${secret.FANOUT_TOKEN}/c.csv")
    );
    assert_eq!(http.hits("/d/$$/d.csv"), 1);
}

#[test]
fn shell_text_that_only_looks_like_a_comment_backslash_or_here_document_is_fine() {
    let ws = Workspace::new(
        r#"
[tasks.a]
for_each = { csv = "items.csv" }
run = "printf '%s|' a#${item.value} ${item.value}# $# \\\\${item.value} > out/a-${item.id}"
cache = "off"

[tasks.b]
for_each = { csv = "items.csv" }
run = """cat <<'EOF' > out/b-${item.id}
literal
EOF
printf '%s' ${item.value} >> out/b-${item.id}"""
cache = "off"
"#,
    );
    ws.write("items.csv", "id,value\n1,x y\n");
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("out/a-1"), "a#x y|x y#|0|\\x y|");
    assert_eq!(ws.read("out/b-1"), "literal\nx y");
}
