//! The remote cache (SPEC §5 "Remote cache"): two machines with their own local stores share
//! an in-process Bazel-HTTP-protocol server; the library plays the scheduler's part.

mod cli;
mod fanout;
mod nginx;
mod server;
mod support;
#[path = "../support/workspace.rs"]
mod workspace;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use server::{CacheServer, Mode};
use support::{FAKE_DOWNLOAD, Machine, Outcome, with_warnings};
use taskrun::cache::CacheSource::{Local, Remote};
use taskrun::cache::PredictedStatus;
use taskrun::cache::Reason;
use taskrun::cache::plan_predictions;

fn manifest(remote: &str, write: bool) -> String {
    format!(
        r#"
[pipeline]
name = "t"

[cache]
remote = "{remote}"
remote_write = {write}

[tasks.merge]
inputs = ["data/*.csv"]
outputs = ["out/merged.csv", "out/bin"]
run = "mkdir -p out/bin && cat data/*.csv > out/merged.csv && printf '#!/bin/sh\n' > out/bin/tool && chmod +x out/bin/tool"

[tasks.count]
deps = ["merge"]
inputs = ["out/merged.csv"]
outputs = ["out/count.txt"]
run = "wc -l < out/merged.csv > out/count.txt"
"#
    )
}

fn machine(remote: &str, write: bool) -> Machine {
    let m = Machine::new(&manifest(remote, write));
    m.write("data/a.csv", "1\n2\n");
    m
}

fn ran(o: &Outcome) -> bool {
    matches!(o, Outcome::Ran(_))
}

fn methods(server: &CacheServer, method: &str) -> usize {
    server.log().iter().filter(|(m, _)| m == method).count()
}

#[test]
fn a_result_stored_on_one_machine_is_a_remote_hit_on_another_then_local() {
    let server = CacheServer::new();
    let a = machine(&server.url(), true);
    let (out, warnings) = with_warnings(|| a.run());
    assert!(out.iter().all(ran), "{out:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let paths = server.paths();
    assert_eq!(paths.iter().filter(|p| p.starts_with("/ac/")).count(), 2);
    // merged.csv, tool, count.txt and the shared log blob.
    assert_eq!(paths.iter().filter(|p| p.starts_with("/cas/")).count(), 4);
    assert_eq!(a.local_blobs().len(), 4);

    let b = machine(&server.url(), true);
    server.clear_log();
    let (out, warnings) = with_warnings(|| b.run());
    assert_eq!(out, vec![Outcome::Hit(Remote), Outcome::Hit(Remote)]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(b.read("out/merged.csv").as_deref(), Some("1\n2\n"));
    assert_eq!(b.read("out/count.txt"), a.read("out/count.txt"));
    let mode = std::fs::metadata(b.root().join("out/bin/tool"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111,
        0o111
    );
    assert_eq!(methods(&server, "PUT"), 0, "a hit uploads nothing");
    assert_eq!(
        b.local_blobs().len(),
        4,
        "the remote entry is copied locally"
    );

    // The copy is complete: the next run is all local, without a request.
    server.clear_log();
    std::fs::remove_file(b.root().join("out/count.txt")).unwrap();
    assert_eq!(b.run(), vec![Outcome::Hit(Local), Outcome::Hit(Local)]);
    assert_eq!(b.read("out/count.txt"), a.read("out/count.txt"));
    assert!(server.log().is_empty(), "{:?}", server.log());
}

#[test]
fn remote_write_false_reads_but_never_uploads() {
    let server = CacheServer::new();
    let laptop = machine(&server.url(), false);
    assert!(laptop.run().iter().all(ran));
    assert_eq!(methods(&server, "PUT"), 0);
    assert_eq!(methods(&server, "HEAD"), 0);
    assert!(server.paths().is_empty());

    // It still reads what a writer stored.
    let ci = machine(&server.url(), true);
    ci.write("data/a.csv", "other\n");
    ci.run();
    let laptop2 = machine(&server.url(), false);
    laptop2.write("data/a.csv", "other\n");
    assert_eq!(
        laptop2.run(),
        vec![Outcome::Hit(Remote), Outcome::Hit(Remote)]
    );
}

#[test]
fn upload_skips_blobs_the_remote_already_has() {
    let server = CacheServer::new();
    machine(&server.url(), true).run();
    let puts = methods(&server, "PUT");
    assert_eq!(puts, 2 + 4);
    // Same outputs from another machine with --force: HEAD finds every blob, only the
    // records are PUT again.
    let mut b = machine(&server.url(), true);
    b.force = true;
    server.clear_log();
    let out = b.run();
    assert_eq!(out, vec![Outcome::Ran(Reason::Force); 2]);
    assert_eq!(methods(&server, "GET"), 0, "--force looks nothing up");
    assert_eq!(methods(&server, "PUT"), 2, "{:?}", server.log());
}

/// A failing remote: every task still runs, exactly one warning, and after the first failure
/// the remote is not asked again.
fn assert_degrades_to_local(remote: &str, server: Option<&CacheServer>) {
    let mut m = machine(remote, true);
    m.timeouts = Some((Duration::from_millis(500), Duration::from_millis(700)));
    let started = Instant::now();
    let (out, warnings) = with_warnings(|| m.run());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.iter().all(ran), "{out:?}");
    assert_eq!(m.read("out/merged.csv").as_deref(), Some("1\n2\n"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("unreachable") && warnings[0].contains("continuing with the local"),
        "{warnings:?}"
    );
    if let Some(s) = server {
        assert_eq!(
            s.log().len(),
            1,
            "disabled after one failure: {:?}",
            s.log()
        );
    }
    // The local cache still works.
    assert_eq!(m.run(), vec![Outcome::Hit(Local), Outcome::Hit(Local)]);
}

#[test]
fn a_remote_answering_500_costs_one_warning() {
    let server = CacheServer::new();
    server.set_mode(Mode::Fail500);
    assert_degrades_to_local(&server.url(), Some(&server));
}

#[test]
fn a_hanging_remote_times_out_once() {
    let server = CacheServer::new();
    server.set_mode(Mode::Hang);
    assert_degrades_to_local(&server.url(), Some(&server));
}

#[test]
fn a_closed_port_costs_one_warning() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_degrades_to_local(&format!("http://{addr}"), None);
}

#[test]
fn a_corrupt_remote_blob_is_a_miss_never_a_wrong_output() {
    let server = CacheServer::new();
    machine(&server.url(), true).run();
    server.set_mode(Mode::CorruptBlobs);
    let b = machine(&server.url(), false);
    let (out, warnings) = with_warnings(|| b.run());
    assert!(out.iter().all(ran), "{out:?}");
    assert!(
        warnings.iter().any(|w| w.contains("corrupt")),
        "{warnings:?}"
    );
    assert!(!warnings.iter().any(|w| w.contains("unreachable")));
    assert_eq!(b.read("out/merged.csv").as_deref(), Some("1\n2\n"));
    // Nothing corrupt was kept: every local blob is one b produced itself.
    for blob in b.local_blobs() {
        let data = std::fs::read(&blob).unwrap();
        let name = blob.file_name().unwrap().to_str().unwrap().to_string();
        let (d, _) = taskrun::cache::digest::hash_copy(&mut &data[..], None).unwrap();
        assert_eq!(taskrun::cache::digest::to_hex(&d), name);
    }
}

/// A machine that found a remote blob corrupt and then produced it sends it again, though
/// `HEAD` says the remote has it: the damage is mended for every machine after it.
#[test]
fn a_corrupt_remote_blob_is_mended_by_the_next_machine_that_produces_it() {
    let server = CacheServer::new();
    machine(&server.url(), true).run();
    // The blob of the output `out/merged.csv`.
    let blobs: Vec<String> = server
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/cas/") && server.get(p).as_deref() == Some(b"1\n2\n"))
        .collect();
    assert_eq!(blobs.len(), 1, "{:?}", server.paths());
    let good: Vec<Vec<u8>> = blobs.iter().map(|p| server.get(p).unwrap()).collect();
    for (path, bytes) in blobs.iter().zip(&good) {
        let mut bad = bytes.clone();
        bad.push(b'!');
        server.put(path, bad);
    }
    let b = machine(&server.url(), true);
    let (out, warnings) = with_warnings(|| b.run());
    assert!(out.iter().any(ran), "{out:?}");
    assert!(
        warnings.iter().any(|w| w.contains("corrupt")),
        "{warnings:?}"
    );
    for (path, bytes) in blobs.iter().zip(&good) {
        assert_eq!(
            server.get(path).as_ref(),
            Some(bytes),
            "{path} still corrupt"
        );
    }
    let (out, warnings) = with_warnings(|| machine(&server.url(), false).run());
    assert!(!out.iter().any(ran), "{out:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn a_corrupt_remote_record_is_a_miss_and_the_remote_stays_on() {
    let server = CacheServer::new();
    machine(&server.url(), true).run();
    for p in server.paths().iter().filter(|p| p.starts_with("/ac/")) {
        let mut data = server.get(p).unwrap();
        let at = data.len() / 2;
        data[at] ^= 1;
        server.put(p, data);
    }
    let b = machine(&server.url(), true);
    let (out, warnings) = with_warnings(|| b.run());
    assert!(out.iter().all(ran), "{out:?}");
    assert_eq!(warnings.len(), 2, "one per corrupt record: {warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("corrupt")),
        "{warnings:?}"
    );
    // Still enabled: b's results were uploaded, replacing the damaged records.
    let c = machine(&server.url(), true);
    assert_eq!(c.run(), vec![Outcome::Hit(Remote), Outcome::Hit(Remote)]);
}

#[test]
fn a_read_only_remote_refusing_uploads_costs_one_warning() {
    let server = CacheServer::new();
    server.set_mode(Mode::ForbidPut);
    let m = machine(&server.url(), true);
    let (out, warnings) = with_warnings(|| m.run());
    assert!(out.iter().all(ran), "{out:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("403"), "{warnings:?}");
    assert_eq!(methods(&server, "PUT"), 1);
    // The warning names the request refused: the first blob's, not the record's.
    assert!(warnings[0].contains("refused cas/"), "{warnings:?}");
}

#[test]
fn large_outputs_stream_through_the_remote_intact() {
    let server = CacheServer::new();
    let big = |url: &str| {
        Machine::new(&format!(
            r#"
[pipeline]
name = "t"

[cache]
remote = "{url}"

[tasks.big]
outputs = ["out/big.txt"]
run = "mkdir -p out && seq 1 900000 > out/big.txt"
"#
        ))
    };
    let a = big(&server.url());
    assert!(a.run().iter().all(ran));
    let b = big(&server.url());
    assert_eq!(b.run(), vec![Outcome::Hit(Remote)]);
    let (x, y) = (
        a.read("out/big.txt").unwrap(),
        b.read("out/big.txt").unwrap(),
    );
    assert!(x.len() > 5 << 20);
    assert!(x == y);
}

fn pinned_manifest(remote: &str, origin: &str, pin: &str) -> String {
    format!(
        r#"
[pipeline]
name = "t"

[cache]
remote = "{remote}"

[tasks.fetch.download]
url = "{origin}/origin/file.bin"
dest = "downloads/file.bin"
sha256 = "{pin}"
"#
    )
}

#[test]
fn a_pinned_download_in_the_remote_cas_never_contacts_the_origin() {
    let pin = taskrun::cache::digest::to_hex(&taskrun::cache::digest::hash_bytes(
        FAKE_DOWNLOAD.as_bytes(),
    ));
    let server = CacheServer::new();
    let origin = CacheServer::new();
    let a = Machine::new(&pinned_manifest(&server.url(), &origin.url(), &pin));
    assert!(a.run().iter().all(ran));
    assert!(server.paths().contains(&format!("/cas/{pin}")));

    let b = Machine::new(&pinned_manifest(&server.url(), &origin.url(), &pin));
    server.clear_log();
    assert_eq!(b.run(), vec![Outcome::Hit(Remote)]);
    assert_eq!(b.read("downloads/file.bin").as_deref(), Some(FAKE_DOWNLOAD));
    assert_eq!(
        server.log(),
        vec![("GET".to_string(), format!("/cas/{pin}"))]
    );
    assert!(origin.log().is_empty());
}

#[test]
fn plan_stays_local_and_says_the_remote_may_have_it() {
    let server = CacheServer::new();
    machine(&server.url(), true).run();
    let b = machine(&server.url(), true);
    server.clear_log();
    let p = plan_predictions(&b.plan(), false, false);
    assert_eq!(p[0].status, PredictedStatus::Miss);
    assert_eq!(
        p[0].reason.as_deref(),
        Some("no local entry (the remote may have it)")
    );
    assert!(server.log().is_empty(), "plan touches no network");
}

#[test]
fn end_to_end_with_nginx_webdav_when_installed() {
    let Some(nginx) = nginx::Nginx::start() else {
        eprintln!("note: nginx is not installed; skipping the nginx WebDAV end-to-end check");
        return;
    };
    let a = machine(&nginx.url(), true);
    let (out, warnings) = with_warnings(|| a.run());
    assert!(out.iter().all(ran), "{out:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let b = machine(&nginx.url(), true);
    assert_eq!(b.run(), vec![Outcome::Hit(Remote), Outcome::Hit(Remote)]);
    assert_eq!(b.read("out/count.txt"), a.read("out/count.txt"));
}
