//! [`Digest`]: what names a blob in the CAS, the sha256 of its bytes and their length.
//! Files are hashed streamed, never read whole into memory.

use std::fmt;
use std::io;
use std::path::Path;

use super::error::ReapiError;
use super::proto;
use crate::cache::digest::{from_hex, hash_bytes, hash_file, to_hex};

/// A sha256 content digest and the content's size in bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The raw sha256.
    pub hash: [u8; 32],
    /// The content's length.
    pub size: u64,
}

impl Digest {
    /// The digest of no bytes: such a blob is never uploaded nor downloaded.
    pub const EMPTY: Digest = Digest {
        hash: [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ],
        size: 0,
    };

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self {
            hash: hash_bytes(data),
            size: data.len() as u64,
        }
    }

    /// The digest of the file at `path`, read in 1 MiB pieces.
    pub fn of_file(path: &Path) -> io::Result<Self> {
        let (hash, size) = hash_file(path)?;
        Ok(Self { hash, size })
    }

    /// A message's canonical encoding and its digest (the form the API names messages by).
    pub fn of_message(msg: &impl prost::Message) -> (Self, Vec<u8>) {
        let bytes = msg.encode_to_vec();
        (Self::of_bytes(&bytes), bytes)
    }

    /// Lowercase hex of the hash.
    pub fn hex(&self) -> String {
        to_hex(&self.hash)
    }

    /// True for the empty blob.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The wire form.
    pub fn to_proto(&self) -> proto::Digest {
        proto::Digest {
            hash: self.hex(),
            size_bytes: i64::try_from(self.size).unwrap_or(i64::MAX),
        }
    }

    /// Parses a digest a server sent: 64 hex digits and a size that is not negative.
    pub fn from_proto(d: &proto::Digest) -> Result<Self, ReapiError> {
        let hash = from_hex(&d.hash)
            .ok_or_else(|| ReapiError::Protocol(format!("not a sha256 digest: {:?}", d.hash)))?;
        let size = u64::try_from(d.size_bytes)
            .map_err(|_| ReapiError::Protocol(format!("negative blob size {}", d.size_bytes)))?;
        Ok(Self { hash, size })
    }

    /// [`Self::from_proto`] of a field that must be present.
    pub fn from_field(d: Option<&proto::Digest>, what: &str) -> Result<Self, ReapiError> {
        let d = d.ok_or_else(|| ReapiError::Protocol(format!("{what} has no digest")))?;
        Self::from_proto(d)
    }
}

impl Default for Digest {
    /// [`Digest::EMPTY`].
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Display for Digest {
    /// `hash/size`, as resource names spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hex(), self.size)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_files_and_the_wire_form_agree() {
        let d = Digest::of_bytes(b"hello");
        assert_eq!(
            d.to_string(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824/5"
        );
        assert_eq!(Digest::from_proto(&d.to_proto()).unwrap(), d);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data = vec![3u8; (3 << 20) + 7];
        std::fs::write(&p, &data).unwrap();
        assert_eq!(Digest::of_file(&p).unwrap(), Digest::of_bytes(&data));
        assert_eq!(Digest::of_bytes(b""), Digest::EMPTY);
        assert!(Digest::EMPTY.is_empty());
    }

    #[test]
    fn bad_wire_digests_are_protocol_errors() {
        let bad = proto::Digest {
            hash: "xyz".into(),
            size_bytes: 1,
        };
        assert!(matches!(
            Digest::from_proto(&bad),
            Err(ReapiError::Protocol(_))
        ));
        let neg = proto::Digest {
            hash: Digest::EMPTY.hex(),
            size_bytes: -1,
        };
        assert!(Digest::from_proto(&neg).is_err());
        assert!(Digest::from_field(None, "the tree").is_err());
    }
}
