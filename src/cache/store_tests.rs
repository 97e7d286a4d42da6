use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::cache::record::{OutputFile, RECORD_VERSION};

fn record(key: &str) -> ActionRecord {
    ActionRecord {
        format_version: RECORD_VERSION,
        key: key.into(),
        task: "t".into(),
        parts: vec![],
        outputs: vec![OutputFile {
            path: "o".into(),
            sha256: "a".repeat(64),
            size: 1,
            mode: 0o644,
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
fn blobs_round_trip_and_keep_mode() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("cache"), false);
    let src = dir.path().join("src");
    fs::write(&src, b"payload").unwrap();
    let (d, size) = store.put_file(&src, None).unwrap();
    assert_eq!((d, size), (hash_bytes(b"payload"), 7));
    let hex = to_hex(&d);
    assert!(
        dir.path()
            .join("cache/cas")
            .join(&hex[..2])
            .join(&hex)
            .is_file()
    );
    let dest = dir.path().join("x/y/restored");
    let ws = crate::workspace::Workspace::new(dir.path());
    let out = ws.open_dir(Some("x/y"), true).unwrap();
    store.restore_blob(&d, &out, "restored", 0o6755).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"payload");
    assert_eq!(
        fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
        0o755,
        "no setuid or setgid bit"
    );
    let temps = fs::read_dir(dir.path().join("x/y")).unwrap().count();
    assert_eq!(temps, 1, "no temp file beside the restored one");
    assert_eq!(store.read_blob(&d).unwrap(), Some(b"payload".to_vec()));
}

#[test]
fn corrupt_or_truncated_blob_is_removed_and_never_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), false);
    let d = store.put_bytes(b"good content").unwrap();
    fs::write(store.blob_path(&d), b"good cont").unwrap();
    let dest = dir.path().join("out");
    fs::write(&dest, b"previous").unwrap();
    let root = crate::workspace::Workspace::new(dir.path())
        .open_dir(None, false)
        .unwrap();
    assert!(matches!(
        store.restore_blob(&d, &root, "out", 0o644),
        Err(BlobError::Corrupt(_))
    ));
    assert_eq!(
        fs::read(&dest).unwrap(),
        b"previous",
        "destination untouched"
    );
    assert!(!store.has_blob(&d), "corrupt blob removed");

    let d2 = store.put_bytes(b"log").unwrap();
    fs::write(store.blob_path(&d2), b"LOG").unwrap();
    assert_eq!(store.read_blob(&d2).unwrap(), None);
    assert!(!store.has_blob(&d2));
}

#[test]
fn records_round_trip_and_corrupt_ones_become_misses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), false);
    let key = "c".repeat(64);
    let mut r = record(&key);
    store.write_record(&mut r).unwrap();
    assert_eq!(store.read_record(&key), Some(r));
    assert_eq!(store.record_files().len(), 1);

    let path = store.record_path(&key);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(store.read_record(&key), None);
    assert!(!path.exists(), "truncated record removed");
}

#[test]
fn read_only_store_reports_corruption_without_deleting() {
    let dir = tempfile::tempdir().unwrap();
    let rw = Store::new(dir.path(), false);
    let d = rw.put_bytes(b"abc").unwrap();
    fs::write(rw.blob_path(&d), b"xyz").unwrap();
    let ro = Store::new(dir.path(), true);
    assert_eq!(ro.read_blob(&d).unwrap(), None);
    assert!(ro.has_blob(&d));
}
