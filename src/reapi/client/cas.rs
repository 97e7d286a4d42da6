//! Uploads to the CAS: ask which blobs the server lacks (FindMissingBlobs), send the small
//! ones in batches under the server's limit (BatchUpdateBlobs) and the large ones with
//! ByteStream.Write in 1 MiB chunks read from the file as they are sent, so memory stays
//! flat whatever the file's size.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{BATCH_ENTRY_OVERHEAD, Client};
use crate::reapi::digest::Digest;
use crate::reapi::error::ReapiError;
use crate::reapi::proto;
use bazel_remote_apis::google::bytestream::WriteRequest;

/// ByteStream chunk size: well under gRPC's 4 MiB message limit, large enough that the
/// per-message cost is noise.
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// Digests per FindMissingBlobs call (about 100 bytes each on the wire).
const FIND_MISSING_CHUNK: usize = 4096;

/// Where the content of a blob to upload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    /// In memory (a `Directory`, the `Command`, the `Action`).
    Bytes(Vec<u8>),
    /// In a file, read when sent (an input file, an output to cache).
    File(PathBuf),
}

/// A blob that must be in the CAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its content.
    pub source: BlobSource,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Distinct non-empty blobs asked about.
    pub blobs: usize,
    /// Blobs the server lacked, and so sent.
    pub uploaded: usize,
    /// Bytes sent (blob content).
    pub bytes: u64,
}

impl Client {
    /// The digests among `digests` the CAS lacks.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, ReapiError> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(FIND_MISSING_CHUNK) {
            let resp = self
                .cas()
                .find_missing_blobs(proto::FindMissingBlobsRequest {
                    instance_name: self.instance.to_string(),
                    blob_digests: chunk.iter().map(Digest::to_proto).collect(),
                    digest_function: proto::digest_function::Value::Sha256 as i32,
                })
                .await
                .map_err(|s| ReapiError::from_status("FindMissingBlobs", &s))?;
            for d in &resp.get_ref().missing_blob_digests {
                missing.push(Digest::from_proto(d)?);
            }
        }
        Ok(missing)
    }

    /// Makes sure every blob of `blobs` is in the CAS, sending only those it lacks. Empty
    /// blobs are never sent (every CAS has them).
    pub async fn upload_missing(&self, blobs: &[UploadBlob]) -> Result<UploadStats, ReapiError> {
        let mut by_digest: BTreeMap<Digest, &UploadBlob> = BTreeMap::new();
        for b in blobs.iter().filter(|b| !b.digest.is_empty()) {
            by_digest.entry(b.digest).or_insert(b);
        }
        let asked: Vec<Digest> = by_digest.keys().copied().collect();
        let mut stats = UploadStats {
            blobs: asked.len(),
            ..UploadStats::default()
        };
        if asked.is_empty() {
            return Ok(stats);
        }
        let limit = self.batch_limit().await?;
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for d in self.find_missing(&asked).await? {
            // A server may name digests it was not asked about: nothing to send for those.
            let Some(blob) = by_digest.get(&d) else {
                continue;
            };
            stats.uploaded += 1;
            stats.bytes += d.size;
            let cost = d.size + BATCH_ENTRY_OVERHEAD;
            if cost > limit {
                self.write_blob(blob).await?;
                continue;
            }
            if batch_bytes + cost > limit {
                self.batch_update(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch.push(proto::batch_update_blobs_request::Request {
                digest: Some(d.to_proto()),
                data: read_small(blob).await?,
                compressor: 0,
            });
            batch_bytes += cost;
        }
        if !batch.is_empty() {
            self.batch_update(batch).await?;
        }
        Ok(stats)
    }

    async fn batch_update(
        &self,
        requests: Vec<proto::batch_update_blobs_request::Request>,
    ) -> Result<(), ReapiError> {
        let resp = self
            .cas()
            .batch_update_blobs(proto::BatchUpdateBlobsRequest {
                instance_name: self.instance.to_string(),
                requests,
                digest_function: proto::digest_function::Value::Sha256 as i32,
            })
            .await
            .map_err(|s| ReapiError::from_status("BatchUpdateBlobs", &s))?;
        for r in &resp.get_ref().responses {
            if let Some(status) = r.status.as_ref().filter(|s| s.code != 0) {
                let what = match &r.digest {
                    Some(d) => format!("BatchUpdateBlobs of {}/{}", d.hash, d.size_bytes),
                    None => "BatchUpdateBlobs".to_string(),
                };
                return Err(ReapiError::from_rpc_status(&what, status));
            }
        }
        Ok(())
    }

    /// Sends one blob with ByteStream.Write, chunk by chunk as it is read; the server's
    /// `committed_size` must be the blob's size.
    async fn write_blob(&self, blob: &UploadBlob) -> Result<(), ReapiError> {
        let d = blob.digest;
        let resource = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.resource_prefix(),
            uuid_v4(),
            d.hex(),
            d.size
        );
        let (tx, rx) = mpsc::channel::<WriteRequest>(2);
        let source = blob.source.clone();
        let reader = tokio::spawn(async move { send_chunks(source, d, resource, tx).await });
        let sent = self
            .bytestream()
            .write(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        // The reader's own failure (a file that changed or could not be read) explains a
        // refused write better than the server's complaint about a short stream.
        let read = reader
            .await
            .map_err(|e| ReapiError::Input(format!("reading blob {d}: {e}")))?;
        let resp = match (sent, read) {
            (_, Err(e)) => return Err(e),
            (Err(s), Ok(())) => return Err(ReapiError::from_status("ByteStream.Write", &s)),
            (Ok(r), Ok(())) => r,
        };
        let committed = resp.get_ref().committed_size;
        if u64::try_from(committed).ok() != Some(d.size) {
            return Err(ReapiError::Protocol(format!(
                "ByteStream.Write of {d}: the server committed {committed} bytes"
            )));
        }
        Ok(())
    }
}

/// The content of a blob small enough for a batch, checked against its digest (a file may
/// have changed since it was hashed).
async fn read_small(blob: &UploadBlob) -> Result<Vec<u8>, ReapiError> {
    let data = match &blob.source {
        BlobSource::Bytes(b) => b.clone(),
        BlobSource::File(p) => tokio::fs::read(p)
            .await
            .map_err(|e| ReapiError::local(p, e))?,
    };
    if Digest::of_bytes(&data) != blob.digest {
        return Err(changed(&blob.source, blob.digest));
    }
    Ok(data)
}

fn changed(source: &BlobSource, d: Digest) -> ReapiError {
    match source {
        BlobSource::File(p) => ReapiError::Input(format!(
            "{} changed while it was being sent (expected {d})",
            p.display()
        )),
        BlobSource::Bytes(_) => ReapiError::Input(format!("in-memory blob does not match {d}")),
    }
}

/// Feeds `tx` the write requests for `source`. Each chunk is sent only once the next one
/// has been read, so the last one can carry `finish_write` and the content is checked
/// against `d` before the write is finished: a file that changed is never committed.
async fn send_chunks(
    source: BlobSource,
    d: Digest,
    resource: String,
    tx: mpsc::Sender<WriteRequest>,
) -> Result<(), ReapiError> {
    let mut file = match &source {
        BlobSource::File(p) => Some(
            tokio::fs::File::open(p)
                .await
                .map_err(|e| ReapiError::local(p, e))?,
        ),
        BlobSource::Bytes(_) => None,
    };
    let mut hasher = Sha256::new();
    let mut offset: u64 = 0;
    let mut pending: Option<Vec<u8>> = None;
    let mut first = true;
    let mut request = |data: Vec<u8>, at: u64, finish: bool| WriteRequest {
        resource_name: if std::mem::take(&mut first) {
            resource.clone()
        } else {
            String::new()
        },
        write_offset: i64::try_from(at).unwrap_or(i64::MAX),
        finish_write: finish,
        data,
    };
    let mut sent_at: u64 = 0;
    loop {
        let chunk = match (&mut file, &source) {
            (Some(f), BlobSource::File(p)) => {
                read_chunk(f).await.map_err(|e| ReapiError::local(p, e))?
            }
            (_, BlobSource::Bytes(b)) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let end = start.saturating_add(CHUNK_BYTES).min(b.len());
                b[start..end].to_vec()
            }
            _ => Vec::new(),
        };
        if chunk.is_empty() {
            break;
        }
        hasher.update(&chunk);
        offset += chunk.len() as u64;
        if offset > d.size {
            return Err(changed(&source, d));
        }
        if let Some(prev) = pending.replace(chunk) {
            let len = prev.len() as u64;
            if tx.send(request(prev, sent_at, false)).await.is_err() {
                // The server answered early (it has the blob already) or failed: its
                // response says which.
                return Ok(());
            }
            sent_at += len;
        }
    }
    let hash: [u8; 32] = hasher.finalize().into();
    if (Digest { hash, size: offset }) != d {
        return Err(changed(&source, d));
    }
    let _ = tx
        .send(request(pending.unwrap_or_default(), sent_at, true))
        .await;
    Ok(())
}

/// Up to [`CHUNK_BYTES`] from `f` (fewer only at the end).
async fn read_chunk(f: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// A random (version 4) UUID, as ByteStream upload names want one.
pub(super) fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::cache::digest::to_hex(&{
        let mut full = [0u8; 32];
        full[..16].copy_from_slice(&b);
        full
    });
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4());
    }

    #[tokio::test]
    async fn chunks_carry_offsets_and_finish_only_when_the_content_matches() {
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 10)).map(|i| i as u8).collect();
        let d = Digest::of_bytes(&data);
        let (tx, mut rx) = mpsc::channel(8);
        let src = BlobSource::Bytes(data.clone());
        let task = tokio::spawn(send_chunks(src, d, "r".into(), tx));
        let mut got = Vec::new();
        while let Some(r) = rx.recv().await {
            got.push(r);
        }
        task.await.unwrap().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].resource_name, "r");
        assert_eq!(got[1].resource_name, "");
        assert_eq!(got[1].write_offset, CHUNK_BYTES as i64);
        assert!(got[2].finish_write && !got[1].finish_write);
        let all: Vec<u8> = got.iter().flat_map(|r| r.data.clone()).collect();
        assert_eq!(all, data);

        let (tx, mut rx) = mpsc::channel(8);
        let wrong = Digest::of_bytes(b"other");
        let task = tokio::spawn(send_chunks(BlobSource::Bytes(data), wrong, "r".into(), tx));
        let mut finished = false;
        while let Some(r) = rx.recv().await {
            finished |= r.finish_write;
        }
        assert!(!finished);
        assert!(matches!(task.await.unwrap(), Err(ReapiError::Input(_))));
    }
}
