//! The test cluster itself, checked with BuildGrid's own client (`bgd execute`), so a failing
//! remote-execution test can be told apart from a broken harness.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, bgd};

/// `bgd execute command` with the input root `input`, the output files `outputs` (fetched into
/// `results`), and `argv` as the command; spawned, not waited for.
fn bgd_execute(
    c: &Cluster,
    input: &Path,
    results: &Path,
    outputs: &[&str],
    argv: &[&str],
) -> Child {
    let mut cmd = Command::new(bgd());
    cmd.arg("execute")
        .arg("--remote")
        .arg(c.http_url())
        .arg("--instance-name")
        .arg(c.instance())
        .arg("command")
        .arg("--output-directory")
        .arg(results);
    for o in outputs {
        cmd.arg("--output-file").arg(o);
    }
    cmd.arg(input).arg("--").args(argv);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn succeeded(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bgd execute failed:\n{text}");
    text
}

/// Whether a process id is gone (or a zombie nobody waited for yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|&p| gone(p)) {
        assert!(Instant::now() < deadline, "left running: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One action round trip; two actions that can only finish together, so they must run on two
/// bots at once; the server stopped (port closed) and started again; the workers killed; and
/// after the drop, no process of the cluster left.
#[test]
fn cluster_runs_actions_on_two_bots_and_leaves_nothing_behind() {
    let Some(c) = Cluster::start(2) else { return };
    eprintln!("cluster startup: {:.2} s", c.startup().as_secs_f64());
    assert!(c.url().starts_with("grpc://127.0.0.1:"), "{}", c.url());
    assert_eq!(c.instance(), "");
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::write(input.join("sub/a.txt"), "hello\n").unwrap();

    // Round trip: an input file in, an output file (in a directory the worker creates) out.
    let results = tmp.path().join("res1");
    let started = Instant::now();
    let out = bgd_execute(
        &c,
        &input,
        &results,
        &["out/up.txt"],
        &["sh", "-c", "tr a-z A-Z < sub/a.txt > out/up.txt"],
    )
    .wait_with_output()
    .unwrap();
    let text = succeeded(out);
    eprintln!(
        "bgd execute round trip: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        std::fs::read_to_string(results.join("out/up.txt"))
            .unwrap_or_else(|e| panic!("{e}\n{text}")),
        "HELLO\n"
    );

    // A rendezvous: each action marks its arrival and waits (bounded) for the other's.
    let meet = tmp.path().join("meet");
    std::fs::create_dir(&meet).unwrap();
    let m = meet.display();
    let side = |me: &str, other: &str| {
        format!(
            "touch {m}/{me}; i=0; while [ ! -e {m}/{other} ]; do i=$((i+1)); \
             [ $i -gt 600 ] && exit 3; sleep 0.05; done; echo {me} > out/who.txt"
        )
    };
    let (a, b) = (side("a", "b"), side("b", "a"));
    let ra = bgd_execute(
        &c,
        &input,
        &tmp.path().join("ra"),
        &["out/who.txt"],
        &["sh", "-c", &a],
    );
    let rb = bgd_execute(
        &c,
        &input,
        &tmp.path().join("rb"),
        &["out/who.txt"],
        &["sh", "-c", &b],
    );
    succeeded(ra.wait_with_output().unwrap());
    succeeded(rb.wait_with_output().unwrap());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ra/out/who.txt")).unwrap(),
        "a\n"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("rb/out/who.txt")).unwrap(),
        "b\n"
    );
    let runs = c.executions();
    assert_eq!(runs.len(), 3, "{}\n{}", c.worker_log(), c.server_log());
    assert!(
        runs.iter().all(|r| r.exit_code == 0 && r.status == 0),
        "{runs:?}"
    );
    let mut bots: Vec<_> = runs[1..].iter().map(|r| r.bot.as_str()).collect();
    bots.sort_unstable();
    assert_eq!(bots, ["bot-0", "bot-1"], "{}", c.worker_log());
    assert_eq!(c.max_parallel(), 2, "{runs:?}");

    // The server goes away and comes back on the same port.
    c.stop_server();
    assert!(std::net::TcpStream::connect(("127.0.0.1", c.port())).is_err());
    c.start_server();
    let again = tmp.path().join("res2");
    let out = bgd_execute(&c, &input, &again, &["x"], &["sh", "-c", "echo again > x"])
        .wait_with_output()
        .unwrap();
    succeeded(out);
    assert_eq!(std::fs::read_to_string(again.join("x")).unwrap(), "again\n");

    let pids = c.pids();
    assert_eq!(pids.len(), 3);
    c.kill_workers();
    wait_gone(&pids[1..2]);
    let dir = c.dir().to_path_buf();
    drop(c);
    wait_gone(&pids);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// The per-binary shared cluster runs actions too; its platform keys: `OSFamily=linux` and a
/// wildcard key such as `pool` run, an unknown key is refused.
#[test]
fn shared_cluster_runs_actions_and_takes_the_platform_keys() {
    let Some(c) = Cluster::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let with_platform = |results: &str, props: &[(&str, &str)]| {
        let mut cmd = Command::new(bgd());
        cmd.arg("execute")
            .arg("--remote")
            .arg(c.http_url())
            .arg("--instance-name")
            .arg(c.instance())
            .arg("command")
            .arg("--output-directory")
            .arg(tmp.path().join(results))
            .arg("--output-file")
            .arg("o");
        for (k, v) in props {
            cmd.arg("-p").arg(k).arg(v);
        }
        cmd.arg(&input)
            .args(["--", "sh", "-c", "printf shared > o"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let plain = with_platform("plain", &[]);
    let matched = with_platform("matched", &[("OSFamily", "linux"), ("pool", "big")]);
    let refused = with_platform("refused", &[("no-such-key", "1")]);
    succeeded(plain.wait_with_output().unwrap());
    succeeded(matched.wait_with_output().unwrap());
    for dir in ["plain", "matched"] {
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(dir).join("o")).unwrap(),
            "shared"
        );
    }
    let out = refused.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Unregistered platform property"), "{text}");
}
