//! The cache dir where `[cache] dir` puts it, inside the workspace: it is taskrun's own
//! state, never one of a task's inputs.

use crate::support::{Workspace, task};

/// `inputs = ["**/*"]` does not take in the store's files (`ac/`, `cas/`, `index/`): they
/// change with every run, so every run was a miss.
#[test]
fn a_cache_dir_inside_the_workspace_is_never_an_input() {
    let ws = Workspace::new(
        "[cache]\ndir = \"build-cache\"\n\n[tasks.a]\ninputs = [\"**/*\"]\n\
         outputs = [\"out/o.txt\"]\nrun = \"mkdir -p out && cat a.src > out/o.txt\"\n",
    );
    ws.write("a.src", "x\n");
    // The first rerun runs again: the task's own output is one of its inputs now.
    for _ in 0..2 {
        ws.run(&[]).code(0);
    }
    assert!(ws.path("build-cache/ac").is_dir());
    for _ in 0..2 {
        let r = ws.run(&[]);
        r.code(0);
        assert_eq!(
            task(&ws.last_report(), "a")["status"],
            "cached",
            "{}",
            r.stdout
        );
    }
    let plan = ws.exec(&["plan", "taskrun.toml"]);
    plan.code(0);
    assert!(!plan.stdout.contains("build-cache"), "{}", plan.stdout);
}

/// The same when `[cache] dir` names a link to the real directory: neither the link nor
/// its target is walked.
#[test]
fn a_cache_dir_reached_through_a_link_is_never_an_input() {
    let ws = Workspace::new(
        "[cache]\ndir = \"cl\"\n\n[tasks.a]\ninputs = [\"**/*\"]\n\
         outputs = [\"o.txt\"]\nrun = \"cat a.src > o.txt\"\n",
    );
    ws.write("a.src", "x\n");
    std::fs::create_dir(ws.path("realc")).unwrap();
    std::os::unix::fs::symlink("realc", ws.path("cl")).unwrap();
    for _ in 0..2 {
        ws.run(&[]).code(0);
    }
    assert!(ws.path("realc/ac").is_dir());
    let r = ws.run(&[]);
    r.code(0);
    assert_eq!(
        task(&ws.last_report(), "a")["status"],
        "cached",
        "{}",
        r.stdout
    );
}

/// `cache stats|gc|clean MANIFEST` read only `[cache] dir`: a manifest whose tasks do not
/// load now (an unset `${env.X}`) still has its cache tended (they refused with exit 2,
/// breaking a nightly gc), while a broken `[cache] dir` is still an error.
#[test]
fn cache_commands_need_only_the_cache_table_to_load() {
    let ws = Workspace::new(
        "[cache]\ndir = \"store\"\n\n[tasks.a]\noutputs = [\"o\"]\nrun = \"echo ${env.NEEDED} > o\"\n",
    );
    let mut run = ws.cmd(&["taskrun.toml"]);
    run.env("NEEDED", "1");
    assert!(run.output().unwrap().status.success());
    assert!(ws.path("store/ac").is_dir());
    let stats = ws.exec(&["cache", "stats", "taskrun.toml"]);
    stats.code(0);
    assert!(stats.stdout.contains("store"), "{}", stats.stdout);
    ws.exec(&["cache", "gc", "taskrun.toml", "--max-size", "1GiB"])
        .code(0);
    ws.exec(&["cache", "clean", "taskrun.toml"]).code(0);
    assert!(!ws.path("store/ac").exists());
    ws.write(
        "taskrun.toml",
        "[cache]\ndir = \"../elsewhere\"\n\n[tasks.a]\nrun = \"true\"\n",
    );
    let r = ws.exec(&["cache", "clean", "taskrun.toml"]);
    r.code(2);
    assert!(r.stderr.contains("cache.dir"), "{}", r.stderr);
    // A misspelt key is still an error: `clean` would have wiped the default cache.
    ws.write(
        "taskrun.toml",
        "[cache]\ndirr = \"store\"\n\n[tasks.a]\nrun = \"true\"\n",
    );
    let r = ws.exec(&["cache", "clean", "taskrun.toml"]);
    r.code(2);
    assert!(r.stderr.contains("dirr"), "{}", r.stderr);
}

/// A cache dir that is a file, or under one: the run goes on without the cache saying so
/// plainly (it said "File exists (os error 17)" or "Not a directory (os error 20)", and
/// warned about unreadable journals), and the cache commands refuse it as a mistake (exit 2,
/// not 1, which means a task failed; `stats` called it an empty cache).
#[test]
fn a_cache_dir_that_is_a_file_is_said_to_be_one() {
    let ws = Workspace::new("[tasks.a]\noutputs = [\"o\"]\nrun = \"echo x > o\"\n");
    ws.write("afile", "x");
    let file = ws.path("afile");
    for (cache, says) in [
        (file.clone(), "it is a file, not a directory".to_string()),
        (
            file.join("sub"),
            format!("{} is a file, not a directory", file.display()),
        ),
    ] {
        let with_file_as_cache = |args: &[&str]| {
            let mut cmd = ws.cmd(args);
            cmd.env("TASKRUN_CACHE_DIR", &cache);
            crate::support::Run::from(cmd.output().unwrap())
        };
        let out = with_file_as_cache(&["taskrun.toml"]);
        out.code(0);
        assert!(out.stderr.contains(&says), "{}", out.stderr);
        assert!(!out.stderr.contains("os error"), "{}", out.stderr);
        assert!(!out.stderr.contains("unreadable"), "{}", out.stderr);
        for args in [
            &["cache", "clean"][..],
            &["cache", "stats"],
            &["cache", "gc", "--max-size", "1GiB"],
        ] {
            let r = with_file_as_cache(args);
            r.code(2);
            assert!(r.stderr.contains(&says), "{args:?}: {}", r.stderr);
        }
    }
    assert_eq!(ws.read("afile"), "x");
}
