//! `[cache] remote`, `instance` and `headers`: an http(s) URL picks the Bazel HTTP protocol,
//! a grpc(s) endpoint the REAPI cache (SPEC §5, §11); `TASKRUN_REMOTE_CACHE` takes both.

use crate::support::Workspace;

fn check(manifest: &str, env: Option<&str>) -> (i32, String) {
    let ws = Workspace::new(manifest);
    let mut cmd = ws.taskrun(&["check", "taskrun.toml"]);
    if let Some(url) = env {
        cmd.env("TASKRUN_REMOTE_CACHE", url);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

const TASK: &str = "[tasks.a]\nrun = \"true\"\n";

#[test]
fn grpc_and_http_remotes_are_accepted() {
    for good in [
        "remote = \"grpc://127.0.0.1:9092\"",
        "remote = \"grpcs://cache.example.com\"\ninstance = \"main\"\nheaders = { Authorization = \"Bearer ${secret.CACHE_TOKEN}\" }",
        "remote = \"http://user:pw@cache.internal:8080/taskrun\"\nremote_write = false",
    ] {
        let (code, text) = check(&format!("[cache]\n{good}\n{TASK}"), None);
        assert_eq!(code, 0, "{good}: {text}");
    }
}

#[test]
fn bad_remotes_are_reported_at_their_place() {
    let cases = [
        ("remote = \"grpc://cache\"", "a grpc:// URL needs a port"),
        (
            "remote = \"grpc://me:pw@cache:1\"",
            "[cache] headers = { authorization",
        ),
        ("remote = \"grpc://cache:1/main\"", "`[cache] instance`"),
        (
            "remote = \"ftp://cache/x\"",
            "must be an http(s) or grpc(s) URL",
        ),
        (
            "remote = \"http://cache:8080\"\ninstance = \"main\"",
            "`cache.instance` applies only to a gRPC remote cache",
        ),
        (
            "remote = \"grpc://cache:1\"\nheaders = { grpc-timeout = \"1s\" }",
            "reserved by gRPC",
        ),
        (
            "remote = \"http://ci:${secret.RPW}@${vars.host}/tr4\"",
            "`cache.remote` is not interpolated",
        ),
        // Nor are the cache dir and the instance name: taken as written, a placeholder
        // would have named a directory `${vars.c}`.
        (
            "dir = \".cache/${vars.c}\"",
            "`cache.dir` is not interpolated",
        ),
        (
            "remote = \"grpc://cache:1\"\ninstance = \"${vars.i}\"",
            "`cache.instance` is not interpolated",
        ),
    ];
    for (lines, message) in cases {
        let (code, text) = check(&format!("[cache]\n{lines}\n{TASK}"), None);
        assert_eq!(code, 2, "{lines}: {text}");
        assert!(text.contains(message), "{lines}: {text}");
    }
}

#[test]
fn the_environment_variable_takes_a_grpc_endpoint_and_hides_a_bad_one() {
    let (code, text) = check(TASK, Some("grpc://127.0.0.1:9092"));
    assert_eq!(code, 0, "{text}");
    let (code, text) = check(TASK, Some("grpc://me:hunter2@cache"));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("TASKRUN_REMOTE_CACHE is not a usable"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
