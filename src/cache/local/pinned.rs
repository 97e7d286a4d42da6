//! A pinned download's cache entry without a record: its content is known before it runs,
//! so its blob in the store stands for the entry (SPEC §5: content-addressed downloads).

use std::time::SystemTime;

use crate::cache::Digest;
use crate::cache::digest::{from_hex, to_hex};
use crate::cache::key::{self, TaskKey, declared_outputs};
use crate::cache::record::{ActionRecord, OutputFile, RECORD_VERSION, record_parts};
use crate::cache::store::Store;
use crate::model::{Action, Task};

/// The pin of a download whose only output is its pinned `dest`: its content is known
/// before it runs, so its blob alone stands for a cache entry.
pub(super) fn pinned_blob(task: &Task) -> Option<Digest> {
    let Action::Download(d) = &task.action else {
        return None;
    };
    let pin = from_hex(d.sha256.as_deref()?)?;
    (declared_outputs(task) == [d.dest.clone()]).then_some(pin)
}

/// The record a pinned download's blob stands for (SPEC §5: content-addressed downloads).
pub(crate) fn pinned_record(task: &Task, key: &TaskKey, store: &Store) -> Option<ActionRecord> {
    let Action::Download(d) = &task.action else {
        return None;
    };
    let pin = pinned_blob(task)?;
    if !store.has_blob(&pin) {
        return None;
    }
    let size = std::fs::metadata(store.blob_path(&pin))
        .map(|m| m.len())
        .ok()?;
    let file = OutputFile {
        path: d.dest.as_str().to_string(),
        sha256: to_hex(&pin),
        size,
        mode: 0o644,
    };
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut rec = ActionRecord {
        format_version: RECORD_VERSION,
        key: key.hex(),
        task: task.name.clone(),
        parts: record_parts(&key.parts),
        outputs: vec![file],
        output_dirs: vec![],
        digest: String::new(),
        log: None,
        created: now.clone(),
        last_used: now,
        http: None,
        checksum: String::new(),
    };
    rec.digest = to_hex(&key::outputs_digest(&rec.output_entries()));
    Some(rec)
}
