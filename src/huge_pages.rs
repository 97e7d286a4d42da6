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
//! The setting belongs to the address space and is inherited across `fork` and `execve`;
//! children get back the state taskrun started with, so a task's own memory behaves as it
//! would outside: a forked child sets it before `execve` ([`set`]); a child that
//! shares taskrun's memory until `execve` (`CLONE_VM`) cannot without changing taskrun's own,
//! so the parent sets it around that spawn ([`ForSpawn`]).

use std::sync::atomic::{AtomicI32, Ordering};

/// `PR_GET_THP_DISABLE` when the process started; -1 before [`disable_at_start`].
static AT_START: AtomicI32 = AtomicI32::new(-1);
/// The value taskrun set for itself since (`1` off, `0` on).
static NOW: AtomicI32 = AtomicI32::new(-1);

/// Turns huge pages off for this process, remembering the inherited setting.
pub fn disable_at_start() {
    // SAFETY: prctl with PR_GET_THP_DISABLE takes plain integers and changes nothing.
    unsafe {
        let inherited = libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0);
        AT_START.store(inherited.max(0), Ordering::Relaxed);
    }
    set(1);
    NOW.store(1, Ordering::Relaxed);
}

/// Lets mimalloc's arena (the one region it advises for huge pages) get them, unless they
/// are on for every mapping, or taskrun was started with them off.
pub fn enable_for_large_heap() {
    if AT_START.load(Ordering::Relaxed) != 0 {
        return;
    }
    let always = std::fs::read("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.starts_with(b"[always]"));
    if !always {
        set(0);
        NOW.store(0, Ordering::Relaxed);
    }
}

/// The setting a child must exec with, when it is not taskrun's own now; `None` when they
/// agree (or a library caller never called [`disable_at_start`]).
pub fn for_children() -> Option<libc::c_ulong> {
    let (at_start, now) = (
        AT_START.load(Ordering::Relaxed),
        NOW.load(Ordering::Relaxed),
    );
    (at_start >= 0 && now >= 0 && at_start != now).then(|| libc::c_ulong::from(at_start != 0))
}

/// While alive, this process has the setting it started with, for a `CLONE_VM | CLONE_VFORK`
/// child to exec with; dropped once the child has exec'd, it puts taskrun's own back. Other
/// threads may fault a page or two under the inherited setting meanwhile: harmless.
pub struct ForSpawn(Option<libc::c_ulong>);

impl ForSpawn {
    /// Switches to the inherited setting when taskrun's own differs.
    pub fn begin() -> Self {
        Self(for_children().map(|inherited| {
            set(inherited);
            1 - inherited
        }))
    }
}

impl Drop for ForSpawn {
    fn drop(&mut self) {
        if let Some(own) = self.0 {
            set(own);
        }
    }
}

/// Sets this address space's setting: 1 off, 0 on. Makes one async-signal-safe system call,
/// so a forked child may call it before `execve` (its own copy of the address space).
pub fn set(value: libc::c_ulong) {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only affects this
    // process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, value, 0, 0, 0);
    }
}
