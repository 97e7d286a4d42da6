//! Mangled real manifests, random task tables, and fan-out item files (see `props`).

use std::path::Path;

use proptest::prelude::*;

use super::{cases, load_at, manifest};

/// The repository's own manifests, to mangle.
fn real_manifests() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One edit at a position given as a fraction of the length.
#[derive(Debug, Clone)]
enum Edit {
    Delete(f64, usize),
    Insert(f64, Vec<u8>),
    Replace(f64, Vec<u8>),
    /// Duplicate a line (a duplicate key or table).
    Repeat(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..6),
        prop::sample::select(vec![
            b"[".to_vec(),
            b"]".to_vec(),
            b"\"".to_vec(),
            b"=".to_vec(),
            b"${".to_vec(),
            b"}".to_vec(),
            b"\n".to_vec(),
            b"[tasks.x]\n".to_vec(),
            b"'''".to_vec(),
            b"\\u{".to_vec(),
            "\u{e9}\u{1F600}".as_bytes().to_vec(),
        ]),
    ];
    prop_oneof![
        (0.0..1.0f64, 1usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0.0..1.0f64, bytes.clone()).prop_map(|(at, b)| Edit::Insert(at, b)),
        (0.0..1.0f64, bytes).prop_map(|(at, b)| Edit::Replace(at, b)),
        (0.0..1.0f64).prop_map(Edit::Repeat),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
    for e in edits {
        match e {
            Edit::Delete(f, n) => {
                let i = at(*f, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Insert(f, new) => {
                let i = at(*f, b.len());
                b.splice(i..i, new.iter().copied());
            }
            Edit::Replace(f, new) => {
                let i = at(*f, b.len());
                let j = (i + new.len()).min(b.len());
                b.splice(i..j, new.iter().copied());
            }
            Edit::Repeat(f) => {
                let i = at(*f, b.len());
                let start = b[..i]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// A fan-out task over `source` (`lines = "items.txt"`, `csv = ...`, `glob = ...`).
fn fan_out(source: &str) -> String {
    format!(
        "[tasks.each]\nfor_each = {{ {source} }}\noutputs = [\"out/${{item.key}}.txt\"]\n\
         run = [\"echo\", \"${{item.key}}\"]\n"
    )
}

/// A CSV-ish file: random fields (quotes, commas, carriage returns, bytes) under a header.
fn csv_text() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "[a-z0-9]{0,6}".prop_map(String::into_bytes),
        Just(b"\"".to_vec()),
        Just(b"\"a,b\"".to_vec()),
        Just(b"\"x\"\"y\"".to_vec()),
        Just(b"\r".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    let row = prop::collection::vec(field, 0..5).prop_map(|f| {
        let mut r = f.join(&b',');
        r.push(b'\n');
        r
    });
    let head = prop::sample::select(vec![
        b"id,url\n".to_vec(),
        b"id\n".to_vec(),
        b"key,id,id\n".to_vec(),
        b"\n".to_vec(),
        Vec::new(),
    ]);
    (head, prop::collection::vec(row, 0..8)).prop_map(|(mut out, rows)| {
        rows.into_iter().for_each(|r| out.extend(r));
        out
    })
}

/// File names of letters, shell and glob metacharacters, and non-UTF-8 bytes.
fn file_name() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"abz09._-%$ {}[]*?#'\"\\".to_vec()),
        1 => 0x80u8..=0xff,
    ];
    prop::collection::vec(byte, 1..12)
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn mangled_real_manifests_never_panic_and_every_problem_has_a_place(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let all = real_manifests();
        prop_assume!(!all.is_empty());
        let source: &String = which.get(&all);
        load_at(Path::new("fuzz.toml"), apply(source, &edits));
    }

    #[test]
    fn random_task_tables_report_every_problem_with_a_place(text in manifest()) {
        load_at(Path::new("fuzz.toml"), text);
    }

    #[test]
    fn random_lines_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("items.txt"), &bytes).unwrap();
        load_at(&dir.path().join("taskrun.toml"), fan_out("lines = \"items.txt\""));
    }

    #[test]
    fn random_csv_files_never_panic(bytes in csv_text()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("items.csv"), &bytes).unwrap();
        load_at(&dir.path().join("taskrun.toml"), fan_out("csv = \"items.csv\""));
    }

    #[test]
    fn globs_over_random_file_names_never_panic(names in prop::collection::vec(file_name(), 1..6)) {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        for n in &names {
            if n.as_slice() == b"." || n.as_slice() == b".." {
                continue;
            }
            let name = std::ffi::OsStr::from_bytes(n);
            let _ = std::fs::write(dir.path().join("in").join(name), b"x");
        }
        load_at(&dir.path().join("taskrun.toml"), fan_out("glob = \"in/*\""));
    }
}
