//! The fault-injecting server on its own multi-thread runtime, so it keeps serving while a
//! test blocks on the `taskrun` child process; plus small helpers shared by the HTTP tests.

use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fault_server::FaultServer;

/// A [`FaultServer`] on 127.0.0.1:0, served by a runtime this value owns.
pub struct Http {
    // Dropped before the runtime: the accept loop is aborted while the runtime still exists.
    server: FaultServer,
    _rt: tokio::runtime::Runtime,
}

impl Http {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let server = rt.block_on(async {
            FaultServer::serve(tokio::net::TcpListener::from_std(listener).unwrap())
        });
        Self { server, _rt: rt }
    }
}

impl Deref for Http {
    type Target = FaultServer;
    fn deref(&self) -> &FaultServer {
        &self.server
    }
}

pub use crate::bytes::{body, sha};

/// Every regular file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after 20 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
