//! CLI integration tests: real manifests in temp dirs, the real binary, real processes.

#[path = "../support/bytes.rs"]
mod bytes;
#[path = "../support/fault_server.rs"]
mod fault_server;
#[path = "../support/refused.rs"]
mod refused;
#[allow(dead_code)]
#[path = "../remote/server.rs"]
mod remote_server;
#[path = "../support/served.rs"]
mod served;
#[path = "../support/workspace.rs"]
mod workspace;

mod cache_dir;
mod caching;
mod children;
mod concurrent;
mod crash;
mod differential;
mod downloads;
mod downloads_ended;
mod fail_fast;
mod http;
mod leftovers;
mod lockfile;
mod lockfile_edges;
mod lockfile_merge;
mod redirect_secrets;
mod remote_exec;
mod run;
mod run_output;
mod security;
mod security_io;
mod security_records;
mod security_state;
mod services;
mod signals;
mod store_full;
mod support;
mod timings;
mod tls;
mod wording;
mod written_files;
