//! An `ActionResult`'s outputs, checked and then written into the workspace (SPEC §13): every
//! path the result names must be one the task declared (the whole result is refused
//! otherwise), names inside output directories are single path segments, a symlink must
//! lead inside the workspace, and every file is verified against its digest before it is
//! renamed into place through the workspace's symlink-safe directory handles.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use super::action::PreparedAction;
use super::client::Client;
use super::client::fetch::{set_mode, temp_with};
use super::digest::Digest;
use super::error::ReapiError;
use super::proto;
use super::run::WrittenOutput;
use crate::model::RelPath;
use crate::workspace::{Found, Workspace};

/// Small files are fetched in groups of about this many bytes (BatchReadBlobs calls under
/// the server's limit), so a tree of many small files never sits in memory whole.
const GROUP_BYTES: u64 = 16 << 20;

/// One file to write.
#[derive(Debug, Clone)]
struct FileItem {
    rel: RelPath,
    digest: Digest,
    executable: bool,
    /// The content, when the result carried it inline.
    inline: Option<Vec<u8>>,
}

/// The result's outputs, mapped to workspace paths and checked.
#[derive(Debug, Default)]
pub(super) struct Plan {
    files: Vec<FileItem>,
    dirs: Vec<(RelPath, Digest)>,
    symlinks: Vec<(RelPath, String)>,
    /// Declared outputs the result lacks.
    pub missing: Vec<RelPath>,
}

/// What [`Plan::write`] wrote.
#[derive(Debug, Default)]
pub(super) struct Written {
    pub files: Vec<WrittenOutput>,
    pub dirs: Vec<RelPath>,
    pub symlinks: Vec<RelPath>,
}

impl Plan {
    /// Maps every output of `result` to the declared output it must be; an undeclared or
    /// repeated path refuses the whole result.
    // The split symlink lists are deprecated since 2.1, but older servers fill only them.
    #[allow(deprecated)]
    pub fn check(
        prepared: &PreparedAction,
        result: &proto::ActionResult,
    ) -> Result<Self, ReapiError> {
        let mut named: BTreeMap<RelPath, &'static str> = BTreeMap::new();
        let mut map = |path: &str, kind: &'static str| -> Result<RelPath, ReapiError> {
            let rel = prepared.workspace_path(path).cloned().ok_or_else(|| {
                ReapiError::Protocol(format!(
                    "the result names {kind} {path:?}, which is not a declared output"
                ))
            })?;
            if named.insert(rel.clone(), kind).is_some() {
                return Err(ReapiError::Protocol(format!(
                    "the result names output {path:?} twice"
                )));
            }
            Ok(rel)
        };
        let mut plan = Plan::default();
        for f in &result.output_files {
            let rel = map(&f.path, "the file")?;
            let digest = Digest::from_field(f.digest.as_ref(), "an output file")?;
            let inline = (!f.contents.is_empty() && Digest::of_bytes(&f.contents) == digest)
                .then(|| f.contents.clone());
            plan.files.push(FileItem {
                rel,
                digest,
                executable: f.is_executable,
                inline,
            });
        }
        for d in &result.output_directories {
            let rel = map(&d.path, "the directory")?;
            plan.dirs.push((
                rel,
                Digest::from_field(d.tree_digest.as_ref(), "an output directory")?,
            ));
        }
        // 2.1's `output_symlinks` and the older split lists may all be filled, with the
        // same links: take each path once.
        let mut seen = std::collections::HashSet::new();
        for s in result
            .output_symlinks
            .iter()
            .chain(&result.output_file_symlinks)
            .chain(&result.output_directory_symlinks)
        {
            if !seen.insert(s.path.as_str()) {
                continue;
            }
            let rel = map(&s.path, "the symlink")?;
            check_link(&rel, &s.target)?;
            plan.symlinks.push((rel, s.target.clone()));
        }
        plan.missing = prepared
            .outputs
            .iter()
            .map(|(_, rel)| rel)
            .filter(|rel| !named.contains_key(*rel))
            .cloned()
            .collect();
        Ok(plan)
    }

    /// Writes every output into `ws`.
    pub async fn write(self, client: &Client, ws: &Workspace) -> Result<Written, ReapiError> {
        let mut written = Written::default();
        let mut files = Vec::new();
        for f in self.files {
            clear(ws, &f.rel, false)?;
            files.push(f);
        }
        for (rel, tree) in self.dirs {
            clear(ws, &rel, true)?;
            let expanded = expand(client, &rel, &tree).await?;
            for dir in &expanded.dirs {
                clear(ws, dir, true)?;
                ws.open_dir(Some(dir.as_str()), true)
                    .map_err(|e| ReapiError::local(ws.root().join(dir.as_str()), e))?;
            }
            files.extend(expanded.files);
            for (link, target) in expanded.symlinks {
                check_link(&link, &target)?;
                clear(ws, &link, false)?;
                make_link(ws, &link, &target)?;
            }
            written.dirs.push(rel);
        }
        for (rel, target) in self.symlinks {
            clear(ws, &rel, false)?;
            make_link(ws, &rel, &target)?;
            written.symlinks.push(rel);
        }
        written.files = write_files(client, ws, files).await?;
        Ok(written)
    }
}

/// Gets `rel` ready to be written: an escaping symlink on the way removed (with a warning),
/// and whatever is there of the other kind (a directory where a file goes, a file where a
/// directory goes) removed; it is a declared output or lies inside one, so it is the task's.
fn clear(ws: &Workspace, rel: &RelPath, want_dir: bool) -> Result<(), ReapiError> {
    let path = ws.root().join(rel.as_str());
    let found = ws
        .unlink_escapes(rel)
        .map_err(|e| ReapiError::local(&path, e))?;
    let Found::Entry(meta) = found else {
        return Ok(());
    };
    // `look` follows inside symlinks; what matters is what is at the path itself.
    let own = std::fs::symlink_metadata(&path).map_err(|e| ReapiError::local(&path, e))?;
    let removed = if own.file_type().is_symlink() {
        if want_dir && meta.is_dir() {
            return Ok(());
        }
        if want_dir {
            std::fs::remove_file(&path)
        } else {
            // A file output replaces the link itself (rename), never its target.
            return Ok(());
        }
    } else if own.is_dir() && !want_dir {
        std::fs::remove_dir_all(&path)
    } else if !own.is_dir() && want_dir {
        std::fs::remove_file(&path)
    } else {
        return Ok(());
    };
    removed.map_err(|e| ReapiError::local(&path, e))
}

/// An output directory's content, from its Tree.
struct Expanded {
    dirs: Vec<RelPath>,
    files: Vec<FileItem>,
    symlinks: Vec<(RelPath, String)>,
}

async fn expand(client: &Client, root: &RelPath, tree: &Digest) -> Result<Expanded, ReapiError> {
    let bytes = client.fetch_blob(tree).await?;
    let tree = proto::Tree::decode(&*bytes)
        .map_err(|e| ReapiError::Protocol(format!("output directory {root}: bad Tree: {e}")))?;
    let children: HashMap<Digest, &proto::Directory> = tree
        .children
        .iter()
        .map(|d| (Digest::of_message(d).0, d))
        .collect();
    let top = tree.root.as_ref().ok_or_else(|| {
        ReapiError::Protocol(format!("output directory {root}: Tree has no root"))
    })?;
    let mut out = Expanded {
        dirs: Vec::new(),
        files: Vec::new(),
        symlinks: Vec::new(),
    };
    let mut todo = vec![(root.clone(), top)];
    while let Some((rel, dir)) = todo.pop() {
        out.dirs.push(rel.clone());
        for f in &dir.files {
            out.files.push(FileItem {
                rel: join(&rel, &f.name)?,
                digest: Digest::from_field(f.digest.as_ref(), "a file in an output directory")?,
                executable: f.is_executable,
                inline: None,
            });
        }
        for d in &dir.directories {
            let digest = Digest::from_field(d.digest.as_ref(), "a directory in a Tree")?;
            let child = children.get(&digest).ok_or_else(|| {
                ReapiError::Protocol(format!(
                    "output directory {root}: the Tree lacks directory {digest}"
                ))
            })?;
            todo.push((join(&rel, &d.name)?, child));
        }
        for s in &dir.symlinks {
            out.symlinks.push((join(&rel, &s.name)?, s.target.clone()));
        }
    }
    Ok(out)
}

/// `dir/name`, where `name` must be one plain path segment.
fn join(dir: &RelPath, name: &str) -> Result<RelPath, ReapiError> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    plain
        .then(|| RelPath::parse(&format!("{}/{name}", dir.as_str())))
        .flatten()
        .ok_or_else(|| {
            ReapiError::Protocol(format!("unsafe name {name:?} in output directory {dir}"))
        })
}

/// A symlink at `link` to `target` must stay inside the workspace: a relative target that,
/// read from the link's directory, never climbs above the root.
fn check_link(link: &RelPath, target: &str) -> Result<(), ReapiError> {
    let mut depth: Vec<&str> = link.as_str().split('/').collect();
    depth.pop();
    let mut ok = !target.is_empty() && !target.starts_with('/') && !target.contains('\0');
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => ok &= depth.pop().is_some(),
            p => depth.push(p),
        }
    }
    if ok {
        Ok(())
    } else {
        Err(ReapiError::Protocol(format!(
            "output symlink {link} -> {target:?} leads outside the workspace"
        )))
    }
}

fn make_link(ws: &Workspace, rel: &RelPath, target: &str) -> Result<(), ReapiError> {
    let (dir, name) = ws
        .open_parent(rel, true)
        .map_err(|e| ReapiError::local(ws.root().join(rel.as_str()), e))?;
    let tmp = dir.path().join(format!(
        "{}{:016x}",
        crate::workspace::TEMP_PREFIX,
        rand::random::<u64>()
    ));
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| ReapiError::local(&tmp, e))?;
    let tmp = tempfile::TempPath::try_from_path(&tmp).map_err(|e| ReapiError::local(&tmp, e))?;
    dir.replace_with(tmp, name, 0o777)
        .map_err(|e| ReapiError::local(ws.root().join(rel.as_str()), e))
}

/// Fetches and places every file: small ones by BatchReadBlobs in bounded groups, large
/// ones streamed through a temp file.
async fn write_files(
    client: &Client,
    ws: &Workspace,
    files: Vec<FileItem>,
) -> Result<Vec<WrittenOutput>, ReapiError> {
    let limit = client.capabilities().await?.max_batch_bytes;
    let mut written = Vec::with_capacity(files.len());
    let (small, large): (Vec<FileItem>, Vec<FileItem>) = files
        .into_iter()
        .partition(|f| f.inline.is_some() || f.digest.size + 1024 <= limit);
    let mut group: Vec<FileItem> = Vec::new();
    let mut group_bytes = 0;
    for f in small {
        group_bytes += f.digest.size;
        group.push(f);
        if group_bytes >= GROUP_BYTES {
            written.extend(write_group(client, ws, std::mem::take(&mut group)).await?);
            group_bytes = 0;
        }
    }
    written.extend(write_group(client, ws, group).await?);
    for f in large {
        let (dir, name) = ws
            .open_parent(&f.rel, true)
            .map_err(|e| ReapiError::local(ws.root().join(f.rel.as_str()), e))?;
        let tmp = client.fetch_to_temp(&f.digest, dir.path()).await?;
        place(ws, &dir, name, tmp, &f)?;
        written.push(done(f));
    }
    Ok(written)
}

async fn write_group(
    client: &Client,
    ws: &Workspace,
    group: Vec<FileItem>,
) -> Result<Vec<WrittenOutput>, ReapiError> {
    let mut wanted: Vec<Digest> = group
        .iter()
        .filter(|f| f.inline.is_none())
        .map(|f| f.digest)
        .collect();
    wanted.sort();
    wanted.dedup();
    let blobs: HashMap<Digest, Vec<u8>> = client.batch_read(&wanted).await?.into_iter().collect();
    let mut written = Vec::with_capacity(group.len());
    for f in group {
        let data = match (&f.inline, blobs.get(&f.digest)) {
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => {
                return Err(ReapiError::Protocol(format!(
                    "blob {} was not read",
                    f.digest
                )));
            }
        };
        let (dir, name) = ws
            .open_parent(&f.rel, true)
            .map_err(|e| ReapiError::local(ws.root().join(f.rel.as_str()), e))?;
        let tmp = temp_with(dir.path(), data)?;
        place(ws, &dir, name, tmp, &f)?;
        written.push(done(f));
    }
    Ok(written)
}

fn place(
    ws: &Workspace,
    dir: &crate::workspace::Dir,
    name: &str,
    tmp: tempfile::TempPath,
    f: &FileItem,
) -> Result<(), ReapiError> {
    set_mode(&tmp, f.executable)?;
    let mode = if f.executable { 0o755 } else { 0o644 };
    dir.replace_with(tmp, name, mode)
        .map_err(|e| ReapiError::local(ws.root().join(f.rel.as_str()), e))
}

fn done(f: FileItem) -> WrittenOutput {
    WrittenOutput {
        path: f.rel,
        digest: f.digest,
        executable: f.executable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> RelPath {
        RelPath::parse(p).unwrap()
    }

    #[test]
    fn links_must_stay_inside() {
        assert!(check_link(&rel("out/l"), "f").is_ok());
        assert!(check_link(&rel("out/l"), "../x/f").is_ok());
        assert!(check_link(&rel("out/l"), "../../f").is_err());
        assert!(check_link(&rel("l"), "/etc/passwd").is_err());
        assert!(check_link(&rel("a/b/l"), "./../../c").is_ok());
        assert!(check_link(&rel("l"), "").is_err());
    }

    #[test]
    fn tree_names_are_single_segments() {
        assert_eq!(join(&rel("out"), "f").unwrap(), rel("out/f"));
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert!(join(&rel("out"), bad).is_err(), "{bad:?}");
        }
    }
}
