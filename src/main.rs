//! The `taskrun` binary: everything lives in the library; see [`taskrun::run`].

/// Loading a large manifest is allocation-heavy; mimalloc halves that cost over glibc malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Off until a large manifest is read (see `taskrun::huge_pages`).
    taskrun::huge_pages::disable_at_start();
    let code = taskrun::exit_status(std::env::args_os());
    // Every file is written and closed by now. Exiting without the allocator's teardown (it
    // returns every page of a large run's heap to the OS one by one: ~10 ms on 10,000 tasks);
    // the kernel reclaims the whole address space at once.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes a plain integer and does not return; nothing is left to run.
    unsafe { libc::_exit(i32::from(code)) }
}
