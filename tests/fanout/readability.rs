//! Readable at scale (SPEC §9 "Showing many instances"): the text plan shows a fan-out task
//! once with its count, first and last keys and template, plus only the instances whose
//! predicted status differs; `--expand` lists all; the summary table groups more than 10.

use crate::fault_server::Route;
use crate::served::Http;
use crate::support::{Workspace, with_status};

/// 12 instances `conv[f01.txt]` … `conv[f12.txt]`, each copying its input.
fn twelve() -> Workspace {
    let ws = Workspace::new(
        r#"
[tasks.conv]
description = "convert one file"
for_each = { glob = "in/*.txt" }
inputs = ["${item.path}"]
outputs = ["out/${item.name}"]
run = "cp ${item.path} out/${item.name}"

[tasks.merge]
deps = ["conv"]
run = "cat out/*.txt > merged.txt"
outputs = ["merged.txt"]
"#,
    );
    for i in 1..=12 {
        ws.write(&format!("in/f{i:02}.txt"), &format!("{i}\n"));
    }
    std::fs::create_dir_all(ws.path("out")).unwrap();
    ws
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn the_text_plan_shows_a_fanout_once_with_count_first_last_and_template() {
    let ws = twelve();
    let r = ws.plan_text(&[]);
    r.code(0).says(&[
        "conv[*]",
        "12 instances: conv[f01.txt] … conv[f12.txt]",
        "each: cp ${item.path} out/${item.name}",
        "convert one file",
        "cache: 12 miss",
        "after: conv[*] (12 instances)",
    ]);
    for i in 2..=11 {
        let name = format!("conv[f{i:02}.txt]");
        assert!(!r.stdout.contains(&name), "{name} listed:\n{}", r.stdout);
    }
    assert_eq!(
        lines_with(&r.stdout, "12 instances:").len(),
        1,
        "{}",
        r.stdout
    );
}

#[test]
fn after_a_run_the_plan_lists_only_the_instance_that_will_run_with_its_reason() {
    let ws = twelve();
    ws.run(&["-q"]).code(0);
    let r = ws.plan_text(&[]);
    r.code(0).says(&["cache: 12 hit"]);
    assert!(!r.stdout.contains("will run"), "{}", r.stdout);

    ws.write("in/f07.txt", "seven\n");
    let r = ws.plan_text(&[]);
    r.code(0).says(&[
        "1 of 12 will run:",
        "conv[f07.txt]",
        "input in/f07.txt changed",
        "11 hit, 1 miss",
    ]);
    for i in (1..=12).filter(|i| *i != 7) {
        let name = format!("conv[f{i:02}.txt]");
        // Only as the first/last key of the header line, never as a listed instance.
        assert!(
            lines_with(&r.stdout, &name)
                .iter()
                .all(|l| l.contains("12 instances:")),
            "{name} listed:\n{}",
            r.stdout
        );
    }
}

/// Instances whose outputs are gone are hits that rewrite files: listed under the count
/// (the summary said `12 hit` and hid them; only `--expand` showed the restore).
#[test]
fn the_plan_lists_the_instances_it_will_restore() {
    let ws = twelve();
    ws.run(&["-q"]).code(0);
    std::fs::remove_file(ws.path("out/f03.txt")).unwrap();
    let r = ws.plan_text(&[]);
    r.code(0).says(&[
        "cache: 12 hit",
        "1 of 12 are restored from the cache:",
        "conv[f03.txt]  hit (output out/f03.txt missing: restore)",
    ]);
    ws.write("in/f07.txt", "seven\n");
    ws.plan_text(&[]).code(0).says(&[
        "11 hit, 1 miss",
        "2 of 12 differ:",
        "conv[f03.txt]  hit (output out/f03.txt missing: restore)",
        "conv[f07.txt]  miss (input in/f07.txt changed",
    ]);
}

#[test]
fn plan_expand_lists_every_instance() {
    let ws = twelve();
    let r = ws.plan_text(&["--expand"]);
    r.code(0);
    for i in 1..=12 {
        let name = format!("conv[f{i:02}.txt]");
        assert!(
            r.stdout.lines().any(|l| l.trim_start().starts_with(&name)),
            "{name} missing:\n{}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains(&format!("cp in/f{i:02}.txt out/f{i:02}.txt"))
        );
    }
}

#[test]
fn the_json_plan_counts_instances_and_has_no_entry_for_the_fanout_task() {
    let ws = twelve();
    let plan = ws.plan_json(&[]);
    let tasks = plan["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 13);
    assert!(tasks.iter().all(|t| t["name"] != "conv"));
    let merge = tasks.iter().find(|t| t["name"] == "merge").unwrap();
    assert_eq!(merge["task"], "merge");
    assert!(merge["item"].is_null());
    assert_eq!(merge["deps"].as_array().unwrap().len(), 12);
}

#[test]
fn the_summary_of_more_than_ten_instances_is_one_row_of_counts_plus_each_failure() {
    let ws = Workspace::new(
        r#"
[tasks.conv]
matrix = { n = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }
run = "test ${matrix.n} != 4 && test ${matrix.n} != 9"

[tasks.small]
matrix = { n = [1, 2] }
run = "true"
"#,
    );
    let (r, report) = ws.run_report(&["-k"], 1);
    assert_eq!(report["summary"]["total"], 14);
    assert_eq!(with_status(&report, "failed"), ["conv[4]", "conv[9]"]);
    let all = r.all();
    let table: Vec<&str> = all
        .lines()
        .skip_while(|l| !l.starts_with("TASK"))
        .collect::<Vec<_>>();
    let table_text = table.join("\n");
    let group = lines_with(&table_text, "conv[*]");
    assert_eq!(group.len(), 1, "{table_text}");
    assert!(group[0].contains("(12)"), "{table_text}");
    assert!(group[0].contains("10 succeeded"), "{table_text}");
    assert!(group[0].contains("2 failed"), "{table_text}");
    // Each failed instance gets its own row; no succeeded one does.
    assert_eq!(lines_with(&table_text, "conv[4]").len(), 1, "{table_text}");
    assert_eq!(lines_with(&table_text, "conv[9]").len(), 1, "{table_text}");
    assert!(lines_with(&table_text, "conv[4]")[0].contains("failed"));
    assert!(
        lines_with(&table_text, "conv[1]").is_empty(),
        "{table_text}"
    );
    // Ten or fewer instances keep a row each.
    assert_eq!(lines_with(&table_text, "small[1]").len(), 1, "{table_text}");
    assert_eq!(lines_with(&table_text, "small[2]").len(), 1, "{table_text}");
    assert!(
        lines_with(&table_text, "small[*]").is_empty(),
        "{table_text}"
    );
    assert!(table_text.contains("14 tasks"), "{table_text}");
}

#[test]
fn ten_instances_keep_a_row_each_and_eleven_are_grouped() {
    let ws = Workspace::new(
        r#"
[tasks.ten]
matrix = { n = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }
run = "true"

[tasks.eleven]
matrix = { n = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }
run = "true"
"#,
    );
    let r = ws.run(&[]);
    r.code(0);
    let all = r.all();
    let table: String = all
        .lines()
        .skip_while(|l| !l.starts_with("TASK"))
        .collect::<Vec<_>>()
        .join("\n");
    for n in 1..=10 {
        assert_eq!(lines_with(&table, &format!("ten[{n}]")).len(), 1, "{table}");
    }
    let group = lines_with(&table, "eleven[*]");
    assert_eq!(group.len(), 1, "{table}");
    assert!(
        group[0].contains("(11)") && group[0].contains("11 succeeded"),
        "{table}"
    );
    assert!(lines_with(&table, "eleven[3]").is_empty(), "{table}");
}

#[test]
fn a_plan_of_a_thousand_instances_stays_short_and_counts_with_separators() {
    let values: Vec<String> = (0..100).map(|n| n.to_string()).collect();
    let ws = Workspace::new(&format!(
        "[tasks.get]\nmatrix = {{ a = [\"x\", \"y\", \"z\", \"w\", \"v\", \"u\", \"t\", \"s\", \"r\", \"q\"], n = [{}] }}\nrun = \"echo ${{matrix.a}} ${{matrix.n}} > out/${{matrix.a}}${{matrix.n}}\"\noutputs = [\"out/${{matrix.a}}${{matrix.n}}\"]\n",
        values.join(", ")
    ));
    let r = ws.plan_text(&[]);
    r.code(0)
        .says(&["1,000 instances: get[x,0] … get[q,99]", "cache: 1,000 miss"]);
    assert!(r.stdout.lines().count() < 20, "{}", r.stdout);
    assert_eq!(ws.plan_json(&[])["tasks"].as_array().unwrap().len(), 1000);
}

/// The one run's log directory.
fn log_dir(ws: &Workspace) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(ws.path(".taskrun/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Every log file of the run: name → content.
fn logs(ws: &Workspace) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(log_dir(ws))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            assert!(p.is_file(), "not a file: {}", p.display());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_instance_logs_to_its_own_file_with_slashes_escaped() {
    let ws = Workspace::new(
        r#"
[tasks.show]
for_each = { glob = "photos/**/*.jpg" }
run = "echo log of ${item.path}"
"#,
    );
    ws.write("photos/2024/a.jpg", "a")
        .write("photos/b.jpg", "b");
    ws.run(&["-q"]).code(0);
    let logs = logs(&ws);
    assert_eq!(logs.len(), 2, "{logs:?}");
    let a = logs
        .iter()
        .find(|(n, _)| n.starts_with("show[2024") && n.ends_with("a.jpg].log"))
        .unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!(a.1, "log of photos/2024/a.jpg\n");
    assert_eq!(logs["show[b.jpg].log"], "log of photos/b.jpg\n");
}

#[test]
fn keys_that_differ_only_by_slash_and_underscore_keep_separate_logs() {
    let ws = Workspace::new(
        r#"
[tasks.show]
for_each = { glob = "photos/**/*.jpg" }
run = "echo log of ${item.path}"
"#,
    );
    ws.write("photos/2024/a.jpg", "a")
        .write("photos/2024_a.jpg", "b");
    ws.run(&["-q"]).code(0);
    let logs = logs(&ws);
    assert_eq!(logs.len(), 2, "{logs:?}");
    for content in logs.values() {
        assert_eq!(content.lines().count(), 1, "{logs:?}");
    }
}

#[test]
fn an_instance_with_a_very_long_key_still_gets_its_log() {
    let ws = Workspace::new("[tasks.row]\nfor_each = { csv = \"p.csv\" }\nrun = \"echo hi\"\n");
    ws.write("p.csv", &format!("id\n{}\nshort\n", "a".repeat(300)));
    ws.run(&["-q"]).code(0);
    let logs = logs(&ws);
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(logs.values().all(|c| c == "hi\n"), "{logs:?}");
}

#[test]
fn junit_has_one_testcase_per_instance() {
    let ws = Workspace::new(
        "[tasks.row]\nfor_each = { csv = \"p.csv\" }\nrun = \"test ${item.id} = a\"\n",
    );
    ws.write("p.csv", "id\na\nb\n");
    ws.run(&["-q", "-k", "--junit", "j.xml"]).code(1);
    let xml = ws.read("j.xml");
    assert!(
        xml.contains("tests=\"2\"") && xml.contains("failures=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("<testcase name=\"row[a]\""), "{xml}");
    assert!(xml.contains("<testcase name=\"row[b]\""), "{xml}");
}

#[test]
fn on_a_tie_the_plan_names_the_instance_that_will_run_and_why() {
    let ws = Workspace::new(
        r#"
[tasks.get]
for_each = { lines = "urls.txt" }
run = "echo ${item.line} > o/${item.name}"
outputs = ["o/${item.name}"]
"#,
    );
    ws.write("urls.txt", "http://one/a.csv\nhttp://one/b.csv\n");
    std::fs::create_dir_all(ws.path("o")).unwrap();
    ws.run(&["-q"]).code(0);
    ws.write("urls.txt", "http://one/a.csv\nhttp://two/b.csv\n");
    let r = ws.plan_text(&[]);
    r.code(0)
        .says(&["1 of 2 will run", "get[b.csv]", "changed"]);
}

#[test]
fn list_groups_a_large_fan_out_and_explain_points_at_an_instance() {
    let ws = Workspace::new(
        "[tasks.row]\ndescription = \"Row ${item.id}\"\nfor_each = { csv = \"p.csv\" }\nrun = \"true\"\n\n[tasks.few]\nmatrix = { n = [1, 2] }\nrun = \"true\"\n",
    );
    let ids: String = (0..11).map(|i| format!("r{i:02}\n")).collect();
    ws.write("p.csv", &format!("id\n{ids}"));
    let list = ws.exec(&["list", "taskrun.toml"]);
    list.code(0).says(&[
        "row[*]",
        "11 instances: row[r00] … row[r10]",
        "few[1]",
        "few[2]",
    ]);
    assert!(!list.stdout.contains("row[r05]"), "{}", list.stdout);

    ws.exec(&["explain", "taskrun.toml", "row"])
        .code(2)
        .says(&["fan-out task of 11 instances", "'row[r00]'"]);
    ws.exec(&["explain", "taskrun.toml", "row[r05]"])
        .code(0)
        .says(&["row[r05]: off"]);
}

/// The live view over 1,000 downloads, forced into a pipe (`--progress always`): every line
/// it prints above itself is there (each failed instance), the summary groups the rest, and
/// the view is drawn at a bounded rate. Redrawn once per finished download it wrote ~1 MB
/// here and doubled the run's time; in a pipe indicatif hid it and every line with it.
#[test]
fn the_live_view_of_a_thousand_downloads_keeps_every_failure_and_draws_at_a_bounded_rate() {
    let http = Http::start();
    let missing = [17, 503];
    let mut urls = String::new();
    for n in 0..1000 {
        let path = format!("/f/{n:04}.bin");
        if !missing.contains(&n) {
            http.route(&path, Route::ok(vec![b'x'; 2048]));
        }
        urls.push_str(&http.url(&path));
        urls.push('\n');
    }
    let ws = Workspace::new(
        r#"
[pipeline]
concurrency = 16

[tasks.get]
for_each = { lines = "urls.txt" }
download = { url = "${item.line}", dest = "raw/${item.name}" }
"#,
    );
    ws.write("urls.txt", &urls);
    let r = ws.run(&["-k", "--progress", "always"]);
    r.code(1);
    let out = r.all();
    for n in missing {
        let line = format!("=> get[{n:04}.bin]: failed");
        assert!(
            out.contains(&line),
            "{line} missing from the live view's lines"
        );
    }
    assert!(out.contains("get[*] (1000)"), "no summary row");
    assert!(
        out.contains("998 succeeded"),
        "no counts in the summary row"
    );
    assert!(
        !out.contains("=> get[0001.bin]"),
        "a succeeded instance has no line of its own"
    );
    assert!(
        out.len() < 300_000,
        "{} bytes: the view was drawn per task, not per frame",
        out.len()
    );
    assert_eq!(std::fs::read_dir(ws.path("raw")).unwrap().count(), 998);
}
