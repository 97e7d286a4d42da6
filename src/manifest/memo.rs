//! The last loaded manifest, remembered for `run`: reading and validating a large manifest
//! costs more than a whole no-op run of it (10,000 tasks: ~40 ms of TOML parsing and
//! checking), and between two runs it almost never changes.
//!
//! `run` keeps the validated [`Pipeline`] in `<manifest dir>/.taskrun/manifest/<id>.bin`
//! (sealed, see [`crate::cache::sealed`]) with everything it was derived from: the exact
//! manifest bytes, the path as given, the working directory, the `--var` overrides, the
//! taskrun binary (size, mtime, inode), and every environment variable the manifest read
//! (`${env.X}`, `TASKRUN_CACHE_DIR`) with its value then. It is used only when all of them
//! are the same now; otherwise the manifest is loaded as usual (with every diagnostic) and
//! remembered again. A later phase of a run (fan-outs expanded after the tasks that produce
//! their items) is remembered beside it, with the finished tasks' names in its identity and
//! the produced item files among those it checks. Secrets are never in it: `${secret.*}` is
//! resolved only when a task runs,
//! and a manifest whose remote cache URL carries a user or password is not remembered.
//! `check`, `plan` and `--dry-run` never read or write it. It is sealed with this user's key
//! (kept in `~/.cache/taskrun/memo.key`): one written by anybody else is not used.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diagnostic::LoadError;
use super::load::{LoadOptions, load_str, manifest_dir};
use crate::cache::Digest;
use crate::cache::digest::{hash_bytes, to_hex};
use crate::cache::sealed;
use crate::model::Pipeline;

const MAGIC: &[u8] = b"taskrun manifest memo v2\n";

#[derive(Serialize, Deserialize)]
struct Memo {
    /// Digest of the manifest bytes and everything else it was loaded with.
    id: Digest,
    /// Environment variables the manifest read, with their values (`None`: unset).
    env: Vec<(String, Option<String>)>,
    pipeline: Pipeline,
}

/// Loads the manifest at `path` like [`super::load()`], from the memo when nothing it was
/// derived from changed. Writing the memo is best effort.
pub fn load_remembered(path: &Path, opts: &LoadOptions) -> Result<Pipeline, LoadError> {
    load_remembered_with(path, opts, &|k| std::env::var(k).ok())
}

/// A remembered task's size, about (10,000 `cp` tasks: 0.96 MB), for the huge-page call of
/// a remembered pipeline before it is decoded (see [`crate::huge_pages`]).
const MEMO_BYTES_PER_TASK: u64 = 96;

/// [`load_remembered`] with `env` standing for the process environment.
fn load_remembered_with(
    path: &Path,
    opts: &LoadOptions,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Pipeline, LoadError> {
    let source = super::load::read_source(path)?;
    // A load that holds stand-ins back happens once, after a failure: not worth a memo.
    let id = memo_id(path, opts, &source).filter(|_| opts.held.is_empty());
    let (Some(id), Some(key)) = (id, super::memo_key::memo_key()) else {
        return load_str(path, source, opts, env);
    };
    let file = memo_path(path, &opts.finished);
    if let Ok(m) = std::fs::metadata(&file) {
        let tasks = m.len() / MEMO_BYTES_PER_TASK;
        super::load::heap_for_tasks(usize::try_from(tasks).unwrap_or(usize::MAX));
    }
    if let Ok(Some(memo)) = sealed::read_keyed::<Memo>(&file, MAGIC, &key)
        && memo.id == id
        && memo.env.iter().all(|(k, v)| env(k).as_ref() == v.as_ref())
        && items_unchanged(&memo.pipeline)
    {
        return Ok(memo.pipeline);
    }
    // A Mutex, not a RefCell: a large fan-out's instances are built on several threads.
    let read = std::sync::Mutex::new(Vec::new());
    let recording = |k: &str| {
        let v = env(k);
        read.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((k.to_string(), v.clone()));
        v
    };
    let pipeline = load_str(path, source, opts, &recording)?;
    if has_credentials(pipeline.cache.http_remote()) {
        // The memo would hold them (in the pipeline and the environment it read).
        return Ok(pipeline);
    }
    let mut env = read
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    env.sort();
    env.dedup();
    let memo = Memo { id, env, pipeline };
    if let Err(e) = sealed::write_keyed(&file, MAGIC, &key, &memo) {
        tracing::debug!("cannot remember the manifest in {}: {e}", file.display());
    }
    Ok(memo.pipeline)
}

/// Whether every item file and glob a fan-out read still gives what it gave (SPEC §9: items
/// are read when the manifest loads, so a changed `urls.txt` is a changed manifest).
fn items_unchanged(pipeline: &Pipeline) -> bool {
    pipeline.item_sources.iter().all(|s| {
        s.fingerprint.is_some()
            && super::fanout::sources::fingerprint(&pipeline.root, s.kind, &s.path) == s.fingerprint
    })
}

/// A remote cache URL with a user or password (SPEC §13: no secret in a file taskrun writes).
fn has_credentials(remote: Option<&url::Url>) -> bool {
    remote.is_some_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// Where the memo of the manifest at `path` lives. A load after some tasks `finished` (a
/// later phase of a run, which expands fan-outs over produced items) has its own, one of at
/// most 16 per manifest, so a run's phases do not replace each other's memo.
fn memo_path(path: &Path, finished: &std::collections::BTreeSet<String>) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let hex = to_hex(&hash_bytes(abs.as_os_str().as_encoded_bytes()));
    let name = if finished.is_empty() {
        format!("{}.bin", &hex[..32])
    } else {
        let names: Vec<&str> = finished.iter().map(String::as_str).collect();
        let phase = to_hex(&hash_bytes(names.join("\n").as_bytes()));
        format!("{}-after-{}.bin", &hex[..32], &phase[..1])
    };
    manifest_dir(path)
        .join(".taskrun")
        .join("manifest")
        .join(name)
}

/// Digest of what a load depends on besides the environment; `None` when the running
/// binary or the working directory cannot be identified (then nothing is remembered).
fn memo_id(path: &Path, opts: &LoadOptions, source: &str) -> Option<Digest> {
    let exe = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    let cwd = std::env::current_dir().ok()?;
    use sha2::Digest as _;
    // Length-prefixed fields hashed as they come (the source is not copied).
    let mut hasher = sha2::Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(MAGIC);
    field(env!("CARGO_PKG_VERSION").as_bytes());
    for n in [
        exe.size(),
        exe.ino(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
    ] {
        field(&n.to_le_bytes());
    }
    field(cwd.as_os_str().as_encoded_bytes());
    field(path.as_os_str().as_encoded_bytes());
    for (k, v) in &opts.vars {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(&(opts.finished.len() as u64).to_le_bytes());
    for name in &opts.finished {
        field(name.as_bytes());
    }
    field(source.as_bytes());
    Some(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("taskrun.toml");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn remembered_only_while_the_manifest_vars_and_env_are_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let var = "GREETING";
        let value = std::sync::Mutex::new("hello");
        let env = |k: &str| (k == var).then(|| value.lock().unwrap().to_string());
        let body = format!(
            "version = 1\n[tasks.a]\nrun = \"echo ${{env.{var}}} ${{vars.who}}\"\n[vars]\nwho = \"w\"\n"
        );
        let p = manifest(dir.path(), &body);
        let opts = LoadOptions::default();
        let run = |p: &Path, o: &LoadOptions| match &load_remembered_with(p, o, &env).unwrap().tasks
            ["a"]
            .action
        {
            crate::model::Action::Command(c) => c.display(),
            other => panic!("{other:?}"),
        };
        assert_eq!(run(&p, &opts), "echo hello w");
        assert!(memo_path(&p, &Default::default()).exists());
        assert_eq!(run(&p, &opts), "echo hello w");

        *value.lock().unwrap() = "bonjour";
        assert_eq!(run(&p, &opts), "echo bonjour w");
        let vars = LoadOptions {
            vars: vec![("who".into(), "x".into())],
            ..Default::default()
        };
        assert_eq!(run(&p, &vars), "echo bonjour x");
        let p = manifest(dir.path(), &body.replace("echo", "printf"));
        assert_eq!(run(&p, &vars), "printf bonjour x");

        // A damaged memo is ignored, and an invalid manifest still gets its diagnostics.
        std::fs::write(memo_path(&p, &Default::default()), b"garbage").unwrap();
        assert_eq!(run(&p, &vars), "printf bonjour x");
        let p = manifest(dir.path(), "version = 1\n[tasks.a]\nrun = 3\n");
        assert!(matches!(
            load_remembered_with(&p, &opts, &env),
            Err(LoadError::Invalid(_))
        ));
    }
}
