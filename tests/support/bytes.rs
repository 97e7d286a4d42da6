//! Test payloads shared by the test binaries: deterministic bytes and their sha256.

use sha2::{Digest, Sha256};

/// Deterministic, incompressible-looking bytes.
pub fn body(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Lowercase hex sha256, as manifests pin it.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
