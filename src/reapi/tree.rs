//! [`InputTree`]: an action's input root as the API wants it, one `Directory` message per
//! directory, its `files`, `directories` and `symlinks` sorted by name in UTF-8 byte order,
//! one path segment per name; each message's digest is that of its canonical encoding (prost
//! writes fields in number order and skips defaults, which is the canonical form).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::digest::Digest;
use super::error::ReapiError;
use super::proto;
use crate::model::RelPath;

/// One file of the input root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where the action sees it, relative to the input root (the workspace root).
    pub path: RelPath,
    /// Where it is read from on this machine.
    pub source: PathBuf,
    /// Whether it is sent as executable.
    pub executable: bool,
    /// Its digest when the caller already knows it (the cache hashed it); else it is hashed.
    pub digest: Option<Digest>,
}

/// The input root's Merkle tree: what the Action names and what must be in the CAS.
#[derive(Debug, Clone, Default)]
pub struct InputTree {
    /// The root `Directory`'s digest (the Action's `input_root_digest`).
    pub root: Digest,
    /// Every `Directory` message, encoded, with its digest (the root's included).
    pub directories: Vec<(Digest, Vec<u8>)>,
    /// Every distinct file content and one local file that holds it.
    pub files: BTreeMap<Digest, PathBuf>,
}

/// A directory being assembled: names sort in byte order, as the API requires (`String`'s
/// order is that of its UTF-8 bytes).
#[derive(Default)]
struct Dir {
    files: BTreeMap<String, (Digest, bool)>,
    dirs: BTreeMap<String, Dir>,
}

impl InputTree {
    /// Builds the tree of `files`, plus the (possibly empty) directories `dirs` (the
    /// working directory must exist in the input root even when no input lies in it).
    /// Files not given a digest are hashed here, streamed: call it off the async threads.
    pub fn build(files: &[InputFile], dirs: &[RelPath]) -> Result<Self, ReapiError> {
        let mut root = Dir::default();
        let mut sources = BTreeMap::new();
        for d in dirs {
            descend(&mut root, d.as_str().split('/'), d)?;
        }
        for f in files {
            let digest = match f.digest {
                Some(d) => d,
                None => Digest::of_file(&f.source).map_err(|e| ReapiError::local(&f.source, e))?,
            };
            let (parent, name) = match f.path.as_str().rsplit_once('/') {
                Some((parent, name)) => (descend(&mut root, parent.split('/'), &f.path)?, name),
                None => (&mut root, f.path.as_str()),
            };
            if parent.dirs.contains_key(name) {
                return Err(conflict(&f.path));
            }
            match parent
                .files
                .insert(name.to_string(), (digest, f.executable))
            {
                Some(old) if old != (digest, f.executable) => {
                    return Err(ReapiError::Input(format!(
                        "input {} is listed twice with different content or mode",
                        f.path
                    )));
                }
                _ => {}
            }
            sources.entry(digest).or_insert_with(|| f.source.clone());
        }
        let mut directories = Out::default();
        let root_digest = encode(&root, &mut directories);
        sources.remove(&Digest::EMPTY);
        Ok(Self {
            root: root_digest,
            directories: directories.blobs,
            files: sources,
        })
    }
}

fn conflict(path: &RelPath) -> ReapiError {
    ReapiError::Input(format!(
        "input {path} is both a file and a directory in the input root"
    ))
}

/// The directory at `parts` under `dir`, created as needed.
fn descend<'a, 'p>(
    mut dir: &'a mut Dir,
    parts: impl Iterator<Item = &'p str>,
    whole: &RelPath,
) -> Result<&'a mut Dir, ReapiError> {
    for part in parts {
        if dir.files.contains_key(part) {
            return Err(conflict(whole));
        }
        dir = dir.dirs.entry(part.to_string()).or_default();
    }
    Ok(dir)
}

/// The encoded directories, each distinct one once.
#[derive(Default)]
struct Out {
    blobs: Vec<(Digest, Vec<u8>)>,
    seen: std::collections::HashSet<Digest>,
}

/// Encodes `dir` and its subdirectories (children first), appending each to `out`; returns
/// `dir`'s digest.
fn encode(dir: &Dir, out: &mut Out) -> Digest {
    let directories = dir
        .dirs
        .iter()
        .map(|(name, sub)| proto::DirectoryNode {
            name: name.clone(),
            digest: Some(encode(sub, out).to_proto()),
        })
        .collect();
    let files = dir
        .files
        .iter()
        .map(|(name, (digest, executable))| proto::FileNode {
            name: name.clone(),
            digest: Some(digest.to_proto()),
            is_executable: *executable,
            node_properties: None,
        })
        .collect();
    let msg = proto::Directory {
        files,
        directories,
        symlinks: Vec::new(),
        node_properties: None,
    };
    let (digest, bytes) = Digest::of_message(&msg);
    if out.seen.insert(digest) {
        out.blobs.push((digest, bytes));
    }
    digest
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
