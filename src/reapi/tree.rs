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
mod tests {
    use super::*;
    use std::fs;

    fn rel(p: &str) -> RelPath {
        RelPath::parse(p).unwrap()
    }

    /// Writes `files` (path, content, executable) under a temp dir and lists them as inputs.
    fn inputs(files: &[(&str, &[u8], bool)]) -> (tempfile::TempDir, Vec<InputFile>) {
        let dir = tempfile::tempdir().unwrap();
        let list = files
            .iter()
            .map(|(p, content, executable)| {
                let source = dir.path().join(p.replace('/', "_"));
                fs::write(&source, content).unwrap();
                InputFile {
                    path: rel(p),
                    source,
                    executable: *executable,
                    digest: None,
                }
            })
            .collect();
        (dir, list)
    }

    fn decode(tree: &InputTree, d: &Digest) -> proto::Directory {
        let (_, bytes) = tree.directories.iter().find(|(x, _)| x == d).unwrap();
        <proto::Directory as prost::Message>::decode(&bytes[..]).unwrap()
    }

    #[test]
    fn one_file_root_matches_hand_encoded_protobuf() {
        let (_dir, files) = inputs(&[("a", b"hello", false)]);
        let tree = InputTree::build(&files, &[]).unwrap();
        // Directory { files: [FileNode { name: "a", digest: { hash, size_bytes: 5 } }] }, written
        // out field by field: FileNode is field 1 (tag 0x0a), 73 bytes; in it the name is field
        // 1 ("a"), the Digest field 2 (tag 0x12, 68 bytes: hash field 1 of 64 hex digits,
        // size_bytes field 2 = varint 5); is_executable false is omitted.
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let mut expected = vec![0x0a, 0x49, 0x0a, 0x01, b'a', 0x12, 0x44, 0x0a, 0x40];
        expected.extend_from_slice(hello.as_bytes());
        expected.extend_from_slice(&[0x10, 0x05]);
        assert_eq!(
            tree.directories,
            vec![(Digest::of_bytes(&expected), expected)]
        );
        // The same digest as computed once by BuildGrid 0.9.1's Python protos
        // (`Directory(files=[FileNode(name="a", digest=...)]).SerializeToString()`).
        assert_eq!(
            tree.root.to_string(),
            "328e42cbbb6b7d9937245835b18a61873cdfb669f6bc3ca99a7edbd7ef82323c/75"
        );
        assert_eq!(tree.files.len(), 1);
    }

    #[test]
    fn nested_tree_with_an_executable_matches_the_python_protos() {
        // Listed out of order on purpose: the tree sorts.
        let (_dir, files) = inputs(&[
            ("d/c", b"hello", false),
            ("b.sh", b"#!/bin/sh\n", true),
            ("a", b"hello", false),
        ]);
        let tree = InputTree::build(&files, &[]).unwrap();
        // Computed once with BuildGrid 0.9.1's Python protos (remote_execution_pb2):
        // root = Directory(files=[FileNode("a", hello), FileNode("b.sh", sh, is_executable=True)],
        // directories=[DirectoryNode("d", digest(Directory(files=[FileNode("c", hello)])))]),
        // SerializeToString(deterministic=True), then sha256.
        assert_eq!(
            tree.root.to_string(),
            "79675fc0137becd5c077d128c420b7e68deb46ead47fc6e0dae8f61581e6291f/230"
        );
        let root = decode(&tree, &tree.root);
        let names: Vec<&str> = root.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b.sh"]);
        assert!(root.files[1].is_executable && !root.files[0].is_executable);
        assert_eq!(root.directories[0].name, "d");
        let d = Digest::from_field(root.directories[0].digest.as_ref(), "d").unwrap();
        assert_eq!(
            d.to_string(),
            "75bc5e84c1d5cee82d29056cc397587ec52ef66912528640543a019601a6f28f/75"
        );
        assert_eq!(decode(&tree, &d).files[0].name, "c");
        // Two paths share "hello": one blob to send.
        assert_eq!(tree.files.len(), 2);
        assert_eq!(tree.directories.len(), 2);
    }

    #[test]
    fn names_sort_by_utf8_bytes_and_directories_are_one_segment_each() {
        let (_dir, files) = inputs(&[
            ("é", b"1", false),
            ("Z", b"2", false),
            ("a", b"3", false),
            ("x/y/z/deep", b"4", false),
            ("x/B", b"5", false),
        ]);
        let tree = InputTree::build(&files, &[]).unwrap();
        let root = decode(&tree, &tree.root);
        let names: Vec<&str> = root.files.iter().map(|f| f.name.as_str()).collect();
        // 'Z' (0x5a) < 'a' (0x61) < 'é' (0xc3 0xa9).
        assert_eq!(names, ["Z", "a", "é"]);
        let x = decode(
            &tree,
            &Digest::from_field(root.directories[0].digest.as_ref(), "x").unwrap(),
        );
        assert_eq!(x.files[0].name, "B");
        assert_eq!(x.directories[0].name, "y");
        let y = decode(
            &tree,
            &Digest::from_field(x.directories[0].digest.as_ref(), "y").unwrap(),
        );
        assert_eq!(y.directories[0].name, "z");
        assert_eq!(tree.directories.len(), 4);
    }

    #[test]
    fn the_empty_root_and_extra_directories() {
        let tree = InputTree::build(&[], &[]).unwrap();
        // An empty Directory encodes to no bytes: its digest is that of the empty blob.
        assert_eq!(tree.root, Digest::EMPTY);
        assert!(tree.files.is_empty());
        let with_cwd = InputTree::build(&[], &[rel("sub/dir")]).unwrap();
        let root = decode(&with_cwd, &with_cwd.root);
        assert_eq!(root.directories[0].name, "sub");
        assert_eq!(with_cwd.directories.len(), 3);
        // The empty directory "dir" is the empty blob too.
        assert!(
            with_cwd
                .directories
                .iter()
                .any(|(d, _)| *d == Digest::EMPTY)
        );
    }

    #[test]
    fn empty_files_are_listed_but_not_sent_and_given_digests_are_trusted() {
        let (_dir, mut files) = inputs(&[("e", b"", false), ("f", b"x", false)]);
        files[1].digest = Some(Digest::of_bytes(b"x"));
        files[1].source = "/nonexistent".into();
        let tree = InputTree::build(&files, &[]).unwrap();
        assert_eq!(decode(&tree, &tree.root).files.len(), 2);
        assert_eq!(
            tree.files.keys().copied().collect::<Vec<_>>(),
            [Digest::of_bytes(b"x")]
        );
    }

    #[test]
    fn a_path_that_is_both_file_and_directory_is_refused() {
        let (_dir, files) = inputs(&[("a", b"1", false), ("a/b", b"2", false)]);
        assert!(matches!(
            InputTree::build(&files, &[]),
            Err(ReapiError::Input(_))
        ));
        let (_dir, files) = inputs(&[("a/b", b"2", false), ("a", b"1", false)]);
        assert!(InputTree::build(&files, &[]).is_err());
        let (_dir, mut files) = inputs(&[("a", b"1", false), ("b", b"2", false)]);
        files[1].path = rel("a");
        assert!(InputTree::build(&files, &[]).is_err());
        let (_dir, files) = inputs(&[("a", b"1", false)]);
        let twice = [files[0].clone(), files[0].clone()];
        assert!(InputTree::build(&twice, &[]).is_ok());
        let missing = InputFile {
            path: rel("m"),
            source: "/nonexistent/file".into(),
            executable: false,
            digest: None,
        };
        assert!(matches!(
            InputTree::build(&[missing], &[]),
            Err(ReapiError::Local { .. })
        ));
    }
}
