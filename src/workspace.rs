//! The workspace's trust boundary on disk (SPEC §13): where a path from a manifest or from
//! outside data (a cache record, a remote's blob, a server's body) meets the file system.
//!
//! [`RelPath`] already refuses, lexically, a path that climbs out of the root; what is left
//! is what is on disk. A symlink at an output, or at one of its parent directories, that
//! leads outside the workspace (or nowhere) is removed before anything is restored,
//! downloaded or run there, and is never followed. A symlink that stays inside the workspace
//! is kept: the user or a task put it there, it only reaches files the workspace already
//! holds, and a cache record cannot make one (a restore writes regular files only). Reads and
//! the parent directories of writes follow such a link; the output file itself is always
//! replaced by a rename, never written through a link.
//!
//! Writes ([`Workspace::open_dir`]) walk from the root one directory at a time with
//! `O_NOFOLLOW`, and follow an inside link only by walking its resolved path the same way: a
//! symlink swapped in after a check is met by the open that would have followed it.

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use rustc_hash::{FxBuildHasher, FxHashSet};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

use crate::model::RelPath;

/// Names of the temp files a write leaves beside its destination when it cannot use the
/// store's temp area (another file system). Input globs and output snapshots skip them, so an
/// interrupted write never enters a key or a record.
pub const TEMP_PREFIX: &str = ".taskrun-tmp-";

/// A temp file beside `dest` for a file the user reads (report, lockfile, timings page):
/// created as `0o666` less the umask, like any editor's or `curl -o`'s file, not `0o600`.
pub fn user_temp_beside(dest: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Symlinks followed on one walk before it gives up (the kernel's own limit is 40).
const MAX_HOPS: usize = 40;

/// Directories [`Workspace::look`] found to be real directories (not symlinks) in this run,
/// while taskrun had started no process that could have replaced one since: a run of 1,000
/// downloads into `data/` then `lstat`s `data` once, not 1,000 times. `None` from the first
/// command or service on ([`children_started`]): a child may swap a directory for a symlink
/// at any moment, so from then on every look walks every component again.
static JUDGED: Mutex<Option<Judged>> = Mutex::new(Some(Judged {
    real: FxHashSet::with_hasher(FxBuildHasher),
    fresh: FxHashSet::with_hasher(FxBuildHasher),
}));

/// What [`JUDGED`] remembers.
struct Judged {
    /// Found to be real directories.
    real: FxHashSet<PathBuf>,
    /// Created by taskrun itself ([`create_dir_all`]): everything in them was put there by
    /// this process, which writes no link that leads outside (a remote action's output links
    /// are checked to stay inside), so a name in one needs no look for an escaping link
    /// before a write (1,000 downloads into a new `data/` skip 1,000 `lstat`s of names that
    /// do not exist yet, a fifth of their path lookups).
    fresh: FxHashSet<PathBuf>,
}

/// Per workspace root, the paths taskrun reads itself (the manifest, its lockfile,
/// `.taskrun/`, the cache dir: [`crate::manifest::reserved::paths`]), registered by the run
/// that writes there ([`reserve`]). A symlink inside the workspace that would lead a write
/// onto one of them is judged like one that leads outside.
static RESERVED: Mutex<Vec<(PathBuf, ReservedPaths)>> = Mutex::new(Vec::new());

/// Reserved paths relative to a root, each with what it is.
type ReservedPaths = Vec<(String, &'static str)>;

/// Registers the reserved paths of the workspace at `root` (see `RESERVED`).
pub fn reserve(root: &Path, paths: ReservedPaths) {
    let mut all = RESERVED.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|(r, _)| r != root);
    all.push((root.to_path_buf(), paths));
}

/// The reserved path of the workspace at `root` that `rel` (resolved) is, lies in or holds,
/// with what it is.
fn reserved_clash(root: &Path, rel: &Path) -> Option<(String, &'static str)> {
    let rel = rel.to_str()?;
    let all = RESERVED.lock().unwrap_or_else(PoisonError::into_inner);
    let (_, paths) = all.iter().find(|(r, _)| r == root)?;
    paths
        .iter()
        .find(|(p, _)| crate::manifest::reserved::clashes(rel, p))
        .cloned()
}

/// A child process is about to start: directories judged so far are judged again on their
/// next look (see `JUDGED`).
pub fn children_started() {
    *JUDGED.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// `f` on what is remembered, unless a child process has started (then `None`).
fn judged<T>(f: impl FnOnce(&mut Judged) -> T) -> Option<T> {
    JUDGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .map(f)
}

fn is_real_dir(path: &Path) -> bool {
    judged(|j| j.real.contains(path) || j.fresh.contains(path)).unwrap_or(false)
}

fn remember_real_dir(path: &Path) {
    judged(|j| j.real.insert(path.to_path_buf()));
}

fn is_fresh_dir(path: &Path) -> bool {
    judged(|j| j.fresh.contains(path)).unwrap_or(false)
}

/// `std::fs::create_dir_all`, remembering each directory this call creates as fresh (see
/// `Judged::fresh`); one that exists already is left as it is and judged as before.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_dir_all(parent)?;
            }
            match fs::create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    judged(|j| j.fresh.insert(path.to_path_buf()));
    Ok(())
}

/// The workspace root, and the checks that keep a path inside it.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    /// The root with its symlinks resolved, computed when a symlink must be judged.
    real: OnceLock<PathBuf>,
}

/// What is at a workspace path, looked at without following any symlink that leaves it.
#[derive(Debug)]
pub enum Found {
    /// Nothing (or a file where a parent directory should be).
    Missing,
    /// The entry, symlinks inside the workspace followed.
    Entry(fs::Metadata),
    /// This symlink, at the path or one of its parents, leads outside the workspace or
    /// nowhere.
    Escape(PathBuf),
}

/// A directory inside the workspace, opened without following a symlink out of it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Workspace {
    /// The workspace rooted at `root` (absolute; the manifest's directory).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            real: OnceLock::new(),
        }
    }

    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn real(&self) -> &Path {
        self.real
            .get_or_init(|| fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone()))
    }

    /// Where the symlink at `link` ends up, relative to the root, when that is inside the
    /// workspace; `None` when it leads outside or to nothing.
    fn resolve_inside(&self, link: &Path) -> Option<PathBuf> {
        let target = fs::canonicalize(link).ok()?;
        target.strip_prefix(self.real()).ok().map(Path::to_path_buf)
    }

    /// True when the symlink at `link` resolves to something inside the workspace.
    pub fn leads_inside(&self, link: &Path) -> bool {
        self.resolve_inside(link).is_some()
    }

    /// Looks at `rel` one component at a time (an `lstat` each), judging every symlink on
    /// the way; a read-only check, for `plan`/`explain` and before any read of an output.
    pub fn look(&self, rel: &RelPath) -> io::Result<Found> {
        let mut path = self.root.clone();
        let mut parts = rel.as_str().split('/').peekable();
        while let Some(part) = parts.next() {
            path.push(part);
            let last = parts.peek().is_none();
            if !last && is_real_dir(&path) {
                continue;
            }
            let meta = match crate::cache::stat::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if is_absent(&e) => return Ok(Found::Missing),
                Err(e) => return Err(e),
            };
            if meta.file_type().is_symlink() {
                let Some(inside) = self.resolve_inside(&path) else {
                    return Ok(Found::Escape(path));
                };
                if self.landing_clash(&inside, parts.clone()).is_some() {
                    return Ok(Found::Escape(path));
                }
                if last {
                    return crate::cache::stat::metadata(&path).map(Found::Entry);
                }
            } else if last {
                return Ok(Found::Entry(meta));
            } else if !meta.is_dir() {
                return Ok(Found::Missing);
            } else {
                remember_real_dir(&path);
            }
        }
        // `rel` is never empty, so the loop returned.
        Ok(Found::Missing)
    }

    /// [`Self::look`], removing each escaping symlink it meets (with a warning) so that what
    /// follows (a restore, a download, a command) can never go through it.
    pub fn unlink_escapes(&self, rel: &RelPath) -> io::Result<Found> {
        for _ in 0..MAX_HOPS {
            match self.look(rel)? {
                Found::Escape(link) => {
                    let target = fs::read_link(&link).unwrap_or_default();
                    let why = self.why_escape(&link, rel);
                    match fs::remove_file(&link) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    tracing::warn!(
                        "removed the symlink {} (to {}): {why}",
                        self.show(&link),
                        target.display()
                    );
                }
                found => return Ok(found),
            }
        }
        Err(io::Error::other(format!("{rel}: too many symlinks")))
    }

    /// [`Self::unlink_escapes`] before a write to `rel` that replaces whatever is there (a
    /// rename onto it): skipped for a name in a directory taskrun created in this run, where
    /// no link can lead outside (see `Judged::fresh`).
    pub fn unlink_escapes_before_write(&self, rel: &RelPath) -> io::Result<()> {
        let path = self.root.join(rel.as_str());
        if path.parent().is_some_and(is_fresh_dir) {
            return Ok(());
        }
        self.unlink_escapes(rel).map(drop)
    }

    /// Why [`Self::look`] judged the symlink at `link` on the way to `rel` an escape.
    fn why_escape(&self, link: &Path, rel: &RelPath) -> String {
        let rest = link
            .strip_prefix(&self.root)
            .ok()
            .and_then(|l| Path::new(rel.as_str()).strip_prefix(l).ok());
        let rest = rest
            .into_iter()
            .flat_map(|r| r.iter().filter_map(|c| c.to_str()));
        let clash = self
            .resolve_inside(link)
            .and_then(|inside| self.landing_clash(&inside, rest));
        match clash {
            Some((path, what)) => format!("{rel} through it would be `{path}`, {what}"),
            None => "it leads outside the workspace".to_string(),
        }
    }

    /// The reserved path (see `RESERVED`) a write through a link resolving to `inside`
    /// would reach, `rest` being the components after the link.
    fn landing_clash<'r>(
        &self,
        inside: &Path,
        rest: impl IntoIterator<Item = &'r str>,
    ) -> Option<(String, &'static str)> {
        let mut landing = inside.to_path_buf();
        landing.extend(rest);
        reserved_clash(&self.root, &landing)
    }

    fn show<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }

    /// Opens the directory `rel` (the root for `None`), creating what is missing when
    /// `create`. Symlinks on the way that lead outside are removed (and replaced by a real
    /// directory); those that stay inside are followed by walking their resolved path.
    pub fn open_dir(&self, rel: Option<&str>, create: bool) -> io::Result<Dir> {
        let open_root = || -> io::Result<Dir> {
            let fd = rustix::fs::open(&self.root, dir_flags() & !OFlags::NOFOLLOW, Mode::empty())?;
            Ok(Dir {
                fd,
                path: self.root.clone(),
            })
        };
        let mut dir = open_root()?;
        let mut todo: Vec<String> = rel
            .unwrap_or("")
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match rustix::fs::openat(&dir.fd, part.as_str(), dir_flags(), Mode::empty()) {
                Ok(fd) => {
                    dir.path.push(&part);
                    dir.fd = fd;
                    continue;
                }
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&dir.fd, part.as_str(), Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    todo.push(part);
                    continue;
                }
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {}
                Err(e) => return Err(e.into()),
            }
            // Not a directory: a symlink to judge, or a file in the way.
            let st = rustix::fs::statat(&dir.fd, part.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            let link = dir.path.join(&part);
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Symlink {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", self.show(&link)),
                ));
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(io::Error::other(format!(
                    "{}: too many symlinks",
                    self.show(&link)
                )));
            }
            // As `look` judges it: out of the workspace, or onto a path taskrun reads.
            let inside = self.resolve_inside(&link);
            let rest = || todo.iter().rev().map(String::as_str);
            let clash = inside.as_ref().and_then(|i| self.landing_clash(i, rest()));
            match (inside, clash) {
                (Some(inside), None) => {
                    // Walk the resolved path from the root, with the same checks.
                    for p in inside.iter().rev() {
                        todo.push(p.to_string_lossy().into_owned());
                    }
                    dir = open_root()?;
                }
                (inside, clash) => {
                    rustix::fs::unlinkat(&dir.fd, part.as_str(), AtFlags::empty())?;
                    let why = match (inside, clash) {
                        (Some(_), Some((path, what))) => format!("it leads onto `{path}`, {what}"),
                        _ => "it leads outside the workspace".to_string(),
                    };
                    tracing::warn!("removed the symlink {}: {why}", self.show(&link));
                    todo.push(part);
                }
            }
        }
        Ok(dir)
    }

    /// Opens the parent directory of `rel` (see [`Self::open_dir`]) and returns it with the
    /// file name.
    pub fn open_parent<'a>(&self, rel: &'a RelPath, create: bool) -> io::Result<(Dir, &'a str)> {
        let (parent, name) = match rel.as_str().rsplit_once('/') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, rel.as_str()),
        };
        Ok((self.open_dir(parent, create)?, name))
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

impl Dir {
    /// The directory's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished temp file at `tmp` (anywhere on this file system) onto `name` in
    /// this directory; the rename replaces whatever is there, a symlink included, without
    /// following it. Across file systems the content is copied to a temp file beside `name`
    /// first ([`TEMP_PREFIX`]), so `name` still appears whole or not at all.
    pub fn replace_with(&self, tmp: tempfile::TempPath, name: &str, mode: u32) -> io::Result<()> {
        match rustix::fs::renameat(CWD, &*tmp, &self.fd, name) {
            Ok(()) => {
                // Gone from where it was: nothing left for the guard to delete.
                let _ = tmp.keep();
                Ok(())
            }
            Err(rustix::io::Errno::XDEV) => {
                let mut src = File::open(&tmp)?;
                self.write_via_temp(&mut src, name, mode)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the temp files ([`TEMP_PREFIX`]) a killed write left in this directory, so
    /// that a command listing it never sees them.
    pub fn remove_temp_files(&self) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let name = entry?.file_name().to_owned();
            if name.to_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                names.push(name);
            }
        }
        for name in names {
            match rustix::fs::unlinkat(&self.fd, name.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Copies `src` to a temp file in this directory, sets `mode`, and renames it onto `name`.
    fn write_via_temp(&self, src: &mut File, name: &str, mode: u32) -> io::Result<()> {
        let tmp = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(
            &self.fd,
            tmp.as_str(),
            flags | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )?;
        let mut out = File::from(fd);
        let written = io::copy(src, &mut out)
            .and_then(|_| {
                rustix::fs::fchmod(&out, Mode::from_raw_mode(mode & 0o777)).map_err(Into::into)
            })
            .and_then(|()| {
                rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(Into::into)
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rel(p: &str) -> RelPath {
        RelPath::parse(p).unwrap()
    }

    #[test]
    fn escaping_links_are_found_and_removed_inside_ones_kept() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = ws_dir.path();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/f"), "x").unwrap();
        symlink(outside.path(), root.join("out")).unwrap();
        symlink("real", root.join("inside")).unwrap();
        symlink(root.join("nowhere"), root.join("dangling")).unwrap();
        let ws = Workspace::new(root);
        assert!(
            matches!(ws.look(&rel("out/f")).unwrap(), Found::Escape(p) if p == root.join("out"))
        );
        assert!(matches!(ws.look(&rel("inside/f")).unwrap(), Found::Entry(m) if m.is_file()));
        assert!(matches!(
            ws.look(&rel("dangling")).unwrap(),
            Found::Escape(_)
        ));
        assert!(matches!(
            ws.unlink_escapes(&rel("out/f")).unwrap(),
            Found::Missing
        ));
        assert!(fs::symlink_metadata(root.join("out")).is_err());
        assert!(fs::symlink_metadata(root.join("inside")).is_ok());
    }

    #[test]
    fn open_dir_replaces_escaping_links_and_follows_inside_ones() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = ws_dir.path();
        fs::create_dir(root.join("real")).unwrap();
        symlink(outside.path(), root.join("out")).unwrap();
        symlink("real", root.join("inside")).unwrap();
        let ws = Workspace::new(root);
        let d = ws.open_dir(Some("out/sub"), true).unwrap();
        assert!(root.join("out/sub").is_dir());
        assert!(
            !fs::symlink_metadata(root.join("out"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        drop(d);
        let d = ws.open_dir(Some("inside/x"), true).unwrap();
        assert!(root.join("real/x").is_dir());
        assert!(d.path().ends_with("real/x"));
        assert!(ws.open_dir(Some("missing"), false).is_err());
    }

    #[test]
    fn created_dirs_exist_and_a_started_child_ends_their_trust() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = ws_dir.path();
        create_dir_all(&root.join("new/sub")).unwrap();
        create_dir_all(&root.join("new/sub")).unwrap();
        assert!(root.join("new/sub").is_dir());
        // A child could plant a link in a directory taskrun created: once one started, a
        // write's look finds and removes it (whatever other tests did to the memo before).
        symlink(outside.path().join("t"), root.join("new/sub/f")).unwrap();
        children_started();
        let ws = Workspace::new(root);
        ws.unlink_escapes_before_write(&rel("new/sub/f")).unwrap();
        assert!(fs::symlink_metadata(root.join("new/sub/f")).is_err());
    }

    #[test]
    fn replace_with_does_not_write_through_a_link() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = ws_dir.path();
        let target = outside.path().join("t");
        fs::write(&target, "keep").unwrap();
        symlink(&target, root.join("f")).unwrap();
        let ws = Workspace::new(root);
        let f = rel("f");
        let (dir, name) = ws.open_parent(&f, true).unwrap();
        let tmp = tempfile::NamedTempFile::new_in(root).unwrap();
        fs::write(tmp.path(), "new").unwrap();
        dir.replace_with(tmp.into_temp_path(), name, 0o644).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "new");
        let mut src = File::open(root.join("f")).unwrap();
        dir.write_via_temp(&mut src, "g", 0o4755).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(root.join("g")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o7777, 0o755);
    }
}
