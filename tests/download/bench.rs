//! Manual measurement (ignored by default): one download from an external loopback server,
//! reporting throughput and this process's peak RSS. Memory must not grow with file size.
//!
//! `TASKRUN_BENCH_URL=http://127.0.0.1:PORT/large/l00.bin [TASKRUN_BENCH_SHA256=...]
//!  cargo test --test download -- --ignored --nocapture bench_one_download`

use std::time::Instant;

use crate::helpers::{Env, download};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "manual measurement against an external server"]
async fn bench_one_download() {
    let Ok(url) = std::env::var("TASKRUN_BENCH_URL") else {
        eprintln!("set TASKRUN_BENCH_URL");
        return;
    };
    let env = Env::new().await;
    let mut dl = download(vec![url], "bench.bin");
    dl.sha256 = std::env::var("TASKRUN_BENCH_SHA256")
        .ok()
        .filter(|s| !s.is_empty());
    let before = peak_rss_kib();
    let start = Instant::now();
    let done = env.attempt(&dl).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let mib = done.size as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{mib:.1} MiB in {secs:.2} s = {:.1} MiB/s; peak RSS {} KiB (before: {before} KiB)",
        mib / secs,
        peak_rss_kib()
    );
}
