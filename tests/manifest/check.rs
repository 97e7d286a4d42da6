//! `taskrun check`: every problem in SPEC §2 "Validation", all in one run, each placed.

use crate::support::Workspace;

/// `taskrun check taskrun.toml`, which must exit 2; its stderr.
fn refused(ws: &Workspace) -> String {
    let out = ws
        .taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    String::from_utf8(out.stderr).unwrap()
}

const BROKEN: &str = r#"version = 1

[pipeline]
name = "broken"
concurency = 4

[pools]
net = 2

[tasks.a]
run = "echo a"
deps = ["c"]
retries = 3

[tasks.b]
run = "echo b"
download = { url = "http://127.0.0.1:1/x", dest = "x" }
deps = ["a"]

[tasks.c]
run = "echo c"
deps = ["b", "missing-task"]
outputs = ["out/c.csv"]

[tasks.d]
run = "echo ${vars.nope}"
outputs = ["out"]
cwd = "../elsewhere"
uses = { net = 3, disk = 1 }
timeout = "ten seconds"
retry = { max_attempts = 0 }

[tasks.e]
download = { url = "not a url", dest = "/etc/passwd", sha256 = "abc", max_bytes = "12 parsecs" }
inputs = ["../secrets/*"]
cache_ttl = "1 fortnight"
"#;

#[test]
fn reports_every_problem_with_its_place() {
    let ws = Workspace::new(BROKEN);
    let stderr = refused(&ws);
    let expected = [
        "unknown key `concurency` in [pipeline]",
        "did you mean `concurrency`?",
        "unknown key `retries` in task `a`",
        "use `retry.max_attempts`: the total number of attempts",
        "task `b` has two kinds: `run` and `download`",
        "depends on `missing-task`, which does not exist",
        "dependency cycle: a -> c -> b -> a",
        "output `out` contains an output of task `c`",
        "unknown variable `vars.nope`",
        "cwd `../elsewhere` escapes the manifest's directory",
        "asks 3 slots of pool `net`, which has 2",
        "uses pool `disk`, which is not declared",
        "malformed duration `ten seconds`",
        "`max_attempts = 0` would never run the task",
        "malformed URL `not a url`",
        "dest `/etc/passwd` is absolute",
        "malformed sha256 `abc`",
        "malformed size `12 parsecs`",
        "input pattern `../secrets/*` escapes the manifest's directory",
        "malformed duration `1 fortnight`",
    ];
    let mut missing = Vec::new();
    for e in expected {
        if !stderr.contains(e) {
            missing.push(e);
        }
    }
    assert!(missing.is_empty(), "missing {missing:?} in:\n{stderr}");
    // Every problem carries file:line:col.
    assert!(stderr.contains("[taskrun.toml:5:1]"), "{stderr}");
    assert!(stderr.contains("error: taskrun.toml has"), "{stderr}");
}

#[test]
fn diagnostics_render_with_a_caret() {
    let ws =
        Workspace::new("[tasks.a]\nrun = \"echo\"\nretries = 2\n\n[tasks.b]\ndeps = [\"aa\"]\n");
    let out = ws
        .taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    insta::assert_snapshot!(String::from_utf8(out.stderr).unwrap());
}

#[test]
fn toml_syntax_errors_are_placed_too() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo\n");
    let stderr = refused(&ws);
    assert!(stderr.contains("TOML syntax error"), "{stderr}");
    assert!(stderr.contains("taskrun.toml:2:"), "{stderr}");
}

#[test]
fn a_mistake_in_defaults_is_reported_once_where_it_is() {
    let manifest = "[defaults]\nretry = { max_attemps = 2, initial_delay = \"x\" }\n\
                    timeout = \"5 parsecs\"\n";
    for tasks in ["", "[tasks.a]\nrun = \"true\"\n[tasks.b]\nrun = \"true\"\n"] {
        let ws = Workspace::new(&format!("{manifest}{tasks}"));
        let stderr = refused(&ws);
        assert!(stderr.contains("has 3 problems"), "{stderr}");
        for said in [
            "unknown key `max_attemps` in `defaults.retry`",
            "`x` for `defaults.retry.initial_delay`",
            "for `defaults.timeout`",
        ] {
            assert_eq!(stderr.matches(said).count(), 1, "{said}: {stderr}");
        }
        assert!(!stderr.contains("`tasks.a."), "{stderr}");
    }
    // `uses` too, whether it is no table or names pools that do not exist.
    let three = "[tasks.a]\nrun = \"true\"\n[tasks.b]\nrun = \"true\"\n[tasks.c]\nrun = \"true\"\n";
    for (uses, said) in [
        ("[\"net\"]", "`defaults.uses` must be a table"),
        (
            "{ nett = 1 }",
            "`[defaults]` uses pool `nett`, which is not declared",
        ),
    ] {
        let ws = Workspace::new(&format!(
            "[pools]\nnet = 2\n[defaults]\nuses = {uses}\n{three}"
        ));
        let stderr = refused(&ws);
        assert!(stderr.contains("has 1 problem"), "{stderr}");
        assert_eq!(stderr.matches(said).count(), 1, "{said}: {stderr}");
    }
}

#[test]
fn vars_in_any_order_cycles_and_broken_vars_are_said_once_and_plainly() {
    let ws = Workspace::new(
        "[vars]\nb = \"${vars.c}-b\"\nc = \"${vars.d}\"\nd = \"x\"\n\
         a = \"${env.TASKRUN_TEST_SURELY_UNSET}\"\n[tasks.t]\nrun = \"echo ${vars.a} ${vars.b}\"\n",
    );
    let stderr = refused(&ws);
    // `b` uses `c` declared after it: fine. `a` fails on its own; its use is no new problem.
    assert!(stderr.contains("has 1 problem"), "{stderr}");
    assert!(stderr.contains("TASKRUN_TEST_SURELY_UNSET"), "{stderr}");
    ws.write(
        "taskrun.toml",
        "[vars]\nb = \"x\"\n[tasks.t]\nrun = \"echo ${vars.b}\"\n",
    );
    ws.taskrun(&["check", "taskrun.toml"]).assert().code(0);

    ws.write(
        "taskrun.toml",
        "[vars]\na = \"${vars.b}\"\nb = \"${vars.a}\"\nc = \"${vars.c}\"\n[tasks.t]\nrun = \"echo ${vars.a} ${env.}\"\noutputs = [\".\"]\nretry = 99999999999\n",
    );
    let stderr = refused(&ws);
    for said in [
        "variable `a` is part of a cycle of vars: a, b",
        "variable `c` refers to itself",
        "`${env.}` names no variable",
        "output `.` names no file",
        "`tasks.t.retry.max_attempts` must be between 1 and 4294967295",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    assert!(!stderr.contains("unknown variable"), "{stderr}");
    assert!(!stderr.contains("outside the workspace"), "{stderr}");
}

/// A `--var` naming nothing in the manifest is a typo that would run with the default: it is
/// refused before anything runs, with the closest name; a var only used (not declared) may
/// still be given.
#[test]
fn a_var_flag_that_names_nothing_is_refused_with_the_closest_name() {
    let ws = Workspace::new(
        "[vars]\nmirror = \"http://127.0.0.1:9\"\n[tasks.t]\nrun = \"echo ${vars.mirror} ${vars.tag} > t.txt\"\n",
    );
    for args in [&["run"][..], &["plan"], &["check"]] {
        let out = ws
            .taskrun(args)
            .args(["taskrun.toml", "--var", "mirorr=x", "--var", "tag=1"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("--var mirorr: the manifest neither declares nor uses a var `mirorr`"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("did you mean `--var mirror=...`?"),
            "{stderr}"
        );
        assert!(stderr.contains("has 1 problem"), "{stderr}");
    }
    assert!(!ws.root().join("t.txt").exists(), "nothing may run");
    ws.taskrun(&["taskrun.toml", "--var", "tag=1", "-q"])
        .assert()
        .code(0);
    assert_eq!(ws.read("t.txt"), "http://127.0.0.1:9 1\n");
}

#[test]
fn a_pipeline_name_with_a_control_character_is_refused() {
    let ws = Workspace::new("[pipeline]\nname = \"a\\u001b[31mb\"\n[tasks.t]\nrun = \"true\"\n");
    let stderr = refused(&ws);
    assert!(stderr.contains("holds a control character"), "{stderr}");
    assert!(stderr.contains("taskrun.toml:2:8"), "{stderr}");
}

#[test]
fn columns_count_characters_and_bytes_that_are_not_utf8_are_placed() {
    let ws = Workspace::new("[tasks.t]\nrun = \"日本語 ${vars.y}\"\n");
    ws.taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("taskrun.toml:2:12"));
    std::fs::write(
        ws.root().join("taskrun.toml"),
        b"[tasks.t]\nrun = \"\xff\"\n",
    )
    .unwrap();
    ws.taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "not UTF-8 text at line 2, column 8",
        ));
}

#[test]
fn version_other_than_one_is_refused() {
    let ws = Workspace::new("version = 2\n");
    ws.taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unsupported manifest version 2"));
}

#[test]
fn unset_env_without_default_is_an_error_but_secrets_are_not() {
    let ws = Workspace::new(
        "[tasks.a]\nrun = \"echo ${env.TASKRUN_TEST_SURELY_UNSET} ${secret.TASKRUN_TEST_TOKEN}\"\n",
    );
    ws.taskrun(&["check", "taskrun.toml"])
        .env_remove("TASKRUN_TEST_TOKEN")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "environment variable `TASKRUN_TEST_SURELY_UNSET` is not set",
        ))
        .stderr(predicates::str::contains("has 1 problem"));
}

#[test]
fn clean_manifests_pass_and_all_are_checked() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n");
    ws.write("bad.toml", "[tasks.a]\nrun = 3\n");
    ws.taskrun(&["check", "taskrun.toml"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("ok: taskrun.toml (1 task)"));
    ws.taskrun(&["check", "taskrun.toml", "bad.toml"])
        .assert()
        .code(2)
        .stdout(predicates::str::contains("ok: taskrun.toml"))
        .stderr(predicates::str::contains("`tasks.a.run` must be a string"));
}

#[test]
fn github_actions_gets_error_annotations() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\nretries = 1\n");
    ws.taskrun(&["check", "taskrun.toml"])
        .env("GITHUB_ACTIONS", "true")
        .assert()
        .code(2)
        .stdout(predicates::str::contains(
            "::error file=taskrun.toml,line=3,col=1::unknown key `retries`",
        ));
}

#[test]
fn shipped_pipelines_pass_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = crate::support::taskrun();
    cmd.current_dir(root).arg("check");
    let mut n = 0;
    for entry in std::fs::read_dir(format!("{root}/pipelines")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            cmd.arg(p);
            n += 1;
        }
    }
    assert!(n >= 3, "pipelines/ should hold at least three manifests");
    cmd.assert().code(0);
}

/// A placeholder inside a string with escapes or over several lines is pointed at where it
/// was written (it was the start of the whole string).
#[test]
fn a_placeholder_is_placed_inside_escaped_and_multi_line_strings() {
    let ws = Workspace::new(
        "[tasks.a]\nrun = \"\"\"\nfirst line\n  then ${vars.nope} \\\n  more\n\"\"\"\n\
         [tasks.b]\nrun = \"echo \\u00e9 ${vars.n2}\"\n\
         [tasks.c]\nrun = \"\\\\ ${vars.n3}\"\n",
    );
    let text = refused(&ws);
    for at in [
        "taskrun.toml:4:8",
        "taskrun.toml:8:20",
        "taskrun.toml:10:11",
    ] {
        assert!(text.contains(at), "{at}: {text}");
    }
    // The same with CRLF line ends, which a multi-line string keeps.
    ws.manifest("[tasks.a]\r\nrun = \"\"\"\r\necho one\r\n  echo ${vars.n2}\r\n\"\"\"\r\n");
    let text = refused(&ws);
    assert!(text.contains("taskrun.toml:4:8"), "{text}");
}

/// SPEC §2: all problems together. A broken `service` table does not hide the `timeout` a
/// service may not have, and a task with two kinds still has its second kind's mistakes said.
#[test]
fn a_broken_kind_hides_no_other_problem_of_its_task() {
    let ws = Workspace::new(
        "[tasks.s]\nservice = { run = \"x\", ready = { tcp = \"a:1\", url = \"http://x\" } }\n\
         timeout = \"1s\"\n\
         [tasks.t]\nrun = \"true\"\ndownload = { url = \"ftp://x\", dest = \"../x\" }\n",
    );
    let text = refused(&ws);
    for said in [
        "`ready` needs exactly one of `url` or `tcp`",
        "`timeout` does not apply to a service",
        "task `t` has two kinds",
        "must be an http or https URL",
        "dest `../x` escapes",
    ] {
        assert!(text.contains(said), "{said}: {text}");
    }
}

/// A matrix whose `exclude` is wrong still has its `include` rows checked: both are said in
/// one `check` (the `include` row was reported only once `exclude` was fixed).
#[test]
fn a_matrixs_exclude_and_include_problems_are_said_together() {
    let ws = Workspace::new(
        "[tasks.a]\nrun = \"echo ${matrix.year}\"\n[tasks.a.matrix]\nyear = [\"2023\", \"2024\"]\n\
         month = [\"01\"]\nexclude = [{ yaer = \"2024\" }]\ninclude = [{ year = \"2022\" }]\n",
    );
    let stderr = refused(&ws);
    for said in [
        "has 2 problems",
        "`exclude` names `yaer`, which is not an axis of the matrix",
        "taskrun.toml:6:",
        "an `include` row of task `a` must give every axis, in order: year, month",
        "taskrun.toml:7:",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
}

/// `retry` on a service or a group, and `exit_codes` on a download, were accepted and then
/// ignored: each is an error at its place, as `timeout` on a service is.
#[test]
fn retry_where_it_cannot_apply_is_refused_at_its_place() {
    let ws = Workspace::new(
        "[tasks.svc]\nservice = { run = \"exit 1\", ready = { tcp = \"127.0.0.1:1\" } }\n\
         retry = { max_attempts = 3 }\n[tasks.g]\ndeps = [\"svc\"]\nretry = 2\n\
         [tasks.d]\ndownload = { url = \"http://127.0.0.1:1/x\", dest = \"x\" }\n\
         retry = { max_attempts = 2, exit_codes = [3] }\n",
    );
    let stderr = refused(&ws);
    for said in [
        "has 3 problems",
        "`retry` does not apply to a service",
        "taskrun.toml:3:9",
        "`retry` does not apply to a group",
        "taskrun.toml:6:9",
        "`exit_codes` does not apply to a download",
        "taskrun.toml:9:42",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    // `[defaults] retry` is for whatever it applies to: no problem for a service.
    ws.write(
        "taskrun.toml",
        "[defaults]\nretry = { max_attempts = 2, exit_codes = [3] }\n\
         [tasks.svc]\nservice = { run = \"sleep 1\", ready = { tcp = \"127.0.0.1:1\" } }\n\
         [tasks.d]\ndownload = { url = \"http://127.0.0.1:1/x\", dest = \"x\" }\n",
    );
    ws.taskrun(&["check", "taskrun.toml"]).assert().code(0);
}

/// `factor = inf` or `nan` is not "below 1.0", as it was called: it is no finite number.
#[test]
fn a_factor_that_is_no_finite_number_is_said_to_be_one() {
    for f in ["inf", "nan", "1e400"] {
        let ws = Workspace::new(&format!(
            "[tasks.t]\nrun = \"true\"\nretry = {{ max_attempts = 2, factor = {f} }}\n"
        ));
        let stderr = refused(&ws);
        assert!(stderr.contains("is not a finite number"), "{f}: {stderr}");
        assert!(!stderr.contains("at least 1.0"), "{f}: {stderr}");
    }
}

/// `timeout = "0s"` failed every attempt at run time; it is refused at its place, as
/// `max_attempts = 0` is. `[defaults]` `retry` and `uses` are not shown for a group or a
/// service, which never retry nor take a pool slot (the plan said 3 attempts, `pools net=1`).
#[test]
fn a_zero_timeout_is_refused_and_defaults_skip_groups_and_services() {
    let ws = Workspace::new("[tasks.z]\nrun = \"true\"\ntimeout = \"0s\"\n");
    let stderr = refused(&ws);
    assert!(
        stderr.contains("`timeout = 0` would fail every attempt at once"),
        "{stderr}"
    );
    assert!(stderr.contains("taskrun.toml:3:11"), "{stderr}");
    ws.write(
        "taskrun.toml",
        "[pools]\nnet = 1\n[defaults]\nuses = { net = 1 }\nretry = 3\n\
         [tasks.srv]\nservice = { run = \"sleep 5\", ready = { tcp = \"127.0.0.1:1\" } }\n\
         [tasks.get]\ndeps = [\"srv\"]\nrun = \"true\"\n[tasks.g]\ndeps = [\"get\"]\n",
    );
    let out = ws
        .taskrun(&["plan", "taskrun.toml", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = |name: &str| {
        plan["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(task("get")["retry"]["max_attempts"], 3);
    for name in ["g", "srv"] {
        let t = task(name);
        assert_eq!(t["retry"]["max_attempts"], 1, "{t:#}");
        assert!(t["pools"].as_object().is_none_or(|p| p.is_empty()), "{t:#}");
    }
    assert_eq!(task("get")["pools"]["net"], 1);
}

/// `taskrun lsit m.toml` read `lsit` as a manifest's name and said only that it is missing:
/// the command it was meant to be is suggested.
#[test]
fn a_misspelt_command_is_suggested() {
    let ws = Workspace::new("[tasks.a]\nrun = \"true\"\n");
    for (typed, meant) in [("lsit", "list"), ("plna", "plan")] {
        let out = ws
            .taskrun(&[typed, "taskrun.toml"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(&format!(
                "hint: did you mean the command `taskrun {meant}`?"
            )),
            "{stderr}"
        );
    }
}

/// An environment name the OS cannot take (`A=B` became `A` with value `B=x`; an empty one)
/// and a NUL byte in a value passed `check` and failed or misbehaved at run time.
#[test]
fn environment_names_and_values_the_os_cannot_take_are_refused() {
    let ws = Workspace::new(
        "[env]\n\"A=B\" = \"x\"\n\"\" = \"y\"\nOK = \"a\\u0000b\"\n[tasks.a]\nrun = \"true\"\nenv = { \"X=1\" = \"z\" }\n",
    );
    let stderr = refused(&ws);
    for said in [
        "has 4 problems",
        "`A=B` cannot name an environment variable",
        "taskrun.toml:2:1",
        "`` cannot name an environment variable",
        "the value of `OK` holds a NUL byte",
        "taskrun.toml:4:6",
        "`X=1` cannot name an environment variable",
        "taskrun.toml:7:9",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
}

/// A download header the request could never carry (a name with a space, a value with a
/// line break) passed `check` and failed each attempt at run time.
#[test]
fn a_header_no_request_can_carry_is_refused() {
    let ws = Workspace::new(
        "[tasks.d]\ndownload = { url = \"http://127.0.0.1:9/x\", dest = \"x\", headers = { \"Bad Header\" = \"x\", X-Ok = \"a\\nb\", X-Fine = \"c\" } }\n",
    );
    let stderr = refused(&ws);
    for said in [
        "has 2 problems",
        "`Bad Header` is not a valid header name",
        "the value of header `X-Ok` holds a line break or NUL",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
}

/// A pool declared with a bad size is one problem: its users were said to use a pool "which
/// is not declared", with advice to declare it. A directory as an input says what to write.
#[test]
fn a_bad_pool_is_one_problem_and_a_directory_input_says_what_to_write() {
    let ws = Workspace::new("[pools]\nnet = 0\n[tasks.a]\nrun = \"true\"\nuses = { net = 5 }\n");
    let stderr = refused(&ws);
    assert!(stderr.contains("has 1 problem"), "{stderr}");
    assert!(!stderr.contains("not declared"), "{stderr}");
    ws.write(
        "taskrun.toml",
        "[tasks.a]\nrun = \"true\"\ninputs = [\"src\"]\n",
    )
    .write("src/a.txt", "a\n");
    let out = ws
        .taskrun(&["taskrun.toml"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "input pattern `src` names a directory, and inputs are files: write `src/**`"
        ),
        "{stdout}"
    );
}

/// `${env.X-d}` (the shell's other default form) pointed at `${env.X-d:-default}`; it now
/// shows the `:-` form of what was meant.
#[test]
fn a_shell_style_env_default_is_shown_its_own_form() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo ${env.TASKRUN_TEST_SURELY_UNSET-x}\"\n");
    let stderr = refused(&ws);
    assert!(
        stderr.contains("a default is written `${env.TASKRUN_TEST_SURELY_UNSET:-x}`"),
        "{stderr}"
    );
}
