//! Downloads from the CAS, always verified against the digest: small blobs into memory
//! (ByteStream.Read, or BatchReadBlobs for many at once), large ones streamed into a temp
//! file beside their destination that is renamed into place only once its size and sha256
//! match.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::{BATCH_ENTRY_OVERHEAD, Client};
use crate::reapi::digest::Digest;
use crate::reapi::error::{ReapiError, is_not_found};
use crate::reapi::proto;
use crate::workspace::TEMP_PREFIX;
use bazel_remote_apis::google::bytestream::ReadRequest;

impl Client {
    fn read_resource(&self, d: &Digest) -> String {
        format!("{}blobs/{}/{}", self.resource_prefix(), d.hex(), d.size)
    }

    /// Opens a ByteStream.Read of `d` (at most `limit` bytes when given).
    async fn open_read(
        &self,
        d: &Digest,
        limit: Option<u64>,
    ) -> Result<tonic::Streaming<bazel_remote_apis::google::bytestream::ReadResponse>, ReapiError>
    {
        let req = ReadRequest {
            resource_name: self.read_resource(d),
            read_offset: 0,
            read_limit: limit.map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        };
        match self.bytestream().read(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) if is_not_found(&s) => Err(ReapiError::BlobNotFound(*d)),
            Err(s) => Err(ReapiError::from_status("ByteStream.Read", &s)),
        }
    }

    /// The content of blob `d`, verified. Held in memory: for small blobs (a Tree, an
    /// ActionResult's stdout); never more than `d.size` bytes are accepted.
    pub async fn fetch_blob(&self, d: &Digest) -> Result<Vec<u8>, ReapiError> {
        let data = self.fetch_prefix(d, None).await?;
        if Digest::of_bytes(&data) != *d {
            return Err(mismatch(d));
        }
        Ok(data)
    }

    /// At most `limit` bytes from the start of blob `d` (all of it, verified, when it fits;
    /// a prefix cannot be verified).
    pub async fn fetch_prefix(
        &self,
        d: &Digest,
        limit: Option<u64>,
    ) -> Result<Vec<u8>, ReapiError> {
        if d.is_empty() {
            return Ok(Vec::new());
        }
        let want = limit.map_or(d.size, |l| l.min(d.size));
        let mut stream = self.open_read(d, (want < d.size).then_some(want)).await?;
        let mut data = Vec::with_capacity(usize::try_from(want.min(64 << 20)).unwrap_or(0));
        while let Some(msg) = stream.message().await.map_err(|s| read_error(d, &s))? {
            if data.len() as u64 + msg.data.len() as u64 > want {
                return Err(mismatch(d));
            }
            data.extend_from_slice(&msg.data);
        }
        if (data.len() as u64) != want {
            return Err(mismatch(d));
        }
        if want == d.size && Digest::of_bytes(&data) != *d {
            return Err(mismatch(d));
        }
        Ok(data)
    }

    /// Downloads blob `d` into a temp file in `dir` (named with the workspace's temp prefix,
    /// so no glob sees it), verified; the caller moves it into place.
    pub async fn fetch_to_temp(
        &self,
        d: &Digest,
        dir: &Path,
    ) -> Result<tempfile::TempPath, ReapiError> {
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| ReapiError::local(dir, e))?
            .into_temp_path();
        if d.is_empty() {
            return Ok(tmp);
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .await
            .map_err(|e| ReapiError::local(&*tmp, e))?;
        self.fetch_into(d, &mut file, &tmp).await?;
        Ok(tmp)
    }

    /// Streams blob `d` (ByteStream.Read) into `file`, an empty file at `path` (named in
    /// errors), hashing it on the way: an error unless its bytes are exactly `d`'s. Memory
    /// stays at one message whatever the blob's size.
    pub async fn fetch_into(
        &self,
        d: &Digest,
        file: &mut tokio::fs::File,
        path: &Path,
    ) -> Result<(), ReapiError> {
        if d.is_empty() {
            return Ok(());
        }
        let local = |e| ReapiError::local(path, e);
        let mut stream = self.open_read(d, None).await?;
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        while let Some(msg) = stream.message().await.map_err(|s| read_error(d, &s))? {
            got += msg.data.len() as u64;
            if got > d.size {
                return Err(mismatch(d));
            }
            hasher.update(&msg.data);
            file.write_all(&msg.data).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        let hash: [u8; 32] = hasher.finalize().into();
        if (Digest { hash, size: got }) != *d {
            return Err(mismatch(d));
        }
        Ok(())
    }

    /// Downloads blob `d` to `dest` (any path; for the workspace, see [`crate::reapi::run`],
    /// which goes through the symlink-safe directory handles): a temp file beside it,
    /// verified, given mode `0o755` or `0o644`, then renamed over `dest`.
    pub async fn fetch_to_file(
        &self,
        d: &Digest,
        dest: &Path,
        executable: bool,
    ) -> Result<(), ReapiError> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = self.fetch_to_temp(d, dir).await?;
        set_mode(&tmp, executable)?;
        tmp.persist(dest)
            .map_err(|e| ReapiError::local(dest, e.error))?;
        Ok(())
    }

    /// The contents of many small blobs (each, with its overhead, under the batch limit),
    /// in batches under the limit (BatchReadBlobs), each verified.
    pub async fn batch_read(
        &self,
        digests: &[Digest],
    ) -> Result<Vec<(Digest, Vec<u8>)>, ReapiError> {
        let limit = self.batch_limit().await?;
        let mut out = Vec::with_capacity(digests.len());
        let mut batch: Vec<Digest> = Vec::new();
        let mut bytes = 0;
        for d in digests {
            if d.is_empty() {
                out.push((*d, Vec::new()));
                continue;
            }
            let cost = d.size + BATCH_ENTRY_OVERHEAD;
            if !batch.is_empty() && bytes + cost > limit {
                self.batch_read_one(std::mem::take(&mut batch), &mut out)
                    .await?;
                bytes = 0;
            }
            batch.push(*d);
            bytes += cost;
        }
        if !batch.is_empty() {
            self.batch_read_one(batch, &mut out).await?;
        }
        Ok(out)
    }

    async fn batch_read_one(
        &self,
        batch: Vec<Digest>,
        out: &mut Vec<(Digest, Vec<u8>)>,
    ) -> Result<(), ReapiError> {
        let resp = self
            .cas()
            .batch_read_blobs(proto::BatchReadBlobsRequest {
                instance_name: self.instance.to_string(),
                digests: batch.iter().map(Digest::to_proto).collect(),
                acceptable_compressors: Vec::new(),
                digest_function: proto::digest_function::Value::Sha256 as i32,
            })
            .await
            .map_err(|s| ReapiError::from_status("BatchReadBlobs", &s))?
            .into_inner();
        let mut left: std::collections::HashSet<Digest> = batch.into_iter().collect();
        for r in resp.responses {
            let d = Digest::from_field(r.digest.as_ref(), "a BatchReadBlobs response")?;
            if let Some(status) = r.status.as_ref().filter(|s| s.code != 0) {
                if status.code == tonic::Code::NotFound as i32 {
                    return Err(ReapiError::BlobNotFound(d));
                }
                return Err(ReapiError::from_rpc_status(
                    &format!("BatchReadBlobs of {d}"),
                    status,
                ));
            }
            if !left.remove(&d) {
                continue;
            }
            if r.compressor != 0 || Digest::of_bytes(&r.data) != d {
                return Err(mismatch(&d));
            }
            out.push((d, r.data));
        }
        match left.into_iter().next() {
            Some(d) => Err(ReapiError::Protocol(format!(
                "BatchReadBlobs did not return blob {d}"
            ))),
            None => Ok(()),
        }
    }
}

/// Sets a downloaded file's mode: `0o755` or `0o644`, never more.
pub(crate) fn set_mode(path: &Path, executable: bool) -> Result<(), ReapiError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ReapiError::local(path, e))
}

/// Writes `data` to a new temp file in `dir` (the workspace's temp prefix), for a blob that
/// came in a batch.
pub(crate) fn temp_with(dir: &Path, data: &[u8]) -> Result<tempfile::TempPath, ReapiError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| ReapiError::local(dir, e))?;
    tmp.write_all(data)
        .map_err(|e| ReapiError::local(tmp.path(), e))?;
    Ok(tmp.into_temp_path())
}

fn mismatch(d: &Digest) -> ReapiError {
    ReapiError::Protocol(format!(
        "blob {d} from the cluster does not match its digest"
    ))
}

fn read_error(d: &Digest, s: &tonic::Status) -> ReapiError {
    if is_not_found(s) {
        ReapiError::BlobNotFound(*d)
    } else {
        ReapiError::from_status(&format!("ByteStream.Read of {d}"), s)
    }
}
