//! The one HTTP client a run shares, and the per-host and per-destination locks around it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::transport::Transport;
use crate::model::HttpConfig;

/// Building the shared client failed (e.g. the TLS backend could not initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct DownloadError(String);

/// Shared by every download of a run: the connection pools, and a semaphore per host so that
/// no host sees more than `[http] max_per_host` requests at once.
///
/// HTTP and HTTPS go over hyper's client with a small read buffer (memory), HTTPS through
/// rustls (certificates always verified, against the webpki roots or `SSL_CERT_FILE`); a URL
/// an environment proxy claims (`HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`) goes through reqwest.
/// Both follow at most 10 redirects and honour `connect_timeout` and the default
/// `User-Agent` (a task's own `User-Agent` header replaces it). See `transport`.
pub struct HttpClient {
    pub(crate) transport: Transport,
    max_per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    dests: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Per destination directory, the `*.part` files in it when this run first downloaded
    /// there (`None`: it could not be listed).
    leftovers: Mutex<HashMap<PathBuf, Option<Arc<HashSet<OsString>>>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("max_per_host", &self.max_per_host)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client from `[http]`, for use from one thread (or any, with shared
    /// connections).
    pub fn new(cfg: &HttpConfig) -> Result<Self, DownloadError> {
        Self::with_lanes(cfg, 1)
    }

    /// Builds the client from `[http]` for `lanes` download threads, each with its own
    /// plain-HTTP connections (see [`super::enter_lane`]).
    pub fn with_lanes(cfg: &HttpConfig, lanes: usize) -> Result<Self, DownloadError> {
        let transport = Transport::new(cfg, lanes).map_err(DownloadError)?;
        Ok(Self {
            transport,
            max_per_host: cfg.max_per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
            dests: Mutex::new(HashMap::new()),
            leftovers: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a request slot on the URL's host (scheme, host and port).
    pub(crate) async fn host_permit(&self, url: &url::Url) -> Option<OwnedSemaphorePermit> {
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let sem = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            hosts
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
                .clone()
        };
        // The semaphore is never closed, so this only fails if that invariant breaks.
        sem.acquire_owned().await.ok()
    }

    /// The lock that serialises work on one `dest` and its `.part` files.
    ///
    /// A transfer keeps it until it has flushed the part file and its `.part.json` (also when
    /// its future is dropped), so the next attempt never reads a half-written resume state.
    pub(crate) fn dest_lock(&self, dest: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.dest_lock_first(dest).0
    }

    /// [`Self::dest_lock`], and whether this is the run's first request for `dest`.
    pub(crate) fn dest_lock_first(&self, dest: &Path) -> (Arc<tokio::sync::Mutex<()>>, bool) {
        let mut dests = self.dests.lock().unwrap_or_else(PoisonError::into_inner);
        match dests.get(dest) {
            Some(lock) => (lock.clone(), false),
            None => {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                dests.insert(dest.to_path_buf(), lock.clone());
                (lock, true)
            }
        }
    }

    /// Whether `<dest>.part` may exist, known without a `stat` on the run's `first` request
    /// for `dest`: a part file left by an earlier run was in the directory's listing, taken
    /// once per run (one read of the directory instead of a failed `stat` per download);
    /// after that only this run's own transfers of `dest` can have made one.
    pub(crate) fn may_have_part(&self, dest: &Path, first: bool) -> bool {
        let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
            return true;
        };
        if !first {
            return true;
        }
        let mut leftovers = self
            .leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let listed = leftovers
            .entry(dir.to_path_buf())
            .or_insert_with(|| list_parts(dir));
        let Some(parts) = listed else {
            return true;
        };
        let mut part = name.to_os_string();
        part.push(".part");
        parts.contains(&part)
    }
}

/// The names ending in `.part` in `dir`; empty when it does not exist, `None` when it cannot
/// be read.
fn list_parts(dir: &Path) -> Option<Arc<HashSet<OsString>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Arc::default()),
        Err(_) => return None,
    };
    let mut parts = HashSet::new();
    for entry in entries {
        let name = entry.ok()?.file_name();
        if name.as_bytes().ends_with(b".part") {
            parts.insert(name);
        }
    }
    Some(Arc::new(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part file left in the directory before the run is found on the first request for its
    /// destination; for others the listing answers "none" (no `stat`); a later request for the
    /// same destination always looks.
    #[test]
    fn leftover_parts_come_from_one_listing_per_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.bin.part"), b"half").unwrap();
        let client = HttpClient::new(&HttpConfig::default()).unwrap();
        let (a, b) = (d.path().join("a.bin"), d.path().join("b.bin"));
        let (_, first) = client.dest_lock_first(&a);
        assert!(first);
        assert!(client.may_have_part(&a, first));
        let (_, first) = client.dest_lock_first(&b);
        assert!(!client.may_have_part(&b, first));
        // b's own transfer may have left one since: its next request looks.
        let (_, first) = client.dest_lock_first(&b);
        assert!(!first);
        assert!(client.may_have_part(&b, first));
        // A directory that does not exist has no leftovers.
        let c = d.path().join("new/c.bin");
        assert!(!client.may_have_part(&c, true));
    }
}
