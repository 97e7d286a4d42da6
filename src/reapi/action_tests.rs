//! Tests of the Command and Action messages: order, versions, digests pinned against an
//! independent encoder.

#![allow(deprecated)] // the pre-2.1 output fields are what is tested

use super::*;

fn rel(p: &str) -> RelPath {
    RelPath::parse(p).unwrap()
}

fn spec() -> ActionSpec {
    ActionSpec {
        argv: vec!["sh".into(), "-c".into(), "cat in/a > out/b".into()],
        env: [("PATH", "/bin"), ("A", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        output_paths: vec![rel("out/b"), rel("out/b")],
        timeout: Some(Duration::from_millis(5500)),
        platform: [("arch", "x86_64"), ("OSFamily", "linux")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ActionSpec::default()
    }
}

#[test]
fn command_and_action_digests_match_the_python_protos() {
    let (cmd, outputs) = command(&spec(), ApiVersion::V2_2);
    let names: Vec<&str> = cmd
        .environment_variables
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["A", "PATH"]);
    assert_eq!(cmd.output_paths, ["out/b"]);
    assert!(cmd.output_files.is_empty());
    assert_eq!(outputs, [("out/b".to_string(), rel("out/b"))]);
    let props: Vec<&str> = cmd
        .platform
        .as_ref()
        .unwrap()
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(props, ["OSFamily", "arch"]);
    // Computed once with BuildGrid 0.9.1's Python protos: Command(arguments=[...],
    // environment_variables=[A=1, PATH=/bin], output_paths=["out/b"], platform=[OSFamily=
    // linux, arch=x86_64]).SerializeToString(deterministic=True), then sha256.
    let (cd, _) = Digest::of_message(&cmd);
    assert_eq!(
        cd.to_string(),
        "e4823bd47f4591715a07728e2cda38d03cc20e2ce538d91896ab16f373e0b6f5/92"
    );
    // Action(command_digest=that, input_root_digest=<the one-file root of the tree tests>,
    // timeout=5.5 s, platform=same), likewise; and without the platform for 2.0.
    let root = Digest::from_proto(&proto::Digest {
        hash: "328e42cbbb6b7d9937245835b18a61873cdfb669f6bc3ca99a7edbd7ef82323c".into(),
        size_bytes: 75,
    })
    .unwrap();
    let a = action(&spec(), ApiVersion::V2_2, cd, root);
    assert_eq!(
        Digest::of_message(&a).0.to_string(),
        "275060eac83c1b6069d2d6a26bed34a9cef69c1e1630bcf9f1b0794b7778f24e/187"
    );
    let a = action(&spec(), ApiVersion::V2_0, cd, root);
    assert!(a.platform.is_none());
    assert_eq!(
        Digest::of_message(&a).0.to_string(),
        "4c7c5501f0e231e4e0e88169b936ff0d6fd7879c36169711cec6bd87064d9b4f/150"
    );
}

#[test]
fn old_servers_get_files_and_directories_apart() {
    let mut s = spec();
    s.output_paths = vec![rel("z"), rel("dir"), rel("a")];
    s.output_directories.insert(rel("dir"));
    let (cmd, _) = command(&s, ApiVersion::V2_0);
    assert!(cmd.output_paths.is_empty());
    assert_eq!(cmd.output_files, ["a", "z"]);
    assert_eq!(cmd.output_directories, ["dir"]);
    let (cmd, _) = command(&s, ApiVersion::V2_1);
    assert_eq!(cmd.output_paths, ["a", "dir", "z"]);
    assert!(cmd.output_files.is_empty() && cmd.output_directories.is_empty());
}

#[test]
fn outputs_are_relative_to_the_working_directory() {
    let mut s = spec();
    s.working_directory = Some(rel("sub/dir"));
    s.output_paths = vec![rel("sub/dir/out"), rel("sub/other"), rel("top")];
    let (cmd, outputs) = command(&s, ApiVersion::V2_2);
    assert_eq!(cmd.working_directory, "sub/dir");
    assert_eq!(cmd.output_paths, ["../../top", "../other", "out"]);
    let p = prepare(&s, ApiVersion::V2_2).unwrap();
    assert_eq!(p.workspace_path("../other"), Some(&rel("sub/other")));
    assert_eq!(p.workspace_path("nope"), None);
    assert_eq!(outputs.len(), 3);
    // The working directory exists in the input root even with no input in it.
    let root = p
        .tree
        .directories
        .iter()
        .find(|(d, _)| *d == p.tree.root)
        .unwrap();
    let root = <proto::Directory as prost::Message>::decode(&root.1[..]).unwrap();
    assert_eq!(root.directories[0].name, "sub");
    assert_eq!(relative_to("a/b", None), "a/b");
    assert_eq!(relative_to("a", Some("a")), ".");
}

#[test]
fn everything_that_changes_the_run_changes_the_digest() {
    let base = prepare(&spec(), ApiVersion::V2_2).unwrap().digest();
    type Change = Box<dyn Fn(&mut ActionSpec)>;
    let changes: Vec<Change> = vec![
        Box::new(|s| s.argv.push("x".into())),
        Box::new(|s| {
            s.env.insert("B".into(), "2".into());
        }),
        Box::new(|s| s.working_directory = Some(rel("w"))),
        Box::new(|s| s.output_paths.push(rel("other"))),
        Box::new(|s| s.timeout = None),
        Box::new(|s| {
            s.platform.insert("gpu".into(), "1".into());
        }),
        Box::new(|s| s.do_not_cache = true),
    ];
    for change in changes {
        let mut s = spec();
        change(&mut s);
        assert_ne!(prepare(&s, ApiVersion::V2_2).unwrap().digest(), base);
    }
    // Order and repetition in the spec do not.
    let mut s = spec();
    s.output_paths.reverse();
    s.output_paths.push(rel("out/b"));
    assert_eq!(prepare(&s, ApiVersion::V2_2).unwrap().digest(), base);
    assert!(matches!(
        prepare(&ActionSpec::default(), ApiVersion::V2_2),
        Err(ReapiError::Input(_))
    ));
}
