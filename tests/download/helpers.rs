//! Shared set-up: a server, a temp workspace, a client, and a download definition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use taskrun::actions::download::{
    AttemptFailure, AttemptRequest, Downloaded, HttpClient, TransferProgress, attempt,
};
use taskrun::model::{Download, HttpConfig, RelPath};
use taskrun::template::Template;

use crate::fault_server::FaultServer;

/// A server, a workspace and a client with default `[http]` settings.
pub struct Env {
    pub server: FaultServer,
    pub dir: tempfile::TempDir,
    pub client: HttpClient,
}

impl Env {
    pub async fn new() -> Self {
        Self::with_http(HttpConfig::default()).await
    }

    pub async fn with_http(cfg: HttpConfig) -> Self {
        Self {
            server: FaultServer::start().await,
            dir: tempfile::tempdir().unwrap(),
            client: HttpClient::new(&cfg).unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A download of `paths` (mirrors on this server, in order) to `dest`.
    pub fn download(&self, paths: &[&str], dest: &str) -> Download {
        download(paths.iter().map(|p| self.server.url(p)).collect(), dest)
    }

    pub fn dest(&self, dest: &str) -> PathBuf {
        self.root().join(dest)
    }

    /// One attempt with no timeout.
    pub async fn attempt(&self, dl: &Download) -> Result<Downloaded, AttemptFailure> {
        self.attempt_with(dl, None).await
    }

    /// Starts an attempt and drops it once `bytes` have arrived, as Ctrl-C would (the
    /// server must stall after them: the attempt may not finish first).
    pub async fn drop_attempt_after(&self, dl: &Download, bytes: u64) {
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let progress = move |p: TransferProgress| {
            let _ = tx.send(p.received);
        };
        let req = AttemptRequest {
            download: dl,
            root: self.root(),
            attempt: 1,
            timeout: None,
            progress: &progress,
            keep_digest: true,
        };
        tokio::select! {
            r = attempt(&self.client, req) => panic!("the stalled download finished: {r:?}"),
            r = rx.wait_for(|n| *n >= bytes) => { r.unwrap(); }
        }
    }

    pub async fn attempt_with(
        &self,
        dl: &Download,
        timeout: Option<Duration>,
    ) -> Result<Downloaded, AttemptFailure> {
        self.attempt_on(&self.client, dl, timeout).await
    }

    /// One attempt through `client` (another run's client, say).
    pub async fn attempt_on(
        &self,
        client: &HttpClient,
        dl: &Download,
        timeout: Option<Duration>,
    ) -> Result<Downloaded, AttemptFailure> {
        let noop = |_: TransferProgress| {};
        attempt(
            client,
            AttemptRequest {
                download: dl,
                root: self.root(),
                attempt: 1,
                timeout,
                progress: &noop,
                keep_digest: true,
            },
        )
        .await
    }

    /// Every file under the workspace, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(self.root())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                e.path()
                    .strip_prefix(self.root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        out.sort();
        out
    }
}

pub fn download(urls: Vec<String>, dest: &str) -> Download {
    Download {
        urls: urls.into_iter().map(Template::literal).collect(),
        dest: RelPath::parse(dest).unwrap(),
        sha256: None,
        pin_source: Default::default(),
        headers: BTreeMap::new(),
        max_bytes: None,
        resume: true,
        revalidate: false,
    }
}

pub use crate::bytes::{body, sha};

/// The hex digest a download handed on for the cache (`keep_digest` is on in these helpers).
pub fn digest(done: &Downloaded) -> String {
    let written = done
        .written
        .as_ref()
        .expect("keep_digest hands the digest on");
    written.digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records every progress callback.
#[derive(Default)]
pub struct ProgressLog(pub Mutex<Vec<TransferProgress>>);

impl ProgressLog {
    pub fn record(&self, p: TransferProgress) {
        self.0.lock().unwrap().push(p);
    }
}
