//! [`RemoteBackend`]: the one seam between the local cache and its shared tier, so the
//! local cache asks for records and blobs without knowing which protocol carries them: the
//! Bazel HTTP cache protocol ([`RemoteCache`], SPEC §5) or the REAPI ActionCache and CAS
//! ([`GrpcCache`], SPEC §11). Both follow the same rules: every answer verified, a failing
//! remote one warning and then off for the run, uploads only with `remote_write`.

use super::Digest;
use super::grpc::GrpcCache;
use super::record::ActionRecord;
use super::remote::RemoteCache;
use super::store::Store;
use crate::model::CacheConfig;

/// The remote tier of one run.
#[derive(Debug)]
pub enum RemoteBackend {
    /// `http(s)://`: `ac/<key>` and `cas/<sha256>`.
    Http(RemoteCache),
    /// `grpc(s)://`: the REAPI ActionCache and CAS (boxed: it holds its runtime).
    Grpc(Box<GrpcCache>),
}

impl From<RemoteCache> for RemoteBackend {
    fn from(r: RemoteCache) -> Self {
        Self::Http(r)
    }
}

impl From<GrpcCache> for RemoteBackend {
    fn from(r: GrpcCache) -> Self {
        Self::Grpc(Box::new(r))
    }
}

impl RemoteBackend {
    /// The remote `[cache] remote` / `TASKRUN_REMOTE_CACHE` configures, if any.
    pub fn from_config(config: &CacheConfig) -> Option<Self> {
        RemoteCache::from_config(config)
            .map(Self::Http)
            .or_else(|| GrpcCache::from_config(config).map(Self::from))
    }

    /// The remote's URL without credentials (for messages).
    pub fn url(&self) -> &str {
        match self {
            Self::Http(r) => r.url(),
            Self::Grpc(r) => r.url(),
        }
    }

    /// False once a failure has disabled the remote for the rest of the run.
    pub fn is_enabled(&self) -> bool {
        match self {
            Self::Http(r) => r.is_enabled(),
            Self::Grpc(r) => r.is_enabled(),
        }
    }

    /// Whether results are uploaded (and the remote is still enabled).
    pub fn writes(&self) -> bool {
        match self {
            Self::Http(r) => r.writes(),
            Self::Grpc(r) => r.writes(),
        }
    }

    /// Whether a blob can be asked for by its sha256 alone, which a pinned download needs
    /// (its size is not known before it is fetched). A REAPI CAS names blobs by hash *and*
    /// size, so there a pinned download is looked up by its record like any task.
    pub fn fetches_by_hash(&self) -> bool {
        matches!(self, Self::Http(_))
    }

    /// Copies blob `d` into `store`, verified, knowing at most its size bound (see
    /// [`Self::fetches_by_hash`]). True when it is now there.
    pub fn fetch_blob_by_hash(&self, store: &Store, d: &Digest, max: Option<u64>) -> bool {
        match self {
            Self::Http(r) => r.fetch_blob(store, d, max),
            Self::Grpc(_) => false,
        }
    }

    /// The verified record for `key`, or `None` (absent, corrupt, or remote down). A remote
    /// may put some of the record's blobs into `store` on the way (verified).
    pub fn get_record(&self, store: &Store, key: &str) -> Option<ActionRecord> {
        match self {
            Self::Http(r) => r.get_record(key),
            Self::Grpc(r) => r.get_record(store, key),
        }
    }

    /// Copies `blobs` (sha256, size) into `store`, each verified. True when all are there.
    pub fn fetch_blobs(&self, store: &Store, blobs: &[(Digest, u64)]) -> bool {
        match self {
            Self::Http(r) => blobs
                .iter()
                .all(|(d, size)| r.fetch_blob(store, d, Some(*size))),
            Self::Grpc(r) => r.fetch_blobs(store, blobs),
        }
    }

    /// Uploads a stored entry, blobs before the record (a no-op unless writing is on).
    pub fn upload(&self, store: &Store, record: &ActionRecord) {
        match self {
            Self::Http(r) => r.upload(store, record),
            Self::Grpc(r) => r.upload(store, record),
        }
    }
}
