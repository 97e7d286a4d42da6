//! [`ActionSpec`] → the `Command` and `Action` messages and their digests. Everything that
//! changes what runs goes into one of them (argv, environment, working directory, outputs,
//! input root, timeout, platform), so the Action digest is the cluster's cache key; and each
//! list is put in the order the API fixes, so one spec always gives one digest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::digest::Digest;
use super::error::ReapiError;
use super::proto;
use super::tree::{InputFile, InputTree};
use crate::model::RelPath;

/// A REAPI version (`major.minor`), for the fields that depend on the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major version (2).
    pub major: i32,
    /// Minor version.
    pub minor: i32,
}

impl ApiVersion {
    /// 2.0: outputs as `output_files` / `output_directories`.
    pub const V2_0: Self = Self { major: 2, minor: 0 };
    /// 2.1: `output_paths` replaces them.
    pub const V2_1: Self = Self { major: 2, minor: 1 };
    /// 2.2: platform properties on the Action as well as on the Command.
    pub const V2_2: Self = Self { major: 2, minor: 2 };
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What one command task asks the cluster to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionSpec {
    /// The program and its arguments (`["sh", "-c", TEXT]` for shell text).
    pub argv: Vec<String>,
    /// The whole environment of the remote command (PATH included: the worker's own is
    /// not the client's).
    pub env: BTreeMap<String, String>,
    /// The directory the command runs in, relative to the input root; `None` for the root.
    pub working_directory: Option<RelPath>,
    /// The declared outputs, relative to the input root (the workspace), as the manifest
    /// names them; the Command gets them relative to the working directory.
    pub output_paths: Vec<RelPath>,
    /// Which of `output_paths` are directories, for servers older than 2.1 that want files
    /// and directories apart (the rest go to `output_files`); newer ones ignore it.
    pub output_directories: BTreeSet<RelPath>,
    /// The input root's files.
    pub inputs: Vec<InputFile>,
    /// Directories of the input root that must exist even when no file lies in them (the
    /// empty directories of a dependency's output directory, as a local run sees them).
    pub input_dirs: Vec<RelPath>,
    /// The Action's timeout.
    pub timeout: Option<Duration>,
    /// Platform properties (the worker's OS, image, ...).
    pub platform: BTreeMap<String, String>,
    /// Ask the cluster not to cache the result (nor look it up).
    pub do_not_cache: bool,
}

/// An [`ActionSpec`] turned into messages, ready to upload and execute.
#[derive(Debug, Clone)]
pub struct PreparedAction {
    /// The Command.
    pub command: proto::Command,
    /// Its digest and canonical encoding.
    pub command_blob: (Digest, Vec<u8>),
    /// The Action.
    pub action: proto::Action,
    /// Its digest (the cache key) and canonical encoding.
    pub action_blob: (Digest, Vec<u8>),
    /// The input root.
    pub tree: InputTree,
    /// Each declared output as the Command names it (relative to the working directory),
    /// with its workspace path.
    pub outputs: Vec<(String, RelPath)>,
}

impl PreparedAction {
    /// The Action digest: the ActionCache key and what Execute runs.
    pub fn digest(&self) -> Digest {
        self.action_blob.0
    }

    /// The workspace path of an output the result names (relative to the working
    /// directory); `None` when it is not a declared output.
    pub fn workspace_path(&self, result_path: &str) -> Option<&RelPath> {
        self.outputs
            .iter()
            .find(|(p, _)| p == result_path)
            .map(|(_, rel)| rel)
    }
}

/// Builds the input tree (hashing inputs without a digest: call off the async threads), the
/// Command and the Action, for a server speaking `api`.
pub fn prepare(spec: &ActionSpec, api: ApiVersion) -> Result<PreparedAction, ReapiError> {
    if spec.argv.is_empty() {
        return Err(ReapiError::Input("the command has no arguments".into()));
    }
    let dirs: Vec<RelPath> = spec
        .working_directory
        .iter()
        .chain(&spec.input_dirs)
        .cloned()
        .collect();
    let tree = InputTree::build(&spec.inputs, &dirs)?;
    let (command, outputs) = command(spec, api);
    let command_blob = Digest::of_message(&command);
    let action = action(spec, api, command_blob.0, tree.root);
    let action_blob = Digest::of_message(&action);
    Ok(PreparedAction {
        command,
        command_blob,
        action,
        action_blob,
        tree,
        outputs,
    })
}

/// The Command, and each output's Command path with its workspace path.
// `platform` on the Command and `output_files`/`output_directories` are deprecated in newer
// versions of the API, but servers speaking the older ones need them.
#[allow(deprecated)]
pub fn command(spec: &ActionSpec, api: ApiVersion) -> (proto::Command, Vec<(String, RelPath)>) {
    let cwd = spec.working_directory.as_ref().map(RelPath::as_str);
    let mut outputs: Vec<(String, RelPath)> = spec
        .output_paths
        .iter()
        .map(|o| (relative_to(o.as_str(), cwd), o.clone()))
        .collect();
    outputs.sort();
    outputs.dedup_by(|a, b| a.0 == b.0);
    let mut cmd = proto::Command {
        arguments: spec.argv.clone(),
        // A BTreeMap iterates in byte order of its keys: sorted by name, as required.
        environment_variables: spec
            .env
            .iter()
            .map(|(name, value)| proto::command::EnvironmentVariable {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        working_directory: cwd.unwrap_or("").to_string(),
        platform: platform(&spec.platform),
        ..Default::default()
    };
    if api >= ApiVersion::V2_1 {
        cmd.output_paths = outputs.iter().map(|(p, _)| p.clone()).collect();
    } else {
        for (p, rel) in &outputs {
            if spec.output_directories.contains(rel) {
                cmd.output_directories.push(p.clone());
            } else {
                cmd.output_files.push(p.clone());
            }
        }
    }
    (cmd, outputs)
}

/// The Action naming `command` and `input_root`.
pub fn action(
    spec: &ActionSpec,
    api: ApiVersion,
    command: Digest,
    input_root: Digest,
) -> proto::Action {
    proto::Action {
        command_digest: Some(command.to_proto()),
        input_root_digest: Some(input_root.to_proto()),
        timeout: spec.timeout.map(duration),
        do_not_cache: spec.do_not_cache,
        salt: Vec::new(),
        platform: if api >= ApiVersion::V2_2 {
            platform(&spec.platform)
        } else {
            None
        },
    }
}

/// Properties sorted by name then value (a map has one value per name); none is no field.
fn platform(props: &BTreeMap<String, String>) -> Option<proto::Platform> {
    (!props.is_empty()).then(|| proto::Platform {
        properties: props
            .iter()
            .map(|(name, value)| proto::platform::Property {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    })
}

fn duration(d: Duration) -> bazel_remote_apis::google::protobuf::Duration {
    bazel_remote_apis::google::protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// `path` (relative to the root) as seen from `cwd` (relative to the root; `None` for the
/// root itself): stripped of `cwd/` when inside it, else climbing with `..`.
pub fn relative_to(path: &str, cwd: Option<&str>) -> String {
    let Some(cwd) = cwd.filter(|c| !c.is_empty()) else {
        return path.to_string();
    };
    let from: Vec<&str> = cwd.split('/').collect();
    let to: Vec<&str> = path.split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        return ".".to_string();
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
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
}
