//! The download action against a scripted, misbehaving HTTP server (issue 4).
//!
//! Each test calls `taskrun::actions::download::attempt` directly, playing the scheduler's
//! part (attempt after attempt) where a test needs more than one.

#[path = "../support/bytes.rs"]
mod bytes;
#[path = "../support/fault_server.rs"]
mod fault_server;
#[path = "../support/refused.rs"]
mod refused;
#[path = "../support/workspace.rs"]
mod workspace;

mod helpers;

mod basics;
mod bench;
mod classify;
mod cli_revalidate;
mod limits;
mod mirrors;
mod redirects;
mod resume;
mod revalidate;
mod secrets;
