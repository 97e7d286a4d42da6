//! The one HTTP client a run shares, and the per-host and per-destination locks around it.

use std::collections::HashMap;
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
/// Plain HTTP goes over hyper's client with a small read buffer (memory), HTTPS over reqwest
/// with rustls (certificates always verified, webpki roots); both honour proxies from
/// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (a proxied URL goes through reqwest), at most 10
/// redirects, `connect_timeout` and the default `User-Agent` (a task's own `User-Agent` header
/// replaces it). See [`super::transport`].
pub struct HttpClient {
    pub(crate) transport: Transport,
    max_per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    dests: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
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
        let mut dests = self.dests.lock().unwrap_or_else(PoisonError::into_inner);
        dests.entry(dest.to_path_buf()).or_default().clone()
    }
}
