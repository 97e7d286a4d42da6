//! The files taskrun writes in a cache dir, told apart by name: `cas/<2 hex>/<64 hex>` blobs,
//! `ac/<2 hex>/<64 hex>.json` records, `index/<32 hex>.bin` journals, `stat.bin`, `lock`, and
//! `.tmp-XXXXXX` temp files in those directories (SPEC §13).
//!
//! `cache clean`, `gc` and the sizes they report see only these: a cache dir may be shared
//! with the user's own files (`[cache] dir = "data"`), and those are never touched, even
//! inside `cas/` or `ac/` under names the store never uses.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::stat::STAT_FILE;

/// What one of taskrun's files is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cas/<2 hex>/<sha256>`.
    Blob,
    /// `ac/<2 hex>/<key>.json`.
    Record,
    /// `index/<32 hex>.bin`: a manifest's journal (and `.used`, its use stamp).
    Journal,
    /// `stat.bin`.
    Stat,
    /// `.tmp-XXXXXX`: a write in progress, or left by a killed process.
    Temp,
}

/// One file taskrun wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// Its path under the cache dir.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A name the store's temp files have: `.tmp-` and six letters or digits (tempfile's).
pub fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(".tmp-")
        .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `name` is a two-hex-digit shard directory of `cas/` or `ac/`.
pub fn is_shard_name(name: &str) -> bool {
    lower_hex(name, 2)
}

/// Whether `name` is a blob's file name (a sha256 in lower-case hex).
pub fn is_blob_name(name: &str) -> bool {
    lower_hex(name, 64)
}

/// Whether `name` is an action record's file name (`<key>.json`).
pub fn is_record_name(name: &str) -> bool {
    name.strip_suffix(".json").is_some_and(|k| lower_hex(k, 64))
}

fn is_journal_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".bin")
        .or_else(|| name.strip_suffix(".used"));
    stem.is_some_and(|k| lower_hex(k, 32))
}

/// The regular files in `dir` (not following symlinks), with their names.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

/// The shard directories under `top` (not symlinks).
fn shards(top: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(top) else {
        return Vec::new();
    };
    read.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_str().is_some_and(is_shard_name))
        .map(|e| e.path())
        .collect()
}

/// Every file of taskrun's in `cache_dir` but the lock, sorted by path.
pub fn files(cache_dir: &Path) -> Vec<Owned> {
    let mut out = Vec::new();
    let mut add = |dir: &Path, classify: &dyn Fn(&str) -> Option<Kind>| {
        for (name, path) in entries(dir) {
            let kind = if is_temp_name(&name) {
                Some(Kind::Temp)
            } else {
                classify(&name)
            };
            if let Some(kind) = kind {
                out.push(Owned { path, kind });
            }
        }
    };
    add(cache_dir, &|n| (n == STAT_FILE).then_some(Kind::Stat));
    add(&cache_dir.join("cas"), &|_| None);
    for shard in shards(&cache_dir.join("cas")) {
        add(&shard, &|n| is_blob_name(n).then_some(Kind::Blob));
    }
    for shard in shards(&cache_dir.join("ac")) {
        add(&shard, &|n| is_record_name(n).then_some(Kind::Record));
    }
    add(&cache_dir.join("index"), &|n| {
        is_journal_name(n).then_some(Kind::Journal)
    });
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Bytes in taskrun's files in `cache_dir`.
pub fn size(cache_dir: &Path) -> u64 {
    files(cache_dir)
        .iter()
        .filter_map(|f| fs::symlink_metadata(&f.path).ok())
        .map(|m| m.len())
        .sum()
}

/// Removes the store's directories (`cas/`, `ac/`, `index/` and their shards) that are empty
/// now; one holding anything else stays.
pub fn remove_empty_dirs(cache_dir: &Path) {
    for top in ["cas", "ac"] {
        let top = cache_dir.join(top);
        for shard in shards(&top) {
            let _ = fs::remove_dir(shard);
        }
        let _ = fs::remove_dir(top);
    }
    let _ = fs::remove_dir(cache_dir.join("index"));
}

/// Deletes every file of taskrun's in `cache_dir` but the lock (held by the caller), then its
/// empty directories; returns the bytes freed.
pub fn remove_all(cache_dir: &Path) -> io::Result<u64> {
    let mut freed = 0;
    for f in files(cache_dir) {
        let len = fs::symlink_metadata(&f.path).map_or(0, |m| m.len());
        match fs::remove_file(&f.path) {
            Ok(()) => freed += len,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", f.path.display()),
                ));
            }
        }
    }
    remove_empty_dirs(cache_dir);
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stores_names_are_its_own() {
        let d = tempfile::tempdir().unwrap();
        let blob = "ab".to_string() + &"0".repeat(62);
        let mine = [
            format!("cas/ab/{blob}"),
            format!("cas/01/01{}", "f".repeat(62)),
            format!("ac/cd/{blob}.json"),
            format!("index/{}.bin", "1".repeat(32)),
            "stat.bin".to_string(),
            ".tmp-Ab12Cd".to_string(),
            "cas/.tmp-x1y2z3".to_string(),
            "ac/cd/.tmp-000000".to_string(),
        ];
        let theirs = [
            "keep.txt",
            "cas/notes.txt",
            "cas/zz/x",
            "cas/ab/ABCDEF",
            "ac/cd/readme.json",
            "index/list.bin",
            "sub/.tmp-abcdef",
            ".tmp-notes.txt",
            "lock",
        ];
        for f in mine.iter().map(String::as_str).chain(theirs) {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        let found: Vec<String> = files(d.path())
            .iter()
            .map(|f| {
                let rel = f.path.strip_prefix(d.path()).unwrap();
                rel.to_string_lossy().into_owned()
            })
            .collect();
        let mut want: Vec<String> = mine.to_vec();
        want.sort();
        assert_eq!(found, want);
        remove_all(d.path()).unwrap();
        for f in theirs {
            assert!(d.path().join(f).is_file(), "{f}");
        }
        assert_eq!(files(d.path()), Vec::new());
        // A shard that held only blobs is gone; one with the user's file in it stays.
        assert!(!d.path().join("cas/01").exists());
        assert!(d.path().join("cas/ab").is_dir());
    }
}
