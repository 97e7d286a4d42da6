//! The files a run writes for its user, as the user reads them: the report, the lockfile and
//! the timings page are created like any tool's files (0o666 less the umask), a task's log
//! holds the bytes it printed, and the JSON log spells statuses as the report does.

use std::os::unix::fs::PermissionsExt;

use crate::fault_server::Route;
use crate::http::Http;
use crate::support::Workspace;

fn mode(ws: &Workspace, rel: &str) -> u32 {
    std::fs::metadata(ws.path(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn reports_lockfile_and_pages_are_readable_by_others_under_umask_022() {
    let http = Http::start();
    http.route("/a.csv", Route::ok("alpha\n"));
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data/a.csv\" }}\n",
        http.url("/a.csv")
    ));
    // The umask of a login shell; the test process's own may differ.
    let cmd = ws.cmd(&[]);
    let bin = cmd.get_program().to_owned();
    let out = std::process::Command::new("sh")
        .current_dir(ws.root())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .arg("-c")
        .arg("umask 022 && exec \"$0\" taskrun.toml --report out/r.json --junit j.xml --trace t.json --timings")
        .arg(&bin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "out/r.json",
        "j.xml",
        "t.json",
        "taskrun.lock",
        "data/a.csv",
    ] {
        assert_eq!(mode(&ws, f), 0o644, "{f}");
    }
    let runs: Vec<_> = std::fs::read_dir(ws.path(".taskrun/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}"); // the report and its page
    for p in runs {
        let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o644, "{}", p.display());
    }
}

#[test]
fn a_log_keeps_the_bytes_a_command_printed_with_secrets_redacted() {
    let ws = Workspace::new(
        "[tasks.x]\nrun = \"printf 'a\\\\377\\\\376b ${secret.TOKEN} c\\\\n'; exit 1\"\n",
    );
    let mut cmd = ws.cmd(&["taskrun.toml"]);
    cmd.env("TOKEN", "hunter2-long-secret");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let dir = ws.path(".taskrun/logs");
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read(run.join("x.log")).unwrap();
    assert_eq!(log, b"a\xff\xfeb *** c\n");
    // Line endings too: `\r\n` stays (it became `\n`), and output that does not end in a
    // newline gets none (one was added).
    ws.write(
        "taskrun.toml",
        "[tasks.y]\nrun = \"printf 'a\\\\r\\\\nb\\\\r\\\\n\\\\n\\\\rend'\"\n",
    );
    ws.run(&["-q"]).code(0);
    let id = ws.last_report()["run_id"].as_str().unwrap().to_string();
    let log = std::fs::read(ws.path(&format!(".taskrun/logs/{id}/y.log"))).unwrap();
    assert_eq!(log, b"a\r\nb\r\n\n\rend");
}

#[test]
fn the_json_log_spells_statuses_and_sources_as_the_report_does() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo hi > o.txt\"\noutputs = [\"o.txt\"]\n");
    ws.run(&[]).code(0);
    let r = ws.run(&["--log-format", "json"]);
    r.code(0);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let field = |event: &str, name: &str| {
        events
            .iter()
            .find(|e| e["event"] == event)
            .map(|e| e[name].clone())
            .unwrap_or_else(|| panic!("no {event} in {}", r.stdout))
    };
    assert_eq!(field("run_finished", "status"), "succeeded");
    assert_eq!(field("cache_hit", "source"), "local");
}

#[test]
fn a_report_path_that_cannot_be_written_stops_the_run_before_it_starts() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo ran > o.txt\"\noutputs = [\"o.txt\"]\n");
    std::fs::write(ws.path("file"), "x").unwrap();
    for flag in ["--report", "--junit", "--trace"] {
        let r = ws.run(&[flag, "file/r.out"]);
        r.code(2);
        assert!(
            r.stderr
                .contains(&format!("cannot write {flag} file/r.out")),
            "{}",
            r.stderr
        );
        assert!(!ws.path("o.txt").exists(), "the task ran: {}", r.stdout);
    }
    let r = ws.run(&["--junit", "."]);
    r.code(2);
    assert!(r.stderr.contains("it is a directory"), "{}", r.stderr);
    // Nor may a report take the place of the manifest or of an output, or go to `-`.
    for (path, why) in [
        ("taskrun.toml", "it is the manifest itself"),
        ("o.txt", "it is an output of task `a`"),
        ("-", "stdout"),
        (".taskrun/r.json", "it lies in taskrun's state directory"),
        ("taskrun.toml/r.json", "taskrun.toml is not a directory"),
    ] {
        let r = ws.run(&["--report", path]);
        r.code(2);
        assert!(r.stderr.contains(why), "{path}: {}", r.stderr);
    }
    // A directory that does not exist yet is made when the report is written, not before
    // the run (where a task's `mkdir` would find it).
    ws.write(
        "taskrun.toml",
        "[tasks.a]\nrun = \"mkdir new && echo ran > new/o.txt\"\noutputs = [\"new/o.txt\"]\n",
    );
    ws.run(&["--report", "new/dir/r.json"]).code(0);
    assert!(ws.path("new/dir/r.json").is_file());
    // What is no regular file is written into, not replaced (a FIFO's reader gets it).
    let fifo = std::ffi::CString::new(ws.path("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let reader = {
        let path = ws.path("pipe");
        std::thread::spawn(move || std::fs::read_to_string(path).unwrap())
    };
    ws.run(&["--report", "pipe"]).code(0);
    assert!(reader.join().unwrap().contains("\"run_id\""));
    assert!(!ws.path("pipe").is_file());
    // With no reader the run waits for one 5 s, not forever (deaf to Ctrl-C, before).
    let r = ws.run(&["--report", "pipe"]);
    r.code(0);
    assert!(r.stderr.contains("no process read from it"), "{}", r.stderr);
}

/// A fan-out expanded after its producer has no instance outputs until then: the
/// directory its instances write into is taken all the same, by `--report` and by
/// `timings -o` (the report overwrote `clean/a.txt`, an instance's output, before).
#[test]
fn a_report_may_not_go_where_the_instances_of_a_later_fanout_write() {
    let ws = Workspace::new(
        "[tasks.unpack]\nrun = \"mkdir -p unpacked && echo a > unpacked/a.txt\"\noutputs = [\"unpacked\"]\n\
         [tasks.proc]\ndeps = [\"unpack\"]\nfor_each = { glob = \"unpacked/*.txt\" }\n\
         run = \"mkdir -p clean && cp ${item.path} clean/${item.name}\"\noutputs = [\"clean/${item.name}\"]\n",
    );
    let says = "it lies in the output directory of fan-out task `proc`";
    let r = ws.run(&["--report", "clean/a.txt"]);
    r.code(2);
    assert!(r.stderr.contains(says), "{}", r.stderr);
    assert!(!ws.path("unpacked").exists(), "nothing may run");
    ws.run(&["-q"]).code(0);
    assert_eq!(ws.read("clean/a.txt"), "a\n");
    let r = ws
        .cmd(&["timings", "taskrun.toml", "-o", "clean/t.html"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains(says), "{r:?}");
    assert_eq!(ws.read("clean/a.txt"), "a\n");
}

/// One path for two of `--report`, `--junit` and `--trace` would keep only the file written
/// last: refused before the run, also when spelled differently; a FIFO or
/// `/dev/stdout` takes both.
#[test]
fn two_report_flags_may_not_share_a_file() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo ran > o.txt\"\noutputs = [\"o.txt\"]\n");
    std::os::unix::fs::symlink("target.json", ws.path("dangling.json")).unwrap();
    for (args, says) in [
        (
            ["--report", "out/r.json", "--trace", "./out/r.json"],
            "cannot write --trace ./out/r.json: it is --report's file too",
        ),
        (
            ["--junit", "out/r.json", "--report", "out/../out/r.json"],
            "cannot write --junit out/r.json: it is --report's file too",
        ),
        // A dangling link names the file it would be written through to.
        (
            ["--report", "dangling.json", "--junit", "target.json"],
            "cannot write --junit target.json: it is --report's file too",
        ),
    ] {
        let r = ws.run(&args);
        r.code(2);
        assert!(r.stderr.contains(says), "{}", r.stderr);
        assert!(!ws.path("o.txt").exists(), "the task ran: {}", r.stdout);
    }
    let r = ws.run(&["--report", "/dev/stdout", "--junit", "/dev/stdout"]);
    r.code(0);
    assert!(
        r.stdout.contains("\"run_id\"") && r.stdout.contains("<testsuites"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_secret_of_several_lines_is_redacted_in_the_console_log_and_junit() {
    let ws = Workspace::new(
        "[tasks.t]\nrun = \"echo \\\"token: $TOKEN\\\"; printf '%s\\\\n' \\\"$KEY\\\"; exit 1\"\n\
         env = { TOKEN = \"${secret.TOKEN}\", KEY = \"${secret.KEY}\" }\n",
    );
    let mut cmd = ws.cmd(&["taskrun.toml", "--junit", "j.xml"]);
    cmd.env("TOKEN", "abc123def\n");
    cmd.env(
        "KEY",
        "-----BEGIN KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END KEY-----",
    );
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("token: ***"), "{stdout}");
    let log_dir = std::fs::read_dir(ws.path(".taskrun/logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(log_dir.join("t.log")).unwrap();
    let junit = std::fs::read_to_string(ws.path("j.xml")).unwrap();
    for (what, text) in [("console", &*stdout), ("log", &log), ("junit", &junit)] {
        for leak in ["abc123def", "b3BlbnNzaC1rZXktdjE", "BEGIN KEY"] {
            assert!(!text.contains(leak), "{what} shows {leak}: {text}");
        }
    }
}

/// SPEC §6: run ids are sortable, also for runs started within one second, so the newest
/// report is the last by name (`latest`, and which reports are pruned, go by it).
#[test]
fn run_ids_sort_in_start_order_within_one_second() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n");
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let path = format!("r{i}.json");
            ws.run(&["--report", &path]).code(0);
            let report: serde_json::Value = serde_json::from_str(&ws.read(&path)).unwrap();
            report["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}
