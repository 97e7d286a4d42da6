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
//! would outside: a forked child sets it before `execve` ([`restore_in_child`]); a child that
//! shares taskrun's memory until `execve` (`CLONE_VM`) cannot without changing taskrun's own,
//! so the parent sets it around that spawn ([`ForSpawn`]).

use std::sync::atomic::{AtomicI32, Ordering};

/// `PR_GET_THP_DISABLE` when the process started; -1 before [`disable_at_start`].
static AT_START: AtomicI32 = AtomicI32::new(-1);
/// The value taskrun set for itself since (`1` off, `0` on).
static NOW: AtomicI32 = AtomicI32::new(-1);

/// Turns huge pages off for this process, remembering the inherited setting.
pub fn disable_at_start() {
    // SAFETY: prctl with PR_GET/SET_THP_DISABLE takes plain integers and only affects this
    // process.
    unsafe {
        let inherited = libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0);
        AT_START.store(inherited.max(0), Ordering::Relaxed);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        NOW.store(1, Ordering::Relaxed);
    }
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
        // SAFETY: as in `disable_at_start`.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
        }
        NOW.store(0, Ordering::Relaxed);
    }
}

/// While alive, this process has the setting it started with, for a `CLONE_VM | CLONE_VFORK`
/// child to exec with; dropped once the child has exec'd, it puts taskrun's own back. Other
/// threads may fault a page or two under the inherited setting meanwhile: harmless.
pub struct ForSpawn(Option<libc::c_ulong>);

impl ForSpawn {
    /// Switches to the inherited setting when taskrun's own differs.
    pub fn begin() -> Self {
        let (at_start, now) = (
            AT_START.load(Ordering::Relaxed),
            NOW.load(Ordering::Relaxed),
        );
        if at_start < 0 || now < 0 || at_start == now {
            return Self(None);
        }
        set(libc::c_ulong::from(at_start != 0));
        Self(Some(libc::c_ulong::from(now != 0)))
    }
}

impl Drop for ForSpawn {
    fn drop(&mut self) {
        if let Some(own) = self.0 {
            set(own);
        }
    }
}

fn set(value: libc::c_ulong) {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only affects this
    // process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, value, 0, 0, 0);
    }
}

/// The `PR_SET_THP_DISABLE` value a child should exec with: `Some` only when taskrun changed
/// it (a library caller that never called [`disable_at_start`] changes nothing).
pub fn for_children() -> Option<libc::c_ulong> {
    let at_start = AT_START.load(Ordering::Relaxed);
    (at_start >= 0).then(|| libc::c_ulong::from(at_start != 0))
}

/// Sets a forked child's huge-page setting (its own copy of the address space); called
/// between `fork` and `execve`, so it makes one system call and nothing else.
pub fn restore_in_child(value: Option<libc::c_ulong>) {
    if let Some(v) = value {
        // SAFETY: prctl is async-signal-safe and takes plain integers.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, v, 0, 0, 0);
        }
    }
}
