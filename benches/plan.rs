//! Load + validate + plan a generated manifest of 10,000 and 100,000 tasks.
//!
//! `cargo bench --bench plan` prints the median of several runs per size. The manifest is a
//! layered DAG: 100 tasks per layer, each depending on two tasks of the layer before, with a
//! command, an input glob and an output, so every validation path is exercised.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use taskrun::manifest::{LoadOptions, load_str};
use taskrun::plan::Plan;

/// The same allocator as the binary, so the numbers match what users get.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn generate(tasks: usize) -> String {
    let width = 100;
    let mut s = String::with_capacity(tasks * 160);
    s.push_str("version = 1\n[pipeline]\nname = \"bench\"\nconcurrency = 8\n[pools]\nnet = 4\n[vars]\nout = \"build\"\n");
    for i in 0..tasks {
        let _ = write!(
            s,
            "\n[tasks.t{i}]\nrun = \"echo {i} > ${{vars.out}}/t{i}.txt\"\noutputs = [\"build/t{i}.txt\"]\ninputs = [\"src/t{i}/*.c\"]\n"
        );
        if i >= width {
            let layer_start = (i / width - 1) * width;
            let a = layer_start + (i * 7) % width;
            let b = layer_start + (i * 13 + 5) % width;
            let _ = writeln!(s, "deps = [\"t{a}\", \"t{b}\"]");
        }
        if i % 10 == 0 {
            s.push_str("uses = { net = 1 }\n");
        }
    }
    s
}

fn measure(tasks: usize, runs: usize) -> (Duration, usize) {
    let text = generate(tasks);
    let env = |_: &str| None;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let pipeline = load_str(
            Path::new("bench.toml"),
            text.clone(),
            &LoadOptions::default(),
            &env,
        )
        .unwrap_or_else(|_| panic!("generated manifest is invalid"));
        let plan = Plan::build(pipeline, &[]).unwrap_or_else(|_| panic!("plan failed"));
        assert_eq!(plan.order.len(), tasks);
        times.push(start.elapsed());
    }
    times.sort();
    (times[times.len() / 2], text.len())
}

fn main() {
    // `cargo test --benches` runs this too; keep that quick.
    let quick = std::env::args().any(|a| a == "--test") || std::env::args().all(|a| a != "--bench");
    let sizes: &[(usize, usize)] = if quick {
        &[(1_000, 1)]
    } else {
        &[(10_000, 7), (100_000, 5)]
    };
    for &(tasks, runs) in sizes {
        let (median, bytes) = measure(tasks, runs);
        println!(
            "load+validate+plan {tasks:>7} tasks ({:.1} MiB manifest): median {:.1} ms over {runs} runs",
            bytes as f64 / (1 << 20) as f64,
            median.as_secs_f64() * 1e3
        );
    }
}
