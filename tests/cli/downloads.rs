//! Downloads through the real binary against a scripted HTTP server (issue 4, SPEC §3, §4, §6,
//! §8): retries, 4xx, mirrors, pins, resume, bytes, the per-host limit, secrets, interrupts.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::fault_server::{Fault, Route};
use crate::http::{Http, body, files_under, sha, wait_until};
use crate::support::{Workspace, task};

/// Fast, deterministic retries: waits of 20 ms then 40 ms.
const FAST_RETRY: &str =
    r#"retry = { max_attempts = 3, initial_delay = "20ms", factor = 2.0, jitter = "none" }"#;

fn attempts(t: &Value) -> &Vec<Value> {
    t["attempts"].as_array().unwrap()
}

fn field<'a>(t: &'a Value, name: &str) -> Vec<&'a Value> {
    attempts(t).iter().map(|a| &a[name]).collect()
}

#[test]
fn two_503s_then_200_succeeds_on_the_third_attempt() {
    let http = Http::start();
    let data = body(70_000);
    http.route(
        "/a.bin",
        Route::ok(data.clone()).times(2, Fault::Status(503)),
    );
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data/a.bin\" }}\n{FAST_RETRY}\n",
        http.url("/a.bin")
    ));
    ws.run(&[]).code(0);
    assert_eq!(http.hits("/a.bin"), 3);
    assert_eq!(std::fs::read(ws.path("data/a.bin")).unwrap(), data);

    let report = ws.last_report();
    assert_eq!(report["status"], "succeeded");
    let t = task(&report, "get");
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["kind"], "download");
    assert_eq!(field(t, "number"), [1, 2, 3]);
    assert_eq!(field(t, "http_status"), [503, 503, 200]);
    assert_eq!(field(t, "outcome"), ["failed", "failed", "succeeded"]);
    // jitter = "none": exactly initial_delay, then × factor; nothing after the last attempt.
    assert_eq!(
        field(t, "wait_ms"),
        [&Value::from(20), &Value::from(40), &Value::Null]
    );
    let url = Value::from(http.url("/a.bin"));
    assert_eq!(field(t, "url"), [&url, &url, &url]);
    assert!(
        attempts(t)[0]["error"].as_str().unwrap().contains("503"),
        "{t:#}"
    );
    assert!(attempts(t)[2]["error"].is_null(), "{t:#}");
    assert!(t["error"].is_null(), "{t:#}");
    assert_eq!(t["bytes"], data.len());
    assert_eq!(report["summary"]["bytes_downloaded"], data.len());
    assert_eq!(report["summary"]["succeeded"], 1);
}

#[test]
fn a_404_fails_at_once_after_one_request() {
    let http = Http::start();
    // No route: the server answers 404.
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data/missing.bin\" }}\n{FAST_RETRY}\n",
        http.url("/missing.bin")
    ));
    ws.run(&[]).code(1);
    assert_eq!(http.hits("/missing.bin"), 1, "a 404 is not retried");
    let report = ws.last_report();
    assert_eq!(report["status"], "failed");
    let t = task(&report, "get");
    assert_eq!(t["status"], "failed");
    assert!(t["error"].as_str().unwrap().contains("404"), "{t:#}");
    assert_eq!(field(t, "http_status"), [404]);
    assert_eq!(field(t, "outcome"), ["failed"]);
    assert_eq!(field(t, "wait_ms"), [&Value::Null]);
    assert!(!ws.path("data/missing.bin").exists());
    assert!(
        !files_under(ws.root())
            .iter()
            .any(|f| f.starts_with("data/")),
        "{:?}",
        files_under(ws.root())
    );
    assert_eq!(report["summary"]["failed"], 1);
}

#[test]
fn a_failing_mirror_passes_to_the_next_and_the_report_names_the_one_that_served() {
    let http = Http::start();
    let one = body(10_000);
    let two = body(20_000);
    http.route("/down/one", Route::ok(vec![]).times(10, Fault::Status(500)));
    http.route("/good/one", Route::ok(one.clone()));
    http.route("/good/two", Route::ok(two.clone()));
    // `/gone/two` has no route: 404.
    let ws = Workspace::new(&format!(
        r#"
[tasks.after-500]
download = {{ urls = ["{}", "{}"], dest = "one.bin" }}
retry = 1

[tasks.after-404]
download = {{ urls = ["{}", "{}"], dest = "two.bin" }}
retry = 1
"#,
        http.url("/down/one"),
        http.url("/good/one"),
        http.url("/gone/two"),
        http.url("/good/two"),
    ));
    ws.run(&[]).code(0);
    assert_eq!(std::fs::read(ws.path("one.bin")).unwrap(), one);
    assert_eq!(std::fs::read(ws.path("two.bin")).unwrap(), two);
    assert_eq!(http.hits("/down/one"), 1);
    assert_eq!(http.hits("/gone/two"), 1);
    let report = ws.last_report();
    for (name, served) in [("after-500", "/good/one"), ("after-404", "/good/two")] {
        let t = task(&report, name);
        assert_eq!(t["status"], "succeeded", "{t:#}");
        assert_eq!(
            attempts(t).len(),
            1,
            "mirrors are tried within one attempt: {t:#}"
        );
        assert_eq!(attempts(t)[0]["url"], http.url(served), "{t:#}");
        assert_eq!(attempts(t)[0]["http_status"], 200, "{t:#}");
    }
    assert_eq!(
        report["summary"]["bytes_downloaded"],
        (one.len() + two.len()) as u64
    );
}

#[test]
fn a_sha256_mismatch_on_every_attempt_fails_naming_both_digests() {
    let http = Http::start();
    let data = body(30_000);
    let wanted = sha(b"something else entirely");
    http.route("/p.bin", Route::ok(data.clone()));
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data/p.bin\", sha256 = \"{wanted}\" }}\n{FAST_RETRY}\n",
        http.url("/p.bin")
    ));
    ws.run(&[]).code(1);
    assert_eq!(
        http.hits("/p.bin"),
        3,
        "a mismatch is retried up to max_attempts"
    );
    let report = ws.last_report();
    let t = task(&report, "get");
    assert_eq!(t["status"], "failed");
    assert_eq!(field(t, "outcome"), ["failed", "failed", "failed"]);
    let err = t["error"].as_str().unwrap();
    assert!(err.contains(&wanted), "expected digest missing: {err}");
    assert!(err.contains(&sha(&data)), "actual digest missing: {err}");
    assert!(!ws.path("data/p.bin").exists());
    assert!(
        !ws.path("data/p.bin.part").exists(),
        "a mismatch discards the partial file"
    );
    // Nothing was cached for the failed task.
    assert!(
        !files_under(ws.root())
            .iter()
            .any(|f| f.starts_with(".taskrun/cache/ac/")),
        "{:?}",
        files_under(ws.root())
    );
}

#[test]
fn a_truncated_body_resumes_with_range_and_bytes_add_up() {
    let http = Http::start();
    let data = body(300_000);
    let small = body(1_234);
    http.route(
        "/t.bin",
        Route::ok(data.clone())
            .etag("\"t1\"")
            .then(Fault::Truncate(100_000)),
    );
    http.route("/s.bin", Route::ok(small.clone()));
    let ws = Workspace::new(&format!(
        r#"
[tasks.big]
download = {{ url = "{}", dest = "data/t.bin", sha256 = "{}" }}
{FAST_RETRY}

[tasks.small]
download = {{ url = "{}", dest = "data/s.bin" }}
"#,
        http.url("/t.bin"),
        sha(&data),
        http.url("/s.bin"),
    ));
    ws.run(&[]).code(0);
    assert_eq!(std::fs::read(ws.path("data/t.bin")).unwrap(), data);
    assert!(!ws.path("data/t.bin.part").exists());
    assert!(!ws.path("data/t.bin.part.json").exists());
    let reqs = http.requests("/t.bin");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), None);
    assert_eq!(reqs[1].header("range"), Some("bytes=100000-"));
    assert_eq!(reqs[1].header("if-range"), Some("\"t1\""));

    let report = ws.last_report();
    let t = task(&report, "big");
    assert_eq!(field(t, "outcome"), ["failed", "succeeded"]);
    assert_eq!(field(t, "http_status")[1], 206);
    // SPEC §4: a transfer's bytes are the bytes received in this run (both attempts).
    assert_eq!(t["bytes"], data.len(), "{t:#}");
    assert_eq!(task(&report, "small")["bytes"], small.len());
    assert_eq!(
        report["summary"]["bytes_downloaded"],
        (data.len() + small.len()) as u64
    );
}

#[test]
fn max_per_host_bounds_concurrent_requests_through_the_binary() {
    let http = Http::start();
    let mut m = String::from("[http]\nmax_per_host = 2\n\n");
    for i in 0..6 {
        // Each answer waits until 3 requests are in flight (never, if the limit holds), all 6
        // have arrived, or 300 ms passed: enough overlap for a broken limit to show.
        http.route(
            &format!("/f{i}"),
            Route::ok(body(5_000)).hold_until(3, 6, Duration::from_millis(300)),
        );
        m.push_str(&format!(
            "[tasks.f{i}]\ndownload = {{ url = \"{}\", dest = \"d/f{i}\" }}\n\n",
            http.url(&format!("/f{i}"))
        ));
    }
    let ws = Workspace::new(&m);
    ws.run(&["-j", "6"]).code(0);
    for i in 0..6 {
        assert_eq!(http.hits(&format!("/f{i}")), 1);
    }
    let peak = http.max_in_flight();
    assert!(
        peak <= 2,
        "max_per_host = 2 but {peak} requests were in flight"
    );
    assert_eq!(peak, 2, "downloads did not overlap at all");
}

// ---- secrets (issue 4 point 6, SPEC §2 Interpolation) ----

const SECRET_MANIFEST: &str = r#"
[tasks.get]
download = { url = "URL", dest = "data/s.bin", headers = { Authorization = "Bearer ${secret.TR_TOKEN}" } }

[tasks.say]
env = { T = "${secret.TR_TOKEN}" }
run = "echo token=$T; echo token=$T >&2"
"#;

fn secret_workspace(http: &Http) -> Workspace {
    http.route("/s.bin", Route::ok(body(4_000)));
    Workspace::new(&SECRET_MANIFEST.replace("URL", &http.url("/s.bin")))
}

/// Fails when `secret` occurs in any file under the workspace.
fn assert_nowhere_on_disk(ws: &Workspace, secret: &str) {
    let files = files_under(ws.root());
    assert!(
        files.iter().any(|f| f.starts_with(".taskrun/runs/")),
        "{files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(ws.path(f)).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in {f}"
        );
    }
}

#[test]
fn a_secret_reaches_the_server_and_nothing_taskrun_writes_or_prints() {
    let http = Http::start();
    let ws = secret_workspace(&http);
    let secret = format!("tok-{}-{:x}", std::process::id(), rand_suffix());
    let out = ws
        .cmd(&[
            "taskrun.toml",
            "-v",
            "--report",
            "out/report.json",
            "--junit",
            "out/junit.xml",
        ])
        .env("TR_TOKEN", &secret)
        .output()
        .unwrap();
    let run = crate::support::Run::from(out);
    run.code(0);
    let reqs = http.requests("/s.bin");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    assert!(!run.stdout.contains(&secret), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains(&secret), "stderr: {}", run.stderr);
    // The command did print it, redacted.
    let logs: Vec<_> = files_under(ws.root())
        .into_iter()
        .filter(|f| f.starts_with(".taskrun/logs/") && f.ends_with("say.log"))
        .collect();
    assert_eq!(logs.len(), 1);
    assert!(
        ws.read(&logs[0]).contains("token=***"),
        "{}",
        ws.read(&logs[0])
    );
    assert!(ws.path("out/report.json").exists());
    assert!(ws.path("out/junit.xml").exists());
    // The download was cached: its record is among the files checked.
    assert!(
        files_under(ws.root())
            .iter()
            .any(|f| f.starts_with(".taskrun/cache/ac/")),
        "{:?}",
        files_under(ws.root())
    );
    assert_nowhere_on_disk(&ws, &secret);

    for args in [
        &["plan", "taskrun.toml"][..],
        &["plan", "taskrun.toml", "--format", "json"][..],
        &["taskrun.toml", "--dry-run"][..],
    ] {
        let run =
            crate::support::Run::from(ws.cmd(args).env("TR_TOKEN", &secret).output().unwrap());
        run.code(0);
        assert!(
            !run.stdout.contains(&secret),
            "{args:?} stdout: {}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(&secret),
            "{args:?} stderr: {}",
            run.stderr
        );
        if args.contains(&"json") {
            // Redacted, not dropped.
            let plan: Value = serde_json::from_str(&run.stdout).unwrap();
            let tasks = plan["tasks"].as_array().unwrap();
            let get = tasks.iter().find(|t| t["name"] == "get").unwrap();
            let say = tasks.iter().find(|t| t["name"] == "say").unwrap();
            assert_eq!(get["action"]["headers"]["Authorization"], "Bearer ***");
            assert_eq!(say["action"]["env"]["T"], "***");
        }
    }
    assert_nowhere_on_disk(&ws, &secret);
    assert_eq!(http.hits("/s.bin"), 1, "plan touches no network");
}

#[test]
fn a_secret_in_a_url_is_redacted_in_errors_reports_and_logs() {
    let http = Http::start();
    http.route("/ok", Route::ok(body(100)));
    let secret = format!("urltok-{}-{:x}", std::process::id(), rand_suffix());
    let ws = Workspace::new(&format!(
        r#"
[tasks.ok]
download = {{ url = "{}?key=${{secret.TR_TOKEN}}", dest = "ok.bin" }}

[tasks.bad]
download = {{ urls = ["{}/${{secret.TR_TOKEN}}", "{}?key=${{secret.TR_TOKEN}}"], dest = "bad.bin" }}
retry = 1
"#,
        http.url("/ok"),
        http.url("/gone"),
        http.url("/missing"),
    ));
    let run = crate::support::Run::from(
        ws.cmd(&["taskrun.toml", "-k", "-v"])
            .env("TR_TOKEN", &secret)
            .output()
            .unwrap(),
    );
    run.code(1);
    assert_eq!(
        http.requests("/ok")[0].target,
        format!("/ok?key={secret}"),
        "the server gets the real value"
    );
    assert_eq!(http.hits(&format!("/gone/{secret}")), 1);
    assert_eq!(http.hits("/missing"), 1);
    assert!(!run.stdout.contains(&secret), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains(&secret), "stderr: {}", run.stderr);
    let report = ws.last_report();
    assert_eq!(task(&report, "ok")["status"], "succeeded");
    assert_eq!(task(&report, "bad")["status"], "failed");
    assert!(
        task(&report, "bad")["error"]
            .as_str()
            .unwrap()
            .contains("***"),
        "{report:#}"
    );
    assert_nowhere_on_disk(&ws, &secret);
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn a_missing_secret_fails_only_the_run_of_the_tasks_that_need_it() {
    let http = Http::start();
    let ws = secret_workspace(&http);
    let without_secret = |args: &[&str]| {
        crate::support::Run::from(ws.cmd(args).env_remove("TR_TOKEN").output().unwrap())
    };
    without_secret(&["check", "taskrun.toml"]).code(0);
    without_secret(&["plan", "taskrun.toml"]).code(0);
    let run = without_secret(&["taskrun.toml", "-k"]);
    run.code(1);
    assert_eq!(http.hits("/s.bin"), 0);
    let report = ws.last_report();
    for name in ["get", "say"] {
        let t = task(&report, name);
        assert_eq!(t["status"], "failed", "{t:#}");
        let err = t["error"].as_str().unwrap_or_default();
        assert!(err.contains("TR_TOKEN"), "{name}: {err}");
    }
    assert!(
        run.stdout.contains("TR_TOKEN") || run.stderr.contains("TR_TOKEN"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!ws.path("data/s.bin").exists());
}

// ---- interrupt during a download (issue 4 point 1, SPEC §8) ----

#[test]
fn sigint_mid_download_keeps_only_resume_files_and_the_next_run_resumes() {
    let http = Http::start();
    // More than the writer's two 128 KiB buffers before the stall, so bytes reach the disk.
    let data = body(1_000_000);
    http.route(
        "/i.bin",
        Route::ok(data.clone())
            .etag("\"i1\"")
            .then(Fault::Stall(600_000)),
    );
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"data/i.bin\", sha256 = \"{}\" }}\n",
        http.url("/i.bin"),
        sha(&data)
    ));
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = ws.path("data/i.bin.part");
    wait_until("a non-empty .part file", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    crate::support::Run::from(out).code(130);
    assert!(!ws.path("data/i.bin").exists());
    assert!(part.exists());
    assert!(ws.path("data/i.bin.part.json").exists());
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept <= 600_000, "{kept}");
    let report = ws.last_report();
    assert_eq!(report["status"], "interrupted");
    let get = task(&report, "get");
    assert_eq!(get["status"], "cancelled");
    // Issue 14 bug 3 (SPEC §6): the bytes received and the URL tried, not null.
    let got = get["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("bytes: {get}"));
    assert!(got >= kept && got <= 600_000, "bytes {got}, kept {kept}");
    let last = attempts(get).last().unwrap();
    assert_eq!(last["outcome"], "cancelled");
    assert_eq!(last["url"], http.url("/i.bin"), "{last}");
    // The 200 had arrived: SPEC §6's HTTP status of the attempt.
    assert_eq!(last["http_status"], 200, "{last}");
    // No cache entry for an interrupted task.
    assert!(
        !files_under(ws.root())
            .iter()
            .any(|f| f.starts_with(".taskrun/cache/ac/"))
    );

    http.route("/i.bin", Route::ok(data.clone()).etag("\"i1\""));
    ws.run(&[]).code(0);
    assert_eq!(std::fs::read(ws.path("data/i.bin")).unwrap(), data);
    assert!(!part.exists());
    let reqs = http.requests("/i.bin");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(reqs[1].header("if-range"), Some("\"i1\""));
    let report = ws.last_report();
    let t = task(&report, "get");
    assert_eq!(t["status"], "succeeded");
    assert_eq!(attempts(t)[0]["http_status"], 206);
    assert_eq!(
        t["bytes"],
        data.len() as u64 - kept,
        "bytes received in this run"
    );
}

#[test]
fn sigint_during_a_retry_wait_keeps_the_part_file_for_the_next_run() {
    let http = Http::start();
    let data = body(500_000);
    http.route(
        "/w.bin",
        Route::ok(data.clone())
            .etag("\"w1\"")
            .then(Fault::Truncate(300_000)),
    );
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"{}\", dest = \"w.bin\", sha256 = \"{}\" }}\n\
         retry = {{ max_attempts = 3, initial_delay = \"60s\", jitter = \"none\" }}\n",
        http.url("/w.bin"),
        sha(&data)
    ));
    let child = ws
        .cmd(&["taskrun.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = ws.path("w.bin.part");
    // The failed attempt flushes what it received; the task then waits 60 s.
    wait_until("the truncated attempt's part file", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() == 300_000)
    });
    let sent = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    crate::support::Run::from(out).code(130);
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "the wait was not cut short"
    );
    assert!(!ws.path("w.bin").exists());
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 300_000);
    assert!(ws.path("w.bin.part.json").exists());
    let report = ws.last_report();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(task(&report, "get")["status"], "cancelled");

    ws.run(&[]).code(0);
    assert_eq!(std::fs::read(ws.path("w.bin")).unwrap(), data);
    let reqs = http.requests("/w.bin");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("range"), Some("bytes=300000-"));
    assert_eq!(task(&ws.last_report(), "get")["bytes"], 200_000);
}
