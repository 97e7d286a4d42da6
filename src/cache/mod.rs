//! The content-hash cache: keys, the local content-addressed store, the remote.
