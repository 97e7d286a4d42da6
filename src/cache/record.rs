//! Action records: what a cache entry says about one successful run of a key.
//!
//! Stored as JSON at `ac/<2 hex>/<key>.json` (the same bytes a Bazel-protocol remote keeps
//! under `ac/<key>`). A record carries a checksum over its own canonical serialisation, so a
//! truncated or altered record is detected and dropped, never trusted.

use serde::{Deserialize, Serialize};

use super::digest::{from_hex, hash_bytes, to_hex};
use super::key::{KeyPart, OutputEntry};
use super::{Digest, digest};
use crate::model::RelPath;

/// Version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// One key ingredient as recorded, for `plan` / `explain` comparisons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPart {
    /// Display name (`input data/a.csv`, `dep fetch-a`).
    pub name: String,
    /// Hex digest of the ingredient.
    pub digest: String,
}

/// One produced file (directory outputs are listed file by file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Root-relative path.
    pub path: String,
    /// Hex content digest (the blob in `cas/`).
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Unix permission bits, restored as they were (the executable bit above all).
    pub mode: u32,
}

/// A blob reference (the recorded combined output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Hex content digest.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// A download's HTTP validators, so `revalidate = true` can ask the origin whether it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpValidators {
    /// The `ETag` the origin sent.
    pub etag: Option<String>,
    /// The `Last-Modified` the origin sent.
    pub last_modified: Option<String>,
}

/// A cache entry. Only written after a task succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// [`RECORD_VERSION`].
    pub format_version: u32,
    /// Hex key (also the file name).
    pub key: String,
    /// The task name that produced it (informational: names are not part of keys).
    pub task: String,
    /// The key's ingredients, in key order.
    pub parts: Vec<RecordPart>,
    /// Produced files, sorted by path.
    pub outputs: Vec<OutputFile>,
    /// Declared outputs that were directories (recreated even when empty).
    pub output_dirs: Vec<String>,
    /// Hex digest dependents put in their keys.
    pub digest: String,
    /// Combined stdout/stderr, replayed with `-v`.
    pub log: Option<BlobRef>,
    /// RFC 3339, when the entry was stored (`cache_ttl` counts from here).
    pub created: String,
    /// RFC 3339, the last hit (gc evicts least recently used first).
    pub last_used: String,
    /// A download's validators, for `revalidate` (absent for commands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpValidators>,
    /// Hex sha256 of this record serialised with an empty checksum.
    #[serde(default)]
    pub checksum: String,
}

impl ActionRecord {
    fn compute_checksum(&self) -> String {
        let mut copy = self.clone();
        copy.checksum.clear();
        // Serialising plain structs of strings and integers cannot fail.
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        to_hex(&hash_bytes(&bytes))
    }

    /// Sets the checksum; call before writing.
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// Checks the record read for `key` is whole and sane: version, key, checksum, digests,
    /// and paths that stay inside the workspace (a record may come from a remote).
    pub fn verify(&self, key: &str) -> Result<(), String> {
        if self.format_version != RECORD_VERSION {
            return Err(format!("format_version {}", self.format_version));
        }
        if self.key != key {
            return Err("key does not match the file name".into());
        }
        if self.checksum != self.compute_checksum() {
            return Err("checksum mismatch".into());
        }
        if from_hex(&self.digest).is_none() {
            return Err("bad digest".into());
        }
        for o in &self.outputs {
            if from_hex(&o.sha256).is_none() {
                return Err(format!("bad digest for {}", o.path));
            }
            if RelPath::parse(&o.path).is_none() {
                return Err(format!("unsafe path {}", o.path));
            }
        }
        if self.output_dirs.iter().any(|d| RelPath::parse(d).is_none()) {
            return Err("unsafe output directory".into());
        }
        self.check_shape()?;
        if let Some(log) = &self.log
            && from_hex(&log.sha256).is_none()
        {
            return Err("bad log digest".into());
        }
        Ok(())
    }

    /// Checks that the paths form a tree a restore can write whole: no path recorded twice,
    /// and none both a file and the directory of another path. Found before anything is
    /// written, so such a record is never half-restored (its first file in the way of the
    /// task that then runs).
    pub fn check_shape(&self) -> Result<(), String> {
        if self.outputs.len() < 2 && self.output_dirs.is_empty() {
            return Ok(());
        }
        let mut files = std::collections::HashSet::with_capacity(self.outputs.len());
        for o in &self.outputs {
            if !files.insert(o.path.as_str()) {
                return Err(format!("{} is recorded twice", o.path));
            }
        }
        let paths = self.outputs.iter().map(|o| o.path.as_str());
        let clash = paths
            .chain(self.output_dirs.iter().map(String::as_str))
            .flat_map(parents)
            .chain(self.output_dirs.iter().map(String::as_str))
            .find(|dir| files.contains(dir));
        match clash {
            Some(p) => Err(format!("{p} is recorded as a file and as a directory")),
            None => Ok(()),
        }
    }

    /// Checks that the record names only what its task declares (`declared`, see
    /// [`super::key::declared_outputs`]): every file and directory must be a declared output
    /// or lie inside one. A record, local or remote, is data: it must not be able to write
    /// the manifest, `.git/` or anything else the task does not own.
    pub fn check_declared(&self, declared: &[RelPath]) -> Result<(), String> {
        let admitted = |p: &str| declared.iter().any(|d| d.contains(p));
        let names = self.outputs.iter().map(|o| o.path.as_str());
        match names
            .chain(self.output_dirs.iter().map(String::as_str))
            .find(|p| !admitted(p))
        {
            Some(p) => Err(format!("it names `{p}`, which the task does not declare")),
            None => Ok(()),
        }
    }

    /// The dependency digest (verified records always parse).
    pub fn digest_bytes(&self) -> Digest {
        from_hex(&self.digest).unwrap_or([0; 32])
    }

    /// The outputs as they enter an output digest.
    pub fn output_entries(&self) -> Vec<OutputEntry> {
        self.outputs
            .iter()
            .map(|o| OutputEntry {
                path: o.path.clone(),
                sha256: from_hex(&o.sha256).unwrap_or([0; 32]),
                mode: o.mode,
            })
            .collect()
    }

    /// When the record was created.
    pub fn created_time(&self) -> Option<std::time::SystemTime> {
        humantime::parse_rfc3339_weak(&self.created).ok()
    }

    /// When the record was last used.
    pub fn last_used_time(&self) -> Option<std::time::SystemTime> {
        humantime::parse_rfc3339_weak(&self.last_used).ok()
    }

    /// Every blob this record refers to.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        self.outputs
            .iter()
            .map(|o| o.sha256.as_str())
            .chain(self.log.iter().map(|l| l.sha256.as_str()))
    }
}

/// The recorded form of key parts.
pub fn record_parts(parts: &[KeyPart]) -> Vec<RecordPart> {
    parts
        .iter()
        .map(|p| RecordPart {
            name: p.name.clone(),
            digest: digest::to_hex(&p.digest),
        })
        .collect()
}

/// The directories `path` lies in, outermost first (`a/b/c` → `a`, `a/b`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ActionRecord {
        ActionRecord {
            format_version: RECORD_VERSION,
            key: "k".repeat(64),
            task: "t".into(),
            parts: vec![],
            outputs: vec![OutputFile {
                path: "out/x".into(),
                sha256: "a".repeat(64),
                size: 3,
                mode: 0o755,
            }],
            output_dirs: vec![],
            digest: "b".repeat(64),
            log: None,
            created: "2026-01-01T00:00:00Z".into(),
            last_used: "2026-01-01T00:00:00Z".into(),
            http: None,
            checksum: String::new(),
        }
    }

    #[test]
    fn sealed_record_verifies_and_tampering_is_caught() {
        let mut r = sample();
        r.seal();
        assert_eq!(r.verify(&"k".repeat(64)), Ok(()));
        assert!(r.verify(&"j".repeat(64)).is_err());
        let mut t = r.clone();
        t.outputs[0].size = 4;
        assert!(t.verify(&"k".repeat(64)).is_err());
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        for p in ["../x", "/etc/passwd", "a/../../b", "", "a//b", "./a"] {
            assert!(RelPath::parse(p).is_none(), "{p}");
        }
        assert!(RelPath::parse("out/x.csv").is_some());
        assert!(RelPath::parse("unit\\x2dfoo.mount").is_some());
        let mut r = sample();
        r.outputs[0].path = "../escape".into();
        r.seal();
        assert!(r.verify(&"k".repeat(64)).is_err());
    }

    /// Only declared outputs and what lies inside them; `out` does not admit `output`.
    #[test]
    fn undeclared_paths_are_refused() {
        let declared = |ps: &[&str]| {
            ps.iter()
                .map(|p| RelPath::parse(p).unwrap())
                .collect::<Vec<_>>()
        };
        let mut r = sample();
        assert_eq!(r.check_declared(&declared(&["out"])), Ok(()));
        assert_eq!(r.check_declared(&declared(&["out/x"])), Ok(()));
        assert!(r.check_declared(&declared(&["ou"])).is_err());
        r.outputs[0].path = "taskrun.toml".into();
        assert!(
            r.check_declared(&declared(&["out", "taskrun.tom"]))
                .is_err()
        );
        r.outputs[0].path = "out/x".into();
        r.output_dirs.push(".git".into());
        assert!(r.check_declared(&declared(&["out"])).is_err());
    }

    #[test]
    fn a_path_that_is_a_file_and_a_directory_or_recorded_twice_is_rejected() {
        let key = "k".repeat(64);
        let file = |path: &str| OutputFile {
            path: path.into(),
            ..sample().outputs[0].clone()
        };
        let check = |outputs: Vec<OutputFile>, dirs: &[&str]| {
            let mut r = sample();
            r.outputs = outputs;
            r.output_dirs = dirs.iter().map(|d| d.to_string()).collect();
            r.seal();
            r.verify(&key)
        };
        assert_eq!(check(vec![file("od/a"), file("od/b/c")], &["od"]), Ok(()));
        let err = check(vec![file("od/sub"), file("od/sub/q")], &["od"]).unwrap_err();
        assert!(
            err.contains("od/sub is recorded as a file and as a directory"),
            "{err}"
        );
        assert!(check(vec![file("od"), file("x")], &["od"]).is_err());
        let err = check(vec![file("a"), file("a")], &[]).unwrap_err();
        assert!(err.contains("recorded twice"), "{err}");
    }
}
