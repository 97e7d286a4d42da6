//! Starting a child with `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` and `execve`.
//!
//! std's `Command::spawn` uses glibc's `posix_spawn`, whose child resets every signal one
//! by one before `exec` (about 120 `rt_sigaction` calls, while the parent waits for the
//! vfork'd child), and which costs the parent a stack `mmap`/`munmap`, five `prlimit64`
//! calls and a `pidfd_open`. For thousands of short commands that was a large share of the
//! time per task. This child resets only the signals that can have a handler here (see
//! `signals_to_reset`), and the pidfd comes with the clone.
//!
//! Anything unusual (a program not resolved to an absolute path, descriptors 0-2 closed in
//! taskrun, a kernel without `CLONE_PIDFD`) returns `None` and the caller uses std's
//! `Command`, which handles every case.

use std::ffi::{CString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// A child that has exec'd: its pid, pidfd and the read ends of its stdout and stderr.
pub struct Spawned {
    /// Process id (and process group id).
    pub pid: u32,
    /// Becomes readable when the child exits.
    pub pidfd: OwnedFd,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// Set once `clone` refused `CLONE_PIDFD` (kernel before 5.2): std spawns from then on.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Everything the child needs, prepared by the parent: the child allocates nothing.
#[repr(C)]
struct ChildArgs {
    prog: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: [RawFd; 3],
    reset: *const c_int,
    reset_len: usize,
    /// taskrun's pid: the child checks it is still its parent once its death signal is set.
    parent: libc::pid_t,
    /// Set by the child when it fails before or at `execve`.
    errno: c_int,
}

/// Spawns `prog` (an absolute path) with `argv` in `cwd`, the environment plus `env`, stdin
/// from `stdin`, in a new process group. `Ok(None)`: not handled here, use std.
pub fn spawn(
    prog: &Path,
    argv: &[String],
    cwd: &Path,
    env: &[(String, String)],
    stdin: RawFd,
) -> io::Result<Option<Spawned>> {
    if !prog.is_absolute() || stdin < 3 || UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let prog_c = cstring(prog.as_os_str().as_bytes())?;
    let argv_c = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let task_env = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let Some(inherited) = inherited_env() else {
        return Ok(None);
    };
    let envp_p: Vec<*const libc::c_char> = inherited
        .iter()
        .filter(|(k, _)| !env.iter().any(|(ek, _)| ek.as_bytes() == k.as_slice()))
        .map(|(_, kv)| kv.as_ptr())
        .chain(task_env.iter().map(|kv| kv.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let cwd_c = cstring(cwd.as_os_str().as_bytes())?;
    let argv_p = pointers(&argv_c);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    if out_w.as_raw_fd() < 3 || err_w.as_raw_fd() < 3 {
        return Ok(None);
    }
    let reset = signals_to_reset();
    let mut args = ChildArgs {
        prog: prog_c.as_ptr(),
        argv: argv_p.as_ptr(),
        envp: envp_p.as_ptr(),
        cwd: cwd_c.as_ptr(),
        fds: [stdin, out_w.as_raw_fd(), err_w.as_raw_fd()],
        reset: reset.as_ptr(),
        reset_len: reset.len(),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        errno: 0,
    };
    // The child runs on this stack while the parent waits; it only makes system calls.
    // Never read from Rust, so it needs no initialising.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    let top = stack.as_mut_ptr().wrapping_add(CHILD_STACK - 64);
    let top = top.wrapping_sub(top as usize % 16).cast::<c_void>();
    let mut pidfd: c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // The child shares this address space until `execve`, and inherits its huge-page setting.
    let thp = crate::huge_pages::ForSpawn::begin();
    // SAFETY: signal masks are plain values. Blocking every signal keeps the parent's
    // handlers from running on the child (which shares its memory) until the child has
    // reset them; the parent's mask is restored right after.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        set_mask(&all, &mut old);
        // SAFETY: `child_main` only reads `args` and writes its `errno`, calls
        // async-signal-safe functions and ends in `execve` or `_exit`; with CLONE_VFORK
        // this thread waits until then, so `args`, the strings and the stack outlive it.
        let pid = libc::clone(
            child_main,
            top,
            flags,
            (&raw mut args).cast::<c_void>(),
            &raw mut pidfd,
        );
        let e = io::Error::last_os_error();
        set_mask(&old, std::ptr::null_mut());
        if pid < 0 {
            if e.raw_os_error() == Some(libc::EINVAL) {
                UNSUPPORTED.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            return Err(e);
        }
        pid
    };
    drop((thp, out_w, err_w, stack));
    // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor that only we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // SAFETY: the child is gone from this memory (exec'd or exited); a plain read.
    let errno = unsafe { std::ptr::read_volatile(&raw const args.errno) };
    if errno != 0 {
        // It failed before exec and has exited: reap it and report why.
        let mut status = 0;
        // SAFETY: waits for our own child, which has already called _exit.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(errno));
    }
    let pid = u32::try_from(pid).map_err(|_| io::Error::other("negative pid"))?;
    Ok(Some(Spawned {
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
    }))
}

/// The child's stack: it runs a few system calls, never Rust code that could recurse.
const CHILD_STACK: usize = 64 << 10;

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive and untouched until we exec or exit.
    // Only async-signal-safe calls follow; nothing allocates or takes a lock.
    unsafe {
        let a = &mut *arg.cast::<ChildArgs>();
        if libc::setpgid(0, 0) != 0 {
            fail(a);
        }
        // SPEC §13: the child dies with taskrun, even with a kill -9 of taskrun.
        if !die_with_parent(a.parent) {
            fail(a);
        }
        let fds = a.fds;
        for (target, fd) in (0..).zip(fds) {
            if libc::dup2(fd, target) < 0 {
                fail(a);
            }
        }
        if libc::chdir(a.cwd) != 0 {
            fail(a);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for i in 0..a.reset_len {
            let sig = *a.reset.add(i);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (sig == libc::SIGPIPE || old.sa_sigaction != libc::SIG_IGN)
                && old.sa_sigaction != libc::SIG_DFL
            {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        set_mask(&empty, std::ptr::null_mut());
        libc::execve(a.prog, a.argv, a.envp);
        fail(a)
    }
}

/// Asks the kernel to SIGKILL this process when its parent (taskrun's thread that spawned
/// it: the run loop, which lives as long as the run) dies, and checks that the parent has not
/// died already. The setting survives `execve`. Async-signal-safe: two system calls.
pub fn die_with_parent(parent: libc::pid_t) -> bool {
    // SAFETY: prctl and getppid are async-signal-safe system calls with plain arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == 0
            && libc::getppid() == parent
    }
}

/// Records errno for the parent and exits (never returns into the parent's code).
unsafe fn fail(a: &mut ChildArgs) -> ! {
    // SAFETY: errno is this thread's; _exit ends the child without running any handlers.
    unsafe {
        a.errno = (*libc::__errno_location()).max(1);
        libc::_exit(127)
    }
}

/// Sets this thread's signal mask with the raw system call: glibc's wrappers leave its two
/// internal signals unblocked, and no handler may run on the child.
///
/// # Safety
/// `old` is null or points to writable memory for a `sigset_t`.
unsafe fn set_mask(set: &libc::sigset_t, old: *mut libc::sigset_t) {
    // SAFETY: the kernel reads `set` and writes `old` (if not null), 8 bytes each.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            set,
            old,
            8usize,
        );
    }
}

/// The signals the child resets to their default before `exec`: those with a handler in
/// taskrun when first asked, the ones a runtime or library commonly catches, and SIGPIPE
/// (ignored by Rust programs, default for children as with std). A signal ignored when
/// taskrun started stays ignored, as with `posix_spawn`.
///
/// A handler installed later for a signal not listed stays in place in the child only until
/// `execve` (which resets it): it could run there only if that signal arrived in the few
/// instructions between the child unblocking signals and `execve`.
fn signals_to_reset() -> &'static [c_int] {
    static SET: OnceLock<Vec<c_int>> = OnceLock::new();
    SET.get_or_init(|| {
        let mut set = vec![
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGCHLD,
            libc::SIGPIPE,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
            libc::SIGWINCH,
            libc::SIGSEGV,
            libc::SIGBUS,
        ];
        for sig in 1..libc::SIGRTMIN() {
            // SAFETY: querying a disposition writes only to `old`.
            let handled = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
            };
            if handled && !set.contains(&sig) {
                set.push(sig);
            }
        }
        set
    })
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte in a command argument or environment variable",
        )
    })
}

/// One inherited variable: its name, and `NAME=value` for `envp`.
type EnvVar = (Vec<u8>, CString);

/// The caller's environment as `NAME=value` strings, built once per process: taskrun never
/// changes its own environment, and rebuilding it for every child (an allocation and copy
/// per variable) was a measurable part of spawning thousands of short commands. `None` when
/// a variable cannot be passed this way (a NUL byte): std's `Command` handles those.
fn inherited_env() -> Option<&'static [EnvVar]> {
    static ENV: OnceLock<Option<Vec<EnvVar>>> = OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .map(|(k, v)| {
                let kv = CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).ok()?;
                Some((k.into_vec(), kv))
            })
            .collect()
    })
    .as_deref()
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::spawn;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// Runs `script` with `sh` through [`spawn`]; returns its exit code, stdout and stderr.
    fn sh(script: &str, env: &[(&str, &str)]) -> (i32, String, String) {
        let null = std::fs::File::open("/dev/null").unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let argv = ["sh".to_string(), "-c".to_string(), script.to_string()];
        let s = spawn(
            "/bin/sh".as_ref(),
            &argv,
            "/".as_ref(),
            &env,
            null.as_raw_fd(),
        )
        .unwrap()
        .expect("the clone path handles this");
        let (mut out, mut err) = (String::new(), String::new());
        std::fs::File::from(s.stdout)
            .read_to_string(&mut out)
            .unwrap();
        std::fs::File::from(s.stderr)
            .read_to_string(&mut err)
            .unwrap();
        let mut status = 0;
        // SAFETY: waits for the child just spawned.
        unsafe { libc::waitpid(s.pid as libc::pid_t, &mut status, 0) };
        (libc::WEXITSTATUS(status), out, err)
    }

    #[test]
    fn the_child_gets_its_dir_env_output_pipes_and_exit_code() {
        let (code, out, err) = sh(
            "pwd; echo \"$TR_X-$HOME\"; echo e >&2; exit 7",
            &[("TR_X", "x")],
        );
        assert_eq!(code, 7);
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(out, format!("/\nx-{home}\n"));
        assert_eq!(err, "e\n");
        let (_, out, _) = sh("echo \"$HOME\"", &[("HOME", "/elsewhere")]);
        assert_eq!(out, "/elsewhere\n");
    }

    #[test]
    fn the_child_leads_its_group_with_no_blocked_signals_and_default_sigpipe() {
        let (_, out, _) = sh(
            "echo $$; cut -d' ' -f5 /proc/$$/stat; grep -E '^Sig(Blk|Ign)' /proc/self/status",
            &[],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], lines[1], "pid and process group: {out}");
        let field = |name: &str| {
            let line = lines.iter().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{out}");
        assert_eq!(field("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    #[test]
    fn a_missing_program_or_directory_is_an_error() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let argv = ["x".to_string()];
        let e = spawn(
            "/nonexistent/x".as_ref(),
            &argv,
            "/".as_ref(),
            &[],
            null.as_raw_fd(),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = spawn(
            "/bin/sh".as_ref(),
            &argv,
            "/nonexistent".as_ref(),
            &[],
            null.as_raw_fd(),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
