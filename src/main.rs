//! The `taskrun` binary: everything lives in the library; see [`taskrun::run`].

/// Loading a large manifest is allocation-heavy; mimalloc halves that cost over glibc malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off before mimalloc's constructor (priority 101) reserves
/// and touches its first arena: run from `main`, that came too late, and the first two
/// 2 MiB pages were zeroed at every start (~1 ms of a small run). They come back on when a
/// large manifest is read (see `taskrun::huge_pages`).
extern "C" fn huge_pages_off_before_the_allocator() {
    taskrun::huge_pages::disable_at_start();
}

// Constructors in `.init_array.NNNNN` run by ascending priority, before the unprioritised ones.
#[used]
#[unsafe(link_section = ".init_array.00100")]
static HUGE_PAGES_OFF: extern "C" fn() = huge_pages_off_before_the_allocator;

fn main() {
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
