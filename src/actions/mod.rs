//! What a task does on a cache miss: run a command, download a file, start a service.
pub mod download;
