//! Hashing throughput: taskrun's file hasher vs `openssl dgst -sha256` on the same 1 GiB file.
//!
//! `cargo bench --bench hash` (set TASKRUN_BENCH_HASH_MIB to change the size). Each tool runs
//! three times after a warm-up read, so both hash from the page cache; the best run counts.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use taskrun::cache::digest::{hash_file, to_hex};

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("at least one run"))
}

fn main() {
    let mib: u64 = std::env::var("TASKRUN_BENCH_HASH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..mib {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&block).expect("write");
        }
    }
    let bytes = (mib << 20) as f64;
    let _ = hash_file(&path);
    let (ours, (digest, _)) = best(3, || hash_file(&path).expect("hash"));
    println!(
        "taskrun hash_file: {:.2} GB/s ({})",
        bytes / ours.as_secs_f64() / 1e9,
        to_hex(&digest)
    );
    let openssl = best(3, || {
        Command::new("openssl")
            .args(["dgst", "-sha256"])
            .arg(&path)
            .output()
    });
    match openssl {
        (t, Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let same = text.trim_end().ends_with(&to_hex(&digest));
            println!(
                "openssl dgst -sha256: {:.2} GB/s (same digest: {same})",
                bytes / t.as_secs_f64() / 1e9
            );
        }
        _ => println!("openssl dgst -sha256: not available"),
    }
}
