//! The lockfile (SPEC §10): the sha256 and size of every download without an inline pin,
//! kept beside the manifest as `<stem>.lock` and meant to be committed.
//!
//! It is an input of loading (pins filled in before cache keys are computed, see
//! [`standing::apply`]) and an output of a run (new pins collected when the run ends and
//! written once, atomically, see [`write()`]). This file is the format: reading with every
//! problem placed at its line and column, and writing in one fixed layout so that a run that
//! changes nothing leaves the file byte for byte as it was.

pub mod standing;

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{LoadError, ManifestErrors, Problem};

/// The first line of every lockfile taskrun writes.
pub const HEADER: &str =
    "# Written by taskrun: the sha256 of every download without an inline pin. Commit this file.";

/// The lockfile's contents: one entry per download task, by task name (so sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    /// Task name to its pin.
    pub entries: BTreeMap<String, Entry>,
}

/// One pinned download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The first URL as taskrun resolved it, with `${secret.X}` kept as written.
    pub url: String,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// The content's size in bytes.
    pub size: u64,
}

/// `<manifest stem>.lock` beside the manifest: `pipelines/download.toml` →
/// `pipelines/download.lock`.
pub fn path_for(manifest: &Path) -> PathBuf {
    manifest.with_file_name(file_name(manifest))
}

/// The lockfile's file name, as messages show it (`download.lock`). A manifest whose own
/// name ends in `.lock` gets `NAME.lock.lock`: its lockfile must not be itself.
pub fn file_name(manifest: &Path) -> String {
    if manifest.extension().is_some_and(|e| e == "lock") {
        let name = manifest.file_name().unwrap_or_default().to_string_lossy();
        return format!("{name}.lock");
    }
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "taskrun".into());
    format!("{stem}.lock")
}

/// Holds an `flock` on the lockfile's directory while a process reads, merges and writes
/// the lockfile (dropped with the value, or with the process): two runs, or a run and
/// `taskrun lock`, ending together take turns instead of one writing back a copy without
/// the other's pins. `None` when the directory cannot be locked (then there is no turn).
pub fn take_turn(path: &Path) -> Option<std::fs::File> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::File::open(dir).ok()?;
    dir.lock().ok()?;
    Some(dir)
}

/// Reads the lockfile at `path`; `Ok(None)` when there is none. A malformed one is a
/// [`LoadError::Invalid`] whose problems point into the lockfile.
pub fn read(path: &Path) -> Result<Option<Lockfile>, LoadError> {
    match crate::text_files::read_to_string(path) {
        Ok(text) => parse(path, text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(invalid(
            path,
            String::new(),
            vec![Problem::global(format!("cannot read the lockfile: {e}"))],
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: toml::Spanned<i64>,
    #[serde(default)]
    download: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    task: toml::Spanned<String>,
    url: String,
    sha256: toml::Spanned<String>,
    size: u64,
}

/// Parses lockfile text; `path` names the file in messages.
pub fn parse(path: &Path, text: String) -> Result<Lockfile, LoadError> {
    if let Some(lock) = parse_written(&text) {
        return Ok(lock);
    }
    let raw: RawFile = match toml::from_str(&text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = format!("malformed lockfile: {}", e.message().trim());
            let problem = Problem::at(span, msg)
                .label("here")
                .help(regenerate_help(path));
            return Err(invalid(path, text, vec![problem]));
        }
    };
    let mut problems = Vec::new();
    if *raw.version.get_ref() != 1 {
        problems.push(
            Problem::at(
                raw.version.span(),
                format!("unsupported lockfile version {}", raw.version.get_ref()),
            )
            .label("only version 1 exists"),
        );
    }
    let mut lock = Lockfile::default();
    let mut first_at: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for e in raw.download {
        let sha = e.sha256.get_ref();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            problems.push(
                Problem::at(e.sha256.span(), format!("malformed sha256 `{sha}`"))
                    .label("not a sha256 digest")
                    .help("a sha256 is 64 hex digits"),
            );
            continue;
        }
        let name = e.task.get_ref().clone();
        if let Some(first) = first_at.get(&name) {
            let (line, _) = crate::manifest::diagnostic::line_col(&text, first.start);
            problems.push(
                Problem::at(e.task.span(), format!("task `{name}` has two entries"))
                    .label("second entry")
                    .help(format!("the first is on line {line}; keep one")),
            );
            continue;
        }
        first_at.insert(name.clone(), e.task.span());
        lock.entries.insert(
            name,
            Entry {
                url: e.url,
                sha256: sha.to_ascii_lowercase(),
                size: e.size,
            },
        );
    }
    if problems.is_empty() {
        Ok(lock)
    } else {
        Err(invalid(path, text, problems))
    }
}

/// The layout [`render`] writes, read line by line: a no-op rerun of 10,000 pinned downloads
/// reads its lockfile on every run, and a general TOML parse of it cost about as much as the
/// rest of the run. `None` for anything else (comments after values, escapes, another
/// order, a duplicate, a bad digest): the TOML parser then reads it, with its diagnostics.
fn parse_written(text: &str) -> Option<Lockfile> {
    let mut lines = text.lines().skip_while(|l| l.starts_with('#'));
    if lines.next()? != "version = 1" {
        return None;
    }
    let mut lock = Lockfile::default();
    while let Some(line) = lines.next() {
        if line != "[[download]]" {
            return None;
        }
        let mut field = |key: &str| lines.next()?.strip_prefix(key);
        let task = plain_string(field("task = ")?)?;
        let url = plain_string(field("url = ")?)?;
        let sha256 = plain_string(field("sha256 = ")?)?;
        let size = field("size = ")?;
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            || size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return None;
        }
        let entry = Entry {
            url,
            sha256,
            size: size.parse().ok()?,
        };
        if lock.entries.insert(task, entry).is_some() {
            return None;
        }
    }
    Some(lock)
}

/// The text of a TOML basic string with nothing escaped in it.
fn plain_string(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let plain = !inner.contains(['"', '\\']) && !inner.chars().any(char::is_control);
    plain.then(|| inner.to_string())
}

fn regenerate_help(path: &Path) -> String {
    format!(
        "the lockfile is written by taskrun; fix it, or delete {} and run `taskrun lock`",
        path.display()
    )
}

fn invalid(path: &Path, source: String, problems: Vec<Problem>) -> LoadError {
    LoadError::Invalid(Box::new(ManifestErrors {
        path: path.to_path_buf(),
        source,
        problems,
    }))
}

/// The lockfile's text: the header, `version = 1`, then one `[[download]]` table per entry
/// in task-name order, each with `task`, `url`, `sha256`, `size`.
pub fn render(lock: &Lockfile) -> String {
    let mut out = String::with_capacity(128 + lock.entries.len() * 160);
    out.push_str(HEADER);
    out.push_str("\nversion = 1\n");
    for (task, e) in &lock.entries {
        out.push_str("[[download]]\ntask = ");
        push_basic_string(&mut out, task);
        out.push_str("\nurl = ");
        push_basic_string(&mut out, &e.url);
        out.push_str(&format!("\nsha256 = \"{}\"\nsize = {}\n", e.sha256, e.size));
    }
    out
}

/// A TOML basic string: `"`, `\` and control characters escaped.
fn push_basic_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes the lockfile atomically: a temp file beside it, flushed, then renamed over it.
pub fn write(path: &Path, lock: &Lockfile) -> std::io::Result<()> {
    // The temp file prefix input globs and output snapshots skip (a kill -9 may leave it).
    let mut tmp = crate::workspace::user_temp_beside(path)?;
    tmp.write_all(render(lock).as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn entry(url: &str, sha: &str, size: u64) -> Entry {
        Entry {
            url: url.into(),
            sha256: sha.into(),
            size,
        }
    }

    fn short(err: LoadError) -> String {
        match err {
            LoadError::Invalid(e) => e.short(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn path_is_beside_the_manifest_named_after_it() {
        let p = path_for(Path::new("pipelines/download.toml"));
        assert_eq!(p, Path::new("pipelines/download.lock"));
        assert_eq!(path_for(Path::new("m.toml")), Path::new("m.lock"));
        assert_eq!(file_name(Path::new("a/x.y.toml")), "x.y.lock");
        assert_eq!(file_name(Path::new("p.lock")), "p.lock.lock");
    }

    #[test]
    fn renders_the_spec_layout_sorted_and_parses_back() {
        let mut lock = Lockfile::default();
        lock.entries
            .insert("get[b.csv]".into(), entry("http://h/b.csv", A, 7));
        lock.entries.insert(
            "get[a.csv]".into(),
            entry("https://h/a.csv?t=${secret.TOKEN}&q=\"x\"", A, 1024),
        );
        let text = render(&lock);
        let want = format!(
            "{HEADER}\nversion = 1\n\
             [[download]]\ntask = \"get[a.csv]\"\nurl = \"https://h/a.csv?t=${{secret.TOKEN}}&q=\\\"x\\\"\"\nsha256 = \"{A}\"\nsize = 1024\n\
             [[download]]\ntask = \"get[b.csv]\"\nurl = \"http://h/b.csv\"\nsha256 = \"{A}\"\nsize = 7\n"
        );
        assert_eq!(text, want);
        assert_eq!(parse(Path::new("m.lock"), text.clone()).unwrap(), lock);
        // The quoted URL takes the TOML parser; a plain one the line reader; both agree.
        assert_eq!(parse_written(&text), None);
        lock.entries.get_mut("get[a.csv]").unwrap().url = "https://h/a.csv?t=${secret.T}".into();
        let text = render(&lock);
        assert_eq!(parse_written(&text), Some(lock.clone()));
        let via_toml = parse(
            Path::new("m.lock"),
            text.replace("size = 7", "size = 7 # c"),
        );
        assert_eq!(via_toml.unwrap(), lock);
        let empty = render(&Lockfile::default());
        assert_eq!(
            parse(Path::new("m.lock"), empty).unwrap(),
            Lockfile::default()
        );
    }

    #[test]
    fn problems_have_their_line_and_column() {
        let bad_toml = "version = 1\n[[download]]\ntask = \"a\"\nurl = \n";
        let out = short(parse(Path::new("m.lock"), bad_toml.into()).unwrap_err());
        assert!(out.starts_with("m.lock:4:"), "{out}");
        assert!(out.contains("malformed lockfile"), "{out}");

        let unknown = "version = 1\n[[download]]\ntask = \"a\"\nurl = \"u\"\nsha256 = \"x\"\nsize = 1\nextra = 2\n";
        let out = short(parse(Path::new("m.lock"), unknown.into()).unwrap_err());
        assert!(out.contains("unknown field `extra`"), "{out}");

        let text = format!(
            "version = 2\n[[download]]\ntask = \"a\"\nurl = \"u\"\nsha256 = \"{A}\"\nsize = 1\n\
             [[download]]\ntask = \"a\"\nurl = \"u\"\nsha256 = \"{A}\"\nsize = 1\n\
             [[download]]\ntask = \"b\"\nurl = \"u\"\nsha256 = \"abc\"\nsize = 1\n"
        );
        let out = short(parse(Path::new("m.lock"), text).unwrap_err());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("m.lock:1:11: unsupported lockfile version 2"));
        assert!(lines[1].starts_with("m.lock:8:8: task `a` has two entries"));
        assert!(lines[2].starts_with("m.lock:15:10: malformed sha256 `abc`"));

        let missing = "[[download]]\n";
        let out = short(parse(Path::new("m.lock"), missing.into()).unwrap_err());
        assert!(out.contains("missing field"), "{out}");
    }

    #[test]
    fn write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.lock");
        assert_eq!(read(&path).unwrap(), None);
        let mut lock = Lockfile::default();
        lock.entries.insert("a".into(), entry("http://h/a", A, 3));
        write(&path, &lock).unwrap();
        write(&path, &lock).unwrap();
        assert_eq!(read(&path).unwrap(), Some(lock));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }
}
