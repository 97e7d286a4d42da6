//! The cache key (SPEC §5): sha256 over a canonical, versioned, length-prefixed encoding.
//!
//! The key is a two-level (Merkle) hash. Each ingredient is a named [`KeyPart`] whose digest is
//! the sha256 of its typed, length-prefixed encoding (or, for an input file or a dependency,
//! the content/output digest itself). The key is the sha256 of a version tag followed by every
//! part's tag and digest, in a fixed order. Keeping the parts lets `plan` and `explain` say
//! *which* ingredient changed by comparing them with the last run's.
//!
//! Ingredients: task kind; the resolved definition (command: shell text or argv, cwd, merged
//! `[env]` + task env, sorted; download: urls, non-secret headers, sha256 pin); the declared
//! outputs; each input file's relative path + content digest (sorted by path); each
//! dependency's digest (sorted by digest). Left out: the task's name, retry, timeout, pools,
//! secret values (a `${secret.X}` enters as its name only; a header holding one is left out
//! entirely) and timestamps.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::Digest;
use super::digest::to_hex;
use crate::model::{Action, CommandLine, Pipeline, Readiness, RelPath, Task};
use crate::template::{Segment, Template};

/// Version tag of the key encoding; bump it whenever the encoding changes.
pub const KEY_VERSION: &str = "taskrun-cache-key/1";

/// One named ingredient of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPart {
    /// What users see: `command`, `env LC_ALL`, `input data/a.csv`, `dep fetch-a`, ...
    pub name: String,
    /// What enters the key: the name, except `dep` for dependencies (their names are not
    /// ingredients, only their digests).
    pub tag: String,
    /// The ingredient's digest.
    pub digest: Digest,
}

/// A task's key together with the parts it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKey {
    /// The key.
    pub key: Digest,
    /// Its ingredients in key order.
    pub parts: Vec<KeyPart>,
}

impl TaskKey {
    /// The key as lowercase hex (file names, reports).
    pub fn hex(&self) -> String {
        to_hex(&self.key)
    }
}

/// Typed, length-prefixed sha256 encoder: every variable-length field carries its length,
/// so no two different field sequences encode to the same bytes.
struct Enc(Sha256);

impl Enc {
    fn new(domain: &str) -> Self {
        let mut e = Enc(Sha256::new());
        e.str(domain);
        e
    }
    fn u64(&mut self, v: u64) {
        self.0.update(v.to_le_bytes());
    }
    fn tag(&mut self, t: u8) {
        self.0.update([t]);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    /// Secrets enter by name only, never by value.
    fn template(&mut self, t: &Template) {
        self.u64(t.segments().len() as u64);
        for seg in t.segments() {
            match seg {
                Segment::Literal(s) => {
                    self.tag(b'L');
                    self.str(s);
                }
                Segment::Secret(name) => {
                    self.tag(b'S');
                    self.str(name);
                }
            }
        }
    }
    fn command(&mut self, c: &CommandLine) {
        match c {
            CommandLine::Shell(t) => {
                self.tag(b's');
                self.template(t);
            }
            CommandLine::Argv(args) => {
                self.tag(b'a');
                self.u64(args.len() as u64);
                for a in args {
                    self.template(a);
                }
            }
        }
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(0),
            Some(s) => {
                self.tag(1);
                self.str(s);
            }
        }
    }
    fn finish(self) -> Digest {
        self.0.finalize().into()
    }
}

fn part(name: impl Into<String>, digest: Digest) -> KeyPart {
    let name = name.into();
    KeyPart {
        tag: name.clone(),
        name,
        digest,
    }
}

fn encoded(name: &str, f: impl FnOnce(&mut Enc)) -> KeyPart {
    let mut e = Enc::new(&format!("{KEY_VERSION}:{name}"));
    f(&mut e);
    part(name, e.finish())
}

/// `[env]` merged with the task's env (the task wins), sorted by name.
pub fn merged_env<'a>(pipeline: &'a Pipeline, task: &'a Task) -> BTreeMap<&'a str, &'a Template> {
    let mut env: BTreeMap<&str, &Template> =
        pipeline.env.iter().map(|(k, v)| (k.as_str(), v)).collect();
    env.extend(task.env.iter().map(|(k, v)| (k.as_str(), v)));
    env
}

/// The paths a task produces: its `outputs`, plus a download's `dest`.
pub fn declared_outputs(task: &Task) -> Vec<RelPath> {
    let mut out = task.outputs.clone();
    if let Action::Download(d) = &task.action
        && !out.contains(&d.dest)
    {
        out.push(d.dest.clone());
    }
    out.sort();
    out
}

/// The parts describing the task's definition (everything but inputs and deps).
fn definition_parts(pipeline: &Pipeline, task: &Task) -> Vec<KeyPart> {
    let mut parts = vec![encoded("kind", |e| e.str(task.kind().as_str()))];
    let cwd = task.cwd.as_ref().map(|c| c.as_str());
    let env_parts = |parts: &mut Vec<KeyPart>| {
        let env = merged_env(pipeline, task);
        let is_item =
            |name: &str| name.starts_with("TASKRUN_ITEM_") || name.starts_with("TASKRUN_MATRIX_");
        for (name, value) in env.iter().filter(|(n, _)| !is_item(n)) {
            let mut p = encoded("env", |e| {
                e.str(name);
                e.template(value);
            });
            p.name = format!("env {name}");
            p.tag = p.name.clone();
            parts.push(p);
        }
        // A fan-out instance's values are one part: hashed once, not once per field (a
        // no-op rerun of 10,000 instances computes 10,000 keys).
        let items: Vec<_> = env.iter().filter(|(n, _)| is_item(n)).collect();
        if !items.is_empty() {
            let mut p = encoded("env", |e| {
                e.u64(items.len() as u64);
                for (name, value) in &items {
                    e.str(name);
                    e.template(value);
                }
            });
            p.name = "env TASKRUN_ITEM_* / TASKRUN_MATRIX_*".into();
            p.tag = p.name.clone();
            parts.push(p);
        }
    };
    match &task.action {
        Action::Command(cmd) => {
            parts.push(encoded("command", |e| e.command(cmd)));
            parts.push(encoded("cwd", |e| e.opt_str(cwd)));
            env_parts(&mut parts);
            // The platform a remote action asks for (a container image, an OS): a result
            // built on another is not this task's, as in Bazel's action keys. No part when
            // none is set, so keys without `platform` are what they were.
            let platform = pipeline.execution.platform_for(task);
            if !platform.is_empty() {
                parts.push(encoded("platform", |e| {
                    e.u64(platform.len() as u64);
                    for (name, value) in &platform {
                        e.str(name);
                        e.str(value);
                    }
                }));
            }
        }
        Action::Download(d) => {
            parts.push(encoded("url", |e| {
                e.u64(d.urls.len() as u64);
                for u in &d.urls {
                    e.template(u);
                }
            }));
            let mut headers: Vec<(String, &Template)> = d
                .headers
                .iter()
                .filter(|(_, v)| !v.has_secret())
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            headers.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, value) in headers {
                let mut p = encoded("header", |e| {
                    e.str(&name);
                    e.template(value);
                });
                p.name = format!("header {name}");
                p.tag = p.name.clone();
                parts.push(p);
            }
            parts.push(encoded("sha256", |e| e.opt_str(d.sha256.as_deref())));
        }
        Action::Service(s) => {
            parts.push(encoded("command", |e| e.command(&s.run)));
            parts.push(encoded("ready", |e| match &s.ready {
                Readiness::Url(u) => {
                    e.tag(b'u');
                    e.template(u);
                }
                Readiness::Tcp(addr) => {
                    e.tag(b't');
                    e.str(addr);
                }
            }));
            parts.push(encoded("cwd", |e| e.opt_str(cwd)));
            env_parts(&mut parts);
        }
        Action::Group => {}
    }
    let outputs = declared_outputs(task);
    parts.push(encoded("outputs", |e| {
        e.u64(outputs.len() as u64);
        for o in &outputs {
            e.str(o.as_str());
        }
    }));
    parts
}

/// Computes a task's key. `inputs`: (root-relative path, content digest), any order.
/// `deps`: (dependency name, its digest as from [`dependency_digest`]), any order.
pub fn task_key(
    pipeline: &Pipeline,
    task: &Task,
    inputs: &[(String, Digest)],
    deps: &[(String, Digest)],
) -> TaskKey {
    let mut parts = definition_parts(pipeline, task);
    let mut inputs: Vec<&(String, Digest)> = inputs.iter().collect();
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    inputs.dedup_by(|a, b| a.0 == b.0);
    parts.extend(inputs.iter().map(|(p, d)| part(format!("input {p}"), *d)));
    let order_only: std::collections::HashSet<&str> =
        task.order_only_deps().iter().map(String::as_str).collect();
    let mut deps: Vec<&(String, Digest)> = deps
        .iter()
        .filter(|(name, _)| !order_only.contains(name.as_str()))
        .collect();
    deps.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    parts.extend(deps.iter().map(|(name, d)| KeyPart {
        name: format!("dep {name}"),
        tag: "dep".into(),
        digest: *d,
    }));
    TaskKey {
        key: key_of_parts(&parts),
        parts,
    }
}

/// The key over already computed parts (what [`task_key`] returns as `key`).
pub fn key_of_parts(parts: &[KeyPart]) -> Digest {
    let mut e = Enc::new(KEY_VERSION);
    e.u64(parts.len() as u64);
    for p in parts {
        e.str(&p.tag);
        e.bytes(&p.digest);
    }
    e.finish()
}

/// A group's digest: the digest of its deps' digests (sorted).
pub fn group_digest(dep_digests: &[Digest]) -> Digest {
    let mut sorted = dep_digests.to_vec();
    sorted.sort();
    let mut e = Enc::new("taskrun-group/1");
    e.u64(sorted.len() as u64);
    for d in &sorted {
        e.bytes(d);
    }
    e.finish()
}

/// A service's digest: its definition (it has no outputs and is never cached).
pub fn service_digest(pipeline: &Pipeline, task: &Task) -> Digest {
    key_of_parts(&definition_parts(pipeline, task))
}

/// One produced file, as it enters an output digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEntry {
    /// Root-relative path of the file (files inside an output directory listed one by one).
    pub path: String,
    /// Content digest.
    pub sha256: Digest,
    /// Unix permission bits; only the executable bit enters the digest (umask-proof).
    pub mode: u32,
}

/// The digest dependents see for a task with outputs: path + content + executable bit of
/// every produced file, sorted. Identical bytes give an identical digest (early cutoff).
pub fn outputs_digest(files: &[OutputEntry]) -> Digest {
    let mut sorted: Vec<&OutputEntry> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut e = Enc::new("taskrun-outputs/1");
    e.u64(sorted.len() as u64);
    for f in sorted {
        e.str(&f.path);
        e.bytes(&f.sha256);
        e.tag(u8::from(f.mode & 0o111 != 0));
    }
    e.finish()
}

/// The digest a finished task passes to its dependents: a group's digest of its deps, a
/// service's definition, the outputs digest when the task declares outputs, else its key.
pub fn dependency_digest(
    pipeline: &Pipeline,
    task: &Task,
    key: Option<&Digest>,
    dep_digests: &[Digest],
    outputs: &[OutputEntry],
) -> Digest {
    match &task.action {
        Action::Group => group_digest(dep_digests),
        Action::Service(_) => service_digest(pipeline, task),
        _ if !declared_outputs(task).is_empty() => outputs_digest(outputs),
        _ => key.copied().unwrap_or_else(|| group_digest(dep_digests)),
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
