//! Unit tests of [`super::PartWriter`]: `.part` files written, resumed and hashed.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{PartSpec, PartWriter};
use crate::cache::digest::to_hex;

async fn written(expected: u64, chunks: &[Vec<u8>]) -> (Vec<u8>, String, u64) {
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("f.bin");
    let guard = Arc::new(tokio::sync::Mutex::new(())).lock_owned().await;
    let mut writer = PartWriter::start(PartSpec {
        dest: dest.clone(),
        offset: 0,
        expected: Some(expected),
        meta: None,
        meta_on_disk: false,
        guard,
        hash: true,
    });
    for c in chunks {
        writer.write(Bytes::from(c.clone())).await.unwrap();
    }
    let w = writer.finish().await.unwrap();
    let body = std::fs::read(super::resume::part_path(&dest)).unwrap();
    (
        body,
        w.digest.as_ref().map(to_hex).unwrap_or_default(),
        w.size,
    )
}

/// A small body is kept as chunks and written in order; one that turns out larger than
/// announced goes on as a large one, still in order, and hashes what was written.
#[tokio::test]
async fn chunks_are_written_in_order_whatever_the_announced_size() {
    let chunks: Vec<Vec<u8>> = (0u8..5).map(|i| vec![i; 60 * 1024 + 7]).collect();
    for (expected, n) in [(2 * (60 * 1024 + 7), 2), (100, 5)] {
        let (body, sha, size) = written(expected, &chunks[..n]).await;
        let want = chunks[..n].concat();
        assert!(body == want, "{n} chunks announced as {expected} bytes");
        assert_eq!(size, want.len() as u64);
        assert_eq!(sha, to_hex(&Sha256::digest(&want).into()));
    }
}

/// A part file shorter than the bytes a resume keeps fails the transfer, hashed or not,
/// instead of continuing after a gap of zeros; a whole one is continued (and hashed
/// from its start when asked).
#[tokio::test]
async fn a_resume_keeps_only_a_whole_prefix() {
    for (on_disk, hash) in [(100, true), (100, false), (200, true), (200, false)] {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("f.bin");
        std::fs::write(super::resume::part_path(&dest), vec![7u8; on_disk]).unwrap();
        let guard = Arc::new(tokio::sync::Mutex::new(())).lock_owned().await;
        let mut writer = PartWriter::start(PartSpec {
            dest: dest.clone(),
            offset: 200,
            expected: Some(10),
            meta: None,
            meta_on_disk: false,
            guard,
            hash,
        });
        writer.write(Bytes::from(vec![9u8; 10])).await.unwrap();
        let result = writer.finish().await;
        if on_disk < 200 {
            let err = result.err().expect("a shrunken part was continued");
            assert!(err.to_string().contains("shrank"), "{err}");
            continue;
        }
        let w = result.unwrap();
        let want = [vec![7u8; 200], vec![9u8; 10]].concat();
        assert_eq!(w.size, 210);
        assert_eq!(
            std::fs::read(super::resume::part_path(&dest)).unwrap(),
            want
        );
        let digest = hash.then(|| Sha256::digest(&want).into());
        assert_eq!(w.digest, digest);
    }
}
