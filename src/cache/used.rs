//! When each entry of a journal was last used, exact to the run, for `cache gc`'s LRU order.
//!
//! A record's own `last_used` is rewritten at most hourly (a no-op rerun must not rewrite
//! every record), so entries used within the same hour would tie. Instead each run that used
//! the cache writes one small file beside its journal, `index/<id>.used`: the run's time,
//! which every entry of the journal it used shares, and the earlier times of the entries it
//! did not use. A full no-op rerun writes the time alone; gc reads it for every entry.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sealed;

const MAGIC: &[u8] = b"taskrun used v1\n";

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Used {
    /// Wall-clock ns of the run that wrote it.
    run_ns: i64,
    /// Entries (by key) the run did not use: when they were last used, 0 when unknown.
    older: BTreeMap<String, i64>,
}

/// The stamp beside the journal at `journal`.
pub fn path_for(journal: &Path) -> PathBuf {
    journal.with_extension("used")
}

/// Writes the stamp for a run at `now_ns` that used the keys in `used`; `keys` are the
/// journal's entries as saved. Nothing is written when the run used nothing.
pub fn record<'k>(
    journal: &Path,
    keys: impl IntoIterator<Item = &'k str>,
    used: &FxHashSet<String>,
    now_ns: i64,
) -> io::Result<()> {
    if used.is_empty() {
        return Ok(());
    }
    let path = path_for(journal);
    let old: Option<Used> = sealed::read(&path, MAGIC).ok().flatten();
    let older = keys
        .into_iter()
        .filter(|k| !used.contains(*k))
        .map(|k| {
            // Unchanged since the last run: it was used then, or earlier still.
            let t = old
                .as_ref()
                .map_or(0, |o| o.older.get(k).copied().unwrap_or(o.run_ns));
            (k.to_string(), t)
        })
        .collect();
    sealed::write(
        &path,
        MAGIC,
        &Used {
            run_ns: now_ns,
            older,
        },
    )
}

/// When each key of the journal at `journal` (whose entries' keys are `keys`) was last
/// used, as far as its stamp knows.
pub fn times(journal: &Path, keys: &[String]) -> Vec<(String, i64)> {
    let Ok(Some(used)) = sealed::read::<Used>(&path_for(journal), MAGIC) else {
        return Vec::new();
    };
    keys.iter()
        .map(|k| (k.clone(), used.older.get(k).copied().unwrap_or(used.run_ns)))
        .filter(|(_, t)| *t > 0)
        .collect()
}
