//! [`GrpcCache`]: the REAPI ActionCache and CAS as the shared tier behind the local store
//! (`[cache] remote = "grpc://..."`, SPEC §11 "The gRPC cache without remote execution").
//!
//! How entries map onto the ActionCache is [`super::grpc_entry`]'s business; this file moves
//! them. The rules are the HTTP remote's ([`super::remote`]): local first, every digest
//! verified (records by their checksum and against their ActionResult, blobs by sha256 as
//! they stream into the local store), and a remote that is down, refuses us or times out
//! costs one warning, after which it is disabled for the rest of the run. A bad entry is a
//! miss with a warning; the remote stays on.
//!
//! **Blocking callers, async client.** The cache's callers are plain threads (the lookup and
//! upload threads, or `spawn_blocking`), while the REAPI client is async (tonic). The backend
//! owns a small multi-threaded tokio runtime (two threads, created with the connection on
//! first use) that drives the connection; a caller spawns its call onto it and waits on a
//! channel. That never panics whatever runtime context the caller has, and the calling thread
//! is never one of a runtime's async workers. The runtime is shut down in the background when
//! the cache is dropped, which is safe anywhere, an async thread included.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Digest as Sha256;
use super::grpc_entry::{
    CacheAction, RECORD_PATH, action_result, cache_action, record_blob, record_from_result,
};
use super::record::ActionRecord;
use super::remote_health::{Failure, Health};
use super::store::{BlobError, Store};
use crate::model::{CacheConfig, GrpcUrl, RemoteCacheUrl};
use crate::reapi::{
    BlobSource, Capabilities, Client, ClientOptions, Digest, ErrorKind, ReapiError, UploadBlob,
};
use crate::template::Template;

/// What a batch entry costs beyond its data (the client's own figure).
const BATCH_ENTRY_OVERHEAD: u64 = 128;

/// Limits and permissions for one gRPC remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcOptions {
    /// TCP + TLS connect limit: short, so a dead host costs seconds, once.
    pub connect_timeout: Duration,
    /// Limit on one call; a transfer gets one more second per MiB it moves.
    pub timeout: Duration,
    /// Upload results (`[cache] remote_write`).
    pub write: bool,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            write: true,
        }
    }
}

/// A REAPI remote cache for one run.
pub struct GrpcCache {
    url: GrpcUrl,
    instance: String,
    headers: BTreeMap<String, Template>,
    options: GrpcOptions,
    /// The runtime and connection, made on first use; `None` when that failed.
    conn: OnceLock<Option<Conn>>,
    /// On until the first failure.
    health: Health,
    /// Set when the server says it takes no ActionCache updates.
    no_updates: AtomicBool,
}

impl std::fmt::Debug for GrpcCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcCache")
            .field("url", &self.url.as_str())
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The live connection.
struct Conn {
    rt: tokio::runtime::Runtime,
    client: Client,
    caps: Capabilities,
}

impl Failure {
    /// Sorts a client error; `writing`: a request the server calls malformed refuses every
    /// upload alike (disable), while a malformed answer spoils only the entry read.
    fn of(e: ReapiError, writing: bool) -> Self {
        match (e.kind(), &e) {
            (_, ReapiError::BlobNotFound(_)) => Failure::Absent,
            (ErrorKind::Cluster | ErrorKind::Action | ErrorKind::Cancelled, _) => {
                Failure::Unreachable(e.to_string())
            }
            (ErrorKind::Config, _) => Failure::Refused(e.to_string()),
            (ErrorKind::Protocol, _) if writing => Failure::Refused(e.to_string()),
            (ErrorKind::Protocol, _) => Failure::Corrupt(e.to_string()),
            (ErrorKind::Local, _) => Failure::Local(e.to_string()),
        }
    }
}

/// Runs `fut` on `rt` within `limit` and waits for it from this (blocking) thread.
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    limit: Duration,
    writing: bool,
    fut: impl Future<Output = Result<T, ReapiError>> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(tokio::time::timeout(limit, fut).await);
    });
    match rx.recv() {
        Ok(Ok(r)) => r.map_err(|e| Failure::of(e, writing)),
        Ok(Err(_)) => Err(Failure::Unreachable(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        ))),
        Err(_) => Err(Failure::Unreachable("the gRPC runtime stopped".into())),
    }
}

/// A transfer's limit: the call's, plus a second per MiB.
fn transfer_limit(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes >> 20)
}

/// The blobs an ActionResult names besides the record: output files, then stdout.
fn named_blobs(result: &crate::reapi::proto::ActionResult) -> impl Iterator<Item = Digest> + '_ {
    result
        .output_files
        .iter()
        .filter(|f| f.path != RECORD_PATH)
        .filter_map(|f| f.digest.as_ref())
        .chain(result.stdout_digest.as_ref())
        .filter_map(|d| Digest::from_proto(d).ok())
}

impl GrpcCache {
    /// A client for `url` (nothing is contacted until the first lookup or upload).
    pub fn new(
        url: GrpcUrl,
        instance: String,
        headers: BTreeMap<String, Template>,
        options: GrpcOptions,
    ) -> Self {
        Self {
            health: Health::new(url.as_str().to_string()),
            url,
            instance,
            headers,
            options,
            conn: OnceLock::new(),
            no_updates: AtomicBool::new(false),
        }
    }

    /// The gRPC remote configured by `[cache]` / `TASKRUN_REMOTE_CACHE`, if that is the kind.
    pub fn from_config(config: &CacheConfig) -> Option<Self> {
        let Some(RemoteCacheUrl::Grpc(url)) = &config.remote else {
            return None;
        };
        Some(Self::new(
            url.clone(),
            config.instance.clone(),
            config.headers.clone(),
            GrpcOptions {
                write: config.remote_write,
                ..GrpcOptions::default()
            },
        ))
    }

    /// The endpoint (it never holds credentials: those go in `[cache] headers`).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// False once a failure has disabled the remote for the rest of the run.
    pub fn is_enabled(&self) -> bool {
        self.health.is_enabled()
    }

    /// Whether results are uploaded (writing on, the server takes updates, still enabled).
    pub fn writes(&self) -> bool {
        self.options.write && !self.no_updates.load(Ordering::Relaxed) && self.is_enabled()
    }

    fn settle<T>(&self, what: &str, r: Result<Option<T>, Failure>) -> Option<T> {
        self.health.settle(what, r)
    }

    /// The connection, made on the first call (one attempt per run).
    fn conn(&self) -> Result<&Conn, Failure> {
        self.conn
            .get_or_init(|| self.connect())
            .as_ref()
            .ok_or(Failure::Absent)
    }

    fn connect(&self) -> Option<Conn> {
        let headers: Result<Vec<(String, String)>, _> = self
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.expose()?)))
            .collect();
        let headers = match headers {
            Ok(h) => h,
            Err(e @ crate::template::MissingSecret(_)) => {
                self.health
                    .disable("cannot be used", &format!("a header's {e}"));
                return None;
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("taskrun-grpc-cache")
            .enable_all()
            .build();
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => {
                self.health
                    .disable("cannot be used", &format!("starting its runtime: {e}"));
                return None;
            }
        };
        let options = ClientOptions {
            instance: self.instance.clone(),
            headers,
            connect_timeout: Some(self.options.connect_timeout),
            tls_roots: None,
            open_streams: None,
        };
        let url = self.url.as_str().to_string();
        let connected = run_on(&rt, self.options.timeout, false, async move {
            let client = Client::connect(&url, &options).await?;
            let caps = client.capabilities().await?;
            caps.check_cache()?;
            Ok((client, caps))
        });
        match connected {
            Ok((client, caps)) => {
                if self.options.write && !caps.update_enabled {
                    self.no_updates.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        "remote cache {} takes no uploads (its ActionCache says update_enabled is false); only reading from it",
                        self.url
                    );
                }
                Some(Conn { rt, client, caps })
            }
            Err(f) => {
                rt.shutdown_background();
                let (what, why) = match f {
                    Failure::Refused(why) => ("cannot be used", why),
                    Failure::Unreachable(why) | Failure::Corrupt(why) | Failure::Local(why) => {
                        ("unreachable", why)
                    }
                    Failure::Absent => ("unreachable", "no answer".into()),
                };
                self.health.disable(what, &why);
                None
            }
        }
    }

    /// The verified action record for `key`, or `None` (absent, corrupt, or remote down).
    ///
    /// Two round trips: GetActionResult, then one BatchReadBlobs for the record together with
    /// the small blobs the result names that `store` lacks (as many as fit in one batch),
    /// which saves the hit a third. Those blobs are written to `store` (verified) only once
    /// the record checks out against the result; the caller's declared-outputs check comes
    /// after, but a blob in the store is inert until an accepted record names it.
    pub fn get_record(&self, store: &Store, key: &str) -> Option<ActionRecord> {
        if !self.is_enabled() {
            return None;
        }
        let r = (|| {
            let conn = self.conn()?;
            let client = conn.client.clone();
            let action = cache_action(key).digest;
            let result = run_on(&conn.rt, self.options.timeout, false, async move {
                client
                    .get_action_result_inlining(&action, &[RECORD_PATH])
                    .await
            })?;
            let Some(result) = result else {
                return Ok(None);
            };
            let (d, inlined) = record_blob(&result).map_err(Failure::Corrupt)?;
            let inlined =
                (!inlined.is_empty() && Digest::of_bytes(inlined) == d).then(|| inlined.to_vec());
            let mut want = Vec::new();
            let mut bytes = 0;
            if inlined.is_none() {
                want.push(d);
                bytes += d.size + BATCH_ENTRY_OVERHEAD;
            }
            for b in named_blobs(&result) {
                let cost = b.size + BATCH_ENTRY_OVERHEAD;
                if b.is_empty() || want.contains(&b) || store.has_blob(&b.hash) {
                    continue;
                }
                if bytes + cost <= conn.caps.max_batch_bytes {
                    want.push(b);
                    bytes += cost;
                }
            }
            let client = conn.client.clone();
            let limit = transfer_limit(self.options.timeout, bytes);
            let mut got = match want.is_empty() {
                true => Vec::new(),
                false => run_on(&conn.rt, limit, false, async move {
                    client.batch_read(&want).await
                })?,
            };
            let record_bytes = match inlined {
                Some(b) => b,
                None => match got.iter().position(|(g, _)| *g == d) {
                    Some(i) => got.swap_remove(i).1,
                    None => return Err(Failure::Absent),
                },
            };
            let rec = record_from_result(key, &result, &record_bytes).map_err(Failure::Corrupt)?;
            for (b, data) in got {
                store
                    .put_verified(&mut data.as_slice(), &b.hash, Some(b.size))
                    .map_err(|e| Failure::Local(e.to_string()))?;
            }
            Ok(Some(rec))
        })();
        self.settle(&format!("for key {key}"), r)
    }

    /// Copies `blobs` (sha256 and size) from the CAS into `store`, each verified: the small
    /// ones in batches under the server's limit, the large ones streamed into a temp file in
    /// the store (memory stays flat). True when all are there now.
    pub fn fetch_blobs(&self, store: &Store, blobs: &[(Sha256, u64)]) -> bool {
        if !self.is_enabled() {
            return false;
        }
        let r = (|| {
            let conn = self.conn()?;
            let limit = conn.caps.max_batch_bytes;
            let (small, large): (Vec<Digest>, Vec<Digest>) = blobs
                .iter()
                .map(|&(hash, size)| Digest { hash, size })
                .partition(|d| d.size + BATCH_ENTRY_OVERHEAD <= limit);
            let mut group: Vec<Digest> = Vec::new();
            let mut bytes = 0;
            for d in small {
                let cost = d.size + BATCH_ENTRY_OVERHEAD;
                if !group.is_empty() && bytes + cost > limit {
                    self.batch_into(conn, store, std::mem::take(&mut group), bytes)?;
                    bytes = 0;
                }
                group.push(d);
                bytes += cost;
            }
            if !group.is_empty() {
                self.batch_into(conn, store, group, bytes)?;
            }
            for d in large {
                self.stream_into(conn, store, d)?;
            }
            Ok(Some(()))
        })();
        self.settle("blobs", r).is_some()
    }

    /// One BatchReadBlobs call (at most the batch limit in memory), stored blob by blob.
    fn batch_into(
        &self,
        conn: &Conn,
        store: &Store,
        group: Vec<Digest>,
        bytes: u64,
    ) -> Result<(), Failure> {
        let client = conn.client.clone();
        let limit = transfer_limit(self.options.timeout, bytes);
        let got = run_on(&conn.rt, limit, false, async move {
            client.batch_read(&group).await
        })?;
        for (d, data) in got {
            match store.put_verified(&mut data.as_slice(), &d.hash, Some(d.size)) {
                Ok(_) => {}
                Err(BlobError::Corrupt(why)) => return Err(Failure::Corrupt(why)),
                Err(e) => return Err(Failure::Local(e.to_string())),
            }
        }
        Ok(())
    }

    /// One blob streamed (ByteStream.Read) into a store temp file, verified, then moved in.
    fn stream_into(&self, conn: &Conn, store: &Store, d: Digest) -> Result<(), Failure> {
        let local = |e: std::io::Error| Failure::Local(e.to_string());
        let tmp = store.blob_temp().map_err(local)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(local)?);
        let path = tmp.path().to_path_buf();
        let client = conn.client.clone();
        let limit = transfer_limit(self.options.timeout, d.size);
        run_on(&conn.rt, limit, false, async move {
            client.fetch_into(&d, &mut file, &path).await
        })?;
        store.adopt_verified(tmp, &d.hash).map_err(local)
    }

    /// Uploads a stored entry: the blobs the CAS lacks (FindMissingBlobs first), the Action
    /// and Command that name it, then the ActionResult (UpdateActionResult), so the
    /// ActionCache never points at blobs it lacks. Does nothing unless writing is on; a
    /// failure disables the remote (one warning), never the task.
    pub fn upload(&self, store: &Store, record: &ActionRecord) {
        if !self.writes() {
            return;
        }
        let r = (|| {
            let conn = self.conn()?;
            if !self.writes() {
                return Ok(None);
            }
            let bytes = serde_json::to_vec(record)
                .map_err(|e| Failure::Local(format!("serialising the record: {e}")))?;
            let record_digest = Digest::of_bytes(&bytes);
            let result = action_result(record, record_digest).map_err(Failure::Local)?;
            let CacheAction {
                digest: action,
                command,
                action: action_bytes,
            } = cache_action(&record.key);
            let mut blobs = vec![
                UploadBlob {
                    digest: command.0,
                    source: BlobSource::Bytes(command.1),
                },
                UploadBlob {
                    digest: action,
                    source: BlobSource::Bytes(action_bytes),
                },
                UploadBlob {
                    digest: record_digest,
                    source: BlobSource::Bytes(bytes),
                },
            ];
            let stored = record
                .outputs
                .iter()
                .map(|o| (o.sha256.as_str(), o.size))
                .chain(record.log.iter().map(|l| (l.sha256.as_str(), l.size)));
            let mut total = 0;
            for (hex, size) in stored {
                let hash = super::digest::from_hex(hex)
                    .ok_or_else(|| Failure::Local(format!("bad digest {hex}")))?;
                total += size;
                blobs.push(UploadBlob {
                    digest: Digest { hash, size },
                    source: BlobSource::File(store.blob_path(&hash)),
                });
            }
            let client = conn.client.clone();
            let limit = transfer_limit(self.options.timeout, total);
            run_on(&conn.rt, limit, true, async move {
                client.upload_missing(&blobs).await?;
                client.update_action_result(&action, result).await?;
                Ok(())
            })
            .map(Some)
        })();
        let _ = self.settle(&format!("for key {}", record.key), r);
    }
}

impl Drop for GrpcCache {
    fn drop(&mut self) {
        // Never blocks, so it is safe on an async thread too (the run loop may drop the
        // cache there); in-flight calls are abandoned, as the run is over.
        if let Some(Some(conn)) = self.conn.take() {
            conn.rt.shutdown_background();
        }
    }
}
