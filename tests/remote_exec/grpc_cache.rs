//! `[cache] remote = "grpc://..."` (SPEC §11, the gRPC cache without remote execution): the
//! real binary against the real BuildGrid of `cluster.rs`, whose ActionCache takes updates.
//! Two workspaces with their own local stores share only the cluster's cache. Every test
//! puts a nonce in its commands, so its keys (and ActionCache entries) are its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use taskrun::cache::grpc_entry::{RECORD_PATH, action_result, cache_action};
use taskrun::cache::record::{ActionRecord, OutputFile};
use taskrun::reapi::{BlobSource, Client, ClientOptions, Digest, UploadBlob};

use crate::cluster::Cluster;
use crate::workspace::Workspace;

/// A workspace (its own local cache dir inside) and a marker file outside it that every
/// command run appends a line to, so a run that was not needed is seen.
struct Ws {
    ws: Workspace,
    marker: PathBuf,
}

/// What one `taskrun run` left: its exit, output, report and peak RSS.
struct Run {
    ok: bool,
    text: String,
    report: Value,
    max_rss_kib: i64,
}

impl Run {
    fn task(&self, name: &str) -> &Value {
        self.report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no task {name} in {:#}", self.report))
    }
}

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", t ^ (u128::from(std::process::id()) << 64))
}

/// A manifest with `gen` (a text file and an executable script) and `count` on top of it,
/// both appending to the marker; `cache` is extra `[cache]` lines.
fn workspace(remote: &str, cache: &str, marker: &Path, nonce: &str) -> Ws {
    let m = marker.display();
    let manifest = format!(
        r#"
[cache]
remote = "{remote}"
{cache}

[tasks.gen]
outputs = ["out/a.txt", "out/run.sh"]
run = "echo gen >> {m} && mkdir -p out && echo {nonce} > out/a.txt && printf '#!/bin/sh\necho hi\n' > out/run.sh && chmod 755 out/run.sh && echo generated"

[tasks.count]
deps = ["gen"]
inputs = ["out/a.txt"]
outputs = ["out/count.txt"]
run = "echo count >> {m} && wc -c < out/a.txt > out/count.txt"
"#
    );
    Ws {
        ws: Workspace::new(&manifest),
        marker: marker.to_path_buf(),
    }
}

impl Ws {
    fn root(&self) -> &Path {
        self.ws.root()
    }

    fn runs(&self) -> usize {
        fs::read_to_string(&self.marker)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `taskrun run taskrun.toml ARGS --report r.json`, waited for while its own peak RSS is
    /// read (`VmHWM`). Not `wait4`'s `ru_maxrss`: a child spawned with `vfork` (as
    /// `posix_spawn` does) starts its count from the parent's, and a parallel test that held
    /// 200 MiB in this process made taskrun seem to.
    #[allow(clippy::zombie_processes)] // reaped by `waitpid`, which clippy does not know
    fn run(&self, args: &[&str]) -> Run {
        let report = self.root().join("report.json");
        let _ = fs::remove_file(&report);
        let out = self.root().join("out.log");
        let log = fs::File::create(&out).unwrap();
        let child = self
            .ws
            .cmd(&["run", "taskrun.toml"])
            .args(args)
            .arg("--report")
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut status = 0;
        let mut peak_kib = 0;
        loop {
            // The mm's high-water mark, which an exec starts afresh; read until the exit.
            if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) {
                let hwm = text.lines().find_map(|l| l.strip_prefix("VmHWM:"));
                if let Some(kib) =
                    hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    peak_kib = peak_kib.max(kib);
                }
            }
            // SAFETY: polls our own child, whose pid nothing else waits for.
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if reaped == pid {
                break;
            }
            assert_eq!(reaped, 0, "waitpid");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let text = fs::read_to_string(&out).unwrap();
        let report = fs::read_to_string(&report)
            .map(|r| serde_json::from_str(&r).unwrap())
            .unwrap_or(Value::Null);
        Run {
            ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            text,
            report,
            max_rss_kib: peak_kib,
        }
    }
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn client(c: &Cluster) -> Client {
    let options = ClientOptions {
        instance: c.instance().to_string(),
        ..ClientOptions::default()
    };
    Client::connect(c.url(), &options).await.unwrap()
}

/// The cluster's ActionResult for taskrun cache key `key`.
fn entry(c: &Cluster, key: &str) -> Option<taskrun::reapi::proto::ActionResult> {
    block_on(async {
        let client = client(c).await;
        client
            .get_action_result(&cache_action(key).digest)
            .await
            .unwrap()
    })
}

fn key_of(run: &Run, task: &str) -> String {
    run.task(task)["cache_key"].as_str().unwrap().to_string()
}

#[test]
fn a_second_workspace_hits_the_grpc_cache_and_runs_nothing() {
    let Some(c) = Cluster::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    let n = nonce();
    let a = workspace(c.url(), "", &marker, &n);
    let first = a.run(&[]);
    assert!(first.ok, "{}", first.text);
    assert_eq!(a.runs(), 2);
    assert!(!first.text.contains("remote cache"), "{}", first.text);

    // What the cluster holds: the outputs, the record under its reserved path, the log.
    let got = entry(c, &key_of(&first, "gen")).expect("gen was uploaded");
    let paths: Vec<&str> = got.output_files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, [RECORD_PATH, "out/a.txt", "out/run.sh"]);
    assert!(got.output_files[2].is_executable && !got.output_files[1].is_executable);
    assert_eq!(got.exit_code, 0);
    assert!(got.stdout_digest.is_some());

    let b = workspace(c.url(), "", &marker, &n);
    let second = b.run(&["-v"]);
    assert!(second.ok, "{}", second.text);
    assert_eq!(a.runs(), 2, "a command ran again:\n{}", second.text);
    for t in ["gen", "count"] {
        let r = second.task(t);
        assert_eq!(r["status"], "cached", "{r:#}");
        assert_eq!(r["cache_source"], "remote", "{r:#}");
    }
    for f in ["out/a.txt", "out/run.sh", "out/count.txt"] {
        assert_eq!(
            fs::read(a.root().join(f)).unwrap(),
            fs::read(b.root().join(f)).unwrap(),
            "{f}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(b.root().join("out/run.sh")), 0o755);
    // The recorded output is replayed with -v, from the remote's copy of the log.
    assert!(second.text.contains("generated"), "{}", second.text);

    // A third run of the second workspace hits locally, asking the remote nothing.
    let third = b.run(&[]);
    assert_eq!(third.task("gen")["cache_source"], "local");
}

#[test]
fn remote_write_false_uploads_nothing() {
    let Some(c) = Cluster::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    let n = nonce();
    let a = workspace(c.url(), "remote_write = false", &marker, &n);
    let first = a.run(&[]);
    assert!(first.ok, "{}", first.text);
    for t in ["gen", "count"] {
        assert!(entry(c, &key_of(&first, t)).is_none(), "{t} was uploaded");
    }
    let b = workspace(c.url(), "", &marker, &n);
    let second = b.run(&[]);
    assert!(second.ok, "{}", second.text);
    assert_eq!(a.runs(), 4, "the second workspace had nothing to hit");
}

#[test]
fn no_cache_and_force_do_not_read_the_remote() {
    let Some(c) = Cluster::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    let n = nonce();
    let a = workspace(c.url(), "", &marker, &n);
    assert!(a.run(&[]).ok);
    assert_eq!(a.runs(), 2);
    for (flag, runs) in [("--no-cache", 4), ("--force", 6)] {
        let b = workspace(c.url(), "", &marker, &n);
        let r = b.run(&[flag]);
        assert!(r.ok, "{}", r.text);
        assert_eq!(a.runs(), runs, "{flag}");
        assert_eq!(r.task("gen")["status"], "succeeded", "{flag}");
        assert!(r.task("gen")["cache_source"].is_null(), "{flag}");
    }
}

/// Uploads `record` (sealed here) and an ActionResult for it under its key, as a hostile or
/// broken writer could; `extra` is added to the ActionResult's output files.
fn poison(c: &Cluster, mut record: ActionRecord, extra: Option<&str>) {
    record.seal();
    let bytes = serde_json::to_vec(&record).unwrap();
    let d = Digest::of_bytes(&bytes);
    let mut result = action_result(&record, d).unwrap();
    if let Some(path) = extra {
        let mut f = result.output_files[1].clone();
        f.path = path.to_string();
        result.output_files.push(f);
    }
    let a = cache_action(&record.key);
    block_on(async {
        let client = client(c).await;
        let blobs =
            [(a.command.0, a.command.1), (a.digest, a.action), (d, bytes)].map(|(digest, b)| {
                UploadBlob {
                    digest,
                    source: BlobSource::Bytes(b),
                }
            });
        client.upload_missing(&blobs).await.unwrap();
        client
            .update_action_result(&a.digest, result)
            .await
            .unwrap();
    });
}

#[test]
fn a_poisoned_entry_is_refused_with_a_warning_and_the_task_runs() {
    let Some(c) = Cluster::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    let n = nonce();
    let a = workspace(c.url(), "", &marker, &n);
    let first = a.run(&[]);
    assert!(first.ok, "{}", first.text);
    let key = key_of(&first, "gen");
    let good = fs::read_to_string(
        a.root()
            .join(format!(".taskrun/cache/ac/{}/{key}.json", &key[..2])),
    )
    .unwrap();
    let good: ActionRecord = serde_json::from_str(&good).unwrap();

    // A consistent entry that names the manifest: SPEC §13's declared-path rule refuses it.
    let mut evil = good.clone();
    evil.outputs.push(OutputFile {
        path: "taskrun.toml".into(),
        ..evil.outputs[0].clone()
    });
    poison(c, evil, None);
    let b = workspace(c.url(), "", &marker, &n);
    let manifest = fs::read(b.root().join("taskrun.toml")).unwrap();
    let r = b.run(&[]);
    assert!(r.ok, "{}", r.text);
    assert!(
        r.text.contains("remote cache entry rejected") && r.text.contains("taskrun.toml"),
        "{}",
        r.text
    );
    assert_eq!(r.task("gen")["status"], "succeeded");
    assert_eq!(fs::read(b.root().join("taskrun.toml")).unwrap(), manifest);
    assert_eq!(a.runs(), 3, "gen ran again; count hit (same outputs)");

    // An ActionResult whose files disagree with its record: corrupt, a miss with a warning.
    poison(c, good, Some(".git/config"));
    let w = workspace(c.url(), "", &marker, &n);
    let r = w.run(&[]);
    assert!(r.ok, "{}", r.text);
    assert!(
        r.text.contains("is corrupt") && r.text.contains("disagree"),
        "{}",
        r.text
    );
    assert!(!w.root().join(".git").exists());
    assert_eq!(r.task("gen")["status"], "succeeded");
}

#[test]
fn a_large_output_streams_through_with_flat_memory() {
    let Some(c) = Cluster::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let n = nonce();
    let manifest = format!(
        r#"
[cache]
remote = "{}"

[tasks.big]
outputs = ["out/big.bin"]
run = "mkdir -p out && echo {n} > out/big.bin && head -c 67108864 /dev/urandom >> out/big.bin"
"#,
        c.url()
    );
    let ws = || Ws {
        ws: Workspace::new(&manifest),
        marker: tmp.path().join("unused"),
    };
    let a = ws();
    let first = a.run(&[]);
    assert!(first.ok, "{}", first.text);
    let b = ws();
    let second = b.run(&[]);
    assert!(second.ok, "{}", second.text);
    assert_eq!(second.task("big")["cache_source"], "remote");
    let (x, y) = (
        Digest::of_file(&a.root().join("out/big.bin")).unwrap(),
        Digest::of_file(&b.root().join("out/big.bin")).unwrap(),
    );
    assert_eq!(x, y);
    eprintln!(
        "64 MiB output: peak RSS {} MiB uploading, {} MiB fetching",
        first.max_rss_kib / 1024,
        second.max_rss_kib / 1024
    );
    // Neither side holds the blob in memory (64 MiB would show whole).
    assert!(first.max_rss_kib < 56 * 1024, "{} KiB", first.max_rss_kib);
    assert!(second.max_rss_kib < 56 * 1024, "{} KiB", second.max_rss_kib);
}

#[test]
fn a_stopped_server_costs_one_warning_and_the_run_succeeds() {
    // Its own cluster: the shared one must keep its server.
    let Some(c) = Cluster::start(1) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    let n = nonce();
    let a = workspace(c.url(), "", &marker, &n);
    assert!(a.run(&[]).ok);
    c.stop_server();
    let b = workspace(c.url(), "", &marker, &n);
    let r = b.run(&[]);
    assert!(r.ok, "{}", r.text);
    assert_eq!(
        r.text.matches("continuing with the local cache").count(),
        1,
        "{}",
        r.text
    );
    assert!(r.text.contains("unreachable"), "{}", r.text);
    assert_eq!(a.runs(), 4);
    assert!(b.root().join("out/count.txt").is_file());
}
