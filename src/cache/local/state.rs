//! The cache dir's state files (stat records, the manifest's journal): read when the cache
//! opens, or ahead of it while the manifest is still loading ([`Prefetch`]).

use std::path::{Path, PathBuf};

use crate::cache::journal::Journal;
use crate::cache::stat::StatCache;

/// A cache dir's state files, read on another thread while the manifest is still loading:
/// decoding them is a sizeable part of a no-op rerun.
#[derive(Debug)]
pub struct Prefetch {
    dir: PathBuf,
    manifest: PathBuf,
    loading: std::thread::JoinHandle<(StatCache, Journal)>,
}

impl Prefetch {
    /// Starts reading `dir`'s state files for the manifest at `manifest` (as given on the
    /// command line); `None` when no thread could be started.
    pub fn start(dir: PathBuf, manifest: PathBuf) -> Option<Self> {
        let (d, m) = (dir.clone(), manifest.clone());
        let loading = std::thread::Builder::new()
            .name("taskrun-prefetch".into())
            .spawn(move || read_both(&d, &m, false))
            .ok()?;
        Some(Self {
            dir,
            manifest,
            loading,
        })
    }
}

/// The state of the cache at `dir` for the manifest at `manifest`: what `prefetch` read when
/// it is for these and each file is still the one it read, else read now.
pub(super) fn read(
    dir: &Path,
    manifest: &Path,
    read_only: bool,
    prefetch: Option<Prefetch>,
) -> (StatCache, Journal) {
    let prefetched = prefetch
        .filter(|p| !read_only && p.dir == dir && p.manifest == manifest)
        .and_then(|p| p.loading.join().ok());
    match prefetched {
        Some((stats, journal)) => (
            if stats.is_current() {
                stats
            } else {
                StatCache::open(dir, false)
            },
            if journal.is_current() {
                journal
            } else {
                Journal::open(dir, manifest, false)
            },
        ),
        None => read_both(dir, manifest, read_only),
    }
}

/// Reads the stat records and the journal, on two threads (the stat records take longest).
fn read_both(dir: &Path, manifest: &Path, read_only: bool) -> (StatCache, Journal) {
    std::thread::scope(|s| {
        let stats = std::thread::Builder::new()
            .name("taskrun-stat".into())
            .spawn_scoped(s, || StatCache::open(dir, read_only));
        let journal = Journal::open(dir, manifest, read_only);
        let stats = match stats.map(|h| h.join()) {
            Ok(Ok(stats)) => stats,
            _ => StatCache::open(dir, read_only),
        };
        (stats, journal)
    })
}
