//! The `taskrun` binary: everything lives in the library; see [`taskrun::run`].

/// Loading a large manifest is allocation-heavy; mimalloc halves that cost over glibc malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // With transparent huge pages on "always", every first touch of a 2 MiB region zeroes a
    // whole huge page: that was 70% of a 10,000-task run. taskrun's heap is small and short-lived.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only affects this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    taskrun::run(std::env::args_os())
}
