//! Issue 13 through the real binary (SPEC §13, §2, §4): `cache clean`/`gc` delete only what
//! taskrun wrote, secrets cannot move a request to another host, port or path, every form of
//! a secret is redacted from every byte taskrun writes, and `[http] read_timeout` fails a
//! stalled response retryably.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::fault_server::{Fault, Route};
use crate::http::{Http, body, files_under};
use crate::support::{Run, Workspace, task};

/// RFC 3986 unreserved characters stay, everything else is `%XX` (space is `%20`).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn run_in(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = ws.cmd(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}x{nanos:x}", std::process::id())
}

fn age(path: &Path, by: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - by)
        .unwrap();
}

/// Files whose name is a sha256 or a sha256 record: what the store writes.
fn store_entries(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or("");
            let stem = name.strip_suffix(".json").unwrap_or(name);
            stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

// ---- cache clean / gc (SPEC §13: delete only what taskrun wrote) ----

const SHARED_DIR: &str = r#"
[cache]
dir = "data"

[tasks.make]
outputs = ["out.txt"]
run = "echo made > out.txt"
"#;

/// The user's files in a cache dir they share with taskrun, including some inside the store's
/// own directories under names the store never uses.
const FOREIGN: &[&str] = &[
    "data/keep.txt",
    "data/cas/notes.txt",
    "data/cas/zz/mine.bin",
    "data/ac/ab/readme.json",
    "data/index/list.bin",
    "data/sub/.tmp-abcdef",
    "data/.tmp-notes.txt",
];

fn shared_dir_workspace() -> Workspace {
    let ws = Workspace::new(SHARED_DIR);
    for f in FOREIGN {
        ws.write(f, &format!("user file {f}\n"));
        age(&ws.path(f), Duration::from_secs(7200));
    }
    run_in(&ws, &["taskrun.toml"], &[]).code(0);
    assert!(!store_entries(&ws.path("data")).is_empty());
    ws
}

fn assert_foreign_files_kept(ws: &Workspace) {
    for f in FOREIGN {
        assert_eq!(ws.read(f), format!("user file {f}\n"), "{f}");
    }
}

#[test]
fn cache_clean_keeps_the_users_files_in_a_shared_cache_dir() {
    let ws = shared_dir_workspace();
    let out = run_in(&ws, &["cache", "clean", "taskrun.toml"], &[]);
    out.code(0);
    assert_foreign_files_kept(&ws);
    assert_eq!(store_entries(&ws.path("data")), Vec::<String>::new());
    assert!(!ws.path("data/stat.bin").exists());
    // Nothing cached is left: the task runs again.
    run_in(&ws, &["taskrun.toml"], &[]).code(0);
    assert_eq!(task(&ws.last_report(), "make")["status"], "succeeded");
}

#[test]
fn cache_gc_keeps_the_users_files_and_sweeps_only_its_own_temp_files() {
    let ws = shared_dir_workspace();
    // A temp file a killed taskrun left in the store: gc's to remove.
    ws.write("data/cas/.tmp-Ab12Cd", "half a blob");
    age(&ws.path("data/cas/.tmp-Ab12Cd"), Duration::from_secs(7200));
    let out = run_in(
        &ws,
        &["cache", "gc", "taskrun.toml", "--max-age", "0s"],
        &[],
    );
    out.code(0);
    assert_foreign_files_kept(&ws);
    assert_eq!(store_entries(&ws.path("data")), Vec::<String>::new());
    assert!(!ws.path("data/cas/.tmp-Ab12Cd").exists());
}

#[test]
fn cache_clean_and_gc_refuse_a_cache_dir_that_is_the_workspace() {
    let ws = Workspace::new(&SHARED_DIR.replace("dir = \"data\"", ""));
    ws.write("src/main.c", "int main(void) { return 0; }\n");
    let blob = format!("cas/ab/ab{}", "0".repeat(62));
    ws.write(&blob, "a blob");
    let root = ws.root().to_str().unwrap().to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["cache", "clean"], "."),
        (&["cache", "clean", "taskrun.toml"], "."),
        (&["cache", "clean", "taskrun.toml"], &root),
        (&["cache", "gc", "--max-age", "0s"], "."),
        (&["cache", "gc", "taskrun.toml", "--max-size", "0"], &root),
    ];
    for (args, dir) in cases {
        let out = run_in(&ws, args, &[("TASKRUN_CACHE_DIR", dir)]);
        out.code(2);
        assert!(
            out.stderr.contains("refus") && out.stderr.contains("workspace"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(ws.path("taskrun.toml").is_file(), "{args:?}");
        assert!(ws.path("src/main.c").is_file(), "{args:?}");
        assert!(ws.path(&blob).is_file(), "{args:?}");
    }
}

#[test]
fn a_run_refuses_the_workspace_as_cache_dir_however_it_is_spelled() {
    let ws = Workspace::new("[tasks.a]\nrun = \"echo a > a.txt\"\noutputs = [\"a.txt\"]\n");
    let root = ws.root().to_str().unwrap().to_string();
    let name = ws.root().file_name().unwrap().to_str().unwrap().to_string();
    let link = ws.root().with_extension("link");
    std::os::unix::fs::symlink(ws.root(), &link).unwrap();
    let spellings = [
        format!("{root}/../{name}"),
        format!("{root}/not-there/.."),
        link.to_str().unwrap().to_string(),
        format!("{root}/.."),
    ];
    for dir in &spellings {
        let out = run_in(&ws, &["taskrun.toml"], &[("TASKRUN_CACHE_DIR", dir)]);
        out.code(2);
        assert!(
            out.stderr.contains("refusing the cache dir"),
            "{dir}: {}",
            out.stderr
        );
        assert!(
            !ws.exists("ac") && !ws.exists("cas") && !ws.exists("a.txt"),
            "{dir}"
        );
    }
    std::fs::remove_file(&link).unwrap();
}

// ---- secrets in URLs (SPEC §13: percent-encoded for the part they land in) ----

#[test]
fn a_secret_in_the_userinfo_cannot_move_the_request_to_another_port() {
    let (good, evil) = (Http::start(), Http::start());
    good.route("/ok", Route::ok(b"fine".to_vec()));
    evil.route("/x", Route::ok(b"evil".to_vec()));
    let pw = format!("pa@{}/x#", evil.addr());
    let ws = Workspace::new(&format!(
        "[tasks.get]\ndownload = {{ url = \"http://user:${{secret.PW}}@{}/ok\", dest = \"ok.bin\" }}\n",
        good.addr()
    ));
    let out = run_in(&ws, &["taskrun.toml"], &[("PW", &pw)]);
    assert_eq!(evil.connections(), 0, "the secret moved the request");
    out.code(0);
    assert_eq!(ws.read("ok.bin"), "fine");
    let auth = good.requests("/ok")[0]
        .header("authorization")
        .map(String::from);
    let want = format!("Basic {}", STANDARD.encode(format!("user:{pw}")));
    assert_eq!(auth.as_deref(), Some(want.as_str()));
}

#[test]
fn secrets_in_userinfo_path_query_and_fragment_are_data_only() {
    let (good, evil) = (Http::start(), Http::start());
    good.route("/u", Route::ok(b"u".to_vec()));
    good.route("/q", Route::ok(b"q".to_vec()));
    good.route("/f", Route::ok(b"f".to_vec()));
    let s = format!("a b+c%2F@{}/x?y=1&z=2#w", evil.addr());
    let g = good.addr();
    let ws = Workspace::new(&format!(
        r#"
[tasks.user]
download = {{ url = "http://${{secret.S}}:${{secret.S}}@{g}/u", dest = "u.bin" }}

[tasks.path]
download = {{ url = "http://{g}/files/${{secret.S}}", dest = "p.bin" }}
retry = 1

[tasks.query]
download = {{ url = "http://{g}/q?key=${{secret.S}}&n=1", dest = "q.bin" }}

[tasks.fragment]
download = {{ url = "http://{g}/f#${{secret.S}}", dest = "f.bin" }}
"#
    ));
    let out = run_in(&ws, &["taskrun.toml", "-k"], &[("S", &s)]);
    assert_eq!(evil.connections(), 0, "the secret moved a request");
    // `path` gets a 404 (no route): its request is checked below.
    out.code(1);

    let auth = good.requests("/u")[0]
        .header("authorization")
        .map(String::from);
    let want = format!("Basic {}", STANDARD.encode(format!("{s}:{s}")));
    assert_eq!(auth.as_deref(), Some(want.as_str()));

    let all = good.all_requests();
    let files: Vec<_> = all
        .iter()
        .filter(|r| r.target.starts_with("/files/"))
        .collect();
    assert_eq!(files.len(), 1, "{all:?}");
    let segment = files[0].target.strip_prefix("/files/").unwrap();
    assert!(!segment.contains(['/', '?', '#']), "{}", files[0].target);
    assert_eq!(percent_decode_str(segment).decode_utf8().unwrap(), s);

    let q = &good.requests("/q")[0].target;
    let query = q.split_once('?').unwrap().1;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        pairs,
        [("key".into(), s.clone()), ("n".into(), "1".into())],
        "{q}"
    );
    assert_eq!(good.requests("/f")[0].target, "/f");
    assert_eq!(task(&ws.last_report(), "query")["status"], "succeeded");
}

#[test]
fn a_secret_in_host_or_port_position_is_refused_at_load_time() {
    let ws = Workspace::new(
        r#"
[tasks.host]
download = { url = "http://${secret.H}/x", dest = "a.bin" }

[tasks.port]
download = { url = "http://127.0.0.1:${secret.P}/x", dest = "b.bin" }

[tasks.after_at]
download = { url = "http://user@${secret.H}/x", dest = "c.bin" }

[tasks.ok]
download = { url = "http://${secret.U}@127.0.0.1:1/${secret.P}?k=${secret.H}", dest = "d.bin" }
"#,
    );
    let out = run_in(&ws, &["check", "taskrun.toml"], &[]);
    out.code(2);
    for line in ["taskrun.toml:3:", "taskrun.toml:6:", "taskrun.toml:9:"] {
        assert!(out.stderr.contains(line), "{line}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("taskrun.toml:12:"), "{}", out.stderr);
    assert!(out.stderr.contains("host"), "{}", out.stderr);
}

// ---- redaction of every form of a secret, in every byte taskrun writes (SPEC §13, §2) ----

/// The forms a secret takes on its way out of a command or a request.
fn forms(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("raw", secret.to_string()),
        (
            "percent %20",
            utf8_percent_encode(secret, STRICT).to_string(),
        ),
        (
            "percent lower-case",
            lower_hex(&utf8_percent_encode(secret, STRICT).to_string()),
        ),
        (
            "form +",
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        ),
        ("base64", STANDARD.encode(secret)),
        ("base64url", URL_SAFE_NO_PAD.encode(secret)),
        ("basic auth", STANDARD.encode(format!("user:{secret}"))),
    ]
}

/// `%2F` -> `%2f`, the rest as it is.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::new();
    let mut hex = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex = 2;
            out.push(c);
        } else if hex > 0 {
            hex -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn assert_no_form(what: &str, bytes: &[u8], forms: &[(&str, String)]) {
    for (name, form) in forms {
        let found = bytes.windows(form.len()).any(|w| w == form.as_bytes());
        assert!(!found, "the {name} form of the secret is in {what}");
    }
}

#[test]
fn no_form_of_a_secret_reaches_any_stream_or_file() {
    let http = Http::start();
    let secret = format!("Sx{} tok+en/=@#?%:{}", unique(), "z".repeat(9));
    let forms = forms(&secret);
    // The command prints every form, read from a file outside the workspace.
    let elsewhere = tempfile::tempdir().unwrap();
    let said = elsewhere.path().join("forms.txt");
    let text: String = forms.iter().map(|(_, f)| format!("{f}\n")).collect();
    std::fs::write(&said, text).unwrap();
    let ws = Workspace::new(&format!(
        r#"
[tasks.say]
env = {{ T = "${{secret.S}}" }}
outputs = ["said.txt"]
run = "cat '{said}'; cat '{said}' >&2; echo \"$T\"; echo done > said.txt"

[tasks.get]
download = {{ url = "http://user:${{secret.S}}@{addr}/missing/${{secret.S}}?k=${{secret.S}}", dest = "dl/x.bin" }}
retry = 1
"#,
        said = said.display(),
        addr = http.addr(),
    ));
    let env = [("S", secret.as_str())];
    let mut outputs = Vec::new();
    let runs: [&[&str]; 4] = [
        &[
            "taskrun.toml",
            "-k",
            "-v",
            "--report",
            "out/report.json",
            "--junit",
            "out/junit.xml",
        ],
        &["taskrun.toml", "-k", "-v", "--log-format", "json"],
        &["plan", "taskrun.toml", "--format", "json"],
        &["explain", "taskrun.toml", "say"],
    ];
    for args in runs {
        let out = run_in(&ws, args, &env);
        outputs.push((format!("{args:?}"), out));
    }
    assert_eq!(outputs[0].1.code, 1, "{}", outputs[0].1.stderr);
    assert_eq!(task(&ws.last_report(), "say")["status"], "cached");
    assert_eq!(task(&ws.last_report(), "get")["status"], "failed");
    for (what, out) in &outputs {
        assert_no_form(&format!("stdout of {what}"), out.stdout.as_bytes(), &forms);
        assert_no_form(&format!("stderr of {what}"), out.stderr.as_bytes(), &forms);
    }
    let files = files_under(ws.root());
    for f in ["out/report.json", "out/junit.xml", "said.txt"] {
        assert!(files.iter().any(|x| x == f), "{f} missing: {files:?}");
    }
    assert!(files.iter().any(|f| f.starts_with(".taskrun/cache/cas/")));
    for f in &files {
        assert_no_form(f, &std::fs::read(ws.path(f)).unwrap(), &forms);
    }
    let log = files
        .iter()
        .find(|f| f.starts_with(".taskrun/logs/") && f.ends_with("/say.log"))
        .expect("say.log");
    let log = ws.read(log);
    // Every form was printed, once per stream, and came out redacted.
    assert!(log.matches("***").count() > 2 * forms.len(), "{log}");
}

#[test]
fn a_remote_cache_token_is_not_printed() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let token = format!("tok{}", unique());
    let ws = Workspace::new(SHARED_DIR);
    let remote = format!("http://{token}@{addr}/cache");
    let out = run_in(&ws, &["taskrun.toml"], &[("TASKRUN_REMOTE_CACHE", &remote)]);
    out.code(0);
    assert!(out.stderr.contains("remote cache"), "{}", out.stderr);
    assert!(!out.stderr.contains(&token), "{}", out.stderr);
    assert!(!out.stdout.contains(&token), "{}", out.stdout);
    for f in files_under(ws.root()) {
        let text = String::from_utf8_lossy(&std::fs::read(ws.path(&f)).unwrap()).into_owned();
        assert!(!text.contains(&token), "{f}");
    }
}

// ---- [http] read_timeout (SPEC §4) ----

fn stalled_then_ok(fault: Fault) {
    let http = Http::start();
    let data = body(50_000);
    http.route("/slow.bin", Route::ok(data.clone()).then(fault));
    let ws = Workspace::new(&format!(
        r#"
[http]
read_timeout = "300ms"

[tasks.get]
download = {{ url = "{}", dest = "slow.bin" }}
retry = {{ max_attempts = 2, initial_delay = "10ms", jitter = "none" }}
timeout = "20s"
"#,
        http.url("/slow.bin")
    ));
    let started = std::time::Instant::now();
    run_in(&ws, &["taskrun.toml"], &[]).code(0);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read(ws.path("slow.bin")).unwrap(), data);
    assert_eq!(http.hits("/slow.bin"), 2);
    let report = ws.last_report();
    let attempts = task(&report, "get")["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{report:#}");
    assert_eq!(attempts[0]["outcome"], "timed_out", "{report:#}");
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.contains("read_timeout"), "{error}");
    assert_eq!(attempts[1]["outcome"], "succeeded");
}

#[test]
fn read_timeout_fails_a_body_that_stalls_and_the_retry_succeeds() {
    stalled_then_ok(Fault::Stall(1000));
}

#[test]
fn read_timeout_fails_a_server_that_never_answers_and_the_retry_succeeds() {
    stalled_then_ok(Fault::Silent);
}
