//! Transparent huge pages for taskrun's own heap: off for small runs, on for large manifests,
//! and never changed for the commands taskrun starts.
//!
//! The binary turns them off at start (`PR_SET_THP_DISABLE`): with huge pages on "always",
//! every first touch of a 2 MiB region zeroes a whole huge page, which once cost a
//! 10,000-task run 70% of its time, and zeroing one costs a 20-task run more than it saves.
//! Loading a large manifest fills tens of MiB densely, where one fault per 2 MiB instead of
//! per 4 KiB pays (10,000 groups: ~8,500 page faults -> ~500, first run 61 -> 39 ms on a
//! 2-core VM), so [`enable_for_large_heap`] turns them back on unless they are "always".
//!
//! The setting is inherited across `fork` and `execve`; children get back the state taskrun
//! started with ([`for_children`]), so a task's own memory behaves as it would outside.

use std::sync::atomic::{AtomicI32, Ordering};

/// `PR_GET_THP_DISABLE` when the process started; -1 before [`disable_at_start`].
static AT_START: AtomicI32 = AtomicI32::new(-1);

/// Turns huge pages off for this process, remembering the inherited setting.
pub fn disable_at_start() {
    // SAFETY: prctl with PR_GET/SET_THP_DISABLE takes plain integers and only affects this
    // process.
    unsafe {
        let inherited = libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0);
        AT_START.store(inherited.max(0), Ordering::Relaxed);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Lets mimalloc's arena (the one region it advises for huge pages) get them, unless they
/// are on for every mapping.
pub fn enable_for_large_heap() {
    let always = std::fs::read("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.starts_with(b"[always]"));
    if !always {
        // SAFETY: as in `disable_at_start`.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
        }
    }
}

/// The `PR_SET_THP_DISABLE` value a child should exec with: `Some` only when taskrun changed
/// it (a library caller that never called [`disable_at_start`] changes nothing).
pub fn for_children() -> Option<libc::c_ulong> {
    let at_start = AT_START.load(Ordering::Relaxed);
    (at_start >= 0).then(|| libc::c_ulong::from(at_start != 0))
}

/// Sets the child's huge-page setting; called in a child between `fork` and `execve`, so it
/// makes one system call and nothing else.
pub fn restore_in_child(value: Option<libc::c_ulong>) {
    if let Some(v) = value {
        // SAFETY: prctl is async-signal-safe and takes plain integers.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, v, 0, 0, 0);
        }
    }
}
