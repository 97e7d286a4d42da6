//! The Action a command task becomes on the cluster (SPEC §11): what a local run would exec,
//! minus everything this machine gives a local command for free. The caller's environment
//! is not sent (only `[env]`, the task's `env`, its fan-out values and `PATH` from
//! `[execution] path`), and the input root holds only what the task declared: the files its
//! `inputs` match and its direct dependencies' outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::actions::env;
use crate::model::{Action, RelPath};
use crate::plan::Plan;
use crate::reapi::{ActionSpec, InputFile};
use crate::template::MissingSecret;

/// Why a task's Action could not be built (the task fails before any attempt).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A `${secret.X}` the command needs is not set (placement keeps secrets local, but
    /// `[env]` is read here too).
    #[error(transparent)]
    Secret(#[from] MissingSecret),
    /// An `inputs` pattern matched nothing, or could not be read.
    #[error("{0}")]
    Inputs(String),
    /// Only `run` tasks are sent to the cluster.
    #[error("only command tasks run remotely")]
    NotCommand,
}

/// The Action of task `task` of `plan`. Blocking: expands the input globs and walks the
/// dependencies' output directories.
pub fn build(plan: &Plan, task: usize) -> Result<ActionSpec, SpecError> {
    let pipeline = &plan.pipeline;
    let t = plan.task(task);
    let Action::Command(cmd) = &t.action else {
        return Err(SpecError::NotCommand);
    };
    let argv = env::argv(cmd)?;
    let mut vars: BTreeMap<String, String> = env::env(pipeline, t)?.into_iter().collect();
    // A `PATH` the manifest sets itself is the more specific one.
    vars.entry("PATH".to_string())
        .or_insert_with(|| pipeline.execution.path.clone());
    let root = pipeline.root.as_path();
    let mut inputs = Inputs::default();
    let matched = crate::cache::inputs::expand(root, &pipeline.cache.dir, &t.inputs)
        .map_err(|e| SpecError::Inputs(e.to_string()))?;
    for f in matched {
        if let Some(rel) = f.path.to_str().and_then(RelPath::parse) {
            inputs.add(root, &rel);
        }
    }
    for out in dependency_outputs(plan, task) {
        inputs.add(root, &out);
    }
    let output_directories = t
        .outputs
        .iter()
        .filter(|o| root.join(o.as_str()).is_dir())
        .cloned()
        .collect();
    Ok(ActionSpec {
        argv,
        env: vars,
        working_directory: t.cwd.clone().filter(|c| !c.as_str().is_empty()),
        output_paths: t.outputs.clone(),
        output_directories,
        inputs: inputs.files.into_values().collect(),
        input_dirs: inputs.dirs.into_iter().collect(),
        timeout: t.timeout,
        platform: pipeline.execution.platform_for(t),
        // A task that always runs locally (SPEC §5: `cache = "off"`, or no outputs) must
        // not be answered from the cluster's cache either.
        do_not_cache: !t.is_cacheable(),
    })
}

/// The declared outputs of `task`'s direct dependencies; a group stands for its own
/// dependencies (it produces nothing itself), a service gives nothing.
pub fn dependency_outputs(plan: &Plan, task: usize) -> Vec<RelPath> {
    let mut out = Vec::new();
    let mut seen = vec![false; plan.pipeline.tasks.len()];
    let mut stack: Vec<usize> = plan.deps[task].clone();
    while let Some(d) = stack.pop() {
        if std::mem::replace(&mut seen[d], true) {
            continue;
        }
        let dep = plan.task(d);
        match &dep.action {
            Action::Group => stack.extend(plan.deps[d].iter().copied()),
            Action::Service(_) => {}
            Action::Command(_) => out.extend(dep.outputs.iter().cloned()),
            Action::Download(dl) => {
                out.extend(dep.outputs.iter().cloned());
                out.push(dl.dest.clone());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The input root's files, one entry per path, and the directories of output directories
/// (so that empty ones exist on the worker too).
#[derive(Default)]
struct Inputs {
    files: BTreeMap<RelPath, InputFile>,
    dirs: BTreeSet<RelPath>,
}

impl Inputs {
    /// Adds the file at `rel`, or every file under it when it is a directory. A path that
    /// does not exist is left out (an optional dependency output); so is a symlink that
    /// leads outside the workspace (its target is not the task's to send, SPEC §13).
    fn add(&mut self, root: &Path, rel: &RelPath) {
        let path = root.join(rel.as_str());
        let Some(meta) = inside(root, &path) else {
            return;
        };
        if meta.is_file() {
            self.files
                .insert(rel.clone(), input(rel.clone(), &path, &meta));
            return;
        }
        if !meta.is_dir() {
            return;
        }
        self.dirs.insert(rel.clone());
        for entry in walkdir::WalkDir::new(&path)
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            .flatten()
        {
            let Some(sub) = entry
                .path()
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .and_then(RelPath::parse)
            else {
                tracing::debug!(
                    "{} is not sent: not a plain UTF-8 path",
                    entry.path().display()
                );
                continue;
            };
            if entry.file_type().is_dir() {
                self.dirs.insert(sub);
                continue;
            }
            if let Some(m) = inside(root, entry.path()).filter(std::fs::Metadata::is_file) {
                self.files.insert(sub.clone(), input(sub, entry.path(), &m));
            }
        }
    }
}

/// The metadata of `path` (through a symlink only when it stays inside `root`).
fn inside(root: &Path, path: &Path) -> Option<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_symlink() {
        return Some(meta);
    }
    let target = std::fs::canonicalize(path).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    if !target.starts_with(&root) {
        tracing::warn!(
            "{} leads outside the workspace: not sent to the cluster",
            path.display()
        );
        return None;
    }
    std::fs::metadata(&target).ok()
}

fn input(path: RelPath, source: &Path, meta: &std::fs::Metadata) -> InputFile {
    InputFile {
        path,
        source: source.to_path_buf(),
        executable: meta.permissions().mode() & 0o111 != 0,
        digest: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_in(dir: &Path, text: &str) -> Plan {
        let path = dir.join("taskrun.toml");
        std::fs::write(&path, text).unwrap();
        let opts = crate::manifest::LoadOptions::default();
        let p = crate::manifest::load_str(&path, text.into(), &opts, &|_: &str| None).unwrap();
        Plan::build(p, &[]).unwrap()
    }

    #[test]
    fn the_action_holds_declared_inputs_and_dependency_outputs_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("gen/sub")).unwrap();
        std::fs::create_dir_all(root.join("gen/empty")).unwrap();
        std::fs::write(root.join("src/a.txt"), "a").unwrap();
        std::fs::write(root.join("src/b.md"), "b").unwrap();
        std::fs::write(root.join("gen/sub/x.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("gen/sub/x.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("undeclared.txt"), "u").unwrap();
        let plan = plan_in(
            root,
            r#"
[execution]
remote = "grpc://127.0.0.1:1"
platform = { OSFamily = "linux" }
path = "/opt/bin:/bin"

[env]
GREETING = "hi"

[tasks.gen]
run = "true"
outputs = ["gen"]

[tasks.both]
deps = ["gen"]

[tasks.use]
run = "cat src/a.txt > out.txt"
deps = ["both"]
inputs = ["src/*.txt"]
outputs = ["out.txt"]
env = { LEVEL = "3" }
platform = { size = "big" }
timeout = "5s"
"#,
        );
        let i = plan.pipeline.tasks.get_index_of("use").unwrap();
        let spec = build(&plan, i).unwrap();
        assert_eq!(spec.argv, ["sh", "-c", "cat src/a.txt > out.txt"]);
        let env: Vec<_> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["GREETING=hi", "LEVEL=3", "PATH=/opt/bin:/bin"]);
        let files: Vec<_> = spec
            .inputs
            .iter()
            .map(|f| (f.path.as_str(), f.executable))
            .collect();
        assert_eq!(files, [("gen/sub/x.sh", true), ("src/a.txt", false)]);
        let dirs: Vec<_> = spec.input_dirs.iter().map(RelPath::as_str).collect();
        assert_eq!(
            dirs,
            ["gen", "gen/empty", "gen/sub"],
            "an output directory's own"
        );
        assert_eq!(spec.output_paths.len(), 1);
        assert_eq!(spec.timeout, Some(std::time::Duration::from_secs(5)));
        let platform: Vec<_> = spec
            .platform
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(platform, ["OSFamily=linux", "size=big"]);
        assert!(!spec.do_not_cache);
        assert!(spec.working_directory.is_none());
    }

    #[test]
    fn a_symlink_out_of_the_workspace_is_not_sent() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("gen")).unwrap();
        std::fs::write(root.join("gen/ok"), "o").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("gen/leak")).unwrap();
        std::os::unix::fs::symlink("ok", root.join("gen/alias")).unwrap();
        let plan = plan_in(
            root,
            "[tasks.gen]\nrun = \"true\"\noutputs = [\"gen\"]\n[tasks.use]\nrun = \"true\"\ndeps = [\"gen\"]\n",
        );
        let spec = build(&plan, plan.pipeline.tasks.get_index_of("use").unwrap()).unwrap();
        let files: Vec<_> = spec.inputs.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["gen/alias", "gen/ok"]);
        assert!(spec.do_not_cache, "no outputs: not cacheable");
    }
}
