//! The REAPI client library (`taskrun::reapi`) against the real BuildGrid of `cluster.rs`:
//! capabilities, uploads (batch and ByteStream), downloads, Execute, the ActionCache,
//! timeouts, cancellation. Its connection (a server restart, TLS) is `client_connection.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use taskrun::model::RelPath;
use taskrun::reapi::{
    ActionSpec, BlobSource, Client, ClientOptions, Digest, InputFile, ReapiError, RunOptions,
    UploadBlob, run_action,
};

use crate::cluster::Cluster;

/// A client of the shared cluster; `None` (the test skips) when there is no cluster.
pub(crate) async fn shared_client() -> Option<Client> {
    let cluster = Cluster::shared()?;
    Some(client_of(cluster).await)
}

pub(crate) async fn client_of(cluster: &Cluster) -> Client {
    let options = ClientOptions {
        instance: cluster.instance().to_string(),
        ..ClientOptions::default()
    };
    Client::connect(cluster.url(), &options).await.unwrap()
}

pub(crate) fn rel(p: &str) -> RelPath {
    RelPath::parse(p).unwrap()
}

/// A spec running `script` with inputs `files` (written into `root`), outputs `outputs`.
pub(crate) fn spec(
    root: &Path,
    script: &str,
    files: &[(&str, &str)],
    outputs: &[&str],
) -> ActionSpec {
    let inputs = files
        .iter()
        .map(|(p, content)| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            InputFile {
                path: rel(p),
                source: path,
                executable: false,
                digest: None,
            }
        })
        .collect();
    ActionSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())]),
        output_paths: outputs.iter().map(|o| rel(o)).collect(),
        inputs,
        ..ActionSpec::default()
    }
}

/// A marker unique to this test run, so the cluster's cache from earlier runs never answers.
pub(crate) fn nonce() -> String {
    format!("{:x}", rand_nonce())
}

fn rand_nonce() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ u128::from(std::process::id()) << 64
}

#[tokio::test]
async fn capabilities_of_buildgrid() {
    let Some(c) = shared_client().await else {
        return;
    };
    let caps = c.capabilities().await.unwrap();
    assert!(caps.sha256 && caps.exec_enabled, "{caps:?}");
    caps.check_execution().unwrap();
    assert!(caps.max_batch_bytes > 0 && caps.max_batch_bytes <= 4 << 20);
    assert!(
        caps.api_version >= taskrun::reapi::ApiVersion::V2_1,
        "{caps:?}"
    );
}

#[tokio::test]
async fn runs_an_action_then_hits_the_action_cache() {
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let s = spec(
        ws.path(),
        &format!("cat in/a > out/b; echo {n}; echo err >&2"),
        &[("in/a", "hello\n")],
        &["out/b", "out/never"],
    );
    let Some(c) = shared_client().await else {
        return;
    };
    let opts = RunOptions::default();
    let first = run_action(&c, &s, ws.path(), &opts, std::future::pending())
        .await
        .unwrap();
    assert_eq!(first.exit_code, 0);
    assert!(!first.cached);
    assert_eq!(String::from_utf8_lossy(&first.stdout), format!("{n}\n"));
    assert_eq!(first.stderr, b"err\n");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/b")).unwrap(),
        "hello\n"
    );
    assert_eq!(first.outputs.len(), 1);
    assert_eq!(first.outputs[0].digest, Digest::of_bytes(b"hello\n"));
    assert_eq!(first.missing_outputs, [rel("out/never")]);
    assert!(first.upload.uploaded >= 2, "{:?}", first.upload);
    assert!(!first.info.worker.is_empty());

    // Cached, that result lacks `out/never`: a miss, executed again (and still lacking it).
    let again = run_action(&c, &s, ws.path(), &opts, std::future::pending())
        .await
        .unwrap();
    assert!(!again.cached);
    assert_eq!(again.missing_outputs, [rel("out/never")]);

    // Declaring only what it makes, the same command's result is taken from the cache.
    let s = spec(
        ws.path(),
        &format!("cat in/a > out/b; echo {n}; echo err >&2"),
        &[("in/a", "hello\n")],
        &["out/b"],
    );
    let first = run_action(&c, &s, ws.path(), &opts, std::future::pending())
        .await
        .unwrap();
    assert!(!first.cached);
    std::fs::remove_file(ws.path().join("out/b")).unwrap();
    let t = Instant::now();
    let second = run_action(&c, &s, ws.path(), &opts, std::future::pending())
        .await
        .unwrap();
    assert!(second.cached);
    assert_eq!(second.action_digest, first.action_digest);
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/b")).unwrap(),
        "hello\n"
    );
    eprintln!("ActionCache hit with download: {:?}", t.elapsed());
}

#[tokio::test]
async fn output_directories_executables_and_failures() {
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let script = format!(
        "mkdir -p gen/sub && echo {n} > gen/sub/x && printf '#!/bin/sh\\n' > gen/run && \
         chmod +x gen/run && : > gen/empty"
    );
    let s = spec(ws.path(), &script, &[], &["gen"]);
    let Some(c) = shared_client().await else {
        return;
    };
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(o.output_dirs, [rel("gen")]);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("gen/sub/x")).unwrap(),
        format!("{n}\n")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ws.path().join("gen/run"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::metadata(ws.path().join("gen/empty"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(o.outputs.len(), 3);

    // A failing command: its exit code, no outputs written (as a local failure leaves
    // none), unless asked to keep them.
    let s = spec(ws.path(), &format!("echo {n} > f; exit 3"), &[], &["f"]);
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(o.exit_code, 3);
    assert!(!o.outputs_written && !ws.path().join("f").exists());
    let keep = RunOptions {
        keep_failed_outputs: true,
        ..RunOptions::default()
    };
    let o = run_action(&c, &s, ws.path(), &keep, std::future::pending())
        .await
        .unwrap();
    assert_eq!(o.exit_code, 3);
    assert!(!o.cached, "failed actions are not cached");
    assert!(ws.path().join("f").exists());
}

#[tokio::test]
async fn outputs_come_back_relative_to_the_working_directory() {
    // (An output outside the working directory is named with `..`, which the API allows
    // but the test cluster's worker refuses: see the unit tests of `action`.)
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let mut s = spec(
        ws.path(),
        &format!("cat ../in/a > here; echo {n} > deep/up"),
        &[("in/a", "A")],
        &["sub/here", "sub/deep/up"],
    );
    s.working_directory = Some(rel("sub"));
    let Some(c) = shared_client().await else {
        return;
    };
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(o.exit_code, 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("sub/here")).unwrap(),
        "A"
    );
    assert!(ws.path().join("sub/deep/up").exists());
    assert!(o.missing_outputs.is_empty());
}

#[tokio::test]
async fn the_action_timeout_is_the_actions_own_failure() {
    let ws = tempfile::tempdir().unwrap();
    let mut s = spec(ws.path(), &format!("sleep 20 # {}", nonce()), &[], &[]);
    s.timeout = Some(Duration::from_secs(1));
    let Some(c) = shared_client().await else {
        return;
    };
    let t = Instant::now();
    let err = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ReapiError::TimedOut(_)), "{err:?}");
    assert!(!err.is_cluster_failure());
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn cancelling_stops_the_wait() {
    let ws = tempfile::tempdir().unwrap();
    let s = spec(ws.path(), &format!("sleep 30 # {}", nonce()), &[], &[]);
    let Some(c) = shared_client().await else {
        return;
    };
    let t = Instant::now();
    let err = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        tokio::time::sleep(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ReapiError::Cancelled), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn large_blobs_stream_through_bytestream_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    // 48 MiB of data no earlier run uploaded, far over the batch limit.
    let seed = rand_nonce().to_le_bytes();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        for i in 0u32..(48 * 1024) {
            let mut block = [0u8; 1024];
            for (j, b) in block.iter_mut().enumerate() {
                *b = seed[j % 16] ^ (i as u8).wrapping_mul(31) ^ (j as u8);
            }
            block[..4].copy_from_slice(&i.to_le_bytes());
            f.write_all(&block).unwrap();
        }
    }
    let d = Digest::of_file(&src).unwrap();
    let Some(c) = shared_client().await else {
        return;
    };
    let before = peak_rss();
    let stats = c
        .upload_missing(&[UploadBlob {
            digest: d,
            source: BlobSource::File(src.clone()),
        }])
        .await
        .unwrap();
    assert_eq!((stats.uploaded, stats.bytes), (1, d.size));
    assert!(c.find_missing(&[d]).await.unwrap().is_empty());
    let dest = dir.path().join("copy");
    c.fetch_to_file(&d, &dest, false).await.unwrap();
    let grew = peak_rss().saturating_sub(before);
    assert_eq!(Digest::of_file(&dest).unwrap(), d);
    assert!(grew < 24 << 20, "peak RSS grew by {} MiB", grew >> 20);
    // A second upload finds it there and sends nothing.
    let again = c
        .upload_missing(&[UploadBlob {
            digest: d,
            source: BlobSource::File(src),
        }])
        .await
        .unwrap();
    assert_eq!(again.uploaded, 0);
    // Small blobs in one batch both ways, and the empty blob never travels.
    let blobs: Vec<UploadBlob> = (0..50)
        .map(|i| {
            let data = format!("small {i} {}", nonce()).into_bytes();
            UploadBlob {
                digest: Digest::of_bytes(&data),
                source: BlobSource::Bytes(data),
            }
        })
        .chain([UploadBlob {
            digest: Digest::EMPTY,
            source: BlobSource::Bytes(Vec::new()),
        }])
        .collect();
    let stats = c.upload_missing(&blobs).await.unwrap();
    assert_eq!(stats.uploaded, 50);
    let digests: Vec<Digest> = blobs.iter().map(|b| b.digest).collect();
    let got = c.batch_read(&digests).await.unwrap();
    assert_eq!(got.len(), 51);
    for (d, data) in got {
        assert_eq!(Digest::of_bytes(&data), d);
    }
    assert!(matches!(
        c.fetch_blob(&Digest::of_bytes(b"never uploaded")).await,
        Err(ReapiError::BlobNotFound(_))
    ));
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_cluster_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(
        &format!("grpc://127.0.0.1:{port}"),
        &ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.is_cluster_failure(), "{err:?}");
    let err = Client::connect("http://127.0.0.1:1", &ClientOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), taskrun::reapi::ErrorKind::Config);
}

#[tokio::test]
async fn execute_without_the_inputs_in_the_cas_says_they_are_missing() {
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let s = spec(
        ws.path(),
        "cat in/a",
        &[("in/a", &format!("never sent {n}"))],
        &[],
    );
    let Some(c) = shared_client().await else {
        return;
    };
    let caps = c.capabilities().await.unwrap();
    let p = taskrun::reapi::action::prepare(&s, caps.api_version).unwrap();
    // The Command, Action and directories, but not the input file.
    let mut blobs = vec![
        UploadBlob {
            digest: p.command_blob.0,
            source: BlobSource::Bytes(p.command_blob.1.clone()),
        },
        UploadBlob {
            digest: p.action_blob.0,
            source: BlobSource::Bytes(p.action_blob.1.clone()),
        },
    ];
    for (d, bytes) in &p.tree.directories {
        blobs.push(UploadBlob {
            digest: *d,
            source: BlobSource::Bytes(bytes.clone()),
        });
    }
    c.upload_missing(&blobs).await.unwrap();
    let err = c
        .execute(
            &p.digest(),
            true,
            None,
            std::future::pending(),
            &std::sync::atomic::AtomicBool::new(false),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ReapiError::MissingBlobs(_)), "{err:?}");
    assert!(err.is_cluster_failure());
    // run_action sends what is missing and runs it.
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("never sent {n}")
    );
}

#[tokio::test]
async fn a_result_stored_with_update_action_result_is_found_again() {
    use taskrun::reapi::proto;
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let s = spec(ws.path(), &format!("computed elsewhere {n}"), &[], &["out"]);
    let Some(c) = shared_client().await else {
        return;
    };
    let caps = c.capabilities().await.unwrap();
    assert!(caps.update_enabled, "{caps:?}");
    let p = taskrun::reapi::action::prepare(&s, caps.api_version).unwrap();
    let content = format!("output {n}").into_bytes();
    let out = Digest::of_bytes(&content);
    c.upload_missing(&[
        UploadBlob {
            digest: p.command_blob.0,
            source: BlobSource::Bytes(p.command_blob.1.clone()),
        },
        UploadBlob {
            digest: p.action_blob.0,
            source: BlobSource::Bytes(p.action_blob.1.clone()),
        },
        UploadBlob {
            digest: out,
            source: BlobSource::Bytes(content.clone()),
        },
    ])
    .await
    .unwrap();
    assert!(c.get_action_result(&p.digest()).await.unwrap().is_none());
    let result = proto::ActionResult {
        output_files: vec![proto::OutputFile {
            path: "out".into(),
            digest: Some(out.to_proto()),
            is_executable: true,
            ..Default::default()
        }],
        stdout_raw: b"said so".to_vec(),
        ..Default::default()
    };
    c.update_action_result(&p.digest(), result).await.unwrap();
    let got = c.get_action_result(&p.digest()).await.unwrap().unwrap();
    assert_eq!(got.output_files[0].path, "out");
    // And run_action takes it as a hit, writing the output executable.
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(o.cached);
    assert_eq!(o.stdout, b"said so");
    assert_eq!(std::fs::read(ws.path().join("out")).unwrap(), content);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ws.path().join("out"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
}

#[tokio::test]
async fn a_cached_result_naming_an_undeclared_path_is_refused_whole() {
    use taskrun::reapi::proto;
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let s = spec(ws.path(), &format!("evil {n}"), &[], &["out"]);
    let Some(c) = shared_client().await else {
        return;
    };
    let caps = c.capabilities().await.unwrap();
    let p = taskrun::reapi::action::prepare(&s, caps.api_version).unwrap();
    let content = b"x".to_vec();
    c.upload_missing(&[
        UploadBlob {
            digest: p.command_blob.0,
            source: BlobSource::Bytes(p.command_blob.1.clone()),
        },
        UploadBlob {
            digest: p.action_blob.0,
            source: BlobSource::Bytes(p.action_blob.1.clone()),
        },
        // BuildGrid answers a lookup only when every blob of the result is in its CAS.
        UploadBlob {
            digest: Digest::of_bytes(&content),
            source: BlobSource::Bytes(content.clone()),
        },
    ])
    .await
    .unwrap();
    let file = |path: &str| proto::OutputFile {
        path: path.into(),
        digest: Some(Digest::of_bytes(&content).to_proto()),
        ..Default::default()
    };
    let result = proto::ActionResult {
        output_files: vec![file("out"), file("../escape")],
        ..Default::default()
    };
    c.update_action_result(&p.digest(), result).await.unwrap();
    assert!(c.get_action_result(&p.digest()).await.unwrap().is_some());
    // The entry is refused whole (nothing written) and the action executed instead: its
    // command, `evil`, does not exist.
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(!o.cached);
    assert_eq!(o.exit_code, 127);
    assert!(!ws.path().join("out").exists());
    assert!(!ws.path().parent().unwrap().join("escape").exists());
}
