//! Reading the items of `for_each`: the lines of a file, the rows of a CSV file, the files a
//! glob matches (SPEC §9). Each item carries its fields, its default key and where it came
//! from (`urls.txt:12`), so that every later message can name it.

use std::path::Path;

use globset::GlobBuilder;

/// One item of a `for_each` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Field name → value, in the source's order (`line`, `name`, `stem`, `ext`; CSV columns;
    /// `path`, `name`, `stem`, `ext`, `dir`).
    pub fields: Vec<(String, String)>,
    /// The key the instance gets when the task sets no `key` template.
    pub key: String,
    /// Where it came from, for messages: `urls.txt:12`, or the matched path for a glob.
    pub origin: String,
}

/// Which kind of source, as written in `for_each`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceKind {
    /// `lines = "FILE"`
    Lines,
    /// `csv = "FILE"`
    Csv,
    /// `glob = "PATTERN"`
    Glob,
}

impl SourceKind {
    /// The key it is written with.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Lines => "lines",
            SourceKind::Csv => "csv",
            SourceKind::Glob => "glob",
        }
    }
}

/// Reads every item of a source; `rel` is the file (or glob) relative to `root`. Also returns
/// the [`fingerprint`] of exactly what was read.
pub fn read(
    root: &Path,
    kind: SourceKind,
    rel: &str,
) -> Result<(Vec<Item>, crate::cache::Digest), String> {
    match kind {
        SourceKind::Lines => {
            let bytes = read_file(root, rel)?;
            let digest = crate::cache::digest::hash_bytes(&bytes);
            Ok((lines(rel, utf8(rel, bytes)?), digest))
        }
        SourceKind::Csv => {
            let bytes = read_file(root, rel)?;
            let digest = crate::cache::digest::hash_bytes(&bytes);
            Ok((csv_rows(rel, &bytes)?, digest))
        }
        SourceKind::Glob => {
            let paths = glob_matches(root, rel)?;
            let digest = crate::cache::digest::hash_bytes(paths.join("\n").as_bytes());
            let base = literal_base(rel);
            Ok((
                paths.into_iter().map(|p| glob_item(&base, p)).collect(),
                digest,
            ))
        }
    }
}

fn read_file(root: &Path, rel: &str) -> Result<Vec<u8>, String> {
    crate::text_files::read(&root.join(rel))
        .map_err(|e| format!("cannot read item file `{rel}`: {e}"))
}

fn utf8(rel: &str, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes)
        .map_err(|e| not_utf8(rel, &e.as_bytes()[..e.utf8_error().valid_up_to()]))
}

/// The error for an item file whose text is UTF-8 only as far as `good`: at its place.
fn not_utf8(rel: &str, good: &[u8]) -> String {
    let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
    format!("`{rel}:{line}:{col}`: item file is not UTF-8 (a byte there is no character)")
}

fn lines(rel: &str, text: String) -> Vec<Item> {
    let mut out = Vec::new();
    // A list saved as "UTF-8 with BOM" (Windows editors) starts with U+FEFF, which `trim`
    // keeps: the first URL would not parse. The CSV reader drops it the same way.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = url_name(line);
        let (stem, ext) = stem_ext(name);
        out.push(Item {
            key: name.to_string(),
            fields: vec![
                ("line".into(), line.to_string()),
                ("name".into(), name.to_string()),
                ("stem".into(), stem.to_string()),
                ("ext".into(), ext.to_string()),
            ],
            origin: format!("{rel}:{}", i + 1),
        });
    }
    out
}

/// The last `/`-separated segment, without `?query` and `#fragment`.
pub fn url_name(line: &str) -> &str {
    let end = line.find(['?', '#']).unwrap_or(line.len());
    let path = &line[..end];
    path.rsplit('/').next().unwrap_or(path)
}

/// `a.tar.gz` → (`a.tar`, `gz`); no extension (or only a leading dot) → (name, ``).
pub fn stem_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    }
}

fn csv_rows(rel: &str, bytes: &[u8]) -> Result<Vec<Item>, String> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(not_utf8(rel, &bytes[..e.valid_up_to()]));
    }
    super::csv_quotes::check(rel, bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("item file `{rel}`: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        return Err(format!(
            "item file `{rel}` has no header row (its first row names the fields)"
        ));
    }
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            return Err(format!("item file `{rel}`: column {} has no name", i + 1));
        }
        if headers[..i].contains(h) {
            return Err(format!("item file `{rel}`: column `{h}` appears twice"));
        }
    }
    let mut out = Vec::new();
    // Lines counted from the record's byte offset: the reader's own count is off by one
    // for every earlier `\r\n` row.
    let (mut counted_to, mut line) = (0usize, 1u64);
    for record in reader.records() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths {
                pos,
                expected_len,
                len,
            } => format!(
                "`{rel}:{}:1`: this row has {len} field{} where the header has {expected_len} \
                 (an empty field is nothing between two commas)",
                pos.as_ref().map_or(0, csv::Position::line),
                if *len == 1 { "" } else { "s" }
            ),
            _ => format!("item file `{rel}`: {e}"),
        })?;
        let mut at = record
            .position()
            .map_or(0, |p| p.byte() as usize)
            .min(bytes.len());
        // After a `\r\n` row the reader's offset is at the `\n`: the record starts beyond.
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        if at >= counted_to {
            line += bytes[counted_to..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = at;
        }
        let fields: Vec<(String, String)> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.clone(), v.to_string()))
            .collect();
        out.push(Item {
            key: fields.first().map(|(_, v)| v.clone()).unwrap_or_default(),
            fields,
            origin: format!("{rel}:{line}"),
        });
    }
    Ok(out)
}

/// The directories of `glob` before its first component with a metacharacter (`photos` for
/// `photos/**/*.jpg`; empty for `*.jpg`).
pub fn literal_base(glob: &str) -> String {
    let parts: Vec<&str> = glob.split('/').collect();
    let mut base = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() || part.contains(['*', '?', '[', '{', '\\']) {
            break;
        }
        base.push(*part);
    }
    base.join("/")
}

/// Compiles a `for_each` glob the way `inputs` globs are compiled (`*` stays in one directory).
pub fn compile(glob: &str) -> Result<globset::GlobMatcher, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("malformed glob `{glob}`: {e}"))
}

/// Every file below the glob's literal base that it matches, sorted; `.taskrun/` is never
/// walked and no symlink is followed, the literal directory's own included (an item is a
/// file of the workspace).
pub fn glob_matches(root: &Path, glob: &str) -> Result<Vec<String>, String> {
    let matcher = compile(glob)?;
    let base = literal_base(glob);
    if let Some(rel) = crate::model::RelPath::parse(&base)
        && let Ok(crate::workspace::Found::Escape(link)) =
            crate::workspace::Workspace::new(root).look(&rel)
    {
        return Err(format!(
            "glob `{glob}` would read outside the workspace through the symlink {}",
            link.display()
        ));
    }
    let start = root.join(&base);
    if !start.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(&start)
        .follow_links(false)
        // Not even the glob's literal directory: a link there may lead out of the workspace.
        .follow_root_links(false)
        .into_iter()
        .filter_entry(|e| {
            // Nor is an interrupted write's temp file an item.
            let temp = e
                .file_name()
                .as_encoded_bytes()
                .starts_with(crate::workspace::TEMP_PREFIX.as_bytes());
            (e.file_name() != ".taskrun" || e.depth() == 0) && !temp
        });
    for entry in walker {
        let entry = entry.map_err(|e| format!("reading glob `{glob}`: {e}"))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            return Err(format!(
                "glob `{glob}` matches a file whose name is not UTF-8: {}",
                rel.display()
            ));
        };
        if matcher.is_match(rel) {
            out.push(rel.to_string());
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn glob_item(base: &str, path: String) -> Item {
    let below = if base.is_empty() {
        path.as_str()
    } else {
        path.strip_prefix(base)
            .map_or(path.as_str(), |p| p.trim_start_matches('/'))
    };
    let key = below.to_string();
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (d.to_string(), n.to_string()),
        None => (".".to_string(), path.clone()),
    };
    let (stem, ext) = stem_ext(&name);
    let (stem, ext) = (stem.to_string(), ext.to_string());
    Item {
        key,
        origin: path.clone(),
        fields: vec![
            ("path".into(), path),
            ("name".into(), name),
            ("stem".into(), stem),
            ("ext".into(), ext),
            ("dir".into(), dir),
        ],
    }
}

/// What the items of a source were read from, for the manifest memo: the file's bytes, or
/// the sorted list of a glob's matches. Equal fingerprints mean equal items.
pub fn fingerprint(root: &Path, kind: SourceKind, rel: &str) -> Option<crate::cache::Digest> {
    let bytes = match kind {
        SourceKind::Lines | SourceKind::Csv => crate::text_files::read(&root.join(rel)).ok()?,
        SourceKind::Glob => glob_matches(root, rel).ok()?.join("\n").into_bytes(),
    };
    Some(crate::cache::digest::hash_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stems_and_extensions() {
        assert_eq!(url_name("http://h/a/b.csv?x=1#f"), "b.csv");
        assert_eq!(url_name("http://h/dir/"), "");
        assert_eq!(stem_ext("a.tar.gz"), ("a.tar", "gz"));
        assert_eq!(stem_ext("README"), ("README", ""));
        assert_eq!(stem_ext(".bashrc"), (".bashrc", ""));
        assert_eq!(literal_base("photos/**/*.jpg"), "photos");
        assert_eq!(literal_base("*.jpg"), "");
        assert_eq!(literal_base("a/b/c.txt"), "a/b");
    }

    #[test]
    fn lines_skip_blanks_and_comments_and_csv_keeps_quoted_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("u.txt"),
            "# list\n\n  http://h/a.csv \nhttp://h/b\n",
        )
        .unwrap();
        let (items, _) = read(dir.path(), SourceKind::Lines, "u.txt").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].key, "a.csv");
        assert_eq!(items[0].origin, "u.txt:3");
        assert_eq!(items[1].fields[3], ("ext".into(), "".into()));

        std::fs::write(
            dir.path().join("s.csv"),
            "id,note\nx,\"a, \"\"b\"\"\nc\"\ny,plain\n",
        )
        .unwrap();
        let (rows, _) = read(dir.path(), SourceKind::Csv, "s.csv").unwrap();
        assert_eq!(rows[0].fields[1].1, "a, \"b\"\nc");
        assert_eq!(rows[1].origin, "s.csv:4");
    }

    #[test]
    fn a_byte_order_mark_and_windows_line_ends_are_not_part_of_the_items() {
        let dir = tempfile::tempdir().unwrap();
        let bom = "\u{feff}";
        std::fs::write(
            dir.path().join("u.txt"),
            format!("{bom}http://h/a.csv\r\nhttp://h/b.csv\r\n"),
        )
        .unwrap();
        let (items, _) = read(dir.path(), SourceKind::Lines, "u.txt").unwrap();
        assert_eq!(items[0].fields[0], ("line".into(), "http://h/a.csv".into()));
        assert_eq!(items[1].key, "b.csv");
        std::fs::write(dir.path().join("s.csv"), format!("{bom}id,url\r\na,u\r\n")).unwrap();
        let (rows, _) = read(dir.path(), SourceKind::Csv, "s.csv").unwrap();
        assert_eq!(rows[0].fields[0], ("id".into(), "a".into()));
        assert_eq!(rows[0].key, "a");
    }

    #[test]
    fn a_glob_never_walks_through_a_link_out_of_the_workspace() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.jpg"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("p")).unwrap();
        let err = read(dir.path(), SourceKind::Glob, "p/*.jpg").unwrap_err();
        assert!(err.contains("outside the workspace"), "{err}");
        std::fs::create_dir(dir.path().join("q")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("q/in")).unwrap();
        let (items, _) = read(dir.path(), SourceKind::Glob, "q/**/*.jpg").unwrap();
        assert!(items.is_empty(), "{items:?}");
    }

    #[test]
    fn glob_items_are_sorted_with_keys_below_the_base() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["p/2024/b.jpg", "p/a.jpg", "p/x.png"] {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "x").unwrap();
        }
        let (items, _) = read(dir.path(), SourceKind::Glob, "p/**/*.jpg").unwrap();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["2024/b.jpg", "a.jpg"]);
        assert_eq!(items[1].fields[4], ("dir".into(), "p".into()));
    }
}
