//! The `taskrun` binary: everything lives in the library; see [`taskrun::run`].

/// Loading a large manifest is allocation-heavy; mimalloc halves that cost over glibc malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    taskrun::run(std::env::args_os())
}
