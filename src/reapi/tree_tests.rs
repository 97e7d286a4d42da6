//! Tests of the input tree: digests pinned against an independent encoder, order, nesting,
//! executables, the empty root, conflicts.

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
