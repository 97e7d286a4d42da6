//! Remote execution and the gRPC cache (SPEC §11) against a real BuildGrid cluster on
//! loopback: see `cluster.rs` and `cluster/README.md`. Without the cluster (no `cluster/install.sh` run) the tests skip,
//! except under `CI`, where they fail.

mod action_cache;
mod client;
mod client_connection;
mod cluster;
mod deadlines;
mod fallback;
mod grpc_cache;
mod harness;
mod inputs;
mod refusals;
mod scheduler;
mod support;
#[path = "../support/workspace.rs"]
mod workspace;
